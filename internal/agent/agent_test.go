package agent_test

// Network tests on real kernels: three node namespaces and a client on one
// bridge, an agent per node (in this process, its raw sockets in the node's
// namespace, its API traffic to the real API server on loopback), and the
// client's own kernel ARP/NDP deciding who answers.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/placement"
	"github.com/herald-lb/herald/internal/testenv"
)

var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{filepath.Join("..", "..", "config", "crd")}})

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	os.Exit(shared.Run(m))
}

const nsPrefix = "herald-ag-"

var nodes = []string{"n1", "n2", "n3"}

// cluster is one test's LAN, API objects, controller and agents.
type cluster struct {
	t      testing.TB
	env    *testenv.Env
	lan    *netnstest.LAN
	cfg    *rest.Config
	kube   kubernetes.Interface
	cl     client.Client
	ns     string
	stops  map[string]func()
	macs   map[string]string
	policy string
	// keys are the agents' fixed keys; with keySecret set they read the
	// Secret instead.
	keys      [][]byte
	keySecret string
	// agentOpts adjust every agent started from now on.
	agentOpts []func(*agent.Options)
	stopCtl   func()
	// services counts the Services created; each gets its own port, so
	// any two may share an address.
	services int
	// agentLog, when set, receives the output of agent processes instead
	// of the test log (benchmarks with thousands of Services).
	agentLog io.Writer
}

// testKey is the agents' fixed heartbeat key.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func newCluster(t testing.TB) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs network namespaces and a real API server")
	}
	netnstest.Require(t, nsPrefix)
	return newClusterOn(t, shared.Env(t))
}

// nodeAddrs are node i's LAN addresses (its InternalIPs).
func nodeAddrs(i int) []string {
	return []string{fmt.Sprintf("192.168.10.%d", 215+i), fmt.Sprintf("fd00:10::%d", 215+i)}
}

// newClusterOn builds the LAN, the Nodes (with their InternalIPs, so the
// agents find their LAN), a pool for the tests' addresses and a running
// controller against env.
func newClusterOn(t testing.TB, env *testenv.Env) *cluster {
	t.Helper()
	hosts := []netnstest.Host{{Role: "client", Addrs: []string{"192.168.10.10/24", "fd00:10::10/64"}}}
	for i, n := range nodes {
		a := nodeAddrs(i)
		hosts = append(hosts, netnstest.Host{
			Role:  n,
			MAC:   fmt.Sprintf("02:00:5e:10:02:%02x", 0x15+i),
			Addrs: []string{a[0] + "/24", a[1] + "/64"},
		})
	}
	c := &cluster{t: t, env: env, lan: netnstest.New(t, nsPrefix, hosts...), cfg: rest.CopyConfig(env.Config),
		stops: map[string]func(){}, macs: map[string]string{}, keys: [][]byte{testKey}}
	c.cfg.QPS, c.cfg.Burst = 200, 400
	c.kube = kubernetes.NewForConfigOrDie(c.cfg)
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if c.cl, err = client.New(c.cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"herald-system"} {
		if _, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	ns, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ag-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.ns = ns.Name
	for i, n := range nodes {
		c.macs[n] = c.lan.MAC(n).String()
		c.resetNode(n, nodeAddrs(i))
	}
	pool := &heraldv1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-tests"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{
			{Start: "192.168.10.64", Stop: "192.168.10.99"}, {CIDR: "fd00:10::/120"}}},
	}
	if err := c.cl.Create(ctx, pool); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, stop := range c.stops {
			stop()
		}
		if c.stopCtl != nil {
			c.stopCtl()
		}
		bg := context.Background()
		_ = c.cl.DeleteAllOf(bg, &heraldv1.L2AnnouncementPolicy{})
		_ = c.cl.DeleteAllOf(bg, &heraldv1.HeraldNode{})
		_ = c.cl.DeleteAllOf(bg, &heraldv1.LoadBalancerIPPool{})
		_ = c.kube.CoreV1().Secrets("herald-system").DeleteCollection(bg, metav1.DeleteOptions{}, metav1.ListOptions{})
		svcs, _ := c.kube.CoreV1().Services(c.ns).List(bg, metav1.ListOptions{})
		for _, s := range svcs.Items {
			_ = c.kube.CoreV1().Services(c.ns).Delete(bg, s.Name, metav1.DeleteOptions{})
		}
	})
	c.startController()
	return c
}

// resetNode creates the Node (or resets its labels) and sets its
// InternalIPs, as a kubelet would.
func (c *cluster) resetNode(name string, addrs []string) {
	c.t.Helper()
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "linux"}}}
	got, err := c.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = c.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			got.Labels = node.Labels
			got, err = c.kube.CoreV1().Nodes().Update(ctx, got, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		c.t.Fatalf("node %s: %v", name, err)
	}
	got.Status.Addresses = nil
	for _, a := range addrs {
		got.Status.Addresses = append(got.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	if _, err := c.kube.CoreV1().Nodes().UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("node %s status: %v", name, err)
	}
}

// startController runs Herald's controller in this process; stopCtl stops
// it (a restart is stopCtl then startController).
func (c *cluster) startController(mutate ...func(*controller.Options)) {
	c.t.Helper()
	opts := controller.Options{
		Identity:        fmt.Sprintf("ctl-%d", time.Now().UnixNano()),
		DefaultClass:    true,
		LeaseDuration:   3 * time.Second,
		RenewDeadline:   2 * time.Second,
		RetryPeriod:     200 * time.Millisecond,
		HeartbeatSecret: types.NamespacedName{Namespace: "herald-system", Name: "herald-heartbeat"},
		Logger:          slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "controller"),
	}
	for _, m := range mutate {
		m(&opts)
	}
	ctl, err := controller.New(c.cfg, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	select {
	case <-ctl.Ready():
	case err := <-done:
		c.t.Fatalf("controller exited: %v", err)
	case <-time.After(30 * time.Second):
		c.t.Fatal("controller did not lead within 30 s")
	}
	stopped := false
	c.stopCtl = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			c.t.Error("controller did not stop")
		}
	}
}

func (c *cluster) createPolicy(interfaces ...string) {
	c.t.Helper()
	p := &heraldv1.L2AnnouncementPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "p-" + strings.Trim(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(c.t.Name())), "-")},
		Spec: heraldv1.L2AnnouncementPolicySpec{
			Interfaces:   interfaces,
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/os": "linux"}},
		},
	}
	if err := c.cl.Create(context.Background(), p); err != nil {
		c.t.Fatalf("create policy: %v", err)
	}
	c.policy = p.Name
}

// createService makes a LoadBalancer Service asking for ips (one per
// family, herald.dev/ips) and waits until the controller gave them.
func (c *cluster) createService(name string, ips ...string) {
	c.t.Helper()
	c.createServiceWith(name, map[string]string{"herald.dev/ips": strings.Join(ips, ",")}, ips...)
}

// createServiceWith makes a LoadBalancer Service with annotations and
// waits until it has ips.
func (c *cluster) createServiceWith(name string, annotations map[string]string, ips ...string) {
	c.t.Helper()
	ctx := context.Background()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: int32(80 + c.services), TargetPort: intstr.FromInt32(80)}},
		},
	}
	c.services++
	if len(ips) > 1 {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	if _, err := c.kube.CoreV1().Services(c.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create service: %v", err)
	}
	c.waitIngress(name, ips...)
}

// waitIngress waits until the Service's status shows exactly ips.
func (c *cluster) waitIngress(name string, ips ...string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		var got []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			got = append(got, in.IP)
		}
		if strings.Join(got, ",") == strings.Join(ips, ",") {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s has addresses %v, want %v", name, got, ips)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startAgent runs node's agent until stop (graceful) or the test ends.
func (c *cluster) startAgent(node string) {
	c.t.Helper()
	opts := agent.Options{
		NodeName:        node,
		DefaultClass:    true,
		NetNS:           ptr.To(c.lan.Handle(node)),
		Version:         "test",
		ConflictReprobe: time.Second,
		Logger:          slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if c.keySecret != "" {
		opts.KeySecret = types.NamespacedName{Namespace: "herald-system", Name: c.keySecret}
	} else {
		opts.Keys = c.keys
	}
	for _, m := range c.agentOpts {
		m(&opts)
	}
	c.startAgentWith(node, opts)
}

// startAgentWith runs an agent with opts until stop or the test ends.
func (c *cluster) startAgentWith(node string, opts agent.Options) {
	c.t.Helper()
	a, err := agent.New(c.cfg, opts)
	if err != nil {
		c.t.Fatalf("new agent %s: %v", node, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	c.stops[node] = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				c.t.Errorf("agent %s: %v", node, err)
			}
		case <-time.After(20 * time.Second):
			c.t.Errorf("agent %s did not stop", node)
		}
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// owner returns the node the client's kernel resolves addr to ("" if none).
func (c *cluster) owner(addr netip.Addr, timeout time.Duration) string {
	c.t.Helper()
	mac := c.lan.Resolve("client", addr, timeout)
	for n, m := range c.macs {
		if m == mac {
			return n
		}
	}
	if mac != "" {
		c.t.Fatalf("%s resolved to %s, which is no node's MAC", addr, mac)
	}
	return ""
}

// waitOwner waits until the client resolves addr to want.
func (c *cluster) waitOwner(addr netip.Addr, want string, timeout time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	got := ""
	for time.Now().Before(deadline) {
		if got = c.owner(addr, time.Second); got == want {
			return time.Since(start)
		}
	}
	c.t.Fatalf("%s resolves to %q, want %q after %s", addr, got, want, timeout)
	return 0
}

// The best-ranked node answers, for IPv4 and IPv6, and says so in the
// Service's condition; when its link goes down the next one takes over;
// when that one stops gracefully the last one takes over.
//
// The agents' metrics follow: herald_agent_addresses_eligible counts the
// two addresses on every node, herald_agent_address_owned names each
// address on its owner only, and herald_agent_takeover_seconds gets a
// sample on the node that takes over, after a death and after a leave.
func TestAnnounceAndFailOver(t *testing.T) {
	c := newCluster(t)
	regs := c.withRegistries()
	c.createPolicy("^eth0$")
	v4, v6 := netip.MustParseAddr("192.168.10.75"), netip.MustParseAddr("fd00:10::75")
	c.createService("web", v4.String(), v6.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	rank4 := placement.Rank(v4, nodes)
	rank6 := placement.Rank(v6, nodes)
	t.Logf("rendezvous rank for %s: %v; for %s: %v", v4, rank4, v6, rank6)

	c.waitOwner(v4, rank4[0], 15*time.Second)
	c.waitOwner(v6, rank6[0], 15*time.Second)

	for _, n := range nodes {
		waitMetric(t, regs[n], n+": addresses eligible on eth0", func(r *prometheus.Registry) bool {
			return gauges(t, r, "herald_agent_addresses_eligible")["interface=eth0"] == 2
		})
		waitMetric(t, regs[n], n+": owned addresses", func(r *prometheus.Registry) bool {
			got := gauges(t, r, "herald_agent_address_owned")
			want := map[string]float64{}
			if n == rank4[0] {
				want["address=192.168.10.75,interface=eth0"] = 1
			}
			if n == rank6[0] {
				want["address=fd00:10::75,interface=eth0"] = 1
			}
			return maps.Equal(got, want)
		})
		if h := takeovers(t, regs[n]); h.count != 0 {
			t.Errorf("%s: %d take-overs observed before any node died or left", n, h.count)
		}
	}

	// The owner of the primary address writes herald.dev/Announced.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionAnnounced)
		if cond != nil && cond.Status == metav1.ConditionTrue && strings.Contains(cond.Message, "node "+rank4[0]+" on eth0") {
			t.Logf("condition: %s", cond.Message)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Announced condition = %+v, want True naming node %s on eth0", cond, rank4[0])
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Cable pulled on the owner: the next-ranked node answers.
	start := time.Now()
	c.lan.IP(rank4[0], "link", "set", "eth0", "down")
	c.waitOwner(v4, rank4[1], 10*time.Second)
	t.Logf("link down on %s: %s answers after %s (client-side, includes neighbour re-resolution)", rank4[0], rank4[1], time.Since(start).Round(time.Millisecond))
	died := time.Since(start)
	waitMetric(t, regs[rank4[1]], rank4[1]+": a take-over after "+rank4[0]+" died", func(r *prometheus.Registry) bool {
		return takeovers(t, r).count >= 1
	})
	h := takeovers(t, regs[rank4[1]])
	// Timed from noticing the death (DeadAfter after the last heartbeat)
	// to the first announcement: within what the client saw.
	if h.sum < 0 || h.sum/float64(h.count) > died.Seconds() {
		t.Errorf("%s: take-over latency %v s over %d samples; want at least 0 and at most the %s the client saw", rank4[1], h.sum, h.count, died)
	}
	t.Logf("%s: herald_agent_takeover_seconds count %d sum %.6f s", rank4[1], h.count, h.sum)
	if got := gauges(t, regs[rank4[1]], "herald_agent_address_owned")["address=192.168.10.75,interface=eth0"]; got != 1 {
		t.Errorf("%s answers for %s but herald_agent_address_owned is %v", rank4[1], v4, got)
	}

	// Graceful stop of the new owner: the last node takes over.
	before := takeovers(t, regs[rank4[2]]).count
	start = time.Now()
	c.stops[rank4[1]]()
	c.waitOwner(v4, rank4[2], 10*time.Second)
	t.Logf("graceful stop of %s: %s answers after %s", rank4[1], rank4[2], time.Since(start).Round(time.Millisecond))
	waitMetric(t, regs[rank4[2]], rank4[2]+": a take-over after "+rank4[1]+" left", func(r *prometheus.Registry) bool {
		return takeovers(t, r).count > before
	})
	h = takeovers(t, regs[rank4[2]])
	t.Logf("%s: herald_agent_takeover_seconds count %d sum %.6f s", rank4[2], h.count, h.sum)
	if got := gauges(t, regs[rank4[1]], "herald_agent_address_owned"); len(got) != 0 {
		t.Errorf("%s stopped, but herald_agent_address_owned still shows %v", rank4[1], got)
	}
}

// waitMetric waits up to 10 s for ok to hold on reg.
func waitMetric(t *testing.T, reg *prometheus.Registry, what string, ok func(*prometheus.Registry) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(reg) {
		if time.Now().After(deadline) {
			mfs, _ := reg.Gather()
			var names []string
			for _, mf := range mfs {
				if strings.HasPrefix(mf.GetName(), "herald_agent_") {
					names = append(names, mf.String())
				}
			}
			t.Fatalf("%s: not seen within 10 s; herald_agent_* series:\n%s", what, strings.Join(names, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gauges reads a gauge family from reg, keyed by its labels
// ("name=value,…" in label order).
func gauges(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(ls, ",")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// histogram is a histogram's sample count and sum, over its series.
type histogram struct {
	count uint64
	sum   float64
}

// takeovers reads herald_agent_takeover_seconds from reg.
func takeovers(t *testing.T, reg *prometheus.Registry) histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h histogram
	for _, mf := range mfs {
		if mf.GetName() != "herald_agent_takeover_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h.count += m.GetHistogram().GetSampleCount()
			h.sum += m.GetHistogram().GetSampleSum()
		}
	}
	return h
}

// Services that no policy selects, or whose policy matches no interface,
// are not answered; the latter is reported. herald_agent_addresses_eligible
// shows 0 on the LAN meanwhile, and the address once a policy selects it.
func TestNotAnnouncedWithoutPolicyOrInterface(t *testing.T) {
	c := newCluster(t)
	regs := c.withRegistries()
	addr := netip.MustParseAddr("192.168.10.76")
	c.createService("lonely", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	time.Sleep(time.Second) // let the agents settle
	if got := c.owner(addr, 2*time.Second); got != "" {
		t.Fatalf("%s answered for a Service no policy selects", got)
	}
	for _, n := range nodes {
		waitMetric(t, regs[n], n+": nothing eligible on its LAN", func(r *prometheus.Registry) bool {
			return maps.Equal(gauges(t, r, "herald_agent_addresses_eligible"), map[string]float64{"interface=eth0": 0})
		})
	}
	c.createPolicy("^enp0s1$") // no node has such an interface
	time.Sleep(time.Second)
	if got := c.owner(addr, 2*time.Second); got != "" {
		t.Fatalf("%s answered although the policy matches no interface", got)
	}
	// Each node reports the mismatch as an Event on the policy, listing its
	// interfaces.
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := c.kube.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found := ""
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == c.policy && e.Reason == agent.EventNoMatchingInterface {
				found = e.Message
			}
		}
		if found != "" {
			if !strings.Contains(found, "eth0") || !strings.Contains(found, "^enp0s1$") {
				t.Errorf("event %q should name the pattern and the node's interfaces", found)
			}
			t.Logf("event: %s", found)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event on policy %s", agent.EventNoMatchingInterface, c.policy)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.cl.DeleteAllOf(context.Background(), &heraldv1.L2AnnouncementPolicy{}); err != nil {
		t.Fatal(err)
	}
	c.createPolicy("^eth[0-9]+$")
	c.waitOwner(addr, placement.Rank(addr, nodes)[0], 15*time.Second)
	for _, n := range nodes {
		waitMetric(t, regs[n], n+": the address eligible on eth0", func(r *prometheus.Registry) bool {
			return maps.Equal(gauges(t, r, "herald_agent_addresses_eligible"), map[string]float64{"interface=eth0": 1})
		})
	}
}

// setEndpoint makes node the only node with a ready endpoint of svc.
func (c *cluster) setEndpoint(svc, node string) {
	c.t.Helper()
	ctx := context.Background()
	name := svc + "-slice"
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: c.ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.244.0.10"},
			NodeName:   &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
	}
	_ = c.kube.DiscoveryV1().EndpointSlices(c.ns).Delete(ctx, name, metav1.DeleteOptions{})
	if _, err := c.kube.DiscoveryV1().EndpointSlices(c.ns).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create endpoint slice: %v", err)
	}
}

// externalTrafficPolicy Local: only a node with a ready local endpoint is
// eligible, and the address follows the endpoint.
func TestLocalTrafficPolicyFollowsEndpoint(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.78")
	c.createService("local", addr.String())
	c.updateService("local", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal })
	rank := placement.Rank(addr, nodes)
	// The endpoint lives on the worst-ranked node: only it may answer.
	c.setEndpoint("local", rank[2])
	for _, n := range nodes {
		c.startAgent(n)
	}
	c.waitOwner(addr, rank[2], 15*time.Second)
	c.setEndpoint("local", rank[1])
	c.waitOwner(addr, rank[1], 10*time.Second)
}

func (c *cluster) updateService(name string, mutate func(*corev1.Service)) {
	c.t.Helper()
	// The controller writes the Service too (status, the announced-ips
	// annotation): retry on a conflict, as any client must.
	for {
		s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		mutate(s)
		_, err = c.kube.CoreV1().Services(c.ns).Update(context.Background(), s, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			c.t.Fatalf("update service: %v", err)
		}
	}
}

// Two Services sharing one address are announced by one node, and both
// carry the condition naming it.
func TestSharedAddressOneAnnouncer(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.79")
	for _, name := range []string{"a", "b"} {
		c.createServiceWith(name, map[string]string{"herald.dev/ips": addr.String(), "herald.dev/sharing-key": "k"}, addr.String())
	}
	for _, n := range nodes {
		c.startAgent(n)
	}
	owner := placement.Rank(addr, nodes)[0]
	c.waitOwner(addr, owner, 15*time.Second)
	for _, name := range []string{"a", "b"} {
		c.waitAnnounced(name, "True", "node "+owner+" on eth0")
	}
}

// waitAnnounced waits for the Service's herald.dev/Announced condition to
// have the status and a message containing want.
func (c *cluster) waitAnnounced(name, status, want string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		cond := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionAnnounced)
		if cond != nil && string(cond.Status) == status && strings.Contains(cond.Message, want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: Announced condition = %+v, want %s containing %q", name, cond, status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A foreign host already uses an address before any Service has it: the
// first Service given that address gets another one instead, the address
// stays excluded across five controller restarts and an agent restart, and
// is handed out again once the host has gone.
func TestForeignHostBeforeAnnouncement(t *testing.T) {
	c := newCluster(t)
	foreignMAC := "02:00:5e:10:00:99"
	c.lan.AddHost(netnstest.Host{Role: "foreign", MAC: foreignMAC, Addrs: []string{"192.168.10.100/24"}})
	c.createPool("fresh", "192.168.10.100", "192.168.10.109")
	c.createPolicy("^eth0$")
	for _, n := range nodes {
		c.startAgent(n)
	}
	pinned := map[string]string{"herald.dev/pool": "fresh"}
	// Given .100 first, the probe finds the foreign host: it moves to .101.
	c.createServiceWith("first", pinned, "192.168.10.101")
	c.waitAnnounced("first", "True", "192.168.10.101 announced by node")
	c.waitEventMessage("first", "IPReleased", foreignMAC)
	if mac := c.lan.Resolve("client", netip.MustParseAddr("192.168.10.100"), 2*time.Second); mac != foreignMAC {
		t.Fatalf("192.168.10.100 resolves to %q; only the foreign host %s may answer it", mac, foreignMAC)
	}
	c.waitPoolExcluded("fresh", "192.168.10.100")

	for i := range 5 {
		c.stopCtl()
		c.startController()
		c.waitPoolExcluded("fresh", "192.168.10.100")
		c.waitIngress("first", "192.168.10.101")
		_ = i
	}
	c.createServiceWith("second", pinned, "192.168.10.102")
	// The agent that found it restarts: it still knows (from its report).
	reporter := c.reporterOf("192.168.10.100")
	c.stops[reporter]()
	c.startAgent(reporter)
	c.createServiceWith("third", pinned, "192.168.10.103")
	c.waitPoolExcluded("fresh", "192.168.10.100")

	// The foreign host goes: the next probe (every second here) finds the
	// address free, and it is handed out again.
	c.lan.IP("foreign", "addr", "flush", "dev", "eth0")
	c.waitPoolExcluded("fresh")
	c.createServiceWith("fourth", pinned, "192.168.10.100")
	c.waitAnnounced("fourth", "True", "192.168.10.100 announced by node")
}

// With the API server gone, agents keep announcing and still fail over:
// liveness comes from the segment, not from leases.
func TestFailOverWithoutAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs network namespaces and a real API server")
	}
	netnstest.Require(t, nsPrefix)
	// A private API server, so stopping it leaves the shared one alone.
	env := testenv.StartForTest(t, testenv.Options{CRDDirs: []string{filepath.Join("..", "..", "config", "crd")}})
	c := newClusterOn(t, env)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.81")
	c.createService("web", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	rank := placement.Rank(addr, nodes)
	c.waitOwner(addr, rank[0], 15*time.Second)
	if err := env.Stop(); err != nil {
		t.Fatalf("stop API server: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	c.lan.IP(rank[0], "link", "set", "eth0", "down")
	c.waitOwner(addr, rank[1], 10*time.Second)
	t.Logf("API server down, link down on %s: %s answers after %s", rank[0], rank[1], time.Since(start).Round(time.Millisecond))
}
