package membership

import "testing"

// BenchmarkEncode100Claims encodes a heartbeat of 100 IPv4 addresses, each
// eligible and claimed (one 568-byte frame), including its HMAC.
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
