package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/herald-lb/herald/internal/bgp/community"
)

// Route is one prefix the speaker advertises, with its attributes, to some
// peers or to all.
//
// One prefix may be given in several routes. Routes of one prefix with the
// same attributes are merged (their peers joined; a route for every peer
// takes in the others). Routes of one prefix with different attributes
// must name their peers, and no peer twice: each peer then receives the
// prefix with exactly the attributes of its route (say local-pref only
// towards iBGP peers, or other communities for another router). A prefix
// for every peer with different attributes for some, or one peer given the
// same prefix with two sets of attributes, is an error. How GoBGP, which
// keeps one path per prefix, sends each peer its own attributes is in
// export.go.
type Route struct {
	// Prefix is a host route (/32, /128) or an aggregate. It must be
	// masked (no host bits set) and not IPv4-mapped IPv6.
	Prefix netip.Prefix
	// NextHop of the route. The zero value, the usual choice, lets each
	// session use its own local address: the node's address on the
	// peering interface. An explicit next hop must be of the prefix's
	// family.
	NextHop netip.Addr
	// Communities (RFC 1997) attached to the route.
	Communities []Community
	// LargeCommunities (RFC 8092) attached to the route.
	LargeCommunities []LargeCommunity
	// LocalPref, when set, is sent to iBGP peers. eBGP peers never
	// receive LOCAL_PREF (RFC 4271 §5.1.5), so it has no effect there.
	// Unset, iBGP peers receive GoBGP's default of 100.
	LocalPref *uint32
	// Peers that receive the route; empty means every peer of the
	// prefix's address family. A route is only sent over a session of
	// its own family (IPv4 routes to IPv4 peers, IPv6 routes to IPv6
	// peers): each session carries the unicast family of its peer's
	// address. Peers named here that are not (yet) configured are
	// remembered: they receive the route once SetPeers adds them.
	Peers []netip.Addr
}

// normalize validates r and returns it in canonical form: communities and
// peers sorted without duplicates, empty slices nil, so that two routes
// that mean the same compare equal with routeEqual.
func (r Route) normalize() (Route, error) {
	if !r.Prefix.IsValid() {
		return Route{}, errors.New("route without a valid prefix")
	}
	if r.Prefix.Addr().Is4In6() {
		return Route{}, fmt.Errorf("route %s: IPv4-mapped IPv6 prefixes are not routable; use the IPv4 form", r.Prefix)
	}
	if r.Prefix.Addr().Zone() != "" {
		return Route{}, fmt.Errorf("route %s: a prefix cannot have a zone", r.Prefix)
	}
	if r.Prefix != r.Prefix.Masked() {
		return Route{}, fmt.Errorf("route %s: host bits set (did you mean %s?)", r.Prefix, r.Prefix.Masked())
	}
	if r.NextHop.IsValid() {
		if r.NextHop.Is4() != r.Prefix.Addr().Is4() || r.NextHop.Is4In6() {
			return Route{}, fmt.Errorf("route %s: next hop %s is not of the prefix's address family", r.Prefix, r.NextHop)
		}
		if r.NextHop.Zone() != "" || r.NextHop.IsUnspecified() || r.NextHop.IsMulticast() {
			return Route{}, fmt.Errorf("route %s: next hop %s is not a unicast address", r.Prefix, r.NextHop)
		}
	}
	for _, lc := range r.LargeCommunities {
		if err := lc.Validate(); err != nil {
			return Route{}, fmt.Errorf("route %s: %w", r.Prefix, err)
		}
	}
	for _, p := range r.Peers {
		if !p.IsValid() {
			return Route{}, fmt.Errorf("route %s: invalid peer address", r.Prefix)
		}
	}
	out := r
	out.Communities = sortedUnique(r.Communities, community.Compare)
	out.LargeCommunities = sortedUnique(r.LargeCommunities, community.CompareLarge)
	out.Peers = sortedUnique(r.Peers, func(a, b netip.Addr) int { return a.Compare(b) })
	if r.LocalPref != nil {
		v := *r.LocalPref
		out.LocalPref = &v // the caller keeps its pointer
	}
	return out, nil
}

// sortedUnique returns a sorted copy of s without duplicates, nil when s
// is empty.
func sortedUnique[T any](s []T, cmp func(a, b T) int) []T {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.SortFunc(out, cmp)
	return slices.CompactFunc(out, func(a, b T) bool { return cmp(a, b) == 0 })
}

// sameAttributes reports whether two normalized routes carry the same path
// attributes (everything but Peers).
func sameAttributes(a, b Route) bool {
	if a.Prefix != b.Prefix || a.NextHop != b.NextHop ||
		!slices.Equal(a.Communities, b.Communities) || !slices.Equal(a.LargeCommunities, b.LargeCommunities) {
		return false
	}
	if (a.LocalPref == nil) != (b.LocalPref == nil) {
		return false
	}
	return a.LocalPref == nil || *a.LocalPref == *b.LocalPref
}

// routeEqual reports whether two normalized routes are the same.
func routeEqual(a, b Route) bool {
	return sameAttributes(a, b) && slices.Equal(a.Peers, b.Peers)
}

// routeTable validates and normalizes routes and indexes them by prefix.
// The routes of one prefix with the same attributes are merged (their
// peers joined, nil, every peer, taking in any other); those left must
// name disjoint peers. Each prefix's routes are sorted by their first
// peer.
func routeTable(routes []Route) (map[netip.Prefix][]Route, error) {
	out := make(map[netip.Prefix][]Route, len(routes))
	for _, r := range routes {
		n, err := r.normalize()
		if err != nil {
			return nil, err
		}
		rs := out[n.Prefix]
		i := slices.IndexFunc(rs, func(o Route) bool { return sameAttributes(o, n) })
		if i < 0 {
			out[n.Prefix] = append(rs, n)
			continue
		}
		if rs[i].Peers == nil || n.Peers == nil {
			rs[i].Peers = nil // one of them goes to every peer
		} else {
			rs[i].Peers = sortedUnique(append(slices.Clone(rs[i].Peers), n.Peers...), func(a, b netip.Addr) int { return a.Compare(b) })
		}
	}
	for p, rs := range out {
		if len(rs) == 1 {
			continue
		}
		if err := checkDisjoint(rs); err != nil {
			return nil, fmt.Errorf("route %s: %w", p, err)
		}
		slices.SortFunc(rs, func(a, b Route) int { return a.Peers[0].Compare(b.Peers[0]) })
	}
	return out, nil
}

// checkDisjoint refuses routes of one prefix with different attributes
// whose peers overlap.
func checkDisjoint(rs []Route) error {
	owner := map[netip.Addr]int{}
	for i, r := range rs {
		if r.Peers == nil {
			o := rs[0]
			if i == 0 {
				o = rs[1]
			}
			if o.Peers == nil {
				return fmt.Errorf("given for every peer twice with different attributes: %s, and %s", r.describeAttributes(), o.describeAttributes())
			}
			return fmt.Errorf("given for every peer with %s, and with %s for %s: a route with attributes of its own for some peers must name the other peers too",
				r.describeAttributes(), o.describeAttributes(), joinAddrs(o.Peers))
		}
		for _, p := range r.Peers {
			if j, dup := owner[p]; dup {
				return fmt.Errorf("given to peer %s twice with different attributes: %s, and %s", p, rs[j].describeAttributes(), r.describeAttributes())
			}
			owner[p] = i
		}
	}
	return nil
}

// describeAttributes names a route's attributes for error messages.
func (r Route) describeAttributes() string {
	var parts []string
	if len(r.Communities) > 0 {
		parts = append(parts, "communities "+joinStrings(r.Communities))
	}
	if len(r.LargeCommunities) > 0 {
		parts = append(parts, "large communities "+joinStrings(r.LargeCommunities))
	}
	if r.LocalPref != nil {
		parts = append(parts, fmt.Sprintf("local-pref %d", *r.LocalPref))
	}
	if r.NextHop.IsValid() {
		parts = append(parts, "next hop "+r.NextHop.String())
	}
	if len(parts) == 0 {
		return "no attributes"
	}
	return strings.Join(parts, ", ")
}

func joinStrings[T fmt.Stringer](s []T) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = v.String()
	}
	return strings.Join(out, " ")
}

func joinAddrs(s []netip.Addr) string { return joinStrings(s) }

// routeDiff is what turns the current routes into the desired ones.
type routeDiff struct {
	// Put are the prefixes to advertise or advertise again (new, or
	// changed in attributes or peers), sorted.
	Put []netip.Prefix
	// Withdraw are prefixes no longer desired, sorted.
	Withdraw []netip.Prefix
}

// diffRoutes compares route tables made by routeTable.
func diffRoutes(current, desired map[netip.Prefix][]Route) routeDiff {
	var d routeDiff
	for p, rs := range desired {
		if old, ok := current[p]; !ok || !slices.EqualFunc(old, rs, routeEqual) {
			d.Put = append(d.Put, p)
		}
	}
	for p := range current {
		if _, ok := desired[p]; !ok {
			d.Withdraw = append(d.Withdraw, p)
		}
	}
	slices.SortFunc(d.Put, comparePrefix)
	slices.SortFunc(d.Withdraw, comparePrefix)
	return d
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
