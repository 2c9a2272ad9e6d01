package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
)

// Bench sizes: the operator commands on a cluster of benchNodes nodes and
// benchServices announced Services.
const (
	benchNodes    = 5
	benchServices = 1000
	benchNS       = "bench-inspect"
)

// BenchmarkInspect: each read-only command against a real API server
// holding 1000 announced Services, 5 Nodes with their agents' reports, a
// pool and a policy. One op = one run of the command, in-process, from
// loading the kubeconfig to the printed table. Reports the requests per
// op: one LIST per kind, whatever the number of Services.
func BenchmarkInspect(b *testing.B) {
	env := shared.Env(b)
	b.Setenv("KUBECONFIG", env.KubeconfigPath)
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	kc := kubernetes.NewForConfigOrDie(cfg)
	scheme, err := kube.Scheme()
	if err != nil {
		b.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	seedBench(b, kc, cl)
	b.Logf("seeded %d Services on %d nodes in %s", benchServices, benchNodes, time.Since(start).Round(time.Second))

	for _, args := range [][]string{
		{"status"}, {"services", "-A"}, {"pools"}, {"announcements"}, {"explain", "svc/web-0500", "-n", benchNS},
	} {
		b.Run(strings.Join(args[:1], " "), func(b *testing.B) {
			var log requestLog
			hooks := inspectHooks{wrap: func(c *rest.Config) { c.Wrap(log.RoundTrip) }}
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				root := newRoot("herald", hooks)
				root.SetOut(&out)
				root.SetErr(&out)
				root.SetArgs(args)
				if err := root.ExecuteContext(b.Context()); err != nil && !errors.Is(err, ErrProblems) {
					b.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, out.String())
				}
			}
			reqs := log.take()
			lists := map[string]bool{"loadbalancerippools": true, "l2announcementpolicies": true, "heraldnodes": true,
				"nodes": true, "services": true, "leases": true, "endpointslices": true}
			for _, r := range reqs {
				// Every request is a LIST: its path ends in the resource,
				// where a GET of one object would end in the object's name.
				if last := r[strings.LastIndex(r, "/")+1:]; !strings.HasPrefix(r, "GET ") || !lists[last] {
					b.Errorf("not a LIST: %s", r)
				}
			}
			b.ReportMetric(float64(len(reqs))/float64(b.N), "requests/op")
			if lines := strings.Count(out.String(), "\n"); args[0] == "services" && lines < benchServices {
				b.Errorf("services printed %d lines, want %d Services", lines, benchServices)
			}
		})
	}
}

// seedBench writes the cluster the benchmark reads, and removes it when
// the benchmark ends (the package's tests share the API server).
func seedBench(b *testing.B, kc kubernetes.Interface, cl client.Client) {
	ctx := context.Background()
	nodes := make([]string, benchNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("bench-node-%d", i+1)
	}
	b.Cleanup(func() {
		_ = kc.CoreV1().Namespaces().Delete(ctx, benchNS, metav1.DeleteOptions{})
		_ = kc.CoordinationV1().Leases("herald-system").Delete(ctx, "herald-controller", metav1.DeleteOptions{})
		for _, n := range nodes {
			_ = kc.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
			_ = cl.Delete(ctx, &heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: n}})
		}
		_ = cl.Delete(ctx, &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench-pool"}})
		_ = cl.Delete(ctx, &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bench-policy"}})
	})
	must := func(err error) {
		b.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatal(err)
		}
	}
	for _, ns := range []string{benchNS, "herald-system"} {
		_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		must(err)
	}
	holder, dur := "herald-controller-bench", int32(3600)
	renew := metav1.NewMicroTime(time.Now())
	_, err := kc.CoordinationV1().Leases("herald-system").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "herald-controller"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &renew}}, metav1.CreateOptions{})
	must(err)
	must(cl.Create(ctx, &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench-pool"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.201.0.0/20"}}}}))
	must(cl.Create(ctx, &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bench-policy"},
		Spec: heraldv1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth0$"}}}))

	addr := func(i int) string { return fmt.Sprintf("10.201.%d.%d", i/250, i%250+1) }
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for i, name := range nodes {
		n, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		must(err)
		if err == nil {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
			_, err = kc.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			must(err)
		}
		hn := &heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
		must(cl.Create(ctx, hn))
		st := heraldv1.HeraldNodeStatus{AgentVersion: "bench", KeyFingerprints: []string{"3f2a9c1e"},
			Interfaces: []heraldv1.NodeInterface{{Name: "eth0", MAC: fmt.Sprintf("02:00:00:00:01:%02x", i), Up: true, Broadcast: true, LAN: true}},
			DataPlane:  &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNFTables}}
		seg := heraldv1.Segment{Interface: "eth0"}
		for _, p := range nodes {
			if p != name {
				seg.Peers = append(seg.Peers, heraldv1.SegmentPeer{Node: p, KeyFingerprints: []string{"3f2a9c1e"}})
			}
		}
		st.Segments = []heraldv1.Segment{seg}
		for j := i; j < benchServices; j += benchNodes {
			st.Announcements = append(st.Announcements, heraldv1.Announcement{Address: addr(j), Interfaces: []string{"eth0"}, Since: now})
		}
		hn.Status = st
		must(cl.Status().Update(ctx, hn))
	}

	work := make(chan int)
	errs := make(chan error, benchServices)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				errs <- seedService(ctx, kc, i, addr(i), nodes[i%benchNodes], now)
			}
		})
	}
	for i := range benchServices {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		must(err)
	}
}

func seedService(ctx context.Context, kc kubernetes.Interface, i int, ip, node string, now metav1.Time) error {
	s, err := kc.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%04d", i)},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return err
	}
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	s.Status.Conditions = []metav1.Condition{
		{Type: kube.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: "Allocated", Message: "allocated " + ip + ` from pool "bench-pool"`, LastTransitionTime: now},
		{Type: kube.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced", Message: ip + " announced by node " + node + " on eth0", LastTransitionTime: now},
	}
	_, err = kc.CoreV1().Services(benchNS).UpdateStatus(ctx, s, metav1.UpdateOptions{})
	return err
}
