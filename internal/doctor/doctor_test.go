package doctor

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/report"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func crdv(name, schemaType string) apiextensionsv1.CustomResourceDefinition {
	return apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
			Name: "v1alpha1", Served: true, Storage: true,
			Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: schemaType}},
		}}}}
}

// healthy is the tutorial, installed and well: two nodes, both agents
// reporting with one key and Herald's table, a pool, a policy on ^eth0$,
// the controller leading, every permission granted.
func healthy() Input {
	hn := func(name string) heraldv1.HeraldNode {
		return heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: heraldv1.HeraldNodeStatus{
			KeyFingerprints: []string{"3f2a9c1e"},
			Interfaces: []heraldv1.NodeInterface{{Name: "lo", Up: true, Loopback: true},
				{Name: "eth0", Up: true, Broadcast: true, LAN: true, Addresses: []string{"192.168.10.216/24", "fd00:10::216/64"},
					Gateways: []string{"192.168.10.1", "fd00:10::1"}}},
			Segments:  []heraldv1.Segment{{Interface: "eth0"}},
			DataPlane: &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNFTables},
		}}
	}
	node := func(name string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	}
	holder, dur := "herald-controller-1", int32(15)
	in := Input{
		Version: Version{Major: 1, Minor: 37, GitVersion: "v1.37.1"},
		CRDs:    []apiextensionsv1.CustomResourceDefinition{crdv("a.herald.dev", "object"), crdv("b.herald.dev", "object")},
		Want:    []apiextensionsv1.CustomResourceDefinition{crdv("a.herald.dev", "object"), crdv("b.herald.dev", "object")},
		Components: []Component{
			{Name: "controller", Found: true, Workload: "Deployment herald-system/herald-controller", Namespace: "herald-system",
				ServiceAccount: "herald-controller", HeartbeatSecret: "herald-heartbeat-key", CreatesSecret: true, Desired: 2, Ready: 2},
			{Name: "agent", Found: true, Workload: "DaemonSet herald-system/herald-agent", Namespace: "herald-system",
				ServiceAccount: "herald-agent", HeartbeatSecret: "herald-heartbeat-key", Desired: 2, Ready: 2},
		},
		Cluster: report.Input{Now: t0, DefaultClass: true, LeaseNS: "herald-system", LeaseName: "herald-controller",
			Pools: []heraldv1.LoadBalancerIPPool{{ObjectMeta: metav1.ObjectMeta{Name: "first-pool"},
				Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "192.168.10.72/29"}}}}},
			Policies: []heraldv1.L2AnnouncementPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "default-policy"},
				Spec: heraldv1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth0$"}}}},
			Reports: []heraldv1.HeraldNode{hn("node1"), hn("node2")},
			Nodes:   []corev1.Node{node("node1"), node("node2")},
			Leases: []coordinationv1.Lease{{ObjectMeta: metav1.ObjectMeta{Name: "herald-controller", Namespace: "herald-system"},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &metav1.MicroTime{Time: t0}}}},
		},
	}
	for _, p := range kube.ControllerPermissions("herald-heartbeat-key", true) {
		in.Access = append(in.Access, Access{Component: "controller", Permission: p, Allowed: true})
	}
	for _, p := range kube.AgentPermissions("herald-heartbeat-key") {
		in.Access = append(in.Access, Access{Component: "agent", Permission: p, Allowed: true})
	}
	return in
}

func find(r Report, prefix string) (Check, bool) {
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c, true
		}
	}
	return Check{}, false
}

func TestRun(t *testing.T) {
	r := Run(healthy())
	if r.Failed != 0 || r.Warned != 0 {
		for _, c := range r.Checks {
			t.Logf("%s %s: %s", c.Result, c.Name, c.Message)
		}
		t.Fatalf("healthy: %d failed, %d warned", r.Failed, r.Warned)
	}
	if _, ok := find(r, "KubePrism"); ok {
		t.Errorf("KubePrism checked without the Talos preset")
	}

	for _, tc := range []struct {
		name   string
		mut    func(*Input)
		check  string // the check's name prefix
		result Result
		msg    string // in the message
		fix    string // in the fix
	}{
		{"old API server", func(in *Input) { in.Version = Version{Major: 1, Minor: 32, GitVersion: "v1.32.4"} },
			"API server version", Fail, "v1.32.4", "1.33 or later"},
		{"API server 1.33 with a suffix", func(in *Input) { in.Version = Version{Major: 1, Minor: 33, GitVersion: "v1.33.0-eks"} },
			"API server version", Pass, "v1.33.0-eks", ""},
		{"a CRD missing", func(in *Input) { in.CRDs = in.CRDs[:1] },
			"CRDs", Fail, "missing: b.herald.dev", "crds/"},
		{"a CRD of another version", func(in *Input) { in.CRDs[1] = crdv("b.herald.dev", "string") },
			"CRDs", Warn, "b.herald.dev", "never upgrades"},
		{"CRDs unreadable", func(in *Input) { in.CRDsUnreadable = "forbidden" },
			"CRDs", Warn, "forbidden", "customresourcedefinitions"},
		{"no agent DaemonSet", func(in *Input) { in.Components[1] = Component{Name: "agent", Namespace: "herald-system"} },
			"Herald agent", Fail, "no DaemonSet in namespace herald-system", "--namespace"},
		{"agents not ready", func(in *Input) { in.Components[1].Ready = 1 },
			"Herald agent", Fail, "1 of 2 Pods ready", "describe"},
		{"controller runs no Pod", func(in *Input) { in.Components[0].Desired, in.Components[0].Ready = 0, 0 },
			"Herald controller", Fail, "runs no Pod", "replicas"},
		{"agent lacks a verb", func(in *Input) {
			for i := range in.Access {
				if in.Access[i].Component == "agent" && in.Access[i].Permission.Resource == "heraldnodes" && in.Access[i].Permission.Subresource == "status" {
					in.Access[i].Allowed = false
				}
			}
		}, "RBAC agent", Fail, "may not patch heraldnodes/status.herald.dev", "helm upgrade"},
		{"a review failed", func(in *Input) { in.Access[0].Error = "forbidden" },
			"RBAC controller", Warn, "could not check", "subjectaccessreviews"},
		{"no leader", func(in *Input) { in.Cluster.Leases = nil },
			"controller leader", Fail, "no Lease herald-controller", "without a leader"},
		{"a selected node without an agent", func(in *Input) {
			in.Cluster.Reports = in.Cluster.Reports[:1]
		}, "an agent on every node", Fail, "node node2", "tolerations"},
		{"a regex that matches nothing", func(in *Input) { in.Cluster.Policies[0].Spec.Interfaces = []string{"^enp0s1$"} },
			"policies' interfaces", Fail, "no up interface of node node1 matches policy default-policy (^enp0s1$); it has eth0", "spec.interfaces"},
		{"a regex on a node the policy does not select", func(in *Input) {
			in.Cluster.Policies[0].Spec.Interfaces = []string{"^enp0s1$"}
			in.Cluster.Policies[0].Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
		}, "policies' interfaces", Pass, "", ""},
		{"control planes excluded", func(in *Input) {
			in.Cluster.Nodes[0].Labels[kube.ExcludeFromLBLabel] = ""
			in.Cluster.Reports[0].Status.ExcludedByLabel = true
		}, "exclude-from-external", Warn, "node1 carry it and announce nothing", "ignoreExcludeLabel"},
		{"every node excluded", func(in *Input) {
			for i := range in.Cluster.Nodes {
				in.Cluster.Nodes[i].Labels[kube.ExcludeFromLBLabel] = ""
				in.Cluster.Reports[i].Status.ExcludedByLabel = true
			}
		}, "exclude-from-external", Fail, "every node carries it", "ignoreExcludeLabel"},
		{"the label ignored", func(in *Input) { in.Cluster.Nodes[0].Labels[kube.ExcludeFromLBLabel] = "" },
			"exclude-from-external", Pass, "ignore it", ""},
		{"two keys", func(in *Input) { in.Cluster.Reports[1].Status.KeyFingerprints = []string{"77aa0012"} },
			"heartbeat keys", Fail, "node1 sign with 3f2a9c1e; node2 sign with 77aa0012", "same heartbeat Secret"},
		{"no key", func(in *Input) { in.Cluster.Reports[1].Status.KeyError = "Secret has no key-N entry" },
			"heartbeat keys", Fail, "node node2 has no key", ""},
		{"a key mismatch heard", func(in *Input) {
			in.Cluster.Reports[0].Status.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "rogue"}}
		}, "heartbeat keys", Fail, "node node1 hears rogue on eth0", ""},
		{"IPVS without strictARP", func(in *Input) {
			in.Cluster.Reports[0].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "interface kube-ipvs0 exists", KernelARPInterfaces: []string{"eth0"}}
		}, "data plane", Fail, "the kernels of node1 on eth0 answer ARP", "strictARP: true"},
		{"kube-proxy on every node", func(in *Input) {
			for i := range in.Cluster.Reports {
				in.Cluster.Reports[i].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "nftables table ip kube-proxy exists"}
			}
		}, "data plane", Pass, "node1, node2: another data plane (nftables table ip kube-proxy exists)", ""},
		{"mixed data planes", func(in *Input) {
			in.Cluster.Reports[0].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone}
		}, "data plane", Warn, "node1: none (--dataplane=none); node2: Herald's nftables table", "roll-out"},
		{"no pool", func(in *Input) { in.Cluster.Pools = nil },
			"pools", Warn, "no LoadBalancerIPPool", "herald import"},
		{"a pool in conflict", func(in *Input) {
			in.Cluster.Pools[0].Status.Conditions = []metav1.Condition{{Type: heraldv1.PoolConflictCondition, Status: metav1.ConditionTrue, Reason: "Overlap", Message: "overlaps pool old"}}
		}, "pools", Fail, "overlaps pool old", ""},
		{"pools inside the LAN", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = append(in.Cluster.Pools[0].Spec.Blocks, heraldv1.IPBlock{Start: "192.168.10.200", Stop: "192.168.10.210"},
				heraldv1.IPBlock{CIDR: "fd00:10::ff00/120"}, heraldv1.IPBlock{Start: "192.168.10.99"})
		}, "pools inside", Pass, "192.168.10.0/24, fd00:10::/64", ""},
		{"a pool in another subnet", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.20.0/28"}}
		}, "pools inside", Fail, "pool first-pool: 192.168.20.0/28", "LAN subnet"},
		{"a range that leaves the subnet", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{Start: "192.168.10.250", Stop: "192.168.11.5"}}
		}, "pools inside", Fail, "192.168.10.250-192.168.11.5", ""},
		{"a CIDR wider than the subnet", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.10.0/23"}}
		}, "pools inside", Fail, "192.168.10.0/23", ""},
		{"agents that report no subnets", func(in *Input) {
			for i := range in.Cluster.Reports {
				in.Cluster.Reports[i].Status.Interfaces[1].Addresses = nil
			}
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.20.0/28"}}
		}, "pools inside", Pass, "not checked", ""},
		{"gateways outside the pools", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = append(in.Cluster.Pools[0].Spec.Blocks, heraldv1.IPBlock{Start: "192.168.10.2", Stop: "192.168.10.9"},
				heraldv1.IPBlock{CIDR: "fd00:10::100/120"})
		}, "pools clear of the LAN's gateways", Pass, "(192.168.10.1, fd00:10::1)", ""},
		{"a pool holding the IPv4 gateway", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{CIDR: "192.168.10.0/28"}}
		}, "pools clear of the LAN's gateways", Fail, "pool first-pool holds 192.168.10.1 (the default gateway of node1, node2)", "split the block"},
		{"a range ending at the IPv6 gateway", func(in *Input) {
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{Start: "fd00:10::0", Stop: "fd00:10::1"}}
		}, "pools clear of the LAN's gateways", Fail, "holds fd00:10::1", ""},
		{"a single-address block on one node's gateway", func(in *Input) {
			in.Cluster.Reports[1].Status.Interfaces[1].Gateways = []string{"192.168.10.254"}
			in.Cluster.Pools[0].Spec.Blocks = []heraldv1.IPBlock{{Start: "192.168.10.254"}}
		}, "pools clear of the LAN's gateways", Fail, "holds 192.168.10.254 (the default gateway of node2)", ""},
		{"a gateway on an interface that is not the LAN", func(in *Input) {
			for i := range in.Cluster.Reports {
				in.Cluster.Reports[i].Status.Interfaces[1].Gateways = nil
				in.Cluster.Reports[i].Status.Interfaces[0].Gateways = []string{"192.168.10.73"}
			}
		}, "pools clear of the LAN's gateways", Pass, "not checked", ""},
		{"BGP sessions established", func(in *Input) {
			for i := range in.Cluster.Reports {
				in.Cluster.Reports[i].Status.BGP = &heraldv1.NodeBGP{Sessions: []heraldv1.BGPSession{{Peer: "tor", Address: "192.168.10.1", PeerASN: 64512, State: heraldv1.BGPSessionEstablished}}}
			}
		}, "BGP sessions", Pass, "2 sessions established", ""},
		{"a BGP session down", func(in *Input) {
			in.Cluster.Reports[1].Status.BGP = &heraldv1.NodeBGP{Sessions: []heraldv1.BGPSession{{Peer: "tor", Address: "192.168.10.1", PeerASN: 64512,
				State: heraldv1.BGPSessionActive, LastError: "notification-sent code 2(open) subcode 2(bad peer as)"}}}
		}, "BGP sessions", Fail, "node node2 with tor (192.168.10.1, AS 64512) is Active: notification-sent code 2(open) subcode 2(bad peer as)", "bad peer as"},
		{"Cilium L2 announcements", func(in *Input) {
			in.Peers = []PeerObjects{{Product: "Cilium", Kind: "CiliumL2AnnouncementPolicy", Names: []string{"policy1"}}}
		}, "other load balancers", Fail, "Cilium CiliumL2AnnouncementPolicy policy1", "herald import"},
		{"Cilium LB-IPAM pools only", func(in *Input) {
			in.Peers = []PeerObjects{{Product: "Cilium", Kind: "CiliumLoadBalancerIPPool", Names: []string{"blue"}}}
		}, "other load balancers", Warn, "CiliumLoadBalancerIPPool blue", "loadBalancerClass"},
		{"MetalLB", func(in *Input) {
			in.Peers = []PeerObjects{{Product: "MetalLB", Kind: "IPAddressPool", Names: []string{"metallb-system/first"}}}
		}, "other load balancers", Fail, "MetalLB IPAddressPool metallb-system/first", ""},
		{"Talos preset, agents ready", func(in *Input) { in.Components[1].KubePrism = true },
			"KubePrism", Pass, "ready", ""},
		{"Talos preset, agents not ready", func(in *Input) { in.Components[1].KubePrism, in.Components[1].Ready = true, 0 },
			"KubePrism", Fail, "0 of 2 Pods ready", "machine.features.kubePrism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := healthy()
			tc.mut(&in)
			r := Run(in)
			c, ok := find(r, tc.check)
			if !ok {
				t.Fatalf("no check %q", tc.check)
			}
			if c.Result != tc.result || !strings.Contains(c.Message, tc.msg) || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("%s: %s %q (fix %q), want %s with %q (fix with %q)", c.Name, c.Result, c.Message, c.Fix, tc.result, tc.msg, tc.fix)
			}
			if tc.result != Fail && r.Failed > 0 || tc.result == Fail && r.Failed == 0 {
				for _, c := range r.Checks {
					t.Logf("%s %s: %s", c.Result, c.Name, c.Message)
				}
				t.Errorf("%d checks failed", r.Failed)
			}
		})
	}
}

func TestFixOnlyWhenNotPassing(t *testing.T) {
	r := Run(healthy())
	for _, c := range r.Checks {
		if c.Result == Pass && c.Fix != "" {
			t.Errorf("%s passes with a fix: %q", c.Name, c.Fix)
		}
	}
}

func TestComponentElsewhere(t *testing.T) {
	in := healthy()
	in.Components[0] = Component{Name: "controller", Namespace: "kube-system", Elsewhere: []string{"herald-system"}}
	c, _ := find(Run(in), "Herald controller")
	if c.Result != Fail || !strings.Contains(c.Message, "runs in namespace herald-system") || c.Fix != "herald doctor --namespace herald-system" {
		t.Errorf("%+v", c)
	}
}
