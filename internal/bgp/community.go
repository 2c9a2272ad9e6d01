package bgp

import "github.com/herald-lb/herald/internal/bgp/community"

// Community is a standard BGP community (RFC 1997); see package
// community.
type Community = community.Community

// LargeCommunity is a BGP large community (RFC 8092); see package
// community. Its global administrator may not be community.ReservedASN:
// the speaker marks its own paths with that one (export.go).
type LargeCommunity = community.Large

// ParseCommunity is community.Parse.
func ParseCommunity(s string) (Community, error) { return community.Parse(s) }

// ParseLargeCommunity is community.ParseLarge.
func ParseLargeCommunity(s string) (LargeCommunity, error) { return community.ParseLarge(s) }

// reservedASN is the global administrator of the speaker's marks.
const reservedASN = community.ReservedASN
