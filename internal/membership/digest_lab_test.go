//go:build linux

package membership

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/testrequire"
)

// stateOf returns what m shows of peer: its eligible and claimed lists,
// and whether it is live.
func (m *testMember) stateOf(peer string) (elig, claims []netip.Addr, ok bool) {
	p, ok := m.peer(peer)
	return p.Eligible, p.Claims, ok
}

// knows reports whether m sees peer live with exactly these lists.
func (m *testMember) knows(peer string, elig, claims []netip.Addr) bool {
	e, c, ok := m.stateOf(peer)
	return ok && slices.Equal(e, elig) && slices.Equal(c, claims)
}

// TestJoinLearnsFullState: ten nodes, each eligible for the same 1000
// addresses and claiming 100 of them (four frames of full state each),
// run a segment; an eleventh joins. It must know every peer's full state
// by the time it is settled (the agent starts claiming then), which takes
// a request and its answer per peer. Then, in steady state, the frames on
// the wire carry no address at all: every heartbeat is one frame of the
// minimal size, however large the state.
func TestJoinLearnsFullState(t *testing.T) {
	const peers = 10
	s := newSegment(t, peers+1)
	elig := seqAddrs("10.30.0.0", 1000)
	claimsOf := func(i int) []netip.Addr { return elig[i*100 : (i+1)*100] }
	var ms []*testMember
	for i := range peers {
		m := s.start(i, nil)
		if err := m.SetState(elig, claimsOf(i)); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	name := func(i int) string { return fmt.Sprintf("node%d", i+1) }
	waitFor(t, 10*time.Second, "the ten peers know each other's state", func() bool {
		for i, m := range ms {
			for j := range peers {
				if j != i && !m.knows(name(j), elig, claimsOf(j)) {
					return false
				}
			}
		}
		return true
	})
	// Past the repeats of the initial full states.
	time.Sleep(StateRepeats * interval)

	answers0 := 0.0
	for _, m := range ms {
		answers0 += testutil.ToFloat64(m.met.fullSent[fullRequest])
	}
	start := time.Now()
	joiner := s.start(peers, nil)
	learnt := func(snap Snapshot) bool {
		n := 0
		for _, p := range snap.Peers {
			var j int
			if _, err := fmt.Sscanf(p.Node, "node%d", &j); err != nil || j < 1 || j > peers {
				return false
			}
			if !slices.Equal(p.Eligible, elig) || !slices.Equal(p.Claims, claimsOf(j-1)) {
				return false
			}
			n++
		}
		return n == peers
	}
	var learntAt time.Duration
	var settledSnap Snapshot
	waitFor(t, 10*time.Second, "the joiner settled", func() bool {
		snap := joiner.Snapshot()
		if learntAt == 0 && learnt(snap) {
			learntAt = time.Since(start)
		}
		if snap.Settled {
			settledSnap = snap
			return true
		}
		return false
	})
	settledAt := time.Since(start)
	t.Logf("joiner knew the full state of its %d peers (1000 addresses each) %v after it started; settled after %v",
		peers, learntAt, settledAt)
	// What the agent relies on: once settled, it knows every live peer
	// with its full state (a peer missing, or shown claiming nothing,
	// would make it claim that peer's addresses).
	if !learnt(settledSnap) {
		t.Errorf("settled without knowing every peer's full state: %d peers", len(settledSnap.Peers))
	}

	answers := -answers0
	for _, m := range ms {
		answers += testutil.ToFloat64(m.met.fullSent[fullRequest])
	}
	requests := testutil.ToFloat64(joiner.met.requestsSent)
	t.Logf("the joiner sent %v requests; its peers answered with %v full states", requests, answers)
	if requests < peers || answers < peers {
		t.Errorf("%v requests, %v answers: want at least one per peer", requests, answers)
	}

	// Steady state: past the joiner's challenges and the echoes (4
	// heartbeats after the last challenge).
	time.Sleep(6 * interval)
	sw := openSwitchSocket(t, s) // opened now: it holds no earlier frame
	const window = 2 * time.Second
	frames, bytes := 0, 0
	c := testCodec(t)
	buf := make([]byte, readBufLen)
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		_ = sw.SetReadDeadline(end)
		n, _, err := sw.ReadFrom(buf)
		if err != nil {
			continue
		}
		f, err := c.Decode(buf[:n])
		if err != nil {
			t.Errorf("undecodable frame on the wire: %v", err)
			continue
		}
		frames++
		bytes += n
		want := ethHeaderLen + authLen(1, len(f.Node), 0, 0) + MACLen
		if f.Full || f.Challenge || len(f.Echoes) > 0 || len(f.Requests) > 0 || n != want {
			t.Errorf("steady-state frame of %s: %d bytes (want %d), full %v, challenge %v, %d echoes, %d requests",
				f.Node, n, want, f.Full, f.Challenge, len(f.Echoes), len(f.Requests))
		}
	}
	perNode := float64(bytes) / window.Seconds() / float64(peers+1)
	t.Logf("steady state, %v on the switch: %d frames, %d bytes: %.0f bytes/s per node (a full state is %d frames, %d bytes)",
		window, frames, bytes, perNode, fullFrames(t, elig, claimsOf(0)), fullBytes(t, elig, claimsOf(0)))
	// Each node sends one frame per interval: about 220 in 2 s. A lower
	// bound only (a loaded machine sends late, never early).
	if frames < (peers+1)*int(window/interval)/2 {
		t.Errorf("%d frames in %v: heartbeats missing", frames, window)
	}
	if !learnt(joiner.Snapshot()) {
		t.Error("the joiner lost a peer's state in steady state")
	}
}

// fullFrames and fullBytes are the frames and bytes of one full
// heartbeat of these lists from node1.
func fullFrames(t *testing.T, elig, claims []netip.Addr) int {
	f, err := testCodec(t).Encode(testSrc(), hbFrom("node1", elig, claims), 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(f)
}

func fullBytes(t *testing.T, elig, claims []netip.Addr) int {
	f, err := testCodec(t).Encode(testSrc(), hbFrom("node1", elig, claims), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range f {
		n += len(x)
	}
	return n
}

func hbFrom(node string, elig, claims []netip.Addr) Heartbeat {
	h := hb(elig, claims)
	h.Node = node
	return h
}

// dropFullTo drops the full heartbeats (flag bit 2 of the payload's
// sixth byte) that the bridge forwards out of port, towards one node,
// and lets every other heartbeat through, until the returned func is
// called.
func dropFullTo(t *testing.T, bridgeNS, port string) (undo func()) {
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
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: "heraldnofull"})
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
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: ethHeaderLen + 5, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{flagFull}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		h.Close()
		testrequire.Missing(t, "cannot install the nftables rule (nf_tables bridge support missing?): %v", err)
	}
	var once sync.Once
	undo = func() {
		once.Do(func() {
			defer h.Close()
			c.DelTable(tbl)
			if err := c.Flush(); err != nil {
				t.Errorf("remove the rule: %v", err)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}

// TestMissedChangeAsked: node2 loses every full heartbeat (an nftables
// rule drops them towards it) while node1 changes its state, so it misses
// the change and its repeats. Its heartbeats without the full state still
// reach node2, which therefore keeps node1 live — with its previous
// lists, never none and never a mixture — and asks for the new state in
// every heartbeat. node1 answers each request (rate-limited). Once full
// heartbeats get through again, node2 has the new state within about one
// of its intervals, through a request and its answer (node1's repeats are
// long over).
func TestMissedChangeAsked(t *testing.T) {
	s := newSegment(t, 3)
	a, b, c := s.start(0, nil), s.start(1, nil), s.start(2, nil)
	stateA := seqAddrs("10.40.0.0", 600) // 3 frames
	stateB := seqAddrs("10.41.0.0", 600)
	if err := a.SetState(stateA, stateA[:10]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "node2 and node3 know node1's state", func() bool {
		return b.knows("node1", stateA, stateA[:10]) && c.knows("node1", stateA, stateA[:10])
	})
	stop := watch([]*testMember{b}, func(_ int, s Snapshot) error {
		for _, p := range s.Peers {
			if p.Node != "node1" {
				continue
			}
			if (slices.Equal(p.Eligible, stateA) && slices.Equal(p.Claims, stateA[:10])) ||
				(slices.Equal(p.Eligible, stateB) && slices.Equal(p.Claims, stateB[:10])) {
				return nil
			}
			return fmt.Errorf("node1 shown with %d eligible, claims %v: neither of its states", len(p.Eligible), p.Claims)
		}
		return fmt.Errorf("node1 not live: %v", names(s))
	})

	undo := dropFullTo(t, s.bridge, "v2")
	answers0 := testutil.ToFloat64(a.met.fullSent[fullRequest])
	requests0 := testutil.ToFloat64(b.met.requestsSent)
	if err := a.SetState(stateB, stateB[:10]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "node3 knows the new state", func() bool { return c.knows("node1", stateB, stateB[:10]) })
	const blocked = 10 * interval
	time.Sleep(blocked)
	if !b.knows("node1", stateA, stateA[:10]) {
		e, cl, ok := b.stateOf("node1")
		t.Errorf("node2, missing the change, shows node1 live %v with %d eligible and claims %v; want its previous state", ok, len(e), cl)
	}
	requests := testutil.ToFloat64(b.met.requestsSent) - requests0
	answers := testutil.ToFloat64(a.met.fullSent[fullRequest]) - answers0
	t.Logf("in %v without full heartbeats: node2 sent %v requests, node1 answered %v times", blocked, requests, answers)
	// node2 asks in every heartbeat (10 in that time) and node1 answers
	// each, since they come an interval apart. Lower bounds only: a
	// loaded machine sends late, never early.
	if requests < 5 || answers < 5 {
		t.Errorf("%v requests, %v answers in %v: node2 does not ask, or node1 does not answer", requests, answers, blocked)
	}
	if got := testutil.ToFloat64(b.met.stale); got != 1 {
		t.Errorf("herald_membership_peers_state_stale = %v at node2, want 1", got)
	}

	undo()
	d := waitFor(t, 2*time.Second, "node2 learns the new state", func() bool { return b.knows("node1", stateB, stateB[:10]) })
	t.Logf("node2 had the new state %v after full heartbeats got through again", d)
	reportBad(t, "node2's view of node1", stop())
	if n := testutil.ToFloat64(b.met.deaths); n != 0 {
		t.Errorf("node2 counted %v deaths: heartbeats without the full state must prove liveness", n)
	}
	time.Sleep(interval)
	if got := testutil.ToFloat64(b.met.stale); got != 0 {
		t.Errorf("herald_membership_peers_state_stale = %v at node2 after the state arrived", got)
	}
}

// TestStateUnderLoss: node1 changes its state every 70 ms for 5 s —
// 1000 addresses, four frames per full state — on a segment losing 5 %
// of frames at random. Sampled every 3 ms, node2 and node3 never show
// node1 dead, nor with a state it did not have (a truncated list, a
// mixture, or nothing); and once the changes stop, both have its last
// state.
func TestStateUnderLoss(t *testing.T) {
	s := newSegment(t, 3)
	addLoss(t, s.bridge, 20)
	fast := func(c *Config) { c.Interval = 50 * time.Millisecond; c.DeadAfter = 6 }
	ms := []*testMember{s.start(0, fast), s.start(1, fast), s.start(2, fast)}
	var states [][]netip.Addr
	for i := range 8 {
		states = append(states, seqAddrs(fmt.Sprintf("10.50.%d.0", 16*i), 1000))
	}
	if err := ms[0].SetState(states[0], states[0][:50]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "node1's state known", func() bool {
		return ms[1].knows("node1", states[0], states[0][:50]) && ms[2].knows("node1", states[0], states[0][:50])
	})
	stop := watch(ms[1:], func(_ int, s Snapshot) error {
		for _, p := range s.Peers {
			if p.Node != "node1" {
				continue
			}
			for _, st := range states {
				if slices.Equal(p.Eligible, st) && slices.Equal(p.Claims, st[:50]) {
					return nil
				}
			}
			return fmt.Errorf("node1 shown with %d eligible, %d claims: a state it never had", len(p.Eligible), len(p.Claims))
		}
		return fmt.Errorf("node1 not live: %v", names(s))
	})
	end := time.Now().Add(5 * time.Second)
	changes := 0
	for i := 1; time.Now().Before(end); i++ {
		st := states[i%len(states)]
		if err := ms[0].SetState(st, st[:50]); err != nil {
			t.Fatal(err)
		}
		changes++
		time.Sleep(70 * time.Millisecond)
	}
	last := states[(changes)%len(states)]
	if err := ms[0].SetState(last, last[:50]); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 5*time.Second, "the last state known", func() bool {
		return ms[1].knows("node1", last, last[:50]) && ms[2].knows("node1", last, last[:50])
	})
	reportBad(t, "views of node1 under 5% loss", stop())
	var requests float64
	for _, m := range ms[1:] {
		requests += testutil.ToFloat64(m.met.requestsSent)
		if n := testutil.ToFloat64(m.met.deaths); n != 0 {
			t.Errorf("%s counted %v deaths", m.cfg.Node, n)
		}
	}
	t.Logf("%d changes of 1000 addresses under 5%% loss: last one known everywhere %v after it was set; node2 and node3 sent %v requests, node1 answered %v",
		changes, d, requests, testutil.ToFloat64(ms[0].met.fullSent[fullRequest]))
}

// TestGroupAddress: heartbeats go to a group address that a Member
// joins, so an interface that filters multicast by address hands them
// only to hosts that joined. A veth (and the bridge) deliver every frame
// to every port, so this test uses macvlan devices, whose receive path
// filters multicast by the device's group list as a NIC's filter does
// (with a 256-bucket hash, as many NICs have): on node2's LAN cable two
// macvlans, one with a Member on it, one with a plain raw socket.
//
// The Member on its macvlan hears node1 and node1 hears it: joining
// works. The raw socket without the membership receives none of node1's
// heartbeats while a raw socket on node2's veth does (they reach the
// host), and it does receive a broadcast frame (it is not deaf); once it
// joins the group, it receives them. A real NIC's hardware filter and a
// switch's handling of the address cannot be tested here (see the
// package documentation).
func TestGroupAddress(t *testing.T) {
	s := newSegment(t, 2)
	a := s.start(0, nil)
	ns := s.nodes[1]
	macvlan := func(name string) {
		ipCmd(t, "-n", ns, "link", "add", name, "link", "eth0", "type", "macvlan", "mode", "bridge")
		ipCmd(t, "-n", ns, "link", "set", name, "up")
	}
	if out, err := execIP("-n", ns, "link", "add", "mvprobe", "link", "eth0", "type", "macvlan"); err != nil {
		testrequire.Missing(t, "cannot create a macvlan device (kernel without macvlan?): %v: %s", err, out)
	}
	ipCmd(t, "-n", ns, "link", "del", "mvprobe")

	macvlan("mvm")
	b := s.start(1, func(c *Config) { c.Interface = "mvm" })
	d := waitFor(t, 5*time.Second, "node1 and the Member on the macvlan see each other", func() bool {
		return a.sees("node2") && b.sees("node1")
	})
	t.Logf("a Member on a macvlan joined the segment in %v", d)

	listen := func(ifname string) *packet.Conn {
		conn := inNetns(t, ns, func() (*packet.Conn, error) {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return nil, err
			}
			return packet.Listen(ifi, packet.Raw, EtherType, nil)
		})
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	// count reads for d and counts node1's heartbeats and other frames.
	count := func(conn *packet.Conn, d time.Duration) (heartbeats, other int) {
		buf := make([]byte, readBufLen)
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			_ = conn.SetReadDeadline(end)
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				continue
			}
			if n >= 12 && slices.Equal(buf[6:12], a.HardwareAddr()) && slices.Equal(buf[0:6], GroupAddr()) {
				heartbeats++
			} else {
				other++
			}
		}
		return heartbeats, other
	}
	veth := listen("eth0")
	if n, _ := count(veth, 3*interval); n == 0 {
		t.Fatal("node1's heartbeats do not reach node2's veth")
	}
	// The macvlan filter is a hash: node1's group address may share a
	// bucket with a group the device joined for IPv4 or IPv6 (a chance
	// of about 1 in 64 per device). Such a device receives the frames
	// as a NIC with the same collision would; a fresh device hashes
	// differently (the hash is salted per device), so up to three are
	// tried.
	var conn *packet.Conn
	for try := range 3 {
		name := fmt.Sprintf("mvx%d", try)
		macvlan(name)
		conn = listen(name)
		n, _ := count(conn, 5*interval)
		if n == 0 {
			break
		}
		t.Logf("%s received %d heartbeats without joining: a hash collision in its filter; trying another device", name, n)
		_ = conn.Close()
		conn = nil
		ipCmd(t, "-n", ns, "link", "del", name)
	}
	if conn == nil {
		t.Fatal("three macvlan devices that did not join the group received heartbeats")
	}
	// Not deaf: a broadcast frame of the same EtherType arrives.
	sender := inNetns(t, s.nodes[0], func() (*packet.Conn, error) {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return nil, err
		}
		return packet.Listen(ifi, packet.Raw, EtherType, nil)
	})
	defer sender.Close()
	bcast := make([]byte, 60)
	copy(bcast[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(bcast[6:12], a.HardwareAddr())
	binary.BigEndian.PutUint16(bcast[12:14], EtherType)
	got := make(chan int, 1)
	go func() { _, other := count(conn, 3*interval); got <- other }()
	time.Sleep(interval)
	if _, err := sender.WriteTo(bcast, &packet.Addr{HardwareAddr: net.HardwareAddr(bcast[0:6])}); err != nil {
		t.Fatal(err)
	}
	if other := <-got; other != 1 {
		t.Errorf("the macvlan socket received %d broadcast frames, want 1", other)
	}
	// Joining the group is what makes them arrive.
	if err := conn.JoinGroup(GroupAddr()); err != nil {
		t.Fatal(err)
	}
	if n, _ := count(conn, 3*interval); n == 0 {
		t.Error("the macvlan socket received no heartbeat after joining the group")
	}
}

// execIP runs ip and returns its output.
func execIP(args ...string) ([]byte, error) {
	return exec.Command("ip", args...).CombinedOutput()
}
