// Package ipam_test measures Herald's LB-IPAM end to end against a real
// etcd + kube-apiserver: how long 1000 new LoadBalancer Services take to all
// show an address, next to a tight loop that writes the same 1000 statuses
// with no allocator at all (the API server's own bound).
//
//	go test -run '^$' -bench . -benchtime 3x ./bench/ipam/
package ipam_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/controller"
	heraldkube "github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/testenv"
)

const (
	services = 1000
	// writers is the number of concurrent writers on both sides: the
	// controller's default worker count.
	writers = 8
)

var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{filepath.Join("..", "..", "config", "crd")}})

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // the controller logs through slog; silence the cache's logr
	klog.SetLogger(logr.Discard())    // and client-go's leader election
	os.Exit(shared.Run(m))
}

func fastConfig(b *testing.B) *rest.Config {
	cfg := rest.CopyConfig(shared.Env(b).Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	return cfg
}

// createServices creates the benchmark's 1000 LoadBalancer Services in ns
// with writers concurrent clients.
func createServices(ctx context.Context, b *testing.B, kube kubernetes.Interface, ns string, class *string) {
	b.Helper()
	createN(ctx, b, kube, ns, class, services)
}

// createN creates n LoadBalancer Services in ns with writers concurrent
// clients.
func createN(ctx context.Context, b *testing.B, kube kubernetes.Interface, ns string, class *string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%05d", i), Namespace: ns},
					Spec: corev1.ServiceSpec{
						Type:              corev1.ServiceTypeLoadBalancer,
						LoadBalancerClass: class,
						// No node ports: an L2 load balancer does not need
						// them, and 1000 per run would fill the range.
						AllocateLoadBalancerNodePorts: ptr.To(false),
						Selector:                      map[string]string{"app": "x"},
						Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}},
					},
				}
				if _, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("create services: %v", err)
	}
}

// waitAllAddressed watches ns until every one of the benchmark's 1000
// Services shows an address.
func waitAllAddressed(ctx context.Context, b *testing.B, kube kubernetes.Interface, ns string, ready chan<- struct{}) {
	b.Helper()
	waitAddressed(ctx, b, kube, ns, ready, services)
}

// waitAddressed watches ns until n Services show an address.
func waitAddressed(ctx context.Context, b *testing.B, kube kubernetes.Interface, ns string, ready chan<- struct{}, services int) {
	b.Helper()
	w, err := kube.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	close(ready)
	done := map[string]bool{}
	timeout := time.After(15 * time.Minute)
	for len(done) < services {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				b.Fatalf("watch closed with %d of %d addressed", len(done), services)
			}
			if ev.Type == watch.Error {
				b.Fatalf("watch error: %v", ev.Object)
			}
			if s, ok := ev.Object.(*corev1.Service); ok && len(s.Status.LoadBalancer.Ingress) > 0 {
				done[s.Name] = true
			}
		case <-timeout:
			b.Fatalf("only %d of %d Services addressed after 15 minutes", len(done), services)
		}
	}
}

func newNamespace(ctx context.Context, b *testing.B, kube kubernetes.Interface) string {
	b.Helper()
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return ns.Name
}

// BenchmarkHeraldThousandServices: one op = 1000 Services created while the
// controller runs, until all have an address.
func BenchmarkHeraldThousandServices(b *testing.B) {
	ctx := context.Background()
	cfg := fastConfig(b)
	kube := kubernetes.NewForConfigOrDie(cfg)
	scheme, err := heraldkube.Scheme()
	if err != nil {
		b.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "herald-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	pool := &heraldv1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec:       heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.128.0.0/12"}}},
	}
	if err := cl.Create(ctx, pool); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	c, err := controller.New(cfg, controller.Options{
		Identity: "bench", DefaultClass: true, Workers: writers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = c.Run(runCtx) }()
	<-c.Ready()

	var total time.Duration
	defer func() { b.ReportMetric(total.Seconds()/float64(b.N), "s/1000svc") }()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ns := newNamespace(ctx, b, kube)
		ready := make(chan struct{})
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		wg.Go(func() { waitAllAddressed(ctx, b, kube, ns, ready) })
		<-ready
		createServices(ctx, b, kube, ns, nil)
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		deleteServices(ctx, b, kube, ns)
		b.StartTimer()
	}
}

// BenchmarkHeraldTenThousandServices: one op = 10 000 Services created
// while the controller runs, until all have an address; also reported: the
// Go heap in use afterwards (after a GC) of this process, which holds the
// controller (its informer cache of 10 000 Services and its allocator)
// and little else.
func BenchmarkHeraldTenThousandServices(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	cfg := fastConfig(b)
	kube := kubernetes.NewForConfigOrDie(cfg)
	scheme, err := heraldkube.Scheme()
	if err != nil {
		b.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "herald-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	pool := &heraldv1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec:       heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.128.0.0/12"}}},
	}
	if err := cl.Create(ctx, pool); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	c, err := controller.New(cfg, controller.Options{
		Identity: "bench10k", DefaultClass: true, Workers: writers,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = c.Run(runCtx) }()
	<-c.Ready()
	var total time.Duration
	var heap float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ns := newNamespace(ctx, b, kube)
		ready := make(chan struct{})
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		wg.Go(func() { waitAddressed(ctx, b, kube, ns, ready, n) })
		<-ready
		createN(ctx, b, kube, ns, nil, n)
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, float64(ms.HeapInuse)/(1<<20))
		deleteN(ctx, b, kube, ns, n)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/10000svc")
	b.ReportMetric(heap, "heap-MiB")
}

// BenchmarkTightLoopThousandStatusWrites: one op = 1000 Services created
// (of a class no controller serves) and, as each appears, its status written
// by writers workers with precomputed addresses: the same API traffic as
// Herald's, with no allocator, informer cache or conditions.
func BenchmarkTightLoopThousandStatusWrites(b *testing.B) {
	ctx := context.Background()
	cfg := fastConfig(b)
	kube := kubernetes.NewForConfigOrDie(cfg)
	class := "bench.example/none"
	var total time.Duration
	defer func() { b.ReportMetric(total.Seconds()/float64(b.N), "s/1000svc") }()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ns := newNamespace(ctx, b, kube)
		ready := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() { waitAllAddressed(ctx, b, kube, ns, ready) })
		<-ready
		work := make(chan *corev1.Service, services)
		w, err := kube.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		var writersWG sync.WaitGroup
		for range writers {
			writersWG.Go(func() {
				for s := range work {
					var n int
					_, _ = fmt.Sscanf(s.Name, "s%d", &n)
					addr := netip.AddrFrom4([4]byte{10, 128, byte(n >> 8), byte(n)})
					s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr.String()}}
					if _, err := kube.CoreV1().Services(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
						b.Errorf("update status: %v", err)
					}
				}
			})
		}
		wg.Go(func() {
			seen := 0
			for ev := range w.ResultChan() {
				if s, ok := ev.Object.(*corev1.Service); ok && ev.Type == watch.Added {
					work <- s
					if seen++; seen == services {
						break
					}
				}
			}
			w.Stop()
			close(work)
		})
		createServices(ctx, b, kube, ns, &class)
		wg.Wait()
		writersWG.Wait()
		total += time.Since(start)
		b.StopTimer()
		deleteServices(ctx, b, kube, ns)
		b.StartTimer()
	}
}

// deleteServices removes the run's Services one by one: the test API server
// has no namespace controller to do it when the namespace goes.
func deleteServices(ctx context.Context, b *testing.B, kube kubernetes.Interface, ns string) {
	b.Helper()
	deleteN(ctx, b, kube, ns, services)
}

// deleteN deletes the n Services createN made in ns.
func deleteN(ctx context.Context, b *testing.B, kube kubernetes.Interface, ns string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if err := kube.CoreV1().Services(ns).Delete(ctx, fmt.Sprintf("s%05d", i), metav1.DeleteOptions{}); err != nil {
					b.Errorf("delete service: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkCreateOnlyThousandServices: one op = the 1000 creates alone (a
// class no controller serves, no status writes): the floor under both
// benchmarks above.
func BenchmarkCreateOnlyThousandServices(b *testing.B) {
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(fastConfig(b))
	class := "bench.example/none"
	var total time.Duration
	defer func() { b.ReportMetric(total.Seconds()/float64(b.N), "s/1000svc") }()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ns := newNamespace(ctx, b, kube)
		b.StartTimer()
		start := time.Now()
		createServices(ctx, b, kube, ns, &class)
		total += time.Since(start)
		b.StopTimer()
		deleteServices(ctx, b, kube, ns)
		b.StartTimer()
	}
}
