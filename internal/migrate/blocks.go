package migrate

import (
	"fmt"
	"net/netip"
	"strings"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// block is one parsed address range, with the form it was written in.
type block struct {
	prefix      netip.Prefix // valid for a CIDR
	start, stop netip.Addr   // valid for a range (stop == start: one address)
}

// herald returns b as a Herald IPBlock.
func (b block) herald() heraldv1.IPBlock {
	if b.prefix.IsValid() {
		return heraldv1.IPBlock{CIDR: b.prefix.String()}
	}
	if b.stop == b.start {
		return heraldv1.IPBlock{Start: b.start.String()}
	}
	return heraldv1.IPBlock{Start: b.start.String(), Stop: b.stop.String()}
}

// hasFirstLast reports whether b is a CIDR whose first and last addresses
// Herald reserves unless allowFirstLastIPs is set (every prefix but /31,
// /32, /127 and /128).
func (b block) hasFirstLast() bool {
	return b.prefix.IsValid() && b.prefix.Bits() < b.prefix.Addr().BitLen()-1
}

// parseCIDR reads a CIDR and masks it; masked reports that host bits were
// set (Herald refuses such a CIDR, the peers used its network).
func parseCIDR(s string) (b block, masked bool, err error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return block{}, false, fmt.Errorf("%q is not a CIDR: %w", s, err)
	}
	if p.Addr().Is4In6() {
		return block{}, false, fmt.Errorf("%q: write IPv4 addresses as IPv4", s)
	}
	m := p.Masked()
	return block{prefix: m}, m != p, nil
}

// parseRange reads start and stop (stop empty: one address).
func parseRange(start, stop string) (block, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(start))
	if err != nil {
		return block{}, fmt.Errorf("%q is not an IP address: %w", start, err)
	}
	z := a
	if strings.TrimSpace(stop) != "" {
		if z, err = netip.ParseAddr(strings.TrimSpace(stop)); err != nil {
			return block{}, fmt.Errorf("%q is not an IP address: %w", stop, err)
		}
	}
	if a.Is4In6() || z.Is4In6() {
		return block{}, fmt.Errorf("%s-%s: write IPv4 addresses as IPv4", start, stop)
	}
	if a.Is4() != z.Is4() {
		return block{}, fmt.Errorf("%s-%s: start and stop of different families", start, stop)
	}
	if z.Less(a) {
		return block{}, fmt.Errorf("%s-%s: start after stop", start, stop)
	}
	return block{start: a, stop: z}, nil
}

// parseMetalLBAddress reads one entry of a MetalLB pool's addresses: a
// CIDR or "start-stop".
func parseMetalLBAddress(s string) (b block, masked bool, err error) {
	if strings.Contains(s, "/") {
		return parseCIDR(s)
	}
	start, stop, ok := strings.Cut(s, "-")
	if !ok {
		// MetalLB wants /32 for one address; one address reads the same.
		b, err := parseRange(s, "")
		return b, false, err
	}
	b, err = parseRange(start, stop)
	return b, false, err
}

// buggyInside reports whether b holds an IPv4 address ending in .0 or
// .255 that Herald would hand out even without allowFirstLastIPs (one
// that is not the first or last address of a CIDR block): MetalLB's
// avoidBuggyIPs skips those.
func (b block) buggyInside() bool {
	if b.prefix.IsValid() {
		// A /24 or longer holds a .0 or .255 only as its first or last
		// address; a shorter one holds .255/.0 pairs inside.
		return b.prefix.Addr().Is4() && b.prefix.Bits() < 24
	}
	if !b.start.Is4() {
		return false
	}
	s, z := b.start.As4(), b.stop.As4()
	if s[3] == 0 || s[3] == 255 || z[3] == 0 || z[3] == 255 {
		return true
	}
	// A range that crosses a /24 boundary holds its .255 and the next .0.
	return s[0] != z[0] || s[1] != z[1] || s[2] != z[2]
}
