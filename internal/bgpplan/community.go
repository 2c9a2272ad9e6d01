package bgpplan

import "github.com/herald-lb/herald/internal/bgp/community"

// Community is a BGP community (RFC 1997); see package community.
type Community = community.Community

// LargeCommunity is a BGP large community (RFC 8092); see package
// community.
type LargeCommunity = community.Large

// Well-known communities that BGPAdvertisement accepts by name.
const (
	NoExport          = community.NoExport
	NoAdvertise       = community.NoAdvertise
	NoExportSubconfed = community.NoExportSubconfed // also called local-as
	NoPeer            = community.NoPeer
	Blackhole         = community.Blackhole
)

// ParseCommunity is community.Parse: "a:b" or a well-known name, as the
// BGPAdvertisement CRD admits them.
func ParseCommunity(s string) (Community, error) { return community.Parse(s) }

// ParseLargeCommunity is community.ParseLarge: "a:b:c", the global
// administrator 4294967295 refused (the CRD refuses it too).
func ParseLargeCommunity(s string) (LargeCommunity, error) { return community.ParseLarge(s) }
