package membership

import (
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
)

// filterVM runs the wake or beat filter in x/net/bpf's interpreter, which
// follows the kernel's rules (a load past the end rejects the frame).
func filterVM(t *testing.T, wake bool) *bpf.VM {
	t.Helper()
	raw, err := wakeFilter(wake)
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		ins[i] = r.Disassemble()
		if _, unknown := ins[i].(bpf.RawInstruction); unknown {
			t.Fatalf("instruction %d does not disassemble: %+v", i, r)
		}
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// queueOf reports which socket keeps frame: "wake", "beat", or a
// description of the fault (both, neither, a VM error).
func queueOf(t *testing.T, wake, beat *bpf.VM, frame []byte) string {
	t.Helper()
	w, err := wake.Run(frame)
	if err != nil {
		return "wake filter error: " + err.Error()
	}
	b, err := beat.Run(frame)
	if err != nil {
		return "beat filter error: " + err.Error()
	}
	// The interpreter returns the filter's verdict as is; the kernel
	// keeps that many bytes of the frame (0: drops it).
	switch {
	case (w > 0 && w < len(frame)) || (b > 0 && b < len(frame)):
		return "a truncated copy"
	case w > 0 && b == 0:
		return "wake"
	case b > 0 && w == 0:
		return "beat"
	case w > 0 && b > 0:
		return "both"
	default:
		return "neither"
	}
}

// TestWakeFilter: every heartbeat that asks something of its receiver or
// changes what it knows goes to the wake socket, every plain heartbeat to
// the beat socket, whatever the key count and name length; every part of a
// full state wakes.
func TestWakeFilter(t *testing.T) {
	wake, beat := filterVM(t, true), filterVM(t, false)
	long := strings.Repeat("n", MaxNodeNameLen)
	cases := []struct {
		name  string
		keys  []string
		hb    Heartbeat
		queue string
	}{
		{"plain", nil, hb(nil, nil), "beat"},
		{"plain, four keys", []string{testKey, testKey + "2", testKey + "3", testKey + "4"}, hb(nil, nil), "beat"},
		{"plain, longest name", nil, func() Heartbeat { h := hb(nil, nil); h.Node = long; return h }(), "beat"},
		{"plain, one-letter name", nil, func() Heartbeat { h := hb(nil, nil); h.Node = "a"; return h }(), "beat"},
		{"leaving", nil, func() Heartbeat { h := hb(nil, nil); h.Leaving = true; return h }(), "wake"},
		{"challenge", nil, func() Heartbeat { h := hb(nil, nil); h.Challenge = true; return h }(), "wake"},
		{"full, empty", nil, func() Heartbeat { h := hb(nil, nil); h.Full = true; return h }(), "wake"},
		{"full, addresses", nil, hb(addrs("10.0.0.1"), addrs("10.0.0.1")), "wake"},
		{"one echo", nil, func() Heartbeat { h := hb(nil, nil); h.Echoes = tokens(1); return h }(), "wake"},
		{"most echoes, four keys, longest name", []string{testKey, testKey + "2", testKey + "3", testKey + "4"},
			func() Heartbeat { h := hb(nil, nil); h.Node = long; h.Echoes = tokens(MaxEchoes); return h }(), "wake"},
		{"one request", nil, func() Heartbeat { h := hb(nil, nil); h.Requests = tokens(1); return h }(), "wake"},
		{"requests after echoes", nil, func() Heartbeat { h := hb(nil, nil); h.Echoes = tokens(2); h.Requests = tokens(3); return h }(), "wake"},
		{"most requests, longest name", nil, func() Heartbeat { h := hb(nil, nil); h.Node = long; h.Requests = tokens(MaxRequests); return h }(), "wake"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = []string{testKey}
			}
			frames, err := codecWith(t, keys...).Encode(testSrc(), tc.hb, MaxPayload)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range frames {
				if got := queueOf(t, wake, beat, f); got != tc.queue {
					t.Errorf("part %d of %d (%d bytes): %s, want %s", i, len(frames), len(f), got, tc.queue)
				}
			}
		})
	}

	// Every part of a full state of several frames wakes, not only the
	// first (which alone carries echoes and requests).
	frames, err := testCodec(t).Encode(testSrc(), hb(seqAddrs("10.1.0.0", 1000), nil), MaxPayload)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) < 3 {
		t.Fatalf("%d parts, want several", len(frames))
	}
	for i, f := range frames {
		if got := queueOf(t, wake, beat, f); got != "wake" {
			t.Errorf("part %d of a full state: %s, want wake", i, got)
		}
	}
}

// TestWakeFilterShortFrames: a frame too short to hold a field the filter
// reads goes to the beat socket (where it is counted as malformed), never
// to neither or both: every truncation of every kind of heartbeat, and
// random bytes, land in exactly one queue.
func TestWakeFilterShortFrames(t *testing.T) {
	wake, beat := filterVM(t, true), filterVM(t, false)
	kinds := []Heartbeat{hb(nil, nil), hb(addrs("10.0.0.1"), nil)}
	h := hb(nil, nil)
	h.Echoes = tokens(3)
	kinds = append(kinds, h)
	h = hb(nil, nil)
	h.Requests = tokens(3)
	kinds = append(kinds, h)
	for k, kind := range kinds {
		frames, err := testCodec(t).Encode(testSrc(), kind, MaxPayload)
		if err != nil {
			t.Fatal(err)
		}
		f := frames[0]
		for n := 0; n <= len(f); n++ {
			got := queueOf(t, wake, beat, f[:n])
			if got != "wake" && got != "beat" {
				t.Errorf("heartbeat kind %d cut to %d of %d bytes: %s", k, n, len(f), got)
			}
			// Before the echo count is complete the frame cannot be
			// judged (unless a flag already says wake).
			if n <= wakeKeyIDsOff-1 && got != "beat" {
				t.Errorf("heartbeat kind %d cut to %d bytes, shorter than the fixed header: %s, want beat", k, n, got)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		f := make([]byte, rng.IntN(200))
		for j := range f {
			f[j] = byte(rng.Uint32())
		}
		if got := queueOf(t, wake, beat, f); got != "wake" && got != "beat" {
			t.Fatalf("random frame %d (%x): %s", i, f, got)
		}
	}
}
