package bgpplan

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Community is a BGP community (RFC 1997): two 16-bit halves in one
// 32-bit value, 64512:100 being 64512<<16 | 100.
type Community uint32

// Well-known communities that BGPAdvertisement accepts by name.
const (
	NoExport          Community = 0xFFFFFF01 // RFC 1997
	NoAdvertise       Community = 0xFFFFFF02 // RFC 1997
	NoExportSubconfed Community = 0xFFFFFF03 // RFC 1997, also called local-as
	NoPeer            Community = 0xFFFFFF04 // RFC 3765
	Blackhole         Community = 0xFFFF029A // RFC 7999 (65535:666)
)

// wellKnown maps the accepted names to their values; local-as is an alias
// of no-export-subconfed (FRR's and Cisco's name for it).
var wellKnown = map[string]Community{
	"no-export":           NoExport,
	"no-advertise":        NoAdvertise,
	"no-export-subconfed": NoExportSubconfed,
	"local-as":            NoExportSubconfed,
	"no-peer":             NoPeer,
	"blackhole":           Blackhole,
}

// ParseCommunity parses "a:b" (each 0..65535) or a well-known name
// (no-export, no-advertise, no-export-subconfed, local-as, no-peer,
// blackhole), as the BGPAdvertisement CRD admits them.
func ParseCommunity(s string) (Community, error) {
	if c, ok := wellKnown[s]; ok {
		return c, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want two numbers such as 64512:100, or a well-known name", s)
	}
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: each number must be from 0 to 65535", s)
	}
	return Community(a<<16 | b), nil
}

// String renders a well-known community by name (local-as as
// no-export-subconfed), any other as "a:b".
func (c Community) String() string {
	switch c {
	case NoExport:
		return "no-export"
	case NoAdvertise:
		return "no-advertise"
	case NoExportSubconfed:
		return "no-export-subconfed"
	case NoPeer:
		return "no-peer"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF)
}

// LargeCommunity is a BGP large community (RFC 8092).
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// ParseLargeCommunity parses "a:b:c", each 0..4294967295.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("large community %q: want three numbers such as 64512:1:100", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("large community %q: each number must be from 0 to 4294967295", s)
		}
		v[i] = uint32(n)
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

// String renders "a:b:c".
func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
}

// compareLarge orders large communities numerically.
func compareLarge(a, b LargeCommunity) int {
	return cmp.Or(cmp.Compare(a.Global, b.Global), cmp.Compare(a.Local1, b.Local1), cmp.Compare(a.Local2, b.Local2))
}
