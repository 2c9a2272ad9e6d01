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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/controller"
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
	t      *testing.T
	lan    *netnstest.LAN
	cfg    *rest.Config
	kube   kubernetes.Interface
	cl     client.Client
	ns     string
	stops  map[string]func()
	macs   map[string]string
	policy string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs network namespaces and a real API server")
	}
	netnstest.Require(t, nsPrefix)
	env := shared.Env(t)
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
	scheme, err := controller.Scheme()
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
		NetNS:        c.lan.Handle(node),
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

type testWriter struct{ t *testing.T }

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
	c.cl.DeleteAllOf(context.Background(), &heraldv1.L2AnnouncementPolicy{})
	c.createPolicy("^eth[0-9]+$")
	c.waitOwner(addr, placement.Rank(addr, nodes)[0], 15*time.Second)
}
