package agent_test

// Fail-over measured from the client's side: a prober in the client
// namespace sends an ARP request for the address every 10 ms (the method
// DESIGN §9 used to measure MetalLB and kube-vip) and records who answers.
//
//	go test -run '^$' -bench Failover -benchtime 30x ./internal/agent/

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mdlayher/packet"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/placement"
)

// reply is one ARP reply the prober saw.
type reply struct {
	at  time.Time
	mac string
}

// prober asks for one address every interval and keeps the replies.
type prober struct {
	mu      sync.Mutex
	replies []reply
	stop    func()
}

// openARP opens a raw ARP socket on role's eth0; it closes with the test.
func openARP(tb testing.TB, c *cluster, role string) (*packet.Conn, *net.Interface) {
	tb.Helper()
	var conn *packet.Conn
	var ifi *net.Interface
	if err := c.lan.In(role, func() (err error) {
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, 0x0806, nil)
		return err
	}); err != nil {
		tb.Fatalf("raw ARP socket in %s: %v", role, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn, ifi
}

func startProber(tb testing.TB, c *cluster, role string, src, addr netip.Addr, every time.Duration) *prober {
	tb.Helper()
	conn, ifi := openARP(tb, c, role)
	frame, err := l2.ARPRequest(ifi.HardwareAddr, src, addr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &prober{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		for {
			_, _ = conn.WriteTo(frame, bcast)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Go(func() {
		buf := make([]byte, 1500)
		for ctx.Err() == nil {
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				continue
			}
			m, err := l2.Decode(buf[:n])
			if err != nil || m.Kind != l2.KindARPReply || m.SenderIP != addr {
				continue
			}
			p.mu.Lock()
			p.replies = append(p.replies, reply{at: time.Now(), mac: m.SenderHW.String()})
			p.mu.Unlock()
		}
	})
	p.stop = func() {
		cancel()
		wg.Wait()
	}
	tb.Cleanup(p.stop)
	return p
}

// since returns the replies at or after t.
func (p *prober) since(t time.Time) []reply {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := sort.Search(len(p.replies), func(i int) bool { return !p.replies[i].at.Before(t) })
	return slices.Clone(p.replies[i:])
}

// waitFor waits until a reply from mac arrives after t, and returns it.
func (p *prober) waitFor(tb testing.TB, t time.Time, mac string, timeout time.Duration) reply {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, r := range p.since(t) {
			if r.mac == mac {
				return r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("no ARP reply from %s within %s", mac, timeout)
	return reply{}
}

// stable waits until only mac has answered for the last d.
func (p *prober) stable(tb testing.TB, mac string, d, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		rs := p.since(time.Now().Add(-d))
		ok := len(rs) >= int(d/(20*time.Millisecond))
		for _, r := range rs {
			if r.mac != mac {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s did not become the only answerer within %s", mac, timeout)
}

// distribution reports p50, p99 and max of ds (in ms) on b.
func distribution(b *testing.B, unit string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-"+unit)
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-"+unit)
	b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, "max-"+unit)
	b.Logf("%s over %d trials: p50 %s p99 %s max %s", unit, len(ds), pct(0.5), pct(0.99), ds[len(ds)-1])
}

// BenchmarkFailoverLinkDown: one op = the owner's LAN link goes down; the
// time until the client gets an ARP reply from the next owner. The link
// comes back and ownership returns before the next trial.
func BenchmarkFailoverLinkDown(b *testing.B) {
	c := newBenchCluster(b)
	addr := netip.MustParseAddr("192.168.10.75")
	rank := c.announce(addr)
	p := c.probe(addr, rank[0])
	var gaps []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		c.lan.IP(rank[0], "link", "set", "eth0", "down")
		r := p.waitFor(b, t0, c.macs[rank[1]], 10*time.Second)
		gaps = append(gaps, r.at.Sub(t0))
		b.StopTimer()
		c.lan.IP(rank[0], "link", "set", "eth0", "up")
		p.stable(b, c.macs[rank[0]], 300*time.Millisecond, 20*time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	distribution(b, "ms", gaps)
}

// BenchmarkFailoverGraceful: one op = the owner's agent stops (SIGTERM's
// path); reported: the longest silence the client saw, and how long two
// MACs both answered.
func BenchmarkFailoverGraceful(b *testing.B) {
	c := newBenchCluster(b)
	addr := netip.MustParseAddr("192.168.10.75")
	rank := c.announce(addr)
	p := c.probe(addr, rank[0])
	var silences, overlaps []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		c.stops[rank[0]]()
		r := p.waitFor(b, t0, c.macs[rank[1]], 10*time.Second)
		b.StopTimer()
		time.Sleep(200 * time.Millisecond)
		// Silence: the longest stretch without any reply around the move.
		rs := p.since(t0.Add(-50 * time.Millisecond))
		var silence time.Duration
		for i := 1; i < len(rs); i++ {
			if rs[i].at.After(r.at.Add(100 * time.Millisecond)) {
				break
			}
			silence = max(silence, rs[i].at.Sub(rs[i-1].at))
		}
		// Overlap: from the new owner's first reply to the old owner's last.
		var lastOld time.Time
		for _, x := range rs {
			if x.mac == c.macs[rank[0]] {
				lastOld = x.at
			}
		}
		overlap := time.Duration(0)
		if lastOld.After(r.at) {
			overlap = lastOld.Sub(r.at)
		}
		silences = append(silences, silence)
		overlaps = append(overlaps, overlap)
		c.startAgent(rank[0])
		p.stable(b, c.macs[rank[0]], 300*time.Millisecond, 20*time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	distribution(b, "ms-silence", silences)
	distribution(b, "ms-two-answer", overlaps)
}

func newBenchCluster(b *testing.B) *cluster {
	b.Helper()
	c := newCluster(b)
	b.Logf("nodes %v, MACs %v", nodes, c.macs)
	return c
}

// Under 5 % random frame loss on the LAN (heartbeats, ARP, everything) the
// owner keeps its address: no other node answers for 10 s.
func TestNoFlappingUnderLoss(t *testing.T) {
	c := newCluster(t)
	addr := netip.MustParseAddr("192.168.10.83")
	owner := c.announce(addr)[0]
	p := c.probe(addr, owner)
	c.lan.AddLoss(20) // 5 %
	start := time.Now()
	time.Sleep(10 * time.Second)
	rs := p.since(start)
	others := 0
	for _, r := range rs {
		if r.mac != c.macs[owner] {
			others++
		}
	}
	// With 50 ms × 6 heartbeats a false death needs 6 consecutive losses:
	// 1.5e-8 per heartbeat, ~1.8e-5 over 10 s for the 6 directed pairs.
	if others > 0 {
		t.Fatalf("%d of %d replies in 10 s came from a node other than the owner %s", others, len(rs), owner)
	}
	// The prober itself sees the loss (request or reply dropped): about
	// 1-(0.95)^2 ≈ 10 % of 1000 probes unanswered.
	t.Logf("%d replies to ~1000 probes in 10 s under 5 %% loss, all from %s", len(rs), owner)
	if len(rs) < 700 {
		t.Errorf("only %d replies: the owner should keep answering under loss", len(rs))
	}
}

// Once converged, exactly one MAC answers, and nothing is written to the
// API server: no Service, no agent report, no lease but the controller's
// one leader Lease.
func TestSteadyStateOneAnswerNoWrites(t *testing.T) {
	c := newCluster(t)
	addr := netip.MustParseAddr("192.168.10.84")
	owner := c.announce(addr)[0]
	p := c.probe(addr, owner)
	c.waitAnnounced("web", "True", "node "+owner)
	time.Sleep(500 * time.Millisecond) // let the last status write land

	ctx := context.Background()
	before, err := c.kube.CoreV1().Services(c.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.kube.CoreV1().Services("").Watch(ctx, metav1.ListOptions{ResourceVersion: before.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var reports heraldv1.HeraldNodeList
	if err := c.cl.List(ctx, &reports); err != nil {
		t.Fatal(err)
	}
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := client.NewWithWatch(c.cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := wc.Watch(ctx, &heraldv1.HeraldNodeList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: reports.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Stop()
	start := time.Now()
	deadline := time.After(3 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-w.ResultChan():
			t.Fatalf("steady state wrote a Service: %s %v", ev.Type, ev.Object)
		case ev := <-rw.ResultChan():
			t.Fatalf("steady state wrote an agent report: %s %v", ev.Type, ev.Object)
		case <-deadline:
			done = true
		}
	}
	leases, err := c.kube.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases.Items {
		// kube-system holds the API server's own identity leases; the
		// controller's leader Lease is one for the cluster, not one per
		// Service or node.
		if l.Namespace != "kube-system" && l.Name != "herald-controller" {
			t.Errorf("lease %s/%s exists; Herald's agents need none", l.Namespace, l.Name)
		}
	}
	rs := p.since(start)
	for _, r := range rs {
		if r.mac != c.macs[owner] {
			t.Fatalf("reply from %s for %s; only the owner %s may answer", r.mac, addr, c.macs[owner])
		}
	}
	if len(rs) < 200 {
		t.Errorf("only %d replies in 3 s of probing every 10 ms", len(rs))
	}
}

// BenchmarkARPReplyLatency: one op = one ARP request from the client for
// an owned address and the owner's reply, timed at the client's socket
// (through the bridge, both kernels and the responder).
func BenchmarkARPReplyLatency(b *testing.B) {
	c := newBenchCluster(b)
	addr := netip.MustParseAddr("192.168.10.75")
	owner := c.announce(addr)[0]
	p := c.probe(addr, owner)
	p.stop()

	conn, ifi := openARP(b, c, "client")
	frame, err := l2.ARPRequest(ifi.HardwareAddr, netip.MustParseAddr("192.168.10.10"), addr)
	if err != nil {
		b.Fatal(err)
	}
	bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	buf := make([]byte, 1500)
	var rtts []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := conn.WriteTo(frame, bcast); err != nil {
			b.Fatal(err)
		}
		for {
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				b.Fatalf("no reply: %v", err)
			}
			m, err := l2.Decode(buf[:n])
			if err == nil && m.Kind == l2.KindARPReply && m.SenderIP == addr {
				break
			}
		}
		rtts = append(rtts, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(rtts[min(len(rtts)-1, len(rtts)*99/100)].Microseconds()), "p99-µs")
}

// announce creates the policy (eth0) and a Service "web" with addr, starts
// every node's agent in-process, and returns the nodes ranked for addr.
func (c *cluster) announce(addr netip.Addr) []string {
	c.t.Helper()
	c.createPolicy("^eth0$")
	c.createService("web", addr.String())
	c.extraServices()
	for _, n := range nodes {
		c.startAgent(n)
	}
	return placement.Rank(addr, nodes)
}

// extraServices creates HERALD_BENCH_SERVICES more Services (with their
// EndpointSlices, in the pool "scale"), so the fail-over benchmarks measure
// a node that owns a share of many addresses, not one.
func (c *cluster) extraServices() {
	c.t.Helper()
	n, _ := strconv.Atoi(os.Getenv("HERALD_BENCH_SERVICES"))
	if n <= 0 {
		return
	}
	pool := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "scale"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.200.0.0/16"}}}}
	if err := c.cl.Create(context.Background(), pool); err != nil {
		c.t.Fatal(err)
	}
	c.createMany(n)
	c.agentLog = io.Discard
}

// probe starts a 10 ms ARP prober for addr in the client and waits until
// only owner answers.
func (c *cluster) probe(addr netip.Addr, owner string) *prober {
	c.t.Helper()
	p := startProber(c.t, c, "client", netip.MustParseAddr("192.168.10.10"), addr, 10*time.Millisecond)
	p.stable(c.t, c.macs[owner], 300*time.Millisecond, 30*time.Second)
	return p
}
