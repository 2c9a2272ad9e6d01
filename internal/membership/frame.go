package membership

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"slices"
	"sync"
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
	// Version is the frame format version this package speaks.
	Version = 1
	// MACLen is the length of the truncated HMAC-SHA256 trailer.
	MACLen = 16
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
	// fixedLen is the heartbeat header up to and including the name
	// length byte.
	fixedLen = 37
	// magic opens every heartbeat payload.
	magic = "HRLD"

	flagLeaving  = 0x01
	tagEligible  = 0x01
	tagClaimed   = 0x02
	tagIPv6      = 0x80
	tagKnownBits = tagEligible | tagClaimed | tagIPv6

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
	// ErrAuth: the HMAC does not verify under this cluster's key.
	ErrAuth Error = "heartbeat authentication failed"
)

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
	// Eligible are the IPs the sender may announce on this segment.
	Eligible []netip.Addr
	// Claims are the IPs the sender answers for, or is taking over.
	Claims []netip.Addr
}

// Frame is one decoded frame: one part of a heartbeat, whose Eligible and
// Claims hold only the entries carried in this part.
type Frame struct {
	Heartbeat
	// Source is the Ethernet source address.
	Source net.HardwareAddr
	// Part is this frame's index within the heartbeat, 0 ≤ Part < Parts.
	Part int
	// Parts is the number of frames of the heartbeat.
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

// Codec encodes and decodes heartbeat frames of one cluster. It is safe for
// concurrent use.
type Codec struct {
	cluster uint64
	// macs pools keyed HMAC states, since building one costs two SHA-256
	// block computations and an allocation.
	macs sync.Pool
}

// NewCodec returns a Codec for the cluster with the given ID and HMAC key
// (from the cluster Secret; at least MinKeyLen bytes).
func NewCodec(clusterID string, key []byte) (*Codec, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("heartbeat key has %d bytes, need at least %d", len(key), MinKeyLen)
	}
	k := slices.Clone(key)
	c := &Codec{cluster: ClusterHash(clusterID)}
	c.macs.New = func() any { return hmac.New(sha256.New, k) }
	return c, nil
}

// errNoCodec is returned by a Codec not made by NewCodec.
const errNoCodec Error = "heartbeat codec not created by NewCodec"

// sum writes the MAC of b into out; it fails only for a Codec that was
// not made by NewCodec.
func (c *Codec) sum(b []byte, out *[sha256.Size]byte) error {
	if c == nil || c.macs.New == nil {
		return errNoCodec
	}
	h, ok := c.macs.Get().(hash.Hash)
	if !ok {
		return errNoCodec
	}
	h.Reset()
	h.Write(b)
	h.Sum(out[:0])
	c.macs.Put(h)
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

// Encode returns the Ethernet frames (destination broadcast, source src)
// of hb, split into as few parts as fit in maxPayload bytes of Ethernet
// payload each (0 means MaxPayload). Addresses are normalised (IPv4-mapped
// IPv6 unmapped, zones dropped) and deduplicated.
func (c *Codec) Encode(src net.HardwareAddr, hb Heartbeat, maxPayload int) ([][]byte, error) {
	if c == nil || c.macs.New == nil {
		return nil, errNoCodec
	}
	if maxPayload == 0 {
		maxPayload = MaxPayload
	}
	if maxPayload > MaxPayload {
		return nil, fmt.Errorf("payload limit %d exceeds %d", maxPayload, MaxPayload)
	}
	if len(src) != 6 {
		return nil, fmt.Errorf("source address %v is not an Ethernet address", src)
	}
	if !validName(hb.Node) {
		return nil, fmt.Errorf("node name %q: want 1..%d printable ASCII bytes", hb.Node, MaxNodeNameLen)
	}
	if hb.Incarnation == 0 || hb.Sequence == 0 {
		return nil, fmt.Errorf("incarnation and sequence must be non-zero")
	}
	ms := hb.Interval.Milliseconds()
	if ms < 1 || ms > maxIntervalMS {
		return nil, fmt.Errorf("interval %v outside 1ms..%dms", hb.Interval, maxIntervalMS)
	}
	es, err := entries(hb.Eligible, hb.Claims)
	if err != nil {
		return nil, err
	}
	overhead := fixedLen + len(hb.Node) + 2 + MACLen
	room := maxPayload - overhead
	if room < 17 {
		return nil, fmt.Errorf("payload limit %d leaves no room for an address after %d bytes of header", maxPayload, overhead)
	}

	// Split greedily in address order, so that the concatenation of the
	// parts is sorted like a single frame would be.
	var bounds []int // end index of each part
	used := 0
	for i, e := range es {
		if used+e.size() > room {
			bounds = append(bounds, i)
			used = 0
		}
		used += e.size()
	}
	bounds = append(bounds, len(es))
	if len(bounds) > MaxParts {
		return nil, fmt.Errorf("heartbeat with %d addresses needs %d frames, more than %d", len(es), len(bounds), MaxParts)
	}

	var flags byte
	if hb.Leaving {
		flags |= flagLeaving
	}
	frames := make([][]byte, 0, len(bounds))
	start := 0
	for part, end := range bounds {
		body := 0
		for _, e := range es[start:end] {
			body += e.size()
		}
		n := fixedLen + len(hb.Node) + 2 + body
		f := make([]byte, ethHeaderLen, ethHeaderLen+n+MACLen)
		copy(f[0:6], broadcastMAC())
		copy(f[6:12], src)
		binary.BigEndian.PutUint16(f[12:14], EtherType)
		f = append(f, magic...)
		f = append(f, Version, flags)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
		f = binary.BigEndian.AppendUint64(f, c.cluster)
		f = binary.BigEndian.AppendUint64(f, hb.Incarnation)
		f = binary.BigEndian.AppendUint64(f, hb.Sequence)
		f = binary.BigEndian.AppendUint16(f, uint16(ms))
		f = append(f, byte(part), byte(len(bounds)), byte(len(hb.Node)))
		f = append(f, hb.Node...)
		f = binary.BigEndian.AppendUint16(f, uint16(end-start))
		for _, e := range es[start:end] {
			f = append(f, e.tag)
			if e.tag&tagIPv6 != 0 {
				b := e.addr.As16()
				f = append(f, b[:]...)
			} else {
				b := e.addr.As4()
				f = append(f, b[:]...)
			}
		}
		var mac [sha256.Size]byte
		if err := c.sum(f[ethHeaderLen:], &mac); err != nil {
			return nil, err
		}
		f = append(f, mac[:MACLen]...)
		frames = append(frames, f)
		start = end
	}
	return frames, nil
}

// broadcastMAC returns the destination of every heartbeat (a fresh slice,
// so no caller can change another's).
func broadcastMAC() net.HardwareAddr {
	return net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
}

// Decode parses and authenticates one Ethernet frame. It returns an error
// wrapping ErrMalformed, ErrForeignCluster or ErrAuth for any frame it does
// not accept (or a plain error for a Codec not made by NewCodec), and never
// panics. It checks, in order: the fixed header (so
// that it knows where the MAC is), the cluster, the MAC, and only then the
// rest of the content, so unauthenticated bytes past the header are never
// interpreted. Bytes after the MAC (Ethernet padding) are ignored.
func (c *Codec) Decode(frame []byte) (Frame, error) {
	var f Frame
	if len(frame) < ethHeaderLen+fixedLen+1+2+MACLen {
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
	n := int(binary.BigEndian.Uint16(p[6:8]))
	if n < fixedLen+1+2 || n+MACLen > len(p) {
		return f, fmt.Errorf("%w: length %d does not fit a %d-byte payload", ErrMalformed, n, len(p))
	}
	if c == nil {
		return f, errNoCodec
	}
	if binary.BigEndian.Uint64(p[8:16]) != c.cluster {
		return f, fmt.Errorf("%w: cluster hash %#016x", ErrForeignCluster, binary.BigEndian.Uint64(p[8:16]))
	}
	var mac [sha256.Size]byte
	if err := c.sum(p[:n], &mac); err != nil {
		return f, err
	}
	if !hmac.Equal(mac[:MACLen], p[n:n+MACLen]) {
		return f, ErrAuth
	}
	if err := decodeBody(p[:n], &f); err != nil {
		return Frame{}, err
	}
	f.Source = net.HardwareAddr(slices.Clone(frame[6:12]))
	return f, nil
}

// decodeBody parses an authenticated heartbeat payload b (without MAC),
// whose length field is len(b) and whose magic, version and cluster have
// been checked.
func decodeBody(b []byte, f *Frame) error {
	flags := b[5]
	if flags&^flagLeaving != 0 {
		return fmt.Errorf("%w: unknown flags %#02x", ErrMalformed, flags)
	}
	f.Leaving = flags&flagLeaving != 0
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
	nameLen := int(b[36])
	off := fixedLen
	if off+nameLen+2 > len(b) {
		return fmt.Errorf("%w: name of %d bytes overruns the frame", ErrMalformed, nameLen)
	}
	name := b[off : off+nameLen]
	if !validName(string(name)) {
		return fmt.Errorf("%w: invalid node name", ErrMalformed)
	}
	f.Node = string(name)
	off += nameLen
	count := int(binary.BigEndian.Uint16(b[off : off+2]))
	off += 2
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
