package agent_test

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/placement"
)

// kube-proxy in IPVS mode puts every load-balancer address on kube-ipvs0
// on every node. Without its strictARP setting (the kernel's default
// arp_ignore=0) every node's kernel then answers ARP for the address: the
// client hears three MACs although Herald gives the address one owner.
// Herald cannot stop the kernels, and says so: each HeraldNode names the
// interfaces, and the Service's condition becomes True, KernelARP, naming
// the nodes. With strictARP's sysctls only Herald's owner answers, and the
// condition is Announced again.
//
// kube-ipvs0 here is made by hand as kube-proxy makes it (an interface
// holding the address; a bridge, as this kernel has no dummy module):
// this machine's kernel has no IPVS, so the real kube-proxy cannot run in
// that mode here. The ARP answers are the kernel's own.
func TestIPVSWithoutStrictARP(t *testing.T) {
	c := newCluster(t)
	c.agentOpts = append(c.agentOpts, func(o *agent.Options) {
		o.Dataplane = agent.DataplaneAuto
		o.IdleCheck = time.Second // how soon a sysctl change is seen
	})
	vip := netip.MustParseAddr("192.168.10.75")
	sysctl := func(node, name, value string) {
		t.Helper()
		if err := c.lan.In(node, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/conf/"+name, []byte(value), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		c.lan.IP(n, "link", "add", "kube-ipvs0", "type", "bridge")
		c.lan.IP(n, "addr", "add", vip.String()+"/32", "dev", "kube-ipvs0")
		sysctl(n, "all/arp_ignore", "0")
		sysctl(n, "eth0/arp_ignore", "0")
	}
	c.createPolicy("^eth0$")
	c.createService("web", vip.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	owner := placement.Rank(vip, nodes)[0]

	// What happens: every node's MAC answers for the one address.
	p := startProber(t, c, "client", netip.MustParseAddr("192.168.10.10"), vip, 20*time.Millisecond)
	start := time.Now()
	for _, n := range nodes {
		p.waitFor(t, start, c.macs[n], 10*time.Second)
	}

	// What Herald says.
	// (The first agent up may announce alone for a moment: wait for the
	// rendezvous owner.)
	cond := c.waitReason("web", "KernelARP", "announced by node "+owner+" on eth0")
	kernels := "the kernels of nodes " + strings.Join(nodes[:len(nodes)-1], ", ") + " and " + nodes[len(nodes)-1]
	if !strings.Contains(cond.Message, kernels) || !strings.Contains(cond.Message, "ipvs.strictARP: true") ||
		cond.Status != metav1.ConditionTrue {
		t.Errorf("condition %s %s: %q; want True, naming %s and the fix", cond.Status, cond.Reason, cond.Message, kernels)
	}
	for _, n := range nodes {
		dp := c.waitDataPlane(n, func(dp *heraldv1.NodeDataPlane) bool { return len(dp.KernelARPInterfaces) > 0 })
		if dp.Mode != heraldv1.DataPlaneNone || !strings.Contains(dp.Evidence, "kube-ipvs0") || !slices.Equal(dp.KernelARPInterfaces, []string{"eth0"}) {
			t.Errorf("node %s reports %+v; want mode none, evidence kube-ipvs0, kernel ARP on eth0", n, dp)
		}
	}

	// The reports carry each LAN interface's subnets and default gateways
	// (herald doctor's pool checks), without link-local addresses; other
	// interfaces none. The client stands in for the LAN's router; a route
	// that is not a default route is no gateway.
	for _, n := range nodes {
		c.lan.IP(n, "route", "add", "default", "via", "192.168.10.10", "dev", "eth0")
		c.lan.IP(n, "-6", "route", "add", "default", "via", "fd00:10::10", "dev", "eth0")
		c.lan.IP(n, "route", "add", "10.99.0.0/16", "via", "192.168.10.11", "dev", "eth0")
	}
	wantGateways := []string{"192.168.10.10", "fd00:10::10"}
	for i, n := range nodes {
		var hn heraldv1.HeraldNode
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := c.cl.Get(context.Background(), client.ObjectKey{Name: n}, &hn); err != nil {
				t.Fatal(err)
			}
			j := slices.IndexFunc(hn.Status.Interfaces, func(ifc heraldv1.NodeInterface) bool { return ifc.Name == "eth0" })
			if (j >= 0 && slices.Equal(hn.Status.Interfaces[j].Gateways, wantGateways)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		a := nodeAddrs(i)
		want := []string{a[0] + "/24", a[1] + "/64"}
		for _, ifc := range hn.Status.Interfaces {
			switch {
			case ifc.Name == "eth0" && !slices.Equal(ifc.Addresses, want):
				t.Errorf("node %s reports eth0 with %v, want %v", n, ifc.Addresses, want)
			case ifc.Name == "eth0" && !slices.Equal(ifc.Gateways, wantGateways):
				t.Errorf("node %s reports eth0's gateways %v, want %v", n, ifc.Gateways, wantGateways)
			case ifc.Name != "eth0" && (len(ifc.Addresses) > 0 || len(ifc.Gateways) > 0):
				t.Errorf("node %s reports addresses or gateways on %s, which is not its LAN: %v %v", n, ifc.Name, ifc.Addresses, ifc.Gateways)
			}
		}
	}

	// strictARP: kube-proxy sets these on every node.
	for _, n := range nodes {
		sysctl(n, "all/arp_ignore", "1")
		sysctl(n, "all/arp_announce", "2")
	}
	cond = c.waitReason("web", "Announced", "192.168.10.75 announced by node "+owner+" on eth0")
	if strings.Contains(cond.Message, "kernel") {
		t.Errorf("with strictARP the condition still names the kernels: %q", cond.Message)
	}
	for _, n := range nodes {
		c.waitDataPlane(n, func(dp *heraldv1.NodeDataPlane) bool { return len(dp.KernelARPInterfaces) == 0 })
	}
	p.stable(t, c.macs[owner], time.Second, 10*time.Second)
}

// waitReason waits until the Service's herald.dev/Announced condition has
// reason and a message containing want, and returns it.
func (c *cluster) waitReason(name, reason, want string) metav1.Condition {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var cond *metav1.Condition
	for time.Now().Before(deadline) {
		s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		cond = meta.FindStatusCondition(s.Status.Conditions, kube.ConditionAnnounced)
		if cond != nil && cond.Reason == reason && strings.Contains(cond.Message, want) {
			return *cond
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%s: Announced condition = %+v, want reason %s containing %q", name, cond, reason, want)
	return metav1.Condition{}
}

// waitDataPlane waits until node's HeraldNode reports a data plane ok
// accepts, and returns it.
func (c *cluster) waitDataPlane(node string, ok func(*heraldv1.NodeDataPlane) bool) *heraldv1.NodeDataPlane {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var hn heraldv1.HeraldNode
	for time.Now().Before(deadline) {
		err := c.cl.Get(context.Background(), client.ObjectKey{Name: node}, &hn)
		if err == nil && hn.Status.DataPlane != nil && ok(hn.Status.DataPlane) {
			return hn.Status.DataPlane
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("HeraldNode %s: data plane %+v, not as wanted", node, hn.Status.DataPlane)
	return nil
}
