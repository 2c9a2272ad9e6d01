package announce

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// This file turns what every node reports into the truth about one
// address: who answers for it, and when nobody does, exactly why. The
// controller runs it for each Service's addresses and writes the result as
// the herald.dev/Announced condition, so the condition is true even when
// the node that used to answer is gone and cannot say so itself.

// Reasons of the herald.dev/Announced condition beyond the per-node
// Reasons above.
const (
	// Announced: a node answers for every address of the Service.
	Announced Reason = "Announced"
	// NoEligibleNode: some nodes are selected, none may announce; the
	// message says why for each node.
	NoEligibleNode Reason = "NoEligibleNode"
	// AddressConflict: another host on the LAN uses the address. With
	// Status False, a probe found it before the address was ever announced
	// and Herald does not announce it; with Status True, Herald announces
	// and defends it.
	AddressConflict Reason = "AddressConflict"
	// KeyMismatch: two agents that cannot authenticate each other's
	// heartbeats both answer for the address.
	KeyMismatch Reason = "KeyMismatch"
	// KernelARP: besides Herald's owner, the kernels of other nodes answer
	// ARP for the address: kube-proxy's IPVS mode without strictARP.
	KernelARP Reason = "KernelARP"
	// NoAgent: a node may announce the address but no Herald agent reports
	// from it.
	NoAgent Reason = "NoAgent"
	// NoHeartbeatKey: the eligible nodes' agents have no heartbeat key.
	NoHeartbeatKey Reason = "NoHeartbeatKey"
	// Pending: an eligible node has not started answering yet (it probes
	// the address first, or has just been told about it).
	Pending Reason = "Pending"
)

// Answerer is a node whose report says it answers for an address.
type Answerer struct {
	Node       string
	Interfaces []string
	// Since is when it started answering.
	Since time.Time
	// Peers are the nodes it hears, authenticated, on the interfaces it
	// answers on; Mismatched are those it hears with another key.
	Peers, Mismatched []string
	// NotReady: its Node is known not to be Ready, so its report may be
	// stale (a dead node cannot take its claim back).
	NotReady bool
}

// AddrConflict is another host seen using the address.
type AddrConflict struct {
	Node, MAC, Interface string
	// BeforeAnnounce: a probe found it before the address was ever
	// announced, so it is not announced.
	BeforeAnnounce bool
}

// NodeVerdict is what one node may do about the address.
type NodeVerdict struct {
	Node string
	// NoAgent: no Herald agent reports from the node; Status is then
	// computed without its interfaces.
	NoAgent bool
	// KeyError is why the node's agent has no heartbeat key.
	KeyError string
	// Status is Compute's verdict for the address on this node.
	Status AddrStatus
}

// AddrSummary is the truth about one address.
type AddrSummary struct {
	Addr netip.Addr
	// Answered: some node answers for it.
	Answered bool
	Reason   Reason
	Message  string
}

// maxNodesInMessage bounds the nodes a message names one by one.
const maxNodesInMessage = 8

// Summarize says who answers for addr, or why nobody does, from every
// node's report. Answerers whose reports are stale are dropped first: one
// whose Node is not Ready, and one that a later answerer took the address
// over from without hearing it on the segment (it died, and could not
// retract its own report). Two answerers that hear each other with another
// heartbeat key are a KeyMismatch; keys(a, b) names both sides' keys for
// the message.
func Summarize(addr netip.Addr, answerers []Answerer, conflicts []AddrConflict, verdicts []NodeVerdict, keys func(a, b string) string) AddrSummary {
	s := AddrSummary{Addr: addr}
	live := liveAnswerers(answerers)
	var live4conflict []AddrConflict
	var before []AddrConflict
	for _, c := range conflicts {
		if c.BeforeAnnounce {
			before = append(before, c)
		} else {
			live4conflict = append(live4conflict, c)
		}
	}
	if len(live) > 0 {
		s.Answered = true
		s.Reason = Announced
		s.Message = describeAnswerers(addr, live)
		for i := range live {
			for j := i + 1; j < len(live); j++ {
				x, y := live[i], live[j]
				if !slices.Contains(x.Mismatched, y.Node) && !slices.Contains(y.Mismatched, x.Node) {
					continue
				}
				why := fmt.Sprintf("nodes %s and %s use different heartbeat keys", x.Node, y.Node)
				if keys != nil {
					why = keys(x.Node, y.Node)
				}
				s.Reason = KeyMismatch
				s.Message += fmt.Sprintf(": two MACs answer because %s; make every agent use the same heartbeat Secret", why)
				return s
			}
		}
		if len(live4conflict) > 0 {
			c := live4conflict[0]
			s.Reason = AddressConflict
			s.Message += fmt.Sprintf("; another host (MAC %s, seen by node %s on %s) also claims %s: Herald keeps the address and "+
				"defends it (at most one gratuitous ARP or Neighbor Advertisement per 10 s); find that host and change its address",
				c.MAC, c.Node, c.Interface, addr)
		}
		return s
	}
	if len(before) > 0 {
		c := before[0]
		s.Reason = AddressConflict
		s.Message = fmt.Sprintf("%s is in use by another host on the LAN (MAC %s, seen by node %s on %s before it was ever announced); "+
			"Herald does not announce it", addr, c.MAC, c.Node, c.Interface)
		return s
	}
	s.Reason, s.Message = explainUnanswered(addr, verdicts)
	return s
}

// liveAnswerers drops answerers whose reports are stale.
func liveAnswerers(all []Answerer) []Answerer {
	var ready []Answerer
	for _, a := range all {
		if !a.NotReady {
			ready = append(ready, a)
		}
	}
	var out []Answerer
	for i, x := range ready {
		stale := false
		for j, y := range ready {
			if i == j || !y.Since.After(x.Since) {
				continue
			}
			if !slices.Contains(y.Peers, x.Node) && !slices.Contains(y.Mismatched, x.Node) {
				stale = true // y took over without hearing x: x is gone
				break
			}
		}
		if !stale {
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

func describeAnswerers(addr netip.Addr, as []Answerer) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = fmt.Sprintf("node %s on %s", a.Node, strings.Join(a.Interfaces, ", "))
	}
	return fmt.Sprintf("%s announced by %s", addr, strings.Join(parts, " and by "))
}

// explainUnanswered says why no node answers for addr.
func explainUnanswered(addr netip.Addr, verdicts []NodeVerdict) (Reason, string) {
	if len(verdicts) == 0 {
		return NoEligibleNode, fmt.Sprintf("%s: the cluster has no nodes", addr)
	}
	// Reasons that do not depend on the node: every node that gets as far
	// as the policies says the same (an excluded node, or a Local Service's
	// node without an endpoint, stops earlier, whatever its position).
	for _, v := range verdicts {
		if v.Status.Reason == NoPolicy || v.Status.Reason == SharedNotCovered {
			return v.Status.Reason, fmt.Sprintf("%s: %s", addr, v.Status.Message)
		}
	}
	byReason := map[Reason][]NodeVerdict{}
	var eligible, noAgent, noKey []NodeVerdict
	for _, v := range verdicts {
		switch {
		case v.NoAgent:
			if v.Status.Reason == Eligible || v.Status.Reason == NoMatchingInterface {
				// Without the agent's interfaces nothing is known beyond
				// "this node would be selected".
				noAgent = append(noAgent, v)
				continue
			}
		case v.Status.Reason == Eligible && v.KeyError != "":
			noKey = append(noKey, v)
			continue
		case v.Status.Reason == Eligible:
			eligible = append(eligible, v)
			continue
		}
		byReason[v.Status.Reason] = append(byReason[v.Status.Reason], v)
	}
	switch {
	case len(eligible) > 0:
		return Pending, fmt.Sprintf("%s: %s may announce it and will answer shortly (it probes the LAN for another host using the address first)",
			addr, nodeList(eligible))
	case len(noKey) > 0:
		return NoHeartbeatKey, fmt.Sprintf("%s: %s may announce it but %s no heartbeat key (%s)", addr, nodeList(noKey), verb(noKey, "has", "have"), noKey[0].KeyError)
	case len(noAgent) > 0 && len(byReason) == 0:
		return NoAgent, fmt.Sprintf("%s: %s would be selected, but no Herald agent runs there (is the DaemonSet scheduled there?)", addr, nodeList(noAgent))
	}
	if len(byReason) == 1 && len(noAgent) == 0 {
		for r, vs := range byReason {
			switch r {
			case NoMatchingInterface, NoLocalEndpoints:
				return r, fmt.Sprintf("%s: %s", addr, joinMessages(vs))
			}
		}
	}
	// Mixed: say why for each node.
	reasons := make([]Reason, 0, len(byReason))
	for r := range byReason {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	var parts []string
	for _, r := range reasons {
		vs := byReason[r]
		switch r {
		case ExcludedByLabel:
			parts = append(parts, fmt.Sprintf("%s %s node.kubernetes.io/exclude-from-external-load-balancers "+
				"(Talos 1.8 and later set it on control-plane nodes; remove it or run the agents with --ignore-exclude-label)", nodeList(vs), verb(vs, "carries", "carry")))
		case NodeNotSelected:
			parts = append(parts, fmt.Sprintf("%s %s not selected by the nodeSelector of the policies announcing it", nodeList(vs), verb(vs, "is", "are")))
		case NoLocalEndpoints:
			parts = append(parts, fmt.Sprintf("%s %s no ready local endpoint (externalTrafficPolicy Local)", nodeList(vs), verb(vs, "has", "have")))
		default:
			parts = append(parts, joinMessages(vs))
		}
	}
	if len(noAgent) > 0 {
		parts = append(parts, fmt.Sprintf("%s %s no Herald agent", nodeList(noAgent), verb(noAgent, "runs", "run")))
	}
	return NoEligibleNode, fmt.Sprintf("%s: no node may announce it: %s", addr, strings.Join(parts, "; "))
}

// verb picks the singular or plural form for a list of nodes.
func verb(vs []NodeVerdict, one, many string) string {
	if len(vs) == 1 {
		return one
	}
	return many
}

// nodeList names the verdicts' nodes as nodeNames does.
func nodeList(vs []NodeVerdict) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Node
	}
	return nodeNames(names)
}

// nodeNames names nodes: "node a", "nodes a, b and c", "nodes a, b, … and 12 more".
func nodeNames(names []string) string {
	names = slices.Clone(names)
	sort.Strings(names)
	if len(names) == 1 {
		return "node " + names[0]
	}
	if len(names) > maxNodesInMessage {
		return fmt.Sprintf("nodes %s and %d more", strings.Join(names[:maxNodesInMessage], ", "), len(names)-maxNodesInMessage)
	}
	return fmt.Sprintf("nodes %s and %s", strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// joinMessages joins the nodes' own messages (each names its node), at
// most maxNodesInMessage of them.
func joinMessages(vs []NodeVerdict) string {
	sorted := slices.Clone(vs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Node < sorted[j].Node })
	var msgs []string
	for i, v := range sorted {
		if i == maxNodesInMessage {
			msgs = append(msgs, fmt.Sprintf("and %d more nodes", len(sorted)-maxNodesInMessage))
			break
		}
		msgs = append(msgs, v.Status.Message)
	}
	return strings.Join(msgs, "; ")
}

// WithKernelARP adds to s the nodes whose own kernels answer ARP for every
// IPv4 address kube-proxy's IPVS mode holds on kube-ipvs0 (their agents
// report the interfaces; see dataplane.KernelARPInterfaces). Clients may
// then reach any of those nodes instead of Herald's owner, so an answered
// address gets the reason KernelARP unless a KeyMismatch or an
// AddressConflict is already the reason; an unanswered one keeps its
// reason, and its message says that the kernels answer meanwhile. IPv6
// addresses are returned unchanged: the kernel answers Neighbor
// Solicitations only for addresses on the receiving interface.
func WithKernelARP(s AddrSummary, nodes []string) AddrSummary {
	if len(nodes) == 0 || !s.Addr.Is4() {
		return s
	}
	why := fmt.Sprintf("the kernels of %s also answer ARP for %s (kube-proxy's IPVS mode puts it on kube-ipvs0 and arp_ignore is 0 there), "+
		"so clients may send to any of them; set ipvs.strictARP: true in kube-proxy's configuration", nodeNames(nodes), s.Addr)
	if len(nodes) == 1 {
		why = strings.Replace(why, "the kernels of", "the kernel of", 1)
		why = strings.Replace(why, "also answer ARP", "also answers ARP", 1)
	}
	if !s.Answered {
		s.Message += "; meanwhile " + why
		return s
	}
	if s.Reason == Announced {
		s.Reason = KernelARP
	}
	s.Message += "; but " + why
	return s
}

// Condition combines the summaries of a Service's addresses into the
// herald.dev/Announced condition: True when a node answers for every
// address, else False with the reason of the first address nobody answers
// for. The message covers every address.
func Condition(sums []AddrSummary) (status bool, reason Reason, message string) {
	if len(sums) == 0 {
		return false, "", ""
	}
	status = true
	var msgs []string
	for _, s := range sums {
		msgs = append(msgs, s.Message)
		if !s.Answered && status {
			status, reason = false, s.Reason
		}
	}
	if status {
		reason = Announced
		for _, s := range sums {
			if s.Reason != Announced {
				reason = s.Reason // KeyMismatch, AddressConflict or KernelARP while answered
				break
			}
		}
	}
	const maxMessage = 8 << 10 // conditions allow 32 KiB; stay readable
	message = strings.Join(msgs, "; ")
	if len(message) > maxMessage {
		message = message[:maxMessage] + "…"
	}
	return status, reason, message
}
