package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// TestBGPMetrics: the herald_bgp_* series follow the status: up and
// routes per peer, BFD only for peers with it, state changes counted once
// per change, and a peer's series gone with its session.
func TestBGPMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newBGPMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	status := func(torState heraldv1.BGPSessionState, bfd heraldv1.BFDState, routes int32, spine bool) *heraldv1.NodeBGP {
		st := &heraldv1.NodeBGP{Sessions: []heraldv1.BGPSession{{Peer: "tor", State: torState, BFDState: bfd, RoutesAdvertised: routes}}}
		if spine {
			st.Sessions = append(st.Sessions, heraldv1.BGPSession{Peer: "spine", State: heraldv1.BGPSessionActive})
		}
		if torState == heraldv1.BGPSessionEstablished {
			st.Advertised = []heraldv1.BGPAdvertised{{Address: "192.168.30.1", Peers: []string{"tor"}}}
		}
		return st
	}
	steps := []*heraldv1.NodeBGP{
		status(heraldv1.BGPSessionActive, heraldv1.BFDDown, 0, true),
		status(heraldv1.BGPSessionEstablished, heraldv1.BFDDown, 1, true),
		status(heraldv1.BGPSessionEstablished, heraldv1.BFDUp, 1, true),
		status(heraldv1.BGPSessionEstablished, heraldv1.BFDUp, 1, false),
	}
	var old *heraldv1.NodeBGP
	for _, s := range steps {
		m.observe(old, s)
		old = s
	}
	want := `
# HELP herald_bgp_addresses_advertised Load-balancer addresses this node advertises by BGP to at least one established peer.
# TYPE herald_bgp_addresses_advertised gauge
herald_bgp_addresses_advertised 1
# HELP herald_bgp_bfd_state_changes_total Changes of the BFD session's state with the peer, by the state entered.
# TYPE herald_bgp_bfd_state_changes_total counter
herald_bgp_bfd_state_changes_total{peer="tor",state="Down"} 1
herald_bgp_bfd_state_changes_total{peer="tor",state="Up"} 1
# HELP herald_bgp_bfd_up 1 while the BFD session with the peer is up, else 0 (peers with BFD only).
# TYPE herald_bgp_bfd_up gauge
herald_bgp_bfd_up{peer="tor"} 1
# HELP herald_bgp_routes_advertised Prefixes this node advertises to the peer.
# TYPE herald_bgp_routes_advertised gauge
herald_bgp_routes_advertised{peer="tor"} 1
# HELP herald_bgp_session_state_changes_total Changes of the BGP session's state with the peer, by the state entered.
# TYPE herald_bgp_session_state_changes_total counter
herald_bgp_session_state_changes_total{peer="spine",state="Active"} 1
herald_bgp_session_state_changes_total{peer="tor",state="Active"} 1
herald_bgp_session_state_changes_total{peer="tor",state="Established"} 1
# HELP herald_bgp_session_up 1 while this node's BGP session with the peer is established, else 0 (one series per BGPPeer that selects the node).
# TYPE herald_bgp_session_up gauge
herald_bgp_session_up{peer="tor"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	m.observe(old, nil)
	if n := testutil.CollectAndCount(m.up); n != 0 {
		t.Errorf("%d session series after BGP went away", n)
	}
}
