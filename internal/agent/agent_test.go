package agent_test

// Network tests on real kernels: three node namespaces and a client on one
// bridge, an agent per node (in this process, its raw sockets in the node's
// namespace, its API traffic to the real API server on loopback), and the
// client's own kernel ARP/NDP deciding who answers.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/agent"
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

// cluster is one test's LAN, API objects and agents.
type cluster struct {
	t      testing.TB
	lan    *netnstest.LAN
	cfg    *rest.Config
	kube   kubernetes.Interface
	cl     client.Client
	ns     string
	stops  map[string]func()
	macs   map[string]string
	policy string
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs network namespaces and a real API server")
	}
	netnstest.Require(t, nsPrefix)
	return newClusterOn(t, shared.Env(t))
}

// newClusterOn builds the LAN and API objects against env.
func newClusterOn(t testing.TB, env *testenv.Env) *cluster {
	t.Helper()
	hosts := []netnstest.Host{{Role: "client", Addrs: []string{"192.168.10.10/24", "fd00:10::10/64"}}}
	for i, n := range nodes {
		hosts = append(hosts, netnstest.Host{
			Role:  n,
			MAC:   fmt.Sprintf("02:00:5e:10:02:%02x", 0x15+i),
			Addrs: []string{fmt.Sprintf("192.168.10.%d/24", 215+i), fmt.Sprintf("fd00:10::%d/64", 215+i)},
		})
	}
	c := &cluster{t: t, lan: netnstest.New(t, nsPrefix, hosts...), cfg: rest.CopyConfig(env.Config), stops: map[string]func(){}, macs: map[string]string{}}
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
	ns, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ag-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.ns = ns.Name
	for _, n := range nodes {
		c.macs[n] = c.lan.MAC(n).String()
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"kubernetes.io/os": "linux"}}}
		if _, err := c.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, stop := range c.stops {
			stop()
		}
		_ = c.cl.DeleteAllOf(context.Background(), &heraldv1.L2AnnouncementPolicy{})
		svcs, _ := c.kube.CoreV1().Services(c.ns).List(context.Background(), metav1.ListOptions{})
		for _, s := range svcs.Items {
			_ = c.kube.CoreV1().Services(c.ns).Delete(context.Background(), s.Name, metav1.DeleteOptions{})
		}
	})
	return c
}

func (c *cluster) createPolicy(interfaces ...string) {
	c.t.Helper()
	p := &heraldv1.L2AnnouncementPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "p-" + strings.ToLower(strings.ReplaceAll(c.t.Name(), "/", "-"))},
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

// createService makes a LoadBalancer Service and writes its ingress as the
// controller would.
func (c *cluster) createService(name string, ips ...string) {
	c.t.Helper()
	ctx := context.Background()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	s, err := c.kube.CoreV1().Services(c.ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create service: %v", err)
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	if _, err := c.kube.CoreV1().Services(c.ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("write service status: %v", err)
	}
}

// startAgent runs node's agent until stop (graceful) or the test ends.
func (c *cluster) startAgent(node string) {
	c.t.Helper()
	a, err := agent.New(c.cfg, agent.Options{
		NodeName:     node,
		Key:          []byte("0123456789abcdef0123456789abcdef"),
		DefaultClass: true,
		NetNS:        ptr.To(c.lan.Handle(node)),
		Logger:       slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
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
func TestAnnounceAndFailOver(t *testing.T) {
	c := newCluster(t)
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

	// The owner of the primary address writes herald.dev/Announced.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(s.Status.Conditions, agent.ConditionAnnounced)
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

	// Graceful stop of the new owner: the last node takes over.
	start = time.Now()
	c.stops[rank4[1]]()
	c.waitOwner(v4, rank4[2], 10*time.Second)
	t.Logf("graceful stop of %s: %s answers after %s", rank4[1], rank4[2], time.Since(start).Round(time.Millisecond))
}

// Services that no policy selects, or whose policy matches no interface,
// are not answered; the latter is reported.
func TestNotAnnouncedWithoutPolicyOrInterface(t *testing.T) {
	c := newCluster(t)
	addr := netip.MustParseAddr("192.168.10.76")
	c.createService("lonely", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	time.Sleep(time.Second) // let the agents settle
	if got := c.owner(addr, 2*time.Second); got != "" {
		t.Fatalf("%s answered for a Service no policy selects", got)
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
	s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	mutate(s)
	if _, err := c.kube.CoreV1().Services(c.ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		c.t.Fatalf("update service: %v", err)
	}
}

// Two Services sharing one address are announced by one node, and both
// carry the condition naming it.
func TestSharedAddressOneAnnouncer(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.79")
	c.createService("a", addr.String())
	c.createService("b", addr.String())
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
		cond := meta.FindStatusCondition(s.Status.Conditions, agent.ConditionAnnounced)
		if cond != nil && string(cond.Status) == status && strings.Contains(cond.Message, want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: Announced condition = %+v, want %s containing %q", name, cond, status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A foreign host already using the address: the probe finds it, nobody
// announces, and the Service says AddressConflict naming the host's MAC.
func TestForeignHostAddressConflict(t *testing.T) {
	c := newCluster(t)
	foreignMAC := "02:00:5e:10:00:99"
	c.lan.AddHost(netnstest.Host{Role: "foreign", MAC: foreignMAC, Addrs: []string{"192.168.10.80/24"}})
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.80")
	c.createService("taken", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	c.waitAnnounced("taken", "False", foreignMAC)
	if mac := c.lan.Resolve("client", addr, 2*time.Second); mac != foreignMAC {
		t.Fatalf("%s resolves to %q, want only the foreign host %s", addr, mac, foreignMAC)
	}
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
