// Package bgpplan decides, for one node, which BGP sessions it opens and
// which routes it advertises to each peer, with which path attributes — and,
// for every Service address a peer does not get from this node, exactly
// why. It is the agent's BGP policy logic, kept pure (no Kubernetes, no
// sockets, no GoBGP) so every rule is table-tested, like internal/announce
// for L2: the agent (and `herald explain`) reduce the node, its links,
// BGPPeers, BGPAdvertisements, BGPNodeOverride, pools and Services to the
// small views below; the speaker (internal/bgp) acts on the Plan.
//
// # Sessions
//
// The node opens a session with every peer whose nodeSelector selects it
// (Peer.SelectsNode), once per peer address (of two peers with one
// address, the first by name that can be opened; the other gets
// DuplicateAddress). Its parameters:
//
//   - Local ASN: the node's BGPNodeOverride's, else the peer's. Equal to the
//     peer ASN makes the session iBGP.
//   - Router ID (one per node): the override's; else the node's first IPv4
//     address (Node.Addrs: InternalIPs first, then ExternalIPs); else one
//     derived from the node's name (FNV-1a, never 0), which is unique only
//     with high probability — IPv6-only clusters should set overrides.
//   - Local address (the session's source and the next hop of its routes),
//     first rule that applies:
//     1. the override's local address for this peer, which must be of the
//     peer's family and on one of the node's up interfaces (a loopback or
//     dummy one included: the way to source sessions from a stable
//     address);
//     2. the node's address on an up, non-loopback interface whose subnet
//     holds the peer's address (a directly connected peer). Several: LAN
//     interfaces first, then by name; the interface's first such address;
//     3. for a peer on none of the node's subnets — only when the session
//     may cross routers: iBGP, or eBGP with ebgpMultihop above 1 — the
//     node's own address of the peer's family (its first InternalIP, else
//     ExternalIP of that family), the address the rest of the network
//     knows it by. Which interface the kernel routes the session over is
//     not known here and does not matter: the router reaches the next hop
//     through its own routing, as it reaches the node.
//     Otherwise the session is not opened: NoLocalAddress.
//
// An excluded node (node.kubernetes.io/exclude-from-external-load-balancers)
// keeps its sessions and advertises nothing: withdrawing routes over a live
// session drains it without the peer seeing a session flap.
//
// # Routes
//
// Only load-balancer addresses (status.loadBalancer.ingress) are advertised,
// each to peers of its own family (an IPv4 session carries IPv4 routes).
// An address a is advertised to peer p when, in this order (the first that
// fails is the reason; cluster-wide reasons first, so every node gives the
// same one when the cause is not the node):
//
//  1. the Service has an address of p's family (else NoAddressOfPeerFamily);
//  2. an advertisement selects a Service using a (serviceSelector) and a's
//     pool (poolSelector; an address in no pool is selected by none)
//     (else NoAdvertisement);
//  3. one of those selects p (peerSelector) (else PeerNotSelected);
//  4. the node is not excluded by label (else ExcludedByLabel);
//  5. p selects the node (else NodeNotSelectedByPeer);
//  6. one of the advertisements of step 3 selects the node (nodeSelector)
//     (else NodeNotSelected);
//  7. the session with p can be opened (else NoLocalAddress or
//     DuplicateAddress);
//  8. for externalTrafficPolicy Local, every Local Service using a has a
//     ready endpoint on this node (else NoLocalEndpoints): a router sends
//     all of an address's traffic to a node, whatever the port.
//
// Services sharing an address share its verdict: a's route is one route
// whatever Service it serves, so it is advertised when any advertisement
// covers any of them, with the attributes of all that do.
//
// Each advertisement that passes gives a route for the prefix of length
// aggregationLength (IPv4) or aggregationLengthV6 (IPv6) holding a — except
// for an address used by a Local Service, always a host route (/32, /128):
// an aggregate would draw the traffic of addresses whose endpoints are not
// on this node (MetalLB issue 2811 asks for the same). Routes to one peer
// with the same prefix are merged (the merge rule):
//
//   - communities and large communities: the union, sorted;
//   - local-pref: the highest one set (MetalLB refuses two different
//     local-prefs for a prefix at admission; Herald cannot see other
//     objects at admission, so it takes the highest, deterministically,
//     and says so in the route's Notes);
//   - local-pref is only sent to iBGP peers (RFC 4271 §5.1.5); for an eBGP
//     peer it is dropped, with a note.
package bgpplan

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herald-lb/herald/internal/bgp/community"
)

// Selector matches a set of labels; nil matches everything.
type Selector interface {
	Matches(labels map[string]string) bool
}

// Interface is one network interface of the node with its addresses.
type Interface struct {
	Name     string
	Up       bool
	Loopback bool
	// LAN: the interface carries one of the Node's InternalIP/ExternalIP;
	// preferred when two interfaces hold a peer's subnet.
	LAN bool
	// Addrs are the interface's addresses with their prefix length
	// (192.168.20.11/24), in the kernel's order (primary first).
	Addrs []netip.Prefix
}

// Override is the node's BGPNodeOverride; the zero value overrides nothing.
type Override struct {
	// RouterID replaces the derived router ID when valid.
	RouterID netip.Addr
	// LocalASN replaces every peer's local ASN when not 0.
	LocalASN uint32
	// LocalAddrs are local addresses by peer name.
	LocalAddrs map[string]netip.Addr
}

// Node is the view of the deciding node.
type Node struct {
	Name string
	// ExcludedByLabel: the Node carries
	// node.kubernetes.io/exclude-from-external-load-balancers and the
	// agent honours it: its sessions stay up and it advertises nothing.
	ExcludedByLabel bool
	// Addrs are the Node's own addresses: InternalIPs first, then
	// ExternalIPs (router ID, and the source of routed sessions).
	Addrs      []netip.Addr
	Interfaces []Interface
	Override   Override
}

// SecretKey names one key of a Secret in Herald's namespace.
type SecretKey struct{ Name, Key string }

// BFD is a peer's BFD settings; nil in Peer means off.
type BFD struct {
	MinTransmit, MinReceive time.Duration
	Multiplier              uint8
}

// Peer is the view of a BGPPeer as it applies to this node. The timers
// are resolved (defaults applied), so the speaker takes them as they are.
type Peer struct {
	Name string
	// Labels are the BGPPeer's labels, for advertisements' peerSelector.
	Labels   map[string]string
	Addr     netip.Addr
	Port     uint16
	PeerASN  uint32
	LocalASN uint32
	// SelectsNode is the peer's nodeSelector evaluated on this node.
	SelectsNode bool
	// EBGPMultihop is the TTL of an eBGP session; 0 or 1: the peer must be
	// on a subnet of the node.
	EBGPMultihop uint8
	// Password is the TCP MD5 password's Secret key; empty Name: none.
	Password SecretKey
	// HoldTime 0 means no keepalives; KeepaliveTime is then 0 too.
	HoldTime, KeepaliveTime, ConnectRetryTime time.Duration
	// GracefulRestart with RestartTime, when set.
	GracefulRestart bool
	RestartTime     time.Duration
	BFD             *BFD
}

// Advertisement is the view of a BGPAdvertisement as it applies to this
// node.
type Advertisement struct {
	Name string
	// SelectsNode is the nodeSelector evaluated on this node.
	SelectsNode bool
	// Pools matches a pool's labels, Services a Service's (with
	// io.kubernetes.service.namespace/name), Peers a BGPPeer's; nil
	// matches all.
	Pools, Services, Peers Selector
	Communities            []Community
	LargeCommunities       []LargeCommunity
	// LocalPref is nil when not set.
	LocalPref *uint32
	// AggregationLength (IPv4, 0..32) and AggregationLengthV6 (0..128),
	// defaults applied (32 and 128).
	AggregationLength, AggregationLengthV6 int
}

// Address is one load-balancer address of a Service, with the pool it
// comes from.
type Address struct {
	Addr netip.Addr
	// Pool is the LoadBalancerIPPool holding the address; empty when none
	// does (a pool deleted since), which no advertisement selects.
	Pool       string
	PoolLabels map[string]string
}

// Service is the view of a Service with load-balancer addresses.
type Service struct {
	Key string
	// Labels include io.kubernetes.service.namespace and .name.
	Labels             map[string]string
	Addrs              []Address
	TrafficPolicyLocal bool
	// LocalReadyEndpoint: this node runs a ready endpoint (consulted for
	// TrafficPolicyLocal only).
	LocalReadyEndpoint bool
}

// Reason says why an address is not advertised to a peer by this node, or
// a session not opened. The values are meant for conditions and `herald
// explain`.
type Reason string

// Reasons.
const (
	// Advertised: the address is advertised to the peer.
	Advertised Reason = "Advertised"
	// NoAddressOfPeerFamily: the Service has no address of the peer's
	// family (an IPv6 peer and an IPv4-only Service).
	NoAddressOfPeerFamily Reason = "NoAddressOfPeerFamily"
	// NoAdvertisement: no BGPAdvertisement selects the Service and the
	// address's pool.
	NoAdvertisement Reason = "NoAdvertisement"
	// PeerNotSelected: advertisements select the Service, none this peer.
	PeerNotSelected Reason = "PeerNotSelected"
	// ExcludedByLabel: the node carries
	// node.kubernetes.io/exclude-from-external-load-balancers.
	ExcludedByLabel Reason = "ExcludedByLabel"
	// NodeNotSelectedByPeer: the peer's nodeSelector does not select this
	// node, which opens no session with it.
	NodeNotSelectedByPeer Reason = "NodeNotSelectedByPeer"
	// NodeNotSelected: the advertisements that would advertise the
	// address to the peer do not select this node.
	NodeNotSelected Reason = "NodeNotSelected"
	// NoLocalAddress: the node has no address to open the session from
	// (none on the peer's subnet and the peer may not be routed to, no
	// address of the peer's family, or an override's address it lacks).
	NoLocalAddress Reason = "NoLocalAddress"
	// DuplicateAddress: another BGPPeer selecting this node has the same
	// address; a node has one session per address.
	DuplicateAddress Reason = "DuplicateAddress"
	// NoLocalEndpoints: externalTrafficPolicy Local and no ready endpoint
	// on this node.
	NoLocalEndpoints Reason = "NoLocalEndpoints"
)

// RouterIDSource says where the router ID comes from.
type RouterIDSource string

// Router ID sources.
const (
	RouterIDOverride    RouterIDSource = "BGPNodeOverride"
	RouterIDNodeAddress RouterIDSource = "NodeAddress"
	RouterIDDerived     RouterIDSource = "NodeName"
)

// LocalAddrSource says how a session's local address was chosen.
type LocalAddrSource string

// Local address sources (the rules of the package documentation).
const (
	LocalAddrOverride    LocalAddrSource = "BGPNodeOverride"
	LocalAddrSubnet      LocalAddrSource = "Subnet"
	LocalAddrNodeAddress LocalAddrSource = "NodeAddress"
)

// Route is one prefix advertised to one peer.
type Route struct {
	Prefix netip.Prefix
	// NextHop is the session's local address.
	NextHop          netip.Addr
	Communities      []Community
	LargeCommunities []LargeCommunity
	// LocalPref is nil when none applies (none set, or an eBGP peer).
	LocalPref *uint32
	// Advertisements that gave the route, sorted.
	Advertisements []string
	// Services whose addresses it carries, sorted.
	Services []string
	// Notes explain merges: two local-prefs, a local-pref dropped for eBGP.
	Notes []string
}

// Session is a session this node opens, with the routes it advertises.
type Session struct {
	Peer     Peer
	LocalASN uint32
	IBGP     bool
	// LocalAddr is the session's source address and its routes' next hop.
	LocalAddr       netip.Addr
	LocalAddrSource LocalAddrSource
	// Interface holds LocalAddr (rules 1 and 2); empty for a routed
	// session (rule 3).
	Interface string
	// Routes, sorted by prefix.
	Routes []Route
}

// PeerStatus is whether this node opens a session with a peer.
type PeerStatus struct {
	Peer string
	Open bool
	// Reason and Message say why not (Open false): NodeNotSelectedByPeer,
	// NoLocalAddress, DuplicateAddress.
	Reason  Reason
	Message string
}

// Verdict is this node's decision on one address of a Service for one
// peer.
type Verdict struct {
	Service string
	Peer    string
	// Addr is the address; invalid for NoAddressOfPeerFamily.
	Addr   netip.Addr
	Reason Reason
	// Message explains the reason for a human (Planner.Messages).
	Message string
	// Prefixes the address is advertised in (Reason Advertised), sorted.
	Prefixes []netip.Prefix
}

// Plan is what the node does.
type Plan struct {
	RouterID       netip.Addr
	RouterIDSource RouterIDSource
	// Sessions the node opens, sorted by peer name.
	Sessions []Session
	// Peers: one status per peer, sorted by name.
	Peers []PeerStatus
	// Verdicts: for every Service, address and peer, sorted by Service,
	// peer, address.
	Verdicts []Verdict
}

// Planner holds the decisions that do not depend on Services: the
// sessions. The agent rebuilds it when the node, its links, the peers or
// the advertisements change, and plans the Services with it.
type Planner struct {
	node     Node
	peers    []Peer // sorted by name
	ads      []Advertisement
	routerID netip.Addr
	idSource RouterIDSource
	// sessions by peer index (nil: not opened), and every peer's status.
	sessions []*Session
	status   []PeerStatus
	// Messages makes Plan explain each verdict; the agent, which acts on
	// routes only, may turn it off.
	Messages bool
}

// NewPlanner decides the node's router ID and sessions.
func NewPlanner(n Node, peers []Peer, ads []Advertisement) *Planner {
	p := &Planner{node: n, peers: slices.Clone(peers), ads: ads, Messages: true}
	slices.SortStableFunc(p.peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	p.routerID, p.idSource = routerID(n)
	p.sessions = make([]*Session, len(p.peers))
	p.status = make([]PeerStatus, len(p.peers))
	byAddr := map[netip.Addr]string{}
	for i := range p.peers {
		peer := &p.peers[i]
		st := PeerStatus{Peer: peer.Name}
		switch {
		case !peer.SelectsNode:
			st.Reason = NodeNotSelectedByPeer
			st.Message = fmt.Sprintf("BGPPeer %s's nodeSelector does not select node %s", peer.Name, n.Name)
		case byAddr[peer.Addr] != "":
			st.Reason = DuplicateAddress
			st.Message = fmt.Sprintf("BGPPeers %s and %s both have address %s and select node %s; it peers with %s only",
				byAddr[peer.Addr], peer.Name, peer.Addr, n.Name, byAddr[peer.Addr])
		default:
			s, msg := p.session(*peer)
			if s == nil {
				st.Reason, st.Message = NoLocalAddress, msg
				break
			}
			byAddr[peer.Addr] = peer.Name
			p.sessions[i] = s
			st.Open = true
		}
		p.status[i] = st
	}
	return p
}

// Peers is every peer's status, sorted by name.
func (p *Planner) Peers() []PeerStatus { return slices.Clone(p.status) }

// RouterID is the node's router ID and where it comes from.
func (p *Planner) RouterID() (netip.Addr, RouterIDSource) { return p.routerID, p.idSource }

// routerID is the node's router ID by the package's rule.
func routerID(n Node) (netip.Addr, RouterIDSource) {
	if n.Override.RouterID.Is4() {
		return n.Override.RouterID, RouterIDOverride
	}
	for _, a := range n.Addrs {
		if a = a.Unmap(); a.Is4() && !a.IsUnspecified() {
			return a, RouterIDNodeAddress
		}
	}
	h := fnv.New32a()
	h.Write([]byte(n.Name))
	v := h.Sum32()
	if v == 0 {
		v = 1
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), RouterIDDerived
}

// session is the node's session with peer, or nil and why not.
func (p *Planner) session(peer Peer) (*Session, string) {
	n := p.node
	s := &Session{Peer: peer, LocalASN: peer.LocalASN}
	if n.Override.LocalASN != 0 {
		s.LocalASN = n.Override.LocalASN
	}
	s.IBGP = s.LocalASN == peer.PeerASN
	fam := family(peer.Addr)

	if a, ok := n.Override.LocalAddrs[peer.Name]; ok && a.IsValid() {
		a = a.Unmap()
		if family(a) != fam {
			return nil, fmt.Sprintf("node %s's BGPNodeOverride gives local address %s for BGPPeer %s, which is an %s peer (%s)",
				n.Name, a, peer.Name, fam, peer.Addr)
		}
		for _, i := range n.Interfaces {
			if i.Up && slices.ContainsFunc(i.Addrs, func(q netip.Prefix) bool { return q.Addr().Unmap() == a }) {
				s.LocalAddr, s.LocalAddrSource, s.Interface = a, LocalAddrOverride, i.Name
				return s, ""
			}
		}
		return nil, fmt.Sprintf("node %s's BGPNodeOverride gives local address %s for BGPPeer %s, but no up interface of the node has it",
			n.Name, a, peer.Name)
	}

	ifaces := slices.Clone(n.Interfaces)
	sort.SliceStable(ifaces, func(a, b int) bool {
		if ifaces[a].LAN != ifaces[b].LAN {
			return ifaces[a].LAN
		}
		return ifaces[a].Name < ifaces[b].Name
	})
	for _, i := range ifaces {
		if !i.Up || i.Loopback {
			continue
		}
		for _, q := range i.Addrs {
			a := q.Addr().Unmap()
			if a.IsLinkLocalUnicast() || family(a) != fam {
				continue
			}
			if netip.PrefixFrom(a, q.Bits()).Contains(peer.Addr) {
				s.LocalAddr, s.LocalAddrSource, s.Interface = a, LocalAddrSubnet, i.Name
				return s, ""
			}
		}
	}

	if !s.IBGP && peer.EBGPMultihop <= 1 {
		return nil, fmt.Sprintf("BGPPeer %s (%s, AS %d) is on none of node %s's subnets (%s) and is an eBGP peer without ebgpMultihop: "+
			"set spec.ebgpMultihop for a router that is not on the node's subnet, or a local address in the node's BGPNodeOverride",
			peer.Name, peer.Addr, peer.PeerASN, n.Name, describeSubnets(n.Interfaces, fam))
	}
	for _, a := range n.Addrs {
		if a = a.Unmap(); family(a) == fam && !a.IsLinkLocalUnicast() && !a.IsUnspecified() {
			s.LocalAddr, s.LocalAddrSource = a, LocalAddrNodeAddress
			return s, ""
		}
	}
	return nil, fmt.Sprintf("BGPPeer %s (%s) is on none of node %s's subnets and the node has no %s address of its own to reach it from",
		peer.Name, peer.Addr, n.Name, fam)
}

// Family is an address family, for messages.
type Family string

const (
	ipv4 Family = "IPv4"
	ipv6 Family = "IPv6"
)

func family(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return ipv4
	}
	return ipv6
}

// describeSubnets lists the node's subnets of family fam, for messages.
func describeSubnets(ifaces []Interface, fam Family) string {
	var out []string
	for _, i := range ifaces {
		if !i.Up || i.Loopback {
			continue
		}
		for _, q := range i.Addrs {
			if family(q.Addr()) == fam && !q.Addr().IsLinkLocalUnicast() {
				out = append(out, fmt.Sprintf("%s on %s", q.Masked(), i.Name))
			}
		}
	}
	if len(out) == 0 {
		return "it has no " + string(fam) + " subnet"
	}
	return strings.Join(out, ", ")
}

// use is one Service using an address.
type use struct {
	svc  *Service
	addr Address
}

// Compute is NewPlanner(n, peers, ads).Plan(services).
func Compute(n Node, peers []Peer, ads []Advertisement, services []Service) Plan {
	return NewPlanner(n, peers, ads).Plan(services)
}

// routeKey is one route of one session.
type routeKey struct {
	peer   int
	prefix netip.Prefix
}

// routeAcc gathers what gives one route.
type routeAcc struct {
	ads      []int
	services []string
}

// Plan decides every Service address for every peer.
func (p *Planner) Plan(services []Service) Plan {
	plan := Plan{RouterID: p.routerID, RouterIDSource: p.idSource, Peers: p.Peers()}

	// The users of each address: Services sharing it are decided together.
	uses := map[netip.Addr][]use{}
	for i := range services {
		s := &services[i]
		for _, a := range s.Addrs {
			if !a.Addr.IsValid() {
				continue
			}
			a.Addr = a.Addr.Unmap()
			if slices.ContainsFunc(uses[a.Addr], func(u use) bool { return u.svc == s }) {
				continue
			}
			uses[a.Addr] = append(uses[a.Addr], use{svc: s, addr: a})
		}
	}

	routes := map[routeKey]*routeAcc{}
	type decided struct {
		reason   Reason
		message  string
		prefixes []netip.Prefix
	}
	memo := map[netip.Addr][]decided{} // by address, per peer index
	for a, us := range uses {
		ds := make([]decided, len(p.peers))
		for pi := range p.peers {
			if family(a) != family(p.peers[pi].Addr) {
				continue
			}
			reason, msg, ads := p.decide(a, us, pi)
			d := decided{reason: reason, message: msg}
			if reason == Advertised {
				for _, ai := range ads {
					pfx := p.prefix(a, us, ai)
					d.prefixes = append(d.prefixes, pfx)
					k := routeKey{pi, pfx}
					acc := routes[k]
					if acc == nil {
						acc = &routeAcc{}
						routes[k] = acc
					}
					acc.ads = append(acc.ads, ai)
					for _, u := range us {
						acc.services = append(acc.services, u.svc.Key)
					}
				}
				slices.SortFunc(d.prefixes, comparePrefix)
				d.prefixes = slices.Compact(d.prefixes)
				if p.Messages {
					d.message = p.advertisedMessage(a, us, pi, ads, d.prefixes)
				}
			}
			ds[pi] = d
		}
		memo[a] = ds
	}

	for i := range services {
		s := &services[i]
		for pi, peer := range p.peers {
			found := false
			for _, a := range s.Addrs {
				if !a.Addr.IsValid() || family(a.Addr) != family(peer.Addr) {
					continue
				}
				found = true
				d := memo[a.Addr.Unmap()][pi]
				plan.Verdicts = append(plan.Verdicts, Verdict{Service: s.Key, Peer: peer.Name, Addr: a.Addr.Unmap(),
					Reason: d.reason, Message: d.message, Prefixes: d.prefixes})
			}
			if !found {
				v := Verdict{Service: s.Key, Peer: peer.Name, Reason: NoAddressOfPeerFamily}
				if p.Messages {
					v.Message = fmt.Sprintf("%s has no %s address for BGPPeer %s (%s)", s.Key, family(peer.Addr), peer.Name, peer.Addr)
				}
				plan.Verdicts = append(plan.Verdicts, v)
			}
		}
	}
	slices.SortStableFunc(plan.Verdicts, func(a, b Verdict) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Peer, b.Peer), a.Addr.Compare(b.Addr))
	})
	plan.Verdicts = slices.CompactFunc(plan.Verdicts, func(a, b Verdict) bool {
		return a.Service == b.Service && a.Peer == b.Peer && a.Addr == b.Addr
	})

	for pi := range p.peers {
		s := p.sessions[pi]
		if s == nil {
			continue
		}
		sess := *s
		sess.Routes = nil
		for k, acc := range routes {
			if k.peer == pi {
				sess.Routes = append(sess.Routes, p.route(sess, k.prefix, acc))
			}
		}
		slices.SortFunc(sess.Routes, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
		plan.Sessions = append(plan.Sessions, sess)
	}
	return plan
}

// decide is the verdict on address a, used by us, for peer pi, with the
// advertisements (indexes) that advertise it when Advertised.
func (p *Planner) decide(a netip.Addr, us []use, pi int) (Reason, string, []int) {
	peer := p.peers[pi]
	keys := serviceKeys(us)
	msg := func(format string, args ...any) string {
		if !p.Messages {
			return ""
		}
		return fmt.Sprintf(format, args...)
	}
	// Advertisements selecting a user of a and its pool, then those also
	// selecting the peer, then those also selecting the node.
	var forService, forPeer, forNode []int
	for ai, ad := range p.ads {
		if !slices.ContainsFunc(us, func(u use) bool { return selectsUse(ad, u) }) {
			continue
		}
		forService = append(forService, ai)
		if ad.Peers != nil && !ad.Peers.Matches(peer.Labels) {
			continue
		}
		forPeer = append(forPeer, ai)
		if ad.SelectsNode {
			forNode = append(forNode, ai)
		}
	}
	if len(forService) == 0 {
		if !slices.ContainsFunc(us, func(u use) bool { return u.addr.Pool != "" }) {
			return NoAdvertisement, msg("%s of %s is in no LoadBalancerIPPool, and BGPAdvertisements only advertise pool addresses", a, strings.Join(keys, ", ")), nil
		}
		return NoAdvertisement, msg("no BGPAdvertisement selects %s with pool %s", strings.Join(keys, ", "), poolsOf(us)), nil
	}
	if len(forPeer) == 0 {
		return PeerNotSelected, msg("the BGPAdvertisements selecting %s (%s) do not select BGPPeer %s (their peerSelector)",
			strings.Join(keys, ", "), p.adNames(forService), peer.Name), nil
	}
	if p.node.ExcludedByLabel {
		return ExcludedByLabel, msg("node %s carries node.kubernetes.io/exclude-from-external-load-balancers "+
			"(Talos 1.8 and later set it on every control-plane node); it keeps its BGP sessions and advertises nothing. "+
			"Remove the label, or run the agents with --ignore-exclude-label (chart value agent.ignoreExcludeLabel)", p.node.Name), nil
	}
	st := p.status[pi]
	if st.Reason == NodeNotSelectedByPeer {
		return NodeNotSelectedByPeer, msg("%s", st.Message), nil
	}
	if len(forNode) == 0 {
		return NodeNotSelected, msg("the BGPAdvertisements advertising %s to BGPPeer %s (%s) do not select node %s (their nodeSelector)",
			strings.Join(keys, ", "), peer.Name, p.adNames(forPeer), p.node.Name), nil
	}
	if !st.Open {
		return st.Reason, msg("%s", st.Message), nil
	}
	for _, u := range us {
		if u.svc.TrafficPolicyLocal && !u.svc.LocalReadyEndpoint {
			return NoLocalEndpoints, msg("%s has externalTrafficPolicy Local and no ready endpoint on node %s", u.svc.Key, p.node.Name), nil
		}
	}
	return Advertised, "", forNode
}

// selectsUse reports whether ad selects u's Service and its address's pool.
func selectsUse(ad Advertisement, u use) bool {
	if u.addr.Pool == "" || ad.Pools != nil && !ad.Pools.Matches(u.addr.PoolLabels) {
		return false
	}
	return ad.Services == nil || ad.Services.Matches(u.svc.Labels)
}

// prefix is the prefix advertisement ai gives address a used by us.
func (p *Planner) prefix(a netip.Addr, us []use, ai int) netip.Prefix {
	bits := a.BitLen()
	if !slices.ContainsFunc(us, func(u use) bool { return u.svc.TrafficPolicyLocal }) {
		l := p.ads[ai].AggregationLength
		if a.Is6() {
			l = p.ads[ai].AggregationLengthV6
		}
		if l >= 0 && l < bits {
			bits = l
		}
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// route merges what gives one prefix to one session (the merge rule).
func (p *Planner) route(s Session, pfx netip.Prefix, acc *routeAcc) Route {
	r := Route{Prefix: pfx, NextHop: s.LocalAddr}
	slices.Sort(acc.ads)
	acc.ads = slices.Compact(acc.ads)
	slices.SortStableFunc(acc.ads, func(a, b int) int { return strings.Compare(p.ads[a].Name, p.ads[b].Name) })
	var prefs []string
	for _, ai := range acc.ads {
		ad := p.ads[ai]
		r.Advertisements = append(r.Advertisements, ad.Name)
		r.Communities = append(r.Communities, ad.Communities...)
		r.LargeCommunities = append(r.LargeCommunities, ad.LargeCommunities...)
		if ad.LocalPref != nil {
			prefs = append(prefs, fmt.Sprintf("%d of %s", *ad.LocalPref, ad.Name))
			if r.LocalPref == nil || *ad.LocalPref > *r.LocalPref {
				v := *ad.LocalPref
				r.LocalPref = &v
			}
		}
	}
	sort.Strings(r.Advertisements)
	r.Advertisements = slices.Compact(r.Advertisements)
	slices.Sort(r.Communities)
	r.Communities = slices.Compact(r.Communities)
	slices.SortFunc(r.LargeCommunities, community.CompareLarge)
	r.LargeCommunities = slices.Compact(r.LargeCommunities)
	sort.Strings(acc.services)
	r.Services = slices.Compact(acc.services)
	if r.LocalPref != nil {
		distinct := false
		for _, ai := range acc.ads {
			if lp := p.ads[ai].LocalPref; lp != nil && *lp != *r.LocalPref {
				distinct = true
			}
		}
		if distinct {
			r.Notes = append(r.Notes, fmt.Sprintf("several local-prefs for %s (%s): the highest, %d, is used",
				pfx, strings.Join(prefs, ", "), *r.LocalPref))
		}
		if !s.IBGP {
			r.Notes = append(r.Notes, fmt.Sprintf("local-pref %d not sent: BGPPeer %s is an eBGP peer (AS %d, local AS %d)",
				*r.LocalPref, s.Peer.Name, s.Peer.PeerASN, s.LocalASN))
			r.LocalPref = nil
		}
	}
	return r
}

func (p *Planner) advertisedMessage(a netip.Addr, us []use, pi int, ads []int, prefixes []netip.Prefix) string {
	peer := p.peers[pi]
	s := p.sessions[pi]
	pfx := make([]string, len(prefixes))
	for i, q := range prefixes {
		pfx[i] = q.String()
	}
	m := fmt.Sprintf("node %s advertises %s as %s to BGPPeer %s (%s, AS %d) with next hop %s, by %s",
		p.node.Name, a, strings.Join(pfx, " and "), peer.Name, peer.Addr, peer.PeerASN, s.LocalAddr, p.adNames(ads))
	if len(us) > 1 {
		m += fmt.Sprintf(" (the address is shared by %s)", strings.Join(serviceKeys(us), ", "))
	}
	return m
}

func (p *Planner) adNames(ads []int) string {
	names := make([]string, len(ads))
	for i, ai := range ads {
		names[i] = p.ads[ai].Name
	}
	sort.Strings(names)
	return strings.Join(slices.Compact(names), ", ")
}

// serviceKeys are the sorted, distinct keys of the users.
func serviceKeys(us []use) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.svc.Key)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// poolsOf names the pools of the users' address.
func poolsOf(us []use) string {
	var out []string
	for _, u := range us {
		if u.addr.Pool != "" {
			out = append(out, u.addr.Pool)
		}
	}
	sort.Strings(out)
	return strings.Join(slices.Compact(out), ", ")
}

// comparePrefix orders prefixes by address, then length.
func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
