// Package community holds Herald's BGP community types: standard
// communities (RFC 1997) and large communities (RFC 8092), their parsers,
// their text form and their order. It is pure (no GoBGP, no Kubernetes), so
// that the planner (internal/bgpplan), the Kubernetes views (internal/kube)
// and the speaker (internal/bgp) share one definition.
//
// The parsers accept what the BGPAdvertisement CRD admits (api/v1alpha1:
// "a:b", the names no-export, no-advertise, no-export-subconfed, local-as,
// no-peer, blackhole, and large "a:b:c") and the further well-known names
// String prints, so that every String parses back. Names are lower case,
// as the CRD spells them; numbers are plain decimal (leading zeros allowed,
// as the CRD allows them, but no sign, spaces or base prefix).
package community

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Community is a standard BGP community (RFC 1997): a 16-bit
// administrator (usually an AS number) and a 16-bit value in one 32-bit
// number, 64512:100 being 64512<<16 | 100.
type Community uint32

// Well-known communities.
const (
	GracefulShutdown  Community = 0xFFFF0000 // RFC 8326
	AcceptOwn         Community = 0xFFFF0001 // RFC 7611
	LLGRStale         Community = 0xFFFF0006 // RFC 9494
	NoLLGR            Community = 0xFFFF0007 // RFC 9494
	Blackhole         Community = 0xFFFF029A // RFC 7999 (65535:666)
	NoExport          Community = 0xFFFFFF01 // RFC 1997
	NoAdvertise       Community = 0xFFFFFF02 // RFC 1997
	NoExportSubconfed Community = 0xFFFFFF03 // RFC 1997, also called local-as
	NoPeer            Community = 0xFFFFFF04 // RFC 3765
)

// names are the well-known names, as the IANA registry, FRR and BIRD
// spell them; the first name of a value is the one String prints.
var names = []struct {
	name  string
	value Community
}{
	{"graceful-shutdown", GracefulShutdown},
	{"accept-own", AcceptOwn},
	{"llgr-stale", LLGRStale},
	{"no-llgr", NoLLGR},
	{"blackhole", Blackhole},
	{"no-export", NoExport},
	{"no-advertise", NoAdvertise},
	{"no-export-subconfed", NoExportSubconfed},
	{"local-as", NoExportSubconfed}, // FRR's and Cisco's name, an alias
	{"no-peer", NoPeer},
}

// Parse parses "ADMIN:VALUE" (each 0-65535, decimal) or a well-known
// name: no-export, no-advertise, no-export-subconfed (alias local-as),
// no-peer, blackhole (all admitted by the BGPAdvertisement CRD), and
// graceful-shutdown, accept-own, llgr-stale, no-llgr.
func Parse(s string) (Community, error) {
	for _, n := range names {
		if s == n.name {
			return n.value, nil
		}
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ADMIN:VALUE such as 64512:100, or a well-known name such as no-export", s)
	}
	a, err := parseUint(hi, 16)
	if err != nil {
		return 0, fmt.Errorf("community %q: administrator: %w", s, err)
	}
	v, err := parseUint(lo, 16)
	if err != nil {
		return 0, fmt.Errorf("community %q: value: %w", s, err)
	}
	return Community(a<<16 | v), nil
}

// String returns the well-known name (no-export-subconfed for local-as),
// or "ADMIN:VALUE".
func (c Community) String() string {
	for _, n := range names {
		if n.value == c {
			return n.name
		}
	}
	return strconv.FormatUint(uint64(c>>16), 10) + ":" + strconv.FormatUint(uint64(c&0xFFFF), 10)
}

// Large is a BGP large community (RFC 8092): a 32-bit global
// administrator (an AS number) and two 32-bit values, written
// "64512:1:2".
type Large struct {
	Global, Local1, Local2 uint32
}

// ReservedASN is AS 4294967295, reserved by RFC 7300 and never assigned.
// Herald's speaker marks its own paths with large communities of this
// global administrator to choose the peers of a route (internal/bgp) and
// strips them before a path leaves, so a user's large community may not
// use it: ParseLarge and Large.Validate refuse it, and so does the
// BGPAdvertisement CRD at admission.
const ReservedASN = 4294967295

// ParseLarge parses "GLOBAL:LOCAL1:LOCAL2" (each 0-4294967295, decimal).
// The global administrator ReservedASN is refused.
func ParseLarge(s string) (Large, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Large{}, fmt.Errorf("large community %q: want GLOBAL:LOCAL1:LOCAL2 such as 64512:1:100", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := parseUint(p, 32)
		if err != nil {
			return Large{}, fmt.Errorf("large community %q: %s: %w", s, [3]string{"global administrator", "first value", "second value"}[i], err)
		}
		v[i] = uint32(n)
	}
	l := Large{Global: v[0], Local1: v[1], Local2: v[2]}
	if err := l.Validate(); err != nil {
		return Large{}, err
	}
	return l, nil
}

// Validate refuses the reserved global administrator (see ReservedASN).
func (l Large) Validate() error {
	if l.Global == ReservedASN {
		return fmt.Errorf("large community %s: the global administrator %d is reserved (RFC 7300) and used by Herald's BGP speaker for its own marks", l, uint32(ReservedASN))
	}
	return nil
}

// String returns "GLOBAL:LOCAL1:LOCAL2".
func (l Large) String() string {
	return strconv.FormatUint(uint64(l.Global), 10) + ":" + strconv.FormatUint(uint64(l.Local1), 10) + ":" + strconv.FormatUint(uint64(l.Local2), 10)
}

// Compare orders communities numerically (for slices.SortFunc; a plain
// cmp.Compare does the same).
func Compare(a, b Community) int { return cmp.Compare(a, b) }

// CompareLarge orders large communities numerically: global
// administrator, then first value, then second.
func CompareLarge(a, b Large) int {
	return cmp.Or(cmp.Compare(a.Global, b.Global), cmp.Compare(a.Local1, b.Local1), cmp.Compare(a.Local2, b.Local2))
}

// parseUint parses a plain decimal number of at most bits bits: no sign,
// no spaces, no base prefix, so "0x10" or "+1" are errors rather than
// surprises.
func parseUint(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range (0-%d)", s, uint64(1)<<bits-1)
	}
	return n, nil
}
