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
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/pinnedexec"
	"github.com/herald-lb/herald/internal/routerproc"
	"github.com/herald-lb/herald/internal/testrequire"
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
	log  *routerproc.Buffer
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
	p := &speakerProc{t: t, name: name, log: &routerproc.Buffer{}, done: make(chan struct{})}
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
	p.out = json.NewDecoder(bufio.NewReader(r))
	if err := pinnedexec.Start(p.cmd, func(error) {
		r.Close()
		close(p.done)
	}); err != nil {
		t.Fatalf("start speaker %s: %v", name, err)
	}
	w.Close()
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

// The setup and steps the FRR tests (frr_test.go, speaker_test.go,
// attrs_frr_test.go) and the BIRD tests (bird_test.go) share: one LAN of
// a router and two nodes, the router, node1's speaker, the session coming
// up, and the checks that read the same against either router (Stop
// withdraws first, IPv6 only over IPv6, passwords).

// routerKind is what newLAN and startRouterOf need to know of a router
// implementation, FRR or BIRD.
type routerKind struct {
	name string // in messages: "FRR", "BIRD"
	// nsPrefix starts the LAN's namespace names; each kind has its own,
	// so that one kind's leftovers are told from the other's.
	nsPrefix string
	// base holds the routers' directories: under /run, since the
	// daemons drop root and cannot enter a test's TempDir.
	base            string
	available       func() error                            // reports what the machine lacks to run it
	removeLeftovers func(base string) error                 // removes the routers a crashed run left
	newDir          func(base, name string) (string, error) // a fresh directory for a router
	once            *sync.Once                              // leftovers are removed once per test binary
}

// newRouterKind is a routerKind with its own once.
func newRouterKind(name, nsPrefix, base string, available func() error, removeLeftovers func(string) error, newDir func(string, string) (string, error)) routerKind {
	return routerKind{name: name, nsPrefix: nsPrefix, base: base, available: available, removeLeftovers: removeLeftovers, newDir: newDir, once: new(sync.Once)}
}

// newLAN builds the router and node namespaces for a router of kind k,
// or ends the test when the machine cannot run them (root, iproute2, the
// router). Without hosts, the LAN is the router (192.168.30.1,
// fd00:30::1) and node1 and node2 (.11, .12).
func newLAN(t *testing.T, k routerKind, hosts ...netnstest.Host) *netnstest.LAN {
	t.Helper()
	if testing.Short() {
		t.Skipf("real %s router: not in -short", k.name)
	}
	netnstest.Require(t, k.nsPrefix)
	if err := k.available(); err != nil {
		testrequire.Missing(t, "%v", err)
	}
	k.once.Do(func() {
		if err := k.removeLeftovers(k.base); err != nil {
			t.Logf("remove %s leftovers: %v", k.name, err)
		}
	})
	if len(hosts) == 0 {
		hosts = []netnstest.Host{
			{Role: "router", Addrs: []string{"192.168.30.1/24", "fd00:30::1/64"}},
			{Role: "node1", Addrs: []string{"192.168.30.11/24", "fd00:30::11/64"}},
			{Role: "node2", Addrs: []string{"192.168.30.12/24", "fd00:30::12/64"}},
		}
	}
	return netnstest.New(t, k.nsPrefix, hosts...)
}

// startRouterOf starts a router of kind k with start, given a fresh
// directory and 30 s, and closes it when the test ends, after logging its
// logs if the test failed.
func startRouterOf[R interface {
	Logs() string
	Close() error
}](t *testing.T, k routerKind, start func(ctx context.Context, dir string) (R, error)) R {
	t.Helper()
	dir, err := k.newDir(k.base, "router")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := start(ctx, dir)
	if err != nil {
		t.Fatalf("start %s: %v", k.name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s logs:\n%s", k.name, r.Logs())
		}
		if err := r.Close(); err != nil {
			t.Errorf("stop %s: %v", k.name, err)
		}
	})
	return r
}

// peerRouter is a test's router, FRR (routerView) or BIRD (birdView), as
// the shared steps see it.
type peerRouter interface {
	// session reports whether the router's BGP session with node is
	// established, and describes it for a failure message.
	session(node netip.Addr) (established bool, desc string)
	// routeCount returns how many routes (paths) for p the router's BGP
	// table holds, and describes them for a failure message.
	routeCount(p netip.Prefix) (int, string)
}

// startNode1 starts node1's speaker (router ID node1V4) in AS asn and,
// when there are any, gives it peers.
func startNode1(t *testing.T, lan *netnstest.LAN, asn uint32, peers ...bgp.Peer) *speakerProc {
	t.Helper()
	sp := startSpeaker(t, "node1", lan.Namespace("node1"), bgp.Config{RouterID: node1V4, ASN: asn})
	if len(peers) > 0 {
		sp.setPeers(peers...)
	}
	return sp
}

// nodePeer is a node's peer configuration for the router, with timers
// short enough for tests.
func nodePeer(router netip.Addr, peerASN uint32) bgp.Peer {
	return bgp.Peer{
		Address:       router,
		PeerASN:       peerASN,
		HoldTime:      9 * time.Second,
		KeepaliveTime: 3 * time.Second,
		ConnectRetry:  3 * time.Second,
	}
}

// fastBFD is the speakers' BFD in the tests: 300 ms × 3, as the routers
// are configured.
func fastBFD() *bgp.BFD {
	return &bgp.BFD{MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3}
}

// startBFDNode starts the speaker name in the LAN's namespace role
// (router ID addr, AS nodeASN), peered with the router at router with
// BFD (fastBFD), advertising vip.
func startBFDNode(t *testing.T, lan *netnstest.LAN, name, role string, addr, router netip.Addr, vip netip.Prefix) *speakerProc {
	t.Helper()
	sp := startSpeaker(t, name, lan.Namespace(role), bgp.Config{RouterID: addr, ASN: nodeASN})
	p := nodePeer(router, routerASN)
	p.BFD = fastBFD()
	sp.setPeers(p)
	sp.setRoutes(bgp.Route{Prefix: vip})
	return sp
}

// waitEstablished waits until both the router and the speaker see the
// session with node up.
func waitEstablished(t *testing.T, sp *speakerProc, r peerRouter, node netip.Addr) bgp.Session {
	t.Helper()
	var s bgp.Session
	eventually(t, 30*time.Second, "session "+sp.name+" established", func() (bool, string) {
		s = sp.session()
		up, desc := r.session(node)
		return s.State == bgp.StateEstablished && up, fmt.Sprintf("speaker %+v, %s", s, desc)
	})
	return s
}

// checkStopWithdrawsFirst stops the speaker and checks that Stop
// withdraws first: vip leaves the router's table and kernel while the
// session with node is still established, and only then the session
// closes.
func checkStopWithdrawsFirst(t *testing.T, lan *netnstest.LAN, sp *speakerProc, r peerRouter, node netip.Addr, vip netip.Prefix) {
	t.Helper()
	sp.must(request{Op: "stop-async"})
	eventually(t, 3*time.Second, "route withdrawn by Stop", func() (bool, string) {
		n, desc := r.routeCount(vip)
		return n == 0, desc
	})
	if up, desc := r.session(node); !up {
		t.Errorf("the router's session went down before the withdrawal was seen: Stop must withdraw first: %s", desc)
	}
	waitFIB(t, lan, vip, 5*time.Second)
	sp.must(request{Op: "stop-wait"})
	eventually(t, 5*time.Second, "session closed by Stop", func() (bool, string) {
		up, desc := r.session(node)
		return !up, desc
	})
}

// checkIPv6Only is the end of the IPv6 tests, whose speaker advertises
// vip (IPv6) and vip4 (IPv4) over an IPv6 session: only vip was sent,
// and withdrawing every route takes it out of the router's kernel.
func checkIPv6Only(t *testing.T, lan *netnstest.LAN, sp *speakerProc, r peerRouter, vip, vip4 netip.Prefix) {
	t.Helper()
	if n, desc := r.routeCount(vip4); n != 0 {
		t.Errorf("IPv4 route reached the router over the IPv6 session: %s", desc)
	}
	if s := sp.session(); s.RoutesAdvertised != 1 {
		t.Errorf("session %+v: want 1 route advertised", s)
	}
	sp.setRoutes()
	waitFIB(t, lan, vip, 10*time.Second)
}

// waitConnectFailure waits until the speaker's only session is down for
// a connection that timed out, as it does when the router's kernel drops
// its SYNs for want of the right TCP MD5 signature.
func waitConnectFailure(t *testing.T, sp *speakerProc, what string) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() (bool, string) {
		s := sp.session()
		return s.State != bgp.StateEstablished && strings.Contains(s.LastError, "i/o timeout"), fmt.Sprintf("%+v", s)
	})
}

// checkPassword is the start of the password tests, with a router that
// keys node1's session with "s3cret-Key" and sp advertising vip: with
// that password the session comes up and vip reaches the router's
// kernel; with a wrong one the router's kernel drops the badly signed
// SYNs, so the session does not come up, the speaker says why, and vip
// leaves. It returns the peer with the right password.
func checkPassword(t *testing.T, lan *netnstest.LAN, sp *speakerProc, r peerRouter, vip netip.Prefix) bgp.Peer {
	t.Helper()
	good := nodePeer(routerV4, routerASN)
	good.Password = "s3cret-Key"
	sp.setPeers(good)
	waitEstablished(t, sp, r, node1V4)
	waitFIB(t, lan, vip, 10*time.Second, node1V4)

	bad := good
	bad.Password = "wrong"
	sp.setPeers(bad)
	waitConnectFailure(t, sp, "connection failure reported")
	waitFIB(t, lan, vip, 15*time.Second)
	if up, desc := r.session(node1V4); up {
		t.Errorf("the router established a session with a wrong password: %s", desc)
	}
	t.Logf("wrong password: %+v", sp.session())
	return good
}

// reestablish gives the speaker the right peer again after a refused
// one: the session comes back without the old error, and vip returns to
// the router's kernel.
func reestablish(t *testing.T, lan *netnstest.LAN, sp *speakerProc, r peerRouter, good bgp.Peer, vip netip.Prefix) {
	t.Helper()
	sp.setPeers(good)
	s := waitEstablished(t, sp, r, node1V4)
	if s.LastError != "" {
		t.Errorf("session %+v: the old error stayed", s)
	}
	waitFIB(t, lan, vip, 10*time.Second, node1V4)
}
