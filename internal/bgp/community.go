package bgp

import (
	"fmt"
	"strconv"
	"strings"
)

// Community is a standard BGP community (RFC 1997): a 16-bit
// administrator (usually an AS number) and a 16-bit value, written
// "65000:100".
type Community uint32

// The well-known communities ParseCommunity accepts by name. The names are
// those of the IANA registry and of FRR's and BIRD's configurations, so a
// value copied from a router's configuration means the same here.
var wellKnownCommunities = []struct {
	name  string
	value Community
}{
	{"graceful-shutdown", 0xFFFF0000}, // RFC 8326
	{"accept-own", 0xFFFF0001},        // RFC 7611
	{"llgr-stale", 0xFFFF0006},        // RFC 9494
	{"no-llgr", 0xFFFF0007},           // RFC 9494
	{"blackhole", 0xFFFF029A},         // RFC 7999
	{"no-export", 0xFFFFFF01},         // RFC 1997
	{"no-advertise", 0xFFFFFF02},      // RFC 1997
	{"no-export-subconfed", 0xFFFFFF03},
	{"no-peer", 0xFFFFFF04}, // RFC 3765
}

// ParseCommunity parses "ADMIN:VALUE" (each 0-65535, decimal) or the name
// of a well-known community ("no-export", "no-advertise",
// "no-export-subconfed", "no-peer", "blackhole", "graceful-shutdown",
// "accept-own", "llgr-stale", "no-llgr"; case does not matter).
func ParseCommunity(s string) (Community, error) {
	s = strings.TrimSpace(s)
	for _, w := range wellKnownCommunities {
		if strings.EqualFold(s, w.name) {
			return w.value, nil
		}
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ADMIN:VALUE (e.g. 65000:100) or a well-known name such as no-export", s)
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

// String returns the well-known name, or "ADMIN:VALUE".
func (c Community) String() string {
	for _, w := range wellKnownCommunities {
		if w.value == c {
			return w.name
		}
	}
	return strconv.FormatUint(uint64(c>>16), 10) + ":" + strconv.FormatUint(uint64(c&0xFFFF), 10)
}

// LargeCommunity is a BGP large community (RFC 8092): a 32-bit global
// administrator (an AS number) and two 32-bit values, written
// "64512:1:2".
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// reservedASN is AS 4294967295, reserved by RFC 7300 and never assigned.
// The speaker marks its own paths with large communities of this
// administrator to select the peers a route is exported to (see
// export.go) and strips them before a path leaves; no real network can
// need the value, so refusing it in routes loses nothing.
const reservedASN = 4294967295

// ParseLargeCommunity parses "GLOBAL:LOCAL1:LOCAL2" (each 0-4294967295,
// decimal). The global administrator 4294967295 (RFC 7300's reserved AS)
// is refused: the speaker uses it internally.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("large community %q: want GLOBAL:LOCAL1:LOCAL2 (e.g. 64512:1:2)", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := parseUint(p, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("large community %q: part %d: %w", s, i+1, err)
		}
		v[i] = uint32(n)
	}
	lc := LargeCommunity{Global: v[0], Local1: v[1], Local2: v[2]}
	if err := lc.validate(); err != nil {
		return LargeCommunity{}, err
	}
	return lc, nil
}

func (lc LargeCommunity) validate() error {
	if lc.Global == reservedASN {
		return fmt.Errorf("large community %s: the global administrator %d is reserved (RFC 7300) and used by Herald internally", lc, uint32(reservedASN))
	}
	return nil
}

// String returns "GLOBAL:LOCAL1:LOCAL2".
func (lc LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", lc.Global, lc.Local1, lc.Local2)
}

func compareLarge(a, b LargeCommunity) int {
	switch {
	case a.Global != b.Global:
		return cmpUint(a.Global, b.Global)
	case a.Local1 != b.Local1:
		return cmpUint(a.Local1, b.Local1)
	default:
		return cmpUint(a.Local2, b.Local2)
	}
}

func cmpUint(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
