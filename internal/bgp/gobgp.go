package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// This file converts the package's types to GoBGP's.

// family returns the address family of an address.
func family(a netip.Addr) bgppkt.Family {
	if a.Is4() {
		return bgppkt.RF_IPv4_UC
	}
	return bgppkt.RF_IPv6_UC
}

// apiFamily is family in the protobuf form GoBGP's peer API takes.
func apiFamily(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// idleHoldAfterReset is the Idle wait, in seconds, after the speaker reset
// a session (see peerToAPI).
const idleHoldAfterReset = 5

// peerToAPI builds GoBGP's neighbor configuration from a normalized peer;
// with bfd false it leaves BFD out even if the peer has it (see armBFD).
func peerToAPI(p Peer, bfd bool) *api.Peer {
	seconds := func(d time.Duration) uint64 { return uint64(d / time.Second) }
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.PeerASN,
			LocalAsn:        p.LocalASN, // 0: GoBGP uses the global ASN
			AuthPassword:    p.Password,
		},
		// GoBGP reads RouteReflector.RouteReflectorClusterId without a nil
		// check when Conf is set.
		RouteReflector: &api.RouteReflector{},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.KeepaliveTime),
			ConnectRetry:      seconds(p.ConnectRetry),
			// After a reset by the speaker itself, which is what a BFD
			// session going down does, GoBGP waits this long in Idle
			// before it dials again: by default 30 s, during which a
			// node back from a short outage would stay unreachable. 5 s
			// is GoBGP's wait after any other failure.
			IdleHoldTimeAfterReset: idleHoldAfterReset,
		}},
		Transport: &api.Transport{
			RemotePort: uint32(p.Port),
		},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: apiFamily(p.Address), Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{
				Config: &api.MpGracefulRestartConfig{Enabled: p.GracefulRestart.Enabled},
			},
		}},
	}
	if p.LocalAddress.IsValid() {
		ap.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.EBGPMultihopTTL > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihopTTL)}
	}
	if p.GracefulRestart.Enabled {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(p.GracefulRestart.RestartTime / time.Second),
		}
	}
	if p.BFD != nil && bfd {
		ap.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(p.BFD.MinTx.Microseconds()),
			RequiredMinimumReceive:   uint32(p.BFD.MinRx.Microseconds()),
			DetectionMultiplier:      uint32(p.BFD.Multiplier),
		}
	} else {
		ap.Bfd = &api.BfdPeerConfig{}
	}
	return ap
}

// routeToPath builds the path GoBGP originates for a normalized route,
// with the export marks of its peers (see export.go).
func routeToPath(r Route, marks []LargeCommunity) (*apiutil.Path, error) {
	nlri, err := bgppkt.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", r.Prefix, err)
	}
	fam := family(r.Prefix.Addr())
	nh := r.NextHop
	if !nh.IsValid() {
		// An unspecified next hop on a local path makes GoBGP put each
		// session's local address in its place (UpdatePathAttrs).
		nh = netip.IPv6Unspecified()
		if r.Prefix.Addr().Is4() {
			nh = netip.IPv4Unspecified()
		}
	}
	attrs := []bgppkt.PathAttributeInterface{bgppkt.NewPathAttributeOrigin(bgppkt.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if fam == bgppkt.RF_IPv4_UC {
		a, err := bgppkt.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, fmt.Errorf("route %s: next hop: %w", r.Prefix, err)
		}
		attrs = append(attrs, a)
	} else {
		a, err := bgppkt.NewPathAttributeMpReachNLRI(fam, []bgppkt.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, fmt.Errorf("route %s: next hop: %w", r.Prefix, err)
		}
		attrs = append(attrs, a)
	}
	if len(r.Communities) > 0 {
		cs := make([]uint32, len(r.Communities))
		for i, c := range r.Communities {
			cs[i] = uint32(c)
		}
		attrs = append(attrs, bgppkt.NewPathAttributeCommunities(cs))
	}
	lcs := make([]*bgppkt.LargeCommunity, 0, len(r.LargeCommunities)+len(marks))
	for _, lc := range append(append([]LargeCommunity(nil), r.LargeCommunities...), marks...) {
		lcs = append(lcs, bgppkt.NewLargeCommunity(lc.Global, lc.Local1, lc.Local2))
	}
	if len(lcs) > 0 {
		attrs = append(attrs, bgppkt.NewPathAttributeLargeCommunities(lcs))
	}
	if r.LocalPref != nil {
		attrs = append(attrs, bgppkt.NewPathAttributeLocalPref(*r.LocalPref))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}
