package agent_test

// What an agent costs with many Services, idle and under EndpointSlice
// churn, measured from /proc/<pid>/stat and /proc/<pid>/status of three
// `herald agent` processes (one per node namespace, as for kill -9).
//
//	go test -run '^$' -bench AgentCost -benchtime 1x -timeout 60m ./internal/agent/
//
// HERALD_PPROF_DIR=dir also saves a CPU profile of the first node's agent
// for each phase (the agents serve /debug/pprof on their node's loopback),
// and a heap profile after the idle phase. HERALD_COST_SECONDS sets the
// length of each phase (default 10; the CPU figures are counted in clock
// ticks of 10 ms, so a few millicores need 30 s or more).
// HERALD_AGENT_FLAGS adds flags to every agent (e.g. "--heartbeat-interval
// 100ms --dead-after 4"). HERALD_IDLE_SECONDS sets the idle phase alone
// (the 10-minute count of API writes at 1000 Services). Each phase also
// reports the writes the API server served meanwhile (its
// apiserver_request_total), leader-election lease renewals apart.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
)

// BenchmarkAgentCost: one op = the whole measurement for a number of
// Services: idle for 10 s, then 10 s of 50 EndpointSlice changes per second.
// Reported per phase: the busiest agent's CPU (millicores) and its largest
// resident set (MiB).
func BenchmarkAgentCost(b *testing.B) {
	for _, n := range []int{2, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for range b.N {
				agentCost(b, n)
			}
		})
	}
}

func agentCost(b *testing.B, n int) {
	c := newBenchCluster(b)
	c.agentLog = io.Discard
	ctx := context.Background()
	pool := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "scale"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.200.0.0/16"}}}}
	if err := c.cl.Create(ctx, pool); err != nil {
		b.Fatal(err)
	}
	c.createPolicy("^eth0$")
	start := time.Now()
	c.createMany(n)
	b.Logf("%d Services with addresses and EndpointSlices in %s", n, time.Since(start).Round(time.Second))

	kcs, key := c.processSetup(shared.Env(b).KubeconfigPath)
	procs := map[string]*agentProcess{}
	pprofDir := os.Getenv("HERALD_PPROF_DIR")
	seconds := 10
	if v, err := strconv.Atoi(os.Getenv("HERALD_COST_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	for _, node := range nodes {
		extra := strings.Fields(os.Getenv("HERALD_AGENT_FLAGS"))
		if pprofDir != "" {
			extra = append(extra, "--pprof-addr", "127.0.0.1:6060")
		}
		procs[node] = c.startAgentProcess(node, kcs[node], key, extra...)
	}
	// Converged: every address announced by some node.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		total := 0
		for _, node := range nodes {
			var hn heraldv1.HeraldNode
			if err := c.cl.Get(ctx, client.ObjectKey{Name: node}, &hn); err == nil {
				total += len(hn.Status.Announcements)
			}
		}
		if total >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d addresses announced after 10 minutes", total, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.Logf("all %d addresses announced %s after the agents started", n, time.Since(start).Round(time.Second))
	// The controller records each announced address on its Service (one
	// write each, once): idle starts when it is done.
	for {
		svcs, err := c.kube.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, s := range svcs.Items {
			if s.Annotations[kube.AnnouncedAnnotation] != "" {
				done++
			}
		}
		if done >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d Services recorded as announced", done, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // let the start-up settle

	idleSeconds := seconds
	if v, err := strconv.Atoi(os.Getenv("HERALD_IDLE_SECONDS")); err == nil && v > 0 {
		idleSeconds = v
	}
	measure := func(phase string, during func(stop <-chan struct{})) {
		seconds := seconds
		if phase == "idle" {
			seconds = idleSeconds
		}
		writes0 := apiWrites(b, c)
		cpu0, user0 := map[string]float64{}, map[string]float64{}
		for node, p := range procs {
			cpu0[node] = cpuSeconds(b, p.cmd.Process.Pid)
			user0[node] = userSeconds(b, p.cmd.Process.Pid)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		if during != nil {
			wg.Go(func() { during(stop) })
		}
		t0 := time.Now()
		if pprofDir != "" {
			c.saveProfile(pprofDir, fmt.Sprintf("agent-%d-%s.pprof", n, phase), nodes[0], seconds)
		} else {
			time.Sleep(time.Duration(seconds) * time.Second)
		}
		wall := time.Since(t0).Seconds()
		close(stop)
		wg.Wait()
		busiest, user, rss, anon := 0.0, 0.0, 0.0, 0.0
		for node, p := range procs {
			if cpu := (cpuSeconds(b, p.cmd.Process.Pid) - cpu0[node]) / wall; cpu > busiest {
				busiest, user = cpu, (userSeconds(b, p.cmd.Process.Pid)-user0[node])/wall
			}
			rss = max(rss, statusMiB(b, p.cmd.Process.Pid, "VmRSS:"))
			anon = max(anon, statusMiB(b, p.cmd.Process.Pid, "RssAnon:"))
		}
		// Writes to the API server while this phase ran, from its own
		// request metrics: leases apart (the control plane's and Herald's
		// controller's leader elections renew on a timer, whatever the
		// Services), everything else by resource.
		writes1 := apiWrites(b, c)
		other, leases := 0.0, 0.0
		var by []string
		for res, n := range writes1 {
			d := n - writes0[res]
			if d == 0 {
				continue
			}
			by = append(by, fmt.Sprintf("%s %.0f", res, d))
			if strings.HasPrefix(res, "leases") {
				leases += d
			} else {
				other += d
			}
		}
		slices.Sort(by)
		b.ReportMetric(other, phase+"-api-writes")
		b.ReportMetric(leases, phase+"-lease-writes")
		b.Logf("%d Services, %s (%.0f s): API writes %.0f besides %.0f lease renewals: %s", n, phase, wall, other, leases, strings.Join(by, ", "))
		b.ReportMetric(busiest*1000, phase+"-millicores")
		b.ReportMetric(user*1000, phase+"-user-millicores")
		b.ReportMetric(rss, phase+"-MiB")
		b.ReportMetric(anon, phase+"-anon-MiB")
		b.Logf("%d Services, %s (%.0f s): busiest agent %.1f millicores (user %.1f, system %.1f), largest RSS %.0f MiB (anonymous %.0f MiB; the rest is the binary's pages)",
			n, phase, wall, busiest*1000, user*1000, (busiest-user)*1000, rss, anon)
	}
	measure("idle", nil)
	if pprofDir != "" {
		c.saveHeap(pprofDir, fmt.Sprintf("agent-%d-heap.pprof", n), nodes[0])
	}
	measure("churn", func(stop <-chan struct{}) { c.churn(stop, n, 50) })
}

// createMany creates n Services pinned to the pool "scale", each with an
// EndpointSlice of two ready endpoints on n1 and n2, and waits until every
// one has its address.
func (c *cluster) createMany(n int) {
	c.t.Helper()
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				name := fmt.Sprintf("s%05d", i)
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: c.ns, Name: name, Annotations: map[string]string{"herald.dev/pool": "scale"}},
					Spec: corev1.ServiceSpec{
						Type: corev1.ServiceTypeLoadBalancer,
						// No node ports: 10 000 would not fit in the range,
						// and an L2 load balancer does not need them.
						AllocateLoadBalancerNodePorts: ptr.To(false),
						Selector:                      map[string]string{"app": "web"},
						Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}},
					},
				}
				if _, err := c.kube.CoreV1().Services(c.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				if _, err := c.kube.DiscoveryV1().EndpointSlices(c.ns).Create(ctx, slice(c.ns, name, true), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range n {
		select {
		case work <- i:
		case err := <-errs:
			c.t.Fatal(err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		c.t.Fatal(err)
	default:
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		svcs, err := c.kube.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		done := 0
		for _, s := range svcs.Items {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				done++
			}
		}
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d Services have addresses after 10 minutes", done, n)
		}
		time.Sleep(time.Second)
	}
}

// slice is the EndpointSlice of Service name: two endpoints, on n1 and n2;
// the one on n2 is ready when ready2.
func slice(ns, name string, ready2 bool) *discoveryv1.EndpointSlice {
	yes := true
	n1, n2 := "n1", "n2"
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.10"}, NodeName: &n1, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{Addresses: []string{"10.244.2.10"}, NodeName: &n2, Conditions: discoveryv1.EndpointConditions{Ready: &ready2}},
		},
		Ports: []discoveryv1.EndpointPort{{Port: ptrInt32(80)}},
	}
}

func ptrInt32(v int32) *int32 { return &v }

// churn updates perSecond EndpointSlices per second (round robin over the
// n Services, toggling the second endpoint's readiness) until stop.
func (c *cluster) churn(stop <-chan struct{}, n, perSecond int) {
	ctx := context.Background()
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		name := fmt.Sprintf("s%05d", i%n)
		s := slice(c.ns, name, i/n%2 == 1)
		cur, err := c.kube.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		s.ResourceVersion = cur.ResourceVersion
		_, _ = c.kube.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, s, metav1.UpdateOptions{})
	}
}

// statusMiB is a size field of a process's /proc status ("VmRSS:", the
// resident set; "RssAnon:", its anonymous part: heap, stacks, not the
// binary's file pages).
func statusMiB(tb testing.TB, pid int, field string) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// saveProfile fetches a CPU profile of node's agent (pprof on its
// loopback) for seconds and writes it to dir/name.
func (c *cluster) saveProfile(dir, name, node string, seconds int) {
	c.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", c.lan.Namespace(node), "curl", "-sS", "--max-time", strconv.Itoa(seconds+10),
		fmt.Sprintf("http://127.0.0.1:6060/debug/pprof/profile?seconds=%d", seconds)).Output()
	if err != nil {
		c.t.Errorf("profile of %s: %v", node, err)
		time.Sleep(time.Duration(seconds) * time.Second)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), out, 0o644); err != nil {
		c.t.Error(err)
	}
}

// saveHeap fetches a heap profile of node's agent into dir/name.
func (c *cluster) saveHeap(dir, name, node string) {
	c.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", c.lan.Namespace(node), "curl", "-sS", "--max-time", "20",
		"http://127.0.0.1:6060/debug/pprof/heap").Output()
	if err != nil {
		c.t.Errorf("heap profile of %s: %v", node, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), out, 0o644); err != nil {
		c.t.Error(err)
	}
}

// apiWrites reads the API server's apiserver_request_total and returns the
// write requests (POST, PUT, PATCH, APPLY, DELETE) so far, by resource
// ("services/status", "heraldnodes/status", "leases", …).
func apiWrites(tb testing.TB, c *cluster) map[string]float64 {
	tb.Helper()
	raw, err := c.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		tb.Fatalf("read the API server's metrics: %v", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("parse the API server's metrics: %v", err)
	}
	out := map[string]float64{}
	fam := fams["apiserver_request_total"]
	if fam == nil {
		tb.Fatal("the API server exposes no apiserver_request_total")
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		switch labels["verb"] {
		case "POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION":
		default:
			continue
		}
		res := labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		out[res] += m.GetCounter().GetValue()
	}
	return out
}
