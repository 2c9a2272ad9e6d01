package placement

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestScoreGolden pins the wire-compatible score: these values were
// computed independently (Python hashlib over name + 0x00 + packed
// address). If this test fails, agents of different versions would
// disagree on ownership.
func TestScoreGolden(t *testing.T) {
	for _, c := range []struct {
		node string
		addr string
		want uint64
	}{
		{"node1", "192.168.10.75", 0xa94c843bf1aa711f},
		{"cp1", "192.168.10.75", 0xfd8afcf3d479e08f},
		{"node1", "2001:db8::1", 0x71638efc89617c8c},
		{"worker-a.example.com", "10.0.0.1", 0x1d565ef10d70e57d},
	} {
		if got := Score(c.node, netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Score(%q, %s) = %#016x, want %#016x", c.node, c.addr, got, c.want)
		}
	}
}

func TestScoreNormalisation(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	if Score("n", v4) != Score("n", mapped) {
		t.Error("IPv4-mapped address scores differently from its IPv4 form")
	}
	zoned := netip.MustParseAddr("fe80::1%eth0")
	if Score("n", zoned) != Score("n", zoned.WithZone("")) {
		t.Error("zone changes the score")
	}
	// The separator keeps ("ab", x) and ("a", "b"+x) apart, and an invalid
	// address must not panic.
	if Score("ab", v4) == Score("a", v4) {
		t.Error("different names gave the same score")
	}
	_ = Score("", netip.Addr{})
	long := string(make([]byte, 1000))
	_ = Score(long, netip.MustParseAddr("2001:db8::1"))
}

func TestRank(t *testing.T) {
	ip := netip.MustParseAddr("192.168.10.75")
	in := []string{"node3", "cp1", "node1", "node2", "node1"}
	orig := slices.Clone(in)
	got := Rank(ip, in)
	if !slices.Equal(in, orig) {
		t.Fatalf("Rank modified its input: %v", in)
	}
	if len(got) != 4 {
		t.Fatalf("Rank = %v, want 4 distinct names", got)
	}
	for i := 1; i < len(got); i++ {
		a, b := Score(got[i-1], ip), Score(got[i], ip)
		if a < b {
			t.Errorf("Rank not best first at %d: %v", i, got)
		}
	}
	if Rank(ip, nil) != nil {
		t.Error("Rank(nil) != nil")
	}
	// Deterministic whatever the input order.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		sh := slices.Clone(in)
		r.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		if !slices.Equal(Rank(ip, sh), got) {
			t.Fatalf("Rank depends on input order: %v vs %v", Rank(ip, sh), got)
		}
	}
}

// TestTieBreak checks the comparator directly, since real score ties are
// (by design) practically impossible to construct.
func TestTieBreak(t *testing.T) {
	a := scored{name: "a", score: 7}
	b := scored{name: "b", score: 7}
	c := scored{name: "c", score: 9}
	if !better(a, b) || better(b, a) {
		t.Error("equal scores: lower name must rank first")
	}
	if !better(c, a) || better(a, c) {
		t.Error("higher score must rank first")
	}
	if better(a, a) {
		t.Error("a node is not better than itself")
	}
}

// names returns n node names node1..nodeN.
func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node%d", i+1)
	}
	return out
}

// ips returns n consecutive addresses from 10.0.0.1 (IPv4) and, if v6,
// interleaved IPv6 addresses.
func ips(n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	a := netip.MustParseAddr("10.0.0.1")
	b := netip.MustParseAddr("2001:db8::1")
	for i := range n {
		if i%4 == 3 {
			out = append(out, b)
			b = b.Next()
			continue
		}
		out = append(out, a)
		a = a.Next()
	}
	return out
}

// ownerOf returns the best-ranked candidate (the oracle for Decide and
// Assign).
func ownerOf(ip netip.Addr, cands []string) string {
	r := Rank(ip, cands)
	if len(r) == 0 {
		return ""
	}
	return r[0]
}

// order returns the nodes of a 3-node world sorted best first for ip, so
// that table tests can speak of "best", "mid", "worst".
func order(ip netip.Addr) (best, mid, worst string) {
	r := Rank(ip, []string{"a", "b", "c"})
	return r[0], r[1], r[2]
}

func TestDecide(t *testing.T) {
	ip := netip.MustParseAddr("192.168.10.75")
	best, mid, worst := order(ip)
	all := []string{best, mid, worst}

	type want struct {
		claim, answer bool
		owner         string
		ownerClaims   bool
		reason        Reason
		waiting       []string
	}
	cases := []struct {
		name string
		v    View
		want want
	}{
		{
			name: "nobody claims, best settled takes it and answers at once",
			v:    View{Self: best, Eligible: all, Settled: true},
			want: want{claim: true, answer: true, owner: best, reason: ReasonOwner},
		},
		{
			name: "nobody claims, best unsettled waits",
			v:    View{Self: best, Eligible: all},
			want: want{owner: best, reason: ReasonUnsettled},
		},
		{
			name: "nobody claims, non-owner stays out",
			v:    View{Self: mid, Eligible: all, Settled: true},
			want: want{owner: best, reason: ReasonStandby},
		},
		{
			name: "not eligible",
			v:    View{Self: worst, Eligible: []string{best, mid}, Settled: true},
			want: want{owner: best, reason: ReasonNotEligible},
		},
		{
			name: "not eligible but still claims: release",
			v:    View{Self: worst, Eligible: []string{best, mid}, Claimants: []string{worst}, Settled: true},
			want: want{owner: best, reason: ReasonNotEligible},
		},
		{
			name: "no candidates at all",
			v:    View{Self: best, Settled: true},
			want: want{reason: ReasonNotEligible},
		},
		{
			name: "planned move: new owner claims but waits for the holder",
			v:    View{Self: best, Eligible: all, Claimants: []string{mid}, Settled: true},
			want: want{claim: true, owner: best, reason: ReasonAwaitingRelease, waiting: []string{mid}},
		},
		{
			name: "deferring owner leaves a held IP where it is",
			v:    View{Self: best, Eligible: all, Claimants: []string{mid}, Settled: true, Defer: true},
			want: want{owner: best, reason: ReasonDeferring},
		},
		{
			name: "deferring owner takes an IP nobody holds",
			v:    View{Self: best, Eligible: all, Settled: true, Defer: true},
			want: want{claim: true, answer: true, owner: best, reason: ReasonOwner},
		},
		{
			name: "deferring owner ignores a claim by a non-candidate (leaving holder)",
			v:    View{Self: best, Eligible: all, Claimants: []string{mid}, Leaving: []string{mid}, Settled: true, Defer: true},
			want: want{claim: true, answer: true, owner: best, reason: ReasonOwner},
		},
		{
			name: "deferring owner that already claims keeps its claim",
			v:    View{Self: best, Eligible: all, Claimants: []string{best, mid}, Settled: true, Defer: true},
			want: want{claim: true, owner: best, ownerClaims: true, reason: ReasonAwaitingRelease, waiting: []string{mid}},
		},
		{
			name: "the holder keeps a deferred IP",
			v:    View{Self: mid, Eligible: all, Claimants: []string{mid}, Settled: true},
			want: want{claim: true, answer: true, owner: best, reason: ReasonHolding},
		},
		{
			name: "planned move: new owner already claiming, still waiting",
			v:    View{Self: best, Eligible: all, Claimants: []string{best, mid}, Settled: true},
			want: want{claim: true, owner: best, ownerClaims: true, reason: ReasonAwaitingRelease, waiting: []string{mid}},
		},
		{
			name: "planned move: holder sees the owner's claim and releases",
			v:    View{Self: mid, Eligible: all, Claimants: []string{best, mid}, Settled: true},
			want: want{owner: best, ownerClaims: true, reason: ReasonYield},
		},
		{
			name: "planned move: release seen, owner answers",
			v:    View{Self: best, Eligible: all, Claimants: []string{best}, Settled: true},
			want: want{claim: true, answer: true, owner: best, ownerClaims: true, reason: ReasonOwner},
		},
		{
			name: "holder keeps answering until the owner claims",
			v:    View{Self: mid, Eligible: all, Claimants: []string{mid}, Settled: true},
			want: want{claim: true, answer: true, owner: best, reason: ReasonHolding},
		},
		{
			name: "holder that is unsettled keeps its claim",
			v:    View{Self: mid, Eligible: all, Claimants: []string{mid}},
			want: want{claim: true, answer: true, owner: best, reason: ReasonHolding},
		},
		{
			name: "owner unsettled but already claiming keeps claiming",
			v:    View{Self: best, Eligible: all, Claimants: []string{best}},
			want: want{claim: true, answer: true, owner: best, ownerClaims: true, reason: ReasonOwner},
		},
		{
			name: "two claimants after heal: better one waits for the release",
			v:    View{Self: mid, Eligible: []string{mid, worst}, Claimants: []string{mid, worst}, Settled: true},
			want: want{claim: true, owner: mid, ownerClaims: true, reason: ReasonAwaitingRelease, waiting: []string{worst}},
		},
		{
			name: "two claimants after heal: worse one yields",
			v:    View{Self: worst, Eligible: []string{mid, worst}, Claimants: []string{mid, worst}, Settled: true},
			want: want{owner: mid, ownerClaims: true, reason: ReasonYield},
		},
		{
			name: "holder with a worse claimant and not answering waits for it",
			v:    View{Self: mid, Eligible: all, Claimants: []string{mid, worst}, Settled: true},
			want: want{claim: true, owner: best, reason: ReasonHolding, waiting: []string{worst}},
		},
		{
			name: "owner leaving: successor takes over at once despite its claim",
			v:    View{Self: mid, Eligible: all, Claimants: []string{best}, Leaving: []string{best}, Settled: true},
			want: want{claim: true, answer: true, owner: mid, reason: ReasonOwner},
		},
		{
			name: "self leaving: neither claim nor answer, successor named",
			v:    View{Self: best, Eligible: all, Claimants: []string{best}, Leaving: []string{best}, Settled: true},
			want: want{owner: mid, reason: ReasonLeaving},
		},
		{
			name: "self leaving: successor's claim is visible",
			v:    View{Self: best, Eligible: all, Claimants: []string{best, mid}, Leaving: []string{best}, Settled: true},
			want: want{owner: mid, ownerClaims: true, reason: ReasonLeaving},
		},
		{
			name: "self leaving and not eligible",
			v:    View{Self: best, Eligible: []string{mid}, Leaving: []string{best}},
			want: want{owner: mid, reason: ReasonLeaving},
		},
		{
			name: "claim from a non-eligible node does not block",
			v:    View{Self: best, Eligible: []string{best, mid}, Claimants: []string{worst}, Settled: true},
			want: want{claim: true, answer: true, owner: best, reason: ReasonOwner},
		},
		{
			name: "owner is dead (absent): next one takes over",
			v:    View{Self: mid, Eligible: []string{mid, worst}, Settled: true},
			want: want{claim: true, answer: true, owner: mid, reason: ReasonOwner},
		},
		{
			name: "duplicates in inputs are harmless",
			v:    View{Self: best, Eligible: []string{best, best, mid, mid}, Claimants: []string{mid, mid}, Settled: true},
			want: want{claim: true, owner: best, reason: ReasonAwaitingRelease, waiting: []string{mid}},
		},
		{
			name: "empty self name",
			v:    View{Eligible: all},
			want: want{owner: best, reason: ReasonNotEligible},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(ip, c.v)
			got := want{d.Claim, d.Answer, d.Owner, d.OwnerClaims, d.Reason, d.WaitingFor}
			if got.claim != c.want.claim || got.answer != c.want.answer || got.owner != c.want.owner ||
				got.ownerClaims != c.want.ownerClaims || got.reason != c.want.reason || !slices.Equal(got.waiting, c.want.waiting) {
				t.Errorf("Decide = %+v\nwant       %+v", got, c.want)
			}
			if d.Answer && !d.Claim {
				t.Error("answers without claiming")
			}
		})
	}
}

// TestDecideInvariants checks, over many random views, that Decide never
// answers without claiming, never claims when not a candidate, and that
// the owner it reports is the oracle's.
func TestDecideInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	nodes := names(6)
	addrs := ips(50)
	pick := func() []string {
		var out []string
		for _, n := range nodes {
			if r.IntN(2) == 0 {
				out = append(out, n)
			}
		}
		return out
	}
	for range 20000 {
		ip := addrs[r.IntN(len(addrs))]
		v := View{
			Self:      nodes[r.IntN(len(nodes))],
			Eligible:  pick(),
			Claimants: pick(),
			Settled:   r.IntN(2) == 0,
		}
		if r.IntN(3) == 0 {
			v.Leaving = pick()
		}
		d := Decide(ip, v)
		var cands []string
		for _, n := range v.Eligible {
			if !slices.Contains(v.Leaving, n) {
				cands = append(cands, n)
			}
		}
		if want := ownerOf(ip, cands); d.Owner != want {
			t.Fatalf("owner %q, want %q for %+v", d.Owner, want, v)
		}
		if d.Answer && !d.Claim {
			t.Fatalf("answer without claim: %+v -> %+v", v, d)
		}
		if d.Claim && !slices.Contains(cands, v.Self) {
			t.Fatalf("claims while not a candidate: %+v -> %+v", v, d)
		}
		if d.Claim && d.Owner != v.Self && !slices.Contains(v.Claimants, v.Self) {
			t.Fatalf("non-owner starts a new claim: %+v -> %+v", v, d)
		}
		if d.Claim && !slices.Contains(v.Claimants, v.Self) && !v.Settled {
			t.Fatalf("unsettled node starts a new claim: %+v -> %+v", v, d)
		}
	}
}
