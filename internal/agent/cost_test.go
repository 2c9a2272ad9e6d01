package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/kube"
)

// The agent's work follows what changes, not what exists (the guard of
// the incremental paths; the figures are benchmarks): with 200 Services
// announced and nothing changing it re-plans and re-decides nothing; an
// EndpointSlice change re-reads that one Service and, when eligibility does
// not change, decides nothing; only a change of the node re-plans
// everything.
func TestCostFollowsChange(t *testing.T) {
	c := newCluster(t)
	regs := c.withRegistries()
	c.agentOpts = append(c.agentOpts, func(o *agent.Options) { o.IdleCheck = time.Hour })
	ctx := context.Background()
	pool := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "scale"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.200.0.0/16"}}}}
	if err := c.cl.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	c.createPolicy("^eth0$")
	const n = 200
	c.createMany(n)
	for _, node := range nodes {
		c.startAgent(node)
	}
	// Converged: every address announced, and recorded as such by the
	// controller (those writes are Service events too).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		total := 0
		for _, node := range nodes {
			var hn heraldv1.HeraldNode
			if err := c.cl.Get(ctx, client.ObjectKey{Name: node}, &hn); err == nil {
				total += len(hn.Status.Announcements)
			}
		}
		svcs, err := c.kube.CoreV1().Services(c.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		recorded := 0
		for _, s := range svcs.Items {
			if s.Annotations[kube.AnnouncedAnnotation] != "" {
				recorded++
			}
		}
		if total >= n && recorded >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d addresses announced, %d recorded", total, n, recorded)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)

	counts := func() map[string]map[string]float64 {
		out := map[string]map[string]float64{}
		for node, reg := range regs {
			out[node] = agentCounters(t, reg)
		}
		return out
	}
	before := counts()
	time.Sleep(3 * time.Second)
	idle := counts()
	for _, node := range nodes {
		for k, v := range idle[node] {
			if v != before[node][k] {
				t.Errorf("%s: %s went from %v to %v in 3 s with nothing changing", node, k, before[node][k], v)
			}
		}
	}

	// One EndpointSlice changes (a Cluster Service: eligibility stays).
	s := slice(c.ns, "s00007", false)
	cur, err := c.kube.DiscoveryV1().EndpointSlices(c.ns).Get(ctx, "s00007", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.ResourceVersion = cur.ResourceVersion
	if _, err := c.kube.DiscoveryV1().EndpointSlices(c.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	after := counts()
	for _, node := range nodes {
		d := func(k string) float64 { return after[node][k] - idle[node][k] }
		if d("plans_service") < 1 || d("services_read") < 1 || d("services_read") > 2 {
			t.Errorf("%s: one slice changed: %v service plans reading %v Services; want at least one plan reading that one Service", node, d("plans_service"), d("services_read"))
		}
		if d("plans_all") != 0 || d("decides") != 0 {
			t.Errorf("%s: one slice of a Cluster Service changed: %v full plans, %v placement passes; want none", node, d("plans_all"), d("decides"))
		}
	}

	// The node changes (a label): everything is planned again, once or so.
	c.labelNode(nodes[0], "example.com/rack", "a")
	time.Sleep(time.Second)
	relabel := counts()
	if d := relabel[nodes[0]]["plans_all"] - after[nodes[0]]["plans_all"]; d < 1 {
		t.Errorf("%s: its Node changed but it did not plan again (%v full plans)", nodes[0], d)
	}
}

// agentCounters reads an agent's herald_agent_* counters.
func agentCounters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "herald_agent_plans_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "scope" {
						out["plans_"+l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			case "herald_agent_services_planned_total":
				out["services_read"] = m.GetCounter().GetValue()
			case "herald_agent_decides_total":
				out["decides"] = m.GetCounter().GetValue()
			case "herald_agent_addresses_decided_total":
				out["addresses_decided"] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
