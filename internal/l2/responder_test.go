package l2

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
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
	// refuseOver makes SetBPF fail with ENOMEM for longer programs, as the
	// kernel does when the socket's optmem_max is exhausted; 0: never.
	refuseOver int
	setBPF     int // SetBPF calls that attached a program
	// sent, if set, also records written frames, in order, across conns.
	sent *frameLog
}

type frameLog struct {
	mu     sync.Mutex
	frames [][]byte
}

func (l *frameLog) all() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.frames)
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
	if c.sent != nil {
		c.sent.mu.Lock()
		c.sent.frames = append(c.sent.frames, slices.Clone(b))
		c.sent.mu.Unlock()
	}
	return len(b), nil
}

func (c *fakeConn) SetBPF(f []bpf.RawInstruction) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuseOver > 0 && len(f) > c.refuseOver {
		return syscall.ENOMEM
	}
	c.filter = f
	c.setBPF++
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

// TestSetOwnedAttachesOnlyChangedFamilies: an IPv4 change does not rebuild
// the NDP filter, and a set that did not change attaches nothing.
func TestSetOwnedAttachesOnlyChangedFamilies(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.SetOwned([]netip.Addr{vip4, vip6})
	if f.arp.setBPF != 1 || f.ndp.setBPF != 1 {
		t.Fatalf("first SetOwned attached %d ARP and %d NDP filters, want 1 and 1", f.arp.setBPF, f.ndp.setBPF)
	}
	f.SetOwned([]netip.Addr{vip4, vip4b, vip6})
	if f.arp.setBPF != 2 || f.ndp.setBPF != 1 {
		t.Fatalf("an IPv4 change attached %d ARP and %d NDP filters in all, want 2 and 1", f.arp.setBPF, f.ndp.setBPF)
	}
	f.SetOwned([]netip.Addr{vip6, vip4b, vip4})
	if f.arp.setBPF != 2 || f.ndp.setBPF != 1 {
		t.Fatal("the same set in another order attached filters")
	}
	got := f.KernelFilters()
	if len(got) != 2 || got[0].Family != familyIPv4 || got[0].Owned != 2 || !got[0].Exact || got[1].Owned != 1 || !got[1].Exact {
		t.Fatalf("KernelFilters() = %+v", got)
	}
}

// TestFilterShrinksWhenRefused: when the kernel refuses a program for lack
// of socket memory (ENOMEM), shorter ones are tried before the coarse
// filter, and KernelFilters says what was attached.
func TestFilterShrinksWhenRefused(t *testing.T) {
	owned := v4Addrs(layouts["typical"](10000, rand.New(rand.NewPCG(1, 1))))
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	f.arp.refuseOver = 1500
	f.SetOwned(owned)
	got := f.KernelFilters()[0]
	if got.Coarse || got.Instructions > 1500 || got.Exact || got.Owned != 10000 || len(f.arp.filter) != got.Instructions {
		t.Fatalf("with programs over 1500 instructions refused: %+v (attached %d)", got, len(f.arp.filter))
	}
	// Owned addresses still pass the shorter program.
	vm := newVM(t, rawToInstructions(t, f.arp.filter))
	frame := mustFrame(t)(ARPRequest(clientMAC, client4, owned[1234]))
	if n, err := vm.Run(frame); err != nil || n == 0 {
		t.Fatalf("owned address dropped by the shorter program: %v", err)
	}

	g := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: -1})
	g.arp.refuseOver = 64
	g.SetOwned(owned)
	if got := g.KernelFilters()[0]; !got.Coarse || got.Exact || !math.IsInf(got.ExtraTargets, 1) {
		t.Fatalf("with every program refused: %+v", got)
	}
}

func rawToInstructions(t testing.TB, raw []bpf.RawInstruction) []bpf.Instruction {
	t.Helper()
	prog := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		prog[i] = r.Disassemble()
	}
	// The guard's ancillary load disassembles as a plain load: put back
	// the form the tests expect.
	copy(prog, pktTypeGuard())
	return prog
}

// TestAnnouncementsPaced: a burst for many addresses goes out at no more
// than GratuitousRate frames per second (after the first GratuitousRate/20),
// every address's first announcement before any second one.
func TestAnnouncementsPaced(t *testing.T) {
	const rate = 2000
	f := newFakeResponder(t, Options{GratuitousCount: 2, GratuitousInterval: 10 * time.Millisecond, RefreshInterval: -1, GratuitousRate: rate})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	log := &frameLog{}
	f.arp.sent, f.ndp.sent = log, log
	owned := append(v4Set(300), v6Set(200)...) // 300×2 + 200 = 800 frames per round
	start := time.Now()
	f.SetOwned(owned)
	var frames [][]byte
	var samples []struct {
		at time.Duration
		n  int
	}
	for len(frames) < 1600 && time.Since(start) < 10*time.Second {
		time.Sleep(20 * time.Millisecond)
		frames = log.all()
		samples = append(samples, struct {
			at time.Duration
			n  int
		}{time.Since(start), len(frames)})
	}
	took := time.Since(start)
	if len(frames) != 1600 {
		t.Fatalf("%d frames sent in %v, want 1600", len(frames), took)
	}
	// Never ahead of the bucket: burst + rate × elapsed.
	for _, s := range samples {
		if limit := rate/20 + int(float64(rate)*s.at.Seconds()) + 2; s.n > limit {
			t.Fatalf("%d frames after %v, the rate allows %d", s.n, s.at, limit)
		}
	}
	// 1600 frames at 2000/s take 0.8 s less the burst.
	if took < 700*time.Millisecond {
		t.Errorf("1600 frames went out in %v", took)
	}
	t.Logf("1600 frames in %v", took.Round(time.Millisecond))
	// First announcements first: the first 800 frames name 500 distinct
	// addresses.
	seen := map[netip.Addr]bool{}
	for _, b := range frames[:800] {
		m := mustDecode(t, b)
		a := m.SenderIP
		if m.Kind == KindNeighborAdvertisement {
			a = m.TargetIP
		}
		seen[a] = true
	}
	if len(seen) != 500 {
		t.Errorf("the first 800 frames announce %d addresses, want all 500 once", len(seen))
	}
}

// BenchmarkSetOwned measures SetOwned without sockets (compile and swap the
// filters, group bookkeeping, schedule announcements): from nothing to n
// addresses, a fail-over adding 3000 addresses to 3000, the reverse, and
// one address changed among 10 000. IPv4 and IPv6 (typical layout).
func BenchmarkSetOwned(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		set := func(n int, seed uint64) []netip.Addr {
			rng := rand.New(rand.NewPCG(seed, uint64(n)))
			if fam == "ipv4" {
				return v4Addrs(layouts["typical"](n, rng))
			}
			return v6Addrs(v6Layout("typical", n, rng))
		}
		sorted := func(a []netip.Addr) []netip.Addr {
			a = slices.Clone(a)
			slices.SortFunc(a, netip.Addr.Compare)
			return a
		}
		big := sorted(set(10000, 1))
		base := sorted(set(6000, 2))
		half := sorted(base[:3000])
		changed := slices.Clone(big)
		changed[5000] = changed[5000].Next()
		for changed[5000] == big[5001] {
			changed[5000] = changed[5000].Next()
		}
		changed = sorted(changed)
		cases := []struct {
			name     string
			from, to []netip.Addr
		}{
			{"0to10000", nil, big},
			{"failover-3000to6000", half, base},
			{"release-6000to3000", base, half},
			{"one-of-10000", big, changed},
		}
		for _, c := range cases {
			b.Run(fam+"/"+c.name, func(b *testing.B) {
				f := newFakeResponder(b, Options{})
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					f.SetOwned(c.from)
					for !f.groupsSynced() {
						time.Sleep(time.Millisecond)
					}
					b.StartTimer()
					f.SetOwned(c.to)
				}
			})
		}
	}
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

// Refreshes of many owned addresses are spread so that at most RefreshRate
// go out per second: 100 addresses at 20 per second are refreshed every
// 5 s even with a 1 s RefreshInterval; a few keep the interval.
func TestRefreshSpread(t *testing.T) {
	f := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: time.Second, RefreshRate: 20})
	var owned []netip.Addr
	for i := range 100 {
		owned = append(owned, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	f.SetOwned(owned[:5])
	f.mu.Lock()
	if got := f.refreshPeriodLocked(); got != time.Second {
		t.Errorf("5 addresses: refresh every %s, want 1s", got)
	}
	f.mu.Unlock()
	f.SetOwned(owned)
	f.mu.Lock()
	if got := f.refreshPeriodLocked(); got != 5*time.Second {
		t.Errorf("100 addresses at 20/s: refresh every %s, want 5s", got)
	}
	f.mu.Unlock()
	g := newFakeResponder(t, Options{GratuitousCount: -1, RefreshInterval: time.Second, RefreshRate: -1})
	g.SetOwned(owned)
	g.mu.Lock()
	defer g.mu.Unlock()
	if got := g.refreshPeriodLocked(); got != time.Second {
		t.Errorf("no bound: refresh every %s, want 1s", got)
	}
}

// OnFirstAnnouncement fires once per newly owned address, after its first
// frame went out: not for the repeats of the burst, not for refreshes, and
// again only when the address is owned anew.
func TestFirstAnnouncementCallback(t *testing.T) {
	type call struct {
		addr netip.Addr
		at   time.Time
	}
	calls := make(chan call, 16)
	f := newFakeResponder(t, Options{
		GratuitousCount:     3,
		GratuitousInterval:  20 * time.Millisecond,
		RefreshInterval:     50 * time.Millisecond,
		OnFirstAnnouncement: func(a netip.Addr, at time.Time) { calls <- call{a, at} },
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
	before := time.Now()
	f.SetOwned([]netip.Addr{vip4, vip6})
	got := map[netip.Addr]int{}
	deadline := time.After(2 * time.Second)
	for len(got) < 2 {
		select {
		case c := <-calls:
			if c.at.Before(before) {
				t.Errorf("%s: first announcement at %s, before SetOwned", c.addr, c.at)
			}
			got[c.addr]++
		case <-deadline:
			t.Fatalf("first announcements reported: %v, want %s and %s", got, vip4, vip6)
		}
	}
	if len(f.arp.take())+len(f.ndp.take()) == 0 {
		t.Error("reported a first announcement, but no frame went out")
	}
	// The rest of the burst and some refreshes: no more calls.
	time.Sleep(250 * time.Millisecond)
	select {
	case c := <-calls:
		t.Fatalf("a second call for %s (burst repeats and refreshes must not report)", c.addr)
	default:
	}
	// Owned anew: reported again.
	f.SetOwned([]netip.Addr{vip6})
	f.SetOwned([]netip.Addr{vip4, vip6})
	select {
	case c := <-calls:
		if c.addr != vip4 {
			t.Fatalf("call for %s, want %s (owned anew)", c.addr, vip4)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no call for an address owned anew")
	}
}
