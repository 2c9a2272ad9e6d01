package bgp

import (
	"fmt"
	"net/netip"
	"strconv"

	api "github.com/osrg/gobgp/v4/api"
)

// Per-peer export.
//
// GoBGP keeps one RIB for every peer that is not a route-server client and
// offers per-neighbor export policies only to route-server clients (which
// would also stop it from prepending its AS). So the choice of peers per
// route is made by the one global export policy, from marks carried by the
// paths themselves:
//
//   - a route for every peer carries the large community R:0:0, where R is
//     AS 4294967295 (reserved by RFC 7300, refused in Route);
//   - a route for some peers carries R:1:<id> for each of them, where <id>
//     is a number the speaker gives each peer address (never reused while
//     the speaker lives).
//
// The export policy has one statement per configured peer, "to this
// neighbor, reject a path that carries neither R:0:0 nor R:1:<its id>", and
// a last one that removes every R:*:* community before the path leaves.
// Changing the peers of a route is then an ordinary replacement of the path:
// GoBGP sends it to the peers that now accept it and, for peers that
// accepted the old path and reject the new one, a withdrawal (filterpath in
// GoBGP's server.go). Routes need no policy change and policies need no
// soft reset; peers are added to the policy before their session exists.

const (
	tagAll     = 0 // Local1 of the mark "every peer"
	tagPeer    = 1 // Local1 of the mark "this peer", Local2 is the peer's id
	stripName  = "herald-strip-marks"
	policyName = "herald-peer-"
)

// routeMarks returns the large communities that select r's peers.
func routeMarks(r Route, id func(netip.Addr) uint32) []LargeCommunity {
	if len(r.Peers) == 0 {
		return []LargeCommunity{{Global: reservedASN, Local1: tagAll}}
	}
	marks := make([]LargeCommunity, 0, len(r.Peers))
	for _, p := range r.Peers {
		marks = append(marks, LargeCommunity{Global: reservedASN, Local1: tagPeer, Local2: id(p)})
	}
	return marks
}

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
			fmt.Sprintf("^%d:%d:%d$", uint32(reservedASN), tagPeer, id),
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
// statement first, the stripping last, accept by default.
func exportAssignment(ids []uint32) *api.PolicyAssignment {
	ps := make([]*api.Policy, 0, len(ids)+1)
	for _, id := range ids {
		ps = append(ps, &api.Policy{Name: peerPolicyName(id)})
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
