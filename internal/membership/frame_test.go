package membership

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Test identity shared by the codec tests, the fuzz targets and their
// committed seeds (testdata/fuzz): changing it invalidates the seeds.
const (
	testCluster = "herald-test-cluster"
	testKey     = "0123456789abcdef0123456789abcdef"
	testKey2    = "fedcba9876543210fedcba9876543210"
	testKey3    = "a third heartbeat key, 32 bytes."
	testKey4    = "and a fourth one, also 32 bytes."
)

// testKeys are every key tests sign with, so that a frame's key IDs can be
// mapped back to keys (resign, the fuzz targets).
func testKeys() []string { return []string{testKey, testKey2, testKey3, testKey4} }

// testKeyByID returns the test key with the given ID.
func testKeyByID(id KeyID) ([]byte, bool) {
	for _, k := range testKeys() {
		if keyID([]byte(k)) == id {
			return []byte(k), true
		}
	}
	return nil, false
}

// testSrc() is the Ethernet source of test frames.
func testSrc() net.HardwareAddr { return net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01} }

// testRing returns a Keyring of the given keys.
func testRing(t testing.TB, keys ...string) *Keyring {
	t.Helper()
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
	}
	r, err := NewKeyring(bs...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// codecWith returns a Codec of the test cluster with the given keys.
func codecWith(t testing.TB, keys ...string) *Codec {
	t.Helper()
	c, err := NewCodec(testCluster, testRing(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testCodec is the one-key Codec most tests use.
func testCodec(t testing.TB) *Codec { return codecWith(t, testKey) }

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// seqAddrs returns n addresses counting up from first.
func seqAddrs(first string, n int) []netip.Addr {
	a := netip.MustParseAddr(first)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// tokens returns n distinct identity tokens.
func tokens(n int) []Token {
	out := make([]Token, n)
	for i := range out {
		out[i] = IdentityToken(fmt.Sprintf("peer%d", i), uint64(i+1))
	}
	return out
}

// hb is a valid heartbeat for tests.
func hb(eligible, claims []netip.Addr) Heartbeat {
	return Heartbeat{
		Node:        "node1",
		Incarnation: 1_700_000_000_000_000_000,
		Sequence:    42,
		Interval:    100 * time.Millisecond,
		Eligible:    eligible,
		Claims:      claims,
	}
}

// reassemble decodes frames and merges their parts.
func reassemble(t *testing.T, c *Codec, frames [][]byte) Heartbeat {
	t.Helper()
	var out Heartbeat
	for i, f := range frames {
		got, err := c.Decode(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.Part != i || got.Parts != len(frames) {
			t.Fatalf("frame %d is part %d of %d, want %d of %d", i, got.Part, got.Parts, i, len(frames))
		}
		if !bytes.Equal(got.Source, testSrc()) {
			t.Fatalf("source %v", got.Source)
		}
		if len(f) > ethHeaderLen+MaxPayload {
			t.Fatalf("frame %d is %d bytes, over the MTU", i, len(f))
		}
		if i == 0 {
			out = got.Heartbeat
			out.Eligible, out.Claims = nil, nil
		} else if len(got.Echoes) != 0 || len(got.Requests) != 0 {
			t.Fatalf("frame %d (not the first part) echoes %v, requests %v", i, got.Echoes, got.Requests)
		}
		if !bytes.Equal(f[0:6], GroupAddr()) {
			t.Fatalf("frame %d goes to %v, want the group %v", i, net.HardwareAddr(f[0:6]), GroupAddr())
		}
		if got.Node != out.Node || got.Incarnation != out.Incarnation || got.Sequence != out.Sequence ||
			got.Interval != out.Interval || got.Leaving != out.Leaving || got.Challenge != out.Challenge ||
			got.Full != out.Full || got.Digest != out.Digest {
			t.Fatalf("frame %d header differs: %+v vs %+v", i, got.Heartbeat, out)
		}
		if want := c.Keys().Fingerprints(); !slices.Equal(fingerprints(got.KeyIDs), want) {
			t.Fatalf("frame %d key IDs %v, want %v", i, fingerprints(got.KeyIDs), want)
		}
		out.Eligible = append(out.Eligible, got.Eligible...)
		out.Claims = append(out.Claims, got.Claims...)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	v4 := seqAddrs("192.168.10.1", 100)
	v6 := seqAddrs("2001:db8::1", 100)
	long := strings.Repeat("n", MaxNodeNameLen)
	cases := []struct {
		name       string
		keys       []string // default: testKey
		hb         Heartbeat
		maxPayload int
		wantParts  int
		// want lists, when normalisation changes the input
		wantElig, wantClaims []netip.Addr
	}{
		{name: "empty", hb: hb(nil, nil), wantParts: 1},
		{name: "one claim", hb: hb(addrs("192.168.10.75"), addrs("192.168.10.75")), wantParts: 1},
		{name: "leaving", hb: func() Heartbeat { h := hb(addrs("10.0.0.1"), nil); h.Leaving = true; return h }(), wantParts: 1},
		{name: "100 claims v4", hb: hb(v4, v4), wantParts: 1},
		{name: "claims not eligible", hb: hb(addrs("10.0.0.1"), addrs("10.0.0.2")), wantParts: 1},
		{name: "mixed families", hb: hb(append(slices.Clone(v4[:10]), v6[:10]...), append(slices.Clone(v4[:3]), v6[:3]...)), wantParts: 1},
		{name: "unsorted duplicates mapped zoned",
			hb:         hb(addrs("10.0.0.2", "::ffff:10.0.0.1", "10.0.0.2", "fe80::1%eth0"), addrs("10.0.0.1")),
			wantParts:  1,
			wantElig:   addrs("10.0.0.1", "10.0.0.2", "fe80::1"),
			wantClaims: addrs("10.0.0.1")},
		{name: "1000 v4 split", hb: hb(seqAddrs("10.1.0.0", 1000), seqAddrs("10.1.0.0", 500)), wantParts: 4},
		{name: "300 v6 split", hb: hb(seqAddrs("2001:db8:1::", 300), nil), wantParts: 4},
		{name: "longest name", hb: func() Heartbeat { h := hb(v4, nil); h.Node = long; return h }(), wantParts: 1},
		{name: "small MTU", hb: hb(v4, v4), maxPayload: 300, wantParts: 3},
		{name: "max interval", hb: func() Heartbeat { h := hb(nil, nil); h.Interval = MaxInterval; return h }(), wantParts: 1},
		{name: "challenge", hb: func() Heartbeat { h := hb(v4[:3], v4[:1]); h.Challenge = true; return h }(), wantParts: 1},
		{name: "one echo", hb: func() Heartbeat { h := hb(v4[:3], nil); h.Echoes = tokens(1); return h }(), wantParts: 1},
		{name: "challenge, leaving and max echoes", hb: func() Heartbeat {
			h := hb(v4, v4)
			h.Challenge, h.Leaving, h.Echoes = true, true, tokens(MaxEchoes)
			return h
		}(), wantParts: 1},
		{name: "echoes in the first of 4 parts", hb: func() Heartbeat {
			h := hb(seqAddrs("10.1.0.0", 1000), nil)
			h.Challenge, h.Echoes = true, tokens(MaxEchoes)
			return h
		}(), wantParts: 4},
		{name: "4 keys", keys: testKeys(), hb: hb(v4[:5], v4[:2]), wantParts: 1},
		{name: "2 keys split", keys: []string{testKey2, testKey}, hb: hb(seqAddrs("10.1.0.0", 1000), nil), wantParts: 4},
		// Version 3: heartbeats that carry only the digest, requests, and
		// full heartbeats of the empty state.
		{name: "digest only", hb: digestOnly(StateDigest(v4, v4)), wantParts: 1},
		{name: "digest only, zero digest", hb: digestOnly(Digest{}), wantParts: 1},
		{name: "digest only, leaving, challenge, echoes and requests", hb: func() Heartbeat {
			h := digestOnly(StateDigest(v6, nil))
			h.Leaving, h.Challenge, h.Echoes, h.Requests = true, true, tokens(MaxEchoes), tokens(MaxRequests)
			return h
		}(), wantParts: 1},
		{name: "full, empty state", hb: func() Heartbeat { h := hb(nil, nil); h.Full = true; return h }(), wantParts: 1},
		{name: "full ignores the digest given", hb: func() Heartbeat { h := hb(v4[:3], nil); h.Digest = Digest{1, 2, 3}; return h }(), wantParts: 1},
		{name: "requests in the first of 4 parts", hb: func() Heartbeat {
			h := hb(seqAddrs("10.1.0.0", 1000), nil)
			h.Echoes, h.Requests = tokens(3), tokens(MaxRequests)
			return h
		}(), wantParts: 4},
		{name: "small MTU, max echoes and requests", hb: func() Heartbeat {
			h := hb(v4, nil)
			h.Echoes, h.Requests = tokens(MaxEchoes), tokens(MaxRequests)
			return h
		}(), maxPayload: 700, wantParts: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = []string{testKey}
			}
			c := codecWith(t, keys...)
			frames, err := c.Encode(testSrc(), tc.hb, tc.maxPayload)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != tc.wantParts {
				t.Errorf("%d parts, want %d", len(frames), tc.wantParts)
			}
			limit := tc.maxPayload
			if limit == 0 {
				limit = MaxPayload
			}
			for i, f := range frames {
				if len(f)-ethHeaderLen > limit {
					t.Errorf("part %d payload %d > %d", i, len(f)-ethHeaderLen, limit)
				}
				if !bytes.Equal(f[0:6], GroupAddr()) || binary.BigEndian.Uint16(f[12:14]) != EtherType {
					t.Errorf("part %d: bad Ethernet header % x", i, f[:14])
				}
			}
			got := reassemble(t, c, frames)
			wantE, wantC := tc.wantElig, tc.wantClaims
			if wantE == nil {
				wantE = tc.hb.Eligible
			}
			if wantC == nil {
				wantC = tc.hb.Claims
			}
			if !slices.Equal(got.Eligible, wantE) || !slices.Equal(got.Claims, wantC) {
				t.Errorf("lists differ:\n got %v / %v\nwant %v / %v", got.Eligible, got.Claims, wantE, wantC)
			}
			if got.Node != tc.hb.Node || got.Incarnation != tc.hb.Incarnation || got.Sequence != tc.hb.Sequence ||
				got.Interval != tc.hb.Interval || got.Leaving != tc.hb.Leaving || got.Challenge != tc.hb.Challenge {
				t.Errorf("header differs: %+v vs %+v", got, tc.hb)
			}
			if !slices.Equal(got.Echoes, tc.hb.Echoes) {
				t.Errorf("echoes %v, want %v", got.Echoes, tc.hb.Echoes)
			}
			if !slices.Equal(got.Requests, tc.hb.Requests) {
				t.Errorf("requests %v, want %v", got.Requests, tc.hb.Requests)
			}
			full := tc.hb.Full || len(tc.hb.Eligible)+len(tc.hb.Claims) > 0
			wantDigest := tc.hb.Digest
			if full {
				wantDigest = StateDigest(wantE, wantC)
			}
			if got.Full != full || got.Digest != wantDigest {
				t.Errorf("full %v digest %v, want %v %v", got.Full, got.Digest, full, wantDigest)
			}
			if !full && len(frames[0]) > ethHeaderLen+authLen(len(keys), len(tc.hb.Node), len(tc.hb.Echoes), len(tc.hb.Requests))+len(keys)*MACLen {
				t.Errorf("heartbeat without the full state is %d bytes: it carries more than its header", len(frames[0]))
			}
		})
	}
}

// digestOnly is a heartbeat that carries only the digest d.
func digestOnly(d Digest) Heartbeat {
	h := hb(nil, nil)
	h.Digest = d
	return h
}

// TestStateDigest pins the digest's definition (it is on the wire) and
// checks that it names a state, not a list: order, duplicates, mapping
// and zones do not matter, eligibility versus claims and every address
// do.
func TestStateDigest(t *testing.T) {
	// SHA-256("herald heartbeat state v3" 0x00)[0:8], and of one entry
	// (tag 0x03, 10.0.0.1).
	if got := StateDigest(nil, nil).String(); got != emptyDigest.String() || got != "654ea9e6608b9430" {
		t.Errorf("digest of the empty state %s", got)
	}
	if got := StateDigest(addrs("10.0.0.1"), addrs("10.0.0.1")).String(); got != "95cfac71becdd988" {
		t.Errorf("digest of {10.0.0.1 eligible and claimed} %s", got)
	}
	a := StateDigest(addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"), addrs("10.0.0.2"))
	for name, d := range map[string]Digest{
		"reordered":    StateDigest(addrs("2001:db8::1", "10.0.0.2", "10.0.0.1"), addrs("10.0.0.2")),
		"duplicates":   StateDigest(addrs("10.0.0.1", "10.0.0.2", "10.0.0.1", "2001:db8::1"), addrs("10.0.0.2", "10.0.0.2")),
		"mapped, zone": StateDigest(addrs("::ffff:10.0.0.1", "10.0.0.2", "2001:db8::1"), addrs("10.0.0.2")),
		"invalid skipped": StateDigest(append(addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"), netip.Addr{}),
			addrs("10.0.0.2")),
	} {
		if d != a {
			t.Errorf("%s: digest %s, want %s", name, d, a)
		}
	}
	distinct := map[Digest]string{a: "base"}
	for name, d := range map[string]Digest{
		"claim moved":           StateDigest(addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"), addrs("10.0.0.1")),
		"claim dropped":         StateDigest(addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"), nil),
		"eligibility dropped":   StateDigest(addrs("10.0.0.1", "2001:db8::1"), addrs("10.0.0.2")),
		"claimed, not eligible": StateDigest(addrs("10.0.0.1", "2001:db8::1"), addrs("10.0.0.2", "10.0.0.3")),
		"empty":                 StateDigest(nil, nil),
	} {
		if other, dup := distinct[d]; dup {
			t.Errorf("%s has the digest of %s", name, other)
		}
		distinct[d] = name
	}
}

// TestCapacity pins the per-frame capacity documented in the package doc:
// with a 20-byte name, 282 IPv4 or 82 IPv6 addresses with one key, and 20
// bytes less per further key; and the size of a heartbeat without the
// full state: 104 bytes with a 20-byte name and one key.
func TestCapacity(t *testing.T) {
	h := hb(nil, nil)
	h.Node = strings.Repeat("a", 20)
	for _, tc := range []struct {
		keys  []string
		first string
		fits  int
	}{
		{[]string{testKey}, "10.0.0.0", 282},
		{[]string{testKey}, "2001:db8::", 82},
		{[]string{testKey, testKey2}, "10.0.0.0", 278},
		{[]string{testKey, testKey2}, "2001:db8::", 81},
	} {
		c := codecWith(t, tc.keys...)
		h.Eligible = seqAddrs(tc.first, tc.fits)
		if f, err := c.Encode(testSrc(), h, 0); err != nil || len(f) != 1 {
			t.Errorf("%d keys, %d addresses from %s: %d frames, %v; want 1", len(tc.keys), tc.fits, tc.first, len(f), err)
		}
		h.Eligible = seqAddrs(tc.first, tc.fits+1)
		if f, err := c.Encode(testSrc(), h, 0); err != nil || len(f) != 2 {
			t.Errorf("%d keys, %d addresses from %s: %d frames, %v; want 2", len(tc.keys), tc.fits+1, tc.first, len(f), err)
		}
	}
	d := digestOnly(StateDigest(seqAddrs("10.0.0.0", 10000), nil))
	d.Node = strings.Repeat("a", 20)
	if f, err := testCodec(t).Encode(testSrc(), d, 0); err != nil || len(f) != 1 || len(f[0]) != 104 {
		t.Errorf("heartbeat without the full state: %d frames, %v", len(f), err)
	}
}

func TestEncodeErrors(t *testing.T) {
	c := testCodec(t)
	ok := hb(nil, nil)
	for _, tc := range []struct {
		name       string
		mut        func(*Heartbeat)
		src        net.HardwareAddr
		maxPayload int
	}{
		{name: "empty name", mut: func(h *Heartbeat) { h.Node = "" }},
		{name: "long name", mut: func(h *Heartbeat) { h.Node = strings.Repeat("x", MaxNodeNameLen+1) }},
		{name: "space in name", mut: func(h *Heartbeat) { h.Node = "a b" }},
		{name: "non-ASCII name", mut: func(h *Heartbeat) { h.Node = "nöde" }},
		{name: "zero incarnation", mut: func(h *Heartbeat) { h.Incarnation = 0 }},
		{name: "zero sequence", mut: func(h *Heartbeat) { h.Sequence = 0 }},
		{name: "zero interval", mut: func(h *Heartbeat) { h.Interval = 0 }},
		{name: "sub-ms interval", mut: func(h *Heartbeat) { h.Interval = time.Microsecond }},
		{name: "huge interval", mut: func(h *Heartbeat) { h.Interval = time.Hour }},
		{name: "invalid address", mut: func(h *Heartbeat) { h.Claims = []netip.Addr{{}} }},
		{name: "too many parts", mut: func(h *Heartbeat) { h.Eligible = seqAddrs("2001:db8::", 84*MaxParts+1) }},
		{name: "bad source", src: net.HardwareAddr{1, 2, 3}},
		{name: "payload over MTU", maxPayload: 1501},
		{name: "payload too small", maxPayload: 100, mut: func(h *Heartbeat) { h.Node = strings.Repeat("x", 60) }},
		{name: "too many echoes", mut: func(h *Heartbeat) { h.Echoes = tokens(MaxEchoes + 1) }},
		{name: "echoes leave no room", maxPayload: 300, mut: func(h *Heartbeat) { h.Echoes = tokens(MaxEchoes) }},
		{name: "too many requests", mut: func(h *Heartbeat) { h.Requests = tokens(MaxRequests + 1) }},
		{name: "requests leave no room", maxPayload: 300, mut: func(h *Heartbeat) { h.Requests = tokens(MaxRequests) }},
		{name: "digest only, no room for its header", maxPayload: 300, mut: func(h *Heartbeat) {
			h.Eligible, h.Echoes, h.Requests = nil, tokens(MaxEchoes), tokens(MaxRequests)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ok
			if tc.mut != nil {
				tc.mut(&h)
			}
			src := testSrc()
			if tc.src != nil {
				src = tc.src
			}
			if _, err := c.Encode(src, h, tc.maxPayload); err == nil {
				t.Error("Encode accepted invalid input")
			}
		})
	}
	if _, err := NewCodec("x", nil); err == nil {
		t.Error("NewCodec accepted no keyring")
	}
	if _, err := NewCodec("x", &Keyring{}); err == nil {
		t.Error("NewCodec accepted an empty keyring")
	}
	// Misuse is an error, not a panic.
	var zero Codec
	if _, err := zero.Encode(testSrc(), ok, 0); err == nil {
		t.Error("zero Codec encoded")
	}
	frames, _ := c.Encode(testSrc(), ok, 0)
	if _, err := zero.Decode(frames[0]); err == nil {
		t.Error("zero Codec decoded")
	}
	var nilCodec *Codec
	if _, err := nilCodec.Decode(frames[0]); err == nil {
		t.Error("nil Codec decoded")
	}
}

// resign recomputes the length field and the MACs of a frame whose
// payload was edited, so that tests reach the checks after
// authentication. It takes the key count from the frame and assumes its
// MAC list is at the end; key IDs of unknown keys get a zero MAC.
func resign(f []byte) []byte {
	p := f[ethHeaderLen:]
	m := int(p[keyCountOff])
	n := len(p) - m*MACLen
	binary.BigEndian.PutUint16(p[6:8], uint16(n))
	for i := range m {
		slot := p[n+i*MACLen : n+(i+1)*MACLen]
		clear(slot)
		if k, ok := testKeyByID(KeyID(p[keyCountOff+1+i*KeyIDLen:])); ok {
			mac := hmac.New(sha256.New, k)
			mac.Write(p[:n])
			copy(slot, mac.Sum(nil))
		}
	}
	return f
}

func TestDecodeRejects(t *testing.T) {
	c := testCodec(t)
	base, err := c.Encode(testSrc(), hb(addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"), addrs("10.0.0.2")), 0)
	if err != nil {
		t.Fatal(err)
	}
	good := base[0]
	// Offsets into the payload (after the 14-byte Ethernet header) of a
	// one-key frame.
	const idOff = keyCountOff + 1
	const nameLenOff = idOff + KeyIDLen
	const nameOff = nameLenOff + 1
	echoOff := nameOff + len("node1")
	requestOff := echoOff + 1
	countOff := requestOff + 1
	firstEntry := countOff + 2

	edit := func(fn func(p []byte) []byte, sign bool) []byte {
		f := slices.Clone(good)
		p := fn(f[ethHeaderLen:])
		f = append(f[:ethHeaderLen], p...)
		if sign {
			return resign(f)
		}
		return f
	}
	set := func(off int, v ...byte) func(p []byte) []byte {
		return func(p []byte) []byte { copy(p[off:], v); return p }
	}
	// insert puts bytes at off of the payload (before the MACs).
	insert := func(off int, v ...byte) func(p []byte) []byte {
		return func(p []byte) []byte { return slices.Insert(p, off, v...) }
	}
	other, _ := NewCodec("other-cluster", testRing(t, testKey))
	otherFrame, _ := other.Encode(testSrc(), hb(nil, nil), 0)
	beat, _ := c.Encode(testSrc(), digestOnly(StateDigest(addrs("10.0.0.1"), nil)), 0)
	// editBeat edits the heartbeat without the full state, whose entry
	// count is its last field.
	editBeat := func(fn func(p []byte) []byte) []byte {
		f := slices.Clone(beat[0])
		p := fn(f[ethHeaderLen:])
		return resign(append(f[:ethHeaderLen], p...))
	}
	beatCountOff := requestOff + 1
	wrongKeyFrame, _ := codecWith(t, testKey2).Encode(testSrc(), hb(nil, nil), 0)
	twoKeys, _ := codecWith(t, testKey, testKey2).Encode(testSrc(), hb(nil, nil), 0)
	id1 := keyID([]byte(testKey))

	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"nil", nil, ErrMalformed},
		{"short", good[:40], ErrMalformed},
		{"ethernet header only", good[:ethHeaderLen], ErrMalformed},
		{"wrong EtherType", func() []byte { f := slices.Clone(good); f[12] = 0x08; f[13] = 0x06; return f }(), ErrMalformed},
		{"bad magic", edit(set(0, 'X'), false), ErrMalformed},
		{"version 1", edit(set(4, 1), true), ErrMalformed},
		{"version 2", edit(set(4, 2), true), ErrMalformed},
		{"future version", edit(set(4, 4), true), ErrMalformed},
		{"no keys", edit(set(keyCountOff, 0), false), ErrMalformed},
		{"more than MaxKeys keys", edit(set(keyCountOff, MaxKeys+1), false), ErrMalformed},
		{"MACs missing for the key count", edit(set(keyCountOff, 2), false), ErrMalformed},
		{"duplicate key ID", func() []byte {
			f := slices.Clone(twoKeys[0])
			copy(f[ethHeaderLen+idOff+KeyIDLen:], id1[:])
			return resign(f)
		}(), ErrMalformed},
		{"length beyond frame", edit(set(6, 0xff, 0xff), false), ErrMalformed},
		{"length too small", edit(set(6, 0, 10), false), ErrMalformed},
		{"length shorter than the key list", edit(set(6, 0, byte(authLen(1, 1, 0, 0)-1)), false), ErrMalformed},
		{"truncated MAC", good[:len(good)-1], ErrMalformed},
		{"other cluster", otherFrame[0], ErrForeignCluster},
		{"wrong key", wrongKeyFrame[0], ErrAuth},
		{"unknown key ID", edit(set(idOff, 0xde, 0xad), false), ErrAuth},
		{"flipped payload bit", edit(set(firstEntry+1, 0x0b), false), ErrAuth},
		{"flipped MAC bit", func() []byte { f := slices.Clone(good); f[len(f)-1] ^= 1; return f }(), ErrAuth},
		{"unknown flag", edit(set(5, flagFull|0x08), true), ErrMalformed},
		{"full state without the full flag", edit(set(5, 0), true), ErrMalformed},
		{"digest only with an address", editBeat(func(p []byte) []byte {
			p = insert(beatCountOff+2, tagEligible, 10, 0, 0, 1)(p)
			p[beatCountOff+1] = 1
			return p
		}), ErrMalformed},
		{"digest only in two parts", editBeat(func(p []byte) []byte { p[34], p[35] = 0, 2; return p }), ErrMalformed},
		{"more than MaxRequests requests", edit(func(p []byte) []byte {
			p = insert(requestOff+1, make([]byte, (MaxRequests+1)*TokenLen)...)(p)
			p[requestOff] = MaxRequests + 1
			return p
		}, true), ErrMalformed},
		{"requests overrun", edit(set(requestOff, 20), true), ErrMalformed},
		{"request count one too high", edit(func(p []byte) []byte {
			p = insert(requestOff+1, make([]byte, TokenLen)...)(p)
			p[requestOff] = 2
			return p
		}, true), ErrMalformed},
		{"echoes eat the request count", edit(func(p []byte) []byte {
			// One echo where the request and entry counts should be:
			// the frame ends right after the token.
			p = insert(echoOff+1, make([]byte, TokenLen+2)...)(p[:echoOff+1])
			p[echoOff] = 1
			return append(p, make([]byte, MACLen)...)
		}, true), ErrMalformed},
		{"zero incarnation", edit(set(16, 0, 0, 0, 0, 0, 0, 0, 0), true), ErrMalformed},
		{"zero sequence", edit(set(24, 0, 0, 0, 0, 0, 0, 0, 0), true), ErrMalformed},
		{"zero interval", edit(set(32, 0, 0), true), ErrMalformed},
		{"zero parts", edit(set(34, 0, 0), true), ErrMalformed},
		{"part beyond count", edit(set(34, 1, 1), true), ErrMalformed},
		{"too many parts", edit(set(34, 0, MaxParts+1), true), ErrMalformed},
		{"empty name", edit(set(nameLenOff, 0), true), ErrMalformed},
		{"name overruns", edit(set(nameLenOff, 250), true), ErrMalformed},
		{"name leaves no room for the counts", edit(set(nameLenOff, byte(len("node1")+2)), true), ErrMalformed},
		{"name leaves no room for the counts (digest only)", editBeat(func(p []byte) []byte {
			p[nameLenOff] = byte(len("node1") + 1)
			return p
		}), ErrMalformed},
		{"control char in name", edit(set(nameOff, '\n'), true), ErrMalformed},
		{"more than MaxEchoes echoes", edit(func(p []byte) []byte {
			p = insert(echoOff+1, make([]byte, (MaxEchoes+1)*TokenLen)...)(p)
			p[echoOff] = MaxEchoes + 1
			return p
		}, true), ErrMalformed},
		{"echoes overrun", edit(set(echoOff, 20), true), ErrMalformed},
		{"echo count one too high", edit(func(p []byte) []byte {
			p = insert(echoOff+1, make([]byte, TokenLen)...)(p)
			p[echoOff] = 2
			return p
		}, true), ErrMalformed},
		{"count too large", edit(set(countOff, 0xff, 0xff), true), ErrMalformed},
		{"count too small (trailing bytes)", edit(set(countOff, 0, 2), true), ErrMalformed},
		{"tag without bits", edit(set(firstEntry, 0x00), true), ErrMalformed},
		{"unknown tag bit", edit(set(firstEntry, 0x05), true), ErrMalformed},
		{"unsorted", edit(set(firstEntry+4, 0x03), true), ErrMalformed},  // 10.0.0.3 before 10.0.0.2
		{"duplicate", edit(set(firstEntry+9, 0x01), true), ErrMalformed}, // 10.0.0.1 twice
		{"v6 truncated", edit(func(p []byte) []byte { return p[:len(p)-MACLen-1] }, true), ErrMalformed},
		{"v4 entry tagged v6", edit(set(firstEntry, 0x81), true), ErrMalformed},
		{"mapped v6", edit(func(p []byte) []byte {
			// Replace the last (IPv6) entry by ::ffff:10.0.0.9.
			off := len(p) - MACLen - 16
			copy(p[off:], netip.MustParseAddr("::ffff:10.0.0.9").AsSlice())
			return p
		}, true), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Decode(tc.frame)
			if !errors.Is(err, tc.want) {
				t.Errorf("Decode error %v, want %v", err, tc.want)
			}
			var ae *AuthError
			if errors.As(err, &ae) != (tc.want == ErrAuth) {
				t.Errorf("Decode error %#v: an *AuthError exactly when ErrAuth", err)
			}
		})
	}
	// What the edits rely on: an edited and re-signed frame is accepted.
	if _, err := c.Decode(resign(slices.Clone(good))); err != nil {
		t.Fatalf("re-signed frame rejected: %v", err)
	}
	// Ethernet padding after the MACs is ignored.
	if _, err := c.Decode(append(slices.Clone(good), make([]byte, 30)...)); err != nil {
		t.Errorf("padded frame rejected: %v", err)
	}
	// The challenge flag, echoes and requests inserted by hand are read
	// back.
	f, err := c.Decode(edit(func(p []byte) []byte {
		req := IdentityToken("node8", 3)
		p = insert(requestOff+1, req[:]...)(p)
		p[requestOff] = 1
		tok := IdentityToken("node9", 7)
		p = insert(echoOff+1, tok[:]...)(p)
		p[echoOff] = 1
		p[5] = flagChallenge | flagFull
		return p
	}, true))
	if err != nil || !f.Challenge || !slices.Equal(f.Echoes, []Token{IdentityToken("node9", 7)}) ||
		!slices.Equal(f.Requests, []Token{IdentityToken("node8", 3)}) {
		t.Errorf("hand-made echo frame: %+v, %v", f.Heartbeat, err)
	}
	// The digest is read where the layout puts it.
	f, err = c.Decode(editBeat(func(p []byte) []byte { copy(p[digestOff:], "8 bytes!"); return p }))
	if err != nil || f.Full || f.Digest != Digest([]byte("8 bytes!")) || f.Eligible != nil || f.Claims != nil {
		t.Errorf("heartbeat without the full state: %+v, %v", f.Heartbeat, err)
	}
}

// TestMultiKey: every combination of sender and receiver keyrings that
// share a key verifies, with exactly one HMAC computation on receipt; one
// without a shared key fails with no HMAC at all.
func TestMultiKey(t *testing.T) {
	for _, tc := range []struct {
		name         string
		sender, recv []string
		ok           bool
		hmacs        uint64
	}{
		{"same single key", []string{testKey}, []string{testKey}, true, 1},
		{"sender rotating, receiver old", []string{testKey, testKey2}, []string{testKey}, true, 1},
		{"sender rotating, receiver new", []string{testKey, testKey2}, []string{testKey2}, true, 1},
		{"sender old, receiver rotating", []string{testKey}, []string{testKey, testKey2}, true, 1},
		{"sender new, receiver rotating", []string{testKey2}, []string{testKey, testKey2}, true, 1},
		{"both rotating, other orders", []string{testKey2, testKey}, []string{testKey, testKey2}, true, 1},
		{"unknown key first", []string{testKey3, testKey}, []string{testKey}, true, 1},
		{"four keys, last one shared", testKeys(), []string{testKey4}, true, 1},
		{"no shared key", []string{testKey3}, []string{testKey, testKey2}, false, 0},
		{"no shared key among four", []string{testKey, testKey2, testKey3}, []string{testKey4}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send, recv := codecWith(t, tc.sender...), codecWith(t, tc.recv...)
			h := hb(addrs("10.0.0.1"), addrs("10.0.0.1"))
			frames, err := send.Encode(testSrc(), h, 0)
			if err != nil {
				t.Fatal(err)
			}
			if want := len(frames) * len(tc.sender); send.hmacs.Load() != uint64(want) {
				t.Errorf("sender computed %d HMACs, want one per key and frame (%d)", send.hmacs.Load(), want)
			}
			before := recv.hmacs.Load()
			f, err := recv.Decode(frames[0])
			if got := recv.hmacs.Load() - before; got != tc.hmacs {
				t.Errorf("receiver computed %d HMACs, want %d", got, tc.hmacs)
			}
			wantIDs := send.Keys().Fingerprints()
			if tc.ok {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !slices.Equal(fingerprints(f.KeyIDs), wantIDs) {
					t.Errorf("key IDs %v, want %v", fingerprints(f.KeyIDs), wantIDs)
				}
				return
			}
			var ae *AuthError
			if !errors.As(err, &ae) || !errors.Is(err, ErrAuth) {
				t.Fatalf("Decode error %v, want an *AuthError", err)
			}
			if ae.Node != h.Node || !bytes.Equal(ae.Source, testSrc()) || ae.CommonKey ||
				!slices.Equal(ae.Fingerprints(), wantIDs) {
				t.Errorf("AuthError %+v, want node %s, source %s, fingerprints %v, no common key", ae, h.Node, testSrc(), wantIDs)
			}
		})
	}

	// A forged frame naming a key the receiver holds costs exactly one
	// HMAC, and only the first shared key's MAC counts: a good MAC for a
	// later key does not rescue a bad one for the first.
	send, recv := codecWith(t, testKey, testKey2), codecWith(t, testKey, testKey2)
	frames, _ := send.Encode(testSrc(), hb(nil, nil), 0)
	forged := slices.Clone(frames[0])
	n := int(binary.BigEndian.Uint16(forged[ethHeaderLen+6:]))
	forged[ethHeaderLen+n] ^= 1 // first MAC (testKey's)
	before := recv.hmacs.Load()
	_, err := recv.Decode(forged)
	var ae *AuthError
	if !errors.As(err, &ae) || !ae.CommonKey {
		t.Errorf("forged frame: %v, want an *AuthError with CommonKey", err)
	}
	if got := recv.hmacs.Load() - before; got != 1 {
		t.Errorf("forged frame cost %d HMACs, want 1", got)
	}
	if _, err := codecWith(t, testKey2).Decode(forged); err != nil {
		t.Errorf("receiver holding only the second key rejected the frame: %v", err)
	}
}

// TestAuthErrorExtraction: the report of a frame failing authentication
// reads the claimed name only when it is valid and within the
// authenticated length.
func TestAuthErrorExtraction(t *testing.T) {
	c := testCodec(t)
	frames, err := codecWith(t, testKey3, testKey4).Encode(testSrc(), hb(nil, nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	const nameLenOff = keyCountOff + 1 + 2*KeyIDLen
	for _, tc := range []struct {
		name     string
		edit     func(p []byte)
		wantNode string
	}{
		{"intact", func([]byte) {}, "node1"},
		{"control char in name", func(p []byte) { p[nameLenOff+1] = 0x07 }, ""},
		{"empty name", func(p []byte) { p[nameLenOff] = 0 }, ""},
		{"name beyond the authenticated length", func(p []byte) { p[nameLenOff] = 200 }, ""},
		{"name ends within the authenticated length", func(p []byte) {
			// n is the least Decode takes: the key list, the name
			// length and five bytes (one name byte and the counts).
			// "nod" is read, though the frame would not parse (no room
			// for the counts).
			p[nameLenOff] = 3
			binary.BigEndian.PutUint16(p[6:8], uint16(authLen(2, 1, 0, 0)))
		}, "nod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := slices.Clone(frames[0])
			tc.edit(f[ethHeaderLen:])
			_, err := c.Decode(f)
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Decode: %v, want an *AuthError", err)
			}
			if ae.Node != tc.wantNode || ae.CommonKey {
				t.Errorf("AuthError %+v, want node %q", ae, tc.wantNode)
			}
			if want := []string{Fingerprint([]byte(testKey3)), Fingerprint([]byte(testKey4))}; !slices.Equal(ae.Fingerprints(), want) {
				t.Errorf("fingerprints %v, want %v", ae.Fingerprints(), want)
			}
			if !strings.Contains(ae.Error(), "none of our keys") {
				t.Errorf("message %q", ae.Error())
			}
		})
	}
}

func TestIdentityTokenStable(t *testing.T) {
	// SHA-256("node1" 0x00 00..01)[0:8]; pinned because it is on the
	// wire.
	if got := IdentityToken("node1", 1).String(); got != "3f381c8bf95c16f5" {
		t.Errorf("IdentityToken(node1, 1) = %s", got)
	}
	distinct := map[Token]bool{}
	for _, tok := range []Token{IdentityToken("node1", 1), IdentityToken("node1", 2), IdentityToken("node2", 1), IdentityToken("node", 1)} {
		distinct[tok] = true
	}
	if len(distinct) != 4 {
		t.Error("identity tokens collide")
	}
}

func TestClusterHashStable(t *testing.T) {
	// SHA-256("herald-test-cluster")[0:8]; pinned because it is on the
	// wire.
	if got := ClusterHash(testCluster); got != 0x9799ac9844afe4c5 {
		t.Errorf("ClusterHash = %#016x", got)
	}
	if ClusterHash("a") == ClusterHash("b") {
		t.Error("cluster hashes collide")
	}
	_ = fmt.Sprint(ClusterHash(""))
}
