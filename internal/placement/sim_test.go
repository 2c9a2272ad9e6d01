package placement

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// This file simulates the claim protocol among agents exchanging
// heartbeats over an asynchronous network: messages are delivered one at a
// time in random order across links but in order on each link (as on one
// Ethernet segment), every agent re-decides on every message it receives
// and sends a heartbeat at once when its claims change (as the membership
// layer does). After every single event the simulator checks invariants
// over what the agents are doing at that instant.

// simHB is one heartbeat's content.
type simHB struct {
	leaving  bool
	eligible []netip.Addr
	claims   []netip.Addr
}

// simNode is one agent.
type simNode struct {
	name      string
	up        bool
	leaving   bool
	settled   bool
	eligible  []netip.Addr
	claims    map[netip.Addr]bool
	answering map[netip.Addr]bool
	// heard is the latest heartbeat from every peer this node considers
	// live.
	heard map[string]simHB
}

func (n *simNode) hb() simHB {
	return simHB{
		leaving:  n.leaving,
		eligible: slices.Clone(n.eligible),
		claims:   slices.SortedFunc(maps.Keys(n.claims), netip.Addr.Compare),
	}
}

type simLink struct{ from, to string }

type sim struct {
	t      *testing.T
	r      *rand.Rand
	ips    []netip.Addr
	nodes  []*simNode
	byName map[string]*simNode
	// cut links deliver nothing (from does not reach to).
	cut      map[simLink]bool
	inflight map[simLink][]simHB
	// strict: at most one answerer per IP at every instant.
	strict bool
	// noGap: at least one answerer per IP (with a live candidate) at every
	// instant.
	noGap bool
	// overlapEvents counts events after which some IP had two answerers.
	overlapEvents int
	events        int
}

func newSim(t *testing.T, seed uint64, ips []netip.Addr, nodes ...string) *sim {
	s := &sim{
		t:        t,
		r:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		ips:      ips,
		byName:   map[string]*simNode{},
		cut:      map[simLink]bool{},
		inflight: map[simLink][]simHB{},
	}
	for _, n := range nodes {
		s.add(n, ips)
	}
	return s
}

// add creates a node that is down until start is called.
func (s *sim) add(name string, eligible []netip.Addr) *simNode {
	n := &simNode{
		name:      name,
		eligible:  slices.Clone(eligible),
		claims:    map[netip.Addr]bool{},
		answering: map[netip.Addr]bool{},
		heard:     map[string]simHB{},
	}
	s.nodes = append(s.nodes, n)
	s.byName[name] = n
	return n
}

// start boots a node the way an agent does: it announces its eligibility,
// listens until it has heard everyone (settles), then decides.
func (s *sim) start(names ...string) {
	for _, name := range names {
		n := s.byName[name]
		n.up, n.settled = true, false
		n.claims, n.answering, n.heard = map[netip.Addr]bool{}, map[netip.Addr]bool{}, map[string]simHB{}
		s.broadcast(n)
	}
	s.tickAll()
	s.drain()
	for _, name := range names {
		s.byName[name].settled = true
		s.decide(s.byName[name])
	}
	s.drain()
}

// crash stops a node without a word.
func (s *sim) crash(name string) {
	n := s.byName[name]
	n.up = false
	clear(n.claims)
	clear(n.answering)
	for l := range s.inflight {
		if l.from == name || l.to == name {
			delete(s.inflight, l)
		}
	}
}

func (s *sim) broadcast(n *simNode) {
	if !n.up {
		return
	}
	hb := n.hb()
	for _, m := range s.nodes {
		l := simLink{n.name, m.name}
		if m == n || !m.up || s.cut[l] {
			continue
		}
		s.inflight[l] = append(s.inflight[l], hb)
	}
}

// decide re-runs Decide for every IP on n's current view and sends a
// heartbeat when its claims changed.
func (s *sim) decide(n *simNode) {
	if !n.up {
		return
	}
	view := []Node{{Name: n.name, Leaving: n.leaving, Eligible: n.eligible, Claims: slices.Collect(maps.Keys(n.claims))}}
	for _, p := range slices.Sorted(maps.Keys(n.heard)) {
		hb := n.heard[p]
		view = append(view, Node{Name: p, Leaving: hb.leaving, Eligible: hb.eligible, Claims: hb.claims})
	}
	a := Assign(TableFromNodes(view))
	changed := false
	for _, ip := range s.ips {
		v := a.View(n.name, ip)
		v.Settled = n.settled
		d := Decide(ip, v)
		answer := d.Answer
		if d.Reason == ReasonLeaving && n.answering[ip] && !d.OwnerClaims {
			// Grace window: a leaving node keeps answering until it hears
			// its successor's claim.
			answer = true
		}
		if d.Claim != n.claims[ip] {
			changed = true
		}
		setBool(n.claims, ip, d.Claim)
		setBool(n.answering, ip, answer)
	}
	if changed {
		s.broadcast(n)
	}
}

func setBool(m map[netip.Addr]bool, k netip.Addr, v bool) {
	if v {
		m[k] = true
	} else {
		delete(m, k)
	}
}

// deliverOne delivers the head of a random non-empty link; false when
// nothing is in flight.
func (s *sim) deliverOne() bool {
	var links []simLink
	for l, q := range s.inflight {
		if len(q) > 0 {
			links = append(links, l)
		}
	}
	if len(links) == 0 {
		return false
	}
	slices.SortFunc(links, func(a, b simLink) int {
		if a.from != b.from {
			return compareStr(a.from, b.from)
		}
		return compareStr(a.to, b.to)
	})
	l := links[s.r.IntN(len(links))]
	hb := s.inflight[l][0]
	s.inflight[l] = s.inflight[l][1:]
	to := s.byName[l.to]
	if to.up {
		to.heard[l.from] = hb
		s.decide(to)
	}
	s.check()
	return true
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// drain delivers until nothing is in flight (bounded).
func (s *sim) drain() {
	for i := 0; s.deliverOne(); i++ {
		if i > 100000 {
			s.t.Fatal("simulation does not quiesce")
		}
	}
}

// tickAll sends every live node's periodic heartbeat.
func (s *sim) tickAll() {
	for _, n := range s.nodes {
		s.broadcast(n)
	}
}

// detectDeaths makes every node forget peers it can no longer hear (down,
// or the link from them is cut), as DeadAfter silent intervals would.
func (s *sim) detectDeaths() {
	for _, n := range s.nodes {
		if !n.up {
			continue
		}
		lost := false
		for p := range n.heard {
			if !s.byName[p].up || s.cut[simLink{p, n.name}] {
				delete(n.heard, p)
				lost = true
			}
		}
		if lost {
			s.decide(n)
		}
	}
	s.check()
}

// round is one heartbeat interval: everyone sends, everything arrives,
// deaths are noticed.
func (s *sim) round() {
	s.tickAll()
	s.drain()
	s.detectDeaths()
	s.drain()
}

// state fingerprints all claims and answers.
func (s *sim) state() string {
	out := ""
	for _, n := range s.nodes {
		out += fmt.Sprintf("%s%v%v|", n.name, slices.SortedFunc(maps.Keys(n.claims), netip.Addr.Compare), slices.SortedFunc(maps.Keys(n.answering), netip.Addr.Compare))
	}
	return out
}

// converge runs rounds until nothing changes for 3 rounds; it returns the
// number of rounds that changed something.
func (s *sim) converge() int {
	stable, changes := 0, 0
	for range 100 {
		before := s.state()
		s.round()
		if s.state() == before {
			stable++
			if stable == 3 {
				return changes
			}
			continue
		}
		stable = 0
		changes++
	}
	s.t.Fatalf("no convergence after 100 rounds: %s", s.state())
	return changes
}

// answerers lists the live nodes answering ip.
func (s *sim) answerers(ip netip.Addr) []string {
	var out []string
	for _, n := range s.nodes {
		if n.up && n.answering[ip] {
			out = append(out, n.name)
		}
	}
	return out
}

// candidates lists live, non-leaving nodes eligible for ip.
func (s *sim) candidates(ip netip.Addr) []string {
	var out []string
	for _, n := range s.nodes {
		if n.up && !n.leaving && slices.Contains(n.eligible, ip) {
			out = append(out, n.name)
		}
	}
	return out
}

func (s *sim) check() {
	s.events++
	overlap := false
	for _, ip := range s.ips {
		a := s.answerers(ip)
		if len(a) > 1 {
			overlap = true
			if s.strict {
				s.t.Fatalf("event %d: %s answered by %v at once", s.events, ip, a)
			}
		}
		if s.noGap && len(a) == 0 && len(s.candidates(ip)) > 0 {
			s.t.Fatalf("event %d: nobody answers %s (candidates %v)", s.events, ip, s.candidates(ip))
		}
	}
	if overlap {
		s.overlapEvents++
	}
}

// checkFinal asserts the converged state over a fully connected segment:
// each IP with a candidate is claimed and answered by exactly its target
// owner, and nobody else claims it.
func (s *sim) checkFinal() {
	s.t.Helper()
	for _, ip := range s.ips {
		want := ownerOf(ip, s.candidates(ip))
		a := s.answerers(ip)
		if want == "" {
			if len(a) != 0 {
				s.t.Errorf("%s has no candidate but %v answer", ip, a)
			}
			continue
		}
		if len(a) != 1 || a[0] != want {
			s.t.Errorf("%s answered by %v, want [%s]", ip, a, want)
		}
		for _, n := range s.nodes {
			if n.up && n.claims[ip] && n.name != want {
				s.t.Errorf("%s still claimed by %s (owner %s)", ip, n.name, want)
			}
		}
	}
}

// simSeeds are the random seeds each scenario runs with.
func simSeeds() []uint64 { return []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} }

// TestSimPlannedJoin: a better-ranked node joins a converged segment; at no
// instant do two nodes answer one IP, and at the end each IP has its owner.
func TestSimPlannedJoin(t *testing.T) {
	for _, seed := range simSeeds() {
		s := newSim(t, seed, ips(40), "a", "b", "c")
		s.strict = true
		s.start("a", "b")
		s.converge()
		s.checkFinal()
		s.start("c")
		s.converge()
		s.checkFinal()
	}
}

// TestSimBecomesEligible: a node that becomes eligible takes its share
// with at most one answerer at any instant.
func TestSimBecomesEligible(t *testing.T) {
	for _, seed := range simSeeds() {
		all := ips(40)
		s := newSim(t, seed, all, "a", "b")
		s.add("c", all[:10])
		s.strict = true
		s.start("a", "b", "c")
		s.converge()
		s.checkFinal()
		c := s.byName["c"]
		c.eligible, c.settled = slices.Clone(all), false
		s.broadcast(c)
		s.drain()
		c.settled = true
		s.decide(c)
		s.converge()
		s.checkFinal()
	}
}

// TestSimGracefulLeave: the owner leaves; its successors answer at once
// and there is no instant without an answerer; the overlap lasts only until
// the leaving node hears the successor's claim.
func TestSimGracefulLeave(t *testing.T) {
	for _, seed := range simSeeds() {
		s := newSim(t, seed, ips(40), "a", "b", "c")
		s.start("a", "b", "c")
		s.converge()
		s.noGap = true
		b := s.byName["b"]
		b.leaving = true
		s.decide(b)
		s.broadcast(b)
		s.drain()
		// After one exchange the leaving node has stopped answering.
		for ip := range b.answering {
			t.Fatalf("seed %d: leaving node still answers %s after hearing its successors", seed, ip)
		}
		s.converge()
		s.checkFinal()
		s.crash("b")
		s.converge()
		s.checkFinal()
	}
}

// TestSimFailover: the owner crashes; once peers notice, every IP is
// answered by its new owner.
func TestSimFailover(t *testing.T) {
	for _, seed := range simSeeds() {
		s := newSim(t, seed, ips(40), "a", "b", "c")
		s.start("a", "b", "c")
		s.converge()
		s.checkFinal()
		s.crash("a")
		s.detectDeaths()
		s.drain()
		// One detection later, no IP is left without an answerer.
		for _, ip := range s.ips {
			if len(s.answerers(ip)) != 1 {
				t.Fatalf("seed %d: after failover %s answered by %v", seed, ip, s.answerers(ip))
			}
		}
		s.converge()
		s.checkFinal()
		s.strict = true
		s.start("a") // comes back: planned moves back to it
		s.converge()
		s.checkFinal()
	}
}

// TestSimTwoClaimantsResolve: a partition makes both sides claim and
// answer; after it heals, one exchange of heartbeats leaves one claimant
// per IP.
func TestSimTwoClaimantsResolve(t *testing.T) {
	for _, seed := range simSeeds() {
		s := newSim(t, seed, ips(40), "a", "b", "c")
		s.start("a", "b", "c")
		s.converge()
		partition(s, []string{"a"}, []string{"b", "c"})
		s.converge()
		contested := 0
		for _, ip := range s.ips {
			if len(s.answerers(ip)) > 1 {
				contested++
			}
		}
		if contested != len(s.ips) {
			t.Fatalf("seed %d: partition: %d of %d IPs have two answerers, want all", seed, contested, len(s.ips))
		}
		clear(s.cut)
		s.round()
		s.round()
		for _, ip := range s.ips {
			claimers := 0
			for _, n := range s.nodes {
				if n.claims[ip] {
					claimers++
				}
			}
			if claimers > 1 || len(s.answerers(ip)) > 1 {
				t.Fatalf("seed %d: %s still has %d claimants after heal", seed, ip, claimers)
			}
		}
		s.converge()
		s.checkFinal()
	}
}

func partition(s *sim, sides ...[]string) {
	for i, x := range sides {
		for j, y := range sides {
			if i == j {
				continue
			}
			for _, a := range x {
				for _, b := range y {
					s.cut[simLink{a, b}] = true
				}
			}
		}
	}
}

// TestSimSplitViewsConverge: random one-way and two-way link cuts, crashes
// and restarts give nodes different views. While links are cut, every IP
// with a candidate is still answered by at least one node and, where cuts
// are one-way only, by exactly one. When everything heals, the segment
// converges to exactly the target owners.
func TestSimSplitViewsConverge(t *testing.T) {
	for seed := uint64(100); seed < 160; seed++ {
		all := ips(30)
		s := newSim(t, seed, nil, "a", "b", "c", "d")
		s.ips = all
		for _, n := range s.nodes {
			// Heterogeneous eligibility: each node is eligible for a
			// random two-thirds of the IPs.
			n.eligible = nil
			for _, ip := range all {
				if s.r.IntN(3) > 0 {
					n.eligible = append(n.eligible, ip)
				}
			}
		}
		s.start("a", "b", "c", "d")
		s.converge()
		s.checkFinal()

		oneWay := seed%2 == 0
		for _, x := range s.nodes {
			for _, y := range s.nodes {
				if x != y && s.r.IntN(4) == 0 {
					s.cut[simLink{x.name, y.name}] = true
					if !oneWay {
						s.cut[simLink{y.name, x.name}] = true
					}
				}
			}
		}
		if oneWay {
			// A one-way cut between a pair is the only asymmetry allowed:
			// make sure no pair is cut both ways.
			for l := range s.cut {
				delete(s.cut, simLink{l.to, l.from})
			}
		}
		s.converge()
		for _, ip := range s.ips {
			a := s.answerers(ip)
			if len(s.candidates(ip)) > 0 && len(a) == 0 {
				t.Fatalf("seed %d: split views: nobody answers %s (cuts %v)", seed, ip, s.cut)
			}
			if oneWay && len(a) > 1 {
				t.Fatalf("seed %d: one-way cuts: %s answered by %v (cuts %v)", seed, ip, a, s.cut)
			}
		}

		clear(s.cut)
		s.converge()
		s.checkFinal()
	}
}
