package ipam

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
)

// FieldError is a parse error that names the offending field and value, so
// the controller can put it in a condition and a user can find the typo.
//
// Field is "cidr", "start" or "stop" for [ParseBlock], and
// "metadata.annotations[<key>]" or "spec.loadBalancerIP" for [ParseRequest].
type FieldError struct {
	// Field names the input that is wrong.
	Field string
	// Value is the offending value as given (empty when the field is
	// missing).
	Value string
	// Detail says what is wrong with it, for a human.
	Detail string
	// Err is the underlying error, if any (for example from net/netip).
	Err error
}

// Error formats the error as `field: "value" detail: cause`.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Field)
	b.WriteString(": ")
	if e.Value != "" {
		b.WriteString(strconv.Quote(e.Value))
		b.WriteByte(' ')
	}
	b.WriteString(e.Detail)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error, so errors.Is/As see through.
func (e *FieldError) Unwrap() error { return e.Err }

// ParseBlock parses a pool block given as a CIDR xor a start[-stop] pair (a
// lone start is one address).
//
// For a CIDR, unless allowFirstLast, the first and last addresses (network
// and broadcast) are left out, except for IPv4 /31 and /32 and IPv6 /127 and
// /128, which have no such addresses to spare. A CIDR with host bits set
// ("192.168.10.1/24") is refused, as Kubernetes refuses it, because it
// usually means a typo and silently masking it would hand out addresses the
// user did not mean.
//
// IPv4-mapped IPv6 addresses ("::ffff:10.0.0.1") and zones ("fe80::1%eth0")
// are refused: they would make one address have two spellings.
//
// Errors are *FieldError naming "cidr", "start" or "stop".
func ParseBlock(cidr, start, stop string, allowFirstLast bool) (Block, error) {
	switch {
	case cidr != "" && (start != "" || stop != ""):
		return Block{}, &FieldError{Field: "cidr", Value: cidr, Detail: "must not be set together with start/stop"}
	case cidr != "":
		return parseCIDR(cidr, allowFirstLast)
	case start == "" && stop != "":
		return Block{}, &FieldError{Field: "start", Detail: "is required when stop is set"}
	case start == "":
		return Block{}, &FieldError{Field: "cidr", Detail: "one of cidr or start is required"}
	}
	first, err := parseBlockAddr("start", start)
	if err != nil {
		return Block{}, err
	}
	if stop == "" {
		return Block{First: first, Last: first}, nil
	}
	last, err := parseBlockAddr("stop", stop)
	if err != nil {
		return Block{}, err
	}
	if first.Is4() != last.Is4() {
		return Block{}, &FieldError{Field: "stop", Value: stop,
			Detail: fmt.Sprintf("is %s but start %q is %s", FamilyOf(last), start, FamilyOf(first))}
	}
	if last.Less(first) {
		return Block{}, &FieldError{Field: "stop", Value: stop, Detail: fmt.Sprintf("is before start %q", start)}
	}
	if overlapsMapped(first, last) {
		return Block{}, &FieldError{Field: "stop", Value: stop, Detail: mappedDetail}
	}
	return Block{First: first, Last: last}, nil
}

// mappedDetail explains why a block may not reach into ::ffff:0:0/96.
const mappedDetail = "makes the block overlap the IPv4-mapped range ::ffff:0.0.0.0/96; write IPv4 addresses as an IPv4 block"

// overlapsMapped reports whether the IPv6 range [first, last] overlaps
// ::ffff:0:0/96. Its addresses are IPv4 addresses in IPv6 spelling: handing
// one out would give one address two identities (the allocator unmaps every
// address it is given), so no block may contain them.
func overlapsMapped(first, last netip.Addr) bool {
	if first.Is4() {
		return false
	}
	lo := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff})
	hi := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})
	return !last.Less(lo) && !hi.Less(first)
}

// parseBlockAddr parses one end of a start/stop block.
func parseBlockAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, &FieldError{Field: field, Value: s, Detail: "is not a valid IP address", Err: err}
	}
	if err := checkPlainAddr(a); err != nil {
		return netip.Addr{}, &FieldError{Field: field, Value: s, Detail: "is not usable", Err: err}
	}
	return a, nil
}

// checkPlainAddr refuses the spellings that would give one address two
// identities in the allocator (zones, IPv4-mapped IPv6).
func checkPlainAddr(a netip.Addr) error {
	if a.Zone() != "" {
		return fmt.Errorf("zone %q is not allowed", a.Zone())
	}
	if a.Is4In6() {
		return fmt.Errorf("IPv4-mapped IPv6 address is not allowed, write %s", a.Unmap())
	}
	return nil
}

// parseCIDR parses the cidr form of a block.
func parseCIDR(cidr string, allowFirstLast bool) (Block, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Block{}, &FieldError{Field: "cidr", Value: cidr, Detail: "is not a valid CIDR", Err: err}
	}
	if err := checkPlainAddr(p.Addr()); err != nil {
		return Block{}, &FieldError{Field: "cidr", Value: cidr, Detail: "is not usable", Err: err}
	}
	if m := p.Masked(); m != p {
		return Block{}, &FieldError{Field: "cidr", Value: cidr,
			Detail: fmt.Sprintf("has host bits set (the network is %s; to use one address, write %s/%d)",
				m, p.Addr(), p.Addr().BitLen())}
	}
	b := Block{First: p.Addr(), Last: prefixLast(p)}
	// /31, /32, /127 and /128 have no network or broadcast address to skip
	// (RFC 3021); everything larger loses its first and last address.
	if !allowFirstLast && p.Bits() < p.Addr().BitLen()-1 {
		b.First, b.Last = b.First.Next(), b.Last.Prev()
	}
	if overlapsMapped(b.First, b.Last) {
		return Block{}, &FieldError{Field: "cidr", Value: cidr,
			Detail: "overlaps the IPv4-mapped range ::ffff:0.0.0.0/96; write IPv4 addresses as an IPv4 block"}
	}
	return b, nil
}

// prefixLast returns the last address of a masked prefix.
func prefixLast(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if a.Is4() {
		v := a.As4()
		n := binary.BigEndian.Uint32(v[:])
		if p.Bits() < 32 {
			n |= ^uint32(0) >> p.Bits()
		}
		binary.BigEndian.PutUint32(v[:], n)
		return netip.AddrFrom4(v)
	}
	u := u128Of(a)
	host := p.Bits()
	switch {
	case host == 0:
		u = u128{^uint64(0), ^uint64(0)}
	case host < 64:
		u.hi |= ^uint64(0) >> host
		u.lo = ^uint64(0)
	case host < 128:
		u.lo |= ^uint64(0) >> (host - 64)
	}
	return u.addr6()
}

// valid reports whether b is a usable block: both ends valid, without
// zones, of one family, First <= Last, and clear of the IPv4-mapped range.
// These are exactly the blocks ParseBlock returns; blocks made otherwise
// may break the rules, and the allocator ignores them instead of
// misbehaving.
func (b Block) valid() bool {
	return b.First.IsValid() && b.Last.IsValid() &&
		b.First.Zone() == "" && b.Last.Zone() == "" &&
		b.First.Is4() == b.Last.Is4() && !b.Last.Less(b.First) &&
		!overlapsMapped(b.First, b.Last)
}

// Family returns the block's address family, or 0 for an invalid block.
func (b Block) Family() Family {
	if !b.valid() {
		return 0
	}
	return FamilyOf(b.First)
}

// Contains reports whether a lies in the block. An invalid block contains
// nothing, and a zoned address is never contained.
func (b Block) Contains(a netip.Addr) bool {
	return b.valid() && a.IsValid() && a.Zone() == "" && a.Is4() == b.First.Is4() &&
		!a.Less(b.First) && !b.Last.Less(a)
}

// Size returns the number of addresses in the block (0 for an invalid
// block). It is a big.Int because an IPv6 block can hold up to 2^128.
func (b Block) Size() *big.Int {
	if !b.valid() {
		return new(big.Int)
	}
	n := u128Of(b.Last).sub(u128Of(b.First)).big()
	return n.Add(n, big.NewInt(1))
}

// String returns "first-last", or the single address when First == Last,
// the way pools are written in the tutorial ("192.168.10.75-192.168.10.78").
func (b Block) String() string {
	if !b.valid() {
		return fmt.Sprintf("invalid block %s-%s", b.First, b.Last)
	}
	if b.First == b.Last {
		return b.First.String()
	}
	return b.First.String() + "-" + b.Last.String()
}

// compareBlocks orders blocks by First, then Last.
func compareBlocks(x, y Block) int {
	if c := x.First.Compare(y.First); c != 0 {
		return c
	}
	return x.Last.Compare(y.Last)
}

// mergeBlocks returns the union of sorted valid blocks as sorted, disjoint,
// non-adjacent blocks. Used for counting a pool's distinct addresses even
// when its blocks overlap.
func mergeBlocks(sorted []Block) []Block {
	var out []Block
	for _, b := range sorted {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.Last.Next(); next.IsValid() && !next.Less(b.First) {
				if last.Last.Less(b.Last) {
					last.Last = b.Last
				}
				continue
			}
			if !last.Last.Less(b.First) { // overlap at the family's top address
				continue
			}
		}
		out = append(out, b)
	}
	return out
}

// u128 is an address as a 128-bit unsigned number (IPv4 in its IPv4-mapped
// form), for the arithmetic netip does not offer. Only differences between
// addresses of one family are ever taken, so the mapping does not matter.
type u128 struct{ hi, lo uint64 }

// u128Of converts an address; the zero Addr becomes 0.
func u128Of(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// addr6 converts back to an IPv6 address.
func (x u128) addr6() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b)
}

// sub returns x-y (mod 2^128).
func (x u128) sub(y u128) u128 {
	lo, borrow := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, borrow)
	return u128{hi, lo}
}

// big returns x as a new big.Int.
func (x u128) big() *big.Int {
	n := new(big.Int).SetUint64(x.hi)
	n.Lsh(n, 64)
	return n.Or(n, new(big.Int).SetUint64(x.lo))
}

// span returns hi-lo+1 for lo <= hi of one family, saturated at the
// largest uint64 (only reachable for IPv6 runs far larger than anything the
// allocator hands out).
func span(lo, hi netip.Addr) uint64 {
	d := u128Of(hi).sub(u128Of(lo))
	if d.hi != 0 || d.lo == ^uint64(0) {
		return ^uint64(0)
	}
	return d.lo + 1
}
