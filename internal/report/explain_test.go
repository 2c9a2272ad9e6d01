package report

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
)

// explainBase is the tutorial: node1 and node2 with an agent each (eth0 on
// the LAN), first-pool, default-policy (^eth[0-9]+), web/nginx on
// 192.168.10.75 announced by node1, one ready endpoint on node1.
func explainBase() Input {
	in := Input{Now: t0, DefaultClass: true}
	for i, n := range []string{"node1", "node2"} {
		in.Nodes = append(in.Nodes, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"kubernetes.io/os": "linux"}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
		hn := heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: n}, Status: heraldv1.HeraldNodeStatus{
			KeyFingerprints: []string{"3f2a9c1e"},
			Interfaces: []heraldv1.NodeInterface{{Name: "lo", Up: true, Loopback: true},
				{Name: "eth0", MAC: []string{"02:42:c0:a8:0a:d8", "02:42:c0:a8:0a:d9"}[i], Up: true, Broadcast: true, LAN: true}},
			Segments: []heraldv1.Segment{{Interface: "eth0", Peers: []heraldv1.SegmentPeer{{Node: []string{"node2", "node1"}[i]}}}},
		}}
		if n == "node1" {
			hn.Status.Announcements = []heraldv1.Announcement{{Address: "192.168.10.75", Interfaces: []string{"eth0"}, Since: metav1.NewTime(t0.Add(-3600e9))}}
		}
		in.Reports = append(in.Reports, hn)
	}
	in.Pools = []heraldv1.LoadBalancerIPPool{pool("first-pool", counts("4", "1", "3"))}
	in.Policies = []heraldv1.L2AnnouncementPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "default-policy"},
		Spec: heraldv1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth[0-9]+"}}}}
	in.Services = []corev1.Service{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "nginx", Labels: map[string]string{"app": "nginx"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.168.10.75"}}},
			Conditions: []metav1.Condition{
				{Type: kube.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: "Allocated", Message: "192.168.10.75 from pool first-pool"},
				{Type: kube.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced", Message: "192.168.10.75 announced by node node1 on eth0"},
			},
		},
	}}
	in.EndpointSlices = []discoveryv1.EndpointSlice{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "nginx-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: "nginx"}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, NodeName: ptr("node1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
			{Addresses: []string{"10.244.2.7"}, NodeName: ptr("node2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
		},
	}}
	return in
}

func svcOf(in *Input) *corev1.Service { return &in.Services[0] }

// pending makes web/nginx addressless with IPAllocated False.
func pending(reason, msg string) func(*Input) {
	return func(in *Input) {
		s := svcOf(in)
		s.Status.LoadBalancer.Ingress = nil
		s.Status.Conditions = []metav1.Condition{{Type: kube.ConditionIPAllocated, Status: metav1.ConditionFalse, Reason: reason, Message: msg}}
		in.Reports[0].Status.Announcements = nil
	}
}

// unannounced drops node1's announcement (the controller's condition is
// not consulted for the node verdicts).
func unannounced(in *Input) { in.Reports[0].Status.Announcements = nil }

func findPool(e Explanation, name string) ExplainPool {
	for _, p := range e.Pools {
		if p.Name == name {
			return p
		}
	}
	return ExplainPool{}
}

func findPolicy(e Explanation, name string) ExplainPolicy {
	for _, p := range e.Policies {
		if p.Name == name {
			return p
		}
	}
	return ExplainPolicy{}
}

func findNode(e Explanation, name string) ExplainNode {
	for _, n := range e.Nodes {
		if n.Node == name {
			return n
		}
	}
	return ExplainNode{}
}

// TestExplain: one case per decision explain can report, each on the
// tutorial broken in one way.
func TestExplain(t *testing.T) {
	type want struct {
		state string
		// step is "pool NAME", "policy NAME", "node NAME", "address",
		// "class", "allocation" or "owner"; verdict the reason expected
		// there; text a substring of its message.
		step, verdict, text string
	}
	cases := []struct {
		name string
		mut  func(*Input)
		want want
	}{
		// 1. Class.
		{"announced", nil, want{StateAnnounced, "node node1", "Eligible", "eligible on node node1 on eth0"}},
		{"default class", nil, want{StateAnnounced, "class", "served", "without a loadBalancerClass"}},
		{"Herald's class", func(in *Input) { svcOf(in).Spec.LoadBalancerClass = ptr(kube.Class) }, want{StateAnnounced, "class", "served", "herald.dev/l2: Herald's"}},
		{"not a LoadBalancer", func(in *Input) { svcOf(in).Spec.Type = corev1.ServiceTypeClusterIP }, want{ExplainNotServed, "class", "not served", "type ClusterIP"}},
		{"another class", func(in *Input) { svcOf(in).Spec.LoadBalancerClass = ptr("metallb.io/l2") }, want{ExplainNotServed, "class", "not served", "another load balancer's"}},
		{"no class without --default-class", func(in *Input) { in.DefaultClass = false }, want{ExplainNotServed, "class", "not served", "--default-class=false"}},
		{"not found", func(in *Input) { svcOf(in).Name = "other" }, want{ExplainNotFound, "", "", ""}},

		// 2. Pools and the address.
		{"pool serves, holds the address", nil, want{StateAnnounced, "pool first-pool", "Serves", "may serve"}},
		{"pool selector", func(in *Input) {
			in.Pools = append(in.Pools, pool("edge", func(p *heraldv1.LoadBalancerIPPool) {
				p.Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.20.0/24"}}
				p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}
			}))
		}, want{StateAnnounced, "pool edge", "NotSelected", "serviceSelector"}},
		{"pinned to another pool", func(in *Input) {
			svcOf(in).Annotations = map[string]string{"herald.dev/pool": "other"}
		}, want{StateAnnounced, "pool first-pool", "PinnedElsewhere", `pinned to pool "other"`}},
		{"pool in conflict", func(in *Input) {
			in.Pools[0].Status.Conditions = []metav1.Condition{{Type: heraldv1.PoolConflictCondition, Status: metav1.ConditionTrue, Reason: "Overlap", Message: "overlaps pool old"}}
		}, want{StateAnnounced, "pool first-pool", "Conflict", "overlaps pool old"}},
		{"pool disabled", func(in *Input) { in.Pools[0].Spec.Disabled = true }, want{StateAnnounced, "pool first-pool", "Disabled", "disabled"}},
		{"pool of another family", func(in *Input) {
			in.Pools = append(in.Pools, pool("six", func(p *heraldv1.LoadBalancerIPPool) { p.Spec.Blocks = []heraldv1.IPBlock{{CIDR: "2001:db8::/120"}} }))
		}, want{StateAnnounced, "pool six", "NoFamily", "IPv4"}},
		{"pool full", func(in *Input) {
			pending("OutOfIPs", `pool "first-pool" has no free IPv4 address`)(in)
			in.Pools[0].Status.IPsUsed, in.Pools[0].Status.IPsAvailable = "4", "0"
		}, want{ExplainPending, "pool first-pool", "Full", "no free address (4 of 4 used)"}},
		{"pool invalid", func(in *Input) {
			in.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.10.1/24"}}
		}, want{StateAnnounced, "pool first-pool", "Invalid", "spec.blocks[0]"}},
		{"request unreadable", func(in *Input) {
			svcOf(in).Annotations = map[string]string{"herald.dev/ips": "not-an-ip"}
		}, want{StateAnnounced, "pool first-pool", "InvalidRequest", "herald.dev/ips"}},
		{"pending: out of IPs", pending("OutOfIPs", `pool "first-pool" has no free IPv4 address`), want{ExplainPending, "allocation", "OutOfIPs", "no free IPv4"}},
		{"pending: requested IP in use", pending("RequestedIPInUse", "192.168.10.75 is in use by web/other (this Service has no sharing key)"),
			want{ExplainPending, "allocation", "RequestedIPInUse", "web/other"}},
		{"pending: no pool", pending("NoPool", "no LoadBalancerIPPool selects this Service"), want{ExplainPending, "allocation", "NoPool", "selects"}},
		{"pending: no status", func(in *Input) {
			svcOf(in).Status = corev1.ServiceStatus{}
			in.Reports[0].Status.Announcements = nil
		}, want{ExplainPending, "allocation", ReasonNoStatus, "no herald.dev/IPAllocated"}},
		{"address in no pool", func(in *Input) {
			in.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.20.0/24"}}
		}, want{StateAnnounced, "address pool", "", ""}},
		{"sharing key", func(in *Input) {
			svcOf(in).Annotations = map[string]string{"herald.dev/sharing-key": "web"}
		}, want{StateAnnounced, "sharing", "web", ""}},

		// 3. Policies.
		{"policy selects", nil, want{StateAnnounced, "policy default-policy", "Selects", "no serviceSelector"}},
		{"policy serviceSelector", func(in *Input) {
			in.Policies[0].Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
			unannounced(in)
		}, want{ExplainUnannounced, "policy default-policy", "NotSelected", "app=other"}},
		{"policy invalid (Valid False)", func(in *Input) {
			in.Policies[0].Status.Conditions = []metav1.Condition{{Type: heraldv1.PolicyValidCondition, Status: metav1.ConditionFalse, Reason: "InvalidSelector", Message: "spec.nodeSelector: bad"}}
		}, want{StateAnnounced, "policy default-policy", "Invalid", "InvalidSelector"}},
		{"policy invalid (regex)", func(in *Input) {
			in.Policies[0].Spec.Interfaces = []string{"eth("}
			unannounced(in)
		}, want{ExplainUnannounced, "policy default-policy", "Invalid", "spec.interfaces[0]"}},
		{"policy without load-balancer IPs", func(in *Input) {
			in.Policies[0].Spec.LoadBalancerIPs = ptr(false)
			unannounced(in)
		}, want{ExplainUnannounced, "policy default-policy", "NoLoadBalancerIPs", "loadBalancerIPs: false"}},

		// 4. Nodes.
		{"no policy", func(in *Input) { in.Policies = nil; unannounced(in) }, want{ExplainUnannounced, "address", "NoPolicy", "no L2AnnouncementPolicy selects web/nginx"}},
		{"pending with no policy", func(in *Input) {
			pending("OutOfIPs", "none free")(in)
			in.Policies = nil
		}, want{ExplainPending, "node node1", "NoPolicy", "no L2AnnouncementPolicy"}},
		{"nodeSelector", func(in *Input) {
			in.Policies[0].Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"role": "edge"}}
			unannounced(in)
		}, want{ExplainUnannounced, "node node2", "NodeNotSelected", "do not select node node2"}},
		{"exclude label", func(in *Input) { in.Reports[1].Status.ExcludedByLabel = true }, want{StateAnnounced, "node node2", "ExcludedByLabel", "node.kubernetes.io/exclude-from-external-load-balancers"}},
		{"exclude label, no agent", func(in *Input) {
			in.Nodes[1].Labels[kube.ExcludeFromLBLabel] = ""
			in.Reports = in.Reports[:1]
		}, want{StateAnnounced, "node node2", "ExcludedByLabel", "Talos"}},
		{"regex matches no interface", func(in *Input) {
			in.Policies[0].Spec.Interfaces = []string{"^ens[0-9]+"}
			unannounced(in)
		}, want{ExplainUnannounced, "node node1", "NoMatchingInterface", "eth0"}},
		{"link down", func(in *Input) {
			for i := range in.Reports {
				in.Reports[i].Status.Interfaces[1].Up = false
			}
			unannounced(in)
		}, want{ExplainUnannounced, "address", "NoMatchingInterface", "no up interface"}},
		{"Local without a ready endpoint", func(in *Input) {
			svcOf(in).Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, want{StateAnnounced, "node node2", "NoLocalEndpoints", "no ready endpoint on node node2"}},
		{"Local eligible with a ready endpoint", func(in *Input) {
			svcOf(in).Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, want{StateAnnounced, "node node1", "Eligible", "eligible"}},
		{"no agent", func(in *Input) { in.Reports = in.Reports[:1] }, want{StateAnnounced, "node node2", "NoAgent", "no Herald agent"}},
		{"no agent anywhere", func(in *Input) { in.Reports = nil }, want{ExplainUnannounced, "address", "NoAgent", "no Herald agent"}},
		{"no heartbeat key", func(in *Input) { in.Reports[1].Status.KeyError = "secret herald-heartbeat not found" }, want{StateAnnounced, "node node2", "NoHeartbeatKey", "herald-heartbeat"}},
		{"key mismatch on the segment", func(in *Input) {
			in.Reports[1].Status.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "node1", KeyFingerprints: []string{"aaaa"}}}
		}, want{StateAnnounced, "node node2", "KeyMismatch", "hears node node1 on eth0 (keys aaaa, ours 3f2a9c1e) with another heartbeat key"}},
		{"key mismatch: both answer", func(in *Input) {
			in.Reports[1].Status.Segments[0] = heraldv1.Segment{Interface: "eth0", KeyMismatches: []heraldv1.SegmentPeer{{Node: "node1"}}}
			in.Reports[0].Status.Segments[0] = heraldv1.Segment{Interface: "eth0", KeyMismatches: []heraldv1.SegmentPeer{{Node: "node2"}}}
			in.Reports[1].Status.Announcements = []heraldv1.Announcement{{Address: "192.168.10.75", Interfaces: []string{"eth0"}, Since: metav1.NewTime(t0)}}
		}, want{StateAnnounced, "address", "KeyMismatch", "same heartbeat Secret"}},
		{"shared address not covered", func(in *Input) {
			other := *svcOf(in).DeepCopy()
			other.Name, other.Labels = "echo", map[string]string{"app": "echo"}
			in.Services = append(in.Services, other)
			in.Policies[0].Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}}
			unannounced(in)
		}, want{ExplainUnannounced, "node node1", "SharedNotCovered", "shared by web/echo, web/nginx"}},
		{"node not ready: its report is stale", func(in *Input) {
			in.Nodes[0].Status.Conditions[0].Status = corev1.ConditionFalse
		}, want{ExplainUnannounced, "address", "Pending", "nodes node1 and node2 may announce it"}},

		// 5. Owner.
		{"owner with its MAC", nil, want{StateAnnounced, "owner", "node1", "02:42:c0:a8:0a:d8"}},
		{"foreign MAC on an announced address", func(in *Input) {
			in.Reports[0].Status.Conflicts = []heraldv1.AddressConflict{{Address: "192.168.10.75", MAC: "02:42:c0:a8:0a:99", Interface: "eth0", Phase: heraldv1.ConflictAnnounced}}
		}, want{StateAnnounced, "address", "AddressConflict", "02:42:c0:a8:0a:99"}},
		{"foreign MAC found by the probe", func(in *Input) {
			unannounced(in)
			in.Reports[0].Status.Conflicts = []heraldv1.AddressConflict{{Address: "192.168.10.75", MAC: "02:42:c0:a8:0a:99", Interface: "eth0", Phase: heraldv1.ConflictProbe}}
		}, want{ExplainUnannounced, "address", "AddressConflict", "before it was ever announced"}},

		{"kube-proxy IPVS without strictARP on another node", func(in *Input) {
			in.Reports[1].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "interface kube-ipvs0 exists", KernelARPInterfaces: []string{"eth0"}}
		}, want{StateAnnounced, "address", "KernelARP", "but the kernel of node node2 also answers ARP for 192.168.10.75"}},
		{"a not Ready node's kernel is not counted", func(in *Input) {
			in.Reports[1].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, KernelARPInterfaces: []string{"eth0"}}
			in.Nodes[1].Status.Conditions[0].Status = corev1.ConditionFalse
		}, want{StateAnnounced, "address", "Announced", "announced by node node1 on eth0"}},

		// 6. Endpoints and the data plane.
		{"endpoints", nil, want{StateAnnounced, "endpoints", "10.244.1.5 node1 ready, 10.244.2.7 node2 not ready", ""}},
		{"data plane not reported", nil, want{StateAnnounced, "dataplane", "", "node node1: its agent does not report its data plane"}},
		{"Herald's table forwards", func(in *Input) {
			in.Reports[0].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNFTables}
		}, want{StateAnnounced, "dataplane", "", "node node1: Herald's nftables table (inet herald) forwards"}},
		{"kube-proxy forwards", func(in *Input) {
			in.Reports[0].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "nftables table ip kube-proxy exists"}
		}, want{StateAnnounced, "dataplane", "", "node node1: another data plane forwards (nftables table ip kube-proxy exists); Herald only announces"}},
		{"--dataplane=none", func(in *Input) {
			in.Reports[0].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone}
		}, want{StateAnnounced, "dataplane", "", "Herald only announces (--dataplane=none)"}},
		{"nobody answers, nobody forwards", func(in *Input) {
			unannounced(in)
			in.Reports[1].Status.Segments = nil
		}, want{ExplainUnannounced, "dataplane", "", "nobody answers for the address"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := explainBase()
			if c.mut != nil {
				c.mut(&in)
			}
			e := Explain(in, "web", "nginx")
			if e.State != c.want.state {
				t.Errorf("state %q, want %q; problems %+v", e.State, c.want.state, e.Problems)
			}
			if (e.State == StateAnnounced && c.want.verdict != "KeyMismatch" && c.want.verdict != "AddressConflict" && c.want.verdict != "KernelARP") != (len(e.Problems) == 0) {
				t.Errorf("state %s with problems %+v", e.State, e.Problems)
			}
			var verdict, text string
			switch step := c.want.step; {
			case step == "":
			case step == "class":
				verdict, text = "not served", e.Class.Message
				if e.Class.Served {
					verdict = "served"
				}
			case strings.HasPrefix(step, "pool "):
				p := findPool(e, strings.TrimPrefix(step, "pool "))
				verdict, text = p.Verdict, p.Message
			case strings.HasPrefix(step, "policy "):
				p := findPolicy(e, strings.TrimPrefix(step, "policy "))
				verdict, text = p.Verdict, p.Message
			case strings.HasPrefix(step, "node "):
				n := findNode(e, strings.TrimPrefix(step, "node "))
				verdict, text = n.Reason, n.Message
				if n.Eligible != (n.Reason == "Eligible") {
					t.Errorf("node %+v: eligible does not match its reason", n)
				}
			case step == "address":
				verdict, text = e.Addresses[0].Reason, e.Addresses[0].Message
			case step == "allocation":
				verdict, text = e.Allocation.Reason, e.Allocation.Message
				if e.Allocation.Status == "" {
					verdict, text = e.Problems[0].Reason, e.Problems[0].Message
				}
				if len(e.Addresses) != 0 {
					t.Errorf("pending with addresses %+v", e.Addresses)
				}
			case step == "address pool":
				verdict = e.Addresses[0].Pool
				var b bytes.Buffer
				if err := WriteExplain(&b, e, t0); err != nil || !strings.Contains(b.String(), "address: 192.168.10.75, in no pool's blocks") {
					t.Errorf("WriteExplain: %v\n%s", err, b.String())
				}
			case step == "sharing":
				verdict = e.SharingKey
			case step == "dataplane":
				text = e.DataPlane
			case step == "owner":
				o := e.Addresses[0].Owners[0]
				verdict, text = o.Node, strings.Join(o.MACs, ",")
			case step == "endpoints":
				var parts []string
				for _, ep := range e.Endpoints {
					r := "ready"
					if !ep.Ready {
						r = "not ready"
					}
					parts = append(parts, strings.Join(ep.Addresses, ",")+" "+ep.Node+" "+r)
				}
				verdict = strings.Join(parts, ", ")
			default:
				t.Fatalf("unknown step %q", step)
			}
			if verdict != c.want.verdict || !strings.Contains(text, c.want.text) {
				t.Errorf("%s: %q: %q, want %q containing %q", c.want.step, verdict, text, c.want.verdict, c.want.text)
			}
			var b bytes.Buffer
			if err := WriteExplain(&b, e, t0); err != nil || !strings.HasPrefix(b.String(), "Service web/") {
				t.Errorf("WriteExplain: %v\n%s", err, b.String())
			}
			if testing.Verbose() {
				t.Logf("\n%s", b.String())
			}
		})
	}
}

// TestExplainPendingJudgesNodes: a Service without an address yet still
// gets each node's verdict, as if it had one.
func TestExplainPendingJudgesNodes(t *testing.T) {
	in := explainBase()
	pending("OutOfIPs", "none free")(&in)
	e := Explain(in, "web", "nginx")
	if len(e.Nodes) != 2 || !e.Nodes[0].Eligible || e.Nodes[0].Address != "(no address yet)" {
		t.Fatalf("nodes of a pending Service: %+v", e.Nodes)
	}
}
