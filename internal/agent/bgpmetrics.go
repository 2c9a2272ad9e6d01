package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// bgpMetrics are the herald_bgp_* series of this node's BGP speaker, set
// from the same status the HeraldNode shows (so on change only).
type bgpMetrics struct {
	// up is 1 while the session with a peer is established, else 0; a
	// series per BGPPeer that selects the node.
	up *prometheus.GaugeVec
	// routes counts the prefixes advertised to a peer.
	routes *prometheus.GaugeVec
	// bfdUp is 1 while a peer's BFD session is up, 0 otherwise; only
	// for peers with BFD.
	bfdUp *prometheus.GaugeVec
	// sessionChanges and bfdChanges count state changes.
	sessionChanges *prometheus.CounterVec
	bfdChanges     *prometheus.CounterVec
	// advertised counts the addresses this node advertises.
	advertised prometheus.Gauge
}

func newBGPMetrics(reg prometheus.Registerer) (*bgpMetrics, error) {
	m := &bgpMetrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_bgp_session_up",
			Help: "1 while this node's BGP session with the peer is established, else 0 (one series per BGPPeer that selects the node).",
		}, []string{"peer"}),
		routes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_bgp_routes_advertised",
			Help: "Prefixes this node advertises to the peer.",
		}, []string{"peer"}),
		bfdUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_bgp_bfd_up",
			Help: "1 while the BFD session with the peer is up, else 0 (peers with BFD only).",
		}, []string{"peer"}),
		sessionChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bgp_session_state_changes_total",
			Help: "Changes of the BGP session's state with the peer, by the state entered.",
		}, []string{"peer", "state"}),
		bfdChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bgp_bfd_state_changes_total",
			Help: "Changes of the BFD session's state with the peer, by the state entered.",
		}, []string{"peer", "state"}),
		advertised: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_bgp_addresses_advertised",
			Help: "Load-balancer addresses this node advertises by BGP to at least one established peer.",
		}),
	}
	for _, c := range []prometheus.Collector{m.up, m.routes, m.bfdUp, m.sessionChanges, m.bfdChanges, m.advertised} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register BGP metrics: %w", err)
		}
	}
	return m, nil
}

// observe sets the series from the status now, given the one before.
func (m *bgpMetrics) observe(old, now *heraldv1.NodeBGP) {
	prev := map[string]heraldv1.BGPSession{}
	if old != nil {
		for _, s := range old.Sessions {
			prev[s.Peer] = s
		}
	}
	seen := map[string]bool{}
	advertised := 0
	if now != nil {
		advertised = len(now.Advertised)
		for _, s := range now.Sessions {
			seen[s.Peer] = true
			up := 0.0
			if s.State == heraldv1.BGPSessionEstablished {
				up = 1
			}
			m.up.WithLabelValues(s.Peer).Set(up)
			m.routes.WithLabelValues(s.Peer).Set(float64(s.RoutesAdvertised))
			p, had := prev[s.Peer]
			if !had || p.State != s.State {
				m.sessionChanges.WithLabelValues(s.Peer, string(s.State)).Inc()
			}
			if s.BFDState != "" {
				bfd := 0.0
				if s.BFDState == heraldv1.BFDUp {
					bfd = 1
				}
				m.bfdUp.WithLabelValues(s.Peer).Set(bfd)
				if !had || p.BFDState != s.BFDState {
					m.bfdChanges.WithLabelValues(s.Peer, string(s.BFDState)).Inc()
				}
			} else {
				m.bfdUp.DeleteLabelValues(s.Peer)
			}
		}
	}
	for peer := range prev {
		if !seen[peer] {
			m.up.DeleteLabelValues(peer)
			m.routes.DeleteLabelValues(peer)
			m.bfdUp.DeleteLabelValues(peer)
		}
	}
	m.advertised.Set(float64(advertised))
}
