package agent_test

// Agents as real processes, for the faults only a process can have
// (kill -9): `herald agent` runs inside a node's namespace, reaching the API
// server through a KubePrism-style proxy on localhost:7445 in that
// namespace, exactly as on Talos.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/membership"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/pinnedexec"
	"github.com/herald-lb/herald/internal/placement"
)

var (
	buildOnce sync.Once
	heraldBin string
	buildErr  error
)

// herald builds the herald binary once per test binary.
func herald(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-agent-test-")
		if err != nil {
			buildErr = err
			return
		}
		heraldBin = filepath.Join(dir, "herald")
		out, err := exec.Command("go", "build", "-o", heraldBin, "../../cmd/herald").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return heraldBin
}

// kubePrism runs the lab's KubePrism-style proxy on localhost:7445 inside
// role's namespace, forwarding to the API server from the root namespace.
func (c *cluster) kubePrism(role string) {
	c.t.Helper()
	u, err := url.Parse(c.cfg.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	prism, err := lab.ListenKubePrism(c.lan.Namespace(role), u.Host, slog.Default())
	if err != nil {
		c.t.Fatalf("proxy in %s: %v", role, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { prism.Serve(ctx); close(done) }()
	c.t.Cleanup(func() { cancel(); <-done })
}

// agentProcess is `herald agent` running in a node's namespace.
type agentProcess struct {
	cmd *exec.Cmd
	// done receives the process's exit once; exited is closed when it
	// has exited.
	done   chan error
	exited chan struct{}
}

// startAgentProcess runs node's agent as a process; the recorded PID is
// herald's own (ip netns exec execs it), so kill -9 kills the agent.
func (c *cluster) startAgentProcess(node, kubeconfig, keyFile string, extra ...string) *agentProcess {
	c.t.Helper()
	args := append([]string{"netns", "exec", c.lan.Namespace(node), herald(c.t), "agent",
		"--node-name", node, "--kubeconfig", kubeconfig, "--key-file", keyFile, "--metrics-addr", ""}, extra...)
	cmd := exec.Command("ip", args...)
	// HERALD_AGENT_ENV adds environment variables to every agent (e.g.
	// "GOMAXPROCS=1 GOGC=50"), for the benchmarks.
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("HERALD_AGENT_ENV"))...)
	cmd.Stdout = c.agentLog
	cmd.Stderr = c.agentLog
	if cmd.Stdout == nil {
		cmd.Stdout, cmd.Stderr = testWriter{c.t}, testWriter{c.t}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &agentProcess{cmd: cmd, done: make(chan error, 1), exited: make(chan struct{})}
	if err := pinnedexec.Start(cmd, func(err error) {
		p.done <- err
		close(p.exited)
	}); err != nil {
		c.t.Fatalf("start agent %s: %v", node, err)
	}
	c.t.Cleanup(func() { p.kill() })
	return p
}

func (p *agentProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// processSetup writes each node's kubeconfig (server localhost:7445, as on
// Talos) and the heartbeat key, and starts the proxies.
func (c *cluster) processSetup(env string) (kubeconfigs map[string]string, keyFile string) {
	c.t.Helper()
	dir := c.t.TempDir()
	keyFile = filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(env)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, cl := range kc.Clusters {
		cl.Server = "https://127.0.0.1:7445"
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		c.t.Fatal(err)
	}
	kubeconfigs = map[string]string{}
	for _, n := range nodes {
		c.kubePrism(n)
		kubeconfigs[n] = path
	}
	return kubeconfigs, keyFile
}

// kill -9 of the owner's agent process: its heartbeats and answers stop
// with it, and the next node answers. Then SIGTERM to that one: it hands
// over to the last node and exits cleanly.
func TestFailOverAfterKill9(t *testing.T) {
	c := newCluster(t)
	addr := netip.MustParseAddr("192.168.10.82")
	rank, procs, _ := c.announceWithProcesses(addr)
	c.waitOwner(addr, rank[0], 30*time.Second)
	start := time.Now()
	if err := procs[rank[0]].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitOwner(addr, rank[1], 10*time.Second)
	t.Logf("kill -9 of %s's agent: %s answers after %s (client-side)", rank[0], rank[1], time.Since(start).Round(time.Millisecond))
	err := <-procs[rank[0]].done
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("agent process ended with %v, want killed by SIGKILL", err)
	}

	// SIGTERM (a rolling upgrade, a drain): the agent hands over and exits
	// cleanly.
	start = time.Now()
	if err := procs[rank[1]].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitOwner(addr, rank[2], 10*time.Second)
	t.Logf("SIGTERM to %s's agent: %s answers after %s", rank[1], rank[2], time.Since(start).Round(time.Millisecond))
	select {
	case err := <-procs[rank[1]].done:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM, want a clean exit", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("agent still running 10 s after SIGTERM")
	}
}

// BenchmarkFailoverKill9: one op = kill -9 of the owner's agent process;
// the time until the client gets an ARP reply from the next owner. The
// agent is restarted and ownership returns before the next trial.
func BenchmarkFailoverKill9(b *testing.B) {
	c := newBenchCluster(b)
	addr := netip.MustParseAddr("192.168.10.75")
	rank, procs, restart := c.announceWithProcesses(addr)
	p := c.probe(addr, rank[0])
	var gaps []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := procs[rank[0]].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		r := p.waitFor(b, t0, c.macs[rank[1]], 10*time.Second)
		gaps = append(gaps, r.at.Sub(t0))
		b.StopTimer()
		<-procs[rank[0]].done
		procs[rank[0]] = restart(rank[0])
		p.stable(b, c.macs[rank[0]], 300*time.Millisecond, 30*time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	distribution(b, "ms", gaps)
}

// cpuSeconds is a process's CPU time so far (user + system).
func cpuSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	user, system := procTimes(tb, pid)
	return user + system
}

// userSeconds is the user part of cpuSeconds.
func userSeconds(tb testing.TB, pid int) float64 {
	tb.Helper()
	user, _ := procTimes(tb, pid)
	return user
}

// procTimes reads a process's user and system CPU time, in seconds, from
// /proc/<pid>/stat: fields 14 and 15 of the whole line (after the
// parenthesised command name), in clock ticks of 10 ms.
func procTimes(tb testing.TB, pid int) (user, system float64) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(rest[11], 64)
	stime, _ := strconv.ParseFloat(rest[12], 64)
	return utime / 100, stime / 100
}

// BenchmarkARPFlood: one op = 5 s of ARP requests for 100 addresses nobody
// owns, sent from the client at up to 100 000 per second (bounded: at most
// 500 000 frames). Reported: the frames sent per second, the busiest
// agent's CPU (cores), replies to unowned addresses (must be 0), and the
// owned address's reply latency during the flood.
func BenchmarkARPFlood(b *testing.B) {
	c := newBenchCluster(b)
	addr := netip.MustParseAddr("192.168.10.75")
	rank, procs, _ := c.announceWithProcesses(addr)
	p := c.probe(addr, rank[0])

	// The flood: 100 prebuilt requests for 192.168.10.100-199.
	conn, ifi := openARP(b, c, "client")
	var frames [][]byte
	for i := 100; i < 200; i++ {
		f, err := l2.ARPRequest(ifi.HardwareAddr, netip.MustParseAddr("192.168.10.10"), netip.AddrFrom4([4]byte{192, 168, 10, byte(i)}))
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, f)
	}
	// Count replies for the flooded addresses.
	var unowned atomic.Int64
	stopReader := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Go(func() {
		buf := make([]byte, 1500)
		for {
			select {
			case <-stopReader:
				return
			default:
			}
			_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				continue
			}
			m, err := l2.Decode(buf[:n])
			if err == nil && m.Kind == l2.KindARPReply && m.SenderIP.As4()[3] >= 100 && m.SenderIP.As4()[3] < 200 {
				unowned.Add(1)
			}
		}
	})
	bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	const (
		floodFor = 5 * time.Second
		perTick  = 1000 // per 10 ms: 100 000 per second at most
		maxSent  = 500000
	)
	var rates, cores []float64
	b.ResetTimer()
	for range b.N {
		cpu0 := map[string]float64{}
		for n, pr := range procs {
			cpu0[n] = cpuSeconds(b, pr.cmd.Process.Pid)
		}
		start := time.Now()
		sent := 0
		tick := time.NewTicker(10 * time.Millisecond)
		for time.Since(start) < floodFor && sent < maxSent {
			for i := 0; i < perTick; i++ {
				if _, err := conn.WriteTo(frames[sent%len(frames)], bcast); err == nil {
					sent++
				}
			}
			<-tick.C
		}
		tick.Stop()
		wall := time.Since(start).Seconds()
		busiest := 0.0
		for n, pr := range procs {
			busiest = max(busiest, (cpuSeconds(b, pr.cmd.Process.Pid)-cpu0[n])/wall)
		}
		rates = append(rates, float64(sent)/wall)
		cores = append(cores, busiest)
	}
	b.StopTimer()
	close(stopReader)
	rwg.Wait()
	b.ReportMetric(slices.Min(rates), "min-frames/s")
	b.ReportMetric(slices.Max(cores), "max-agent-cores")
	b.ReportMetric(float64(unowned.Load()), "unowned-replies")
	if unowned.Load() != 0 {
		b.Errorf("%d replies for addresses nobody owns", unowned.Load())
	}
	// The owned address kept being answered through the flood.
	rs := p.since(time.Now().Add(-floodFor))
	b.ReportMetric(float64(len(rs))/floodFor.Seconds(), "owned-replies/s")
	b.Logf("flood: %.0f frames/s, busiest agent %.3f cores, %d unowned replies, %d owned replies in the last %s",
		slices.Min(rates), slices.Max(cores), unowned.Load(), len(rs), floodFor)
}

// announceWithProcesses is announce with every agent a `herald agent`
// process behind a KubePrism-style proxy; restart starts a node's agent
// again.
func (c *cluster) announceWithProcesses(addr netip.Addr) (rank []string, procs map[string]*agentProcess, restart func(node string) *agentProcess) {
	c.t.Helper()
	kcs, key := c.processSetup(shared.Env(c.t).KubeconfigPath)
	c.createPolicy("^eth0$")
	c.createService("web", addr.String())
	c.extraServices()
	restart = func(node string) *agentProcess { return c.startAgentProcess(node, kcs[node], key) }
	procs = map[string]*agentProcess{}
	for _, n := range nodes {
		procs[n] = restart(n)
	}
	return placement.Rank(addr, nodes), procs, restart
}

// BenchmarkForgedHeartbeatFlood: one op = 5 s of forged heartbeats from a
// LAN host (EtherType 0x88B5, this cluster's hash, a real node's name, its
// own MAC), sent as fast as the sender manages here (bounded: at most
// 5 000 000 frames). Two kinds: signed with a key the agents do not hold
// (rejected before any HMAC), and labelled with the agents' own key but
// with a wrong MAC (one HMAC each: the worst a forger can make them do).
// Reported: frames sent per second, the busiest agent process's CPU
// (cores), and that the owner kept answering alone.
func BenchmarkForgedHeartbeatFlood(b *testing.B) {
	for _, kind := range []string{"unknown-key", "known-key-bad-mac"} {
		b.Run(kind, func(b *testing.B) { forgedFlood(b, kind) })
	}
}

func forgedFlood(b *testing.B, kind string) {
	c := newBenchCluster(b)
	addr := netip.MustParseAddr("192.168.10.75")
	rank, procs, _ := c.announceWithProcesses(addr)
	p := c.probe(addr, rank[0])
	forger := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x66}
	c.lan.AddHost(netnstest.Host{Role: "forger", MAC: forger.String()})

	key := []byte("a key the cluster does not have, 32+")
	if kind == "known-key-bad-mac" {
		key = []byte("0123456789abcdef0123456789abcdef") // processSetup's key
	}
	ring, err := membership.NewKeyring(key)
	if err != nil {
		b.Fatal(err)
	}
	codec, err := membership.NewCodec("herald", ring)
	if err != nil {
		b.Fatal(err)
	}
	// A heartbeat in rank[1]'s name claiming the address: accepted, it
	// would take the address away from its owner.
	frames, err := codec.Encode(forger, membership.Heartbeat{
		Node: rank[1], Incarnation: uint64(time.Now().UnixNano()) + 1e12, Sequence: 1, Interval: 50 * time.Millisecond,
		Eligible: []netip.Addr{addr}, Claims: []netip.Addr{addr},
	}, 0)
	if err != nil {
		b.Fatal(err)
	}
	frame := frames[0]
	if kind == "known-key-bad-mac" {
		frame[len(frame)-1] ^= 0xff
	}
	var conn *packet.Conn
	if err := c.lan.In("forger", func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, membership.EtherType, nil)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	const (
		floodFor = 5 * time.Second
		maxSent  = 5_000_000
	)
	var rates, cores []float64
	var start0 time.Time
	b.ResetTimer()
	for i := range b.N {
		cpu0 := map[string]float64{}
		for n, pr := range procs {
			cpu0[n] = cpuSeconds(b, pr.cmd.Process.Pid)
		}
		start := time.Now()
		if i == 0 {
			start0 = start
		}
		sent := 0
		for time.Since(start) < floodFor && sent < maxSent {
			for range 1000 {
				if _, err := conn.WriteTo(frame, bcast); err == nil {
					sent++
				}
			}
		}
		wall := time.Since(start).Seconds()
		busiest := 0.0
		for n, pr := range procs {
			busiest = max(busiest, (cpuSeconds(b, pr.cmd.Process.Pid)-cpu0[n])/wall)
		}
		rates = append(rates, float64(sent)/wall)
		cores = append(cores, busiest)
	}
	b.StopTimer()
	others := 0
	rs := p.since(start0)
	for _, r := range rs {
		if r.mac != c.macs[rank[0]] {
			others++
		}
	}
	if others > 0 {
		b.Errorf("%d replies from a node other than the owner %s during the flood", others, rank[0])
	}
	b.ReportMetric(slices.Min(rates), "min-frames/s")
	b.ReportMetric(slices.Max(cores), "max-agent-cores")
	b.ReportMetric(float64(len(rs))/time.Since(start0).Seconds(), "owner-replies/s")
	b.Logf("%s: %.0f forged frames/s, busiest agent %.3f cores, owner answered %d probes, others %d",
		kind, slices.Min(rates), slices.Max(cores), len(rs), others)
}
