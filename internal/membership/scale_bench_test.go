//go:build linux

package membership

// The heartbeat cost benchmarks of docs/benchmarks.md ("Heartbeats at
// scale"). They use only what every frame version has (Config, New, Run,
// SetState, Snapshot, the send and handle paths, the metrics, idleBeat),
// so that the same file measures the previous version too: copy it and
// beat_shim_test.go (with idleBeat returning hb unchanged) into a
// checkout of the previous commit.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/netnsenter"
	"github.com/herald-lb/herald/internal/netnstest"
)

// scaleChildEnv makes the test binary run as the measured node of
// BenchmarkHeartbeatScale (see scaleChild) instead of running tests.
const scaleChildEnv = "HERALD_MEMBERSHIP_SCALE_CHILD"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(scaleChildEnv); cfg != "" {
		os.Exit(scaleChild(cfg))
	}
	os.Exit(m.Run())
}

// quietLogger discards logs.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// benchMember creates (without running) a Member on ifname in namespace
// ns.
func benchMember(tb testing.TB, ns, ifname, node string, interval time.Duration, deadAfter int) *Member {
	tb.Helper()
	var m *Member
	if err := netnsenter.DoNamed(ns, func() (err error) {
		m, err = New(Config{
			Interface: ifname, Node: node, ClusterID: testCluster, Keys: testRing(tb, testKey),
			Interval: interval, DeadAfter: deadAfter, Logger: quietLogger(),
		})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// run runs m until the benchmark ends.
func run(tb testing.TB, m *Member) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
}

// BenchmarkBeatSend is the cost of one periodic heartbeat of a node whose
// state did not change (idle), with 10 and 10 000 addresses (each
// eligible, a tenth claimed), from building it to the last frame handed to
// the kernel; and of one heartbeat right after a change (SetState of
// another state, then the heartbeat).
func BenchmarkBeatSend(b *testing.B) {
	l := netnstest.New(b, nsPrefix, netnstest.Host{Role: "a"}, netnstest.Host{Role: "b"})
	for _, n := range []int{10, 10000} {
		elig := seqAddrs("10.70.0.0", n)
		other := seqAddrs("10.90.0.0", n)
		b.Run(fmt.Sprintf("idle/addrs=%d", n), func(b *testing.B) {
			m := benchMember(b, l.Namespace("a"), "eth0", "node-a", DefaultInterval, DefaultDeadAfter)
			if err := m.SetState(elig, elig[:n/10]); err != nil {
				b.Fatal(err)
			}
			for range 6 { // past the full states that follow a change
				_ = m.send()
			}
			sent0 := testutil.ToFloat64(m.met.sent)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := m.send(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric((testutil.ToFloat64(m.met.sent)-sent0)/float64(b.N), "frames/beat")
		})
		b.Run(fmt.Sprintf("change/addrs=%d", n), func(b *testing.B) {
			m := benchMember(b, l.Namespace("a"), "eth0", "node-a", DefaultInterval, DefaultDeadAfter)
			sent0 := testutil.ToFloat64(m.met.sent)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				st := elig
				if i%2 == 1 {
					st = other
				}
				if err := m.SetState(st, st[:n/10]); err != nil {
					b.Fatal(err)
				}
				if err := m.send(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric((testutil.ToFloat64(m.met.sent)-sent0)/float64(b.N), "frames/beat")
		})
	}
}

// BenchmarkBeatReceive is the cost of receiving one periodic heartbeat
// (all its frames: decode, authenticate, apply) from a live peer whose
// state did not change, with 10 and 10 000 addresses.
func BenchmarkBeatReceive(b *testing.B) {
	l := netnstest.New(b, nsPrefix, netnstest.Host{Role: "a"})
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("addrs=%d", n), func(b *testing.B) {
			m := benchMember(b, l.Namespace("a"), "eth0", "self", DefaultInterval, DefaultDeadAfter)
			c := testCodec(b)
			elig := seqAddrs("10.70.0.0", n)
			peer := Heartbeat{
				Node: "peer", Incarnation: 7, Sequence: 1, Interval: DefaultInterval,
				Eligible: elig, Claims: elig[:n/10],
				Echoes: []Token{IdentityToken("self", m.Incarnation())},
			}
			frames, err := c.Encode(testSrc(), peer, 0)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for _, f := range frames {
				m.handle(f, now)
			}
			if p := m.Snapshot().Peers; len(p) != 1 || len(p[0].Eligible) != n {
				b.Fatalf("peer not live with its state: %+v", p)
			}
			// Heartbeats 2.. of the peer, made in batches outside the
			// timer (each needs its own sequence number).
			idle := idleBeat(peer)
			idle.Echoes = nil
			var batch [][][]byte
			seq := uint64(1)
			refill := func() {
				batch = batch[:0]
				for range 512 {
					seq++
					idle.Sequence = seq
					fs, err := c.Encode(testSrc(), idle, 0)
					if err != nil {
						b.Fatal(err)
					}
					batch = append(batch, fs)
				}
			}
			refill()
			received0 := testutil.ToFloat64(m.met.received)
			frames0 := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%len(batch) == 0 && i > 0 {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				for _, f := range batch[i%len(batch)] {
					m.handle(f, now)
					frames0++
				}
			}
			b.StopTimer()
			if got := testutil.ToFloat64(m.met.received) - received0; got != float64(frames0) {
				b.Fatalf("%v of %d frames accepted", got, frames0)
			}
			b.ReportMetric(float64(frames0)/float64(b.N), "frames/beat")
		})
	}
}

// scaleChildConfig configures the measured node of
// BenchmarkHeartbeatScale.
type scaleChildConfig struct {
	Peers  int `json:"peers"`
	Addrs  int `json:"addrs"`
	Claims int `json:"claims"`
}

// scaleState is the state of simulated node i of n: every node eligible
// for the same addrs addresses (plus one more while toggled, as when a
// Service is added), node i claiming the i-th n-th of them.
func scaleState(i, n, addrs int, toggled bool) (elig, claims []netip.Addr) {
	elig = seqAddrs("10.60.0.0", addrs)
	per := addrs / n
	claims = slices.Clone(elig[i*per : (i+1)*per])
	if toggled {
		elig = append(elig, netip.MustParseAddr("10.61.0.1"))
	}
	return elig, claims
}

// scaleChild is the measured node: a Member on eth0 of the namespace it
// runs in, with the state of node 0 of peers+1. It prints "ready" once it
// sees every peer with its full state, toggles its state once per second
// after reading "changes" on its standard input, and exits at the end of
// its input.
func scaleChild(cfgJSON string) int {
	var cfg scaleChildConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Println("error", err)
		return 2
	}
	ring, err := NewKeyring([]byte(testKey))
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	m, err := New(Config{Interface: "eth0", Node: "hub", ClusterID: testCluster, Keys: ring, Logger: quietLogger()})
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	n := cfg.Peers + 1
	elig, claims := scaleState(0, n, cfg.Addrs, false)
	if err := m.SetState(elig, claims); err != nil {
		fmt.Println("error", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	start := time.Now()
	go func() {
		for {
			ps := m.Snapshot().Peers
			ok := len(ps) == cfg.Peers
			for _, p := range ps {
				ok = ok && len(p.Eligible) >= cfg.Addrs
			}
			if ok {
				fmt.Printf("ready %d\n", time.Since(start).Milliseconds())
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "changes" {
			go func() {
				toggled := false
				for {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
					toggled = !toggled
					e, c := scaleState(0, n, cfg.Addrs, toggled)
					_ = m.SetState(e, c)
				}
			}()
		}
	}
	cancel()
	<-done
	return 0
}

// cpuTicks returns the user+system CPU time of process pid, in clock
// ticks (1/100 s).
func cpuTicks(tb testing.TB, pid int) int {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// wireCount counts heartbeat frames and bytes per Ethernet source.
type wireCount struct {
	mu     sync.Mutex
	frames map[string]int
	bytes  map[string]int
}

func (w *wireCount) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames, w.bytes = map[string]int{}, map[string]int{}
}

func (w *wireCount) totals() (frames, bytes int, sources int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for src, n := range w.frames {
		frames += n
		bytes += w.bytes[src]
	}
	return frames, bytes, len(w.frames)
}

// BenchmarkHeartbeatScale measures what heartbeats cost a segment of 3, 30
// and 100 nodes, each eligible for the same 1000 addresses and claiming
// its share, at the default 50 ms × 6: idle for 10 s, then for 10 s with
// every node's state changing once per second (an address added or
// removed, as when a Service comes or goes).
//
// Topology: the measured node ("hub", a child process, so that its CPU
// time is its own) on a veth whose other end, in a second namespace,
// carries one macvlan device per simulated node in private mode. The hub
// hears every simulated node, as on a switch; the simulated nodes hear the
// hub but not each other, which spares this 2-core machine the n² frame
// receptions of a full mesh (what each node sends does not depend on it).
// Frames and bytes are counted on the hub's veth, in both directions.
func BenchmarkHeartbeatScale(b *testing.B) {
	for _, n := range []int{3, 30, 100} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for range b.N {
				scaleRun(b, n, 1000, 10*time.Second)
			}
		})
	}
}

func scaleRun(b *testing.B, n, addrs int, window time.Duration) {
	netnstest.Require(b, nsPrefix)
	id := fmt.Sprintf("%s%d-%04x", nsPrefix, os.Getpid(), rand.Uint32()&0xffff)
	hub, sim := id+"-hub", id+"-sim"
	b.Cleanup(func() {
		for _, ns := range []string{hub, sim} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, args := range [][]string{
		{"netns", "add", hub}, {"netns", "add", sim},
		{"-n", hub, "link", "add", "eth0", "type", "veth", "peer", "name", "up0", "netns", sim},
		{"-n", hub, "link", "set", "eth0", "up"},
	} {
		netnstest.Run(b, append([]string{"ip"}, args...)...)
	}
	var batch strings.Builder
	batch.WriteString("link set up0 up\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&batch, "link add s%d link up0 type macvlan mode private\nlink set s%d up\n", i, i)
	}
	cmd := exec.Command("ip", "-n", sim, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ip -batch: %v: %s", err, out)
	}

	// The simulated nodes.
	var sims []*Member
	for i := 1; i < n; i++ {
		m := benchMember(b, sim, fmt.Sprintf("s%d", i), fmt.Sprintf("sim%03d", i), DefaultInterval, DefaultDeadAfter)
		e, c := scaleState(i, n, addrs, false)
		if err := m.SetState(e, c); err != nil {
			b.Fatal(err)
		}
		run(b, m)
		sims = append(sims, m)
	}

	// The capture: on the hub's veth, every simulated node's frames; on
	// the other end, the hub's (a socket bound to one EtherType sees
	// only the frames its device receives).
	w := &wireCount{}
	w.reset()
	var hubMAC string
	if err := netnsenter.DoNamed(hub, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		hubMAC = ifi.HardwareAddr.String()
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, end := range [][2]string{{hub, "eth0"}, {sim, "up0"}} {
		var conn *packet.Conn
		if err := netnsenter.DoNamed(end[0], func() error {
			ifi, err := net.InterfaceByName(end[1])
			if err != nil {
				return err
			}
			if conn, err = packet.Listen(ifi, packet.Raw, EtherType, nil); err != nil {
				return err
			}
			// Room for the bursts of full states (a default buffer
			// drops them, and the count would be short).
			rc, err := conn.SyscallConn()
			if err != nil {
				return err
			}
			return rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
			})
		}); err != nil {
			b.Fatal(err)
		}
		captureDone := make(chan struct{})
		go func() {
			defer close(captureDone)
			buf := make([]byte, readBufLen)
			for {
				nr, _, err := conn.ReadFrom(buf)
				if err != nil {
					return
				}
				if nr < 12 {
					continue
				}
				src := net.HardwareAddr(buf[6:12]).String()
				w.mu.Lock()
				w.frames[src]++
				w.bytes[src] += nr
				w.mu.Unlock()
			}
		}()
		defer func() { _ = conn.Close(); <-captureDone }()
	}

	// The hub.
	cfg, _ := json.Marshal(scaleChildConfig{Peers: n - 1, Addrs: addrs})
	child := exec.Command("ip", "netns", "exec", hub, os.Args[0])
	child.Env = append(os.Environ(), scaleChildEnv+"="+string(cfg))
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "ready") {
			b.Fatalf("hub: %s", l)
		}
		b.Logf("nodes=%d: hub knew every peer's full state %s ms after it started", n, strings.TrimPrefix(l, "ready "))
	case <-time.After(60 * time.Second):
		b.Fatal("hub not ready after 60 s")
	}
	// Past the hub's settling, its challenges, echoes and the repeats of
	// the full states it asked for.
	time.Sleep(time.Second)

	measure := func(phase string) {
		w.reset()
		t0 := cpuTicks(b, child.Process.Pid)
		start := time.Now()
		time.Sleep(window)
		el := time.Since(start).Seconds()
		cpu := float64(cpuTicks(b, child.Process.Pid)-t0) / 100 / el
		frames, bytes, sources := w.totals()
		w.mu.Lock()
		hubFrames, hubBytes := w.frames[hubMAC], w.bytes[hubMAC]
		w.mu.Unlock()
		recvFrames := float64(frames-hubFrames) / el
		b.ReportMetric(float64(frames)/el/float64(n), phase+"-frames/s/node")
		b.ReportMetric(float64(bytes)/el/float64(n), phase+"-bytes/s/node")
		b.ReportMetric(recvFrames, phase+"-hub-recv-frames/s")
		b.ReportMetric(cpu, phase+"-hub-cpu-cores")
		b.Logf("nodes=%d %s: %d sources; per node %.1f frames/s, %.0f bytes/s (hub itself %.1f frames/s, %.0f bytes/s); hub receives %.0f frames/s, %.0f bytes/s, using %.4f cores",
			n, phase, sources, float64(frames)/el/float64(n), float64(bytes)/el/float64(n),
			float64(hubFrames)/el, float64(hubBytes)/el, recvFrames, float64(bytes-hubBytes)/el, cpu)
	}
	measure("idle")

	// Changes: every node toggles one address once per second.
	if _, err := io.WriteString(stdin, "changes\n"); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		toggled := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			toggled = !toggled
			for i, m := range sims {
				e, c := scaleState(i+1, n, addrs, toggled)
				_ = m.SetState(e, c)
			}
		}
	})
	time.Sleep(500 * time.Millisecond)
	measure("changes")
	cancel()
	wg.Wait()
}

// BenchmarkFalseDeaths runs three nodes on a bridge losing 1 % of frames
// at random (independently per frame and output port) and counts the
// peers declared dead. With independent loss p, a false death needs
// DeadAfter consecutive heartbeats lost: per heartbeat and (sender,
// receiver) pair it starts with probability (1-p)·p^DeadAfter. The
// defaults (50 ms × 6) run for 60 s, where that predicts none; 20 ms × 1
// runs for 30 s, where every lost heartbeat is a death, to check the
// arithmetic — and that a heartbeat without the lists proves liveness like
// one with them. Each node's state is 10 addresses (one frame in every
// version).
func BenchmarkFalseDeaths(b *testing.B) {
	for _, tc := range []struct {
		name      string
		interval  time.Duration
		deadAfter int
		run       time.Duration
	}{
		{"50msx6", 50 * time.Millisecond, 6, 60 * time.Second},
		{"20msx1", 20 * time.Millisecond, 1, 30 * time.Second},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				falseDeaths(b, tc.interval, tc.deadAfter, tc.run)
			}
		})
	}
}

func falseDeaths(b *testing.B, interval time.Duration, deadAfter int, d time.Duration) {
	const p, every = 0.01, 100
	l := netnstest.New(b, nsPrefix, netnstest.Host{Role: "n1"}, netnstest.Host{Role: "n2"}, netnstest.Host{Role: "n3"})
	var ms []*Member
	for i, role := range []string{"n1", "n2", "n3"} {
		m := benchMember(b, l.Namespace(role), "eth0", role, interval, deadAfter)
		a := seqAddrs(fmt.Sprintf("10.80.%d.0", i), 10)
		if err := m.SetState(a, a[:3]); err != nil {
			b.Fatal(err)
		}
		run(b, m)
		ms = append(ms, m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, m := range ms {
			ok = ok && len(m.Snapshot().Peers) == 2
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no mesh")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	l.AddLoss(every)
	counters := func() (sent, recv, deaths float64) {
		for _, m := range ms {
			sent += testutil.ToFloat64(m.met.sent)
			recv += testutil.ToFloat64(m.met.received)
			deaths += testutil.ToFloat64(m.met.deaths)
		}
		return
	}
	s0, r0, d0 := counters()
	start := time.Now()
	time.Sleep(d)
	el := time.Since(start)
	s1, r1, d1 := counters()
	sent, recv, deaths := s1-s0, r1-r0, d1-d0
	loss := 1 - recv/(2*sent)
	// Heartbeats per pair: frames sent per node, each heard by two peers.
	beatPairs := 2 * sent
	predict := func(p float64) float64 {
		pd := 1.0
		for range deadAfter {
			pd *= p
		}
		return beatPairs * (1 - p) * pd
	}
	b.ReportMetric(deaths, "deaths")
	b.ReportMetric(predict(loss), "expected-deaths")
	b.ReportMetric(100*loss, "loss-%")
	b.Logf("%v × %d at %.2f %% measured loss (1 %% set) for %v: %.0f heartbeats × (sender, receiver) pairs, %v false deaths; (1-p)·p^%d predicts %.3g with the measured p, %.3g with p = 1 %%",
		interval, deadAfter, 100*loss, el.Round(time.Second), beatPairs, deaths, deadAfter, predict(loss), predict(p))
}

// BenchmarkChangeUnderLoss: node1 alternates between two states of 1000
// addresses (four frames each) every 250 ms for 60 s on a bridge losing 1
// % of frames, at the default 50 ms × 6; nodes 2 and 3 record when each
// change reaches them. What a lost frame costs a change: the delay
// distribution.
func BenchmarkChangeUnderLoss(b *testing.B) {
	for range b.N {
		changeUnderLoss(b, 250*time.Millisecond, 60*time.Second)
	}
}

func changeUnderLoss(b *testing.B, every, d time.Duration) {
	l := netnstest.New(b, nsPrefix, netnstest.Host{Role: "n1"}, netnstest.Host{Role: "n2"}, netnstest.Host{Role: "n3"})
	var ms []*Member
	for _, role := range []string{"n1", "n2", "n3"} {
		m := benchMember(b, l.Namespace(role), "eth0", role, DefaultInterval, DefaultDeadAfter)
		run(b, m)
		ms = append(ms, m)
	}
	states := [2][]netip.Addr{seqAddrs("10.60.0.0", 1000), seqAddrs("10.62.0.0", 1000)}
	if err := ms[0].SetState(states[0], states[0][:100]); err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	l.AddLoss(100)

	var mu sync.Mutex
	setAt := map[int]time.Time{}
	var delays []time.Duration
	seen := [2]map[int]bool{{}, {}}
	current := 0
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r, m := range ms[1:] {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case s := <-m.Updates():
					now := time.Now()
					for _, p := range s.Peers {
						if p.Node != "n1" || len(p.Claims) == 0 {
							continue
						}
						mu.Lock()
						want := states[current%2][0]
						if p.Claims[0] == want && !seen[r][current] {
							if at, ok := setAt[current]; ok {
								seen[r][current] = true
								delays = append(delays, now.Sub(at))
							}
						}
						mu.Unlock()
					}
				}
			}
		})
	}
	end := time.Now().Add(d)
	for i := 1; time.Now().Before(end); i++ {
		mu.Lock()
		current = i
		setAt[i] = time.Now()
		mu.Unlock()
		st := states[i%2]
		if err := ms[0].SetState(st, st[:100]); err != nil {
			b.Fatal(err)
		}
		time.Sleep(every)
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	changes := 2 * (current - 1)
	if len(delays) == 0 {
		b.Fatal("no change seen")
	}
	q := func(f float64) time.Duration { return delays[min(len(delays)-1, int(f*float64(len(delays))))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(delays[len(delays)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(changes-len(delays)), "missed")
	b.Logf("%d (change, receiver) pairs at 1%% loss: %d seen before the next change; delay p50 %v, p90 %v, p99 %v, max %v",
		changes, len(delays), q(0.5).Round(10*time.Microsecond), q(0.9).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), delays[len(delays)-1].Round(10*time.Microsecond))
}
