//go:build linux

package membership

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The segment tests run 100 ms × 3 rather than the defaults (50 ms × 6):
// the same detection time with fewer frames, and round numbers in the
// timing bounds below.
const (
	interval  = 100 * time.Millisecond
	deadAfter = 3
)

func TestNewValidates(t *testing.T) {
	ok := Config{Interface: "lo", Node: "n1", ClusterID: "c", Keys: testRing(t, testKey)}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no interface", func(c *Config) { c.Interface = "" }, "no interface"},
		{"bad node", func(c *Config) { c.Node = "a b" }, "node name"},
		{"no cluster", func(c *Config) { c.ClusterID = "" }, "cluster"},
		{"no keys", func(c *Config) { c.Keys = nil }, "no heartbeat keys"},
		{"empty keyring", func(c *Config) { c.Keys = &Keyring{} }, "no heartbeat keys"},
		{"interval too short", func(c *Config) { c.Interval = time.Millisecond }, "interval"},
		{"interval not whole ms", func(c *Config) { c.Interval = 100*time.Millisecond + 1 }, "interval"},
		{"DeadAfter negative", func(c *Config) { c.DeadAfter = -1 }, "DeadAfter"},
		{"no such interface", func(c *Config) { c.Interface = "herald-nonexistent0" }, "interface"},
		{"not Ethernet", func(c *Config) {}, "no Ethernet address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestSegment walks one segment through join, link failure, rejoin and
// graceful leave, at 100 ms × DeadAfter 3.
func TestSegment(t *testing.T) {
	s := newSegment(t, 3)
	var ms []*testMember
	for i := range 3 {
		ms = append(ms, s.start(i, nil))
	}
	everyone := func() bool {
		return ms[0].sees("node2", "node3") && ms[1].sees("node1", "node3") && ms[2].sees("node1", "node2")
	}
	// Each Member sends at once when it starts, so the mesh forms within
	// about one interval; the bound leaves room for a loaded machine.
	d := waitFor(t, 5*time.Second, "full mesh", everyone)
	t.Logf("all three see each other %v after the last one started", d)
	if d > 10*interval {
		t.Errorf("full mesh took %v, more than 10 intervals", d)
	}
	d = waitFor(t, 2*time.Second, "settled", func() bool {
		return ms[0].Snapshot().Settled && ms[1].Snapshot().Settled && ms[2].Snapshot().Settled
	})
	t.Logf("settled %v later", d)

	// Pull node3's cable. The link goes down somewhere inside the ip
	// command (which may take tens of milliseconds on a loaded machine),
	// so deaths are timed from both ends of it.
	cmd := time.Now()
	s.link(2, false)
	down := time.Now()
	var othersAt, node3At time.Time
	waitFor(t, 3*time.Second, "node3 dead at node1, node2 and vice versa", func() bool {
		if othersAt.IsZero() && ms[0].sees("node2") && ms[1].sees("node1") {
			othersAt = time.Now()
		}
		if node3At.IsZero() && ms[2].sees() {
			node3At = time.Now()
		}
		return !othersAt.IsZero() && !node3At.IsZero()
	})
	t.Logf("link down (ip took %v): peers declared node3 dead after %v, node3 declared them dead after %v",
		down.Sub(cmd), othersAt.Sub(down), node3At.Sub(down))
	// The last heartbeat was at most one interval before the link went
	// down, and a peer dies 3.5 intervals after its last heartbeat (plus
	// one 10 ms check): expect 250..360 ms. The lower bound is exact (a
	// loaded machine only delays deaths), counted from the start of the
	// ip command so that its duration cannot fake a premature death; the
	// upper one, counted from its end, leaves 250 ms for scheduling.
	for _, at := range []time.Time{othersAt, node3At} {
		if d := at.Sub(cmd); d < 2*interval+interval/2-5*time.Millisecond {
			t.Errorf("death declared %v after the link went down: premature (fewer than 3 heartbeats missed)", d)
		}
		if d := at.Sub(down); d > 3*interval+interval/2+250*time.Millisecond {
			t.Errorf("death declared %v after the link went down: much later than DeadAfter+½ intervals", d)
		}
	}
	for i, m := range ms {
		want := 1.0
		if i == 2 {
			want = 2
		}
		if got := testutil.ToFloat64(m.met.deaths); got != want {
			t.Errorf("node%d peer deaths = %v, want %v", i+1, got, want)
		}
	}

	// Plug it back in.
	s.link(2, true)
	d = waitFor(t, 3*time.Second, "rejoin", everyone)
	t.Logf("link up: full mesh again after %v", d)

	// Graceful leave of node2: the first leaving heartbeat goes out inside
	// Leave, so peers know before the next periodic one.
	called := time.Now()
	leaveErr := make(chan error, 1)
	go func() { leaveErr <- ms[1].Leave(context.Background()) }()
	leaving := func(m *testMember) bool { p, ok := m.peer("node2"); return ok && p.Leaving }
	waitFor(t, time.Second, "peers see node2 leaving", func() bool { return leaving(ms[0]) && leaving(ms[2]) })
	d = time.Since(called)
	if err := <-leaveErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("leave: peers saw the leaving flag %v after Leave was called (Leave took %v)", d, time.Since(called))
	if d > interval {
		t.Errorf("leaving flag took %v, want it at once (before the next heartbeat)", d)
	}
	if !ms[1].Snapshot().Leaving {
		t.Error("own snapshot does not say leaving")
	}
	ms[1].stop()
	d = waitFor(t, 2*time.Second, "node2 gone", func() bool { return ms[0].sees("node3") && ms[2].sees("node1") })
	t.Logf("node2 stopped: dead at its peers after %v", d)
}

// TestStateTravels: eligibility and claims too large for one frame reach
// peers complete, and a change goes out at once: with a 10 s interval,
// seeing it within the first seconds can only be the triggered heartbeat.
func TestStateTravels(t *testing.T) {
	s := newSegment(t, 2)
	slow := func(c *Config) { c.Interval = 10 * time.Second }
	a, b := s.start(0, slow), s.start(1, slow)
	// Each wait below gives up after 5 s, before any periodic heartbeat
	// after the one sent at start (10 s later), so what the peer sees came
	// from heartbeats triggered by SetState.

	elig := append(seqAddrs("10.20.0.0", 1000), seqAddrs("2001:db8:20::", 100)...)
	claims := slices.Concat(seqAddrs("10.20.0.0", 50), seqAddrs("2001:db8:20::", 5))
	frames, err := a.encode(Heartbeat{Sequence: 1, Eligible: elig, Claims: claims})
	if err != nil {
		t.Fatal(err)
	}
	sentBefore := testutil.ToFloat64(a.met.sent)
	if err := a.SetState(elig, claims); err != nil {
		t.Fatal(err)
	}
	hasState := func(e, c []netip.Addr) func() bool {
		return func() bool {
			p, ok := b.peer("node1")
			return ok && slices.Equal(p.Eligible, e) && slices.Equal(p.Claims, c)
		}
	}
	d := waitFor(t, 5*time.Second, "peer sees the full state", hasState(elig, claims))
	// The sender counts a frame after the kernel took it, so the peer may
	// have it before the count does.
	waitFor(t, time.Second, "frames counted", func() bool { return testutil.ToFloat64(a.met.sent)-sentBefore >= float64(len(frames)) })
	sent := testutil.ToFloat64(a.met.sent) - sentBefore
	t.Logf("1100 eligible / 55 claims: %d frames per heartbeat, seen complete by the peer %v after SetState", len(frames), d)
	if len(frames) != 5 || sent < float64(len(frames)) {
		t.Errorf("heartbeat of %d parts, %v frames sent; want 5 parts sent", len(frames), sent)
	}

	// A quick second change is rate-limited but not lost.
	claims2 := claims[:10]
	_ = a.SetState(elig, claims[:20])
	if err := a.SetState(elig, claims2); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, 5*time.Second, "peer sees the second change", hasState(elig, claims2))
	t.Logf("second change seen after %v", d)

	// Too much state is refused without changing anything.
	if err := a.SetState(seqAddrs("2001:db8:30::", 84*MaxParts+1), nil); err == nil {
		t.Error("SetState accepted more addresses than MaxParts frames hold")
	}
	if err := a.SetState([]netip.Addr{{}}, nil); err == nil {
		t.Error("SetState accepted an invalid address")
	}
	if got := a.Snapshot().Claims; !slices.Equal(got, claims2) {
		t.Errorf("failed SetState changed claims to %v", got)
	}
}

// TestForeignFramesDropped: a Member with another key, and one of another
// cluster, share the segment; their frames are dropped and counted, and
// never make a peer.
func TestForeignFramesDropped(t *testing.T) {
	s := newSegment(t, 2)
	a, b := s.start(0, nil), s.start(1, nil)
	intruder := s.start(1, func(c *Config) {
		c.Node = "intruder"
		c.Keys = testRing(t, "not the cluster key, 32 bytes...")
	})
	neighbour := s.start(1, func(c *Config) {
		c.Node = "neighbour"
		c.ClusterID = "another-cluster"
	})
	waitFor(t, 5*time.Second, "mesh", func() bool { return a.sees("node2") && b.sees("node1") })
	waitFor(t, 5*time.Second, "10 forged frames dropped", func() bool {
		return a.dropped(dropAuth) >= 10 && a.dropped(dropCluster) >= 10
	})
	// Another interval later still nobody accepted them.
	time.Sleep(interval)
	if !a.sees("node2") {
		t.Errorf("node1 sees %v", a.peers())
	}
	if len(intruder.peers()) != 0 || len(neighbour.peers()) != 0 {
		t.Errorf("intruder sees %v, neighbour sees %v", intruder.peers(), neighbour.peers())
	}
	if intruder.dropped(dropAuth) < 5 {
		t.Errorf("intruder dropped %v frames of the real cluster as auth failures", intruder.dropped(dropAuth))
	}
	t.Logf("node1 dropped auth=%v cluster=%v; intruder dropped auth=%v", a.dropped(dropAuth), a.dropped(dropCluster), intruder.dropped(dropAuth))

	// The series are on the caller's registry with the interface label.
	fams, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
		for _, m := range f.GetMetric() {
			iface := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "interface" {
					iface = l.GetValue()
				}
			}
			if iface != "eth0" {
				t.Errorf("%s has labels %v", f.GetName(), m.GetLabel())
			}
		}
	}
	for _, n := range []string{"herald_membership_peers", "herald_membership_heartbeats_sent_total",
		"herald_membership_heartbeats_received_total", "herald_membership_heartbeats_dropped_total",
		"herald_membership_peer_deaths_total", "herald_membership_heartbeats_unverified_total",
		"herald_membership_key_mismatch_total", "herald_membership_key_info"} {
		if !have[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	if got := testutil.ToFloat64(a.met.peers); got != 1 {
		t.Errorf("herald_membership_peers = %v, want 1", got)
	}
	// A second Member on the same registry shares the series.
	if _, err := newMetrics(a.reg); err != nil {
		t.Errorf("second registration on one registry: %v", err)
	}
}

// TestReplayDropped captures a real heartbeat off the wire and sends it
// again: peers drop it as a replay, both while its sender lives and after
// it died (a replay cannot resurrect a dead node).
func TestReplayDropped(t *testing.T) {
	s := newSegment(t, 3)
	a, b := s.start(0, nil), s.start(1, nil)
	s.start(2, nil)
	waitFor(t, 2*time.Second, "mesh", func() bool { return b.sees("node1", "node3") })

	// A raw socket in node3's namespace sees node1's frames (and can send).
	conn := inNetns(t, s.nodes[2], func() (*packet.Conn, error) {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return nil, err
		}
		return packet.Listen(ifi, packet.Raw, EtherType, nil)
	})
	defer conn.Close()
	c := testCodec(t)
	var captured []byte
	buf := make([]byte, 2048)
	deadline := time.Now().Add(2 * time.Second)
	for captured == nil && time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		if f, err := c.Decode(buf[:n]); err == nil && f.Node == "node1" {
			captured = slices.Clone(buf[:n])
		}
	}
	if captured == nil {
		t.Fatal("captured no heartbeat of node1")
	}
	time.Sleep(2 * interval) // node1 has sent newer ones since

	replay := func() {
		t.Helper()
		if _, err := conn.WriteTo(captured, &packet.Addr{HardwareAddr: GroupAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	before := b.dropped(dropReplay)
	replay()
	waitFor(t, time.Second, "replay dropped by node2", func() bool { return b.dropped(dropReplay) == before+1 })
	if a.dropped(dropReplay) != 0 {
		t.Errorf("node1 counted its own frame as a replay")
	}

	// Kill node1; once it is dead, its old frame must not revive it.
	a.stop()
	waitFor(t, 2*time.Second, "node1 dead at node2", func() bool { return b.sees("node3") })
	before = b.dropped(dropReplay)
	replay()
	waitFor(t, time.Second, "replay of a dead node dropped", func() bool { return b.dropped(dropReplay) == before+1 })
	time.Sleep(interval)
	if !b.sees("node3") {
		t.Errorf("replay revived node1: node2 sees %v", b.peers())
	}
}

// TestNoFalseDeathUnderLoss runs three nodes for 10 s with 5% of heartbeat
// frames dropped at random (independently per frame and receiver).
//
// Why 50 ms × DeadAfter 6 and not the defaults: a false death needs
// DeadAfter consecutive losses, which start at a given heartbeat with
// probability (1-p)·p^D. Over this test's 6 (sender, receiver) pairs:
//
//	100 ms, D=3: 100 heartbeats/pair × 6 × 0.95·0.05³ ≈ 0.071 expected
//	             false deaths → the test would fail about 7% of runs;
//	 50 ms, D=6: 200 × 6 × 0.95·0.05⁶ ≈ 1.8e-5 → about 1 run in 56,000.
//
// Both settings declare a dead peer after about the same time (350 vs
// 325 ms), so the second is what a lossy segment should run; the defaults
// suit ordinary LANs (loss ≪ 1%). The test also measures the loss it
// injected, so that it cannot pass by accident with no loss at all.
func TestNoFalseDeathUnderLoss(t *testing.T) {
	s := newSegment(t, 3)
	addLoss(t, s.bridge, 20)
	fast := func(c *Config) { c.Interval = 50 * time.Millisecond; c.DeadAfter = 6 }
	ms := []*testMember{s.start(0, fast), s.start(1, fast), s.start(2, fast)}
	waitFor(t, 3*time.Second, "mesh", func() bool {
		return ms[0].sees("node2", "node3") && ms[1].sees("node1", "node3") && ms[2].sees("node1", "node2")
	})
	counters := func() (sent, recv [3]float64) {
		for i, m := range ms {
			sent[i] = testutil.ToFloat64(m.met.sent)
			recv[i] = testutil.ToFloat64(m.met.received)
		}
		return
	}
	sent0, recv0 := counters()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		for i, m := range ms {
			if len(m.peers()) != 2 {
				t.Fatalf("node%d sees only %v under 5%% loss", i+1, m.peers())
			}
		}
	}
	sent1, recv1 := counters()
	var expected, got float64
	for i := range ms {
		got += recv1[i] - recv0[i]
		for j := range ms {
			if j != i {
				expected += sent1[j] - sent0[j]
			}
		}
	}
	loss := 1 - got/expected
	t.Logf("10 s at 50 ms × 6: %v of %v frames arrived, measured loss %.1f%%", got, expected, 100*loss)
	if loss < 0.02 || loss > 0.09 {
		t.Errorf("measured loss %.1f%%, want about 5%%: the loss rule did not work as intended", 100*loss)
	}
	for i, m := range ms {
		if d := testutil.ToFloat64(m.met.deaths); d != 0 {
			t.Errorf("node%d declared %v false deaths", i+1, d)
		}
	}
}
