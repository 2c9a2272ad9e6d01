package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/testenv"
)

// shared is the real etcd + kube-apiserver of this package's tests. Tests
// run one after another; each makes its own namespace and removes the
// cluster-scoped objects it made.
var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{filepath.Join("..", "..", "config", "crd")}})

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // the controller logs through slog; silence the cache's logr
	os.Exit(shared.Run(m))
}

// harness bundles the clients one test uses.
type harness struct {
	t    *testing.T
	env  *testenv.Env
	ctx  context.Context
	kube kubernetes.Interface
	cl   client.Client
	ns   string
	// ctl is the controller startController started last.
	ctl *controller.Controller
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real API server; run without -short")
	}
	env := shared.Env(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, env: env, ctx: t.Context(), kube: kubernetes.NewForConfigOrDie(cfg), cl: cl}
	_, err = h.kube.CoreV1().Namespaces().Create(h.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "herald-system"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create herald-system namespace: %v", err)
	}
	h.ns = h.namespace("t")
	t.Cleanup(h.cleanCluster)
	return h
}

// namespace creates a fresh namespace for this test.
func (h *harness) namespace(prefix string) string {
	h.t.Helper()
	ns, err := h.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// cleanCluster removes what tests leave in cluster scope: pools, nodes and
// the leader lease. Namespaced objects die with their namespaces, which are
// unique per test.
func (h *harness) cleanCluster() {
	ctx := context.Background()
	_ = h.cl.DeleteAllOf(ctx, &heraldv1.LoadBalancerIPPool{})
	_ = h.cl.DeleteAllOf(ctx, &corev1.Node{})
	_ = h.cl.DeleteAllOf(ctx, &heraldv1.HeraldNode{})
	_ = h.cl.DeleteAllOf(ctx, &heraldv1.L2AnnouncementPolicy{})
	_ = h.kube.CoordinationV1().Leases("herald-system").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	svcs, err := h.kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, s := range svcs.Items {
			if s.Namespace != "default" {
				_ = h.kube.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
			}
		}
	}
}

// startController runs a controller replica until the test ends or stop is
// called; it waits until the replica leads when wantLead is set.
func (h *harness) startController(identity string, wantLead bool, mutate ...func(*controller.Options)) (stop func()) {
	h.t.Helper()
	opts := controller.Options{
		Identity:      identity,
		DefaultClass:  true,
		LeaseDuration: 3 * time.Second,
		RenewDeadline: 2 * time.Second,
		RetryPeriod:   200 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", identity),
	}
	for _, m := range mutate {
		m(&opts)
	}
	cfg := rest.CopyConfig(h.env.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := controller.New(cfg, opts)
	if err != nil {
		h.t.Fatalf("new controller: %v", err)
	}
	h.ctl = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("controller %s: %v", identity, err)
			}
		case <-time.After(30 * time.Second):
			h.t.Errorf("controller %s did not stop within 30s", identity)
		}
	}
	h.t.Cleanup(stop)
	if wantLead {
		select {
		case <-c.Ready():
		case err := <-done:
			h.t.Fatalf("controller %s exited: %v", identity, err)
		case <-time.After(30 * time.Second):
			h.t.Fatalf("controller %s did not lead within 30s", identity)
		}
	}
	return stop
}

// testWriter sends log lines to t.Log, so they show only for failed tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// block returns a start/stop block ("a-b"), a lone start ("a") or a CIDR.
func block(s string) heraldv1.IPBlock {
	if strings.Contains(s, "/") {
		return heraldv1.IPBlock{CIDR: s}
	}
	if start, stop, ok := strings.Cut(s, "-"); ok {
		return heraldv1.IPBlock{Start: start, Stop: stop}
	}
	return heraldv1.IPBlock{Start: s}
}

func (h *harness) createPool(name string, blocks []string, mutate ...func(*heraldv1.LoadBalancerIPPool)) *heraldv1.LoadBalancerIPPool {
	h.t.Helper()
	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, b := range blocks {
		p.Spec.Blocks = append(p.Spec.Blocks, block(b))
	}
	for _, m := range mutate {
		m(p)
	}
	if err := h.cl.Create(h.ctx, p); err != nil {
		h.t.Fatalf("create pool %s: %v", name, err)
	}
	return p
}

// updatePool applies mutate to the latest version of the pool.
func (h *harness) updatePool(name string, mutate func(*heraldv1.LoadBalancerIPPool)) {
	h.t.Helper()
	for range 10 {
		var p heraldv1.LoadBalancerIPPool
		if err := h.cl.Get(h.ctx, types.NamespacedName{Name: name}, &p); err != nil {
			h.t.Fatalf("get pool %s: %v", name, err)
		}
		mutate(&p)
		err := h.cl.Update(h.ctx, &p)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			h.t.Fatalf("update pool %s: %v", name, err)
		}
	}
	h.t.Fatalf("update pool %s: conflicts", name)
}

func (h *harness) deletePool(name string) {
	h.t.Helper()
	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := h.cl.Delete(h.ctx, p); err != nil {
		h.t.Fatalf("delete pool %s: %v", name, err)
	}
}

// svcOpt changes a Service before it is created.
type svcOpt func(*corev1.Service)

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withLabel(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[k] = v
	}
}

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{
				Name: fmt.Sprintf("p%d", p), Port: p, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(p),
			})
		}
	}
}

func withFamilies(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = fams
	}
}

func withLocal(selector map[string]string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.Selector = selector
	}
}

func withClass(class string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }
}

func (h *harness) createService(ns, name string, opts ...svcOpt) *corev1.Service {
	h.t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	out, err := h.kube.CoreV1().Services(ns).Create(h.ctx, s, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	return out
}

func (h *harness) deleteService(ns, name string) {
	h.t.Helper()
	if err := h.kube.CoreV1().Services(ns).Delete(h.ctx, name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatalf("delete service %s/%s: %v", ns, name, err)
	}
}

// updateService applies mutate to the latest version of the Service spec.
func (h *harness) updateService(ns, name string, mutate func(*corev1.Service)) {
	h.t.Helper()
	for range 10 {
		s, err := h.kube.CoreV1().Services(ns).Get(h.ctx, name, metav1.GetOptions{})
		if err != nil {
			h.t.Fatalf("get service: %v", err)
		}
		mutate(s)
		_, err = h.kube.CoreV1().Services(ns).Update(h.ctx, s, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			h.t.Fatalf("update service %s/%s: %v", ns, name, err)
		}
	}
	h.t.Fatalf("update service %s/%s: conflicts", ns, name)
}

func (h *harness) getService(ns, name string) *corev1.Service {
	h.t.Helper()
	s, err := h.kube.CoreV1().Services(ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatalf("get service %s/%s: %v", ns, name, err)
	}
	return s
}

func ingressIPs(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// eventually polls cond until it returns "" or the deadline passes; the
// last non-empty answer explains the failure.
func (h *harness) eventually(timeout time.Duration, cond func() string) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if last = cond(); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("timed out after %s: %s", timeout, last)
}

const wait = 15 * time.Second

// waitIPs waits until the Service's ingress is exactly want (order kept).
func (h *harness) waitIPs(ns, name string, want ...string) {
	h.t.Helper()
	h.eventually(wait, func() string {
		s := h.getService(ns, name)
		got := ingressIPs(s)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			c := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionIPAllocated)
			return fmt.Sprintf("%s/%s ingress %v, want %v (condition %+v)", ns, name, got, want, c)
		}
		c := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionIPAllocated)
		if len(want) > 0 && (c == nil || c.Status != metav1.ConditionTrue) {
			return fmt.Sprintf("%s/%s has %v but condition %+v", ns, name, got, c)
		}
		return ""
	})
}

// waitPending waits until the Service has no address and its IPAllocated
// condition has the reason; it returns the condition message.
func (h *harness) waitPending(ns, name, reason string) string {
	h.t.Helper()
	var msg string
	h.eventually(wait, func() string {
		s := h.getService(ns, name)
		c := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionIPAllocated)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Sprintf("%s/%s condition %+v, want False/%s", ns, name, c, reason)
		}
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			return fmt.Sprintf("%s/%s is pending (%s) but shows %v", ns, name, reason, ingressIPs(s))
		}
		msg = c.Message
		return ""
	})
	return msg
}

// waitEvent waits for an Event with the reason on the object and returns
// its message.
func (h *harness) waitEvent(ns, name, reason string) string {
	h.t.Helper()
	var msg string
	h.eventually(wait, func() string {
		evs, err := h.kube.CoreV1().Events(ns).List(h.ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				msg = e.Message
				return ""
			}
			seen = append(seen, e.InvolvedObject.Name+":"+e.Reason)
		}
		sort.Strings(seen)
		return fmt.Sprintf("no %s event for %s/%s; have %v", reason, ns, name, seen)
	})
	return msg
}

// poolCondition returns the pool's condition of the given type.
func (h *harness) poolCondition(name, typ string) *metav1.Condition {
	h.t.Helper()
	var p heraldv1.LoadBalancerIPPool
	if err := h.cl.Get(h.ctx, types.NamespacedName{Name: name}, &p); err != nil {
		h.t.Fatalf("get pool %s: %v", name, err)
	}
	return meta.FindStatusCondition(p.Status.Conditions, typ)
}

// waitPoolCondition waits for the pool's condition to have status (and the
// reason, unless empty); it returns the condition.
func (h *harness) waitPoolCondition(name, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	h.t.Helper()
	var got metav1.Condition
	h.eventually(wait, func() string {
		c := h.poolCondition(name, typ)
		if c == nil || c.Status != status || (reason != "" && c.Reason != reason) {
			return fmt.Sprintf("pool %s condition %s = %+v, want %s/%s", name, typ, c, status, reason)
		}
		got = *c
		return ""
	})
	return got
}

// consistently checks that cond stays "" for the whole duration.
func (h *harness) consistently(d time.Duration, cond func() string) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if msg := cond(); msg != "" {
			h.t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clientKey names a cluster-scoped object.
func clientKey(name string) types.NamespacedName { return types.NamespacedName{Name: name} }

// report writes node's HeraldNode status as its agent would (creating the
// Node and the HeraldNode when missing).
func (h *harness) report(node string, st heraldv1.HeraldNodeStatus) {
	h.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"kubernetes.io/os": "linux"}}}
	if _, err := h.kube.CoreV1().Nodes().Create(h.ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		h.t.Fatalf("create node %s: %v", node, err)
	}
	hn := &heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if err := h.cl.Create(h.ctx, hn); err != nil && !apierrors.IsAlreadyExists(err) {
		h.t.Fatalf("create HeraldNode %s: %v", node, err)
	}
	for {
		if err := h.cl.Get(h.ctx, client.ObjectKey{Name: node}, hn); err != nil {
			h.t.Fatalf("get HeraldNode %s: %v", node, err)
		}
		hn.Status = st
		err := h.cl.Status().Update(h.ctx, hn)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			h.t.Fatalf("write HeraldNode %s status: %v", node, err)
		}
	}
}

// lanReport is a node on eth0 (its LAN) that announces addrs.
func lanReport(since time.Time, addrs ...string) heraldv1.HeraldNodeStatus {
	st := heraldv1.HeraldNodeStatus{
		KeyFingerprints: []string{"0123abcd"},
		Interfaces:      []heraldv1.NodeInterface{{Name: "eth0", Up: true, Broadcast: true, LAN: true}, {Name: "cni0", Up: true, Broadcast: true}},
		Segments:        []heraldv1.Segment{{Interface: "eth0"}},
	}
	for _, a := range addrs {
		st.Announcements = append(st.Announcements, heraldv1.Announcement{Address: a, Interfaces: []string{"eth0"}, Since: metav1.NewTime(since)})
	}
	return st
}

// waitAnnounced waits for the Service's Announced condition to have the
// status and reason, with a message containing every want.
func (h *harness) waitAnnounced(ns, name string, status metav1.ConditionStatus, reason string, want ...string) metav1.Condition {
	h.t.Helper()
	var got metav1.Condition
	h.eventually(10*time.Second, func() string {
		c := meta.FindStatusCondition(h.getService(ns, name).Status.Conditions, kube.ConditionAnnounced)
		if c == nil {
			return "no Announced condition"
		}
		got = *c
		if c.Status != status || c.Reason != reason {
			return fmt.Sprintf("Announced %s %s %q, want %s %s", c.Status, c.Reason, c.Message, status, reason)
		}
		for _, w := range want {
			if !strings.Contains(c.Message, w) {
				return fmt.Sprintf("message %q lacks %q", c.Message, w)
			}
		}
		return ""
	})
	return got
}

func (h *harness) createPolicy(name string, mutate ...func(*heraldv1.L2AnnouncementPolicy)) {
	h.t.Helper()
	p := &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mutate {
		m(p)
	}
	if err := h.cl.Create(h.ctx, p); err != nil {
		h.t.Fatalf("create policy %s: %v", name, err)
	}
	h.t.Cleanup(func() { _ = h.cl.Delete(context.Background(), p) })
}
