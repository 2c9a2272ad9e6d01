package controller_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/kube"
)

// The controller writes herald.dev/Announced from the agents' reports: who
// answers, and when nobody does, the exact reason — also when the node that
// used to answer cannot say so itself. herald_controller_services_announced
// counts the Service under each of those states in turn, and
// herald_controller_address_conflicts the address another host claims.
func TestAnnouncedConditionFollowsReports(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("pool", []string{"10.140.0.1-10.140.0.9"})
	h.createPolicy("lan")
	h.createService(h.ns, "web")
	h.waitIPs(h.ns, "web", "10.140.0.1")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)

	// Node n1 answers: True, named, and the address is recorded as announced.
	h.report("n1", lanReport(t0, "10.140.0.1"))
	h.report("n2", lanReport(t0))
	h.waitAnnounced(h.ns, "web", metav1.ConditionTrue, "Announced", "10.140.0.1 announced by node n1 on eth0")
	h.waitAnnouncedGauge(map[string]float64{"Announced/True": 1})
	h.eventually(wait, func() string {
		if got := h.getService(h.ns, "web").Annotations[kube.AnnouncedAnnotation]; got != "10.140.0.1" {
			return fmt.Sprintf("annotation %q", got)
		}
		return ""
	})
	h.waitEvent(h.ns, "web", controller.EventAnnouncerChanged)

	// n1 stops answering and nobody else does yet: both may, so Pending.
	h.report("n1", lanReport(t0))
	h.waitAnnounced(h.ns, "web", metav1.ConditionFalse, "Pending", "nodes n1 and n2 may announce it")
	h.waitAnnouncedGauge(map[string]float64{"Announced/True": 0, "Pending/False": 1})

	// The policy's interfaces match nothing: each node's interfaces named.
	h.updatePolicy("lan", func(p *heraldv1.L2AnnouncementPolicy) { p.Spec.Interfaces = []string{"^enp0s1$"} })
	h.waitAnnounced(h.ns, "web", metav1.ConditionFalse, "NoMatchingInterface", "node n1 matches policy lan (^enp0s1$); it has eth0 (LAN), cni0", "node n2")

	// No policy at all.
	if err := h.cl.Delete(h.ctx, &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "lan"}}); err != nil {
		t.Fatal(err)
	}
	h.waitAnnounced(h.ns, "web", metav1.ConditionFalse, "NoPolicy", "no L2AnnouncementPolicy selects")
	h.waitAnnouncedGauge(map[string]float64{"Announced/True": 0, "Pending/False": 0, "NoMatchingInterface/False": 0, "NoPolicy/False": 1})

	// Both nodes excluded by the label: why, per node, and the Talos hint.
	h.createPolicy("lan2")
	for _, n := range []string{"n1", "n2"} {
		st := lanReport(t0)
		st.ExcludedByLabel = true
		h.report(n, st)
	}
	h.waitAnnounced(h.ns, "web", metav1.ConditionFalse, "NoEligibleNode", "nodes n1 and n2 carry node.kubernetes.io/exclude-from-external-load-balancers", "Talos")

	// n1's stale report (it died) against n2's later one, which does not
	// hear n1: only n2 answers.
	h.report("n1", lanReport(t0, "10.140.0.1"))
	h.report("n2", lanReport(t0.Add(10*time.Second), "10.140.0.1"))
	c := h.waitAnnounced(h.ns, "web", metav1.ConditionTrue, "Announced", "announced by node n2 on eth0")
	if strings.Contains(c.Message, "n1") {
		t.Errorf("a dead node's stale report counted: %q", c.Message)
	}

	// Both answer and hear each other with other keys: KeyMismatch, naming
	// both keys.
	st1, st2 := lanReport(t0, "10.140.0.1"), lanReport(t0.Add(10*time.Second), "10.140.0.1")
	st1.KeyFingerprints, st2.KeyFingerprints = []string{"aaaa1111"}, []string{"bbbb2222"}
	st1.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "n2", KeyFingerprints: []string{"bbbb2222"}}}
	st2.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "n1", KeyFingerprints: []string{"aaaa1111"}}}
	h.report("n1", st1)
	h.report("n2", st2)
	h.waitAnnounced(h.ns, "web", metav1.ConditionTrue, "KeyMismatch", "aaaa1111", "bbbb2222", "node n1 on eth0 and by node n2 on eth0")
	h.waitEvent(h.ns, "web", "KeyMismatch")

	// Another host claims the announced address: still announced, the MAC
	// named, a Warning recorded, and the address never changes.
	st := lanReport(t0, "10.140.0.1")
	st.Conflicts = []heraldv1.AddressConflict{{Address: "10.140.0.1", MAC: "02:00:5e:10:00:99", Interface: "eth0", Phase: heraldv1.ConflictAnnounced, Since: metav1.NewTime(t0)}}
	h.report("n1", st)
	h.report("n2", lanReport(t0))
	h.waitAnnounced(h.ns, "web", metav1.ConditionTrue, "AddressConflict", "02:00:5e:10:00:99", "defends it")
	h.waitEvent(h.ns, "web", "AddressConflict")
	h.waitIPs(h.ns, "web", "10.140.0.1")
	h.waitGauge("herald_controller_address_conflicts", map[string]float64{"announced": 1, "probe": 0})
	h.waitAnnouncedGauge(map[string]float64{"AddressConflict/True": 1})

	// The Service goes: counted nowhere.
	h.deleteService(h.ns, "web")
	h.eventually(wait, func() string {
		for k, v := range h.gauges("herald_controller_services_announced") {
			if v != 0 {
				return fmt.Sprintf("%s = %v after the only Service was deleted", k, v)
			}
		}
		return ""
	})
}

// gauges reads a gauge family of the controller startController started
// last, keyed by its label values joined with "/" (in label-name order).
func (h *harness) gauges(name string) map[string]float64 {
	h.t.Helper()
	mfs, err := h.ctl.Gatherer().Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vs []string
			for _, l := range m.GetLabel() {
				vs = append(vs, l.GetValue())
			}
			out[strings.Join(vs, "/")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// waitGauge waits until the gauge family shows exactly want (series not in
// want must be absent).
func (h *harness) waitGauge(name string, want map[string]float64) {
	h.t.Helper()
	h.eventually(wait, func() string {
		if got := h.gauges(name); !maps.Equal(got, want) {
			return fmt.Sprintf("%s = %v, want %v", name, got, want)
		}
		return ""
	})
}

// waitAnnouncedGauge waits for herald_controller_services_announced to
// show want (keyed "reason/status"); series not in want must be 0 or
// absent.
func (h *harness) waitAnnouncedGauge(want map[string]float64) {
	h.t.Helper()
	h.eventually(wait, func() string {
		got := h.gauges("herald_controller_services_announced")
		for k, v := range got {
			if v != want[k] {
				return fmt.Sprintf("herald_controller_services_announced = %v, want %v", got, want)
			}
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Sprintf("herald_controller_services_announced = %v, want %v", got, want)
			}
		}
		return ""
	})
}

// A probe that finds another host on an address never announced moves the
// Service to the next address, once (the reason said once); the exclusion
// lives in the agents' reports, shows in the pool's status, survives five
// controller restarts and clears when the report does. An address that was
// announced is never moved.
func TestProbeConflictExcludesNeverAnnounced(t *testing.T) {
	h := newHarness(t)
	stop := h.startController("c1", true)
	h.createPool("pool", []string{"10.150.0.1-10.150.0.9"})
	h.createPolicy("lan")
	h.createService(h.ns, "old")
	h.waitIPs(h.ns, "old", "10.150.0.1")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	h.report("n1", lanReport(t0, "10.150.0.1"))
	h.eventually(wait, func() string {
		if got := h.getService(h.ns, "old").Annotations[kube.AnnouncedAnnotation]; got != "10.150.0.1" {
			return fmt.Sprintf("annotation %q", got)
		}
		return ""
	})
	h.createService(h.ns, "new")
	h.waitIPs(h.ns, "new", "10.150.0.2")

	// n1's probe finds a foreign host on .2 (never announced) and — say, a
	// stray device that took it while it was announced — on .1.
	st := lanReport(t0, "10.150.0.1")
	for _, a := range []string{"10.150.0.1", "10.150.0.2"} {
		st.Conflicts = append(st.Conflicts, heraldv1.AddressConflict{Address: a, MAC: "02:00:5e:10:00:99", Interface: "eth0", Phase: heraldv1.ConflictProbe, Since: metav1.NewTime(t0)})
	}
	h.report("n1", st)
	h.waitIPs(h.ns, "new", "10.150.0.3")
	h.waitGauge("herald_controller_address_conflicts", map[string]float64{"announced": 0, "probe": 2})
	msg := h.waitEvent(h.ns, "new", controller.EventIPReleased)
	if !strings.Contains(msg, "02:00:5e:10:00:99") || strings.Count(msg, "in use by another host") != 1 {
		t.Errorf("IPReleased event %q should say once why the address moved", msg)
	}
	h.consistently(2*time.Second, func() string {
		if got := ingressIPs(h.getService(h.ns, "old")); len(got) != 1 || got[0] != "10.150.0.1" {
			return fmt.Sprintf("an announced address moved: %v", got)
		}
		return ""
	})
	h.waitPoolExcluded("pool", "10.150.0.1", "10.150.0.2")

	for i := range 5 {
		stop()
		stop = h.startController(fmt.Sprintf("c%d", i+2), true)
		name := fmt.Sprintf("after-restart-%d", i)
		h.createService(h.ns, name)
		h.waitIPs(h.ns, name, fmt.Sprintf("10.150.0.%d", 4+i))
		h.waitIPs(h.ns, "old", "10.150.0.1")
		h.waitPoolExcluded("pool", "10.150.0.1", "10.150.0.2")
	}

	// The agent's probe finds the address free again: the exclusion goes.
	h.report("n1", lanReport(t0, "10.150.0.1"))
	h.waitPoolExcluded("pool")
	h.waitGauge("herald_controller_address_conflicts", map[string]float64{"announced": 0, "probe": 0})
	h.createService(h.ns, "later")
	h.waitIPs(h.ns, "later", "10.150.0.2")
	// Asking for an excluded address explicitly: AddressConflict.
	st = lanReport(t0, "10.150.0.1")
	st.Conflicts = []heraldv1.AddressConflict{{Address: "10.150.0.9", MAC: "02:00:5e:10:00:98", Interface: "eth0", Phase: heraldv1.ConflictProbe, Since: metav1.NewTime(t0)}}
	h.report("n1", st)
	h.waitPoolExcluded("pool", "10.150.0.9")
	h.createService(h.ns, "wants-it", withAnnotation("herald.dev/ips", "10.150.0.9"))
	h.waitPending(h.ns, "wants-it", "AddressConflict")
}

// waitPoolExcluded waits for the pool's status to list exactly addrs as
// excluded.
func (h *harness) waitPoolExcluded(pool string, addrs ...string) {
	h.t.Helper()
	h.eventually(wait, func() string {
		var p heraldv1.LoadBalancerIPPool
		if err := h.cl.Get(h.ctx, types.NamespacedName{Name: pool}, &p); err != nil {
			return err.Error()
		}
		var got []string
		for _, e := range p.Status.ExcludedAddresses {
			got = append(got, e.Address)
		}
		if strings.Join(got, ",") != strings.Join(addrs, ",") {
			return fmt.Sprintf("excluded %v, want %v", got, addrs)
		}
		return ""
	})
}

func (h *harness) updatePolicy(name string, mutate func(*heraldv1.L2AnnouncementPolicy)) {
	h.t.Helper()
	for {
		var p heraldv1.L2AnnouncementPolicy
		if err := h.cl.Get(h.ctx, client.ObjectKey{Name: name}, &p); err != nil {
			h.t.Fatal(err)
		}
		mutate(&p)
		err := h.cl.Update(h.ctx, &p)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			h.t.Fatal(err)
		}
	}
}

// A policy whose selector cannot be used (the CRD schema cannot refuse
// every bad selector) says so on its status, naming the field.
func TestPolicyValidCondition(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPolicy("bad", func(p *heraldv1.L2AnnouncementPolicy) {
		p.Spec.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "zone", Operator: metav1.LabelSelectorOpIn}}}
	})
	h.createPolicy("good")
	for name, want := range map[string]metav1.ConditionStatus{"bad": metav1.ConditionFalse, "good": metav1.ConditionTrue} {
		h.eventually(wait, func() string {
			var p heraldv1.L2AnnouncementPolicy
			if err := h.cl.Get(h.ctx, client.ObjectKey{Name: name}, &p); err != nil {
				return err.Error()
			}
			c := meta.FindStatusCondition(p.Status.Conditions, heraldv1.PolicyValidCondition)
			if c == nil || c.Status != want {
				return fmt.Sprintf("%s: Valid %+v, want %s", name, c, want)
			}
			if want == metav1.ConditionFalse && !strings.Contains(c.Message, "spec.nodeSelector") {
				return fmt.Sprintf("message %q does not name spec.nodeSelector", c.Message)
			}
			return ""
		})
	}
}

// The leader creates the heartbeat Secret when it is missing, never
// changes an existing one (restarts keep the key), and creates it again
// when it is deleted.
func TestHeartbeatSecretCreated(t *testing.T) {
	h := newHarness(t)
	name := "hb-" + h.ns
	withSecret := func(o *controller.Options) {
		o.HeartbeatSecret = types.NamespacedName{Namespace: "herald-system", Name: name}
		o.CreateHeartbeatSecret = true
	}
	stop := h.startController("c1", true, withSecret)
	t.Cleanup(func() { _ = h.kube.CoreV1().Secrets("herald-system").Delete(h.ctx, name, metav1.DeleteOptions{}) })
	secret := func() *corev1.Secret {
		var s *corev1.Secret
		h.eventually(wait, func() string {
			var err error
			if s, err = h.kube.CoreV1().Secrets("herald-system").Get(h.ctx, name, metav1.GetOptions{}); err != nil {
				return err.Error()
			}
			return ""
		})
		return s
	}
	first := secret()
	keys, err := heartbeatkey.Parse(first.Data)
	if err != nil || len(keys.Values()) != 1 {
		t.Fatalf("created Secret holds %v (%v), want one key", keys, err)
	}
	if _, ok := first.Labels["app.kubernetes.io/instance"]; ok {
		t.Errorf("the Secret carries app.kubernetes.io/instance, which GitOps tools take as theirs to prune: %v", first.Labels)
	}
	stop()
	stop = h.startController("c2", true, withSecret)
	if again := secret(); again.UID != first.UID || string(again.Data["key-1"]) != string(first.Data["key-1"]) {
		t.Fatal("a restarted controller changed the heartbeat Secret")
	}
	if err := h.kube.CoreV1().Secrets("herald-system").Delete(h.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually(wait, func() string {
		s, err := h.kube.CoreV1().Secrets("herald-system").Get(h.ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if s.UID == first.UID {
			return "not deleted yet"
		}
		return ""
	})
	stop()
}

// Run by hand against a cluster without the namespace: the controller says
// what to do instead of retrying forever.
func TestMissingNamespaceSaysWhatToDo(t *testing.T) {
	h := newHarness(t)
	c, err := controller.New(h.env.Config, controller.Options{Identity: "lonely", LeaseNamespace: "no-such-namespace"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "kubectl create namespace no-such-namespace") {
		t.Fatalf("Run = %v, want an error saying to create the namespace", err)
	}
}
