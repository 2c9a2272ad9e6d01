package heartbeatkey_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herald-lb/herald/internal/heartbeatkey"
)

// Keys of the sizes that matter: the shortest accepted, one byte less, and
// what the old chart rendered (randAlphaNum 48).
const (
	k16 = "0123456789abcdef"
	k15 = "0123456789abcde"
	k48 = "Zq3xW8vN2mKp7rT4yB6cF9hJ1dL5sG0aQeUiOwEtRyTuPzXc"
	kA  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	kB  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	kC  = "cccccccccccccccccccccccccccccccc"
	kD  = "dddddddddddddddddddddddddddddddd"
	kE  = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
)

// want is one expected key: entry name, generation, value.
type want struct {
	name  string
	gen   uint64
	value string
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    map[string][]byte
		keys    []want
		ignored []string
		// errs are substrings the error must hold (each bad entry named);
		// empty means success.
		errs []string
	}{
		// What exists today: the old chart's Secret, and a user's.
		{name: "legacy entry (chart 0.1.0)", data: map[string][]byte{"key": []byte(k48)},
			keys: []want{{"key", 0, k48}}},
		{name: "first key Ensure writes", data: map[string][]byte{"key-1": []byte(kA)},
			keys: []want{{"key-1", 1, kA}}},

		// Order: newest (highest generation) first, numerically.
		{name: "rotation in progress", data: map[string][]byte{"key-1": []byte(kA), "key-2": []byte(kB)},
			keys: []want{{"key-2", 2, kB}, {"key-1", 1, kA}}},
		{name: "legacy and numbered", data: map[string][]byte{"key": []byte(k48), "key-1": []byte(kA)},
			keys: []want{{"key-1", 1, kA}, {"key", 0, k48}}},
		{name: "numeric not lexical order", data: map[string][]byte{"key-9": []byte(kA), "key-10": []byte(kB), "key-100": []byte(kC), "key": []byte(kD)},
			keys: []want{{"key-100", 100, kC}, {"key-10", 10, kB}, {"key-9", 9, kA}, {"key", 0, kD}}},
		{name: "gaps in generations", data: map[string][]byte{"key-3": []byte(kA), "key-7": []byte(kB)},
			keys: []want{{"key-7", 7, kB}, {"key-3", 3, kA}}},
		{name: "largest generation", data: map[string][]byte{"key-18446744073709551615": []byte(kA)},
			keys: []want{{"key-18446744073709551615", 18446744073709551615, kA}}},
		{name: "exactly MaxKeys", data: map[string][]byte{"key": []byte(kA), "key-1": []byte(kB), "key-2": []byte(kC), "key-3": []byte(kD)},
			keys: []want{{"key-3", 3, kD}, {"key-2", 2, kC}, {"key-1", 1, kB}, {"key", 0, kA}}},

		// Values: bytes as stored, whitespace around them trimmed.
		{name: "exactly MinLen", data: map[string][]byte{"key-1": []byte(k16)},
			keys: []want{{"key-1", 1, k16}}},
		{name: "trailing newline (echo, a file)", data: map[string][]byte{"key-1": []byte(kA + "\n")},
			keys: []want{{"key-1", 1, kA}}},
		{name: "surrounding whitespace", data: map[string][]byte{"key-1": []byte(" \t\r\n" + kA + " \r\n\t")},
			keys: []want{{"key-1", 1, kA}}},
		{name: "inner whitespace kept", data: map[string][]byte{"key-1": []byte("01234567 89abcdef")},
			keys: []want{{"key-1", 1, "01234567 89abcdef"}}},
		{name: "base64-looking value is not decoded again", data: map[string][]byte{"key-1": []byte("MDEyMzQ1Njc4OWFiY2RlZg==")},
			keys: []want{{"key-1", 1, "MDEyMzQ1Njc4OWFiY2RlZg=="}}},
		{name: "binary value", data: map[string][]byte{"key-1": {0x00, 0xff, 0x80, 0x01, 0xfe, 0x7f, 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90}},
			keys: []want{{"key-1", 1, "\x00\xff\x80\x01\xfe\x7f\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90"}}},

		// Other entries: ignored, listed (sorted) for the log.
		{name: "ignored entries", data: map[string][]byte{"key-1": []byte(kA), "notes": []byte("rotated 2026-11-30"), "ca.crt": []byte("x")},
			keys: []want{{"key-1", 1, kA}}, ignored: []string{"ca.crt", "notes"}},
		{name: "look-alikes that are not key-<N> are ignored", data: map[string][]byte{
			"key": []byte(kA), "key1": []byte(kB), "Key-1": []byte(kC), "KEY": []byte(kD), "keys": []byte(kE), "key_2": []byte(kA), "mykey-1": []byte(kA), "": []byte(kA),
		}, keys: []want{{"key", 0, kA}}, ignored: []string{"", "KEY", "Key-1", "key1", "key_2", "keys", "mykey-1"}},
		{name: "an ignored entry may be short", data: map[string][]byte{"key-1": []byte(kA), "x": nil},
			keys: []want{{"key-1", 1, kA}}, ignored: []string{"x"}},

		// Bad names: "key-" and no valid generation.
		{name: "key-0", data: map[string][]byte{"key-1": []byte(kA), "key-0": []byte(kB)}, errs: []string{`entry "key-0": not a key name`}},
		{name: "key-01", data: map[string][]byte{"key-01": []byte(kA)}, errs: []string{`entry "key-01": not a key name`}},
		{name: "key-00", data: map[string][]byte{"key-00": []byte(kA)}, errs: []string{`entry "key-00"`}},
		{name: "key-abc", data: map[string][]byte{"key-abc": []byte(kA)}, errs: []string{`entry "key-abc": not a key name`}},
		{name: "key-", data: map[string][]byte{"key-": []byte(kA)}, errs: []string{`entry "key-"`}},
		{name: "key-+1", data: map[string][]byte{"key-+1": []byte(kA)}, errs: []string{`entry "key-+1"`}},
		{name: "key--1", data: map[string][]byte{"key--1": []byte(kA)}, errs: []string{`entry "key--1"`}},
		{name: "key-1.5", data: map[string][]byte{"key-1.5": []byte(kA)}, errs: []string{`entry "key-1.5"`}},
		{name: "key-1a", data: map[string][]byte{"key-1a": []byte(kA)}, errs: []string{`entry "key-1a"`}},
		{name: "key-2-old", data: map[string][]byte{"key-2-old": []byte(kA)}, errs: []string{`entry "key-2-old"`}},
		{name: "key- 1", data: map[string][]byte{"key- 1": []byte(kA)}, errs: []string{`entry "key- 1"`}},
		{name: "key-0x1", data: map[string][]byte{"key-0x1": []byte(kA)}, errs: []string{`entry "key-0x1"`}},
		{name: "key-1e3", data: map[string][]byte{"key-1e3": []byte(kA)}, errs: []string{`entry "key-1e3"`}},
		{name: "non-ASCII digit", data: map[string][]byte{"key-١": []byte(kA)}, errs: []string{`entry "key-١"`}},
		{name: "generation overflows", data: map[string][]byte{"key-18446744073709551616": []byte(kA)},
			errs: []string{`entry "key-18446744073709551616": generation out of range`}},

		// Bad values.
		{name: "one byte short", data: map[string][]byte{"key-1": []byte(k15)}, errs: []string{`entry "key-1": key has 15 bytes`, "at least 16"}},
		{name: "short after trimming", data: map[string][]byte{"key-1": []byte("  " + k15 + "\n")}, errs: []string{`entry "key-1": key has 15 bytes (after trimming whitespace)`}},
		{name: "only whitespace", data: map[string][]byte{"key-1": []byte(" \n\t                    ")}, errs: []string{`entry "key-1": key has 0 bytes`}},
		{name: "empty", data: map[string][]byte{"key-1": {}}, errs: []string{`entry "key-1": key has 0 bytes`}},
		{name: "nil", data: map[string][]byte{"key-1": nil}, errs: []string{`entry "key-1": key has 0 bytes`}},
		{name: "short legacy entry", data: map[string][]byte{"key": []byte("short"), "key-1": []byte(kA)}, errs: []string{`entry "key": key has 5 bytes`}},

		// The same key twice is harmless; two keys with one fingerprint
		// are not (found by search: both fingerprints are 02429de0).
		{name: "same key in two entries", data: map[string][]byte{"key-1": []byte(kA), "key-2": []byte(kA + "\n")},
			keys: []want{{"key-2", 2, kA}, {"key-1", 1, kA}}},
		{name: "fingerprint collision", data: map[string][]byte{"key-1": []byte("heartbeat-key-0000011285"), "key-2": []byte("heartbeat-key-0000052601")},
			errs: []string{`entries "key-2" and "key-1": different keys with the same fingerprint 02429de0`}},

		// Counts.
		{name: "too many keys", data: map[string][]byte{"key": []byte(kA), "key-1": []byte(kB), "key-2": []byte(kC), "key-3": []byte(kD), "key-4": []byte(kE)},
			errs: []string{"5 keys (key-4, key-3, key-2, key-1, key), at most 4", "remove the oldest"}},
		{name: "no data", data: nil, errs: []string{"no heartbeat key", "key-1"}},
		{name: "empty data", data: map[string][]byte{}, errs: []string{"no heartbeat key"}},
		{name: "only ignored entries", data: map[string][]byte{"token": []byte(kA), "key1": []byte(kB)},
			errs: []string{"no heartbeat key", `found only "key1", "token"`}},

		// Every problem at once, each entry named.
		{name: "several bad entries", data: map[string][]byte{"key-0": []byte(kA), "key-2": []byte("short"), "key-x": []byte(kB), "key-3": []byte(kC)},
			errs: []string{`entry "key-0"`, `entry "key-2": key has 5 bytes`, `entry "key-x"`}},
		{name: "bad name among too many", data: map[string][]byte{"key": []byte(kA), "key-1": []byte(kB), "key-2": []byte(kC), "key-3": []byte(kD), "key-4": []byte(kE), "key-05": []byte(kA)},
			errs: []string{`entry "key-05"`, "5 keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := heartbeatkey.Parse(tc.data)
			if len(tc.errs) > 0 {
				if err == nil {
					t.Fatalf("Parse = %v, want an error holding %q", got, tc.errs)
				}
				for _, s := range tc.errs {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not hold %q", err, s)
					}
				}
				if len(got.Keys) != 0 || len(got.Ignored) != 0 {
					t.Errorf("on error Parse returned %+v, want nothing", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var gotKeys []want
			for _, k := range got.Keys {
				gotKeys = append(gotKeys, want{k.Name, k.Generation, string(k.Value)})
			}
			if !slices.Equal(gotKeys, tc.keys) {
				t.Errorf("keys %+v, want %+v", gotKeys, tc.keys)
			}
			if !slices.Equal(got.Ignored, tc.ignored) {
				t.Errorf("ignored %q, want %q", got.Ignored, tc.ignored)
			}
		})
	}
}

// A parsed key does not share memory with the data it came from (an
// informer's cached object, which must never change).
func TestParseCopies(t *testing.T) {
	data := map[string][]byte{"key-1": []byte(kA)}
	keys, err := heartbeatkey.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	keys.Keys[0].Value[0] = 'X'
	if string(data["key-1"]) != kA {
		t.Errorf("changing the parsed key changed the data: %q", data["key-1"])
	}
}

// FuzzParse checks Parse's promises on any two entries: a success holds 1
// to MaxKeys keys, newest first, each at least MinLen trimmed bytes, and
// every entry is either a key or ignored.
func FuzzParse(f *testing.F) {
	f.Add("key", []byte(k48), "key-1", []byte(kA))
	f.Add("key-2", []byte(kB), "key-10", []byte(" "+kC+"\n"))
	f.Add("key-01", []byte(kA), "notes", []byte("x"))
	f.Add("key-1", []byte(k15), "key-0", []byte(kA))
	f.Fuzz(func(t *testing.T, n1 string, v1 []byte, n2 string, v2 []byte) {
		data := map[string][]byte{n1: v1, n2: v2}
		keys, err := heartbeatkey.Parse(data)
		if err != nil {
			if len(keys.Keys) != 0 || len(keys.Ignored) != 0 {
				t.Fatalf("error %v with a result %+v", err, keys)
			}
			return
		}
		if n := len(keys.Keys); n < 1 || n > heartbeatkey.MaxKeys {
			t.Fatalf("%d keys", n)
		}
		if len(keys.Keys)+len(keys.Ignored) != len(data) {
			t.Fatalf("%d keys and %d ignored of %d entries", len(keys.Keys), len(keys.Ignored), len(data))
		}
		for i, k := range keys.Keys {
			if len(k.Value) < heartbeatkey.MinLen || !bytes.Equal(k.Value, bytes.TrimSpace(k.Value)) {
				t.Fatalf("key %s value %q", k.Name, k.Value)
			}
			if !bytes.Equal(k.Value, bytes.TrimSpace(data[k.Name])) {
				t.Fatalf("key %s value %q, entry %q", k.Name, k.Value, data[k.Name])
			}
			if i > 0 && keys.Keys[i-1].Generation <= k.Generation {
				t.Fatalf("keys not newest first: %v", keys)
			}
			if want := fmt.Sprintf("key-%d", k.Generation); k.Name != want && (k.Generation != 0 || k.Name != "key") {
				t.Fatalf("key %s has generation %d", k.Name, k.Generation)
			}
		}
		for _, name := range keys.Ignored {
			if name == "key" || strings.HasPrefix(name, "key-") {
				t.Fatalf("entry %q ignored", name)
			}
		}
	})
}

func TestFingerprint(t *testing.T) {
	// Computed outside Go, from the definition:
	//   printf 'herald heartbeat key v1\0%s' "$key" | sha256sum | cut -c1-8
	for key, want := range map[string]string{
		"0123456789abcdef":                 "fad6132f",
		"0123456789abcdef0123456789abcdef": "f01c581e",
		"":                                 "e9614173",
	} {
		if got := heartbeatkey.Fingerprint([]byte(key)); got != want {
			t.Errorf("Fingerprint(%q) = %s, want %s", key, got, want)
		}
	}
	k := heartbeatkey.Key{Name: "key-1", Generation: 1, Value: []byte(k16)}
	if got := k.Fingerprint(); got != "fad6132f" {
		t.Errorf("Key.Fingerprint = %s", got)
	}
	// Different keys, different fingerprints (of these, at least).
	if heartbeatkey.Fingerprint([]byte(kA)) == heartbeatkey.Fingerprint([]byte(kB)) {
		t.Error("two keys share a fingerprint")
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		key, err := heartbeatkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != 64 {
			t.Fatalf("key %q has %d characters, want 64", key, len(key))
		}
		raw, err := hex.DecodeString(string(key))
		if err != nil || len(raw) != 32 {
			t.Fatalf("key %q is not 32 bytes in hex: %v", key, err)
		}
		if strings.ToLower(string(key)) != string(key) {
			t.Fatalf("key %q is not lowercase", key)
		}
		if seen[string(key)] {
			t.Fatalf("key %q generated twice", key)
		}
		seen[string(key)] = true
		// As stored, it parses to itself.
		keys, err := heartbeatkey.Parse(map[string][]byte{heartbeatkey.FirstEntry: key})
		if err != nil || !bytes.Equal(keys.Keys[0].Value, key) {
			t.Fatalf("Parse of a generated key: %v, %v", keys, err)
		}
	}
}

// Printing or logging keys shows entry names and fingerprints, never a
// key's value.
func TestKeysNeverPrinted(t *testing.T) {
	keys, err := heartbeatkey.Parse(map[string][]byte{"key-1": []byte(kA), "key-2": []byte(kB), "notes": []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	fpA, fpB := heartbeatkey.Fingerprint([]byte(kA)), heartbeatkey.Fingerprint([]byte(kB))
	if got, want := keys.String(), "key-2:"+fpB+" key-1:"+fpA; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("keys", "keys", keys, "newest", keys.Keys[0])
	printed := fmt.Sprintf("%v %s %v", keys, keys, keys.Keys[0])
	for what, out := range map[string]string{"log": buf.String(), "fmt": printed} {
		for _, secret := range []string{kA, kB, string(keys.Keys[0].Value)} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output holds a key value: %s", what, out)
			}
		}
		if !strings.Contains(out, fpB) {
			t.Errorf("%s output lacks the fingerprint %s: %s", what, fpB, out)
		}
	}
	if !strings.Contains(buf.String(), `"ignored":["notes"]`) {
		t.Errorf("log lacks the ignored entries: %s", buf.String())
	}
}

func TestKeysAccessors(t *testing.T) {
	keys, err := heartbeatkey.Parse(map[string][]byte{"key-1": []byte(kA), "key-2": []byte(kB)})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := keys.Newest(); !ok || n.Name != "key-2" {
		t.Errorf("Newest = %v, %v", n, ok)
	}
	if _, ok := (heartbeatkey.Keys{}).Newest(); ok {
		t.Error("Newest of no keys is ok")
	}
	if v := keys.Values(); len(v) != 2 || string(v[0]) != kB || string(v[1]) != kA {
		t.Errorf("Values = %q", v)
	}
	if fp := keys.Fingerprints(); !slices.Equal(fp, []string{heartbeatkey.Fingerprint([]byte(kB)), heartbeatkey.Fingerprint([]byte(kA))}) {
		t.Errorf("Fingerprints = %v", fp)
	}

	same, _ := heartbeatkey.Parse(map[string][]byte{"key-2": []byte(kB + "\n"), "key-1": []byte(kA)})
	for _, tc := range []struct {
		name  string
		other map[string][]byte
		equal bool
	}{
		{"same keys, other whitespace", map[string][]byte{"key-2": []byte(kB + "\n"), "key-1": []byte(kA)}, true},
		{"other value", map[string][]byte{"key-2": []byte(kC), "key-1": []byte(kA)}, false},
		{"other name, same value", map[string][]byte{"key-3": []byte(kB), "key-1": []byte(kA)}, false},
		{"one key less", map[string][]byte{"key-2": []byte(kB)}, false},
		{"an ignored entry more", map[string][]byte{"key-2": []byte(kB), "key-1": []byte(kA), "x": nil}, false},
	} {
		other, err := heartbeatkey.Parse(tc.other)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys.Equal(other); got != tc.equal {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.equal)
		}
	}
	if !keys.Equal(same) || !(heartbeatkey.Keys{}).Equal(heartbeatkey.Keys{}) {
		t.Error("Equal is not reflexive")
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The old chart's mount: /etc/herald/heartbeat/key, written by echo.
	keys, err := heartbeatkey.LoadFile(write("key", kA+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.Keys) != 1 || keys.Keys[0].Name != "key" || keys.Keys[0].Generation != 0 || string(keys.Keys[0].Value) != kA || len(keys.Ignored) != 0 {
		t.Errorf("LoadFile = %+v", keys)
	}
	if keys, err := heartbeatkey.LoadFile(write("hb.txt", "  "+k16+"  ")); err != nil || keys.Keys[0].Name != "hb.txt" || string(keys.Keys[0].Value) != k16 {
		t.Errorf("LoadFile(hb.txt) = %+v, %v", keys, err)
	}
	short := write("short", k15+"\n")
	if _, err := heartbeatkey.LoadFile(short); err == nil || !strings.Contains(err.Error(), short) || !strings.Contains(err.Error(), "15 bytes") {
		t.Errorf("short key file: err = %v, want one naming the file and the length", err)
	}
	if _, err := heartbeatkey.LoadFile(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key file: err = %v", err)
	}
}
