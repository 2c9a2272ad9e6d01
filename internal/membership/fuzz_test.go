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

// checkDecoded asserts what any accepted frame must satisfy, and that
// re-encoding a single-part frame reproduces its bytes (the encoding is
// canonical).
func checkDecoded(t *testing.T, c *Codec, frame []byte, f Frame) {
	t.Helper()
	if !validName(f.Node) || f.Incarnation == 0 || f.Sequence == 0 || f.Interval <= 0 {
		t.Fatalf("accepted invalid header: %+v", f.Heartbeat)
	}
	if f.Parts < 1 || f.Parts > MaxParts || f.Part < 0 || f.Part >= f.Parts {
		t.Fatalf("accepted part %d of %d", f.Part, f.Parts)
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
	n := int(binary.BigEndian.Uint16(frame[ethHeaderLen+6:]))
	if n+MACLen > MaxPayload {
		return // accepted, but larger than this encoder ever sends
	}
	re, err := c.Encode(f.Source, f.Heartbeat, 0)
	if err != nil {
		t.Fatalf("re-encode of accepted frame: %v", err)
	}
	want := frame[:ethHeaderLen+n+MACLen]
	// The destination MAC is not interpreted, so compare from the source.
	if len(re) != 1 || !bytes.Equal(re[0][6:], want[6:]) {
		t.Fatalf("re-encoding differs:\n got % x\nwant % x", re[0], want)
	}
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrForeignCluster) {
		t.Fatalf("error of unknown kind: %v", err)
	}
}

// FuzzDecode feeds raw frames to Decode: it must never panic, must fail
// with one of its error kinds, and must accept only canonical frames.
func FuzzDecode(f *testing.F) {
	c := testCodec(f)
	for _, s := range seedFrames(f, c) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		got, err := c.Decode(frame)
		if err != nil {
			checkErr(t, err)
			return
		}
		checkDecoded(t, c, frame, got)
	})
}

// FuzzDecodeSigned signs whatever payload the fuzzer makes (fixing the
// cluster and length fields), so the fuzzer explores the parser behind
// the MAC check, which raw fuzzing cannot get past.
func FuzzDecodeSigned(f *testing.F) {
	c := testCodec(f)
	for _, s := range seedFrames(f, c) {
		f.Add(s[ethHeaderLen : len(s)-MACLen])
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		frame := signPayload(c, payload)
		got, err := c.Decode(frame)
		if err != nil {
			checkErr(t, err)
			if errors.Is(err, ErrAuth) || errors.Is(err, ErrForeignCluster) {
				t.Fatalf("signed frame failed authentication: %v", err)
			}
			return
		}
		checkDecoded(t, c, frame, got)
	})
}

// signPayload wraps payload in an Ethernet header, and, when it is long
// enough to have them, sets its cluster and length fields and appends the
// MAC.
func signPayload(c *Codec, payload []byte) []byte {
	frame := make([]byte, ethHeaderLen, ethHeaderLen+len(payload)+MACLen)
	copy(frame[6:12], testSrc())
	binary.BigEndian.PutUint16(frame[12:14], EtherType)
	frame = append(frame, payload...)
	p := frame[ethHeaderLen:]
	if len(p) < 16 || len(p) > 0xffff {
		return frame
	}
	binary.BigEndian.PutUint16(p[6:8], uint16(len(p)))
	binary.BigEndian.PutUint64(p[8:16], c.cluster)
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write(p)
	return append(frame, mac.Sum(nil)[:MACLen]...)
}

// seedFrames are valid frames covering every feature, plus a few broken
// ones; they are also written to testdata/fuzz by TestWriteFuzzSeeds.
func seedFrames(t testing.TB, c *Codec) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(h Heartbeat, maxPayload int) {
		fr, err := c.Encode(testSrc(), h, maxPayload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fr...)
	}
	add(hb(nil, nil), 0)
	add(hb(addrs("192.168.10.75"), addrs("192.168.10.75")), 0)
	leaving := hb(addrs("10.0.0.1", "2001:db8::1"), addrs("2001:db8::1"))
	leaving.Leaving = true
	add(leaving, 0)
	long := hb(seqAddrs("10.0.0.1", 20), nil)
	long.Node = strings.Repeat("n", MaxNodeNameLen)
	add(long, 0)
	add(hb(seqAddrs("10.1.0.0", 60), seqAddrs("10.1.0.0", 30)), 300) // 2 parts
	bad := slices.Clone(out[1])
	bad[len(bad)-1] ^= 0xff
	out = append(out, bad, out[0][:30])
	return out
}

// TestWriteFuzzSeeds regenerates testdata/fuzz when HERALD_WRITE_FUZZ_SEEDS
// is set; otherwise it checks that the committed seeds still decode as
// they did when written (so a codec change that breaks them is noticed).
func TestWriteFuzzSeeds(t *testing.T) {
	c := testCodec(t)
	frames := seedFrames(t, c)
	write := os.Getenv("HERALD_WRITE_FUZZ_SEEDS") != ""
	for target, data := range map[string]func([]byte) []byte{
		"FuzzDecode":       func(f []byte) []byte { return f },
		"FuzzDecodeSigned": func(f []byte) []byte { return f[ethHeaderLen : len(f)-MACLen] },
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
