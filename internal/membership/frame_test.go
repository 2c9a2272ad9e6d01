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
)

// testSrc() is the Ethernet source of test frames.
func testSrc() net.HardwareAddr { return net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01} }

func testCodec(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodec(testCluster, []byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

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
		}
		if got.Node != out.Node || got.Incarnation != out.Incarnation || got.Sequence != out.Sequence ||
			got.Interval != out.Interval || got.Leaving != out.Leaving {
			t.Fatalf("frame %d header differs: %+v vs %+v", i, got.Heartbeat, out)
		}
		out.Eligible = append(out.Eligible, got.Eligible...)
		out.Claims = append(out.Claims, got.Claims...)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	c := testCodec(t)
	v4 := seqAddrs("192.168.10.1", 100)
	v6 := seqAddrs("2001:db8::1", 100)
	long := strings.Repeat("n", MaxNodeNameLen)
	cases := []struct {
		name       string
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
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
				if !bytes.Equal(f[0:6], broadcastMAC()) || binary.BigEndian.Uint16(f[12:14]) != EtherType {
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
				got.Interval != tc.hb.Interval || got.Leaving != tc.hb.Leaving {
				t.Errorf("header differs: %+v vs %+v", got, tc.hb)
			}
		})
	}
}

// TestCapacity pins the per-frame capacity documented in the package doc.
func TestCapacity(t *testing.T) {
	c := testCodec(t)
	h := hb(nil, nil)
	h.Node = strings.Repeat("a", 20)
	for _, tc := range []struct {
		first string
		fits  int
	}{{"10.0.0.0", 285}, {"2001:db8::", 83}} {
		h.Eligible = seqAddrs(tc.first, tc.fits)
		if f, err := c.Encode(testSrc(), h, 0); err != nil || len(f) != 1 {
			t.Errorf("%d addresses from %s: %d frames, %v; want 1", tc.fits, tc.first, len(f), err)
		}
		h.Eligible = seqAddrs(tc.first, tc.fits+1)
		if f, err := c.Encode(testSrc(), h, 0); err != nil || len(f) != 2 {
			t.Errorf("%d addresses from %s: %d frames, %v; want 2", tc.fits+1, tc.first, len(f), err)
		}
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
	if _, err := NewCodec("x", []byte("short")); err == nil {
		t.Error("NewCodec accepted a 5-byte key")
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

// resign recomputes the length field and MAC of a frame whose payload was
// edited, so that tests reach the checks after authentication.
func resign(c *Codec, f []byte) []byte {
	p := f[ethHeaderLen:]
	n := len(p) - MACLen
	binary.BigEndian.PutUint16(p[6:8], uint16(n))
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write(p[:n])
	copy(p[n:], mac.Sum(nil)[:MACLen])
	return f
}

func TestDecodeRejects(t *testing.T) {
	c := testCodec(t)
	base, err := c.Encode(testSrc(), hb(addrs("10.0.0.1", "10.0.0.2", "2001:db8::1"), addrs("10.0.0.2")), 0)
	if err != nil {
		t.Fatal(err)
	}
	good := base[0]
	// Offsets into the payload (after the 14-byte Ethernet header).
	const nameOff = fixedLen
	countOff := nameOff + len("node1")
	firstEntry := countOff + 2

	edit := func(fn func(p []byte) []byte, sign bool) []byte {
		f := slices.Clone(good)
		p := fn(f[ethHeaderLen:])
		f = append(f[:ethHeaderLen], p...)
		if sign {
			return resign(c, f)
		}
		return f
	}
	set := func(off int, v ...byte) func(p []byte) []byte {
		return func(p []byte) []byte { copy(p[off:], v); return p }
	}
	other, _ := NewCodec("other-cluster", []byte(testKey))
	otherFrame, _ := other.Encode(testSrc(), hb(nil, nil), 0)
	wrongKey, _ := NewCodec(testCluster, []byte("another key, 32 bytes long......"))
	wrongKeyFrame, _ := wrongKey.Encode(testSrc(), hb(nil, nil), 0)

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
		{"future version", edit(set(4, 2), false), ErrMalformed},
		{"length beyond frame", edit(set(6, 0xff, 0xff), false), ErrMalformed},
		{"length too small", edit(set(6, 0, 10), false), ErrMalformed},
		{"truncated MAC", good[:len(good)-1], ErrMalformed},
		{"other cluster", otherFrame[0], ErrForeignCluster},
		{"wrong key", wrongKeyFrame[0], ErrAuth},
		{"flipped payload bit", edit(set(firstEntry+1, 0x0b), false), ErrAuth},
		{"flipped MAC bit", func() []byte { f := slices.Clone(good); f[len(f)-1] ^= 1; return f }(), ErrAuth},
		{"unknown flag", edit(set(5, 0x02), true), ErrMalformed},
		{"zero incarnation", edit(set(16, 0, 0, 0, 0, 0, 0, 0, 0), true), ErrMalformed},
		{"zero sequence", edit(set(24, 0, 0, 0, 0, 0, 0, 0, 0), true), ErrMalformed},
		{"zero interval", edit(set(32, 0, 0), true), ErrMalformed},
		{"zero parts", edit(set(34, 0, 0), true), ErrMalformed},
		{"part beyond count", edit(set(34, 1, 1), true), ErrMalformed},
		{"too many parts", edit(set(34, 0, MaxParts+1), true), ErrMalformed},
		{"empty name", edit(set(36, 0), true), ErrMalformed},
		{"name overruns", edit(set(36, 250), true), ErrMalformed},
		{"control char in name", edit(set(nameOff, '\n'), true), ErrMalformed},
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
		})
	}
	// Ethernet padding after the MAC is ignored.
	if _, err := c.Decode(append(slices.Clone(good), make([]byte, 30)...)); err != nil {
		t.Errorf("padded frame rejected: %v", err)
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
