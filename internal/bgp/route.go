package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/herald-lb/herald/internal/bgp/community"
)

// Route is one prefix the speaker advertises.
//
// A prefix is advertised with one set of attributes: the speaker keeps one
// path per prefix (GoBGP's RIB holds one locally originated path per
// prefix), so per-peer attributes for the same prefix are not expressible.
// Routes with the same prefix and the same attributes are merged (their
// peers joined); the same prefix with different attributes is an error.
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

// routeTable validates and normalizes routes and indexes them by prefix,
// merging routes that differ only in their peers.
func routeTable(routes []Route) (map[netip.Prefix]Route, error) {
	out := make(map[netip.Prefix]Route, len(routes))
	for _, r := range routes {
		n, err := r.normalize()
		if err != nil {
			return nil, err
		}
		old, dup := out[n.Prefix]
		if !dup {
			out[n.Prefix] = n
			continue
		}
		if !sameAttributes(old, n) {
			return nil, fmt.Errorf("route %s is given twice with different attributes; a prefix is advertised with one set of attributes to all its peers", n.Prefix)
		}
		if old.Peers == nil || n.Peers == nil {
			old.Peers = nil // one of them goes to every peer
		} else {
			old.Peers = sortedUnique(append(old.Peers, n.Peers...), func(a, b netip.Addr) int { return a.Compare(b) })
		}
		out[n.Prefix] = old
	}
	return out, nil
}

// routeDiff is what turns the current routes into the desired ones.
type routeDiff struct {
	// Put are routes to add or replace (new prefixes, or changed
	// attributes or peers), sorted by prefix.
	Put []Route
	// Withdraw are prefixes no longer desired, sorted.
	Withdraw []netip.Prefix
}

// diffRoutes compares normalized route tables.
func diffRoutes(current, desired map[netip.Prefix]Route) routeDiff {
	var d routeDiff
	for p, r := range desired {
		if old, ok := current[p]; !ok || !routeEqual(old, r) {
			d.Put = append(d.Put, r)
		}
	}
	for p := range current {
		if _, ok := desired[p]; !ok {
			d.Withdraw = append(d.Withdraw, p)
		}
	}
	slices.SortFunc(d.Put, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	slices.SortFunc(d.Withdraw, comparePrefix)
	return d
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
