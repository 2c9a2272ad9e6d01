package membership

import (
	"fmt"
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

// frame builds a decoded single-part full heartbeat that echoes
// selfToken (so its sender is verified by it): claims are eligible and
// claimed.
func frame(node string, inc, seq uint64, claims ...string) *Frame {
	return echoing(unverified(node, inc, seq, claims...))
}

// echoing makes f echo selfToken (among others).
func echoing(f *Frame) *Frame {
	f.Echoes = []Token{IdentityToken("other", 1), selfToken()}
	return f
}

// unverified builds a decoded single-part full heartbeat that echoes
// nothing.
func unverified(node string, inc, seq uint64, claims ...string) *Frame {
	a := addrs(claims...)
	return &Frame{Heartbeat: Heartbeat{
		Node: node, Incarnation: inc, Sequence: seq, Interval: 100 * time.Millisecond,
		Full: true, Digest: StateDigest(a, a), Eligible: a, Claims: a,
	}, KeyIDs: []KeyID{keyID([]byte(testKey))}, Source: testSrc(), Parts: 1}
}

// beat builds a decoded heartbeat without the full state, carrying the
// digest of claims (eligible and claimed), that echoes selfToken.
func beat(node string, inc, seq uint64, claims ...string) *Frame {
	f := unverified(node, inc, seq, claims...)
	f.Full, f.Eligible, f.Claims = false, nil, nil
	return echoing(f)
}

// parts builds the decoded parts of one full heartbeat whose part i
// carries lists[i] (eligible and claimed), each with the digest of the
// whole; echo says whether they echo selfToken.
func parts(node string, inc, seq uint64, echo bool, lists ...[]string) []*Frame {
	var all []netip.Addr
	for _, l := range lists {
		all = append(all, addrs(l...)...)
	}
	d := StateDigest(all, all)
	out := make([]*Frame, len(lists))
	for i, l := range lists {
		f := unverified(node, inc, seq, l...)
		f.Digest, f.Part, f.Parts = d, i, len(lists)
		if echo {
			echoing(f)
		}
		out[i] = f
	}
	return out
}

// claimsOf returns the claims of live peer node, and whether it is live.
func claimsOf(tb *peerTable, node string) ([]netip.Addr, bool) {
	for _, p := range tb.live() {
		if p.Node == node {
			return p.Claims, true
		}
	}
	return nil, false
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
		if s.want == dropNone && live[0].Incarnation != s.f.Incarnation {
			t.Fatalf("%s: incarnation %d", s.name, live[0].Incarnation)
		}
		if !slices.Equal(live[0].Claims, addrs(s.claims...)) {
			t.Errorf("%s: claims %v, want %v", s.name, live[0].Claims, s.claims)
		}
	}
}

func TestObserveMultipart(t *testing.T) {
	tb := newTestTable(8)
	now := t0()
	seq5 := parts("a", 1, 5, true, []string{"10.0.0.1"}, []string{"10.0.0.2"}, []string{"10.0.0.3"})
	// Part 1 of 3 arrives first: the peer is heard but not yet live, and
	// not asked for its state (the rest is on its way).
	if obs := tb.observe(seq5[1], now); obs.drop != dropNone || obs.changed || obs.request {
		t.Fatalf("first part: %+v", obs)
	}
	if len(tb.live()) != 0 {
		t.Fatal("peer live before its heartbeat is complete")
	}
	if obs := tb.observe(seq5[1], now); obs.drop != dropReplay {
		t.Fatalf("repeated part: %+v", obs)
	}
	bad := parts("a", 1, 5, true, []string{"10.0.0.9"}, nil)[0]
	if obs := tb.observe(bad, now); obs.drop != dropMalformed {
		t.Fatalf("part count changed within a sequence: %+v", obs)
	}
	other := parts("a", 1, 5, true, []string{"10.0.0.1"}, []string{"10.0.0.2"}, []string{"10.0.0.4"})[0]
	if obs := tb.observe(other, now); obs.drop != dropMalformed {
		t.Fatalf("digest changed within a sequence: %+v", obs)
	}
	tb.observe(seq5[0], now)
	obs := tb.observe(seq5[2], now)
	if !obs.joined || !obs.changed {
		t.Fatalf("last part: %+v", obs)
	}
	if got, _ := claimsOf(tb, "a"); !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")) {
		t.Fatalf("assembled claims %v", got)
	}

	// Next sequence: only part 0 arrives, then a newer sequence starts.
	// The incomplete heartbeat never shows; the lists stay as they were.
	tb.observe(parts("a", 1, 6, false, nil, nil, nil)[0], now)
	seq7 := parts("a", 1, 7, false, []string{"10.0.0.7"}, []string{"10.0.0.8"})
	tb.observe(seq7[0], now)
	if got, _ := claimsOf(tb, "a"); !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")) {
		t.Fatalf("partial heartbeats changed claims to %v", got)
	}
	obs = tb.observe(seq7[1], now)
	if !obs.changed {
		t.Fatal("completed heartbeat not reported")
	}
	if got, _ := claimsOf(tb, "a"); !slices.Equal(got, addrs("10.0.0.7", "10.0.0.8")) {
		t.Fatalf("claims %v", got)
	}

	// MaxParts parts work (bitmap edge).
	lists := make([][]string, MaxParts)
	for i := range lists {
		lists[i] = []string{fmt.Sprintf("10.0.1.%d", i)}
	}
	for i, f := range parts("b", 1, 1, true, lists...) {
		obs = tb.observe(f, now)
		if obs.drop != dropNone {
			t.Fatalf("part %d of %d: %+v", i, MaxParts, obs)
		}
	}
	if !obs.joined {
		t.Fatal("64-part heartbeat did not complete")
	}
}

// TestDigestState walks one peer's state through the digest rules: a
// heartbeat without the full state that names the state held changes
// nothing; one that names another state makes it stale — the previous
// lists stay, and the state is asked for — until a full heartbeat of it
// arrives.
func TestDigestState(t *testing.T) {
	tb := newTestTable(8)
	now := t0()
	step := func() time.Time { now = now.Add(10 * time.Millisecond); return now }

	// Heard first through a heartbeat without the full state: verified,
	// but not live (its lists are not known, and it is not claiming
	// nothing), and asked for its state at once.
	obs := tb.observe(beat("a", 1, 1, "10.0.0.1"), step())
	if obs.drop != dropNone || obs.joined || !obs.request || obs.unverified {
		t.Fatalf("first heartbeat without the state: %+v", obs)
	}
	if len(tb.live()) != 0 {
		t.Fatalf("peer live without a known state: %+v", tb.live())
	}
	if got := tb.requests(now); !slices.Equal(got, []Token{IdentityToken("a", 1)}) {
		t.Fatalf("requests %v", got)
	}
	if tb.learning() != 1 {
		t.Fatalf("learning %d, want 1: a verified peer whose state has not arrived", tb.learning())
	}
	// Asked once at once; then at most once per half interval of the
	// peer's (50 ms), while the state is wanted.
	if obs = tb.observe(beat("a", 1, 2, "10.0.0.1"), step()); obs.request || tb.requests(now) != nil {
		t.Fatalf("second heartbeat: %+v, or asked again within half an interval", obs)
	}
	if len(tb.requests(now.Add(45*time.Millisecond))) != 1 {
		t.Fatal("not asked again half an interval after the first request")
	}
	// The answer: live with its lists; no more requests.
	if obs = tb.observe(frame("a", 1, 3, "10.0.0.1"), step()); !obs.joined || !obs.changed {
		t.Fatalf("full state: %+v", obs)
	}
	if tb.requests(now.Add(time.Hour)) != nil || tb.learning() != 0 {
		t.Fatalf("still asking for a known state, or learning (%d)", tb.learning())
	}
	// Steady state: heartbeats naming the state held change nothing.
	for seq := uint64(4); seq < 10; seq++ {
		if obs = tb.observe(beat("a", 1, seq, "10.0.0.1"), step()); obs.changed || obs.request || obs.drop != dropNone {
			t.Fatalf("steady heartbeat %d: %+v", seq, obs)
		}
	}
	// A full heartbeat of the state held changes nothing either.
	if obs = tb.observe(frame("a", 1, 10, "10.0.0.1"), step()); obs.changed || obs.request {
		t.Fatalf("repeated full state: %+v", obs)
	}

	// The peer moved to {10.0.0.2} and the full heartbeats were lost: its
	// next heartbeat names a state not held. The previous lists stay
	// (neither vanish nor change), the peer stays live, and its state is
	// asked for at once.
	obs = tb.observe(beat("a", 1, 11, "10.0.0.2"), step())
	if obs.changed || !obs.request {
		t.Fatalf("unknown digest: %+v", obs)
	}
	if got, ok := claimsOf(tb, "a"); !ok || !slices.Equal(got, addrs("10.0.0.1")) {
		t.Fatalf("stale peer: live %v, claims %v; want its previous claims", ok, got)
	}
	if tb.stale() != 1 || len(tb.requests(now.Add(time.Second))) != 1 || tb.learning() != 0 {
		t.Fatalf("stale %d, learning %d", tb.stale(), tb.learning())
	}
	// The leaving flag is in every heartbeat: it applies at once, stale
	// lists or not.
	f := beat("a", 1, 12, "10.0.0.2")
	f.Leaving = true
	if obs = tb.observe(f, step()); !obs.changed || obs.request {
		t.Fatalf("leaving while stale: %+v", obs)
	}
	if l := tb.live(); len(l) != 1 || !l[0].Leaving || !slices.Equal(l[0].Claims, addrs("10.0.0.1")) {
		t.Fatalf("leaving while stale: %+v", l)
	}
	// The full state arrives: replaced at once.
	g := frame("a", 1, 13, "10.0.0.2")
	g.Leaving = true
	if obs = tb.observe(g, step()); !obs.changed {
		t.Fatalf("full state after a stale spell: %+v", obs)
	}
	if got, _ := claimsOf(tb, "a"); !slices.Equal(got, addrs("10.0.0.2")) || tb.stale() != 0 || tb.requests(now.Add(time.Hour)) != nil {
		t.Fatalf("claims %v, stale %d", got, tb.stale())
	}

	// Moved away and back while we missed both changes: the digest names
	// the lists held again, so they are current and nothing is asked.
	tb.observe(beat("a", 1, 14, "10.0.0.3"), step())
	if tb.stale() != 1 {
		t.Fatal("not stale")
	}
	if obs = tb.observe(beat("a", 1, 15, "10.0.0.2"), step()); obs.changed || obs.request || tb.stale() != 0 || tb.requests(now.Add(time.Hour)) != nil {
		t.Fatalf("back to the state held: %+v, stale %d", obs, tb.stale())
	}

	// A full state whose lists do not hash to its digest (a bug) is not
	// taken: the lists stay, and the state is still asked for.
	bad := frame("a", 1, 16, "10.0.0.4")
	bad.Digest = StateDigest(addrs("10.0.0.5"), addrs("10.0.0.5"))
	if obs = tb.observe(bad, step()); !obs.badState || obs.changed || !obs.request {
		t.Fatalf("bad full state: %+v", obs)
	}
	if got, _ := claimsOf(tb, "a"); !slices.Equal(got, addrs("10.0.0.2")) || tb.stale() != 1 {
		t.Fatalf("claims %v after a bad full state", got)
	}
}

// TestDigestEmptyState: the empty state's digest is known without asking,
// so a peer eligible for nothing (every agent while it settles) joins
// with its first echoing heartbeat.
func TestDigestEmptyState(t *testing.T) {
	tb := newTestTable(8)
	obs := tb.observe(beat("a", 1, 1), t0())
	if !obs.joined || obs.request {
		t.Fatalf("empty state: %+v", obs)
	}
	if l := tb.live(); len(l) != 1 || l[0].Eligible != nil || l[0].Claims != nil {
		t.Fatalf("live %+v", l)
	}
	// Its first state goes out in full; a miss makes it stale, not empty.
	tb.observe(beat("a", 1, 2, "10.0.0.1"), t0())
	if tb.stale() != 1 || tb.requests(t0()) == nil {
		t.Fatal("a missed first state is not asked for")
	}
}

// TestDigestForgotten: a restart or a death forgets the state; the peer
// is live again only once its state is known again.
func TestDigestForgotten(t *testing.T) {
	tb := newTestTable(8)
	tb.observe(frame("a", 1, 1, "10.0.0.1"), t0())
	// Restart with the same state: the old run's lists go with it, and
	// the new run's state is asked for although its digest is the same.
	obs := tb.observe(beat("a", 2, 1, "10.0.0.1"), t0())
	if !obs.restarted || !obs.changed || !obs.request || len(tb.live()) != 0 {
		t.Fatalf("restart: %+v, live %+v", obs, tb.live())
	}
	if got := tb.requests(t0()); !slices.Equal(got, []Token{IdentityToken("a", 2)}) {
		t.Fatalf("requests %v, want the new incarnation's token", got)
	}
	if obs = tb.observe(frame("a", 2, 2, "10.0.0.1"), t0()); !obs.joined {
		t.Fatalf("restart answered: %+v", obs)
	}
	// Death: silent for the deadline. Heard again (same incarnation),
	// it must be verified again and its state learnt again.
	if died := tb.expire(t0().Add(time.Second)); !slices.Equal(died, []string{"a"}) {
		t.Fatalf("died %v", died)
	}
	obs = tb.observe(beat("a", 2, 30, "10.0.0.1"), t0().Add(2*time.Second))
	if obs.joined || !obs.request || len(tb.live()) != 0 {
		t.Fatalf("back after death: %+v", obs)
	}
	if obs = tb.observe(frame("a", 2, 31, "10.0.0.1"), t0().Add(2*time.Second)); !obs.joined {
		t.Fatalf("back after death, answered: %+v", obs)
	}
	// A silent peer is not asked for anything.
	tb.observe(beat("b", 1, 1, "10.0.0.9"), t0().Add(2*time.Second))
	tb.expire(t0().Add(4 * time.Second))
	if got := tb.requests(t0().Add(5 * time.Second)); got != nil {
		t.Fatalf("requests %v for silent peers", got)
	}
}

// TestDigestReplayedState: lists learnt from frames replayed before the
// peer was verified show only if the verified peer's own heartbeat names
// them as its state.
func TestDigestReplayedState(t *testing.T) {
	tb := newTestTable(8)
	// Replayed (unverified) full state {10.0.0.1}.
	tb.observe(unverified("a", 1, 1, "10.0.0.1"), t0())
	// The live peer's echoing heartbeat names another state: not live.
	if obs := tb.observe(beat("a", 1, 5, "10.0.0.2"), t0()); obs.joined || !obs.request || len(tb.live()) != 0 {
		t.Fatalf("verified with another state: %+v, live %+v", obs, tb.live())
	}
	// Its full state makes it live with that.
	tb.observe(frame("a", 1, 6, "10.0.0.2"), t0())
	if got, ok := claimsOf(tb, "a"); !ok || !slices.Equal(got, addrs("10.0.0.2")) {
		t.Fatalf("claims %v, live %v", got, ok)
	}
	// When the verified peer names the replayed state as its own, it is
	// its state: live at once.
	tb2 := newTestTable(8)
	tb2.observe(unverified("a", 1, 1, "10.0.0.1"), t0())
	if obs := tb2.observe(beat("a", 1, 5, "10.0.0.1"), t0()); !obs.joined || obs.request {
		t.Fatalf("verified naming the state held: %+v", obs)
	}
}

// TestRequestRotation: with more peers wanted than MaxRequests, each
// heartbeat asks for MaxRequests of them, least recently asked first.
func TestRequestRotation(t *testing.T) {
	const n = 2*MaxRequests + 5
	tb := newTestTable(1024)
	for i := range n {
		tb.observe(beat(fmt.Sprintf("n%03d", i), 1, 1, "10.0.0.1"), t0())
	}
	count := map[Token]int{}
	for i := range 3 {
		// Heartbeats half an interval apart: each may ask anyone not
		// asked in the last half interval.
		got := tb.requests(t0().Add(time.Duration(i) * 50 * time.Millisecond))
		if len(got) != MaxRequests {
			t.Fatalf("heartbeat %d asks %d peers", i, len(got))
		}
		for _, tok := range got {
			count[tok]++
		}
	}
	if len(count) != n {
		t.Fatalf("three heartbeats asked %d distinct peers of %d", len(count), n)
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
// is live only with a state its heartbeats since the verification name.
func TestVerificationMultipart(t *testing.T) {
	tb := newTestTable(8)
	// Seq 1 complete but unverified (as if replayed).
	for _, f := range parts("a", 1, 1, false, []string{"10.0.0.1"}, []string{"10.0.0.9"}) {
		tb.observe(f, t0())
	}
	// Seq 2, another state: the echo in part 0; not live until part 1
	// completes seq 2.
	seq2 := parts("a", 1, 2, false, []string{"10.0.0.1"}, []string{"10.0.0.2"})
	if obs := tb.observe(echoing(seq2[0]), t0()); obs.joined || len(tb.live()) != 0 {
		t.Fatalf("live with the lists of an unverified heartbeat: %+v", obs)
	}
	obs := tb.observe(seq2[1], t0())
	if !obs.joined || obs.unverified {
		t.Fatalf("completed verified heartbeat: %+v", obs)
	}
	if got, _ := claimsOf(tb, "a"); !slices.Equal(got, addrs("10.0.0.1", "10.0.0.2")) {
		t.Fatalf("claims %v", got)
	}
	// An echo in a later part verifies too.
	b := parts("b", 1, 1, false, []string{"10.0.1.1"}, []string{"10.0.1.2"})
	tb.observe(b[0], t0())
	if obs := tb.observe(echoing(b[1]), t0()); !obs.joined {
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
