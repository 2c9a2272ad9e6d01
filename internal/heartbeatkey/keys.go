// Package heartbeatkey reads, creates and watches the keys that authenticate
// the agents' heartbeats (HMAC-SHA256, see internal/membership).
//
// The keys live in one Secret in Herald's namespace. Its data entries named
// key-<N> (N a positive decimal integer, the key's generation) are keys; so
// is the legacy entry "key" (generation 0: what chart 0.1.0 rendered and
// what a user-managed Secret of that time holds). Other entries are ignored.
// Agents sign with every key and accept a heartbeat signed with any of them,
// so a rotation — add key-<N+1>, wait until every agent reports its
// fingerprint, remove the old entry — never splits the cluster.
//
// This file is pure (no Kubernetes imports): Parse, Generate, Fingerprint
// and LoadFile. kube.go holds the Kubernetes adapter: Ensure (the
// controller creates the Secret when it is missing) and Watch (agents reload
// the keys within seconds of an edit, without restarting).
package heartbeatkey

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	// MinLen is the shortest key accepted, in bytes after trimming
	// surrounding whitespace (128 bits; the same bound as
	// membership.MinKeyLen).
	MinLen = 16
	// MaxKeys is the most keys a Secret may hold. Every heartbeat carries
	// one MAC per key, so the bound keeps frames small; a rotation needs
	// two.
	MaxKeys = 4
	// LegacyEntry is the data entry of chart 0.1.0's Secret: generation 0.
	LegacyEntry = "key"
	// EntryPrefix starts the name of every other key entry: key-<N>.
	EntryPrefix = "key-"
	// FirstEntry is the entry Ensure writes into a new Secret.
	FirstEntry = EntryPrefix + "1"
)

// fingerprintContext separates fingerprints from any other use of SHA-256
// over a key (and versions the definition): see Fingerprint.
const fingerprintContext = "herald heartbeat key v1\x00"

// Key is one heartbeat key.
type Key struct {
	// Name is where the key came from: the Secret's data entry ("key-2",
	// "key"), or the file's base name for LoadFile.
	Name string
	// Generation orders the keys: N of key-N, 0 for the legacy entry and a
	// key file.
	Generation uint64
	// Value is the HMAC key: the entry's bytes as stored in the Secret's
	// data (never base64-decoded again), surrounding whitespace trimmed.
	Value []byte
}

// Fingerprint returns Fingerprint(k.Value).
func (k Key) Fingerprint() string { return Fingerprint(k.Value) }

// String names the key by entry and fingerprint: never its value, so a
// key printed with %v or logged does not leak.
func (k Key) String() string { return k.Name + ":" + k.Fingerprint() }

// LogValue keeps the key's value out of structured logs.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Keys is the result of Parse: the keys, newest first, and the data entries
// that were not keys.
type Keys struct {
	// Keys are ordered by generation, highest (newest) first. A successful
	// Parse or LoadFile returns at least one and at most MaxKeys.
	Keys []Key
	// Ignored are the names of data entries that are not keys, sorted, so
	// that callers can log them (a typo such as "key1" shows up there).
	Ignored []string
}

// Newest returns the key of the highest generation, and false when there
// is none.
func (ks Keys) Newest() (Key, bool) {
	if len(ks.Keys) == 0 {
		return Key{}, false
	}
	return ks.Keys[0], true
}

// Values returns the keys' values, newest first: what the membership
// codec signs with and verifies against.
func (ks Keys) Values() [][]byte {
	out := make([][]byte, len(ks.Keys))
	for i, k := range ks.Keys {
		out[i] = k.Value
	}
	return out
}

// Fingerprints returns the keys' fingerprints, newest first.
func (ks Keys) Fingerprints() []string {
	out := make([]string, len(ks.Keys))
	for i, k := range ks.Keys {
		out[i] = k.Fingerprint()
	}
	return out
}

// Equal reports whether ks and other hold the same keys (names,
// generations and values, in order) and ignore the same entries.
func (ks Keys) Equal(other Keys) bool {
	return slices.EqualFunc(ks.Keys, other.Keys, func(a, b Key) bool {
		return a.Name == b.Name && a.Generation == b.Generation && bytes.Equal(a.Value, b.Value)
	}) && slices.Equal(ks.Ignored, other.Ignored)
}

// String lists the keys by entry and fingerprint, newest first, e.g.
// "key-2:1a2b3c4d key-1:5e6f7a8b": never a value.
func (ks Keys) String() string {
	names := make([]string, len(ks.Keys))
	for i, k := range ks.Keys {
		names[i] = k.String()
	}
	return strings.Join(names, " ")
}

// LogValue keeps the keys' values out of structured logs.
func (ks Keys) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("keys", ks.String())}
	if len(ks.Ignored) > 0 {
		attrs = append(attrs, slog.Any("ignored", ks.Ignored))
	}
	return slog.GroupValue(attrs...)
}

// Parse reads the keys out of the heartbeat Secret's data.
//
// Keys are the entries named key-<N> (N a positive decimal integer without
// leading zeros: key-1, key-2, …, never key-0 or key-01) and the legacy
// entry "key" (generation 0). Each key's value is its bytes as stored —
// what `kubectl create secret --from-literal` or stringData wrote — with
// surrounding whitespace trimmed (as the agents of chart 0.1.0 trimmed
// their key file, so both read the same key during an upgrade), and must
// then be at least MinLen bytes. At most MaxKeys keys.
//
// An entry that starts with "key-" but is no valid generation is an error,
// not ignored: it is almost certainly a key meant for a rotation, and
// dropping it silently would leave the operator waiting for a fingerprint
// that never comes. Any other entry is ignored and listed in Ignored.
//
// Two entries may hold the same key (agents use it once); two different
// keys with the same Fingerprint are an error, since agents tell keys apart
// by it. The error names every bad entry, and on error Keys is empty.
func Parse(data map[string][]byte) (Keys, error) {
	var out Keys
	var problems []string
	for _, name := range sortedNames(data) {
		gen, isKey, err := generation(name)
		switch {
		case err != nil:
			problems = append(problems, err.Error())
			continue
		case !isKey:
			out.Ignored = append(out.Ignored, name)
			continue
		}
		// A copy: data may be an informer's cached object, which must not
		// share memory with what callers keep.
		value := bytes.Clone(bytes.TrimSpace(data[name]))
		if len(value) < MinLen {
			problems = append(problems, fmt.Sprintf("entry %q: key has %d bytes (after trimming whitespace), need at least %d", name, len(value), MinLen))
			continue
		}
		out.Keys = append(out.Keys, Key{Name: name, Generation: gen, Value: value})
	}
	// Newest first; generations are unique (one entry name per number).
	slices.SortFunc(out.Keys, func(a, b Key) int { return cmp.Compare(b.Generation, a.Generation) })
	// Agents name the key of each MAC by its fingerprint: two different
	// keys sharing one (a 1 in 2^32 chance per pair) could not both be used.
	for i, a := range out.Keys {
		for _, b := range out.Keys[:i] {
			if a.Fingerprint() == b.Fingerprint() && !bytes.Equal(a.Value, b.Value) {
				problems = append(problems, fmt.Sprintf("entries %q and %q: different keys with the same fingerprint %s: replace one", b.Name, a.Name, a.Fingerprint()))
			}
		}
	}
	if len(out.Keys) > MaxKeys {
		names := make([]string, len(out.Keys))
		for i, k := range out.Keys {
			names[i] = k.Name
		}
		problems = append(problems, fmt.Sprintf("%d keys (%s), at most %d: remove the oldest entries", len(out.Keys), strings.Join(names, ", "), MaxKeys))
	}
	if len(problems) == 0 && len(out.Keys) == 0 {
		msg := "no heartbeat key: want an entry " + FirstEntry + " (or key-<N>, or the legacy " + LegacyEntry + ")"
		if len(out.Ignored) > 0 {
			msg += fmt.Sprintf("; found only %s", strings.Join(quoted(out.Ignored), ", "))
		}
		problems = append(problems, msg)
	}
	if len(problems) > 0 {
		return Keys{}, fmt.Errorf("heartbeat keys: %s", strings.Join(problems, "; "))
	}
	return out, nil
}

// generation returns the generation of the data entry name and whether it
// is a key entry at all; err is set for an entry that looks like a key but
// has no valid generation.
func generation(name string) (gen uint64, isKey bool, err error) {
	if name == LegacyEntry {
		return 0, true, nil
	}
	digits, ok := strings.CutPrefix(name, EntryPrefix)
	if !ok {
		return 0, false, nil
	}
	// Decimal digits only, no sign, no leading zero (so key-1 and key-01
	// cannot both name generation 1), and not 0 (the legacy entry's).
	valid := digits != "" && digits[0] != '0' && strings.Trim(digits, "0123456789") == ""
	if !valid {
		return 0, false, fmt.Errorf("entry %q: not a key name: want %s<N> with N a positive decimal integer without leading zeros (key-1, key-2, …) or %s", name, EntryPrefix, LegacyEntry)
	}
	gen, perr := strconv.ParseUint(digits, 10, 64)
	if perr != nil {
		return 0, false, fmt.Errorf("entry %q: generation out of range: %w", name, perr)
	}
	return gen, true, nil
}

func sortedNames(data map[string][]byte) []string {
	names := make([]string, 0, len(data))
	for name := range data {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strconv.Quote(n)
	}
	return out
}

// Generate returns a new random key: 32 bytes from crypto/rand (256 bits),
// as 64 lowercase hex characters. The HMAC key is that text, as stored in
// the Secret's data — the same form as `openssl rand -hex 32`, which the
// chart's README uses for a manual rotation, so generated and hand-made
// keys look alike. Hex rather than base64url: no '-', '_' or padding to
// trip a shell or a YAML editor, no whitespace for Parse to trim, and
// readable in `kubectl get secret -o jsonpath='{.data.key-1}' | base64 -d`.
func Generate() ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate heartbeat key: %w", err)
	}
	out := make([]byte, hex.EncodedLen(len(raw)))
	hex.Encode(out, raw)
	return out, nil
}

// Fingerprint identifies a key without revealing it: the first 4 bytes of
// SHA-256("herald heartbeat key v1\x00" || key), as 8 lowercase hex
// characters. Agents report it (logs, herald_membership_key_info) so an
// operator can see when every agent has a new key. key is the key's value
// as used for the HMAC (trimmed). The membership package computes the same.
func Fingerprint(key []byte) string {
	h := sha256.New()
	h.Write([]byte(fingerprintContext))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// LoadFile reads a file holding one key (the agent's --key-file: the
// legacy mode of chart 0.1.0, which mounted the Secret's "key" entry). It
// returns Keys with that one key, named after the file's base name,
// generation 0, surrounding whitespace trimmed, at least MinLen bytes.
func LoadFile(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Keys{}, fmt.Errorf("read heartbeat key file: %w", err)
	}
	value := bytes.TrimSpace(b)
	if len(value) < MinLen {
		return Keys{}, fmt.Errorf("heartbeat key file %s: key has %d bytes (after trimming whitespace), need at least %d", path, len(value), MinLen)
	}
	return Keys{Keys: []Key{{Name: filepath.Base(path), Generation: 0, Value: value}}}, nil
}
