package membership

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"sync"
)

// fingerprintContext separates key fingerprints from any other use of
// SHA-256 over a key, and versions their definition.
const fingerprintContext = "herald heartbeat key v1\x00"

// KeyID identifies a heartbeat key on the wire: the first KeyIDLen bytes of
// SHA-256(fingerprintContext || key). It is not secret (a 32-bit digest of
// a 128-bit-or-more key reveals nothing usable about it) and lets a
// receiver pick the MAC it can check without trying every key.
type KeyID [KeyIDLen]byte

// String is the key's fingerprint: 8 lowercase hex digits.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// keyID returns the KeyID of key.
func keyID(key []byte) KeyID {
	h := sha256.New()
	h.Write([]byte(fingerprintContext))
	h.Write(key)
	var sum [sha256.Size]byte
	return KeyID(h.Sum(sum[:0])[:KeyIDLen])
}

// Fingerprint is a short, non-secret identifier of a heartbeat key: the
// first 4 bytes of SHA-256("herald heartbeat key v1\x00" || key) as 8
// lowercase hex digits. Heartbeats carry it (as a KeyID) next to the MAC
// made with that key, and operators compare it across agents during a key
// rotation without ever seeing a key.
func Fingerprint(key []byte) string { return keyID(key).String() }

// fingerprints renders key IDs as fingerprints.
func fingerprints(ids []KeyID) []string {
	if ids == nil {
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// Keyring is the set of heartbeat keys a Member signs with (every one) and
// verifies with (any one): at most MaxKeys distinct keys of at least
// MinKeyLen bytes each, in the order given. It is immutable and safe for
// concurrent use; change keys by building a new one (Member.SetKeys).
type Keyring struct {
	keys []*ringKey
}

// ringKey is one key of a Keyring.
type ringKey struct {
	id  KeyID
	key []byte
	// macs pools keyed HMAC states, since building one costs two SHA-256
	// block computations and an allocation.
	macs sync.Pool
}

// sum writes HMAC-SHA256(key, b) into out. It reports false only for a
// ringKey not made by NewKeyring.
func (k *ringKey) sum(b []byte, out *[sha256.Size]byte) bool {
	if k.macs.New == nil {
		return false
	}
	h, ok := k.macs.Get().(hash.Hash)
	if !ok {
		return false
	}
	h.Reset()
	h.Write(b)
	h.Sum(out[:0])
	k.macs.Put(h)
	return true
}

// NewKeyring returns a Keyring of keys, in the order given, duplicates
// removed (a Secret listing one key twice is harmless). It fails, naming
// the offending key by position and fingerprint, if a key is shorter than
// MinKeyLen, if two different keys share a fingerprint (a receiver picks
// the key by it, so it must be unique within a ring), or if there are no
// keys or more than MaxKeys distinct ones. The keys are copied.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	r := &Keyring{}
	for i, k := range keys {
		id := keyID(k)
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("heartbeat key %d of %d (fingerprint %s) has %d bytes, need at least %d", i+1, len(keys), id, len(k), MinKeyLen)
		}
		dup := false
		for _, have := range r.keys {
			if bytes.Equal(have.key, k) {
				dup = true
				break
			}
			if have.id == id {
				return nil, fmt.Errorf("heartbeat key %d of %d has the fingerprint %s of a different key before it; replace one of them", i+1, len(keys), id)
			}
		}
		if dup {
			continue
		}
		rk := &ringKey{id: id, key: slices.Clone(k)}
		rk.macs.New = func() any { return hmac.New(sha256.New, rk.key) }
		r.keys = append(r.keys, rk)
	}
	switch {
	case len(r.keys) == 0:
		return nil, fmt.Errorf("no heartbeat key")
	case len(r.keys) > MaxKeys:
		return nil, fmt.Errorf("%d distinct heartbeat keys, at most %d are allowed", len(r.keys), MaxKeys)
	}
	return r, nil
}

// Len is the number of keys.
func (r *Keyring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// Fingerprints returns the keys' fingerprints (see Fingerprint), in the
// ring's order.
func (r *Keyring) Fingerprints() []string {
	if r == nil {
		return nil
	}
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.id.String()
	}
	return out
}

// lookup returns the key with the given ID, or nil.
func (r *Keyring) lookup(id KeyID) *ringKey {
	for _, k := range r.keys {
		if k.id == id {
			return k
		}
	}
	return nil
}

// equal reports whether r and o hold the same keys in the same order.
func (r *Keyring) equal(o *Keyring) bool {
	if r.Len() != o.Len() {
		return false
	}
	for i := range r.Len() {
		if !bytes.Equal(r.keys[i].key, o.keys[i].key) {
			return false
		}
	}
	return true
}
