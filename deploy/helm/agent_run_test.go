package helm_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/netnstest"
)

// TestAgentRunsWithChartRBAC runs the real agent, in a network namespace,
// with the token of the chart's agent ServiceAccount: it must read its
// heartbeat keys from the Secret, announce a Service's address (a LAN
// client resolves it to the node's MAC), report it in its HeraldNode, and
// never be refused by the API server.
func TestAgentRunsWithChartRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("needs network namespaces and a real API server")
	}
	netnstest.Require(t, "hchart")
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	ns := applyRBAC(t, env)

	lan := netnstest.New(t, "hchart",
		netnstest.Host{Role: "client", Addrs: []string{"192.168.10.10/24"}},
		netnstest.Host{Role: "node1", MAC: "02:00:5e:10:02:15", Addrs: []string{"192.168.10.215/24"}})
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "chart-node1", Labels: map[string]string{"kubernetes.io/os": "linux"}}}
	if _, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	adminDyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	policies := schema.GroupVersionResource{Group: "herald.dev", Version: "v1alpha1", Resource: "l2announcementpolicies"}
	policy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "herald.dev/v1alpha1",
		"kind":       "L2AnnouncementPolicy",
		"metadata":   map[string]any{"name": "chart-rbac-policy"},
		"spec": map[string]any{
			"interfaces":      []any{"^eth0$"},
			"nodeSelector":    map[string]any{"matchLabels": map[string]any{"kubernetes.io/hostname": "chart-node1"}},
			"serviceSelector": map[string]any{"matchLabels": map[string]any{"test": "chart-rbac"}},
		},
	}}
	node.Labels["kubernetes.io/hostname"] = "chart-node1"
	if _, err := admin.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("label node: %v", err)
	}
	if _, err := adminDyn.Resource(policies).Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	// A Service with an address, written as the controller would.
	class := "herald.dev/l2"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-web", Namespace: ns, Labels: map[string]string{"test": "chart-rbac"}},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &class,
			Selector:          map[string]string{"app": "agent-web"},
			Ports:             []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	svc, err = admin.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Services(ns).Delete(context.Background(), "agent-web", metav1.DeleteOptions{})
		_ = admin.CoreV1().Nodes().Delete(context.Background(), "chart-node1", metav1.DeleteOptions{})
	})
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.10.90"}}
	if _, err := admin.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("write service status: %v", err)
	}

	// The heartbeat keys, from the Secret the controller makes: the agent
	// watches it with the chart's grants.
	const heartbeatSecret = "herald-heartbeat-key" // the chart's --heartbeat-secret
	if _, err := heartbeatkey.Ensure(ctx, admin, ns, heartbeatSecret, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := env.ServiceAccountConfig(ctx, ns, "herald-agent")
	if err != nil {
		t.Fatal(err)
	}
	logs, log := captureLogs()
	handle := lan.Handle("node1")
	a, err := agent.New(cfg, agent.Options{
		NodeName:     "chart-node1",
		KeySecret:    types.NamespacedName{Namespace: ns, Name: heartbeatSecret},
		DefaultClass: true,
		ProbeDisable: true,
		NetNS:        &handle,
		Logger:       log,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
		_ = adminDyn.Resource(policies).Delete(context.Background(), "chart-rbac-policy", metav1.DeleteOptions{})
	})

	// Its report, created and applied with the chart's grants.
	heraldNodes := schema.GroupVersionResource{Group: "herald.dev", Version: "v1alpha1", Resource: "heraldnodes"}
	var announced []any
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		hn, err := adminDyn.Resource(heraldNodes).Get(ctx, "chart-node1", metav1.GetOptions{})
		if err == nil {
			announced, _, _ = unstructured.NestedSlice(hn.Object, "status", "announcements")
			if len(announced) == 1 {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(announced) != 1 || announced[0].(map[string]any)["address"] != "192.168.10.90" {
		t.Fatalf("HeraldNode chart-node1 announces %v, want 192.168.10.90", announced)
	}
	t.Cleanup(func() {
		_ = adminDyn.Resource(heraldNodes).Delete(context.Background(), "chart-node1", metav1.DeleteOptions{})
	})
	if mac := lan.Resolve("client", netip.MustParseAddr("192.168.10.90"), 5*time.Second); mac != lan.MAC("node1").String() {
		t.Errorf("client resolves 192.168.10.90 to %q, want node1's %s", mac, lan.MAC("node1"))
	}
	checkNotRefused(t, "agent", logs)
}
