package membership

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// t0() is the tests' epoch.
func t0() time.Time { return time.Unix(1_700_000_000, 0) }

// The peer tables of these tests belong to node "self", incarnation
// selfInc.
const selfInc = 1

// selfToken is the token the tables' peers echo.
func selfToken() Token { return IdentityToken("self", selfInc) }

// newTestTable returns a table of "self" with DeadAfter 3.
func newTestTable(maxPeers int) *peerTable { return newPeerTable("self", selfInc, 3, maxPeers) }

// frame builds a decoded single-part frame that echoes selfToken (so its
// sender is verified by it).
func frame(node string, inc, seq uint64, claims ...string) *Frame {
	f := unverified(node, inc, seq, claims...)
	f.Echoes = []Token{IdentityToken("other", 1), selfToken()}
	return f
}

// unverified builds a decoded single-part frame that echoes nothing.
func unverified(node string, inc, seq uint64, claims ...string) *Frame {
	return &Frame{Heartbeat: Heartbeat{
		Node: node, Incarnation: inc, Sequence: seq, Interval: 100 * time.Millisecond,
		Eligible: addrs(claims...), Claims: addrs(claims...),
	}, KeyIDs: []KeyID{keyID([]byte(testKey))}, Source: testSrc(), Parts: 1}
}

func part(f *Frame, i, n int) *Frame {
	g := *f
	g.Part, g.Parts = i, n
	return &g
}

func TestObserveReplayRules(t *testing.T) {
	tb := newTestTable(8)
	steps := []struct {
		name string
		f    *Frame
		want dropReason
		// live peers' claims after the step, for node "a"
		claims  []string
		changed bool
	}{
		{"first heartbeat joins", frame("a", 10, 1, "10.0.0.1"), dropNone, []string{"10.0.0.1"}, true},
		{"same sequence again is a replay", frame("a", 10, 1, "10.0.0.1"), dropReplay, []string{"10.0.0.1"}, false},
		{"newer sequence, same state", frame("a", 10, 2, "10.0.0.1"), dropNone, []string{"10.0.0.1"}, false},
		{"older sequence is a replay", frame("a", 10, 1, "10.0.0.9"), dropReplay, []string{"10.0.0.1"}, false},
		{"sequence gap is fine (lost frames)", frame("a", 10, 9, "10.0.0.2"), dropNone, []string{"10.0.0.2"}, true},
		{"older incarnation is a replay", frame("a", 9, 100, "10.0.0.9"), dropReplay, []string{"10.0.0.2"}, false},
		{"newer incarnation restarts, sequence from 1", frame("a", 11, 1), dropNone, nil, true},
		{"old incarnation now a replay", frame("a", 10, 10, "10.0.0.2"), dropReplay, nil, false},
		{"own name ignored", frame("self", 1, 1, "10.0.0.3"), dropSelf, nil, false},
	}
	now := t0()
	for _, s := range steps {
		now = now.Add(10 * time.Millisecond)
		obs := tb.observe(s.f, now)
		if obs.drop != s.want {
			t.Fatalf("%s: drop %q, want %q", s.name, obs.drop, s.want)
		}
		if obs.changed != s.changed {
			t.Errorf("%s: changed %v, want %v", s.name, obs.changed, s.changed)
		}
		live := tb.live()
		if len(live) != 1 || live[0].Node != "a" {
			t.Fatalf("%s: live peers %+v", s.name, live)
		}
		if !slices.Equal(live[0].Claims, addrs(s.claims...)) {
			t.Errorf("%s: claims %v, want %v", s.name, live[0].Claims, s.claims)
		}
	}
}

func TestObserveMultipart(t *testing.T) {
	tb := newTestTable(8)
	now := t0()
	// Part 1 of 3 arrives first: the peer is heard but not yet live.
	p1 := part(frame("a", 1, 5, "10.0.0.2"), 1, 3)
	if obs := tb.observe(p1, now); obs.drop != dropNone || obs.changed {
		t.Fatalf("first part: %+v", obs)
	}
	if len(tb.live()) != 0 {
		t.Fatal("peer live before its heartbeat is complete")
	}
	if obs := tb.observe(p1, now); obs.drop != dropReplay {
		t.Fatalf("repeated part: %+v", obs)
	}
	bad := part(frame("a", 1, 5, "10.0.0.9"), 0, 2)
	if obs := tb.observe(bad, now); obs.drop != dropMalformed {
		t.Fatalf("part count changed within a sequence: %+v", obs)
	}
	tb.observe(part(frame("a", 1, 5, "10.0.0.1"), 0, 3), now)
	obs := tb.observe(part(frame("a", 1, 5, "10.0.0.3"), 2, 3), now)
	if !obs.joined || !obs.changed {
		t.Fatalf("last part: %+v", obs)
	}
	if got := tb.live()[0].Claims; !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")) {
		t.Fatalf("assembled claims %v", got)
	}

	// Next sequence: only part 0 arrives, then a newer sequence starts.
	// The incomplete heartbeat never shows; the lists stay as they were.
	tb.observe(part(frame("a", 1, 6), 0, 3), now)
	tb.observe(part(frame("a", 1, 7, "10.0.0.7"), 0, 2), now)
	if got := tb.live()[0].Claims; !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")) {
		t.Fatalf("partial heartbeats changed claims to %v", got)
	}
	obs = tb.observe(part(frame("a", 1, 7, "10.0.0.8"), 1, 2), now)
	if !obs.changed {
		t.Fatal("completed heartbeat not reported")
	}
	if got := tb.live()[0].Claims; !slices.Equal(got, addrs("10.0.0.7", "10.0.0.8")) {
		t.Fatalf("claims %v", got)
	}

	// MaxParts parts work (bitmap edge).
	for i := range MaxParts {
		obs = tb.observe(part(frame("b", 1, 1, "10.0.1.1"), i, MaxParts), now)
		if obs.drop != dropNone {
			t.Fatalf("part %d of %d: %+v", i, MaxParts, obs)
		}
	}
	if !obs.joined {
		t.Fatal("64-part heartbeat did not complete")
	}
}

func TestExpire(t *testing.T) {
	tb := newTestTable(8)
	tb.observe(frame("a", 1, 1, "10.0.0.1"), t0())
	tb.observe(frame("b", 1, 1), t0())
	// Deadline: 3 intervals + half an interval = 350 ms.
	if died := tb.expire(t0().Add(350 * time.Millisecond)); len(died) != 0 {
		t.Fatalf("died at the deadline: %v", died)
	}
	tb.observe(frame("b", 1, 2), t0().Add(300*time.Millisecond))
	died := tb.expire(t0().Add(351 * time.Millisecond))
	if !slices.Equal(died, []string{"a"}) {
		t.Fatalf("died %v, want [a]", died)
	}
	if l := tb.live(); len(l) != 1 || l[0].Node != "b" {
		t.Fatalf("live %+v", l)
	}
	// A replay of a dead peer's old frame does not bring it back.
	if obs := tb.observe(frame("a", 1, 1, "10.0.0.1"), t0().Add(400*time.Millisecond)); obs.drop != dropReplay {
		t.Fatalf("replay of dead peer: %+v", obs)
	}
	// Its next real heartbeat does (link came back).
	obs := tb.observe(frame("a", 1, 5, "10.0.0.1"), t0().Add(500*time.Millisecond))
	if !obs.joined {
		t.Fatalf("rejoin: %+v", obs)
	}
	// The deadline follows the peer's own interval.
	slow := frame("c", 1, 1)
	slow.Interval = time.Second
	tb.observe(slow, t0())
	if died := tb.expire(t0().Add(3 * time.Second)); slices.Contains(died, "c") {
		t.Fatal("slow peer died before 3.5 of its intervals")
	}
	if died := tb.expire(t0().Add(3501 * time.Millisecond)); !slices.Contains(died, "c") {
		t.Fatal("slow peer alive after 3.5 of its intervals")
	}
}

func TestLeavingFlag(t *testing.T) {
	tb := newTestTable(8)
	tb.observe(frame("a", 1, 1, "10.0.0.1"), t0())
	f := frame("a", 1, 2, "10.0.0.1")
	f.Leaving = true
	if obs := tb.observe(f, t0()); !obs.changed {
		t.Fatal("leaving not reported as a change")
	}
	if !tb.live()[0].Leaving {
		t.Fatal("peer not marked leaving")
	}
	// The next incarnation (restart) is not leaving.
	tb.observe(frame("a", 2, 1, "10.0.0.1"), t0())
	if tb.live()[0].Leaving {
		t.Fatal("new incarnation still leaving")
	}
}

func TestPeerTableCapacity(t *testing.T) {
	tb := newTestTable(2)
	tb.observe(frame("a", 1, 1), t0())
	tb.observe(frame("b", 1, 1), t0())
	if obs := tb.observe(frame("c", 1, 1), t0()); obs.drop != dropCapacity {
		t.Fatalf("table over capacity: %+v", obs)
	}
	tb.expire(t0().Add(time.Second)) // a and b die
	tb.observe(frame("b", 1, 2), t0().Add(time.Second+time.Millisecond))
	if obs := tb.observe(frame("c", 1, 1), t0().Add(time.Second)); obs.drop != dropNone {
		t.Fatalf("dead peer not evicted for a new one: %+v", obs)
	}
	if _, ok := tb.peers["a"]; ok {
		t.Fatal("evicted the wrong peer")
	}
}

func TestSortedUnique(t *testing.T) {
	got := sortedUnique([]netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")})
	if !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2")) {
		t.Fatal(got)
	}
}

// TestPause: time this process spent stalled does not count as a peer's
// silence.
func TestPause(t *testing.T) {
	tb := newTestTable(8)
	tb.observe(frame("a", 1, 1), t0())
	tb.pause(400 * time.Millisecond) // we were descheduled for 400 ms
	if died := tb.expire(t0().Add(500 * time.Millisecond)); len(died) != 0 {
		t.Fatalf("peer died of our own stall: %v", died)
	}
	if died := tb.expire(t0().Add(751 * time.Millisecond)); len(died) != 1 {
		t.Fatal("peer silent for 350 ms of our awake time is not dead")
	}
	if !tb.peers["a"].lastHeard.Equal(t0()) {
		t.Error("pause changed the reported LastHeard")
	}
}

// TestVerification walks one peer through the challenge/echo rules.
func TestVerification(t *testing.T) {
	tb := newTestTable(8)
	now := t0()
	step := func() time.Time { now = now.Add(10 * time.Millisecond); return now }
	live := func() bool { l := tb.live(); return len(l) == 1 && l[0].Node == "a" }

	// Heard but unverified: in the replay window, not live, challenged.
	obs := tb.observe(unverified("a", 10, 1, "10.0.0.1"), step())
	if obs.drop != dropNone || !obs.unverified || !obs.challenge || obs.joined || obs.changed {
		t.Fatalf("first unverified frame: %+v", obs)
	}
	if live() || !tb.challenging() {
		t.Fatal("unverified peer is live, or not challenged")
	}
	// Still unverified: counted, but no new challenge.
	obs = tb.observe(unverified("a", 10, 2, "10.0.0.1"), step())
	if !obs.unverified || obs.challenge || live() {
		t.Fatalf("second unverified frame: %+v", obs)
	}
	// An echo of another token (another node, or another run of ours) does
	// not verify.
	f := unverified("a", 10, 3, "10.0.0.1")
	f.Echoes = []Token{IdentityToken("self", selfInc+1), IdentityToken("b", selfInc)}
	if obs = tb.observe(f, step()); !obs.unverified || live() {
		t.Fatalf("wrong echo verified: %+v", obs)
	}
	// Its frames moved the replay window although it is unverified.
	if obs = tb.observe(frame("a", 10, 2, "10.0.0.1"), step()); obs.drop != dropReplay {
		t.Fatalf("frame older than an unverified one: %+v", obs)
	}
	// Our token verifies: live at once, with the lists of that heartbeat.
	obs = tb.observe(frame("a", 10, 4, "10.0.0.2"), step())
	if !obs.joined || !obs.changed || obs.unverified || !live() || tb.challenging() {
		t.Fatalf("echo: %+v, live %v", obs, tb.live())
	}
	if got := tb.live()[0].Claims; !slices.Equal(got, addrs("10.0.0.2")) {
		t.Fatalf("claims %v", got)
	}
	// Verified stays verified without further echoes.
	if obs = tb.observe(unverified("a", 10, 5, "10.0.0.2"), step()); obs.unverified || !live() {
		t.Fatalf("verified peer lost verification: %+v", obs)
	}

	// Restart: the new incarnation must be verified again.
	obs = tb.observe(unverified("a", 11, 1, "10.0.0.2"), step())
	if !obs.restarted || !obs.changed || !obs.challenge || live() {
		t.Fatalf("restart: %+v, live %v", obs, tb.live())
	}
	if obs = tb.observe(frame("a", 11, 2, "10.0.0.2"), step()); !obs.joined || !live() {
		t.Fatalf("restart verified: %+v", obs)
	}

	// Death, then the same incarnation again (a partition healed): not
	// live until verified again.
	if died := tb.expire(now.Add(351 * time.Millisecond)); !slices.Equal(died, []string{"a"}) {
		t.Fatalf("died %v", died)
	}
	now = now.Add(time.Second)
	obs = tb.observe(unverified("a", 11, 20, "10.0.0.2"), step())
	if obs.drop != dropNone || !obs.challenge || live() {
		t.Fatalf("reappearance: %+v, live %v", obs, tb.live())
	}
	if obs = tb.observe(frame("a", 11, 21, "10.0.0.2"), step()); !obs.joined || !live() {
		t.Fatalf("reappearance verified: %+v", obs)
	}

	// An unverified peer that goes silent is not a death, and stops the
	// challenge.
	tb.observe(unverified("b", 1, 1), now)
	if !tb.challenging() {
		t.Fatal("not challenging b")
	}
	tb.observe(frame("a", 11, 22, "10.0.0.2"), now.Add(300*time.Millisecond))
	if died := tb.expire(now.Add(351 * time.Millisecond)); len(died) != 0 {
		t.Fatalf("unverified peer died: %v", died)
	}
	if tb.challenging() {
		t.Fatal("still challenging a silent peer")
	}
}

// TestVerificationMultipart: the echo may come in any part, and the peer
// is live only with the lists of a heartbeat no older than the one that
// verified it.
func TestVerificationMultipart(t *testing.T) {
	tb := newTestTable(8)
	// Seq 1 complete but unverified (as if replayed).
	tb.observe(part(unverified("a", 1, 1, "10.0.0.1"), 0, 2), t0())
	tb.observe(part(unverified("a", 1, 1, "10.0.0.9"), 1, 2), t0())
	// Seq 2: the echo in part 0; not live until part 1 completes seq 2.
	if obs := tb.observe(part(frame("a", 1, 2, "10.0.0.1"), 0, 2), t0()); obs.joined || len(tb.live()) != 0 {
		t.Fatalf("live with the lists of an unverified heartbeat: %+v", obs)
	}
	obs := tb.observe(part(unverified("a", 1, 2, "10.0.0.2"), 1, 2), t0())
	if !obs.joined || obs.unverified {
		t.Fatalf("completed verified heartbeat: %+v", obs)
	}
	if got := tb.live()[0].Claims; !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2")) {
		t.Fatalf("claims %v", got)
	}
	// An echo in a later part verifies too.
	tb.observe(part(unverified("b", 1, 1, "10.0.1.1"), 0, 2), t0())
	if obs := tb.observe(part(frame("b", 1, 1, "10.0.1.2"), 1, 2), t0()); !obs.joined {
		t.Fatalf("echo in part 1: %+v", obs)
	}
}

// TestReplayAfterReceiverRestartTable: frames captured from a live peer (which
// echoed the receiver's token of the time) are replayed, after the peer
// died, to a receiver that restarted (new incarnation, empty table). They
// enter the replay window but never make the peer live.
func TestReplayAfterReceiverRestartTable(t *testing.T) {
	before := newTestTable(8)
	var captured []*Frame
	for seq := uint64(1); seq <= 20; seq++ {
		f := frame("a", 10, seq, "10.0.0.1")
		captured = append(captured, f)
		before.observe(f, t0().Add(time.Duration(seq)*100*time.Millisecond))
	}
	if len(before.live()) != 1 {
		t.Fatal("peer not live before the restart")
	}

	after := newPeerTable("self", selfInc+1, 3, 8) // the restarted receiver
	now := t0().Add(time.Hour)
	for i, f := range captured {
		now = now.Add(100 * time.Millisecond)
		obs := after.observe(f, now)
		if obs.drop != dropNone || !obs.unverified || obs.joined {
			t.Fatalf("replayed frame %d: %+v", i, obs)
		}
		if len(after.live()) != 0 {
			t.Fatalf("replayed frame %d made the dead peer live", i)
		}
		if !after.challenging() {
			t.Fatal("not challenging the replayed peer")
		}
	}
	// Replayed again: now plain replays.
	for _, f := range captured {
		if obs := after.observe(f, now); obs.drop != dropReplay {
			t.Fatalf("second replay: %+v", obs)
		}
	}
	// Silence ends the challenge, without a death.
	if died := after.expire(now.Add(time.Second)); len(died) != 0 || after.challenging() {
		t.Fatalf("died %v, challenging %v", died, after.challenging())
	}
}

// TestPeerFingerprints: a live peer reports the keys of its latest frame;
// a change of keys is a change.
func TestPeerFingerprints(t *testing.T) {
	tb := newTestTable(8)
	tb.observe(frame("a", 1, 1), t0())
	if got := tb.live()[0].Fingerprints; !slices.Equal(got, []string{Fingerprint([]byte(testKey))}) {
		t.Fatalf("fingerprints %v", got)
	}
	f := frame("a", 1, 2)
	f.KeyIDs = []KeyID{keyID([]byte(testKey)), keyID([]byte(testKey2))}
	if obs := tb.observe(f, t0()); !obs.changed {
		t.Fatal("new keys not reported as a change")
	}
	if got := tb.live()[0].Fingerprints; !slices.Equal(got, []string{Fingerprint([]byte(testKey)), Fingerprint([]byte(testKey2))}) {
		t.Fatalf("fingerprints %v", got)
	}
	f = frame("a", 1, 3)
	f.KeyIDs = []KeyID{keyID([]byte(testKey)), keyID([]byte(testKey2))}
	if obs := tb.observe(f, t0()); obs.changed {
		t.Fatal("same keys reported as a change")
	}
}
