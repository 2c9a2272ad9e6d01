package membership

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// BenchmarkEncode100Claims encodes a heartbeat of 100 IPv4 addresses, each
// eligible and claimed (one 580-byte frame), including its HMAC.
func BenchmarkEncode100Claims(b *testing.B) {
	c := testCodec(b)
	a := seqAddrs("192.168.10.1", 100)
	h := hb(a, a)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encode(testSrc(), h, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode100Claims authenticates and decodes that frame.
func BenchmarkDecode100Claims(b *testing.B) {
	c := testCodec(b)
	a := seqAddrs("192.168.10.1", 100)
	frames, err := c.Encode(testSrc(), hb(a, a), 0)
	if err != nil || len(frames) != 1 {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frames[0])))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(frames[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode100ClaimsIPv6 is the IPv6 case (1760 bytes: two frames).
func BenchmarkEncode100ClaimsIPv6(b *testing.B) {
	c := testCodec(b)
	a := seqAddrs("2001:db8::1", 100)
	h := hb(a, a)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encode(testSrc(), h, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode100ClaimsIPv6 decodes both frames of that heartbeat.
func BenchmarkDecode100ClaimsIPv6(b *testing.B) {
	c := testCodec(b)
	a := seqAddrs("2001:db8::1", 100)
	frames, err := c.Encode(testSrc(), hb(a, a), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range frames {
			if _, err := c.Decode(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncode100Claims2Keys is BenchmarkEncode100Claims during a key
// rotation: two MACs per frame.
func BenchmarkEncode100Claims2Keys(b *testing.B) {
	c := codecWith(b, testKey, testKey2)
	a := seqAddrs("192.168.10.1", 100)
	h := hb(a, a)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encode(testSrc(), h, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode100Claims2Keys decodes a two-key frame with a receiver
// holding only the second key (the MAC it checks is not the first).
func BenchmarkDecode100Claims2Keys(b *testing.B) {
	a := seqAddrs("192.168.10.1", 100)
	frames, err := codecWith(b, testKey, testKey2).Encode(testSrc(), hb(a, a), 0)
	if err != nil || len(frames) != 1 {
		b.Fatal(err)
	}
	c := codecWith(b, testKey2)
	b.SetBytes(int64(len(frames[0])))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(frames[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeForged decodes a forged frame: this cluster's hash, a key
// ID the receiver holds, a wrong MAC. It costs one HMAC, like a good frame,
// but nothing is parsed after it.
func BenchmarkDecodeForged(b *testing.B) {
	c := testCodec(b)
	a := seqAddrs("192.168.10.1", 100)
	frames, err := c.Encode(testSrc(), hb(a, a), 0)
	if err != nil {
		b.Fatal(err)
	}
	f := slices.Clone(frames[0])
	n := int(binary.BigEndian.Uint16(f[ethHeaderLen+6:]))
	f[ethHeaderLen+n] ^= 1
	benchmarkAuthFailure(b, c, f)
}

// BenchmarkDecodeUnknownKey decodes a frame of this cluster signed with a
// key the receiver does not hold: no HMAC at all, only the mismatch
// report.
func BenchmarkDecodeUnknownKey(b *testing.B) {
	a := seqAddrs("192.168.10.1", 100)
	frames, err := codecWith(b, testKey3).Encode(testSrc(), hb(a, a), 0)
	if err != nil {
		b.Fatal(err)
	}
	benchmarkAuthFailure(b, testCodec(b), frames[0])
}

func benchmarkAuthFailure(b *testing.B, c *Codec, frame []byte) {
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(frame); !errors.Is(err, ErrAuth) {
			b.Fatal(err)
		}
	}
}
