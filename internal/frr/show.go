package frr

import (
	"context"
	"fmt"
	"net/netip"
)

// Neighbor is the part of `show bgp neighbors json` the tests read.
type Neighbor struct {
	RemoteAS       uint32 `json:"remoteAs"`
	LocalAS        uint32 `json:"localAs"`
	State          string `json:"bgpState"`
	LastResetDueTo string `json:"lastResetDueTo"`
	// LastNotificationReason is FRR's text for the last NOTIFICATION
	// sent or received.
	LastNotificationReason string `json:"lastNotificationReason"`
	// GracefulRestart tells what the neighbor announced: RemoteMode is
	// "Restart" when it sent the graceful restart capability.
	GracefulRestart struct {
		RemoteMode string `json:"remoteGrMode"`
	} `json:"gracefulRestartInfo"`
	// Host is the neighbor's end of the TCP connection.
	Host string `json:"hostForeign"`
	// MessageStats counts the messages of the session.
	MessageStats struct {
		UpdatesRecv uint64 `json:"updatesRecv"`
	} `json:"messageStats"`
}

// Neighbors returns the BGP neighbors by address.
func (r *Router) Neighbors(ctx context.Context) (map[string]Neighbor, error) {
	var m map[string]Neighbor
	if err := r.VTYJSON(ctx, "show bgp neighbors json", &m); err != nil {
		return nil, err
	}
	return m, nil
}

// Path is one path of a prefix in the BGP table, as
// `show bgp <afi> unicast <prefix> json` prints it.
type Path struct {
	ASPath struct {
		String string `json:"string"`
	} `json:"aspath"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	// LocalPref is nil when the path has no LOCAL_PREF attribute.
	LocalPref *uint32 `json:"locPrf"`
	Valid     bool    `json:"valid"`
	Nexthops  []struct {
		IP    string `json:"ip"`
		Scope string `json:"scope"`
	} `json:"nexthops"`
	Peer struct {
		// PeerID is the neighbor's address.
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// Paths returns the BGP table's paths for one prefix (none if the table
// lacks it).
func (r *Router) Paths(ctx context.Context, prefix netip.Prefix) ([]Path, error) {
	afi := "ipv4"
	if prefix.Addr().Is6() {
		afi = "ipv6"
	}
	var out struct {
		Paths []Path `json:"paths"`
	}
	if err := r.VTYJSON(ctx, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &out); err != nil {
		return nil, err
	}
	return out.Paths, nil
}

// BFDPeer is one entry of `show bfd peers json`.
type BFDPeer struct {
	Peer   string `json:"peer"`
	Status string `json:"status"`
}

// BFDPeers returns the BFD sessions.
func (r *Router) BFDPeers(ctx context.Context) ([]BFDPeer, error) {
	var out []BFDPeer
	if err := r.VTYJSON(ctx, "show bfd peers json", &out); err != nil {
		return nil, err
	}
	return out, nil
}
