package l2

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/bpf"
)

// fakeConn is an in-memory frameConn: frames pushed into in are read,
// written frames are recorded.
type fakeConn struct {
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	written [][]byte
	filter  []bpf.RawInstruction
	groups  map[string]int
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 16), closed: make(chan struct{}), groups: map[string]int{}}
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case f := <-c.in:
		return copy(b, f), nil, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written = append(c.written, slices.Clone(b))
	return len(b), nil
}

func (c *fakeConn) SetBPF(f []bpf.RawInstruction) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.filter = f
	return nil
}

func (c *fakeConn) JoinGroup(a net.HardwareAddr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[a.String()]++
	return nil
}

func (c *fakeConn) LeaveGroup(a net.HardwareAddr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[a.String()]--
	if c.groups[a.String()] == 0 {
		delete(c.groups, a.String())
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeConn) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.written
	c.written = nil
	return w
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fakeResponder struct {
	*Responder
	arp, ndp  *fakeConn
	conflicts chan Conflict
	metrics   *Metrics
}

func newFakeResponder(t testing.TB, opts Options) *fakeResponder {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeResponder{arp: newFakeConn(), ndp: newFakeConn(), conflicts: make(chan Conflict, 16), metrics: m}
	opts.Metrics = m
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	opts.OnConflict = func(c Conflict) { f.conflicts <- c }
	f.Responder = newResponder(&net.Interface{Name: "test0", HardwareAddr: testMAC}, opts)
	f.Responder.arpConn, f.Responder.ndpConn = f.arp, f.ndp
	return f
}

func (f *fakeResponder) handle(frame []byte) {
	c := f.arp
	if frame[12] == 0x86 {
		c = f.ndp
	}
	f.handleFrame(context.Background(), c, frame, time.Now())
}

func TestHandleARP(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned([]netip.Addr{vip4})
	mf := mustFrame(t)

	f.handle(mf(ARPRequest(clientMAC, client4, vip4)))
	out := f.arp.take()
	if len(out) != 1 {
		t.Fatalf("%d frames for an owned request, want 1", len(out))
	}
	m := mustDecode(t, out[0])
	if m.Kind != KindARPReply || m.SenderIP != vip4 || !sameMAC(m.SenderHW, testMAC) ||
		m.TargetIP != client4 || !sameMAC(m.EthDst, clientMAC) {
		t.Fatalf("bad reply %+v", m)
	}

	f.handle(mf(ARPRequest(clientMAC, client4, netip.MustParseAddr("192.168.10.76"))))
	f.handle(mf(ARPRequest(testMAC, client4, vip4))) // from ourselves
	if out := f.arp.take(); len(out) != 0 {
		t.Fatalf("answered an unowned or own request: %d frames", len(out))
	}

	f.handle(mf(ARPProbe(clientMAC, vip4)))
	out = f.arp.take()
	if len(out) != 1 || mustDecode(t, out[0]).TargetIP != netip.IPv4Unspecified() {
		t.Fatalf("probe for an owned address not defended: %d frames", len(out))
	}

	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues("test0", "ipv4")); got != 2 {
		t.Errorf("requests = %v, want 2", got)
	}
	if got := testutil.ToFloat64(f.metrics.replies.WithLabelValues("test0", "ipv4")); got != 2 {
		t.Errorf("replies = %v, want 2", got)
	}
	if got := testutil.CollectAndCount(f.metrics.latency); got != 2 {
		t.Errorf("latency series = %d, want 2", got)
	}

	f.SetOwned(nil)
	f.handle(mf(ARPRequest(clientMAC, client4, vip4)))
	if out := f.arp.take(); len(out) != 0 {
		t.Fatal("answered after removal")
	}
}

func TestHandleNDP(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned([]netip.Addr{vip6})
	mf := mustFrame(t)
	_, gmac, _ := SolicitedNodeGroup(vip6)
	if f.ndp.groups[gmac.String()] != 1 {
		t.Fatalf("solicited-node MAC not joined: %v", f.ndp.groups)
	}

	f.handle(mf(NeighborSolicitation(clientMAC, client6, vip6)))
	out := f.ndp.take()
	if len(out) != 1 {
		t.Fatalf("%d frames for an owned NS, want 1", len(out))
	}
	m := mustDecode(t, out[0])
	if m.Kind != KindNeighborAdvertisement || !m.Solicited || !m.Override || m.TargetIP != vip6 ||
		m.DstIP != client6 || !sameMAC(m.EthDst, clientMAC) || !sameMAC(m.SenderHW, testMAC) {
		t.Fatalf("bad NA %+v", m)
	}

	f.handle(mf(DADSolicitation(clientMAC, vip6)))
	out = f.ndp.take()
	if len(out) != 1 {
		t.Fatalf("DAD for an owned address not defended")
	}
	if m := mustDecode(t, out[0]); m.Solicited || !m.Override || m.DstIP != allNodes() {
		t.Fatalf("bad DAD defence %+v", m)
	}

	f.handle(mf(NeighborSolicitation(clientMAC, client6, netip.MustParseAddr("fd00:10::76"))))
	if out := f.ndp.take(); len(out) != 0 {
		t.Fatal("answered an unowned NS")
	}

	// Two addresses sharing a solicited-node group: the group is left only
	// when the last one goes.
	twin := netip.MustParseAddr("fd00:20::75")
	f.SetOwned([]netip.Addr{vip6, twin})
	if f.ndp.groups[gmac.String()] != 1 {
		t.Fatalf("shared group joined twice: %v", f.ndp.groups)
	}
	f.SetOwned([]netip.Addr{twin})
	if f.ndp.groups[gmac.String()] != 1 {
		t.Fatalf("shared group left early: %v", f.ndp.groups)
	}
	f.SetOwned(nil)
	if len(f.ndp.groups) != 0 {
		t.Fatalf("groups left joined: %v", f.ndp.groups)
	}
}

func TestConflicts(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned([]netip.Addr{vip4, vip6})
	mf := mustFrame(t)
	foreign := net.HardwareAddr{0x02, 0xff, 0, 0, 0, 0x99}
	req := mustDecode(t, mf(ARPRequest(clientMAC, client4, vip4)))

	cases := []struct {
		frame []byte
		kind  string
		addr  netip.Addr
	}{
		{mf(GratuitousARPRequest(foreign, vip4)), ConflictGARP, vip4},
		{mf(ARPReply(foreign, vip4, &req)), ConflictARPReply, vip4},
		{mf(ARPRequest(foreign, vip4, client4)), ConflictARPRequest, vip4},
		{mf(UnsolicitedNA(foreign, vip6)), ConflictNA, vip6},
	}
	for _, c := range cases {
		// The rate limit is per (address, MAC): clear it between cases.
		f.conflictMu.Lock()
		clear(f.lastConflict)
		f.conflictMu.Unlock()
		f.handle(c.frame)
		select {
		case got := <-f.conflicts:
			if got.Kind != c.kind || got.Addr != c.addr || !sameMAC(got.MAC, foreign) || got.Interface != "test0" {
				t.Errorf("conflict %+v, want kind %s addr %s mac %s", got, c.kind, c.addr, foreign)
			}
		default:
			t.Errorf("no conflict for %s", c.kind)
		}
	}
	// Rate limit: a flood reports once but counts every frame.
	for range 10 {
		f.handle(mf(GratuitousARPReply(foreign, vip4)))
	}
	if n := len(f.conflicts); n != 1 {
		t.Errorf("%d reports for a flood, want 1", n)
	}
	if got := testutil.ToFloat64(f.metrics.conflicts.WithLabelValues("test0")); got != 14 {
		t.Errorf("conflicts counter = %v, want 14", got)
	}
	// Our own announcements and other addresses are no conflict.
	<-f.conflicts
	f.handle(mf(GratuitousARPRequest(testMAC, vip4)))
	f.handle(mf(UnsolicitedNA(foreign, netip.MustParseAddr("fd00:10::99"))))
	if n := len(f.conflicts); n != 0 {
		t.Errorf("%d spurious conflicts", n)
	}
}

func TestMalformedCounted(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned([]netip.Addr{vip4, vip6})
	mf := mustFrame(t)
	bad := mf(ARPRequest(clientMAC, client4, vip4))
	bad[18] = 7
	hop := mf(NeighborSolicitation(clientMAC, client6, vip6))
	hop[21] = 64
	f.handle(bad)
	f.handle(hop)
	f.handle(mf(ARPRequest(clientMAC, client4, vip4))[:30])
	if got := testutil.ToFloat64(f.metrics.malformed.WithLabelValues("test0")); got != 3 {
		t.Errorf("malformed = %v, want 3", got)
	}
	if len(f.arp.take())+len(f.ndp.take()) != 0 {
		t.Error("answered a malformed frame")
	}
}

func TestAnnouncements(t *testing.T) {
	f := newFakeResponder(t, Options{
		GratuitousCount:    3,
		GratuitousInterval: 20 * time.Millisecond,
		RefreshInterval:    150 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f.SetOwned([]netip.Addr{vip4, vip6})

	// Burst: 3 rounds within ~40ms; then the first refresh ~150ms later.
	deadline := time.Now().Add(2 * time.Second)
	var arpFrames, naFrames [][]byte
	for time.Now().Before(deadline) && (len(arpFrames) < 8 || len(naFrames) < 4) {
		arpFrames = append(arpFrames, f.arp.take()...)
		naFrames = append(naFrames, f.ndp.take()...)
		time.Sleep(5 * time.Millisecond)
	}
	if len(arpFrames) < 8 || len(naFrames) < 4 {
		t.Fatalf("got %d ARP and %d NA frames, want burst of 3 + 1 refresh (8 and 4)", len(arpFrames), len(naFrames))
	}
	kinds := map[Kind]int{}
	for _, b := range arpFrames {
		m := mustDecode(t, b)
		if m.SenderIP != vip4 || !sameMAC(m.SenderHW, testMAC) {
			t.Fatalf("bad GARP %+v", m)
		}
		kinds[m.Kind]++
	}
	if kinds[KindARPAnnouncement] < 4 || kinds[KindARPGratuitousReply] < 4 {
		t.Errorf("GARP forms sent: %v", kinds)
	}
	for _, b := range naFrames {
		if m := mustDecode(t, b); m.Kind != KindNeighborAdvertisement || m.Solicited || !m.Override || m.DstIP != allNodes() {
			t.Fatalf("bad unsolicited NA %+v", m)
		}
	}
	if got := testutil.ToFloat64(f.metrics.gratuitous.WithLabelValues("test0", "ipv4")); got < 8 {
		t.Errorf("gratuitous{ipv4} = %v", got)
	}

	// Removing the address stops the announcements.
	f.SetOwned(nil)
	time.Sleep(20 * time.Millisecond)
	f.arp.take()
	f.ndp.take()
	time.Sleep(300 * time.Millisecond)
	if n := len(f.arp.take()) + len(f.ndp.take()); n != 0 {
		t.Errorf("%d announcements after removal", n)
	}
}

func TestSetOwnedNormalises(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned([]netip.Addr{
		vip6, netip.MustParseAddr("::ffff:192.168.10.75"), vip4, {},
		netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("ff02::1"), netip.IPv4Unspecified(),
	})
	if got, want := f.Owned(), []netip.Addr{vip4, vip6}; !slices.Equal(got, want) {
		t.Fatalf("Owned() = %v, want %v", got, want)
	}
	if f.arp.filter == nil || f.ndp.filter == nil {
		t.Fatal("filters not attached")
	}
}

func TestRunTwice(t *testing.T) {
	f := newFakeResponder(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	time.Sleep(10 * time.Millisecond)
	if err := f.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("second registration on one registry succeeded")
	}
	if _, err := NewMetrics(nil); err == nil {
		t.Error("nil registry accepted")
	}
	var nilMetrics *Metrics
	im := nilMetrics.forInterface("x")
	im.request(true)
	im.reply(false, time.Millisecond)
	im.gratuitous(true)
	im.malformedFrame()
	im.conflict()
}

// BenchmarkHandleARPRequest measures the in-process cost of one ARP request
// for an owned address: decode, ownership lookup, reply build and hand-off
// to the socket (a no-op here).
func BenchmarkHandleARPRequest(b *testing.B) {
	f := newFakeResponder(b, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned(v4Set(1000))
	frame := mustFrame(b)(ARPRequest(clientMAC, client4, netip.MustParseAddr("10.0.3.231")))
	c := nopConn{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.handleFrame(ctx, c, frame, time.Now())
	}
}

// BenchmarkHandleNS is the same for an IPv6 Neighbor Solicitation.
func BenchmarkHandleNS(b *testing.B) {
	f := newFakeResponder(b, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned(v6Set(400))
	frame := mustFrame(b)(NeighborSolicitation(clientMAC, client6, v6Set(400)[399]))
	c := nopConn{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.handleFrame(ctx, c, frame, time.Now())
	}
}

// BenchmarkDecodeUnowned is the Go-side cost of a frame that the coarse
// filter let through but that is for an address we do not own.
func BenchmarkDecodeUnowned(b *testing.B) {
	f := newFakeResponder(b, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned(v4Set(1000))
	frame := mustFrame(b)(ARPRequest(clientMAC, client4, netip.MustParseAddr("192.0.2.1")))
	c := nopConn{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.handleFrame(ctx, c, frame, time.Now())
	}
}

type nopConn struct{}

func (nopConn) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, io.EOF }
func (nopConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (nopConn) SetBPF([]bpf.RawInstruction) error         { return nil }
func (nopConn) JoinGroup(net.HardwareAddr) error          { return nil }
func (nopConn) LeaveGroup(net.HardwareAddr) error         { return nil }
func (nopConn) Close() error                              { return nil }

// Defend sends one announcement per address per DefendInterval, only for
// owned addresses: a host that keeps claiming an address is not fought
// frame for frame (RFC 5227 §2.4 (c)).
func TestDefendRateLimited(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1, DefendInterval: 200 * time.Millisecond})
	f.SetOwned([]netip.Addr{vip4, vip6})

	if f.Defend(netip.MustParseAddr("192.168.10.76")) {
		t.Fatal("defended an address it does not own")
	}
	for range 50 {
		f.Defend(vip4)
		f.Defend(vip6)
	}
	arp, ndp := f.arp.take(), f.ndp.take()
	if len(arp) != 1 || len(ndp) != 1 {
		t.Fatalf("50 defences within the interval sent %d ARP and %d NDP frames, want 1 each", len(arp), len(ndp))
	}
	if m := mustDecode(t, arp[0]); m.Kind != KindARPAnnouncement || m.SenderIP != vip4 || !sameMAC(m.SenderHW, testMAC) {
		t.Errorf("IPv4 defence is %+v, want an ARP announcement of %s from %s", m, vip4, testMAC)
	}
	if m := mustDecode(t, ndp[0]); m.Kind != KindNeighborAdvertisement || m.TargetIP != vip6 {
		t.Errorf("IPv6 defence is %+v, want an unsolicited NA for %s", m, vip6)
	}
	if got := testutil.ToFloat64(f.metrics.defences.WithLabelValues("test0", familyIPv4)); got != 1 {
		t.Errorf("herald_l2_defences_total{family=ipv4} = %v, want 1", got)
	}

	// The interval is a lower bound (the fake clock is the real one).
	time.Sleep(250 * time.Millisecond)
	if !f.Defend(vip4) {
		t.Fatal("no defence after the interval")
	}
	if n := len(f.arp.take()); n != 1 {
		t.Fatalf("%d frames for the second defence, want 1", n)
	}

	// Not owned any more: not defended, whatever the interval.
	f.SetOwned(nil)
	time.Sleep(250 * time.Millisecond)
	if f.Defend(vip4) || len(f.arp.take()) != 0 {
		t.Fatal("defended an address after releasing it")
	}

	// A negative interval disables defences.
	g := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1, DefendInterval: -1})
	g.SetOwned([]netip.Addr{vip4})
	if g.Defend(vip4) || len(g.arp.take()) != 0 {
		t.Fatal("defended with defences disabled")
	}
}
