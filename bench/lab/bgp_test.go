package labbench_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testrequire"
)

// The BGP benchmarks run in the same lab with its router (FRR at
// 192.168.10.1, the nodes' default gateway and BGP peer) and the far client
// behind it (192.168.20.10), with examples/bgp.yaml applied: every node
// advertises the pool 192.168.30.0/28 to the router, BFD 300 ms × 3, hold
// time 9 s. Everything is measured from the far client, whose requests
// cross the router, and at the router's kernel FIB.
const (
	// bgpSvc is the Service in examples/bgp.yaml's pool; it selects the
	// same nginx Pods as svcName.
	bgpSvc  = "routed"
	bgpPool = "routed-pool"
	// faultNode is the node whose agent or link fails; the failover
	// benchmark runs the backends on the other two.
	faultNode = "node1"
	// scalePool and scaleAdv are BenchmarkBGPConvergence's pool
	// (scaleCIDR) and advertisement; its Services are labelled
	// network=scale.
	scalePool = "scale-pool"
	scaleAdv  = "scale"
	scaleCIDR = "192.168.32.0/22"
)

var (
	services  = flag.Int("services", 1000, "LoadBalancer Services in BenchmarkBGPConvergence")
	creators  = flag.Int("creators", 4, "concurrent Service creations in BenchmarkBGPConvergence")
	createQPS = flag.Int("create-qps", 50, "API requests per second (client-side limit) of BenchmarkBGPConvergence's creations")
)

// bgpLab is the lab with the BGP objects and bgpSvc.
type bgpLab struct {
	*env
	router, far string            // network namespaces
	routerDir   string            // FRR's vty sockets
	vip         string            // bgpSvc's address
	nodeIP      map[string]string // node name → LAN IPv4 (its next hop at the router)
	all         []string          // every node's next hop, sorted
}

var (
	bgpOnce   sync.Once
	bgpShared *bgpLab
	bgpErr    error
)

// bgpEnv returns the lab set up for BGP, doing that on first use.
func bgpEnv(b *testing.B) *bgpLab {
	b.Helper()
	e := labEnv(b)
	if e.st.Topology.Router == nil || e.st.Topology.Far == nil || e.st.RouterDir == "" {
		testrequire.Missing(b, "the BGP benchmarks need the lab's router, which needs FRR (apt-get install frr)")
	}
	bgpOnce.Do(func() { bgpShared, bgpErr = bgpSetUp(b, e) })
	if bgpErr != nil {
		b.Fatalf("BGP lab: %v", bgpErr)
	}
	return bgpShared
}

func bgpSetUp(b *testing.B, e *env) (*bgpLab, error) {
	ctx, cancel := context.WithTimeout(b.Context(), 3*time.Minute)
	defer cancel()
	l := &bgpLab{env: e, router: e.st.Topology.Router.NetNS, far: e.st.Topology.Far.NetNS, routerDir: e.st.RouterDir, nodeIP: map[string]string{}}
	for _, n := range e.st.Topology.Nodes {
		l.nodeIP[n.Name] = n.IPv4.String()
		l.all = append(l.all, n.IPv4.String())
	}
	slices.Sort(l.all)
	// Hash new connections over the ECMP route by their ports too (as a
	// data-centre router does): with the kernel's default (addresses
	// only) every connection of the one far client takes the same node.
	if _, err := labnet.IP("netns", "exec", l.router, "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		return nil, err
	}
	if _, err := e.kubectl(ctx, "apply", "-f", "../../examples/bgp.yaml"); err != nil {
		return nil, err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: bgpSvc, Namespace: ns, Labels: map[string]string{"network": "routed"},
			Annotations: map[string]string{"herald.dev/pool": bgpPool}},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			Selector:              map[string]string{"app": svcName},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	if _, err := e.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("service %s: %w", bgpSvc, err)
	}
	err := poll(ctx, time.Minute, func() (bool, error) {
		s, err := e.kube.CoreV1().Services(ns).Get(ctx, bgpSvc, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		l.vip = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s got no address from %s: %w", bgpSvc, bgpPool, err)
	}
	b.Logf("BGP: Service %s/%s has %s; next hops at the router: %v", ns, bgpSvc, l.vip, l.all)
	return l, nil
}

// hops returns the next hops of the router's kernel route to vip, sorted.
func (l *bgpLab) hops(vip string) []string {
	out, err := labnet.IP("-n", l.router, "-4", "route", "show", vip+"/32")
	if err != nil {
		return nil
	}
	var hops []string
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "via" && i+1 < len(f) {
			hops = append(hops, f[i+1])
		}
	}
	slices.Sort(hops)
	return hops
}

// waitHops waits until the router routes bgpSvc's address over exactly want.
func (l *bgpLab) waitHops(b *testing.B, want []string, timeout time.Duration) {
	b.Helper()
	var got []string
	if err := poll(b.Context(), timeout, func() (bool, error) {
		got = l.hops(l.vip)
		return slices.Equal(got, want), nil
	}); err != nil {
		b.Fatalf("the router's route to %s: next hops %v, want %v: %v", l.vip, got, want, err)
	}
}

// vtysh runs FRR's vtysh on the router with one command.
func (l *bgpLab) vtysh(ctx context.Context, cmd string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "vtysh", "--vty_socket", l.routerDir, "-c", cmd).Output()
	if err != nil {
		return nil, fmt.Errorf("vtysh -c %q: %w", cmd, err)
	}
	return out, nil
}

// bfdUp returns the peers whose BFD session is up at the router.
func (l *bgpLab) bfdUp(ctx context.Context) []string {
	out, err := l.vtysh(ctx, "show bfd peers json")
	if err != nil {
		return nil
	}
	var peers []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if json.Unmarshal(out, &peers) != nil {
		return nil
	}
	var up []string
	for _, p := range peers {
		if p.Status == "up" {
			up = append(up, p.Peer)
		}
	}
	slices.Sort(up)
	return up
}

// setBFD gives the BGPPeer examples/bgp.yaml's BFD (300 ms × 3) or none,
// and waits until the router's BFD sessions say so and the route is over
// every node again.
func (l *bgpLab) setBFD(b *testing.B, on bool) {
	b.Helper()
	var err error
	if on {
		_, err = l.kubectl(b.Context(), "apply", "-f", "../../examples/bgp.yaml")
	} else {
		_, err = l.kubectl(b.Context(), "patch", "bgppeer", "tor", "--type=json", "-p", `[{"op":"remove","path":"/spec/bfd"}]`)
	}
	if err != nil && !(!on && strings.Contains(err.Error(), "nonexistent")) {
		b.Fatal(err)
	}
	var up []string
	if err := poll(b.Context(), 2*time.Minute, func() (bool, error) {
		up = l.bfdUp(b.Context())
		if on {
			return slices.Equal(up, l.all), nil
		}
		return len(up) == 0, nil
	}); err != nil {
		b.Fatalf("BFD %v: the router's BFD sessions up: %v: %v", on, up, err)
	}
	l.waitHops(b, l.all, 2*time.Minute)
	// Settled: nothing flaps right after (a session reset by the change).
	time.Sleep(3 * time.Second)
	l.waitHops(b, l.all, 2*time.Minute)
}

// stable waits until w has seen the route over every node, unchanged for
// d.
func (l *bgpLab) stable(b *testing.B, w *fibWatcher, d time.Duration) {
	b.Helper()
	if err := poll(b.Context(), 2*time.Minute, func() (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.changes) == 0 {
			return false, nil
		}
		c := w.changes[len(w.changes)-1]
		return slices.Equal(c.hops, l.all) && time.Since(c.at) >= d, nil
	}); err != nil {
		b.Fatalf("the route to %s did not settle over every node for %s: %v (%s)", l.vip, d, err, w.describe(time.Now().Add(-2*time.Minute)))
	}
}

// waitBFD waits until the router's BFD session with ip is up: a trial
// with BFD starts only then.
func (l *bgpLab) waitBFD(b *testing.B, ip string) {
	b.Helper()
	if err := poll(b.Context(), time.Minute, func() (bool, error) {
		return slices.Contains(l.bfdUp(b.Context()), ip), nil
	}); err != nil {
		b.Fatalf("the router's BFD session with %s is not up: %v", ip, err)
	}
}

// bfdAfter waits until the router's BFD session with ip is up and returns
// how long after t that was (to within the 50 ms of its polling).
func (l *bgpLab) bfdAfter(b *testing.B, ip string, t time.Time) time.Duration {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if slices.Contains(l.bfdUp(b.Context()), ip) {
			d := time.Since(t)
			b.Logf("the router's BFD session with %s up %s after the route's return", ip, d.Round(time.Millisecond))
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("the router's BFD session with %s did not come up within a minute", ip)
	return 0
}

// fibChange is the router's kernel route to the address taking new next
// hops.
type fibChange struct {
	at   time.Time
	hops []string
}

// fibWatcher reads the router's kernel route to one address over netlink
// every 2 ms and records each change of its next hops.
type fibWatcher struct {
	background
	mu      sync.Mutex
	changes []fibChange
}

func (l *bgpLab) watchFIB(b *testing.B, vip string, limit time.Duration) *fibWatcher {
	b.Helper()
	dst := &net.IPNet{IP: net.ParseIP(vip).To4(), Mask: net.CIDRMask(32, 32)}
	w := &fibWatcher{}
	last := "-"
	w.watchNetlink(b, l.router, limit, 2*time.Millisecond, func(h *netlink.Handle) {
		routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
		if err != nil {
			return
		}
		hops := routeHops(routes)
		if k := strings.Join(hops, ","); k != last {
			w.mu.Lock()
			w.changes = append(w.changes, fibChange{at: time.Now(), hops: hops})
			w.mu.Unlock()
			last = k
		}
	})
	return w
}

// routeHops returns the gateways of routes, sorted.
func routeHops(routes []netlink.Route) []string {
	var hops []string
	for _, r := range routes {
		if len(r.MultiPath) > 0 {
			for _, nh := range r.MultiPath {
				if nh.Gw != nil {
					hops = append(hops, nh.Gw.String())
				}
			}
		} else if r.Gw != nil {
			hops = append(hops, r.Gw.String())
		}
	}
	slices.Sort(hops)
	return hops
}

// first returns when the route first matched ok at or after t (zero if it
// never did).
func (w *fibWatcher) first(t time.Time, ok func(hops []string) bool) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, c := range w.changes {
		// The state at t is the last change before it.
		if c.at.Before(t) && (i+1 < len(w.changes) && !w.changes[i+1].at.After(t)) {
			continue
		}
		if ok(c.hops) {
			return later(c.at, t)
		}
	}
	return time.Time{}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// describe renders the changes from t0 on.
func (w *fibWatcher) describe(t0 time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, c := range w.changes {
		h := "[" + strings.Join(c.hops, " ") + "]"
		if c.at.Before(t0) {
			parts = []string{h}
			continue
		}
		parts = append(parts, fmt.Sprintf("%s at %+dms", h, c.at.Sub(t0).Milliseconds()))
	}
	return strings.Join(parts, " → ")
}

func without(ip string) func([]string) bool {
	return func(h []string) bool { return !slices.Contains(h, ip) }
}

func equal(want []string) func([]string) bool {
	return func(h []string) bool { return slices.Equal(h, want) }
}

// recovered returns how long after from the client's requests all
// succeeded again: the start of the first successful request after the
// last one started in [from, to) that failed (0 if none failed).
func (p *prober) recovered(from, to time.Time) time.Duration {
	s := p.snapshot()
	last := -1
	for i, x := range s {
		if !x.start.Before(from) && x.start.Before(to) && x.err != nil {
			last = i
		}
	}
	if last < 0 {
		return 0
	}
	for _, x := range s[last+1:] {
		if x.err == nil && x.start.After(s[last].start) {
			return x.start.Sub(from)
		}
	}
	return to.Sub(from)
}

// quantiles reports p50, p90 and max of ds in ms on b, and logs them.
func quantiles(b *testing.B, unit string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	b.ReportMetric(ms(percentile(ds, 0.50)), "p50-"+unit)
	b.ReportMetric(ms(percentile(ds, 0.90)), "p90-"+unit)
	b.ReportMetric(ms(ds[len(ds)-1]), "max-"+unit)
	b.Logf("%s over %d trials: p50 %s p90 %s max %s (min %s)", unit, len(ds), percentile(ds, 0.5), percentile(ds, 0.9), ds[len(ds)-1], ds[0])
}

// bgpFailover is one sub-benchmark of BenchmarkBGPFailover, one kind of
// fault with or without BFD, and the figures of its trials.
type bgpFailover struct {
	l   *bgpLab
	ip  string // the failing node's next hop
	bfd bool
	// Per trial: see BenchmarkBGPFailover; bfdBack is how long after the
	// route's return the router's BFD session with the node came up.
	fib, rec, back, bfdBack   []time.Duration
	failed, total, failedBack int
}

// start begins a trial once the route is over every node (and, with
// BFD, the router's BFD session with the failing node is up): it starts
// a prober from the far client and a watcher of the router's FIB, and
// waits until requests have run clean for 1 s and the route has stayed
// over every node for 2 s.
func (f *bgpFailover) start(b *testing.B) (*prober, *fibWatcher) {
	b.Helper()
	l := f.l
	l.waitHops(b, l.all, 2*time.Minute)
	if f.bfd {
		l.waitBFD(b, f.ip)
	}
	p, w := l.startProberFrom(b, l.far, l.vip, proberLimit), l.watchFIB(b, l.vip, proberLimit)
	p.waitClean(b, time.Second, 30*time.Second)
	l.stable(b, w, 2*time.Second)
	return p, w
}

// failoverTrial is what one trial of BenchmarkBGPFailover saw.
type failoverTrial struct {
	n     int    // the trial's number
	fault string // what failed, for the log
	after string // what ended the fault, for the log: "after the return", ...
	t0    time.Time
	gone  time.Time // the route lost the node
	// split divides the requests into the fault's, from t0, and the
	// return's, until the end.
	split time.Time
	// ret is when the route was over every node again, and back counts
	// from backFrom to it.
	ret, backFrom time.Time
}

// end stops the trial's prober and watcher, adds its figures and logs
// them, and with BFD waits for the router's BFD session with the node.
func (f *bgpFailover) end(b *testing.B, p *prober, w *fibWatcher, tr failoverTrial) {
	b.Helper()
	end := time.Now()
	p.stop()
	w.stop()
	failed, total, kinds := p.failures(tr.t0, tr.split)
	failedBack, totalBack, kindsBack := p.failures(tr.split, end)
	f.failed, f.total, f.failedBack = f.failed+failed, f.total+total+totalBack, f.failedBack+failedBack
	r := p.recovered(tr.t0, tr.split)
	f.fib, f.rec, f.back = append(f.fib, tr.gone.Sub(tr.t0)), append(f.rec, r), append(f.back, tr.ret.Sub(tr.backFrom))
	b.Logf("trial %d: %s: route %s; recovered after %s, %d of %d requests failed%s; %s %d of %d failed%s",
		tr.n, tr.fault, w.describe(tr.t0), r.Round(time.Millisecond), failed, total, paren(kinds), tr.after, failedBack, totalBack, paren(kindsBack))
	if f.bfd {
		f.bfdBack = append(f.bfdBack, f.l.bfdAfter(b, f.ip, tr.ret))
	}
}

// outage is a fault that takes the failing node off the network until it
// is undone: its link down, a power cut.
type outage struct {
	what  string // "node1's link down", for messages
	after string // what ends the fault, for the log: "after the boot"
	apply func(context.Context) error
	undo  func(context.Context) error
	// backWithin bounds the wait for the route's return after undo.
	backWithin time.Duration
	// describe is the trial's fault for the log, from how long apply and
	// undo took and when undo began (after the fault).
	describe func(applied, undoAt, undone time.Duration) string
}

// outage runs one trial of o: 0–3 s at random after the route has settled
// (at any phase of the keepalives (3 s) and BFD packets: trials that took
// the same time would otherwise fail the node at the same point of the
// hold timer each time), o is applied; once the route has lost the node,
// at least 2 s on and with requests clean for 1 s, it is undone, and the
// trial ends when the route is over every node again with requests clean.
func (f *bgpFailover) outage(b *testing.B, trial int, o outage) {
	b.Helper()
	p, w := f.start(b)
	time.Sleep(rand.N(3 * time.Second))
	t0 := time.Now()
	if err := o.apply(b.Context()); err != nil {
		b.Fatalf("trial %d: %s: %v", trial, o.what, err)
	}
	applied := time.Since(t0)
	var gone time.Time
	err := poll(b.Context(), time.Minute, func() (bool, error) {
		gone = w.first(t0, without(f.ip))
		return !gone.IsZero() && time.Since(t0) > 2*time.Second && p.clean(time.Second), nil
	})
	t1 := time.Now()
	if uerr := o.undo(b.Context()); uerr != nil {
		b.Fatalf("trial %d: undo %s: %v", trial, o.what, uerr)
	}
	undone := time.Since(t1)
	if err != nil {
		failed, n, kinds := p.failures(t0, t1)
		b.Fatalf("trial %d: with %s the route kept it or requests did not run clean: %v (route: %s; %d of %d failed%s)", trial, o.what, err, w.describe(t0), failed, n, paren(kinds))
	}
	var ret time.Time
	err = poll(b.Context(), o.backWithin, func() (bool, error) {
		ret = w.first(t1, equal(f.l.all))
		return !ret.IsZero() && p.clean(time.Second), nil
	})
	if err != nil {
		b.Fatalf("trial %d: after %s was undone the route did not regain the node: %v (route: %s)", trial, o.what, err, w.describe(t0))
	}
	// Undoing ends the fault; the route's return is measured from then.
	f.end(b, p, w, failoverTrial{
		n: trial, fault: o.describe(applied, t1.Sub(t0), undone), after: o.after,
		t0: t0, gone: gone, split: t1, backFrom: t1, ret: ret,
	})
}

// report reports the sub-benchmark's figures on b.
func (f *bgpFailover) report(b *testing.B) {
	b.ReportMetric(0, "ns/op")
	quantiles(b, "ms-fib", f.fib)
	quantiles(b, "ms-recover", f.rec)
	quantiles(b, "ms-back", f.back)
	quantiles(b, "ms-bfd-after-route", f.bfdBack)
	b.ReportMetric(float64(f.failed), "failed")
	b.ReportMetric(float64(f.failedBack), "failed-on-return")
	b.ReportMetric(float64(f.total), "requests")
}

// BenchmarkBGPFailover: the far client GETs / from bgpSvc's address every
// 10 ms (new connection, 100 ms timeout; the router hashes each connection
// over the ECMP route by its ports), the backends run on cp1 and node2,
// and node1 fails; one trial = one failure. Per trial:
//
//   - fib: from the fault until the router's kernel route no longer has
//     node1 as a next hop (read over netlink every 2 ms);
//   - recover: from the fault until the far client's requests all
//     succeed again (the start of the first good request after the last
//     failed one; 0 if none failed);
//   - back: until the route has all three next hops again (kill-9: from
//     the kill, the kubelet restarts the agent; link-down: from the link
//     coming back; power-cut: from the start of the node's boot).
//
// Faults: kill-9 of node1's agent process (afterwards its Pod is replaced,
// so every trial sees a fresh container), and link-down of node1's eth0
// (up again once requests have run clean for 1 s, at least 2 s after the
// fault; the fault comes 0–3 s, at random, after the route has settled),
// and a power cut of node1 (herald-lab crash-node: its link, then every
// process of the node and its network namespace; booted again once
// requests have run clean for 1 s; the same random phase). Each with BFD (examples/bgp.yaml: 300 ms × 3) and with the
// BGPPeer's spec.bfd removed (the hold time, 9 s, decides).
func BenchmarkBGPFailover(b *testing.B) {
	l := bgpEnv(b)
	e := l.env
	e.setTrafficPolicy(b, corev1.ServiceExternalTrafficPolicyCluster)
	e.place(b, "cp1", "node2")
	e.agentsReady(b, 2*time.Minute)
	l.waitHops(b, l.all, 2*time.Minute)
	ip := l.nodeIP[faultNode]
	b.Logf("VIP %s over %v at the router; %s (%s) fails; backends on cp1 and node2", l.vip, l.all, faultNode, ip)

	kill := func(b *testing.B, bfd bool) {
		run := &bgpFailover{l: l, ip: ip, bfd: bfd}
		for range b.N {
			for trial := range *trials {
				p, w := run.start(b)
				pid, pod := e.agentPID(b, faultNode)
				t0 := time.Now()
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					b.Fatalf("kill -9 %d: %v", pid, err)
				}
				var gone, ret time.Time
				err := poll(b.Context(), time.Minute, func() (bool, error) {
					if gone = w.first(t0, without(ip)); gone.IsZero() {
						return false, nil
					}
					ret = w.first(gone, equal(l.all))
					return !ret.IsZero() && time.Since(t0) > 2*time.Second && p.clean(time.Second), nil
				})
				if err != nil {
					b.Fatalf("trial %d: after kill -9 of %s's agent the route did not lose and regain %s, or requests did not run clean: %v (route: %s)", trial, faultNode, ip, err, w.describe(t0))
				}
				// The route's return ends both the fault and the
				// measure of its coming back.
				run.end(b, p, w, failoverTrial{
					n: trial, fault: fmt.Sprintf("kill -9 of %s (pid %d)", pod, pid), after: "after the return",
					t0: t0, gone: gone, split: ret, backFrom: t0, ret: ret,
				})
				// A new Pod, so that every kill meets a fresh container
				// (no growing back-off); the route must be over every node,
				// unchanged for 3 s, before the next trial.
				wd, tDel := l.watchFIB(b, l.vip, proberLimit), time.Now()
				if err := e.kube.CoreV1().Pods(agentNS).Delete(b.Context(), pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil && !apierrors.IsNotFound(err) {
					b.Fatalf("delete %s: %v", pod, err)
				}
				e.agentsReady(b, 2*time.Minute)
				l.stable(b, wd, 3*time.Second)
				wd.stop()
				b.Logf("trial %d: %s replaced: route %s", trial, pod, wd.describe(tDel))
			}
		}
		run.report(b)
	}

	// linkDown: node1's eth0 goes down, and up again once requests have
	// run clean for 1 s.
	netns := e.host(b, faultNode).NetNS
	linkDown := outage{
		what:  faultNode + "'s link down",
		after: "after the link came back",
		apply: func(context.Context) error {
			_, err := labnet.IP("-n", netns, "link", "set", "eth0", "down")
			return err
		},
		undo: func(context.Context) error {
			_, err := labnet.IP("-n", netns, "link", "set", "eth0", "up")
			return err
		},
		backWithin: 2 * time.Minute,
		describe: func(_, undoAt, _ time.Duration) string {
			return fmt.Sprintf("%s's eth0 down, up at %+dms", faultNode, undoAt.Milliseconds())
		},
	}
	// powerCut: herald-lab crash-node: node1's LAN link goes, then every
	// process of the node (kubelet, containerd, Pods, the agent) gets
	// SIGKILL and its network namespace is deleted; nothing it sends as
	// it dies reaches the LAN. The node boots again (boot-node: new
	// namespace, same MAC and address, containerd and the kubelet from
	// its directory) once requests have run clean for 1 s; its return is
	// measured from the start of the boot (the node's boot, Ready, the
	// agent's restart and session included).
	powerCut := outage{
		what:       faultNode + "'s power cut",
		after:      "after the boot",
		apply:      func(ctx context.Context) error { return lab.CrashNode(ctx, e.st, faultNode) },
		undo:       func(ctx context.Context) error { return lab.BootNode(ctx, e.st, faultNode) },
		backWithin: 3 * time.Minute,
		describe: func(applied, undoAt, undone time.Duration) string {
			return fmt.Sprintf("%s's power cut (took %dms), boot at %+dms (Ready after %dms)", faultNode,
				applied.Milliseconds(), undoAt.Milliseconds(), undone.Milliseconds())
		},
	}
	outages := func(b *testing.B, bfd bool, o outage) {
		run := &bgpFailover{l: l, ip: ip, bfd: bfd}
		for range b.N {
			for trial := range *trials {
				run.outage(b, trial, o)
			}
		}
		run.report(b)
	}

	b.Run("bfd", func(b *testing.B) {
		l.setBFD(b, true)
		b.Run("kill-9", func(b *testing.B) { kill(b, true) })
		b.Run("link-down", func(b *testing.B) { outages(b, true, linkDown) })
		b.Run("power-cut", func(b *testing.B) { outages(b, true, powerCut) })
	})
	b.Run("hold-timer", func(b *testing.B) {
		l.setBFD(b, false)
		defer l.setBFD(b, true)
		b.Run("kill-9", func(b *testing.B) { kill(b, false) })
		b.Run("link-down", func(b *testing.B) { outages(b, false, linkDown) })
		b.Run("power-cut", func(b *testing.B) { outages(b, false, powerCut) })
	})
}

// BenchmarkBGPRollingRestart: `kubectl rollout restart
// daemonset/herald-agent` while the far client GETs / from bgpSvc's
// address every 10 ms (new connection, 100 ms timeout); backends on every
// node, Cluster. A trial lasts from the restart until `rollout status` is
// done, the route is over every node again and requests have run clean
// for 2 s. Reported: failed requests of all (goal 0), the longest gap.
func BenchmarkBGPRollingRestart(b *testing.B) {
	l := bgpEnv(b)
	e := l.env
	e.setTrafficPolicy(b, corev1.ServiceExternalTrafficPolicyCluster)
	e.place(b, e.nodeNames()...)
	e.agentsReady(b, 2*time.Minute)
	var run rollingRestart
	for range b.N {
		for trial := range *restarts {
			l.waitHops(b, l.all, 2*time.Minute)
			p, w := e.startProberFrom(b, l.far, l.vip, 5*time.Minute), l.watchFIB(b, l.vip, 5*time.Minute)
			t0, rolled := e.restartAgents(b, p)
			err := poll(b.Context(), 2*time.Minute, func() (bool, error) {
				return slices.Equal(l.hops(l.vip), l.all) && p.clean(2*time.Second), nil
			})
			if err != nil {
				b.Fatalf("trial %d: requests did not run clean or the route did not come back after the rolling restart: %v", trial, err)
			}
			tr := run.end(p, w, t0)
			b.Logf("trial %d: rolled in %s; %d of %d requests failed%s; gaps %s; route %s",
				trial, rolled.Round(100*time.Millisecond), tr.failed, tr.total, paren(tr.kinds), describe(tr.gaps, t0), w.describe(t0))
		}
	}
	run.report(b)
}

// bgpSummary is the part of `show bgp ipv4 unicast summary json` read
// here.
type bgpSummary struct {
	Peers map[string]struct {
		State  string `json:"state"`
		PfxRcd int    `json:"pfxRcd"`
	} `json:"peers"`
}

func (l *bgpLab) summary(ctx context.Context) (bgpSummary, error) {
	var s bgpSummary
	out, err := l.vtysh(ctx, "show bgp ipv4 unicast summary json")
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(out, &s)
	return s, err
}

// received returns the fewest and the most prefixes a node's session has
// delivered to the router (pfxRcd).
func (l *bgpLab) received(ctx context.Context) (minPfx, maxPfx int, err error) {
	s, err := l.summary(ctx)
	if err != nil {
		return 0, 0, err
	}
	minPfx = -1
	for _, ip := range l.all {
		p, ok := s.Peers[ip]
		if !ok {
			return 0, 0, fmt.Errorf("no peer %s in the summary", ip)
		}
		if minPfx < 0 || p.PfxRcd < minPfx {
			minPfx = p.PfxRcd
		}
		maxPfx = max(maxPfx, p.PfxRcd)
	}
	return minPfx, maxPfx, nil
}

// fibCount returns how many /32 routes in cidr the router's kernel holds,
// and how many of those go over every node.
func (l *bgpLab) fibCount(h *netlink.Handle, cidr netip.Prefix) (routes, ecmp int) {
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return -1, -1
	}
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if ones != 32 || !ok || !cidr.Contains(a) {
			continue
		}
		routes++
		if slices.Equal(routeHops([]netlink.Route{r}), l.all) {
			ecmp++
		}
	}
	return routes, ecmp
}

// BenchmarkBGPConvergence: -services LoadBalancer Services (Cluster,
// backends on every node) created at once in a pool of their own
// (192.168.32.0/22, with its own BGPAdvertisement), -creators at a time;
// measured from the first create: every Service has its address (the
// API), the router's RIB has every prefix from every node (vtysh `show bgp
// ipv4 unicast summary json`, pfxRcd of each peer, read every 200 ms), and
// its kernel FIB has a route over all three nodes for each (netlink).
// The creations are bounded: -creators at a time, -create-qps requests/s.
// Then the Services are deleted at once (`kubectl delete svc -l network=scale`) and the time
// until the router holds none of the prefixes is measured.
func BenchmarkBGPConvergence(b *testing.B) {
	l := bgpEnv(b)
	e := l.env
	e.setTrafficPolicy(b, corev1.ServiceExternalTrafficPolicyCluster)
	e.place(b, e.nodeNames()...)
	e.agentsReady(b, 2*time.Minute)
	l.waitHops(b, l.all, 2*time.Minute)
	cidr := netip.MustParsePrefix(scaleCIDR)
	objs := fmt.Sprintf(`apiVersion: herald.dev/v1alpha1
kind: LoadBalancerIPPool
metadata:
  name: %s
  labels: {advertise: bgp-scale}
spec:
  blocks: [{cidr: %s}]
  serviceSelector: {matchLabels: {network: scale}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata:
  name: %s
spec:
  poolSelector: {matchLabels: {advertise: bgp-scale}}
`, scalePool, scaleCIDR, scaleAdv)
	file := filepath.Join(e.dir, "bgp-scale.yaml")
	if err := os.WriteFile(file, []byte(objs), 0o644); err != nil {
		b.Fatal(err)
	}
	if _, err := e.kubectl(b.Context(), "apply", "-f", file); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if _, err := e.kubectl(context.Background(), "delete", "--ignore-not-found", "-f", file); err != nil {
			b.Error(err)
		}
	}()
	h := netlinkAt(b, l.router)
	defer h.Close()
	// A client of its own, faster than the shared one's 5 requests/s.
	cfg, err := clientcmd.BuildConfigFromFlags("", e.st.Kubeconfig)
	if err != nil {
		b.Fatal(err)
	}
	cfg.QPS, cfg.Burst = float32(*createQPS), *createQPS
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	svcs := kube.CoreV1().Services(ns)
	sel := metav1.ListOptions{LabelSelector: "network=scale"}
	n := *services
	for range b.N {
		base, _, err := l.received(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		// The pool's own routes only: none of its Services may be left.
		if r, _ := l.fibCount(h, cidr); r != 0 {
			b.Fatalf("the router still routes %d addresses of %s", r, scaleCIDR)
		}
		b.Logf("%d Services into %s, %d creations at a time, at most %d requests/s; each node's session has %d prefixes before", n, scaleCIDR, *creators, *createQPS, base)

		var mu sync.Mutex
		var createErrs []error
		var createdN atomic.Int64
		t0 := time.Now()
		var created time.Time
		next := make(chan int)
		var wg sync.WaitGroup
		for range *creators {
			wg.Go(func() {
				for i := range next {
					s := &corev1.Service{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("scale-%04d", i), Namespace: ns, Labels: map[string]string{"network": "scale"},
							Annotations: map[string]string{"herald.dev/pool": scalePool}},
						Spec: corev1.ServiceSpec{
							Type:                  corev1.ServiceTypeLoadBalancer,
							Selector:              map[string]string{"app": svcName},
							ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
							Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}},
						},
					}
					if _, err := svcs.Create(b.Context(), s, metav1.CreateOptions{}); err != nil {
						mu.Lock()
						createErrs = append(createErrs, err)
						mu.Unlock()
					}
					createdN.Add(1)
				}
			})
		}
		done := make(chan struct{})
		go func() {
			for i := range n {
				next <- i
			}
			close(next)
			wg.Wait()
			mu.Lock()
			created = time.Now()
			mu.Unlock()
			close(done)
		}()

		// Watch: addresses (API, every second), RIB and FIB (every 200 ms).
		var allocated, rib, ribAll, fib time.Time
		var lastState string
		lastAPI, lastLog, gotAddr := time.Time{}, t0, 0
		err = poll(b.Context(), 15*time.Minute, func() (bool, error) {
			now := time.Now()
			if allocated.IsZero() && now.Sub(lastAPI) > time.Second {
				lastAPI = now
				if list, err := svcs.List(b.Context(), sel); err == nil {
					got := 0
					for _, s := range list.Items {
						if len(s.Status.LoadBalancer.Ingress) > 0 {
							got++
						}
					}
					gotAddr = got
					if got == n {
						allocated = time.Now()
					}
				}
			}
			minPfx, maxPfx, err := l.received(b.Context())
			if err == nil {
				if rib.IsZero() && maxPfx-base >= n {
					rib = time.Now()
				}
				if ribAll.IsZero() && minPfx-base >= n {
					ribAll = time.Now()
				}
			}
			routes, ecmp := l.fibCount(h, cidr)
			if fib.IsZero() && ecmp >= n {
				fib = time.Now()
			}
			lastState = fmt.Sprintf("created %d, with an address %d; prefixes from a node: fewest %d, most %d (of %d more); FIB %d routes, %d over every node",
				createdN.Load(), gotAddr, minPfx-base, maxPfx-base, n, routes, ecmp)
			if time.Since(lastLog) >= 4*time.Second {
				lastLog = time.Now()
				b.Logf("+%.0fs: %s", time.Since(t0).Seconds(), lastState)
			}
			return !allocated.IsZero() && !ribAll.IsZero() && !fib.IsZero() && !rib.IsZero(), nil
		})
		<-done
		if len(createErrs) > 0 {
			b.Fatalf("%d creations failed, the first: %v", len(createErrs), createErrs[0])
		}
		if err != nil {
			b.Fatalf("the router did not converge on %d Services: %v (last: %s)", n, err, lastState)
		}
		// The RIB itself: every prefix of the pool, each with a path per node.
		if out, err := l.vtysh(b.Context(), "show bgp ipv4 unicast json"); err == nil {
			var t struct {
				Routes map[string][]json.RawMessage `json:"routes"`
			}
			if err := json.Unmarshal(out, &t); err == nil {
				prefixes, full := 0, 0
				for p, paths := range t.Routes {
					if pp, err := netip.ParsePrefix(p); err == nil && cidr.Contains(pp.Addr()) {
						prefixes++
						if len(paths) == len(l.all) {
							full++
						}
					}
				}
				b.Logf("show bgp ipv4 unicast json: %d prefixes in %s, %d of them with a path from each of the %d nodes", prefixes, scaleCIDR, full, len(l.all))
				b.ReportMetric(float64(prefixes), "prefixes")
			}
		}
		since := func(t time.Time) float64 { return t.Sub(t0).Seconds() }
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(since(created), "s-created")
		b.ReportMetric(since(allocated), "s-allocated")
		b.ReportMetric(since(rib), "s-rib")
		b.ReportMetric(since(ribAll), "s-rib-every-node")
		b.ReportMetric(ribAll.Sub(created).Seconds(), "s-rib-after-last-create")
		b.ReportMetric(since(fib), "s-fib")
		b.Logf("%d Services: created in %.1f s; every address allocated at %.1f s; the router's RIB has every prefix at %.1f s, from every node at %.1f s (%.1f s after the last create); its FIB routes all over three nodes at %.1f s",
			n, since(created), since(allocated), since(rib), since(ribAll), ribAll.Sub(created).Seconds(), since(fib))

		t2 := time.Now()
		if _, err := e.kubectl(b.Context(), "-n", ns, "delete", "svc", "-l", "network=scale", "--wait=false"); err != nil {
			b.Fatal(err)
		}
		b.Logf("kubectl delete returned after %.1f s", time.Since(t2).Seconds())
		var withdrawn, fibEmpty time.Time
		err = poll(b.Context(), 10*time.Minute, func() (bool, error) {
			_, maxPfx, err := l.received(b.Context())
			if err == nil && withdrawn.IsZero() && maxPfx <= base {
				withdrawn = time.Now()
			}
			if r, _ := l.fibCount(h, cidr); r == 0 && fibEmpty.IsZero() {
				fibEmpty = time.Now()
			}
			lastState = fmt.Sprintf("most prefixes from a node %d (%d before)", maxPfx, base)
			return !withdrawn.IsZero() && !fibEmpty.IsZero(), nil
		})
		if err != nil {
			b.Fatalf("the router did not withdraw the %d Services' routes: %v (last: %s)", n, err, lastState)
		}
		b.ReportMetric(withdrawn.Sub(t2).Seconds(), "s-withdrawn")
		b.ReportMetric(fibEmpty.Sub(t2).Seconds(), "s-fib-empty")
		b.Logf("deleted at once: the RIB holds none of them after %.1f s, the FIB after %.1f s", withdrawn.Sub(t2).Seconds(), fibEmpty.Sub(t2).Seconds())
		// Until the Services are gone from the API too.
		if err := poll(b.Context(), 5*time.Minute, func() (bool, error) {
			list, err := svcs.List(b.Context(), sel)
			return err == nil && len(list.Items) == 0, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
