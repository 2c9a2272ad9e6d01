package helm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/heartbeatkey"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestControllerRunsWithChartRBAC runs the real controller with the token of
// the chart's controller ServiceAccount: it must take the leader Lease,
// create the missing heartbeat key Secret, allocate an address to a
// Service, write the pool's status and an Event, and never be refused by
// the API server.
func TestControllerRunsWithChartRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	ns := applyRBAC(t, env)

	cfg, err := env.ServiceAccountConfig(ctx, ns, "herald-controller")
	if err != nil {
		t.Fatal(err)
	}
	// The heartbeat key Secret is missing: the controller must create it
	// with the chart's grants.
	const heartbeatSecret = "herald-heartbeat-key" // the chart's --heartbeat-secret
	if err := admin.CoreV1().Secrets(ns).Delete(ctx, heartbeatSecret, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	logs, log := captureLogs()
	c, err := controller.New(cfg, controller.Options{
		Identity:              "herald-controller-0",
		LeaseNamespace:        ns,
		DefaultClass:          true, // as the chart's --default-class=true
		HeartbeatSecret:       types.NamespacedName{Namespace: ns, Name: heartbeatSecret},
		CreateHeartbeatSecret: true, // as the chart's --create-heartbeat-secret=true
		Logger:                log,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("controller: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("controller did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("controller logs:\n%s", logs.String())
		}
	})

	adminDyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	pools := schema.GroupVersionResource{Group: "herald.dev", Version: "v1alpha1", Resource: "loadbalancerippools"}
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "herald.dev/v1alpha1",
		"kind":       "LoadBalancerIPPool",
		"metadata":   map[string]any{"name": "chart-rbac-pool"},
		"spec": map[string]any{
			"blocks": []any{map[string]any{"start": "192.168.10.75", "stop": "192.168.10.78"}},
			// Only this test's Service: others in the shared API server
			// (TestAgentRunsWithChartRBAC) must not take addresses from it.
			"serviceSelector": map[string]any{"matchLabels": map[string]any{"test": "chart-controller"}},
		},
	}}
	if _, err := adminDyn.Resource(pools).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pool: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{"test": "chart-controller"}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Services(ns).Delete(context.Background(), "web", metav1.DeleteOptions{})
		_ = adminDyn.Resource(pools).Delete(context.Background(), "chart-rbac-pool", metav1.DeleteOptions{})
	})

	// Within a generous bound (the controller first waits for the Lease):
	// the address, the pool's status and the Event.
	deadline := time.Now().Add(60 * time.Second)
	var ip, used string
	var events int
	var secretErr error
	for time.Now().Before(deadline) {
		s, err := admin.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ing := s.Status.LoadBalancer.Ingress; len(ing) > 0 {
			ip = ing[0].IP
		}
		p, err := adminDyn.Resource(pools).Get(ctx, "chart-rbac-pool", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		used, _, _ = unstructured.NestedString(p.Object, "status", "ipsUsed")
		ev, err := admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			t.Fatal(err)
		}
		events = len(ev.Items)
		_, secretErr = admin.CoreV1().Secrets(ns).Get(ctx, heartbeatSecret, metav1.GetOptions{})
		if ip != "" && used == "1" && events > 0 && secretErr == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if t.Failed() || ip != "192.168.10.75" {
		s, _ := admin.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		p, _ := adminDyn.Resource(pools).Get(ctx, "chart-rbac-pool", metav1.GetOptions{})
		t.Logf("service status: %+v\npool status: %v", s.Status, p.Object["status"])
	}
	if ip != "192.168.10.75" {
		t.Errorf("service web got address %q, want 192.168.10.75", ip)
	}
	if used != "1" {
		t.Errorf("pool status ipsUsed = %q, want 1", used)
	}
	if events == 0 {
		t.Error("no Event recorded for service web")
	}
	if _, err := admin.CoordinationV1().Leases(ns).Get(ctx, "herald-controller", metav1.GetOptions{}); err != nil {
		t.Errorf("leader Lease: %v", err)
	}
	if secretErr != nil {
		t.Errorf("heartbeat key Secret, which the controller creates: %v", secretErr)
	} else if s, err := admin.CoreV1().Secrets(ns).Get(ctx, heartbeatSecret, metav1.GetOptions{}); err != nil {
		t.Error(err)
	} else if _, err := heartbeatkey.Parse(s.Data); err != nil {
		t.Errorf("the controller's heartbeat key Secret: %v", err)
	}
	checkNotRefused(t, "controller", logs)
}

// captureLogs returns a logger writing to a buffer, and sends client-go's
// logs there too (klog and controller-runtime's logr: reflector and event
// broadcaster errors, where a refused list or event would show).
func captureLogs() (*syncBuffer, *slog.Logger) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	klog.SetSlogLogger(log)
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	return logs, log
}

// checkNotRefused fails t for each log line that reports a refusal by the
// API server (RBAC: "forbidden").
func checkNotRefused(t *testing.T, part string, logs *syncBuffer) {
	t.Helper()
	refused := 0
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			if refused++; refused <= 3 {
				t.Errorf("the API server refused the %s: %s", part, strings.TrimSpace(line))
			}
		}
	}
	if refused > 3 {
		t.Errorf("… and %d more refusals", refused-3)
	}
}
