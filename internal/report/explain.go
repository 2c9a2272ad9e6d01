package report

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
)

// ---- explain ----
//
// Explain follows one Service through the chain Herald applies to it —
// class, pools, address, policies, nodes, owner, endpoints — and says the
// decision at each step. Every decision is the one the controller and the
// agents make, computed by their own pure functions: kube.Serves for the
// class, ipam.FitPool for the pools, kube.PolicyView for the policies,
// announce.Planner for each node (from the node's HeraldNode report: its
// real interfaces, its exclude label as the agent honours it) and
// announce.Summarize for the address, so explain and Herald never disagree.

// Explain states.
const (
	// ExplainNotFound: no Service of that name in the namespace.
	ExplainNotFound = "notFound"
	// ExplainNotServed: Herald does not serve the Service (its type or
	// class).
	ExplainNotServed = "notServed"
	// ExplainPending: the Service has no address yet.
	ExplainPending = "pending"
	// ExplainUnannounced: it has addresses, but some node must answer for
	// one and none does (or two do: a key mismatch, another host).
	ExplainUnannounced = "unannounced"
)

// Explanation is herald explain: the chain for one Service.
type Explanation struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// State is announced, pending, unannounced, notServed or notFound.
	State string `json:"state"`
	// Class is step 1: does Herald serve the Service at all.
	Class ExplainClass `json:"class"`
	// Pools is step 2: each pool, whether it may serve the Service.
	Pools []ExplainPool `json:"pools"`
	// Allocation is the herald.dev/IPAllocated condition.
	Allocation ExplainCondition `json:"allocation"`
	// Addresses are status.loadBalancer.ingress, each with its pool,
	// owners, conflicts and the controller's summary of it.
	Addresses []ExplainAddress `json:"addresses"`
	// SharingKey is the Service's sharing key (herald.dev/sharing-key or
	// its Cilium/MetalLB forms), if any.
	SharingKey string `json:"sharingKey,omitempty"`
	// Policies is step 3: each L2AnnouncementPolicy, whether it selects
	// the Service.
	Policies []ExplainPolicy `json:"policies"`
	// Nodes is step 4: each node's verdict on each address (on the
	// Service itself while it has no address yet).
	Nodes []ExplainNode `json:"nodes"`
	// Announced is the herald.dev/Announced condition.
	Announced ExplainCondition `json:"announced"`
	// Endpoints is step 6: the endpoints behind the Service.
	Endpoints []ExplainEndpoint `json:"endpoints"`
	// DataPlane says who forwards the traffic, as far as Herald knows.
	DataPlane string    `json:"dataPlane"`
	Problems  []Problem `json:"problems"`
}

// ExplainClass is the class step.
type ExplainClass struct {
	Type string `json:"type"`
	// Class is spec.loadBalancerClass; empty for none.
	Class  string `json:"class,omitempty"`
	Served bool   `json:"served"`
	// Message says why Herald serves the Service, or why not.
	Message string `json:"message"`
}

// Pool verdicts beyond ipam's Fit values: Full (it may serve the
// Service, but has no free address), Invalid (a block or selector cannot
// be read).
const (
	PoolFull    = "Full"
	PoolInvalid = "Invalid"
)

// ExplainPool is one pool's verdict on the Service.
type ExplainPool struct {
	Name string `json:"name"`
	// Verdict is Serves, PinnedElsewhere, NotSelected, Conflict, Disabled,
	// NoFamily, InvalidRequest (ipam.Fit), Full or Invalid.
	Verdict string `json:"verdict"`
	Message string `json:"message"`
	// Holds are the Service's addresses from this pool.
	Holds []string `json:"holds,omitempty"`
}

// ExplainCondition is one of the controller's conditions on the Service.
type ExplainCondition struct {
	// Status is True, False, or empty when the condition is absent.
	Status  string `json:"status,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// ExplainAddress is one address of the Service.
type ExplainAddress struct {
	Address string `json:"address"`
	// Pool is the pool whose blocks hold the address.
	Pool string `json:"pool,omitempty"`
	// Owners are the nodes whose (not stale) reports say they answer for
	// the address.
	Owners []ExplainOwner `json:"owners"`
	// Conflicts are other hosts seen using the address.
	Conflicts []ExplainConflict `json:"conflicts,omitempty"`
	// Reason and Message are announce.Summarize's verdict on the address
	// from the same reports the controller reads (Announced, NoPolicy,
	// NoEligibleNode, NoMatchingInterface, NoLocalEndpoints, NoAgent,
	// KeyMismatch, AddressConflict, Pending, …).
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// ExplainOwner is a node answering for an address.
type ExplainOwner struct {
	Node       string   `json:"node"`
	Interfaces []string `json:"interfaces"`
	// MACs are the answering interfaces' MACs, as the node reports them.
	MACs  []string  `json:"macs,omitempty"`
	Since time.Time `json:"since"`
}

// ExplainConflict is another host seen using an address.
type ExplainConflict struct {
	MAC       string `json:"mac"`
	Node      string `json:"node"`
	Interface string `json:"interface"`
	// Phase is Probe (found before announcing: not announced) or
	// Announced (Herald defends it).
	Phase string `json:"phase"`
}

// Policy verdicts.
const (
	PolicySelects        = "Selects"
	PolicyNotSelected    = "NotSelected"
	PolicyInvalid        = "Invalid"
	PolicyNoLBAddresses  = "NoLoadBalancerIPs"
	nodeVerdictNoAgent   = string(announce.NoAgent)
	nodeVerdictNoKey     = string(announce.NoHeartbeatKey)
	nodeVerdictMismatch  = string(announce.KeyMismatch)
	placeholderAddrNotes = "(no address yet)"
)

// ExplainPolicy is one policy's verdict on the Service.
type ExplainPolicy struct {
	Name string `json:"name"`
	// Verdict is Selects, NotSelected, Invalid or NoLoadBalancerIPs.
	Verdict string `json:"verdict"`
	Message string `json:"message"`
}

// ExplainNode is one node's verdict on one address.
type ExplainNode struct {
	Node string `json:"node"`
	// Address is the address judged; "(no address yet)" while pending.
	Address  string `json:"address"`
	Eligible bool   `json:"eligible"`
	// Reason is the agent's (announce.Reason: Eligible, NodeNotSelected,
	// ExcludedByLabel, NoMatchingInterface, NoLocalEndpoints, NoPolicy,
	// SharedNotCovered), or NoAgent (no HeraldNode report),
	// NoHeartbeatKey, KeyMismatch (eligible, but it hears a peer on the
	// segment with another heartbeat key).
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Interfaces are those the address may be announced on (eligible).
	Interfaces []string `json:"interfaces,omitempty"`
}

// ExplainEndpoint is one endpoint behind the Service.
type ExplainEndpoint struct {
	Addresses []string `json:"addresses"`
	Node      string   `json:"node,omitempty"`
	Ready     bool     `json:"ready"`
}

// Explain follows Service namespace/name through Herald. in holds every
// kind (Services: at least those sharing its addresses; EndpointSlices: at
// least the Service's).
func Explain(in Input, namespace, name string) Explanation {
	e := Explanation{Namespace: namespace, Name: name, Pools: []ExplainPool{}, Addresses: []ExplainAddress{},
		Policies: []ExplainPolicy{}, Nodes: []ExplainNode{}, Endpoints: []ExplainEndpoint{}, Problems: []Problem{}}
	key := namespace + "/" + name
	var svc *corev1.Service
	for i := range in.Services {
		if in.Services[i].Namespace == namespace && in.Services[i].Name == name {
			svc = &in.Services[i]
		}
	}
	if svc == nil {
		e.State = ExplainNotFound
		e.Problems = append(e.Problems, Problem{Kind: "Service", Name: key, Reason: "NotFound", Message: "no Service " + name + " in namespace " + namespace})
		return e
	}

	// 1. Class.
	e.Class = explainClass(svc, in.DefaultClass)
	if !e.Class.Served {
		e.State = ExplainNotServed
		e.Problems = append(e.Problems, Problem{Kind: "Service", Name: key, Reason: "NotServed", Message: e.Class.Message})
		return e
	}

	// 2. Pools and addresses.
	req, reqErr := ipam.ParseRequest(svc.Annotations, svc.Spec.LoadBalancerIP)
	if reqErr == nil && req.Sharing != nil {
		e.SharingKey = req.Sharing.Key
	}
	var addrs []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			addrs = append(addrs, a.Unmap())
		}
	}
	e.Pools = explainPools(in.Pools, svc, req, reqErr, addrs)
	pools := poolBlocks(in.Pools)
	e.Allocation = condition(svc, kube.ConditionIPAllocated)
	e.Announced = condition(svc, kube.ConditionAnnounced)

	// 3. Policies.
	e.Policies = explainPolicies(in.Policies, svc)

	// 4. Nodes, 5. owners.
	ready := readyNodes(in.EndpointSlices)
	judged := addrs
	if len(judged) == 0 {
		judged = []netip.Addr{netip.IPv4Unspecified()}
	}
	idx := indexReports(in.Reports, in.Nodes)
	advertisers := map[netip.Addr][]announce.Advertiser{}
	notReady := notReadyNodes(in.Nodes)
	for _, hn := range in.Reports {
		kube.IndexBGPAdvertisers(advertisers, hn.Name, hn.Status.BGP, notReady[hn.Name])
	}
	for _, a := range judged {
		verdicts := explainNodes(in, svc, a, ready)
		for _, v := range verdicts {
			n := ExplainNode{Node: v.Node, Address: a.String(), Reason: string(v.Status.Reason), Message: v.Status.Message, Interfaces: v.Status.Interfaces}
			switch {
			case v.NoAgent:
				if v.Status.Reason == announce.Eligible || v.Status.Reason == announce.NoMatchingInterface {
					n.Reason, n.Interfaces = nodeVerdictNoAgent, nil
					n.Message = fmt.Sprintf("no Herald agent reports from node %s (no HeraldNode %s: is the DaemonSet scheduled there?)", v.Node, v.Node)
				}
			case v.Status.Reason == announce.Eligible && v.KeyError != "":
				n.Reason = nodeVerdictNoKey
				n.Message = fmt.Sprintf("node %s may announce it but its agent has no heartbeat key: %s", v.Node, v.KeyError)
			case v.Status.Reason == announce.Eligible:
				if mm := mismatchesOn(in.Reports, v.Node, v.Status.Interfaces); mm != "" {
					n.Reason, n.Message = nodeVerdictMismatch, mm
					e.Problems = append(e.Problems, Problem{Kind: "Node", Name: v.Node, Reason: n.Reason, Message: mm})
				} else {
					n.Eligible = true
				}
			}
			if len(addrs) == 0 {
				n.Address = placeholderAddrNotes
			}
			e.Nodes = append(e.Nodes, n)
		}
		if len(addrs) == 0 {
			break
		}
		ea := ExplainAddress{Address: a.String(), Pool: poolOf(pools, a), Owners: []ExplainOwner{}}
		var answerers []announce.Answerer
		for _, x := range idx.answerers[a] {
			answerers = append(answerers, announce.Answerer{Node: x.node, Interfaces: x.interfaces, Since: x.since, Peers: x.peers, Mismatched: x.mismatched, NotReady: x.notReady})
		}
		for _, x := range idx.live(a) {
			ea.Owners = append(ea.Owners, ExplainOwner{Node: x.node, Interfaces: x.interfaces, MACs: macsOf(in.Reports, x.node, x.interfaces), Since: x.since.UTC()})
		}
		var conflicts []announce.AddrConflict
		for _, hn := range in.Reports {
			for _, c := range hn.Status.Conflicts {
				if ca, err := netip.ParseAddr(c.Address); err == nil && ca.Unmap() == a {
					ea.Conflicts = append(ea.Conflicts, ExplainConflict{MAC: c.MAC, Node: hn.Name, Interface: c.Interface, Phase: string(c.Phase)})
					conflicts = append(conflicts, announce.AddrConflict{Node: hn.Name, MAC: c.MAC, Interface: c.Interface, BeforeAnnounce: c.Phase == heraldv1.ConflictProbe})
				}
			}
		}
		sum := announce.WithBGP(announce.WithKernelARP(announce.Summarize(a, answerers, conflicts, verdicts, nil), kernelARPNodes(in)), advertisers[a])
		ea.Reason, ea.Message = string(sum.Reason), sum.Message
		e.Addresses = append(e.Addresses, ea)
		if !sum.Answered || sum.Reason != announce.Announced {
			e.Problems = append(e.Problems, Problem{Kind: "Address", Name: a.String(), Reason: ea.Reason, Message: ea.Message})
		}
	}
	sort.SliceStable(e.Nodes, func(i, j int) bool { return e.Nodes[i].Node < e.Nodes[j].Node })

	// 6. Endpoints.
	e.Endpoints = endpointsOf(in.EndpointSlices, namespace, name)
	e.DataPlane = dataPlaneOf(in.Reports, e.Addresses)
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		e.DataPlane += "; externalTrafficPolicy Local: only to the endpoints on that node, so only nodes with a ready endpoint may announce"
	}

	// State.
	allocated := len(addrs) > 0 && (e.Allocation.Status == "" || e.Allocation.Status == string(metav1.ConditionTrue))
	switch {
	case !allocated:
		e.State = ExplainPending
		reason, msg := e.Allocation.Reason, e.Allocation.Message
		if e.Allocation.Status == "" {
			reason, msg = ReasonNoStatus, "the Service has no address and the controller has written no herald.dev/IPAllocated condition (is it running? see herald status)"
		}
		e.Problems = append(e.Problems, Problem{Kind: "Service", Name: key, Reason: reason, Message: msg})
	case len(e.Problems) > 0:
		e.State = StateAnnounced // answered, with a key mismatch or a conflict
		for _, a := range e.Addresses {
			if len(a.Owners) == 0 {
				e.State = ExplainUnannounced
			}
		}
	default:
		e.State = StateAnnounced
	}
	sortProblems(e.Problems)
	return e
}

func explainClass(svc *corev1.Service, defaultClass bool) ExplainClass {
	c := ExplainClass{Type: string(svc.Spec.Type), Served: kube.Serves(svc, defaultClass)}
	if svc.Spec.LoadBalancerClass != nil {
		c.Class = *svc.Spec.LoadBalancerClass
	}
	switch {
	case svc.Spec.Type != corev1.ServiceTypeLoadBalancer:
		c.Message = fmt.Sprintf("type %s, not LoadBalancer: Herald serves only LoadBalancer Services", orNone(c.Type, "ClusterIP"))
	case c.Class == "" && !defaultClass:
		c.Message = "no loadBalancerClass and Herald runs with --default-class=false: set spec.loadBalancerClass: " + kube.Class
	case c.Class == "":
		c.Message = "LoadBalancer without a loadBalancerClass: Herald's (the default class)"
	case c.Served:
		c.Message = "loadBalancerClass " + kube.Class + ": Herald's"
	default:
		c.Message = fmt.Sprintf("loadBalancerClass %s is another load balancer's (Herald's is %s)", c.Class, kube.Class)
	}
	return c
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func condition(svc *corev1.Service, t string) ExplainCondition {
	c := meta.FindStatusCondition(svc.Status.Conditions, t)
	if c == nil {
		return ExplainCondition{}
	}
	return ExplainCondition{Status: string(c.Status), Reason: c.Reason, Message: c.Message}
}

func explainPools(pools []heraldv1.LoadBalancerIPPool, svc *corev1.Service, req ipam.Request, reqErr error, addrs []netip.Addr) []ExplainPool {
	out := []ExplainPool{}
	view := kube.AllocatorService(svc, req)
	for i := range pools {
		p := &pools[i]
		ep := ExplainPool{Name: p.Name}
		pv := ipam.Pool{Name: p.Name, Disabled: p.Spec.Disabled}
		var bad string
		for j, b := range p.Spec.Blocks {
			blk, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, p.Spec.AllowFirstLastIPs)
			if err != nil {
				bad = fmt.Sprintf("spec.blocks[%d]: %v", j, err)
				break
			}
			pv.Blocks = append(pv.Blocks, blk)
		}
		if p.Spec.ServiceSelector != nil && bad == "" {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.ServiceSelector)
			if err != nil {
				bad = "spec.serviceSelector: " + err.Error()
			} else {
				pv.Selector = kube.LabelSelector{Selector: sel}
			}
		}
		for _, a := range addrs {
			if slices.ContainsFunc(pv.Blocks, func(b ipam.Block) bool { return b.Contains(a) }) {
				ep.Holds = append(ep.Holds, a.String())
			}
		}
		var conflict ipam.ConflictReason
		if c := meta.FindStatusCondition(p.Status.Conditions, heraldv1.PoolConflictCondition); c != nil && c.Status == metav1.ConditionTrue {
			conflict = ipam.ConflictReason(c.Reason)
		}
		switch {
		case bad != "":
			ep.Verdict, ep.Message = PoolInvalid, bad
		case reqErr != nil:
			ep.Verdict, ep.Message = string(ipam.FitInvalidRequest), reqErr.Error()
		default:
			fit, msg := ipam.FitPool(pv, conflict, view)
			ep.Verdict, ep.Message = string(fit), msg
			if fit == ipam.FitConflict {
				if c := meta.FindStatusCondition(p.Status.Conditions, heraldv1.PoolConflictCondition); c != nil {
					ep.Message += ": " + c.Message
				}
			}
			if fit == ipam.FitOK && p.Status.IPsAvailable == "0" && len(ep.Holds) == 0 {
				ep.Verdict = PoolFull
				ep.Message = fmt.Sprintf("pool %q may serve the Service but has no free address (%s of %s used)", p.Name, p.Status.IPsUsed, p.Status.IPsTotal)
			}
		}
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func explainPolicies(policies []heraldv1.L2AnnouncementPolicy, svc *corev1.Service) []ExplainPolicy {
	out := []ExplainPolicy{}
	set := labels.Set(kube.ServiceLabels(svc))
	for i := range policies {
		p := &policies[i]
		ep := ExplainPolicy{Name: p.Name}
		view, err := kube.PolicyView(p, nil)
		valid := meta.FindStatusCondition(p.Status.Conditions, heraldv1.PolicyValidCondition)
		switch {
		case err != nil:
			ep.Verdict, ep.Message = PolicyInvalid, "the policy cannot be used and selects nothing: "+err.Error()
		case valid != nil && valid.Status == metav1.ConditionFalse:
			ep.Verdict, ep.Message = PolicyInvalid, fmt.Sprintf("condition Valid is False (%s): %s", valid.Reason, valid.Message)
		case !view.LoadBalancerIPs:
			ep.Verdict, ep.Message = PolicyNoLBAddresses, "loadBalancerIPs: false: the policy announces no load-balancer address"
		case view.Services != nil && !view.Services.Matches(set):
			ep.Verdict, ep.Message = PolicyNotSelected, fmt.Sprintf("serviceSelector %s does not select the Service", metav1.FormatLabelSelector(p.Spec.ServiceSelector))
		default:
			ep.Verdict = PolicySelects
			ep.Message = "selects the Service (no serviceSelector)"
			if p.Spec.ServiceSelector != nil {
				ep.Message = "serviceSelector " + metav1.FormatLabelSelector(p.Spec.ServiceSelector) + " selects the Service"
			}
		}
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// readyNodes maps namespace/service to the nodes with a ready endpoint of
// it, as the controller reads EndpointSlices.
func readyNodes(slices []discoveryv1.EndpointSlice) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, s := range slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := s.Namespace + "/" + svc
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				if out[k] == nil {
					out[k] = map[string]bool{}
				}
				out[k][*ep.NodeName] = true
			}
		}
	}
	return out
}

// explainNodes is every node's verdict on addr, as the controller computes
// it (controller.verdictInput.verdicts): the agent's Planner on the
// interfaces and exclude label of the node's HeraldNode report, with the
// Services sharing addr.
func explainNodes(in Input, svc *corev1.Service, addr netip.Addr, ready map[string]map[string]bool) []announce.NodeVerdict {
	reports := map[string]*heraldv1.HeraldNode{}
	for i := range in.Reports {
		reports[in.Reports[i].Name] = &in.Reports[i]
	}
	// The Services using addr: svc, and those sharing it.
	users := []*corev1.Service{svc}
	for i := range in.Services {
		o := &in.Services[i]
		if o == svc || !kube.Serves(o, in.DefaultClass) {
			continue
		}
		if slices.ContainsFunc(o.Status.LoadBalancer.Ingress, func(ing corev1.LoadBalancerIngress) bool {
			a, err := netip.ParseAddr(ing.IP)
			return err == nil && a.Unmap() == addr
		}) {
			users = append(users, o)
		}
	}
	nodes := slices.Clone(in.Nodes)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	out := make([]announce.NodeVerdict, 0, len(nodes))
	for i := range nodes {
		node := &nodes[i]
		var report *heraldv1.HeraldNodeStatus
		var excluded bool
		if hn := reports[node.Name]; hn != nil {
			report, excluded = &hn.Status, hn.Status.ExcludedByLabel
		} else {
			// No agent: the Node's own label still tells.
			_, excluded = node.Labels[kube.ExcludeFromLBLabel]
		}
		var services []announce.Service
		for _, u := range users {
			s, _ := kube.AnnounceService(u, in.DefaultClass, ready[u.Namespace+"/"+u.Name][node.Name])
			if u == svc && len(s.LoadBalancerIPs) == 0 {
				s.LoadBalancerIPs = []netip.Addr{addr} // pending: judge as if it had one
			}
			services = append(services, s)
		}
		v := kube.NodeVerdict(addr, node, report, excluded, in.Policies, services)
		out = append(out, v)
	}
	return out
}

// mismatchesOn describes the peers node hears with another heartbeat key
// on ifaces, or "".
func mismatchesOn(reports []heraldv1.HeraldNode, node string, ifaces []string) string {
	for _, hn := range reports {
		if hn.Name != node {
			continue
		}
		var parts []string
		for _, s := range hn.Status.Segments {
			if !slices.Contains(ifaces, s.Interface) {
				continue
			}
			for _, p := range s.KeyMismatches {
				parts = append(parts, fmt.Sprintf("node %s on %s (keys %s, ours %s)", p.Node, s.Interface, joinOr(p.KeyFingerprints, "unknown"), joinOr(hn.Status.KeyFingerprints, "none")))
			}
		}
		if len(parts) > 0 {
			return fmt.Sprintf("node %s is eligible but hears %s with another heartbeat key: both may answer; make every agent use the same heartbeat Secret",
				node, strings.Join(parts, ", "))
		}
	}
	return ""
}

func macsOf(reports []heraldv1.HeraldNode, node string, ifaces []string) []string {
	var out []string
	for _, hn := range reports {
		if hn.Name != node {
			continue
		}
		for _, i := range hn.Status.Interfaces {
			if slices.Contains(ifaces, i.Name) && i.MAC != "" {
				out = append(out, i.MAC)
			}
		}
	}
	return out
}

func endpointsOf(eps []discoveryv1.EndpointSlice, namespace, name string) []ExplainEndpoint {
	out := []ExplainEndpoint{}
	for _, s := range eps {
		if s.Namespace != namespace || s.Labels[discoveryv1.LabelServiceName] != name {
			continue
		}
		for _, ep := range s.Endpoints {
			e := ExplainEndpoint{Addresses: slices.Clone(ep.Addresses), Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
			if ep.NodeName != nil {
				e.Node = *ep.NodeName
			}
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return strings.Join(out[i].Addresses, ",") < strings.Join(out[j].Addresses, ",")
	})
	return out
}

// WriteExplain prints herald explain as indented text.
func WriteExplain(w io.Writer, e Explanation, now time.Time) error {
	var b strings.Builder
	p := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	p(0, "Service %s/%s: %s", e.Namespace, e.Name, e.State)
	if e.State == ExplainNotFound {
		_, err := io.WriteString(w, b.String())
		return err
	}
	p(0, "1. Class: %s", e.Class.Message)
	if !e.Class.Served {
		_, err := io.WriteString(w, b.String())
		return err
	}
	p(0, "2. Pools:")
	if len(e.Pools) == 0 {
		p(1, "no LoadBalancerIPPool exists")
	}
	for _, pl := range e.Pools {
		mark := "-"
		if pl.Verdict == string(ipam.FitOK) {
			mark = "+"
		}
		p(1, "%s %s: %s: %s", mark, pl.Name, pl.Verdict, pl.Message)
	}
	if len(e.Addresses) == 0 {
		p(1, "address: none: IPAllocated %s", conditionText(e.Allocation))
	}
	for _, a := range e.Addresses {
		if a.Pool == "" {
			p(1, "address: %s, in no pool's blocks", a.Address)
		} else {
			p(1, "address: %s from pool %s", a.Address, a.Pool)
		}
	}
	if e.SharingKey != "" {
		p(1, "sharing key: %s", e.SharingKey)
	}
	p(0, "3. Policies:")
	if len(e.Policies) == 0 {
		p(1, "no L2AnnouncementPolicy exists")
	}
	for _, pol := range e.Policies {
		mark := "-"
		if pol.Verdict == PolicySelects {
			mark = "+"
		}
		p(1, "%s %s: %s: %s", mark, pol.Name, pol.Verdict, pol.Message)
	}
	p(0, "4. Nodes:")
	for _, n := range e.Nodes {
		mark := "-"
		if n.Eligible {
			mark = "+"
		}
		name := n.Node
		if len(e.Addresses) > 1 {
			name += " (" + n.Address + ")"
		}
		if n.Eligible {
			p(1, "%s %s: %s", mark, name, n.Message)
		} else {
			p(1, "%s %s: %s: %s", mark, name, n.Reason, n.Message)
		}
	}
	p(0, "5. Owner:")
	for _, a := range e.Addresses {
		if len(a.Owners) == 0 {
			p(1, "%s: nobody answers: %s: %s", a.Address, a.Reason, a.Message)
		}
		for _, o := range a.Owners {
			p(1, "%s: node %s on %s, MAC %s, since %s (%s ago)", a.Address, o.Node, strings.Join(o.Interfaces, ","),
				orNone(strings.Join(o.MACs, ","), "not reported"), o.Since.Format(time.RFC3339), age(now, o.Since))
		}
		for _, c := range a.Conflicts {
			p(1, "%s: another host, MAC %s, seen by node %s on %s (%s)", a.Address, c.MAC, c.Node, c.Interface, c.Phase)
		}
	}
	p(1, "Announced %s", conditionText(e.Announced))
	p(0, "6. Endpoints:")
	if len(e.Endpoints) == 0 {
		p(1, "none")
	}
	for _, ep := range e.Endpoints {
		st := "ready"
		if !ep.Ready {
			st = "not ready"
		}
		p(1, "%s on node %s (%s)", strings.Join(ep.Addresses, ","), orNone(ep.Node, "?"), st)
	}
	p(1, "data plane: %s", e.DataPlane)
	_, err := io.WriteString(w, b.String())
	return err
}

func conditionText(c ExplainCondition) string {
	if c.Status == "" {
		return "not written by the controller"
	}
	return fmt.Sprintf("%s (%s): %s", c.Status, c.Reason, c.Message)
}

// kernelARPNodes are the Ready nodes whose agents report that their
// kernels answer ARP for kube-ipvs0's addresses (announce.WithKernelARP).
func kernelARPNodes(in Input) []string {
	notReady := notReadyNodes(in.Nodes)
	var out []string
	for _, hn := range in.Reports {
		if dp := hn.Status.DataPlane; dp != nil && len(dp.KernelARPInterfaces) > 0 && !notReady[hn.Name] {
			out = append(out, hn.Name)
		}
	}
	return out
}

// dataPlaneOf says who forwards the traffic on the nodes that answer for
// the addresses, from what their agents report.
func dataPlaneOf(reports []heraldv1.HeraldNode, addrs []ExplainAddress) string {
	byNode := map[string]*heraldv1.NodeDataPlane{}
	for i := range reports {
		byNode[reports[i].Name] = reports[i].Status.DataPlane
	}
	var owners []string
	for _, a := range addrs {
		for _, o := range a.Owners {
			owners = appendNew(owners, o.Node)
		}
	}
	switch {
	case len(addrs) == 0:
		return "the Service has no address yet, so no node receives its traffic"
	case len(owners) == 0:
		return "nobody answers for the address, so no node receives its traffic"
	}
	var parts []string
	for _, n := range owners {
		dp := byNode[n]
		switch {
		case dp == nil:
			parts = append(parts, fmt.Sprintf("node %s: its agent does not report its data plane (an older agent); "+
				"the cluster's Service proxy there (kube-proxy, Cilium, …) forwards to the endpoints below", n))
		case dp.Mode == heraldv1.DataPlaneNFTables:
			parts = append(parts, fmt.Sprintf("node %s: Herald's nftables table (inet herald) forwards to the endpoints below", n))
		case dp.Evidence != "":
			parts = append(parts, fmt.Sprintf("node %s: another data plane forwards (%s); Herald only announces", n, dp.Evidence))
		default:
			parts = append(parts, fmt.Sprintf("node %s: Herald only announces (--dataplane=none); the cluster's Service proxy there must forward", n))
		}
	}
	return strings.Join(parts, "; ")
}
