// Package announce decides, for one node, which load-balancer addresses the
// node may announce and on which of its interfaces — and, when it may not,
// exactly why. It is the agent's policy logic, kept pure (no Kubernetes, no
// sockets) so every rule is table-tested: the agent reduces
// L2AnnouncementPolicies, Services, EndpointSlices and the node's links to
// the small views below and acts on the Plan.
//
// An address is eligible on an interface of this node when the node is not
// excluded (node.kubernetes.io/exclude-from-external-load-balancers, unless
// the agent ignores that label) and one policy
//   - selects this node (nodeSelector),
//   - selects every Service that uses the address (serviceSelector), and
//     announces that kind of address (loadBalancerIPs / externalIPs),
//   - matches the interface by name (interfaces regexes; none means the
//     node's LAN: every up, broadcast-capable, non-enslaved interface that
//     carries one of the Node's own addresses — never a CNI bridge, a Pod's
//     veth or a tunnel, which carry no node address), and the interface is
//     up,
//
// and, for every Service using the address with externalTrafficPolicy
// Local, this node has a ready endpoint. Which eligible node actually
// answers is decided elsewhere (internal/placement).
package announce

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Node is the view of the deciding node.
type Node struct {
	// Name is the node's name.
	Name string
	// ExcludedByLabel: the Node carries
	// node.kubernetes.io/exclude-from-external-load-balancers and the agent
	// honours it, so the node announces nothing.
	ExcludedByLabel bool
}

// Interface is the view of one network interface of the node.
type Interface struct {
	Name      string
	Up        bool
	Broadcast bool // can carry ARP (not a point-to-point or NOARP link)
	Loopback  bool
	// Enslaved is true for a port of a bridge or bond: the master
	// interface, not the port, owns the addresses on that segment.
	Enslaved bool
	// LAN is true when the interface carries one of the Node's own
	// addresses (its InternalIP or ExternalIP): the segment the node is
	// reached on, and where a policy without interfaces announces.
	LAN bool
}

// usableByDefault reports whether an interface qualifies for a policy that
// lists no interface regexes: the node's LAN only. A Pod bridge (cni0), a
// Pod's veth, cilium_host or a tunnel can be up and broadcast-capable, but
// no client reaches the node there, and announcing on them would make the
// node alone on a private segment claim every address.
func (i Interface) usableByDefault() bool {
	return i.Up && i.Broadcast && !i.Loopback && !i.Enslaved && i.LAN
}

// Selector matches a Service's labels; nil matches every Service.
type Selector interface {
	Matches(labels map[string]string) bool
}

// Policy is the view of an L2AnnouncementPolicy.
type Policy struct {
	Name string
	// Interfaces are the compiled interface regexes, OR-ed; empty means
	// every up, broadcast-capable, non-enslaved, non-loopback interface.
	Interfaces []*regexp.Regexp
	// SelectsNode is the policy's nodeSelector evaluated on this node.
	SelectsNode bool
	// Services picks the Services announced; nil selects all.
	Services        Selector
	LoadBalancerIPs bool
	ExternalIPs     bool
}

// Service is the view of a Service whose addresses may be announced.
type Service struct {
	Key string
	// Labels include io.kubernetes.service.namespace and .name.
	Labels          map[string]string
	LoadBalancerIPs []netip.Addr
	ExternalIPs     []netip.Addr
	// TrafficPolicyLocal is externalTrafficPolicy: Local.
	TrafficPolicyLocal bool
	// LocalReadyEndpoint is true when this node runs a ready endpoint of
	// the Service (only consulted for TrafficPolicyLocal).
	LocalReadyEndpoint bool
}

// Reason says why a Service's address is not eligible on this node. The
// values are reasons of the Service condition herald.dev/Announced.
type Reason string

// Reasons an address is not eligible on this node.
const (
	// Eligible: the address may be announced here.
	Eligible Reason = "Eligible"
	// NoPolicy: no policy selects the Service (for that kind of address).
	NoPolicy Reason = "NoPolicy"
	// NodeNotSelected: policies select the Service, none selects this node.
	NodeNotSelected Reason = "NodeNotSelected"
	// NoMatchingInterface: a policy selects the Service and this node, but
	// no up interface of the node matches it.
	NoMatchingInterface Reason = "NoMatchingInterface"
	// NoLocalEndpoints: externalTrafficPolicy Local and no ready endpoint
	// on this node.
	NoLocalEndpoints Reason = "NoLocalEndpoints"
	// ExcludedByLabel: the node carries
	// node.kubernetes.io/exclude-from-external-load-balancers.
	ExcludedByLabel Reason = "ExcludedByLabel"
	// SharedNotCovered: the address is shared with a Service that no
	// policy announcing here selects.
	SharedNotCovered Reason = "SharedNotCovered"
)

// AddrStatus is this node's verdict on one address.
type AddrStatus struct {
	Addr netip.Addr
	// Services using the address, sorted.
	Services []string
	Reason   Reason
	// Message explains the reason for a human, naming the node's
	// interfaces and the policies involved.
	Message string
	// Interfaces the address may be announced on (Reason Eligible only),
	// LAN interfaces first, then by name.
	Interfaces []string
}

// PolicyProblem is a per-node problem with a policy, meant for an Event on
// the policy: it selects this node but matches none of its interfaces.
type PolicyProblem struct {
	Policy  string
	Message string
}

// Plan is what this node may announce.
type Plan struct {
	// Eligible maps an interface name to the addresses this node may
	// announce on it, sorted.
	Eligible map[string][]netip.Addr
	// Addrs has one status per address of any Service, sorted by address.
	Addrs []AddrStatus
	// Problems lists policies that select this node but match none of its
	// up interfaces, sorted by policy name.
	Problems []PolicyProblem
}

// use is one Service using an address, as an LB IP or an external IP.
type use struct {
	svc      *Service
	external bool
}

// ExcludeLabelMessage explains ExcludedByLabel for a node: which label,
// who sets it, and how to announce from the node anyway.
func ExcludeLabelMessage(node string) string {
	return fmt.Sprintf("node %s carries node.kubernetes.io/exclude-from-external-load-balancers "+
		"(Talos 1.8 and later set it on every control-plane node); remove the label, or run the agents with "+
		"--ignore-exclude-label (chart value agent.ignoreExcludeLabel) to announce from it anyway", node)
}

// Planner decides, for one node with its interfaces and the policies,
// one address at a time: an agent re-decides only the addresses a change
// concerns (a Service, its endpoints) instead of every address of the
// cluster, and rebuilds the Planner only when the node, its links or the
// policies change. The zero value is not usable; use NewPlanner.
type Planner struct {
	node     Node
	ifaces   []Interface
	policies []Policy
	// matched are the interfaces each node-selecting policy matches.
	matched  [][]string
	problems []PolicyProblem
	// Messages makes Decide explain every verdict for a human; the agent,
	// which acts on reasons only, leaves it off and formats nothing per
	// address.
	Messages bool
}

// NewPlanner prepares the decisions of node.
func NewPlanner(n Node, ifaces []Interface, policies []Policy) *Planner {
	p := &Planner{node: n, ifaces: ifaces, policies: policies, matched: make([][]string, len(policies)), Messages: true}
	for i, pol := range policies {
		if !pol.SelectsNode {
			continue
		}
		p.matched[i] = matchInterfaces(pol, ifaces)
		if len(p.matched[i]) == 0 {
			p.problems = append(p.problems, PolicyProblem{
				Policy:  pol.Name,
				Message: fmt.Sprintf("no up interface of node %s matches %s; it has %s", n.Name, describePatterns(pol), describeInterfaces(ifaces)),
			})
		}
	}
	sort.Slice(p.problems, func(a, b int) bool { return p.problems[a].Policy < p.problems[b].Policy })
	return p
}

// Problems lists the policies that select the node but match none of its
// up interfaces, sorted by policy name.
func (p *Planner) Problems() []PolicyProblem { return p.problems }

// Decide is the node's verdict on addr, used by users (the Services whose
// load-balancer or external addresses include it; others are ignored).
func (p *Planner) Decide(addr netip.Addr, users []Service) AddrStatus {
	var us []use
	for i := range users {
		s := &users[i]
		if slices.Contains(s.LoadBalancerIPs, addr) {
			us = append(us, use{svc: s})
		}
		if slices.Contains(s.ExternalIPs, addr) {
			us = append(us, use{svc: s, external: true})
		}
	}
	return p.decide(addr, us)
}

func (p *Planner) decide(addr netip.Addr, us []use) AddrStatus {
	if p.node.ExcludedByLabel {
		st := AddrStatus{Addr: addr, Services: serviceKeys(us), Reason: ExcludedByLabel}
		if p.Messages {
			st.Message = ExcludeLabelMessage(p.node.Name)
		}
		return st
	}
	return decide(p.node.Name, addr, us, p.policies, p.matched, p.ifaces, p.Messages)
}

// Compute returns the plan for node, given its interfaces, the policies
// and the Services.
func Compute(n Node, ifaces []Interface, policies []Policy, services []Service) Plan {
	planner := NewPlanner(n, ifaces, policies)
	plan := Plan{Eligible: map[string][]netip.Addr{}, Problems: planner.Problems()}
	uses := map[netip.Addr][]use{}
	for i := range services {
		s := &services[i]
		for _, a := range dedupe(s.LoadBalancerIPs) {
			uses[a] = append(uses[a], use{svc: s})
		}
		for _, a := range dedupe(s.ExternalIPs) {
			uses[a] = append(uses[a], use{svc: s, external: true})
		}
	}
	addrs := make([]netip.Addr, 0, len(uses))
	for a := range uses {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		st := planner.decide(a, uses[a])
		if st.Reason == Eligible {
			for _, name := range st.Interfaces {
				plan.Eligible[name] = append(plan.Eligible[name], a)
			}
		}
		plan.Addrs = append(plan.Addrs, st)
	}
	return plan
}

// decide is the verdict for one address used by us.
func decide(node string, addr netip.Addr, us []use, policies []Policy, matched [][]string, ifaces []Interface, messages bool) AddrStatus {
	st := AddrStatus{Addr: addr, Services: serviceKeys(us)}

	// Local traffic policy: every Local user needs an endpoint here.
	for _, u := range us {
		if u.svc.TrafficPolicyLocal && !u.svc.LocalReadyEndpoint {
			st.Reason = NoLocalEndpoints
			if messages {
				st.Message = fmt.Sprintf("%s has externalTrafficPolicy Local and no ready endpoint on node %s", u.svc.Key, node)
			}
			return st
		}
	}

	// Policies that select every user of the address.
	var covering []int
	selectsSome := false
	for i, p := range policies {
		all := true
		for _, u := range us {
			if selects(p, u) {
				selectsSome = true
			} else {
				all = false
			}
		}
		if !all {
			continue
		}
		if p.SelectsNode {
			covering = append(covering, i)
		}
	}
	if len(covering) == 0 {
		switch {
		case !selectsSome:
			st.Reason = NoPolicy
			if messages {
				st.Message = fmt.Sprintf("no L2AnnouncementPolicy selects %s", strings.Join(st.Services, ", "))
			}
		case len(us) > 1 && !coveredAnywhere(us, policies):
			st.Reason = SharedNotCovered
			if messages {
				st.Message = fmt.Sprintf("%s is shared by %s and no single L2AnnouncementPolicy selects all of them", addr, strings.Join(st.Services, ", "))
			}
		default:
			st.Reason = NodeNotSelected
			if messages {
				st.Message = fmt.Sprintf("the L2AnnouncementPolicies selecting %s do not select node %s", strings.Join(st.Services, ", "), node)
			}
		}
		return st
	}
	var names []string
	var patterns []string
	for _, i := range covering {
		names = append(names, matched[i]...)
		patterns = append(patterns, describePatterns(policies[i]))
	}
	names = lanFirst(names, ifaces)
	if len(names) == 0 {
		st.Reason = NoMatchingInterface
		if messages {
			st.Message = fmt.Sprintf("no up interface of node %s matches %s; it has %s", node, strings.Join(patterns, " or "), describeInterfaces(ifaces))
		}
		return st
	}
	st.Reason = Eligible
	st.Interfaces = names
	if messages {
		st.Message = fmt.Sprintf("eligible on node %s on %s", node, strings.Join(names, ", "))
	}
	return st
}

// serviceKeys returns the sorted, distinct keys of the Services in us.
func serviceKeys(us []use) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.svc.Key)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// coveredAnywhere reports whether some policy, whatever its node selector,
// selects every user of a shared address.
func coveredAnywhere(us []use, policies []Policy) bool {
	for _, p := range policies {
		all := true
		for _, u := range us {
			if !selects(p, u) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// selects reports whether p announces u's kind of address for u's Service.
func selects(p Policy, u use) bool {
	if u.external && !p.ExternalIPs || !u.external && !p.LoadBalancerIPs {
		return false
	}
	return p.Services == nil || p.Services.Matches(u.svc.Labels)
}

// matchInterfaces returns the names of the up interfaces p matches, sorted.
func matchInterfaces(p Policy, ifaces []Interface) []string {
	var out []string
	for _, i := range ifaces {
		if len(p.Interfaces) == 0 {
			if i.usableByDefault() {
				out = append(out, i.Name)
			}
			continue
		}
		if !i.Up || i.Loopback {
			continue
		}
		for _, re := range p.Interfaces {
			if re.MatchString(i.Name) {
				out = append(out, i.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// lanFirst sorts and deduplicates interface names, LAN interfaces first.
func lanFirst(names []string, ifaces []Interface) []string {
	lan := map[string]bool{}
	for _, i := range ifaces {
		lan[i.Name] = i.LAN
	}
	sort.Strings(names)
	names = slices.Compact(names)
	sort.SliceStable(names, func(a, b int) bool { return lan[names[a]] && !lan[names[b]] })
	return names
}

// describePatterns renders a policy's interface patterns for a message.
func describePatterns(p Policy) string {
	if len(p.Interfaces) == 0 {
		return fmt.Sprintf("policy %s (no interfaces listed: the node's LAN, i.e. the interfaces carrying its InternalIP/ExternalIP)", p.Name)
	}
	pats := make([]string, len(p.Interfaces))
	for i, re := range p.Interfaces {
		pats[i] = re.String()
	}
	return fmt.Sprintf("policy %s (%s)", p.Name, strings.Join(pats, " | "))
}

// maxDescribed bounds the interfaces a message lists: a node with a
// hundred Pod veths must not produce a condition nobody can read.
const maxDescribed = 12

// DescribeInterfaces lists interfaces with their state, for messages: LAN
// interfaces first, at most a dozen, the rest counted.
func DescribeInterfaces(ifaces []Interface) string {
	return describeInterfaces(ifaces)
}

func describeInterfaces(ifaces []Interface) string {
	if len(ifaces) == 0 {
		return "no interfaces"
	}
	sorted := slices.Clone(ifaces)
	sort.SliceStable(sorted, func(a, b int) bool {
		if sorted[a].LAN != sorted[b].LAN {
			return sorted[a].LAN
		}
		return sorted[a].Name < sorted[b].Name
	})
	parts := make([]string, 0, min(len(sorted), maxDescribed)+1)
	for n, i := range sorted {
		if n == maxDescribed {
			parts = append(parts, fmt.Sprintf("and %d more", len(sorted)-maxDescribed))
			break
		}
		var flags []string
		if i.LAN {
			flags = append(flags, "LAN")
		}
		if !i.Up {
			flags = append(flags, "down")
		}
		if i.Loopback {
			flags = append(flags, "loopback")
		}
		if i.Enslaved {
			flags = append(flags, "enslaved")
		}
		if !i.Broadcast && !i.Loopback {
			flags = append(flags, "no broadcast")
		}
		if len(flags) > 0 {
			parts = append(parts, fmt.Sprintf("%s (%s)", i.Name, strings.Join(flags, ", ")))
		} else {
			parts = append(parts, i.Name)
		}
	}
	return strings.Join(parts, ", ")
}

// dedupe returns the valid addresses of as without repeats.
func dedupe(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if a.IsValid() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
