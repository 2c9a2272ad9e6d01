package membership

import (
	"fmt"
	"slices"
	"testing"
)

func TestEchoTable(t *testing.T) {
	et := newEchoTable(8)
	if got := et.take(1); got != nil {
		t.Fatalf("empty table echoes %v", got)
	}
	if !et.challenged("a", 1) {
		t.Fatal("first challenge not fresh")
	}
	if et.challenged("a", 1) {
		t.Fatal("repeated challenge fresh")
	}
	// The token is echoed echoRepeat times after the latest challenge.
	seq := uint64(0)
	for i := range echoRepeat {
		seq++
		if got := et.take(seq); !slices.Equal(got, []Token{IdentityToken("a", 1)}) {
			t.Fatalf("heartbeat %d echoes %v", i, got)
		}
		if i == 1 {
			et.challenged("a", 1) // challenged again: the count restarts
		}
	}
	for range 2 {
		seq++
		if got := et.take(seq); len(got) != 1 {
			t.Fatalf("echo stopped before echoRepeat heartbeats after the latest challenge: %v", got)
		}
	}
	seq++
	if got := et.take(seq); got != nil {
		t.Fatalf("still echoing %v", got)
	}
	// Once exhausted, a new challenge is fresh again (asks for a
	// heartbeat now).
	if !et.challenged("a", 1) {
		t.Fatal("challenge after the echo ended not fresh")
	}
	// A restart of the challenger replaces its token and is fresh.
	if !et.challenged("a", 2) {
		t.Fatal("new incarnation not fresh")
	}
	seq++
	if got := et.take(seq); !slices.Equal(got, []Token{IdentityToken("a", 2)}) {
		t.Fatalf("echoes %v after a restart", got)
	}
	// The table is bounded; a full table drops new challengers.
	for i := range 7 {
		et.challenged(fmt.Sprintf("n%d", i), 1)
	}
	if et.challenged("overflow", 1) {
		t.Fatal("full table took a new challenger")
	}
}

// TestEchoRotation: with more challengers than MaxEchoes, each heartbeat
// carries MaxEchoes of them, least recently sent first, so every one is
// echoed echoRepeat times within a few heartbeats.
func TestEchoRotation(t *testing.T) {
	const n = 2*MaxEchoes + 5
	et := newEchoTable(1024)
	for i := range n {
		et.challenged(fmt.Sprintf("n%03d", i), 1)
	}
	count := map[Token]int{}
	beats := 0
	for seq := uint64(1); ; seq++ {
		got := et.take(seq)
		if got == nil {
			break
		}
		beats++
		if len(got) > MaxEchoes {
			t.Fatalf("heartbeat %d echoes %d tokens", seq, len(got))
		}
		seen := map[Token]bool{}
		for _, tok := range got {
			if seen[tok] {
				t.Fatalf("heartbeat %d echoes %v twice", seq, tok)
			}
			seen[tok] = true
			count[tok]++
		}
	}
	if len(count) != n {
		t.Fatalf("%d of %d challengers echoed", len(count), n)
	}
	for tok, c := range count {
		if c != echoRepeat {
			t.Errorf("%v echoed %d times, want %d", tok, c, echoRepeat)
		}
	}
	// n·echoRepeat echoes at MaxEchoes per heartbeat, rounded up, plus
	// one for the rotation's last, partly filled rounds.
	if least := (n*echoRepeat + MaxEchoes - 1) / MaxEchoes; beats > least+1 {
		t.Errorf("%d heartbeats, want at most %d", beats, least+1)
	}
}
