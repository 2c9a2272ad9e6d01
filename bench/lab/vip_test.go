package labbench_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// BenchmarkVIP: one op = rounds downloads of a 64 MiB file and requests
// small GETs of / (a new connection each), from the client through the
// LoadBalancer address and straight to the backend Pod (the client routes
// the Pod's podCIDR via its node for this), interleaved so that both paths
// see the same machine load. Reported: the median download rate of each
// path, p50/p99 of the small GETs, and the ratios VIP/direct.
//
// Cases: externalTrafficPolicy Cluster with the backend on the announcing
// node (DNAT and masquerade on one node), Cluster with the backend on
// another node (one more hop: the announcing node forwards to the Pod's
// node), and Local (the announcing node is the backend's; no masquerade).
func BenchmarkVIP(b *testing.B) {
	e := labEnv(b)
	for _, c := range []struct {
		name   string
		policy corev1.ServiceExternalTrafficPolicy
		remote bool
	}{
		{"Cluster/backend-on-announcer", corev1.ServiceExternalTrafficPolicyCluster, false},
		{"Cluster/backend-on-other-node", corev1.ServiceExternalTrafficPolicyCluster, true},
		{"Local", corev1.ServiceExternalTrafficPolicyLocal, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			e.setTrafficPolicy(b, corev1.ServiceExternalTrafficPolicyCluster)
			e.place(b, e.nodeNames()...)
			owner := e.owner(b)
			backend := owner
			if c.remote {
				for _, n := range e.nodeNames() {
					if n != owner {
						backend = n
						break
					}
				}
			}
			ips := e.place(b, backend)
			if c.policy == corev1.ServiceExternalTrafficPolicyLocal {
				e.setTrafficPolicy(b, c.policy)
			}
			// Cluster: the announcer does not depend on where the
			// endpoints are; Local: only the backend's node (the same
			// one here) may announce.
			e.waitOwner(b, owner, time.Minute)
			e.addRoute(b, backend)
			direct := net.JoinHostPort(ips[backend], "80")
			vip := net.JoinHostPort(e.vip, "80")
			b.Logf("%s: VIP %s announced by %s, backend %s on %s", c.name, e.vip, owner, ips[backend], backend)

			var rate [2][]float64      // MB/s: VIP, direct
			var lat [2][]time.Duration // small GETs: VIP, direct
			var errs [2][]string       // failed requests, with when
			addrs := [2]string{vip, direct}
			t0 := time.Now()
			fail := func(p int, what string, err error) {
				errs[p] = append(errs[p], fmt.Sprintf("%s from %s at %+dms: %v", what, addrs[p], time.Since(t0).Milliseconds(), err))
			}
			// What the client and the cluster do meanwhile, to explain a
			// failed request.
			w := e.watchMAC(b, 10*time.Minute)
			ew := e.watchEndpoints(b, t0)
			b.ResetTimer()
			for range b.N {
				err := e.inClient(func(dial dialFunc) error {
					buf := make([]byte, 1<<20)
					// Warm up: ARP, routes, conntrack, page cache.
					for i := range 20 {
						if _, err := fetch(dial, addrs[i%2], "/", buf, 2*time.Second); err != nil {
							return fmt.Errorf("warm-up GET %d of / from %s: %w", i, addrs[i%2], err)
						}
					}
					for i := range 2 * *rounds {
						// VIP, direct, direct, VIP, …: neither path always goes first.
						p := (i + i/2) % 2
						start := time.Now()
						n, err := fetch(dial, addrs[p], "/"+bigFile, buf, time.Minute)
						if err != nil {
							fail(p, fmt.Sprintf("download %d", i), err)
							continue
						}
						rate[p] = append(rate[p], float64(n)/time.Since(start).Seconds()/1e6)
					}
					for i := range 2 * *requests {
						p := (i + i/2) % 2
						start := time.Now()
						if _, err := fetch(dial, addrs[p], "/", buf, 2*time.Second); err != nil {
							fail(p, fmt.Sprintf("GET %d of /", i), err)
							continue
						}
						lat[p] = append(lat[p], time.Since(start))
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			w.stop()
			ew.stop()
			for p, name := range []string{"vip", "direct"} {
				b.ReportMetric(float64(len(errs[p])), name+"-errors")
				if len(errs[p]) > 0 {
					b.Logf("%s: %d requests failed on the %s path: %s", c.name, len(errs[p]), name, strings.Join(errs[p][:min(5, len(errs[p]))], "; "))
				}
				if len(errs[p]) > (*rounds+*requests)/100 || len(rate[p]) == 0 {
					b.Errorf("%s: more than 1%% of the requests failed on the %s path", c.name, name)
				}
			}
			if len(errs[0])+len(errs[1]) > 0 {
				b.Logf("%s: meanwhile the client sent to %s; %s", c.name, w.describe(t0, e.macNames(b)), ew.describe())
			}
			if b.Failed() {
				return
			}
			b.ReportMetric(0, "ns/op")
			mbVIP, mbDirect := median(rate[0]), median(rate[1])
			b.ReportMetric(mbVIP, "vip-MB/s")
			b.ReportMetric(mbDirect, "direct-MB/s")
			b.ReportMetric(mbVIP/mbDirect, "vip/direct-MB/s")
			var slow [2]int // GETs over 100 ms: a lost SYN or segment
			for i, name := range []string{"vip", "direct"} {
				slices.Sort(lat[i])
				b.ReportMetric(float64(percentile(lat[i], 0.5).Microseconds()), name+"-p50-µs")
				b.ReportMetric(float64(percentile(lat[i], 0.99).Microseconds()), name+"-p99-µs")
				for _, d := range lat[i] {
					if d > 100*time.Millisecond {
						slow[i]++
					}
				}
			}
			p50 := float64(percentile(lat[0], 0.5)) / float64(percentile(lat[1], 0.5))
			p99 := float64(percentile(lat[0], 0.99)) / float64(percentile(lat[1], 0.99))
			b.ReportMetric(p50, "vip/direct-p50")
			b.ReportMetric(p99, "vip/direct-p99")
			b.Logf("%s: download of %d MiB × %d per path: VIP median %.0f MB/s (min %.0f, max %.0f), direct %.0f MB/s (min %.0f, max %.0f): ratio %.3f",
				c.name, bigSize>>20, len(rate[0]), mbVIP, slices.Min(rate[0]), slices.Max(rate[0]), mbDirect, slices.Min(rate[1]), slices.Max(rate[1]), mbVIP/mbDirect)
			b.Logf("%s: GET / × %d per path, new connection each: VIP p50 %s p99 %s max %s, direct p50 %s p99 %s max %s: ratios %.2f, %.2f; over 100 ms: %d VIP, %d direct",
				c.name, len(lat[0]), percentile(lat[0], 0.5), percentile(lat[0], 0.99), slices.Max(lat[0]),
				percentile(lat[1], 0.5), percentile(lat[1], 0.99), slices.Max(lat[1]), p50, p99, slow[0], slow[1])
		})
	}
}

// fetch is get with a timeout.
func fetch(dial dialFunc, addr, path string, buf []byte, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return get(ctx, dial, addr, path, buf)
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// endpointWatcher records the Service's ready endpoints and announcer when
// they change, every 100 ms.
type endpointWatcher struct {
	mu      sync.Mutex
	changes []string
	cancel  func()
	wg      sync.WaitGroup
}

func (e *env) watchEndpoints(b *testing.B, t0 time.Time) *endpointWatcher {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	w := &endpointWatcher{cancel: cancel}
	w.wg.Go(func() {
		last := ""
		for ctx.Err() == nil {
			state := "announced by " + e.announcer(ctx) + ", ready endpoints"
			if eps, err := e.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svcName}); err == nil {
				for _, s := range eps.Items {
					for _, ep := range s.Endpoints {
						if ptr.Deref(ep.Conditions.Ready, true) {
							state += " " + strings.Join(ep.Addresses, ",")
						}
					}
				}
			}
			if state != last && ctx.Err() == nil {
				w.mu.Lock()
				w.changes = append(w.changes, fmt.Sprintf("%s at %+dms", state, time.Since(t0).Milliseconds()))
				w.mu.Unlock()
				last = state
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	b.Cleanup(w.stop)
	return w
}

func (w *endpointWatcher) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *endpointWatcher) describe() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.changes, " → ")
}
