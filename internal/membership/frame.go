package membership

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// Wire constants of the heartbeat frame (see the package documentation for
// the layout). They are part of the protocol: changing any of them needs a
// new Version.
const (
	// EtherType is the IEEE 802 "local experimental" EtherType 1 that
	// heartbeats use; the socket is bound to it so the kernel delivers only
	// these frames.
	EtherType = 0x88B5
	// Version is the frame format version this package speaks. Frames of
	// any other version are malformed.
	Version = 3
	// MACLen is the length of each truncated HMAC-SHA256 in the MAC list.
	MACLen = 16
	// KeyIDLen is the length of a key ID (see KeyID).
	KeyIDLen = 4
	// MaxKeys is the most keys a Keyring holds, and so the most MACs a
	// frame carries.
	MaxKeys = 4
	// TokenLen is the length of an identity token (see IdentityToken).
	TokenLen = 8
	// MaxEchoes is the most identity tokens one frame echoes.
	MaxEchoes = 32
	// MaxRequests is the most identity tokens one frame carries in its
	// request list (peers whose full state the sender asks for).
	MaxRequests = 32
	// DigestLen is the length of a state digest (see StateDigest).
	DigestLen = 8
	// MaxNodeNameLen is the longest node name a frame carries (a
	// Kubernetes node name is a DNS subdomain, at most 253 bytes).
	MaxNodeNameLen = 253
	// MaxParts is the most frames one heartbeat may be split into.
	MaxParts = 64
	// MaxPayload is the largest Ethernet payload a frame uses: the
	// standard 1500-byte MTU, so heartbeats cross any Ethernet segment.
	MaxPayload = 1500
	// MinKeyLen is the shortest HMAC key accepted (128 bits).
	MinKeyLen = 16

	// ethHeaderLen is destination MAC, source MAC and EtherType.
	ethHeaderLen = 14
	// digestOff is the offset of the state digest in the fixed header.
	digestOff = 36
	// keyCountOff is the offset of the key count: the fixed header ends
	// there, and the variable fields follow.
	keyCountOff = digestOff + DigestLen
	// minAuthLen is the shortest authenticated part: the fixed header,
	// the key count, one key ID, a one-byte name with its length, empty
	// echo and request lists and an empty entry list.
	minAuthLen = keyCountOff + 1 + KeyIDLen + 2 + 1 + 1 + 2
	// magic opens every heartbeat payload.
	magic = "HRLD"

	flagLeaving   = 0x01
	flagChallenge = 0x02
	flagFull      = 0x04
	flagKnownBits = flagLeaving | flagChallenge | flagFull
	tagEligible   = 0x01
	tagClaimed    = 0x02
	tagIPv6       = 0x80
	tagKnownBits  = tagEligible | tagClaimed | tagIPv6

	// maxIntervalMS is the largest interval the 16-bit field holds.
	maxIntervalMS = 0xFFFF
)

// Error is a constant error kind returned (wrapped) by the codec; compare
// with errors.Is.
type Error string

// Error implements error.
func (e Error) Error() string { return string(e) }

// Error kinds of Decode; each maps to a drop reason in the metrics.
const (
	// ErrMalformed: the frame is not a well-formed heartbeat of this
	// version.
	ErrMalformed Error = "malformed heartbeat"
	// ErrForeignCluster: a well-formed heartbeat of another cluster
	// sharing the segment.
	ErrForeignCluster Error = "heartbeat of another cluster"
	// ErrAuth: the heartbeat carries this cluster's hash but does not
	// authenticate under this Codec's keys. Decode returns it as an
	// *AuthError.
	ErrAuth Error = "heartbeat authentication failed"
)

// AuthError is Decode's error for a heartbeat that carries this cluster's
// hash but fails authentication: it names no key this Codec holds, or its
// MAC for the first key it names that this Codec holds does not verify.
// Such a frame most likely comes from a Herald agent of this cluster with
// another key (a Secret out of sync), so the fields identify the sender
// for a report. They are read from unauthenticated bytes: anyone on the
// segment can put anything there, so they must never be trusted for
// anything but reporting. errors.Is(err, ErrAuth) holds.
type AuthError struct {
	// Node is the node name the frame claims, or "" when the frame holds
	// no valid one.
	Node string
	// KeyIDs are the IDs of the keys the frame claims to be signed with,
	// in frame order.
	KeyIDs []KeyID
	// Source is the frame's Ethernet source address.
	Source net.HardwareAddr
	// CommonKey reports that the frame names a key this Codec holds and
	// its MAC for that key is wrong: a corrupted or forged frame, or
	// (with odds of 2^-32) a different key with the same fingerprint. When
	// false, the frame names none of this Codec's keys.
	CommonKey bool
}

// Error implements error.
func (e *AuthError) Error() string {
	why := "signed with none of our keys"
	if e.CommonKey {
		why = "MAC does not verify"
	}
	node := e.Node
	if node == "" {
		node = "(no valid name)"
	}
	return fmt.Sprintf("%s: %s from node %s (key fingerprints %v, source %s)", ErrAuth, why, node, e.Fingerprints(), e.Source)
}

// Unwrap returns ErrAuth, so that errors.Is(err, ErrAuth) matches.
func (e *AuthError) Unwrap() error { return ErrAuth }

// Fingerprints renders KeyIDs as key fingerprints.
func (e *AuthError) Fingerprints() []string { return fingerprints(e.KeyIDs) }

// Token is an identity token: it names one incarnation of one node (see
// IdentityToken).
type Token [TokenLen]byte

// String renders the token in hex.
func (t Token) String() string { return hex.EncodeToString(t[:]) }

// IdentityToken is the token a Member asks its peers to echo: the first 8
// bytes of SHA-256(node || 0x00 || incarnation as 8 big-endian bytes). It
// is not secret; what matters is that it names an incarnation, and
// incarnations only grow, so no frame sent before an incarnation existed
// can carry its token.
func IdentityToken(node string, incarnation uint64) Token {
	h := sha256.New()
	h.Write([]byte(node))
	var b [9]byte
	binary.BigEndian.PutUint64(b[1:], incarnation)
	h.Write(b[:])
	var sum [sha256.Size]byte
	return Token(h.Sum(sum[:0])[:TokenLen])
}

// Digest names one state of a sender — its eligible and claimed
// addresses — in DigestLen bytes (see StateDigest). Every heartbeat
// carries its sender's, so that a receiver can tell whether the lists it
// holds are the sender's current ones without receiving them.
type Digest [DigestLen]byte

// String renders the digest in hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// stateDigestContext separates state digests from any other use of
// SHA-256, and versions their definition.
const stateDigestContext = "herald heartbeat state v3\x00"

// StateDigest is the digest of a state: the first 8 bytes of
// SHA-256("herald heartbeat state v3" 0x00 || entries), where entries is
// the state's merged, tagged address list exactly as frames carry it (see
// the package documentation), with every part's entries concatenated.
// Addresses are normalised first, as Encode does (IPv4-mapped IPv6
// unmapped, zones dropped, sorted, duplicates removed), so any two lists
// naming the same addresses have the same digest. Invalid addresses are
// skipped.
func StateDigest(eligible, claims []netip.Addr) Digest {
	es, _ := entries(validOnly(eligible), validOnly(claims))
	return digestEntries(es)
}

// validOnly returns in without its invalid addresses (in itself when it
// has none).
func validOnly(in []netip.Addr) []netip.Addr {
	for i, a := range in {
		if !a.IsValid() {
			out := slices.Clone(in[:i])
			for _, b := range in[i+1:] {
				if b.IsValid() {
					out = append(out, b)
				}
			}
			return out
		}
	}
	return in
}

// digestEntries is StateDigest of an entry list already in canonical
// order.
func digestEntries(es []entry) Digest {
	h := sha256.New()
	h.Write([]byte(stateDigestContext))
	var b [17]byte
	for _, e := range es {
		h.Write(e.append(b[:0]))
	}
	var sum [sha256.Size]byte
	return Digest(h.Sum(sum[:0])[:DigestLen])
}

// emptyDigest is the digest of the empty state (no eligible address, no
// claim). Every receiver knows that state without being sent it.
var emptyDigest = digestEntries(nil)

// Heartbeat is what a node tells a segment in one interval.
type Heartbeat struct {
	// Node is the sender's node name (1..MaxNodeNameLen printable ASCII
	// bytes).
	Node string
	// Incarnation identifies one run of the sender's agent; a restarted
	// agent uses a larger one (default: its start time in Unix ns). Never 0.
	Incarnation uint64
	// Sequence counts the sender's heartbeats within an incarnation,
	// from 1; all parts of one heartbeat share it.
	Sequence uint64
	// Interval is the sender's heartbeat interval (1 ms .. 65.535 s,
	// millisecond resolution on the wire); receivers judge its death by
	// it.
	Interval time.Duration
	// Leaving reports that the sender is shutting down.
	Leaving bool
	// Challenge asks every peer to echo the sender's identity token: the
	// sender has heard a peer it has not verified yet (or has just
	// started).
	Challenge bool
	// Echoes are identity tokens of peers that challenged the sender
	// (at most MaxEchoes). Encode puts them in the first part only.
	Echoes []Token
	// Requests are identity tokens of peers whose full state the sender
	// asks for (at most MaxRequests): it does not hold the state their
	// Digest names. Encode puts them in the first part only.
	Requests []Token
	// Full reports that the heartbeat carries the sender's full state:
	// Eligible and Claims, concatenated over all its parts, are all of
	// it. Otherwise it carries only Digest, and no address. Encode sends
	// a full heartbeat when Full is set or either list is non-empty.
	Full bool
	// Digest is StateDigest of the sender's current state. Encode
	// computes it from the lists of a full heartbeat (ignoring this
	// field) and sends this field in any other; Decode returns what the
	// frame carries.
	Digest Digest
	// Eligible are the IPs the sender may announce on this segment (a
	// full heartbeat only).
	Eligible []netip.Addr
	// Claims are the IPs the sender answers for, or is taking over (a
	// full heartbeat only).
	Claims []netip.Addr
}

// Frame is one decoded frame: one part of a heartbeat, whose Echoes,
// Requests, Eligible and Claims hold only the entries carried in this
// part.
type Frame struct {
	Heartbeat
	// KeyIDs are the IDs of the keys the sender signed the frame with (its
	// keyring), in frame order.
	KeyIDs []KeyID
	// Source is the Ethernet source address.
	Source net.HardwareAddr
	// Part is this frame's index within the heartbeat, 0 ≤ Part < Parts.
	Part int
	// Parts is the number of frames of the heartbeat (1 unless Full).
	Parts int
}

// ClusterHash is the cluster identifier carried in frames: the first 8
// bytes, big-endian, of SHA-256 over the cluster ID. It is not secret; it
// lets two clusters share a segment without counting each other's frames as
// forgeries.
func ClusterHash(clusterID string) uint64 {
	sum := sha256.Sum256([]byte(clusterID))
	return binary.BigEndian.Uint64(sum[:8])
}

// Codec encodes and decodes heartbeat frames of one cluster under one
// Keyring. It is immutable and safe for concurrent use.
type Codec struct {
	cluster uint64
	keys    *Keyring
	// hmacs counts HMAC computations, so that tests can check that a frame
	// naming no known key costs none.
	hmacs atomic.Uint64
}

// NewCodec returns a Codec for the cluster with the given ID: it signs
// with every key of keys and verifies with any of them.
func NewCodec(clusterID string, keys *Keyring) (*Codec, error) {
	if keys.Len() == 0 {
		return nil, fmt.Errorf("no heartbeat keys")
	}
	return &Codec{cluster: ClusterHash(clusterID), keys: keys}, nil
}

// Keys returns the Codec's keyring.
func (c *Codec) Keys() *Keyring {
	if c == nil {
		return nil
	}
	return c.keys
}

// errNoCodec is returned by a Codec not made by NewCodec.
const errNoCodec Error = "heartbeat codec not created by NewCodec"

// valid reports whether c was made by NewCodec.
func (c *Codec) valid() bool { return c != nil && c.keys.Len() > 0 }

// sum writes the MAC of b under k into out.
func (c *Codec) sum(k *ringKey, b []byte, out *[sha256.Size]byte) error {
	c.hmacs.Add(1)
	if !k.sum(b, out) {
		return errNoCodec
	}
	return nil
}

// entry is one address with its tag.
type entry struct {
	addr netip.Addr
	tag  byte
}

func (e entry) size() int {
	if e.tag&tagIPv6 != 0 {
		return 17
	}
	return 5
}

// append appends the entry's wire form (tag, then 4 or 16 address
// bytes) to b.
func (e entry) append(b []byte) []byte {
	b = append(b, e.tag)
	if e.tag&tagIPv6 != 0 {
		a := e.addr.As16()
		return append(b, a[:]...)
	}
	a := e.addr.As4()
	return append(b, a[:]...)
}

// validName reports whether s can be carried as a node name.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNodeNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// entries merges eligible and claims into one sorted list with tags.
func entries(eligible, claims []netip.Addr) ([]entry, error) {
	e, err := canonical(eligible)
	if err != nil {
		return nil, err
	}
	c, err := canonical(claims)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(e)+len(c))
	i, j := 0, 0
	for i < len(e) || j < len(c) {
		var a netip.Addr
		var tag byte
		switch {
		case j == len(c) || (i < len(e) && e[i].Less(c[j])):
			a, tag = e[i], tagEligible
			i++
		case i == len(e) || c[j].Less(e[i]):
			a, tag = c[j], tagClaimed
			j++
		default: // equal
			a, tag = e[i], tagEligible|tagClaimed
			i++
			j++
		}
		if a.Is6() {
			tag |= tagIPv6
		}
		out = append(out, entry{a, tag})
	}
	return out, nil
}

// canonical returns a sorted, deduplicated copy of in with IPv4-mapped
// addresses unmapped and zones dropped.
func canonical(in []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, len(in))
	for i, a := range in {
		if !a.IsValid() {
			return nil, fmt.Errorf("invalid address in heartbeat")
		}
		out[i] = a.Unmap().WithZone("")
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// authLen is the length of the authenticated part of a frame with m key
// IDs, a k-byte name, e echoed tokens, r requests and no entries.
func authLen(m, k, e, r int) int {
	return keyCountOff + 1 + m*KeyIDLen + 1 + k + 1 + e*TokenLen + 1 + r*TokenLen + 2
}

// split returns the end index in es of each part of a full heartbeat
// signed with m keys, from a k-byte name, echoing e tokens and requesting
// r (in its first part only), each part at most maxPayload bytes. Greedy
// in address order, so that the concatenation of the parts is sorted like
// a single frame would be.
func split(es []entry, m, k, e, r, maxPayload int) ([]int, error) {
	first := maxPayload - authLen(m, k, e, r) - m*MACLen
	rest := maxPayload - authLen(m, k, 0, 0) - m*MACLen
	if first < 17 {
		return nil, fmt.Errorf("payload limit %d leaves no room for an address after %d bytes of header and MACs", maxPayload, maxPayload-first)
	}
	var bounds []int
	used, room := 0, first
	for i, en := range es {
		if used+en.size() > room {
			bounds = append(bounds, i)
			used, room = 0, rest
		}
		used += en.size()
	}
	bounds = append(bounds, len(es))
	if len(bounds) > MaxParts {
		return nil, fmt.Errorf("heartbeat with %d addresses needs %d frames, more than %d", len(es), len(bounds), MaxParts)
	}
	return bounds, nil
}

// checkHeader validates what every frame of hb carries besides the
// address lists, and returns the interval in milliseconds.
func checkHeader(src net.HardwareAddr, hb *Heartbeat, maxPayload int) (uint16, error) {
	if maxPayload > MaxPayload {
		return 0, fmt.Errorf("payload limit %d exceeds %d", maxPayload, MaxPayload)
	}
	if len(src) != 6 {
		return 0, fmt.Errorf("source address %v is not an Ethernet address", src)
	}
	if !validName(hb.Node) {
		return 0, fmt.Errorf("node name %q: want 1..%d printable ASCII bytes", hb.Node, MaxNodeNameLen)
	}
	if hb.Incarnation == 0 || hb.Sequence == 0 {
		return 0, fmt.Errorf("incarnation and sequence must be non-zero")
	}
	ms := hb.Interval.Milliseconds()
	if ms < 1 || ms > maxIntervalMS {
		return 0, fmt.Errorf("interval %v outside 1ms..%dms", hb.Interval, maxIntervalMS)
	}
	if len(hb.Echoes) > MaxEchoes {
		return 0, fmt.Errorf("%d echoed tokens, at most %d fit", len(hb.Echoes), MaxEchoes)
	}
	if len(hb.Requests) > MaxRequests {
		return 0, fmt.Errorf("%d requests, at most %d fit", len(hb.Requests), MaxRequests)
	}
	return uint16(ms), nil
}

// Encode returns the Ethernet frames (destination GroupAddr, source src)
// of hb, each signed with every key of the Codec's keyring and at most
// maxPayload bytes of Ethernet payload (0 means MaxPayload).
//
// A heartbeat that is not full (hb.Full unset and both lists empty) is
// one frame carrying hb.Digest. A full one carries the lists, split into
// as few parts as fit, with the digest computed from them; its addresses
// are normalised (IPv4-mapped IPv6 unmapped, zones dropped) and
// deduplicated. hb.Echoes and hb.Requests go in the first part.
func (c *Codec) Encode(src net.HardwareAddr, hb Heartbeat, maxPayload int) ([][]byte, error) {
	if !c.valid() {
		return nil, errNoCodec
	}
	if maxPayload == 0 {
		maxPayload = MaxPayload
	}
	ms, err := checkHeader(src, &hb, maxPayload)
	if err != nil {
		return nil, err
	}
	full := hb.Full || len(hb.Eligible) > 0 || len(hb.Claims) > 0
	var es []entry
	if full {
		if es, err = entries(hb.Eligible, hb.Claims); err != nil {
			return nil, err
		}
		hb.Digest = digestEntries(es)
	}
	m := len(c.keys.keys)
	bounds := []int{0}
	if full {
		if bounds, err = split(es, m, len(hb.Node), len(hb.Echoes), len(hb.Requests), maxPayload); err != nil {
			return nil, err
		}
	} else if authLen(m, len(hb.Node), len(hb.Echoes), len(hb.Requests))+m*MACLen > maxPayload {
		return nil, fmt.Errorf("payload limit %d leaves no room for the heartbeat's header", maxPayload)
	}
	frames := make([][]byte, 0, len(bounds))
	start := 0
	for part, end := range bounds {
		f, err := c.appendFrame(nil, src, &hb, ms, full, part, len(bounds), es[start:end])
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
		start = end
	}
	return frames, nil
}

// appendFrame appends one frame of hb to dst: part `part` of `parts`,
// carrying es (nil unless full), and hb's echoes and requests in part 0.
// hb's header has been checked (checkHeader) and the frame fits.
func (c *Codec) appendFrame(dst []byte, src net.HardwareAddr, hb *Heartbeat, ms uint16, full bool, part, parts int, es []entry) ([]byte, error) {
	keys := c.keys.keys
	var echoes, requests []Token
	if part == 0 {
		echoes, requests = hb.Echoes, hb.Requests
	}
	body := 0
	for _, e := range es {
		body += e.size()
	}
	var flags byte
	if hb.Leaving {
		flags |= flagLeaving
	}
	if hb.Challenge {
		flags |= flagChallenge
	}
	if full {
		flags |= flagFull
	}
	n := authLen(len(keys), len(hb.Node), len(echoes), len(requests)) + body
	f := slices.Grow(dst, ethHeaderLen+n+len(keys)*MACLen)
	base := len(f)
	f = append(f, groupMAC[:]...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, EtherType)
	f = append(f, magic...)
	f = append(f, Version, flags)
	f = binary.BigEndian.AppendUint16(f, uint16(n))
	f = binary.BigEndian.AppendUint64(f, c.cluster)
	f = binary.BigEndian.AppendUint64(f, hb.Incarnation)
	f = binary.BigEndian.AppendUint64(f, hb.Sequence)
	f = binary.BigEndian.AppendUint16(f, ms)
	f = append(f, byte(part), byte(parts))
	f = append(f, hb.Digest[:]...)
	f = append(f, byte(len(keys)))
	for _, k := range keys {
		f = append(f, k.id[:]...)
	}
	f = append(f, byte(len(hb.Node)))
	f = append(f, hb.Node...)
	f = append(f, byte(len(echoes)))
	for _, t := range echoes {
		f = append(f, t[:]...)
	}
	f = append(f, byte(len(requests)))
	for _, t := range requests {
		f = append(f, t[:]...)
	}
	f = binary.BigEndian.AppendUint16(f, uint16(len(es)))
	for _, e := range es {
		f = e.append(f)
	}
	// Every key signs the same bytes, key IDs included: a MAC
	// authenticates the whole list, so no one can strip or reorder it
	// without the keys.
	payload := f[base+ethHeaderLen : base+ethHeaderLen+n]
	var mac [sha256.Size]byte
	for _, k := range keys {
		if err := c.sum(k, payload, &mac); err != nil {
			return dst, err
		}
		f = append(f, mac[:MACLen]...)
	}
	return f, nil
}

// appendBeat appends the one frame of a heartbeat that is not full (it
// carries hb.Digest and no address) to dst, reusing its capacity: the
// per-interval heartbeat of a node whose state did not change, which
// costs the same whatever the size of the state.
func (c *Codec) appendBeat(dst []byte, src net.HardwareAddr, hb *Heartbeat, maxPayload int) ([]byte, error) {
	if !c.valid() {
		return dst, errNoCodec
	}
	ms, err := checkHeader(src, hb, maxPayload)
	if err != nil {
		return dst, err
	}
	m := len(c.keys.keys)
	if authLen(m, len(hb.Node), len(hb.Echoes), len(hb.Requests))+m*MACLen > maxPayload {
		return dst, fmt.Errorf("payload limit %d leaves no room for the heartbeat's header", maxPayload)
	}
	return c.appendFrame(dst, src, hb, ms, false, 0, 1, nil)
}

// groupMAC is the destination of every heartbeat: a locally administered
// group address (first octet 0x03: the I/G and U/L bits set), "HRLD" in
// its middle octets. See the package documentation.
var groupMAC = [6]byte{0x03, 0x48, 0x52, 0x4c, 0x44, 0x00}

// GroupAddr returns the Ethernet group address heartbeats are sent to (a
// fresh slice). Each Member joins it on its interface.
func GroupAddr() net.HardwareAddr { return slices.Clone(groupMAC[:]) }

// Decode parses and authenticates one Ethernet frame. It returns an error
// wrapping ErrMalformed, ErrForeignCluster or ErrAuth (an *AuthError) for
// any frame it does not accept, or a plain error for a Codec not made by
// NewCodec, and never panics.
//
// It checks, in order: the fixed header and the key ID list (so that it
// knows where the MACs are), the cluster, then the MAC of the first key ID
// it holds — one HMAC computation at most, none when it holds none of the
// frame's keys — and only then parses the rest, so unauthenticated bytes
// past the key IDs are never interpreted, except that a frame failing
// authentication has its node name read, bounds-checked, for the
// AuthError report. Bytes after the MAC list (Ethernet padding) are
// ignored.
func (c *Codec) Decode(frame []byte) (Frame, error) {
	var f Frame
	if len(frame) < ethHeaderLen+minAuthLen+MACLen {
		return f, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(frame))
	}
	if et := binary.BigEndian.Uint16(frame[12:14]); et != EtherType {
		return f, fmt.Errorf("%w: EtherType %#04x", ErrMalformed, et)
	}
	p := frame[ethHeaderLen:]
	if string(p[0:4]) != magic {
		return f, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if p[4] != Version {
		return f, fmt.Errorf("%w: version %d, want %d", ErrMalformed, p[4], Version)
	}
	m := int(p[keyCountOff])
	if m < 1 || m > MaxKeys {
		return f, fmt.Errorf("%w: %d keys, want 1..%d", ErrMalformed, m, MaxKeys)
	}
	n := int(binary.BigEndian.Uint16(p[6:8]))
	if n < authLen(m, 1, 0, 0) || n+m*MACLen > len(p) {
		return f, fmt.Errorf("%w: length %d with %d MACs does not fit a %d-byte payload", ErrMalformed, n, m, len(p))
	}
	ids := p[keyCountOff+1 : keyCountOff+1+m*KeyIDLen]
	for i := KeyIDLen; i < len(ids); i += KeyIDLen {
		for j := 0; j < i; j += KeyIDLen {
			if string(ids[i:i+KeyIDLen]) == string(ids[j:j+KeyIDLen]) {
				return f, fmt.Errorf("%w: key ID %x listed twice", ErrMalformed, ids[i:i+KeyIDLen])
			}
		}
	}
	if !c.valid() {
		return f, errNoCodec
	}
	if binary.BigEndian.Uint64(p[8:16]) != c.cluster {
		return f, fmt.Errorf("%w: cluster hash %#016x", ErrForeignCluster, binary.BigEndian.Uint64(p[8:16]))
	}
	// The first key ID we hold picks the one MAC we check: a sender in
	// the middle of a rotation signs with old and new keys, and either
	// proves the frame.
	var key *ringKey
	slot := 0
	for i := range m {
		if key = c.keys.lookup(KeyID(ids[i*KeyIDLen:])); key != nil {
			slot = i
			break
		}
	}
	if key == nil {
		return f, authError(frame, p[:n], m, false)
	}
	var mac [sha256.Size]byte
	if err := c.sum(key, p[:n], &mac); err != nil {
		return f, err
	}
	if !hmac.Equal(mac[:MACLen], p[n+slot*MACLen:n+(slot+1)*MACLen]) {
		return f, authError(frame, p[:n], m, true)
	}
	if err := decodeBody(p[:n], &f); err != nil {
		return Frame{}, err
	}
	f.Source = net.HardwareAddr(slices.Clone(frame[6:12]))
	return f, nil
}

// authError builds the report of a frame that failed authentication. It
// reads the unauthenticated node name of b (the frame's authenticated
// part, whose key list has been bounds-checked) only as far as b reaches,
// and keeps it only if it is a valid name.
func authError(frame, b []byte, m int, commonKey bool) *AuthError {
	e := &AuthError{
		KeyIDs:    make([]KeyID, m),
		Source:    net.HardwareAddr(slices.Clone(frame[6:12])),
		CommonKey: commonKey,
	}
	off := keyCountOff + 1
	for i := range e.KeyIDs {
		e.KeyIDs[i] = KeyID(b[off:])
		off += KeyIDLen
	}
	if off < len(b) {
		k := int(b[off])
		if name := b[off+1 : min(off+1+k, len(b))]; len(name) == k && validName(string(name)) {
			e.Node = string(name)
		}
	}
	return e
}

// decodeBody parses an authenticated heartbeat payload b (without MACs),
// whose length field is len(b) and whose magic, version, key list and
// cluster have been checked.
func decodeBody(b []byte, f *Frame) error {
	flags := b[5]
	if flags&^flagKnownBits != 0 {
		return fmt.Errorf("%w: unknown flags %#02x", ErrMalformed, flags)
	}
	f.Leaving = flags&flagLeaving != 0
	f.Challenge = flags&flagChallenge != 0
	f.Full = flags&flagFull != 0
	f.Incarnation = binary.BigEndian.Uint64(b[16:24])
	f.Sequence = binary.BigEndian.Uint64(b[24:32])
	if f.Incarnation == 0 || f.Sequence == 0 {
		return fmt.Errorf("%w: zero incarnation or sequence", ErrMalformed)
	}
	ms := binary.BigEndian.Uint16(b[32:34])
	if ms == 0 {
		return fmt.Errorf("%w: zero interval", ErrMalformed)
	}
	f.Interval = time.Duration(ms) * time.Millisecond
	f.Part, f.Parts = int(b[34]), int(b[35])
	if f.Parts < 1 || f.Parts > MaxParts || f.Part >= f.Parts {
		return fmt.Errorf("%w: part %d of %d", ErrMalformed, f.Part, f.Parts)
	}
	if !f.Full && f.Parts != 1 {
		return fmt.Errorf("%w: a heartbeat without the full state in %d parts", ErrMalformed, f.Parts)
	}
	f.Digest = Digest(b[digestOff:keyCountOff])
	m := int(b[keyCountOff])
	off := keyCountOff + 1
	f.KeyIDs = make([]KeyID, m)
	for i := range f.KeyIDs {
		f.KeyIDs[i] = KeyID(b[off:])
		off += KeyIDLen
	}
	// Decode checked that the key list, a name length byte, one name
	// byte, the echo and request counts and the entry count fit; a longer
	// name must leave room for the three counts.
	nameLen := int(b[off])
	off++
	if off+nameLen+1+1+2 > len(b) {
		return fmt.Errorf("%w: name of %d bytes overruns the frame", ErrMalformed, nameLen)
	}
	name := b[off : off+nameLen]
	if !validName(string(name)) {
		return fmt.Errorf("%w: invalid node name", ErrMalformed)
	}
	f.Node = string(name)
	off += nameLen
	var err error
	if f.Echoes, off, err = decodeTokens(b, off, MaxEchoes, 1+2, "echoed tokens"); err != nil {
		return err
	}
	if f.Requests, off, err = decodeTokens(b, off, MaxRequests, 2, "requests"); err != nil {
		return err
	}
	count := int(binary.BigEndian.Uint16(b[off : off+2]))
	off += 2
	if !f.Full && count != 0 {
		return fmt.Errorf("%w: %d addresses in a heartbeat without the full state", ErrMalformed, count)
	}
	// Every entry takes at least 5 bytes: refuse counts the frame cannot
	// hold before allocating for them.
	if count > (len(b)-off)/5 {
		return fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrMalformed, count, len(b)-off)
	}
	if count > 0 {
		f.Eligible = make([]netip.Addr, 0, count)
		f.Claims = make([]netip.Addr, 0, count)
	}
	var prev netip.Addr
	for i := range count {
		if off >= len(b) {
			return fmt.Errorf("%w: entry %d missing", ErrMalformed, i)
		}
		tag := b[off]
		off++
		if tag&^tagKnownBits != 0 || tag&(tagEligible|tagClaimed) == 0 {
			return fmt.Errorf("%w: entry %d has tag %#02x", ErrMalformed, i, tag)
		}
		var a netip.Addr
		if tag&tagIPv6 != 0 {
			if off+16 > len(b) {
				return fmt.Errorf("%w: entry %d truncated", ErrMalformed, i)
			}
			a = netip.AddrFrom16([16]byte(b[off : off+16]))
			off += 16
			if a.Is4In6() {
				return fmt.Errorf("%w: entry %d is an IPv4-mapped address", ErrMalformed, i)
			}
		} else {
			if off+4 > len(b) {
				return fmt.Errorf("%w: entry %d truncated", ErrMalformed, i)
			}
			a = netip.AddrFrom4([4]byte(b[off : off+4]))
			off += 4
		}
		if i > 0 && prev.Compare(a) >= 0 {
			return fmt.Errorf("%w: entry %d (%s) not in ascending order", ErrMalformed, i, a)
		}
		prev = a
		if tag&tagEligible != 0 {
			f.Eligible = append(f.Eligible, a)
		}
		if tag&tagClaimed != 0 {
			f.Claims = append(f.Claims, a)
		}
	}
	if off != len(b) {
		return fmt.Errorf("%w: %d bytes after the last entry", ErrMalformed, len(b)-off)
	}
	return nil
}

// decodeTokens reads a token list (a count byte, then 8 bytes per token,
// at most max) at off of b, which must leave tail bytes for the counts
// that follow it in every frame. It returns the tokens (nil for none) and
// the offset after them.
func decodeTokens(b []byte, off, max, tail int, what string) ([]Token, int, error) {
	n := int(b[off])
	off++
	if n > max {
		return nil, 0, fmt.Errorf("%w: %d %s, at most %d", ErrMalformed, n, what, max)
	}
	if off+n*TokenLen+tail > len(b) {
		return nil, 0, fmt.Errorf("%w: %d %s overrun the frame", ErrMalformed, n, what)
	}
	if n == 0 {
		return nil, off, nil
	}
	out := make([]Token, n)
	for i := range out {
		out[i] = Token(b[off:])
		off += TokenLen
	}
	return out, off, nil
}
