package membership

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestFingerprintStable(t *testing.T) {
	// SHA-256("herald heartbeat key v1\x00" || testKey)[0:4]; pinned
	// because it is on the wire and the same in internal/heartbeatkey.
	if got := Fingerprint([]byte(testKey)); got != "f01c581e" {
		t.Errorf("Fingerprint = %s", got)
	}
	if got := keyID([]byte(testKey)).String(); got != "f01c581e" {
		t.Errorf("KeyID.String = %s", got)
	}
}

func TestNewKeyring(t *testing.T) {
	k := func(s string) []byte { return []byte(s) }
	fp := func(s string) string { return Fingerprint([]byte(s)) }
	for _, tc := range []struct {
		name    string
		keys    [][]byte
		want    []string // fingerprints
		wantErr string
	}{
		{name: "one", keys: [][]byte{k(testKey)}, want: []string{fp(testKey)}},
		{name: "order kept", keys: [][]byte{k(testKey2), k(testKey)}, want: []string{fp(testKey2), fp(testKey)}},
		{name: "duplicates removed", keys: [][]byte{k(testKey), k(testKey2), k(testKey)}, want: []string{fp(testKey), fp(testKey2)}},
		{name: "max keys", keys: [][]byte{k(testKey), k(testKey2), k(testKey3), k(testKey4)}, want: []string{fp(testKey), fp(testKey2), fp(testKey3), fp(testKey4)}},
		{name: "max keys after duplicates", keys: [][]byte{k(testKey), k(testKey2), k(testKey3), k(testKey4), k(testKey2)}, want: []string{fp(testKey), fp(testKey2), fp(testKey3), fp(testKey4)}},
		{name: "exactly MinKeyLen", keys: [][]byte{k(strings.Repeat("k", MinKeyLen))}, want: []string{fp(strings.Repeat("k", MinKeyLen))}},
		{name: "none", wantErr: "no heartbeat key"},
		{name: "too many", keys: [][]byte{k(testKey), k(testKey2), k(testKey3), k(testKey4), k(testKey + "5")}, wantErr: "5 distinct heartbeat keys"},
		{name: "second too short", keys: [][]byte{k(testKey), k("short")}, wantErr: "key 2 of 2 (fingerprint " + fp("short") + ") has 5 bytes"},
		{name: "empty", keys: [][]byte{nil}, wantErr: "key 1 of 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewKeyring(tc.keys...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewKeyring: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Fingerprints(); !slices.Equal(got, tc.want) {
				t.Errorf("fingerprints %v, want %v", got, tc.want)
			}
			if r.Len() != len(tc.want) {
				t.Errorf("Len %d", r.Len())
			}
		})
	}
	// The ring keeps its own copy.
	b := []byte(testKey)
	r, _ := NewKeyring(b)
	b[0] ^= 1
	if !r.equal(testRing(t, testKey)) {
		t.Error("keyring shares the caller's slice")
	}
	// A nil ring is empty, not a panic.
	var nilRing *Keyring
	if nilRing.Len() != 0 || nilRing.Fingerprints() != nil || !nilRing.equal(nil) {
		t.Error("nil keyring misbehaves")
	}
	if testRing(t, testKey).equal(testRing(t, testKey2)) || !testRing(t, testKey, testKey2).equal(testRing(t, testKey, testKey2)) ||
		testRing(t, testKey, testKey2).equal(testRing(t, testKey2, testKey)) {
		t.Error("equal is wrong")
	}
}

// TestKeyringFingerprintCollision: two different keys with one
// fingerprint cannot share a ring, since receivers pick the key by it. The
// pair was found by brute force (a 32-bit birthday collision).
func TestKeyringFingerprintCollision(t *testing.T) {
	a, b := []byte("collision-key-0000001237"), []byte("collision-key-0000062074")
	if Fingerprint(a) != Fingerprint(b) || Fingerprint(a) != "e81fe0e3" {
		t.Fatalf("fingerprints %s, %s: not the pinned collision", Fingerprint(a), Fingerprint(b))
	}
	if _, err := NewKeyring(a, b); err == nil || !strings.Contains(err.Error(), "key 2 of 2 has the fingerprint e81fe0e3") {
		t.Errorf("NewKeyring of colliding keys: %v", err)
	}
	// Each alone is fine, and they do not verify each other's frames.
	ca, err := NewCodec(testCluster, testRing(t, string(a)))
	if err != nil {
		t.Fatal(err)
	}
	frames, err := codecWith(t, string(b)).Encode(testSrc(), hb(nil, nil), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ca.Decode(frames[0])
	var ae *AuthError
	if !errors.As(err, &ae) || !ae.CommonKey {
		t.Errorf("frame of the colliding key: %v, want an *AuthError with CommonKey", err)
	}
}
