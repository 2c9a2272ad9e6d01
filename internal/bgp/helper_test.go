package bgp_test

// The speakers under test run in child processes, one per node namespace.
// GoBGP opens its sockets from goroutines of its own, which may run on any
// thread of the process, so a speaker cannot be confined to one network
// namespace inside a multi-threaded process (internal/netnsenter can only
// pin sockets that the caller opens itself). The test binary is therefore
// started again with `ip netns exec <node> <test binary>`; TestMain sees
// helperEnv and runs a speaker driven over a pipe instead of the tests:
// JSON requests on stdin, JSON responses on file descriptor 3, logs on
// stderr.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp"
)

const helperEnv = "HERALD_BGP_SPEAKER_HELPER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(m.Run())
}

// helperConfig is the speaker's configuration as the helper receives it.
type helperConfig struct {
	Config   bgp.Config // Logger is not sent; the helper logs to stderr
	LogLevel slog.Level
}

// request is one call of the speaker's API.
type request struct {
	Op      string // peers, routes, sessions, wait-change, stop, stop-async
	Peers   []bgp.Peer
	Routes  []bgp.Route
	Timeout time.Duration
}

type response struct {
	Err      string
	Sessions []bgp.Session
	Changed  bool
}

func runHelper(cfgJSON string) int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(cfgJSON), &hc); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return 2
	}
	hc.Config.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: hc.LogLevel}))
	out := os.NewFile(3, "responses")
	enc := json.NewEncoder(out)
	sp, err := bgp.New(hc.Config)
	if err == nil {
		err = sp.Start(context.Background())
	}
	if err != nil {
		_ = enc.Encode(response{Err: err.Error()})
		return 1
	}
	_ = enc.Encode(response{}) // started
	dec := json.NewDecoder(os.Stdin)
	var stopDone chan error
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			// The test is gone: stop as an agent would on SIGTERM.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = sp.Stop(ctx)
			cancel()
			return 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var resp response
		var err error
		switch req.Op {
		case "peers":
			err = sp.SetPeers(ctx, req.Peers)
		case "routes":
			err = sp.SetRoutes(ctx, req.Routes)
		case "sessions":
			resp.Sessions, err = sp.Sessions(ctx)
		case "wait-change":
			select {
			case <-sp.Changes():
				resp.Changed = true
			case <-time.After(req.Timeout):
			}
			resp.Sessions, err = sp.Sessions(ctx)
		case "stop":
			err = sp.Stop(ctx)
		case "stop-async":
			stopDone = make(chan error, 1)
			go func() { stopDone <- sp.Stop(context.Background()) }()
		case "stop-wait":
			if stopDone == nil {
				err = errors.New("no stop-async before")
				break
			}
			select {
			case err = <-stopDone:
			case <-ctx.Done():
				err = ctx.Err()
			}
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		cancel()
		if err != nil {
			resp.Err = err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			return 1
		}
	}
}

// speakerProc is the test's side of one helper.
type speakerProc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	log  *syncBuffer
	done chan struct{}
}

// startSpeaker starts a speaker in namespace ns.
func startSpeaker(t testing.TB, name, ns string, cfg bgp.Config) *speakerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelInfo
	if os.Getenv("HERALD_BGP_TEST_DEBUG") != "" {
		level = slog.LevelDebug // GoBGP's debug logs in failed tests' output
	}
	cfgJSON, err := json.Marshal(helperConfig{Config: cfg, LogLevel: level})
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &speakerProc{t: t, name: name, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^$")
	p.cmd.Env = append(os.Environ(), helperEnv+"="+string(cfgJSON))
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	p.cmd.ExtraFiles = []*os.File{w}
	// If this test process dies, so does the helper (ip netns exec execs
	// it, so the signal reaches the speaker itself).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.in, err = p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start speaker %s: %v", name, err)
	}
	w.Close()
	p.out = json.NewDecoder(bufio.NewReader(r))
	go func() {
		_ = p.cmd.Wait()
		r.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.in.Close()
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("speaker %s log:\n%s", name, p.log.String())
		}
	})
	var resp response
	p.read(&resp, 30*time.Second)
	if resp.Err != "" {
		t.Fatalf("speaker %s: %s", name, resp.Err)
	}
	return p
}

// read decodes one response, failing the test after timeout.
func (p *speakerProc) read(resp *response, timeout time.Duration) {
	p.t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- p.out.Decode(resp) }()
	select {
	case err := <-errc:
		if err != nil {
			p.t.Fatalf("speaker %s: read response: %v\n%s", p.name, err, p.log.String())
		}
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		p.t.Fatalf("speaker %s did not answer within %v\n%s", p.name, timeout, p.log.String())
	}
}

// call sends a request and returns the response; the speaker's error, if
// any, is in Err.
func (p *speakerProc) call(req request) response {
	p.t.Helper()
	if err := json.NewEncoder(p.in).Encode(req); err != nil {
		p.t.Fatalf("speaker %s: send %s: %v\n%s", p.name, req.Op, err, p.log.String())
	}
	var resp response
	p.read(&resp, 45*time.Second)
	return resp
}

// must is call for requests that must succeed.
func (p *speakerProc) must(req request) response {
	p.t.Helper()
	resp := p.call(req)
	if resp.Err != "" {
		p.t.Fatalf("speaker %s: %s: %s", p.name, req.Op, resp.Err)
	}
	return resp
}

func (p *speakerProc) setPeers(peers ...bgp.Peer) {
	p.t.Helper()
	p.must(request{Op: "peers", Peers: peers})
}

func (p *speakerProc) setRoutes(routes ...bgp.Route) {
	p.t.Helper()
	p.must(request{Op: "routes", Routes: routes})
}

func (p *speakerProc) sessions() []bgp.Session {
	p.t.Helper()
	return p.must(request{Op: "sessions"}).Sessions
}

// session returns the one session of a speaker with one peer.
func (p *speakerProc) session() bgp.Session {
	p.t.Helper()
	ss := p.sessions()
	if len(ss) != 1 {
		p.t.Fatalf("speaker %s: %d sessions, want 1: %+v", p.name, len(ss), ss)
	}
	return ss[0]
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
