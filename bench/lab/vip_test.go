package labbench_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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
			addrs := [2]string{vip, direct}
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
							return fmt.Errorf("download %d from %s after %s: %w", i, addrs[p], time.Since(start), err)
						}
						rate[p] = append(rate[p], float64(n)/time.Since(start).Seconds()/1e6)
					}
					for i := range 2 * *requests {
						p := (i + i/2) % 2
						start := time.Now()
						if _, err := fetch(dial, addrs[p], "/", buf, 2*time.Second); err != nil {
							return fmt.Errorf("GET %d of / from %s after %s: %w", i, addrs[p], time.Since(start), err)
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
