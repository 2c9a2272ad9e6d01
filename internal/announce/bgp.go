package announce

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// BGPPeerRef names a BGP peer in messages.
type BGPPeerRef struct {
	// Name is the BGPPeer's name.
	Name string
	// Addr is the peer's address; ASN its AS number.
	Addr netip.Addr
	ASN  uint32
}

// String renders "tor (192.168.10.1, AS 64512)".
func (p BGPPeerRef) String() string {
	return fmt.Sprintf("%s (%s, AS %d)", p.Name, p.Addr, p.ASN)
}

// Advertiser is a node that advertises an address by BGP, to peers whose
// sessions are established (its agent's report).
type Advertiser struct {
	Node  string
	Peers []BGPPeerRef
	// NotReady: its Node is known not to be Ready, so its report may be
	// stale (a dead node's routes leave the routers with its sessions).
	NotReady bool
}

// WithBGP adds the nodes that advertise s's address by BGP to s. An
// address nobody answers for on the LAN but some Ready node advertises is
// Announced: the routers send its traffic to those nodes. An answered
// one keeps its reason; the message says both.
func WithBGP(s AddrSummary, advertisers []Advertiser) AddrSummary {
	byPeer := map[BGPPeerRef][]string{}
	for _, a := range advertisers {
		if a.NotReady {
			continue
		}
		for _, p := range a.Peers {
			if !slices.Contains(byPeer[p], a.Node) {
				byPeer[p] = append(byPeer[p], a.Node)
			}
		}
	}
	if len(byPeer) == 0 {
		return s
	}
	// Peers that hear the same nodes are named together.
	type group struct {
		nodes []string
		peers []string
	}
	var groups []*group
	refs := make([]BGPPeerRef, 0, len(byPeer))
	for p := range byPeer {
		refs = append(refs, p)
	}
	sort.Slice(refs, func(i, j int) bool {
		return refs[i].Name < refs[j].Name || (refs[i].Name == refs[j].Name && refs[i].Addr.Less(refs[j].Addr))
	})
	for _, p := range refs {
		nodes := byPeer[p]
		sort.Strings(nodes)
		i := slices.IndexFunc(groups, func(g *group) bool { return slices.Equal(g.nodes, nodes) })
		if i < 0 {
			groups = append(groups, &group{nodes: nodes})
			i = len(groups) - 1
		}
		groups[i].peers = append(groups[i].peers, p.String())
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("by %s to %s", nodeNames(g.nodes), strings.Join(g.peers, ", "))
	}
	msg := "advertised by BGP " + strings.Join(parts, "; ")
	if s.Answered {
		s.Message += "; " + msg
		return s
	}
	s.Answered = true
	s.Reason = Announced
	s.Message = fmt.Sprintf("%s %s", s.Addr, msg)
	return s
}
