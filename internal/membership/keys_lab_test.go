//go:build linux

package membership

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/herald-lb/herald/internal/testrequire"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// withKeys sets a Member's keyring.
func withKeys(t *testing.T, keys ...string) func(*Config) {
	return func(c *Config) { c.Keys = testRing(t, keys...) }
}

// watch samples the members' snapshots every 3 ms until stop is called,
// and returns what check said of every sample that failed it.
func watch(ms []*testMember, check func(i int, s Snapshot) error) (stop func() []string) {
	var (
		mu   sync.Mutex
		bad  []string
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for i, m := range ms {
				if err := check(i, m.Snapshot()); err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), m.cfg.Node, err))
					mu.Unlock()
				}
			}
		}
	})
	return func() []string {
		close(done)
		wg.Wait()
		return bad
	}
}

// names returns the names of a snapshot's peers.
func names(s Snapshot) []string {
	var out []string
	for _, p := range s.Peers {
		out = append(out, p.Node)
	}
	return out
}

// reportBad fails the test with (the first ten of) what watch found.
func reportBad(t *testing.T, what string, bad []string) {
	t.Helper()
	for i, b := range bad {
		if i == 10 {
			t.Errorf("… and %d more", len(bad)-10)
			return
		}
		t.Errorf("%s: %s", what, b)
	}
}

// peerFingerprints returns, per peer of m, its fingerprints.
func (m *testMember) peerFingerprints() map[string][]string {
	out := map[string][]string{}
	for _, p := range m.Snapshot().Peers {
		out[p.Node] = p.Fingerprints
	}
	return out
}

// keyInfo returns the fingerprints of m's herald_membership_key_info
// series.
func (m *testMember) keyInfo(t *testing.T) []string {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
		if f.GetName() != "herald_membership_key_info" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "fingerprint" && s.GetGauge().GetValue() == 1 {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestKeyRotation rotates the key of a running three-node segment the way
// an operator does, each agent loading each version of the Secret at a
// different time: {k1} → {k1,k2} → {k2}. Sampled every 3 ms, no member
// ever misses a peer or reports a mismatch, and no death is counted.
func TestKeyRotation(t *testing.T) {
	s := newSegment(t, 3)
	var ms []*testMember
	for i := range 3 {
		ms = append(ms, s.start(i, withKeys(t, testKey)))
	}
	want := [][]string{{"node2", "node3"}, {"node1", "node3"}, {"node1", "node2"}}
	waitFor(t, 5*time.Second, "full mesh", func() bool {
		return ms[0].sees(want[0]...) && ms[1].sees(want[1]...) && ms[2].sees(want[2]...)
	})
	fp1, fp2 := Fingerprint([]byte(testKey)), Fingerprint([]byte(testKey2))
	for _, m := range ms {
		if got := m.Snapshot().Fingerprints; !slices.Equal(got, []string{fp1}) {
			t.Fatalf("%s fingerprints %v", m.cfg.Node, got)
		}
	}

	if err := ms[0].SetKeys(nil); err == nil {
		t.Error("SetKeys accepted no keys")
	}
	stop := watch(ms, func(i int, s Snapshot) error {
		if got := names(s); !slices.Equal(got, want[i]) || s.Mismatched != nil {
			return fmt.Errorf("peers %v, mismatched %+v", got, s.Mismatched)
		}
		return nil
	})
	// Agents load each Secret version about 1.5 intervals apart, so that
	// every mixed state lasts for several heartbeats.
	gap := 3 * interval / 2
	for _, m := range ms {
		if err := m.SetKeys(testRing(t, testKey, testKey2)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
	time.Sleep(interval)
	for _, m := range ms {
		for peer, fps := range m.peerFingerprints() {
			if !slices.Equal(fps, []string{fp1, fp2}) {
				t.Errorf("after adding k2: %s sees %s signing with %v", m.cfg.Node, peer, fps)
			}
		}
		if got := m.keyInfo(t); !slices.Equal(got, sortedCopy(fp1, fp2)) {
			t.Errorf("%s key_info %v", m.cfg.Node, got)
		}
	}
	// Remove k1, in another order.
	for _, i := range []int{2, 0, 1} {
		if err := ms[i].SetKeys(testRing(t, testKey2)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap)
	}
	time.Sleep(4 * interval) // longer than a death takes
	reportBad(t, "during the rotation", stop())
	for _, m := range ms {
		if d := testutil.ToFloat64(m.met.deaths); d != 0 {
			t.Errorf("%s counted %v deaths", m.cfg.Node, d)
		}
		if a := m.dropped(dropAuth); a != 0 {
			t.Errorf("%s dropped %v frames as auth failures", m.cfg.Node, a)
		}
		for peer, fps := range m.peerFingerprints() {
			if !slices.Equal(fps, []string{fp2}) {
				t.Errorf("after removing k1: %s sees %s signing with %v", m.cfg.Node, peer, fps)
			}
		}
		if got := m.keyInfo(t); !slices.Equal(got, []string{fp2}) {
			t.Errorf("%s key_info %v after the rotation", m.cfg.Node, got)
		}
	}
}

func sortedCopy(s ...string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestKeyMismatch: node3 has another key. Each side lists the other in
// Mismatched with the other's fingerprints, neither lists it as a peer,
// the mismatch is counted per claimed name, and steady mismatching frames
// publish no snapshots. Once node3 also holds the cluster's key, it joins
// and the reports go.
func TestKeyMismatch(t *testing.T) {
	s := newSegment(t, 3)
	a, b := s.start(0, withKeys(t, testKey)), s.start(1, withKeys(t, testKey))
	c := s.start(2, withKeys(t, testKey3))
	fp1, fp3 := Fingerprint([]byte(testKey)), Fingerprint([]byte(testKey3))
	reports := func(m *testMember, fps []string, nodes ...string) bool {
		mm := m.Snapshot().Mismatched
		if len(mm) != len(nodes) {
			return false
		}
		for i, x := range mm {
			if x.Node != nodes[i] || !slices.Equal(x.Fingerprints, fps) || len(x.HardwareAddr) != 6 || x.LastHeard.IsZero() {
				return false
			}
		}
		return true
	}
	d := waitFor(t, 2*time.Second, "mismatch reported on both sides", func() bool {
		return reports(a, []string{fp3}, "node3") && reports(b, []string{fp3}, "node3") &&
			reports(c, []string{fp1}, "node1", "node2")
	})
	t.Logf("mismatch reported on both sides %v after the last start", d)
	waitFor(t, 2*time.Second, "node1 and node2 see each other", func() bool { return a.sees("node2") && b.sees("node1") })
	time.Sleep(2 * interval)
	if !a.sees("node2") || !b.sees("node1") || !c.sees() {
		t.Errorf("peers: node1 %v, node2 %v, node3 %v", a.peers(), b.peers(), c.peers())
	}
	if mac := a.Snapshot().Mismatched[0].HardwareAddr; !slices.Equal(mac, c.HardwareAddr()) {
		t.Errorf("node3 reported from %v, its address is %v", mac, c.HardwareAddr())
	}
	// Steady mismatching frames change nothing: no snapshot is published.
	waitFor(t, 2*time.Second, "node1 settled", func() bool { return a.Snapshot().Settled })
	v := a.Snapshot().Version
	time.Sleep(5 * interval)
	if got := a.Snapshot().Version; got != v {
		t.Errorf("steady mismatch published %d snapshots in 5 intervals", got-v)
	}
	// node3 sent at least one heartbeat per interval since it started.
	if n := testutil.ToFloat64(a.met.mismatch.WithLabelValues("eth0", "node3")); n < 5 {
		t.Errorf("key_mismatch_total{peer=node3} = %v", n)
	}
	if n := a.dropped(dropAuth); n < 5 {
		t.Errorf("dropped{auth} = %v", n)
	}

	// node3 loads the cluster's key next to its own: everyone joins and
	// the reports expire.
	if err := c.SetKeys(testRing(t, testKey3, testKey)); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, 2*time.Second, "full mesh without mismatches", func() bool {
		return a.sees("node2", "node3") && b.sees("node1", "node3") && c.sees("node1", "node2") &&
			a.Snapshot().Mismatched == nil && b.Snapshot().Mismatched == nil && c.Snapshot().Mismatched == nil
	})
	t.Logf("node3 joined and the mismatch reports expired %v after it loaded the key", d)
	if p, _ := a.peer("node3"); !slices.Equal(p.Fingerprints, []string{fp3, fp1}) {
		t.Errorf("node1 sees node3 signing with %v", p.Fingerprints)
	}
}

// openSwitchSocket opens a raw socket on the bridge of the segment's
// switch namespace: it sees every heartbeat crossing the switch, and a
// frame sent on it is flooded to every node.
func openSwitchSocket(t *testing.T, s *segment) *packet.Conn {
	t.Helper()
	conn := inNetns(t, s.bridge, func() (*packet.Conn, error) {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return nil, err
		}
		return packet.Listen(ifi, packet.Raw, EtherType, nil)
	})
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// capturedFrame is a frame with its arrival time relative to the capture's
// start.
type capturedFrame struct {
	at    time.Duration
	frame []byte
	f     Frame
}

// capture reads heartbeats of node from conn for d.
func capture(t *testing.T, conn *packet.Conn, node string, d time.Duration) []capturedFrame {
	t.Helper()
	c := testCodec(t)
	var out []capturedFrame
	buf := make([]byte, readBufLen)
	start := time.Now()
	for time.Since(start) < d {
		_ = conn.SetReadDeadline(time.Now().Add(d - time.Since(start)))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		if f, err := c.Decode(buf[:n]); err == nil && f.Node == node {
			out = append(out, capturedFrame{at: time.Since(start), frame: slices.Clone(buf[:n]), f: f})
		}
	}
	return out
}

// TestReplayAfterReceiverRestartLAN captures node1's real heartbeats off the
// switch, including those it sent while node2 and node3 were starting
// (which echo their tokens of the time), stops node1, restarts node2 and
// node3, and replays the captured heartbeats to them at their original
// pace. The restarted receivers have never seen these frames, so the
// replay window alone would accept them; node1 must still never appear
// among their peers, because no captured frame echoes their new tokens.
func TestReplayAfterReceiverRestartLAN(t *testing.T) {
	s := newSegment(t, 3)
	sw := openSwitchSocket(t, s)
	a := s.start(0, nil)
	var got []capturedFrame
	captured := make(chan struct{})
	go func() {
		defer close(captured)
		got = capture(t, sw, "node1", 3*time.Second)
	}()
	time.Sleep(interval)
	b, c := s.start(1, nil), s.start(2, nil)
	waitFor(t, 2*time.Second, "mesh", func() bool {
		return a.sees("node2", "node3") && b.sees("node1", "node3") && c.sees("node1", "node2")
	})
	<-captured
	echoing := 0
	for _, cf := range got {
		if len(cf.f.Echoes) > 0 {
			echoing++
		}
	}
	t.Logf("captured %d heartbeats of node1 over 3 s, %d of them echoing", len(got), echoing)
	if len(got) < 20 || echoing == 0 {
		t.Fatalf("captured %d heartbeats, %d echoing: want ≥ 20, some echoing", len(got), echoing)
	}

	a.stop()
	waitFor(t, 2*time.Second, "node1 dead", func() bool { return b.sees("node3") && c.sees("node2") })
	b.stop()
	c.stop()
	b2, c2 := s.start(1, nil), s.start(2, nil)
	if b2.Incarnation() == b.Incarnation() || c2.Incarnation() == c.Incarnation() {
		t.Fatal("restarted members kept their incarnations")
	}

	// The restarted pair may take a moment to verify each other; what
	// must never happen is node1 among their peers.
	stop := watch([]*testMember{b2, c2}, func(_ int, s Snapshot) error {
		if slices.Contains(names(s), "node1") {
			return fmt.Errorf("node1 live: peers %v", names(s))
		}
		return nil
	})
	replay := func() {
		start := time.Now()
		for _, cf := range got {
			time.Sleep(cf.at - time.Since(start))
			if _, err := sw.WriteTo(cf.frame, &packet.Addr{HardwareAddr: GroupAddr()}); err != nil {
				t.Errorf("replay: %v", err)
				return
			}
		}
	}
	replay()
	unverified := testutil.ToFloat64(b2.met.unverified)
	replayDrops := b2.dropped(dropReplay)
	replay() // the same frames again: now replays for the window too
	time.Sleep(interval)
	reportBad(t, "replayed heartbeats", stop())
	if !b2.sees("node3") || !c2.sees("node2") {
		t.Errorf("restarted members: node2 sees %v, node3 sees %v", b2.peers(), c2.peers())
	}
	if unverified < float64(len(got))/2 {
		t.Errorf("node2 counted %v unverified frames of the first replay (%d sent)", unverified, len(got))
	}
	if d := b2.dropped(dropReplay) - replayDrops; d < float64(len(got))/2 {
		t.Errorf("node2 dropped %v frames of the second replay as replays (%d sent)", d, len(got))
	}
	if b2.Snapshot().Mismatched != nil {
		t.Errorf("replayed frames reported as a key mismatch: %+v", b2.Snapshot().Mismatched)
	}
	t.Logf("node2 (restarted): %v frames unverified in the first replay, %v dropped as replays in the second; node1 never live",
		unverified, b2.dropped(dropReplay)-replayDrops)
}

// blockTo drops heartbeats the bridge forwards out of port (towards one
// node), leaving the other direction alone, until the returned func is
// called.
func blockTo(t *testing.T, bridgeNS, port string) (unblock func()) {
	t.Helper()
	h, err := netns.GetFromName(bridgeNS)
	if err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: "heraldblock"})
	ch := c.AddChain(&nftables.Chain{
		Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
	})
	ifname := make([]byte, unix.IFNAMSIZ)
	copy(ifname, port)
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x88, 0xb5}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		h.Close()
		testrequire.Missing(t, "cannot install the nftables block rule (nf_tables bridge support missing?): %v", err)
	}
	var once sync.Once
	unblock = func() {
		once.Do(func() {
			defer h.Close()
			c.DelTable(tbl)
			if err := c.Flush(); err != nil {
				t.Errorf("remove the block rule: %v", err)
			}
		})
	}
	t.Cleanup(unblock)
	return unblock
}

// TestAsymmetricReverify: node2 stops receiving (its receive path is
// cut) while node1 keeps hearing it. node2 declares node1 dead; when the
// path comes back, node1's frames arrive again with the same incarnation,
// which node2 must verify afresh. node1 never noticed anything, so only
// node2's challenge makes it echo: node2 sees node1 again within about
// one of node1's intervals, and node1 never lost node2.
func TestAsymmetricReverify(t *testing.T) {
	s := newSegment(t, 2)
	a, b := s.start(0, nil), s.start(1, nil)
	waitFor(t, 2*time.Second, "mesh", func() bool { return a.sees("node2") && b.sees("node1") })
	waitFor(t, 2*time.Second, "settled", func() bool { return a.Snapshot().Settled && b.Snapshot().Settled })

	unblock := blockTo(t, s.bridge, "v2")
	waitFor(t, 2*time.Second, "node1 dead at node2", func() bool { return b.sees() })
	time.Sleep(2 * interval)
	if !a.sees("node2") {
		t.Fatalf("node1 lost node2, whose frames still reach it: %v", a.peers())
	}
	back := time.Now()
	unblock()
	waitFor(t, 2*time.Second, "node2 sees node1 again", func() bool { return b.sees("node1") })
	d := time.Since(back)
	t.Logf("node2 verified node1 again %v after its receive path came back", d)
	// node1's next periodic heartbeat arrives within an interval; the
	// challenge and the echo then cross the switch at once. The bound
	// leaves room for scheduling.
	if d > interval+100*time.Millisecond {
		t.Errorf("re-verification took %v, more than an interval and a round trip", d)
	}
	if n := testutil.ToFloat64(a.met.deaths); n != 0 {
		t.Errorf("node1 counted %v deaths", n)
	}
	if n := testutil.ToFloat64(b.met.deaths); n != 1 {
		t.Errorf("node2 counted %v deaths, want 1", n)
	}
}
