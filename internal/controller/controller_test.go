package controller_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/kube"
)

// The tutorial's pool: kubectl shows the tutorial's columns and 4 free IPs,
// the first Service gets .75 within a second, with a condition and an Event.
func TestTutorialPoolAndFirstService(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("first-pool", []string{"192.168.10.75-192.168.10.78"})
	h.waitPoolCondition("first-pool", heraldv1.IPsAvailableCondition, metav1.ConditionTrue, "")

	out, err := exec.Command(h.env.Binaries.Kubectl, "--kubeconfig", h.env.KubeconfigPath, "get", "lbpool").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get lbpool: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAME DISABLED CONFLICTING IPS AVAILABLE AGE" {
		t.Errorf("kubectl get lbpool header = %q", got)
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[0] != "first-pool" || f[1] != "false" || f[2] != "False" || f[3] != "4" {
		t.Errorf("kubectl get lbpool row = %q, want first-pool false False 4 <age>", lines[1])
	}

	start := time.Now()
	h.createService(h.ns, "nginx")
	h.waitIPs(h.ns, "nginx", "192.168.10.75")
	t.Logf("EXTERNAL-IP after %s", time.Since(start).Round(time.Millisecond))
	msg := h.waitEvent(h.ns, "nginx", controller.EventIPAllocated)
	if !strings.Contains(msg, "192.168.10.75") || !strings.Contains(msg, "first-pool") {
		t.Errorf("IPAllocated event %q should name the address and the pool", msg)
	}
	h.eventually(wait, func() string {
		var p heraldv1.LoadBalancerIPPool
		if err := h.cl.Get(h.ctx, clientKey("first-pool"), &p); err != nil {
			return err.Error()
		}
		if p.Status.IPsTotal != "4" || p.Status.IPsUsed != "1" || p.Status.IPsAvailable != "3" {
			return fmt.Sprintf("pool counts total/used/available = %s/%s/%s, want 4/1/3", p.Status.IPsTotal, p.Status.IPsUsed, p.Status.IPsAvailable)
		}
		return ""
	})
}

// Five controller restarts change no IP, even when the Services were created
// in an order a fresh allocator would answer differently.
func TestRestartsChangeNoIP(t *testing.T) {
	h := newHarness(t)
	h.createPool("pool", []string{"10.20.0.10-10.20.0.29"})
	stop := h.startController("c1", true)
	want := map[string]string{}
	for i := range 6 {
		name := fmt.Sprintf("s%d", i)
		h.createService(h.ns, name)
		h.waitIPs(h.ns, name, fmt.Sprintf("10.20.0.%d", 10+i))
		want[name] = fmt.Sprintf("10.20.0.%d", 10+i)
	}
	// Free the lowest addresses: a controller that forgot would hand .10
	// and .11 to the next Service or move others down.
	h.deleteService(h.ns, "s0")
	h.deleteService(h.ns, "s1")
	delete(want, "s0")
	delete(want, "s1")
	stop()
	for restart := range 5 {
		stop = h.startController(fmt.Sprintf("c-restart-%d", restart), true)
		name := fmt.Sprintf("new%d", restart)
		h.createService(h.ns, name)
		h.eventually(wait, func() string {
			if len(ingressIPs(h.getService(h.ns, name))) == 0 {
				return name + " has no address yet"
			}
			return ""
		})
		want[name] = ingressIPs(h.getService(h.ns, name))[0]
		for n, ip := range want {
			if got := ingressIPs(h.getService(h.ns, n)); len(got) != 1 || got[0] != ip {
				t.Fatalf("after restart %d: %s has %v, want %s", restart, n, got, ip)
			}
		}
		stop()
	}
	// The freed .10 and .11 went to the first two new Services, by the
	// lowest-free rule; nothing else moved.
	if want["new0"] != "10.20.0.10" || want["new1"] != "10.20.0.11" {
		t.Errorf("new0=%s new1=%s, want the freed 10.20.0.10 and 10.20.0.11", want["new0"], want["new1"])
	}
}

// Exhaustion: the third Service waits with OutOfIPs and an Event, and gets
// the address as soon as another Service lets it go.
func TestExhaustionThenFreedIPGoesToWaiter(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("small", []string{"10.30.0.1-10.30.0.2"})
	h.createService(h.ns, "a")
	h.waitIPs(h.ns, "a", "10.30.0.1")
	h.createService(h.ns, "b")
	h.waitIPs(h.ns, "b", "10.30.0.2")
	h.createService(h.ns, "c")
	msg := h.waitPending(h.ns, "c", "OutOfIPs")
	if !strings.Contains(msg, "small") {
		t.Errorf("OutOfIPs message %q should name the pool", msg)
	}
	if ev := h.waitEvent(h.ns, "c", controller.EventAllocationFailed); !strings.Contains(ev, "OutOfIPs") {
		t.Errorf("AllocationFailed event %q should carry the reason", ev)
	}
	h.waitPoolCondition("small", heraldv1.IPsAvailableCondition, metav1.ConditionFalse, "Exhausted")
	h.deleteService(h.ns, "a")
	h.waitIPs(h.ns, "c", "10.30.0.1")
}

// A requested IP held by another Service: RequestedIPInUse until released.
func TestRequestedIPInUseUntilReleased(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("pool", []string{"10.40.0.0/29"})
	h.createService(h.ns, "holder")
	h.waitIPs(h.ns, "holder", "10.40.0.1")
	h.createService(h.ns, "wants", withAnnotation("herald.dev/ips", "10.40.0.1"))
	msg := h.waitPending(h.ns, "wants", "RequestedIPInUse")
	if !strings.Contains(msg, h.ns+"/holder") {
		t.Errorf("message %q should name the holder", msg)
	}
	// Changing the holder's type away from LoadBalancer frees the IP at once.
	h.updateService(h.ns, "holder", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.ExternalTrafficPolicy = ""
		s.Spec.AllocateLoadBalancerNodePorts = nil
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	})
	h.waitIPs(h.ns, "wants", "10.40.0.1")
	h.eventually(wait, func() string {
		s := h.getService(h.ns, "holder")
		if len(s.Status.LoadBalancer.Ingress) != 0 || meta.FindStatusCondition(s.Status.Conditions, kube.ConditionIPAllocated) != nil {
			return fmt.Sprintf("holder still shows %v %v", ingressIPs(s), s.Status.Conditions)
		}
		return ""
	})
}

// Every sharing rule, accepted and refused, against the real API server.
func TestSharingRules(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("pool", []string{"10.50.0.0/28"})
	other := h.namespace("other")
	key := func(k string) svcOpt { return withAnnotation("herald.dev/sharing-key", k) }
	ip := withAnnotation("herald.dev/ips", "10.50.0.5")

	h.createService(h.ns, "first", key("k"), ip, withPorts(80))
	h.waitIPs(h.ns, "first", "10.50.0.5")

	cases := []struct {
		name   string
		ns     string
		opts   []svcOpt
		reason string // empty: shares the IP
	}{
		{"same-key-other-port", h.ns, []svcOpt{key("k"), ip, withPorts(443)}, ""},
		{"joins-by-key-alone", h.ns, []svcOpt{key("k"), withPorts(8080)}, ""},
		{"other-key", h.ns, []svcOpt{key("other"), ip, withPorts(8443)}, "SharingIncompatible"},
		{"no-key", h.ns, []svcOpt{ip, withPorts(9000)}, "RequestedIPInUse"},
		{"same-port", h.ns, []svcOpt{key("k"), ip, withPorts(80)}, "SharingIncompatible"},
		{"same-port-other-protocol", h.ns, []svcOpt{key("k"), ip, func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 80, Protocol: corev1.ProtocolUDP}}
		}}, "SharingIncompatible"},
		{"other-etp", h.ns, []svcOpt{key("k"), ip, withPorts(9001), withLocal(map[string]string{"app": "x"})}, "SharingIncompatible"},
		{"other-namespace-not-allowed", other, []svcOpt{key("k"), ip, withPorts(9002)}, "SharingIncompatible"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hh := *h
			hh.t = t
			hh.createService(c.ns, c.name, c.opts...)
			if c.reason == "" {
				hh.waitIPs(c.ns, c.name, "10.50.0.5")
				return
			}
			msg := hh.waitPending(c.ns, c.name, c.reason)
			t.Logf("%s: %s", c.reason, msg)
			hh.deleteService(c.ns, c.name)
		})
	}

	// Cross-namespace sharing needs consent from both sides.
	h.createService(h.ns, "cross-a", key("x"), withAnnotation("herald.dev/ips", "10.50.0.9"),
		withAnnotation("herald.dev/sharing-cross-namespace", other), withPorts(80))
	h.waitIPs(h.ns, "cross-a", "10.50.0.9")
	h.createService(other, "cross-b", key("x"), withAnnotation("herald.dev/ips", "10.50.0.9"),
		withAnnotation("herald.dev/sharing-cross-namespace", "*"), withPorts(81))
	h.waitIPs(other, "cross-b", "10.50.0.9")

	// externalTrafficPolicy: Local shares only with identical selectors.
	sel := map[string]string{"app": "web"}
	h.createService(h.ns, "local-a", key("l"), withAnnotation("herald.dev/ips", "10.50.0.10"), withPorts(80), withLocal(sel))
	h.waitIPs(h.ns, "local-a", "10.50.0.10")
	h.createService(h.ns, "local-b", key("l"), withAnnotation("herald.dev/ips", "10.50.0.10"), withPorts(81), withLocal(sel))
	h.waitIPs(h.ns, "local-b", "10.50.0.10")
	h.createService(h.ns, "local-c", key("l"), withAnnotation("herald.dev/ips", "10.50.0.10"), withPorts(82),
		withLocal(map[string]string{"app": "other"}))
	h.waitPending(h.ns, "local-c", "SharingIncompatible")
}

// SingleStack, PreferDualStack and RequireDualStack on a dual-stack API
// server.
func TestDualStack(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("v4", []string{"10.60.0.1-10.60.0.9"})
	h.createService(h.ns, "single", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol))
	h.waitIPs(h.ns, "single", "10.60.0.1")
	h.createService(h.ns, "prefer", withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	h.waitIPs(h.ns, "prefer", "10.60.0.2")
	h.createService(h.ns, "require", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
	h.waitPending(h.ns, "require", "FamilyUnavailable")
	h.createService(h.ns, "single6", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	h.waitPending(h.ns, "single6", "FamilyUnavailable")

	// An IPv6 block arrives: RequireDualStack gets both, primary family
	// first; PreferDualStack gains its IPv6 address; IPv6 single stack too.
	h.createPool("v6", []string{"2001:db8:60::/120"})
	h.eventually(wait, func() string {
		got := ingressIPs(h.getService(h.ns, "require"))
		if len(got) != 2 || !strings.HasPrefix(got[0], "2001:db8:60::") || got[1] != "10.60.0.3" {
			return fmt.Sprintf("require has %v, want [2001:db8:60::x 10.60.0.3] (primary family first)", got)
		}
		return ""
	})
	h.eventually(wait, func() string {
		got := ingressIPs(h.getService(h.ns, "prefer"))
		if len(got) != 2 || got[0] != "10.60.0.2" {
			return fmt.Sprintf("prefer has %v, want 10.60.0.2 and an IPv6 address", got)
		}
		return ""
	})
	h.eventually(wait, func() string {
		got := ingressIPs(h.getService(h.ns, "single6"))
		if len(got) != 1 || !strings.HasPrefix(got[0], "2001:db8:60::") {
			return fmt.Sprintf("single6 has %v", got)
		}
		return ""
	})
	if got := ingressIPs(h.getService(h.ns, "single")); len(got) != 1 {
		t.Errorf("single stack got %v", got)
	}
}

// Shrinking, un-selecting and deleting a pool move Services to another
// pool; growing keeps them; disabling keeps them but stops new allocations.
func TestPoolEdits(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("a-pool", []string{"10.70.0.1-10.70.0.2"})
	h.createPool("b-pool", []string{"10.71.0.1-10.71.0.9"})
	h.createService(h.ns, "s1")
	h.waitIPs(h.ns, "s1", "10.70.0.1")
	h.createService(h.ns, "s2")
	h.waitIPs(h.ns, "s2", "10.70.0.2")

	h.updatePool("a-pool", func(p *heraldv1.LoadBalancerIPPool) { p.Spec.Blocks = []heraldv1.IPBlock{block("10.70.0.1-10.70.0.5")} })
	h.consistently(time.Second, func() string {
		if got := ingressIPs(h.getService(h.ns, "s2")); len(got) != 1 || got[0] != "10.70.0.2" {
			return fmt.Sprintf("growing the pool moved s2 to %v", got)
		}
		return ""
	})
	h.updatePool("a-pool", func(p *heraldv1.LoadBalancerIPPool) { p.Spec.Blocks = []heraldv1.IPBlock{block("10.70.0.1")} })
	h.waitIPs(h.ns, "s2", "10.71.0.1")
	h.waitIPs(h.ns, "s1", "10.70.0.1")

	h.updatePool("a-pool", func(p *heraldv1.LoadBalancerIPPool) { p.Spec.Disabled = true })
	h.createService(h.ns, "s3")
	h.waitIPs(h.ns, "s3", "10.71.0.2")
	h.consistently(time.Second, func() string {
		if got := ingressIPs(h.getService(h.ns, "s1")); len(got) != 1 || got[0] != "10.70.0.1" {
			return fmt.Sprintf("disabling the pool moved s1 to %v", got)
		}
		return ""
	})

	h.updatePool("b-pool", func(p *heraldv1.LoadBalancerIPPool) {
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}
	})
	h.waitPending(h.ns, "s3", "NoPool")
	h.waitPending(h.ns, "s2", "NoPool")

	h.deletePool("a-pool")
	h.waitPending(h.ns, "s1", "NoPool")
	h.updatePool("b-pool", func(p *heraldv1.LoadBalancerIPPool) { p.Spec.ServiceSelector = nil })
	h.eventually(wait, func() string {
		for _, n := range []string{"s1", "s2", "s3"} {
			if got := ingressIPs(h.getService(h.ns, n)); len(got) != 1 || !strings.HasPrefix(got[0], "10.71.0.") {
				return fmt.Sprintf("%s has %v, want an address of b-pool", n, got)
			}
		}
		return ""
	})
}

// Overlapping pools: the newer is CONFLICTING and hands out nothing; it
// heals when the overlap goes. A node's own address conflicts too.
func TestPoolConflicts(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("older", []string{"10.80.0.0/24"}, func(p *heraldv1.LoadBalancerIPPool) {
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "older"}}
	})
	h.waitPoolCondition("older", heraldv1.PoolConflictCondition, metav1.ConditionFalse, "")
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has second resolution
	h.createPool("newer", []string{"10.80.0.128/25", "10.81.0.1"}, func(p *heraldv1.LoadBalancerIPPool) {
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "newer"}}
	})
	c := h.waitPoolCondition("newer", heraldv1.PoolConflictCondition, metav1.ConditionTrue, "Overlap")
	if !strings.Contains(c.Message, "older") {
		t.Errorf("conflict message %q should name the older pool", c.Message)
	}
	h.waitPoolCondition("older", heraldv1.PoolConflictCondition, metav1.ConditionFalse, "")
	h.createService(h.ns, "wants-newer", withLabel("pool", "newer"))
	h.waitPending(h.ns, "wants-newer", "NoPool")

	h.updatePool("newer", func(p *heraldv1.LoadBalancerIPPool) { p.Spec.Blocks = []heraldv1.IPBlock{block("10.81.0.1")} })
	h.waitPoolCondition("newer", heraldv1.PoolConflictCondition, metav1.ConditionFalse, "")
	h.waitIPs(h.ns, "wants-newer", "10.81.0.1")

	// A node whose InternalIP lies in a pool puts the pool in conflict.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp1"}}
	if err := h.cl.Create(h.ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.81.0.1"}}
	if err := h.cl.Status().Update(h.ctx, node); err != nil {
		t.Fatal(err)
	}
	c = h.waitPoolCondition("newer", heraldv1.PoolConflictCondition, metav1.ConditionTrue, "NodeAddress")
	if !strings.Contains(c.Message, "cp1") {
		t.Errorf("node conflict message %q should name the node", c.Message)
	}
	h.waitPending(h.ns, "wants-newer", "NoPool")
}

// Services of another loadBalancerClass are not Herald's: untouched.
func TestForeignClassUntouched(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("pool", []string{"10.90.0.1-10.90.0.5"})
	h.createService(h.ns, "foreign", withClass("example.com/other"))
	h.createService(h.ns, "ours", withClass(kube.Class))
	h.waitIPs(h.ns, "ours", "10.90.0.1")
	h.consistently(time.Second, func() string {
		s := h.getService(h.ns, "foreign")
		if len(s.Status.LoadBalancer.Ingress) != 0 || len(s.Status.Conditions) != 0 {
			return fmt.Sprintf("foreign-class service was touched: %+v", s.Status)
		}
		return ""
	})
}

// --default-class=false: only herald.dev/l2 Services are served.
func TestDefaultClassOff(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true, func(o *controller.Options) { o.DefaultClass = false })
	h.createPool("pool", []string{"10.91.0.1-10.91.0.5"})
	h.createService(h.ns, "classless")
	h.createService(h.ns, "ours", withClass(kube.Class))
	h.waitIPs(h.ns, "ours", "10.91.0.1")
	h.consistently(time.Second, func() string {
		if s := h.getService(h.ns, "classless"); len(s.Status.LoadBalancer.Ingress) != 0 {
			return "a Service without class was served with --default-class=false"
		}
		return ""
	})
}

// Existing Cilium and MetalLB manifests work unchanged.
func TestMigrationAnnotations(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("pool", []string{"10.100.0.0/24"}, func(p *heraldv1.LoadBalancerIPPool) { p.Spec.AllowFirstLastIPs = true })
	cases := map[string]string{
		"lbipam.cilium.io/ips":                "10.100.0.11",
		"io.cilium/lb-ipam-ips":               "10.100.0.12",
		"metallb.io/loadBalancerIPs":          "10.100.0.13",
		"metallb.universe.tf/loadBalancerIPs": "10.100.0.14",
		"herald.dev/ips":                      "10.100.0.0",
	}
	i := 0
	for k, v := range cases {
		name := fmt.Sprintf("m%d", i)
		i++
		h.createService(h.ns, name, withAnnotation(k, v))
		h.waitIPs(h.ns, name, v)
	}
	// Sharing keys of Cilium and MetalLB.
	h.createService(h.ns, "cilium-a", withAnnotation("lbipam.cilium.io/sharing-key", "s"), withAnnotation("lbipam.cilium.io/ips", "10.100.0.50"), withPorts(80))
	h.createService(h.ns, "cilium-b", withAnnotation("lbipam.cilium.io/sharing-key", "s"), withAnnotation("lbipam.cilium.io/ips", "10.100.0.50"), withPorts(81))
	h.waitIPs(h.ns, "cilium-a", "10.100.0.50")
	h.waitIPs(h.ns, "cilium-b", "10.100.0.50")
	h.createService(h.ns, "metallb-a", withAnnotation("metallb.io/allow-shared-ip", "m"), withAnnotation("metallb.io/loadBalancerIPs", "10.100.0.60"), withPorts(80))
	h.createService(h.ns, "metallb-b", withAnnotation("metallb.io/allow-shared-ip", "m"), withAnnotation("metallb.io/loadBalancerIPs", "10.100.0.60"), withPorts(81))
	h.waitIPs(h.ns, "metallb-a", "10.100.0.60")
	h.waitIPs(h.ns, "metallb-b", "10.100.0.60")
	// spec.loadBalancerIP, deprecated but still used.
	h.createService(h.ns, "spec-ip", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.100.0.70" })
	h.waitIPs(h.ns, "spec-ip", "10.100.0.70")
	// herald.dev/pool pins a pool.
	h.createPool("z-pinned", []string{"10.101.0.1-10.101.0.3"})
	h.createService(h.ns, "pinned", withAnnotation("herald.dev/pool", "z-pinned"))
	h.waitIPs(h.ns, "pinned", "10.101.0.1")
	h.createService(h.ns, "pinned-missing", withAnnotation("herald.dev/pool", "nope"))
	if msg := h.waitPending(h.ns, "pinned-missing", "NoPool"); !strings.Contains(msg, "nope") {
		t.Errorf("NoPool message %q should name the missing pool", msg)
	}
	// A requested IP outside every pool.
	h.createService(h.ns, "outside", withAnnotation("herald.dev/ips", "10.200.0.1"))
	h.waitPending(h.ns, "outside", "RequestedIPNotInPool")
}

// Bad input never crashes or blocks the controller: each bad Service gets a
// condition and an Event, and a good Service created after them is served.
func TestBadInputIsReportedAndOthersServed(t *testing.T) {
	h := newHarness(t)
	h.startController("c1", true)
	h.createPool("v4", []string{"10.110.0.1-10.110.0.9"})
	h.createPool("huge", []string{"fd00::/8"}, func(p *heraldv1.LoadBalancerIPPool) {
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "huge"}}
	})
	h.createService(h.ns, "garbage", withAnnotation("herald.dev/ips", "not-an-ip"))
	if msg := h.waitPending(h.ns, "garbage", "InvalidRequest"); !strings.Contains(msg, "herald.dev/ips") {
		t.Errorf("message %q should name the annotation", msg)
	}
	h.waitEvent(h.ns, "garbage", controller.EventAllocationFailed)
	h.createService(h.ns, "two-v4", withAnnotation("herald.dev/ips", "10.110.0.1,10.110.0.2"))
	h.waitPending(h.ns, "two-v4", "InvalidRequest")
	h.createService(h.ns, "wrong-family", withAnnotation("herald.dev/ips", "2001:db8::1"),
		withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol))
	h.waitPending(h.ns, "wrong-family", "FamilyUnavailable")
	h.createService(h.ns, "bad-pool-name", withAnnotation("herald.dev/pool", "../etc"))
	h.waitPending(h.ns, "bad-pool-name", "NoPool")

	h.createService(h.ns, "huge6", withLabel("pool", "huge"), withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	h.waitIPs(h.ns, "huge6", "fd00::1")
	h.eventually(wait, func() string {
		var p heraldv1.LoadBalancerIPPool
		if err := h.cl.Get(h.ctx, clientKey("huge"), &p); err != nil {
			return err.Error()
		}
		// 2^120 - 2 (first and last excluded) - 1 used.
		if p.Status.IPsAvailable != "1329227995784915872903807060280344573" {
			return "huge pool available = " + p.Status.IPsAvailable
		}
		return ""
	})
	h.createService(h.ns, "good")
	h.waitIPs(h.ns, "good", "10.110.0.1")

	// A typo on a Service that already has its address loses nothing.
	h.updateService(h.ns, "good", func(s *corev1.Service) { s.Annotations = map[string]string{"herald.dev/ips": "10.110.0.999"} })
	h.eventually(wait, func() string {
		s := h.getService(h.ns, "good")
		c := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionIPAllocated)
		if c == nil || c.Reason != "InvalidRequest" {
			return fmt.Sprintf("condition %+v", c)
		}
		if got := ingressIPs(s); len(got) != 1 || got[0] != "10.110.0.1" {
			return fmt.Sprintf("typo cost the Service its address: %v", got)
		}
		return ""
	})
}

// Two replicas: one leads; when it stops, the standby takes over, keeps
// every address and allocates for new Services.
func TestStandbyTakesOver(t *testing.T) {
	h := newHarness(t)
	h.createPool("pool", []string{"10.120.0.1-10.120.0.9"})
	stopA := h.startController("replica-a", true)
	h.startController("replica-b", false)
	h.createService(h.ns, "before")
	h.waitIPs(h.ns, "before", "10.120.0.1")
	lease, err := h.kube.CoordinationV1().Leases("herald-system").Get(h.ctx, "herald-controller", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "replica-a" {
		t.Fatalf("lease holder: %v %v", lease, err)
	}
	stopA()
	h.createService(h.ns, "after")
	h.waitIPs(h.ns, "after", "10.120.0.2")
	h.waitIPs(h.ns, "before", "10.120.0.1")
	lease, err = h.kube.CoordinationV1().Leases("herald-system").Get(h.ctx, "herald-controller", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "replica-b" {
		t.Fatalf("lease holder after take-over: %v %v", lease, err)
	}
}
