package membership

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fuzzCodec is the receiver of the fuzz targets: it holds two of the test
// keys, so that seeds exercise a shared first key, a shared second key
// and none.
func fuzzCodec(t testing.TB) *Codec { return codecWith(t, testKey, testKey2) }

// checkDecoded asserts what any accepted frame must satisfy, and that
// re-encoding a single-part frame reproduces its authenticated bytes (the
// encoding is canonical) when its keys are test keys.
func checkDecoded(t *testing.T, frame []byte, f Frame) {
	t.Helper()
	if !validName(f.Node) || f.Incarnation == 0 || f.Sequence == 0 || f.Interval <= 0 {
		t.Fatalf("accepted invalid header: %+v", f.Heartbeat)
	}
	if f.Parts < 1 || f.Parts > MaxParts || f.Part < 0 || f.Part >= f.Parts {
		t.Fatalf("accepted part %d of %d", f.Part, f.Parts)
	}
	if len(f.KeyIDs) < 1 || len(f.KeyIDs) > MaxKeys || len(f.Echoes) > MaxEchoes || len(f.Requests) > MaxRequests {
		t.Fatalf("accepted %d keys, %d echoes, %d requests", len(f.KeyIDs), len(f.Echoes), len(f.Requests))
	}
	if !f.Full && (f.Parts != 1 || f.Eligible != nil || f.Claims != nil) {
		t.Fatalf("accepted a heartbeat without the full state in %d parts, with lists %v / %v", f.Parts, f.Eligible, f.Claims)
	}
	for _, l := range [][]netip.Addr{f.Eligible, f.Claims} {
		if !slices.IsSortedFunc(l, netip.Addr.Compare) || len(slices.Compact(slices.Clone(l))) != len(l) {
			t.Fatalf("accepted unsorted or duplicate list %v", l)
		}
		for _, a := range l {
			if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("accepted non-canonical address %v", a)
			}
		}
	}
	if f.Parts != 1 {
		return
	}
	if f.Full && f.Digest != StateDigest(f.Eligible, f.Claims) {
		// Accepted (a receiver checks the digest once it has every
		// part), but Encode computes the digest: not comparable.
		return
	}
	n := int(binary.BigEndian.Uint16(frame[ethHeaderLen+6:]))
	if n+len(f.KeyIDs)*MACLen > MaxPayload {
		return // accepted, but larger than this encoder ever sends
	}
	var keys [][]byte
	for _, id := range f.KeyIDs {
		k, ok := testKeyByID(id)
		if !ok {
			return // the fuzzer made up a key ID: no ring encodes it
		}
		keys = append(keys, k)
	}
	ring, err := NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(testCluster, ring)
	if err != nil {
		t.Fatal(err)
	}
	re, err := c.Encode(f.Source, f.Heartbeat, 0)
	if err != nil {
		t.Fatalf("re-encode of accepted frame: %v", err)
	}
	// The destination MAC is not interpreted, so compare from the source;
	// MACs of keys the receiver did not check may be anything, so compare
	// the authenticated part.
	want := frame[6 : ethHeaderLen+n]
	if len(re) != 1 || len(re[0]) < ethHeaderLen+n || !bytes.Equal(re[0][6:ethHeaderLen+n], want) {
		t.Fatalf("re-encoding differs:\n got % x\nwant % x", re[0], want)
	}
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrForeignCluster) {
		t.Fatalf("error of unknown kind: %v", err)
	}
	var ae *AuthError
	if errors.As(err, &ae) {
		if ae.Node != "" && !validName(ae.Node) {
			t.Fatalf("AuthError reports an invalid name %q", ae.Node)
		}
		if len(ae.KeyIDs) < 1 || len(ae.KeyIDs) > MaxKeys || len(ae.Source) != 6 {
			t.Fatalf("AuthError %+v", ae)
		}
	}
}

// FuzzDecode feeds raw frames to Decode: it must never panic, must fail
// with one of its error kinds, must accept only canonical frames, and
// must compute an HMAC only for a frame naming a key it holds.
func FuzzDecode(f *testing.F) {
	c := fuzzCodec(f)
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		before := c.hmacs.Load()
		got, err := c.Decode(frame)
		var ae *AuthError
		if errors.As(err, &ae) && !ae.CommonKey && c.hmacs.Load() != before {
			t.Fatal("computed an HMAC for a frame naming none of our keys")
		}
		if err != nil {
			checkErr(t, err)
			return
		}
		checkDecoded(t, frame, got)
	})
}

// FuzzDecodeSigned signs whatever payload the fuzzer makes (fixing the
// cluster and length fields and appending the MACs its key IDs call for),
// so the fuzzer explores the parser behind the MAC check, which raw
// fuzzing cannot get past.
func FuzzDecodeSigned(f *testing.F) {
	c := fuzzCodec(f)
	for _, s := range seedFrames(f) {
		if p, ok := payloadOf(s); ok {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		frame := signPayload(c, payload)
		got, err := c.Decode(frame)
		if err != nil {
			checkErr(t, err)
			var ae *AuthError
			if errors.As(err, &ae) && ae.CommonKey || errors.Is(err, ErrForeignCluster) {
				t.Fatalf("signed frame failed authentication: %v", err)
			}
			return
		}
		checkDecoded(t, frame, got)
	})
}

// payloadOf returns the authenticated part of an encoded frame: its
// payload without the MACs.
func payloadOf(frame []byte) ([]byte, bool) {
	if len(frame) < ethHeaderLen+keyCountOff+1 {
		return nil, false
	}
	p := frame[ethHeaderLen:]
	n := int(binary.BigEndian.Uint16(p[6:8]))
	if n > len(p) {
		return nil, false
	}
	return p[:n], true
}

// signPayload wraps payload in an Ethernet header and, when it is long
// enough to have them, sets its cluster and length fields and appends one
// MAC per key ID: the right one for a test key, zeros for any other.
func signPayload(c *Codec, payload []byte) []byte {
	frame := make([]byte, ethHeaderLen, ethHeaderLen+len(payload)+MaxKeys*MACLen)
	copy(frame[6:12], testSrc())
	binary.BigEndian.PutUint16(frame[12:14], EtherType)
	frame = append(frame, payload...)
	p := frame[ethHeaderLen:]
	if len(p) <= keyCountOff || len(p) > 0xffff {
		return frame
	}
	binary.BigEndian.PutUint16(p[6:8], uint16(len(p)))
	binary.BigEndian.PutUint64(p[8:16], c.cluster)
	m := int(p[keyCountOff])
	if m < 1 || m > MaxKeys || len(p) < keyCountOff+1+m*KeyIDLen {
		return frame
	}
	for i := range m {
		var mac [MACLen]byte
		if k, ok := testKeyByID(KeyID(p[keyCountOff+1+i*KeyIDLen:])); ok {
			h := hmac.New(sha256.New, k)
			h.Write(p)
			copy(mac[:], h.Sum(nil))
		}
		frame = append(frame, mac[:]...)
	}
	return frame
}

// seedFrames are valid frames covering every feature, plus a few broken
// ones; they are also written to testdata/fuzz by TestWriteFuzzSeeds.
func seedFrames(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(c *Codec, h Heartbeat, maxPayload int) {
		fr, err := c.Encode(testSrc(), h, maxPayload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fr...)
	}
	k1 := codecWith(t, testKey)
	add(k1, hb(nil, nil), 0)
	add(k1, hb(addrs("192.168.10.75"), addrs("192.168.10.75")), 0)
	leaving := hb(addrs("10.0.0.1", "2001:db8::1"), addrs("2001:db8::1"))
	leaving.Leaving = true
	add(k1, leaving, 0)
	long := hb(seqAddrs("10.0.0.1", 20), nil)
	long.Node = strings.Repeat("n", MaxNodeNameLen)
	add(k1, long, 0)
	add(k1, hb(seqAddrs("10.1.0.0", 60), seqAddrs("10.1.0.0", 30)), 300) // 2 parts
	bad := slices.Clone(out[1])
	bad[len(bad)-1] ^= 0xff
	out = append(out, bad, out[0][:30])
	// Version 2 features: several keys, the challenge flag, echoes.
	challenge := hb(addrs("10.0.0.1"), addrs("10.0.0.1"))
	challenge.Challenge = true
	add(codecWith(t, testKey, testKey2), challenge, 0)
	echo := hb(addrs("10.0.0.1", "2001:db8::1"), nil)
	echo.Echoes = tokens(1)
	add(codecWith(t, testKey2, testKey), echo, 0)
	full := hb(seqAddrs("10.2.0.0", 40), seqAddrs("10.2.0.0", 5))
	full.Challenge, full.Leaving, full.Echoes = true, true, tokens(MaxEchoes)
	add(codecWith(t, testKeys()...), full, 0)
	add(codecWith(t, testKey3, testKey2), hb(addrs("10.0.0.9"), nil), 0)                               // second key shared
	add(codecWith(t, testKey3, testKey4), hb(addrs("10.0.0.9"), nil), 0)                               // no key shared
	add(codecWith(t, testKey2), func() Heartbeat { h := echo; h.Echoes = tokens(3); return h }(), 400) // 1 part, echoes
	// Version 3 features: heartbeats without the full state, requests,
	// full heartbeats of the empty state, a full state in parts with
	// echoes and requests.
	add(k1, digestOnly(StateDigest(seqAddrs("10.3.0.0", 1000), nil)), 0)
	idle := digestOnly(emptyDigest)
	idle.Challenge, idle.Echoes, idle.Requests = true, tokens(2), tokens(MaxRequests)
	add(codecWith(t, testKey, testKey2), idle, 0)
	emptyFull := hb(nil, nil)
	emptyFull.Full, emptyFull.Leaving, emptyFull.Requests = true, true, tokens(1)
	add(k1, emptyFull, 0)
	split := hb(seqAddrs("10.4.0.0", 50), seqAddrs("2001:db8:4::", 10))
	split.Echoes, split.Requests = tokens(2), tokens(3)
	add(k1, split, 300) // 3 parts
	return out
}

// TestWriteFuzzSeeds regenerates testdata/fuzz when HERALD_WRITE_FUZZ_SEEDS
// is set; otherwise it checks that the committed seeds still decode as
// they did when written (so a codec change that breaks them is noticed).
func TestWriteFuzzSeeds(t *testing.T) {
	frames := seedFrames(t)
	write := os.Getenv("HERALD_WRITE_FUZZ_SEEDS") != ""
	for target, data := range map[string]func([]byte) []byte{
		"FuzzDecode":       func(f []byte) []byte { return f },
		"FuzzDecodeSigned": func(f []byte) []byte { p, _ := payloadOf(f); return p },
	} {
		dir := filepath.Join("testdata", "fuzz", target)
		for i, f := range frames {
			if len(f) < ethHeaderLen+MACLen {
				continue
			}
			path := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data(f))
			if write {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("missing seed (regenerate with HERALD_WRITE_FUZZ_SEEDS=1): %v", err)
			}
			if string(got) != content {
				t.Errorf("%s is stale: regenerate with HERALD_WRITE_FUZZ_SEEDS=1", path)
			}
		}
	}
}
