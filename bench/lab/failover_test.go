package labbench_test

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/lab/labnet"
)

// proberLimit bounds every prober: a trial that is not over by then fails.
const proberLimit = 2 * time.Minute

// BenchmarkHTTPFailover: the client GETs / from the VIP every 10 ms, each
// on a new connection with a 100 ms timeout, while the announcing node
// fails; one trial = one failure, and the trial's figure is the longest
// time without a successful response. The backends run on the two other
// nodes (externalTrafficPolicy Cluster), so the traffic has somewhere to go.
//
//   - kill-9: SIGKILL of the announcing node's agent process. The lab's
//     kubelet restarts it after its 1 s back-off and the address moves
//     back, so a trial has two moves: "failover" is the longest gap within
//     900 ms of the kill (before the restart), "episode" the longest gap
//     until the address is back and requests have run clean for 1 s. The
//     Pod is then replaced (so the next kill sees the same 1 s back-off, not
//     a growing one) before the next trial.
//   - link-down: `ip link set eth0 down` on the announcing node; "failover"
//     is the longest gap until requests have run clean for 1 s (at least
//     2 s after the link went down); then the link comes back and "back" is
//     the longest gap until the address has returned and run clean for 1 s.
func BenchmarkHTTPFailover(b *testing.B) {
	e := labEnv(b)
	e.setTrafficPolicy(b, corev1.ServiceExternalTrafficPolicyCluster)
	e.place(b, e.nodeNames()...)
	e.agentsReady(b, 2*time.Minute)
	owner := e.owner(b)
	var others []string
	for _, n := range e.nodeNames() {
		if n != owner {
			others = append(others, n)
		}
	}
	e.place(b, others...)
	e.waitOwner(b, owner, time.Minute)
	b.Logf("VIP %s announced by %s; backends on %v", e.vip, owner, others)

	names := e.macNames(b)
	b.Run("kill-9", func(b *testing.B) {
		var failover, episode []time.Duration
		failed, total := 0, 0
		for range b.N {
			for trial := range *trials {
				p, w := e.startProber(b, proberLimit), e.watchMAC(b, proberLimit)
				p.waitClean(b, time.Second, 30*time.Second)
				pid, pod := e.agentPID(b, owner)
				t0 := time.Now()
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					b.Fatalf("kill -9 %d: %v", pid, err)
				}
				ownerMAC := e.mac(b, owner)
				err := poll(b.Context(), 30*time.Second, func() (bool, error) {
					return time.Since(t0) > 3*time.Second && e.clientMAC() == ownerMAC && p.clean(time.Second), nil
				})
				if err != nil {
					b.Fatalf("trial %d: after kill -9 of %s's agent the address did not come back and run clean: %v", trial, owner, err)
				}
				end := time.Now()
				p.stop()
				w.stop()
				all := p.gaps(t0, end, 25*time.Millisecond)
				var first []gap
				for _, g := range all {
					if g.from.Before(t0.Add(900 * time.Millisecond)) {
						first = append(first, g)
					}
				}
				f, n, kinds := p.failures(t0, end)
				failed, total = failed+f, total+n
				failover, episode = append(failover, longest(first)), append(episode, longest(all))
				b.Logf("trial %d: kill -9 of %s (pid %d): gaps %s; %d of %d requests failed%s; the client sent to %s",
					trial, pod, pid, describe(all, t0), f, n, paren(kinds), w.describe(t0, names))

				// A new Pod: its container starts with no back-off.
				if err := e.kube.CoreV1().Pods(agentNS).Delete(b.Context(), pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
					b.Fatalf("delete %s: %v", pod, err)
				}
				e.agentsReady(b, 2*time.Minute)
				e.waitOwner(b, owner, time.Minute)
			}
		}
		b.ReportMetric(0, "ns/op")
		distribution(b, "ms-failover", failover)
		distribution(b, "ms-episode", episode)
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric(float64(total), "requests")
	})

	b.Run("link-down", func(b *testing.B) {
		netns := e.host(b, owner).NetNS
		up := func() {
			if _, err := labnet.IP("-n", netns, "link", "set", "eth0", "up"); err != nil {
				b.Error(err)
			}
			// The lab's kubelet puts the node's routes to the other
			// podCIDRs back when the link comes up (the kernel drops
			// them with the link), as a CNI's route daemon would.
		}
		var failover, back []time.Duration
		failed, total := 0, 0
		for range b.N {
			for trial := range *trials {
				p, w := e.startProber(b, proberLimit), e.watchMAC(b, proberLimit)
				p.waitClean(b, time.Second, 30*time.Second)
				t0 := time.Now()
				if _, err := labnet.IP("-n", netns, "link", "set", "eth0", "down"); err != nil {
					b.Fatal(err)
				}
				err := poll(b.Context(), 30*time.Second, func() (bool, error) {
					return time.Since(t0) > 2*time.Second && p.clean(time.Second), nil
				})
				t1 := time.Now()
				up()
				if err != nil {
					f, n, kinds := p.failures(t0, t1)
					b.Fatalf("trial %d: with %s's link down requests did not run clean again: %v (%d of %d failed: %s)", trial, owner, err, f, n, kinds)
				}
				e.waitOwner(b, owner, time.Minute)
				p.waitClean(b, time.Second, 30*time.Second)
				end := time.Now()
				p.stop()
				w.stop()
				down, ret := p.gaps(t0, t1, 25*time.Millisecond), p.gaps(t1, end, 25*time.Millisecond)
				f, n, kinds := p.failures(t0, end)
				failed, total = failed+f, total+n
				failover, back = append(failover, longest(down)), append(back, longest(ret))
				b.Logf("trial %d: %s's eth0 down: gaps %s; up again at %+dms: gaps %s; %d of %d requests failed%s; the client sent to %s",
					trial, owner, describe(down, t0), t1.Sub(t0).Milliseconds(), describe(ret, t1), f, n, paren(kinds), w.describe(t0, names))
			}
		}
		b.ReportMetric(0, "ns/op")
		distribution(b, "ms-failover", failover)
		distribution(b, "ms-back", back)
		b.ReportMetric(float64(failed), "failed")
		b.ReportMetric(float64(total), "requests")
	})
}

// BenchmarkRollingRestart: `kubectl rollout restart daemonset/herald-agent`
// while the client GETs / from the VIP every 10 ms (new connection, 100 ms
// timeout); one trial lasts from the restart until `rollout status` is done
// and requests have run clean for 2 s. Reported: failed requests of all,
// over all trials (goal: 0), and the longest gap. Backends run on every
// node; externalTrafficPolicy Cluster.
func BenchmarkRollingRestart(b *testing.B) {
	e := labEnv(b)
	e.setTrafficPolicy(b, corev1.ServiceExternalTrafficPolicyCluster)
	e.place(b, e.nodeNames()...)
	e.agentsReady(b, 2*time.Minute)
	names := e.macNames(b)
	var run rollingRestart
	for range b.N {
		for trial := range *restarts {
			owner := e.owner(b)
			e.waitOwner(b, owner, time.Minute)
			p, w := e.startProber(b, 5*time.Minute), e.watchMAC(b, 5*time.Minute)
			t0, rolled := e.restartAgents(b, p)
			var newOwner string
			err := poll(b.Context(), time.Minute, func() (bool, error) {
				newOwner = e.announcer(b.Context())
				return newOwner != "" && p.clean(2*time.Second), nil
			})
			if err != nil {
				b.Fatalf("trial %d: requests did not run clean after the rolling restart: %v", trial, err)
			}
			tr := run.end(p, w, t0)
			b.Logf("trial %d: rolled in %s; VIP announced by %s before, %s after; %d of %d requests failed%s; gaps %s; the client sent to %s",
				trial, rolled.Round(100*time.Millisecond), owner, newOwner, tr.failed, tr.total, paren(tr.kinds), describe(tr.gaps, t0), w.describe(t0, names))
		}
	}
	run.report(b)
}

// restartAgents restarts the agents' DaemonSet (`kubectl rollout
// restart`) once p's requests have run clean for 1 s, and waits until
// `rollout status` says it is done and every agent is ready. It returns
// when the restart began and how long the rollout took.
func (e *env) restartAgents(b *testing.B, p *prober) (t0 time.Time, rolled time.Duration) {
	b.Helper()
	p.waitClean(b, time.Second, 30*time.Second)
	t0 = time.Now()
	if _, err := e.kubectl(b.Context(), "-n", agentNS, "rollout", "restart", "daemonset/"+agentDS); err != nil {
		b.Fatal(err)
	}
	if _, err := e.kubectl(b.Context(), "-n", agentNS, "rollout", "status", "daemonset/"+agentDS, "--timeout=4m"); err != nil {
		b.Fatal(err)
	}
	rolled = time.Since(t0)
	e.agentsReady(b, time.Minute)
	return t0, rolled
}

// rollingRestart adds up the trials of a rolling-restart benchmark
// (BenchmarkRollingRestart, BenchmarkBGPRollingRestart).
type rollingRestart struct {
	failed, total int
	gaps          []time.Duration // each trial's longest
}

// restartTrial is one rolling restart's requests: failed of total, the
// kinds of error, and the gaps over 25 ms.
type restartTrial struct {
	failed, total int
	kinds         string
	gaps          []gap
}

// end ends a trial that began at t0: it stops the prober p and the
// watcher w and adds p's requests since t0 to the figures.
func (r *rollingRestart) end(p *prober, w interface{ stop() }, t0 time.Time) restartTrial {
	end := time.Now()
	p.stop()
	w.stop()
	var tr restartTrial
	tr.failed, tr.total, tr.kinds = p.failures(t0, end)
	tr.gaps = p.gaps(t0, end, 25*time.Millisecond)
	r.failed, r.total = r.failed+tr.failed, r.total+tr.total
	r.gaps = append(r.gaps, longest(tr.gaps))
	return tr
}

// report reports the failed requests of all and the longest gap on b.
func (r *rollingRestart) report(b *testing.B) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(r.failed), "failed")
	b.ReportMetric(float64(r.total), "requests")
	if len(r.gaps) > 0 {
		b.ReportMetric(ms(slices.Max(r.gaps)), "max-ms-gap")
	}
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", s)
}

// macNames maps each node's eth0 MAC to the node's name.
func (e *env) macNames(b *testing.B) map[string]string {
	names := map[string]string{}
	for _, n := range e.nodeNames() {
		names[e.mac(b, n)] = n
	}
	return names
}
