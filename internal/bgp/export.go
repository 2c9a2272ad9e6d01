package bgp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	api "github.com/osrg/gobgp/v4/api"
)

// Per-peer export.
//
// GoBGP keeps one RIB for every peer that is not a route-server client and
// offers per-neighbor export policies only to route-server clients (which
// would also stop it from prepending its AS). It keeps one locally
// originated path per prefix, and a peer without ADD-PATH receives only
// the best path of a prefix: several local paths for one prefix (with
// distinct path identifiers) would not reach different peers either, since
// a best path an export policy rejects for a peer is not replaced by the
// next one (that is route-server clients' "secondary route" only). So the
// one global export policy chooses both the peers of a path and, where
// they differ, each peer's attributes, from marks carried by the path
// itself:
//
//   - a prefix given in one route carries that route's attributes in its
//     path, and the large community R:0:0 when it is for every peer, where
//     R is AS 4294967295 (reserved by RFC 7300, refused in Route), or
//     R:1:<id> for each of its peers, where <id> is a number the speaker
//     gives each peer address (never reused while the speaker lives);
//   - a prefix given in several routes (with different attributes and
//     disjoint peers) carries none of their attributes, LOCAL_PREF 0, and
//     R:<attrs>:<id> for each peer of each route, where <attrs> (2 or more)
//     numbers the route's set of attributes (next hop, communities, large
//     communities, local-pref; the same number for the same set in every
//     prefix, never reused while the speaker lives).
//
// The export policy is, in order: per configured peer, "to this neighbor,
// reject a path that carries neither R:0:0 nor R:*:<its id>"; per pair of
// attribute set and peer in use, "to this neighbor, on a path that carries
// R:<attrs>:<its id>, add the communities and large communities, set
// LOCAL_PREF (100, GoBGP's default, when the route has none; the path's 0
// kept when it is 0, which GoBGP's policies cannot set) and the next hop
// (when the route names one)", without a route action so that the
// evaluation goes on; and last, "remove every R:*:* community", before the
// default: accept. eBGP peers lose LOCAL_PREF after the export policy, as
// for any path.
//
// Changing the peers or the attributes of a prefix is then an ordinary
// replacement of its path: GoBGP sends it to the peers that now accept it
// and, for peers that accepted the old path and reject the new one, a
// withdrawal (filterpath in GoBGP's server.go). A statement of an
// attribute set is added before the first path that carries its marks and
// removed after the last one is replaced; it never changes, so no soft
// reset is needed. Peers' statements are added before their sessions
// exist. A replaced path is sent again to each of its peers, also to those
// whose attributes did not change (GoBGP keeps no Adj-RIB-Out to compare
// with): a router takes such an UPDATE as a duplicate and changes nothing.

const (
	tagAll        = 0 // Local1 of the mark "every peer"
	tagPeer       = 1 // Local1 of the mark "this peer", Local2 is the peer's id
	firstAttrsTag = 2 // the first number of an attribute set (Local1 of its marks)
	stripName     = "herald-strip-marks"
	policyName    = "herald-peer-"
	attrsName     = "herald-attrs-"
)

// routeMarks returns the large communities that select the peers of a
// prefix's routes, as routeTable gives them, and their attributes when
// there are several routes.
func routeMarks(rs []Route, id func(netip.Addr) uint32, attrs func(Route) uint32) []LargeCommunity {
	if len(rs) == 1 && len(rs[0].Peers) == 0 {
		return []LargeCommunity{{Global: reservedASN, Local1: tagAll}}
	}
	var marks []LargeCommunity
	for _, r := range rs {
		tag := uint32(tagPeer)
		if len(rs) > 1 {
			tag = attrs(r)
		}
		for _, p := range r.Peers {
			marks = append(marks, LargeCommunity{Global: reservedASN, Local1: tag, Local2: id(p)})
		}
	}
	return marks
}

// attrsKey identifies a normalized route's attribute set.
func attrsKey(r Route) string {
	lp := "-"
	if r.LocalPref != nil {
		lp = strconv.FormatUint(uint64(*r.LocalPref), 10)
	}
	return fmt.Sprintf("%v|%v|%v|%s", r.NextHop, r.Communities, r.LargeCommunities, lp)
}

// attrsPair is one peer's statement of one attribute set.
type attrsPair struct {
	attrs uint32 // the attribute set's number
	peer  netip.Addr
}

// attrsPolicyName is the export policy (and its statement and defined
// sets) of one attribute set towards one peer (by the peer's id).
func attrsPolicyName(attrs, peer uint32) string {
	return attrsName + strconv.FormatUint(uint64(attrs), 10) + "-peer-" + strconv.FormatUint(uint64(peer), 10)
}

// attrsExportSets returns the neighbor set and the mark of one attribute
// set's statement towards one peer.
func attrsExportSets(addr netip.Addr, attrs, id uint32) (neighbors, marks *api.DefinedSet) {
	name := attrsPolicyName(attrs, id)
	neighbors = &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR,
		Name:        name,
		List:        []string{netip.PrefixFrom(addr, addr.BitLen()).String()},
	}
	marks = &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_LARGE_COMMUNITY,
		Name:        name,
		List:        []string{fmt.Sprintf("^%d:%d:%d$", uint32(reservedASN), attrs, id)},
	}
	return neighbors, marks
}

// attrsExportPolicy gives, towards one peer, the paths marked with an
// attribute set for it the route's attributes r. It has no route action:
// the evaluation goes on to the stripping of the marks.
func attrsExportPolicy(r Route, attrs, id uint32) *api.Policy {
	name := attrsPolicyName(attrs, id)
	act := &api.Actions{}
	if len(r.Communities) > 0 {
		cs := make([]string, len(r.Communities))
		for i, c := range r.Communities {
			cs[i] = strconv.FormatUint(uint64(c), 10)
		}
		act.Community = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: cs}
	}
	if len(r.LargeCommunities) > 0 {
		act.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: strings.Fields(joinStrings(r.LargeCommunities))}
	}
	switch {
	case r.LocalPref == nil:
		act.LocalPref = &api.LocalPrefAction{Value: defaultLocalPref}
	case *r.LocalPref != 0: // 0 is the path's own: GoBGP takes a 0 action for none
		act.LocalPref = &api.LocalPrefAction{Value: *r.LocalPref}
	}
	if r.NextHop.IsValid() {
		act.Nexthop = &api.NexthopAction{Address: r.NextHop.String()}
	}
	return &api.Policy{
		Name: name,
		Statements: []*api.Statement{{
			Name: name,
			Conditions: &api.Conditions{
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name},
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name},
			},
			Actions: act,
		}},
	}
}

// defaultLocalPref is the LOCAL_PREF GoBGP gives iBGP peers a path
// without one.
const defaultLocalPref = 100

// peerPolicyName is the export policy (and its statement and defined
// sets) of one peer.
func peerPolicyName(id uint32) string { return policyName + strconv.FormatUint(uint64(id), 10) }

// peerExportSets returns the neighbor set and the large community set of
// one peer's export statement.
func peerExportSets(addr netip.Addr, id uint32) (neighbors, marks *api.DefinedSet) {
	name := peerPolicyName(id)
	neighbors = &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR,
		Name:        name,
		List:        []string{netip.PrefixFrom(addr, addr.BitLen()).String()},
	}
	marks = &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_LARGE_COMMUNITY,
		Name:        name,
		List: []string{
			fmt.Sprintf("^%d:%d:0$", uint32(reservedASN), tagAll),
			// R:1:<id> and R:<attrs>:<id>
			fmt.Sprintf("^%d:[0-9]+:%d$", uint32(reservedASN), id),
		},
	}
	return neighbors, marks
}

// peerExportPolicy rejects, towards one peer, the paths not marked for it.
func peerExportPolicy(id uint32) *api.Policy {
	name := peerPolicyName(id)
	return &api.Policy{
		Name: name,
		Statements: []*api.Statement{{
			Name: name,
			Conditions: &api.Conditions{
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name},
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_TYPE_INVERT, Name: name},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
		}},
	}
}

// stripPolicy removes the marks from every path that is exported; with no
// route action it lets the path on to the default (accept).
func stripPolicy() *api.Policy {
	return &api.Policy{
		Name: stripName,
		Statements: []*api.Statement{{
			Name: stripName,
			Actions: &api.Actions{
				LargeCommunity: &api.CommunityAction{
					Type:        api.CommunityAction_TYPE_REMOVE,
					Communities: []string{fmt.Sprintf("^%d:[0-9]+:[0-9]+$", uint32(reservedASN))},
				},
			},
		}},
	}
}

// exportAssignment is the global export policy list: every peer's
// statement first, then the attribute sets' (by the names of their
// policies), the stripping last, accept by default.
func exportAssignment(ids []uint32, attrs []string) *api.PolicyAssignment {
	ps := make([]*api.Policy, 0, len(ids)+len(attrs)+1)
	for _, id := range ids {
		ps = append(ps, &api.Policy{Name: peerPolicyName(id)})
	}
	for _, name := range attrs {
		ps = append(ps, &api.Policy{Name: name})
	}
	ps = append(ps, &api.Policy{Name: stripName})
	return &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies:      ps,
		DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}
}

const importName = "herald-import-local-only"

// importPolicy accepts the speaker's own paths. GoBGP runs the global
// import policy on locally originated paths too, so "reject everything"
// would reject those as well.
func importPolicy() *api.Policy {
	return &api.Policy{
		Name: importName,
		Statements: []*api.Statement{{
			Name:       importName,
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
		}},
	}
}

// importAssignment rejects every path a peer sends. The speaker only
// announces: a path learnt from a router for one of the node's own
// prefixes could otherwise win the best-path selection over the local one
// and be exported in its place, and nothing else received is used.
func importAssignment() *api.PolicyAssignment {
	return &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*api.Policy{{Name: importName}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}
}
