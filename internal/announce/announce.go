// Package announce decides, for one node, which load-balancer addresses the
// node may announce and on which of its interfaces — and, when it may not,
// exactly why. It is the agent's policy logic, kept pure (no Kubernetes, no
// sockets) so every rule is table-tested: the agent reduces
// L2AnnouncementPolicies, Services, EndpointSlices and the node's links to
// the small views below and acts on the Plan.
//
// An address is eligible on an interface of this node when one policy
//   - selects this node (nodeSelector),
//   - selects every Service that uses the address (serviceSelector), and
//     announces that kind of address (loadBalancerIPs / externalIPs),
//   - matches the interface by name (interfaces regexes; none means every
//     up, broadcast-capable, non-enslaved, non-loopback interface), and the
//     interface is up,
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

// Interface is the view of one network interface of the node.
type Interface struct {
	Name      string
	Up        bool
	Broadcast bool // can carry ARP (not a point-to-point or NOARP link)
	Loopback  bool
	// Enslaved is true for a port of a bridge or bond: the master
	// interface, not the port, owns the addresses on that segment.
	Enslaved bool
}

// usableByDefault reports whether an interface qualifies for a policy that
// lists no interface regexes.
func (i Interface) usableByDefault() bool {
	return i.Up && i.Broadcast && !i.Loopback && !i.Enslaved
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
	// Interfaces the address may be announced on (Reason Eligible only).
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

// Compute returns the plan for node, given its interfaces, the policies
// and the Services.
func Compute(node string, ifaces []Interface, policies []Policy, services []Service) Plan {
	plan := Plan{Eligible: map[string][]netip.Addr{}}

	// Interfaces each node-selecting policy matches, and the problems of
	// those that match none.
	matched := make([][]string, len(policies))
	for i, p := range policies {
		if !p.SelectsNode {
			continue
		}
		matched[i] = matchInterfaces(p, ifaces)
		if len(matched[i]) == 0 {
			plan.Problems = append(plan.Problems, PolicyProblem{
				Policy:  p.Name,
				Message: fmt.Sprintf("no up interface of node %s matches %s; it has %s", node, describePatterns(p), describeInterfaces(ifaces)),
			})
		}
	}
	sort.Slice(plan.Problems, func(a, b int) bool { return plan.Problems[a].Policy < plan.Problems[b].Policy })

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
		st := decide(node, a, uses[a], policies, matched, ifaces)
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
func decide(node string, addr netip.Addr, us []use, policies []Policy, matched [][]string, ifaces []Interface) AddrStatus {
	st := AddrStatus{Addr: addr}
	for _, u := range us {
		st.Services = append(st.Services, u.svc.Key)
	}
	sort.Strings(st.Services)
	st.Services = slices.Compact(st.Services)

	// Local traffic policy: every Local user needs an endpoint here.
	for _, u := range us {
		if u.svc.TrafficPolicyLocal && !u.svc.LocalReadyEndpoint {
			st.Reason = NoLocalEndpoints
			st.Message = fmt.Sprintf("%s has externalTrafficPolicy Local and no ready endpoint on node %s", u.svc.Key, node)
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
			st.Message = fmt.Sprintf("no L2AnnouncementPolicy selects %s", strings.Join(st.Services, ", "))
		case len(us) > 1 && !coveredAnywhere(us, policies):
			st.Reason = SharedNotCovered
			st.Message = fmt.Sprintf("%s is shared by %s and no single L2AnnouncementPolicy selects all of them", addr, strings.Join(st.Services, ", "))
		default:
			st.Reason = NodeNotSelected
			st.Message = fmt.Sprintf("the L2AnnouncementPolicies selecting %s do not select node %s", strings.Join(st.Services, ", "), node)
		}
		return st
	}
	var names []string
	var patterns []string
	for _, i := range covering {
		names = append(names, matched[i]...)
		patterns = append(patterns, describePatterns(policies[i]))
	}
	sort.Strings(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		st.Reason = NoMatchingInterface
		st.Message = fmt.Sprintf("no up interface of node %s matches %s; it has %s", node, strings.Join(patterns, " or "), describeInterfaces(ifaces))
		return st
	}
	st.Reason = Eligible
	st.Interfaces = names
	st.Message = fmt.Sprintf("eligible on node %s on %s", node, strings.Join(names, ", "))
	return st
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

// describePatterns renders a policy's interface patterns for a message.
func describePatterns(p Policy) string {
	if len(p.Interfaces) == 0 {
		return fmt.Sprintf("policy %s (any up broadcast interface)", p.Name)
	}
	pats := make([]string, len(p.Interfaces))
	for i, re := range p.Interfaces {
		pats[i] = re.String()
	}
	return fmt.Sprintf("policy %s (%s)", p.Name, strings.Join(pats, " | "))
}

// describeInterfaces lists interfaces with their state, for messages.
func describeInterfaces(ifaces []Interface) string {
	if len(ifaces) == 0 {
		return "no interfaces"
	}
	parts := make([]string, 0, len(ifaces))
	for _, i := range ifaces {
		var flags []string
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
	sort.Strings(parts)
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
