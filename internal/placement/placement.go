package placement

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
)

// scoreBufLen fits a Kubernetes node name (at most 253 bytes), the
// separator and an IPv6 address, so Score hashes from a stack buffer.
const scoreBufLen = 253 + 1 + 16

// Score is the rendezvous weight of node for addr: the first 8 bytes, read
// big-endian, of SHA-256 over the node name's bytes, one 0x00 byte, and the
// address in network byte order (4 bytes for IPv4 and IPv4-mapped IPv6
// addresses, 16 for other IPv6 addresses; a zone is ignored; an invalid
// address contributes no bytes).
//
// This definition is a wire-compatible contract: agents of different
// versions decide ownership independently from the same heartbeats, and they
// agree only if they compute the same score, so it must never change. The
// 0x00 separator cannot occur in a node name, so no two (node, addr) pairs
// hash the same input. IPv4-mapped addresses are unmapped so that
// "::ffff:192.0.2.1" and "192.0.2.1" have one owner.
func Score(node string, addr netip.Addr) uint64 {
	var buf [scoreBufLen]byte
	b := append(buf[:0], node...)
	b = append(b, 0)
	a := addr.Unmap()
	switch {
	case a.Is4():
		x := a.As4()
		b = append(b, x[:]...)
	case a.Is6():
		x := a.As16()
		b = append(b, x[:]...)
	}
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// scored is a node with its score for one address.
type scored struct {
	name  string
	score uint64
}

// compareScored orders best first: higher score, then lower name, so the
// order is total even if two names ever hash to the same score.
func compareScored(a, b scored) int {
	if c := cmp.Compare(b.score, a.score); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// better reports whether a ranks above b for the address both were scored
// for.
func better(a, b scored) bool { return compareScored(a, b) < 0 }

// Rank returns candidates sorted best first for addr: by Score descending,
// ties by name ascending. Duplicate names appear once. The input is not
// modified; the result is a new slice (nil when there are no candidates).
func Rank(addr netip.Addr, candidates []string) []string {
	if len(candidates) == 0 {
		return nil
	}
	s := make([]scored, 0, len(candidates))
	for _, c := range candidates {
		s = append(s, scored{name: c, score: Score(c, addr)})
	}
	slices.SortFunc(s, compareScored)
	out := make([]string, 0, len(s))
	for i, x := range s {
		// Equal names have equal scores, so duplicates are adjacent.
		if i > 0 && s[i-1].name == x.name {
			continue
		}
		out = append(out, x.name)
	}
	return out
}

// Reason says why Decide decided what it did; it is meant for logs, Service
// conditions and `herald explain`.
type Reason string

// Reasons returned in Decision.Reason.
const (
	// ReasonNotEligible: self is not eligible for the IP on this segment.
	ReasonNotEligible Reason = "NotEligible"
	// ReasonLeaving: self announced that it is leaving; its successor takes
	// over and the caller runs the grace window.
	ReasonLeaving Reason = "Leaving"
	// ReasonOwner: self is the target owner and answers.
	ReasonOwner Reason = "Owner"
	// ReasonAwaitingRelease: self is the target owner and claims the IP,
	// but waits for worse-ranked claimants (Decision.WaitingFor) to release
	// it before answering.
	ReasonAwaitingRelease Reason = "AwaitingRelease"
	// ReasonUnsettled: self would take the unclaimed IP but its view is not
	// settled yet.
	ReasonUnsettled Reason = "Unsettled"
	// ReasonYield: a better-ranked candidate claims the IP; self releases.
	ReasonYield Reason = "Yield"
	// ReasonHolding: self claims the IP and keeps it until the target owner
	// claims it.
	ReasonHolding Reason = "Holding"
	// ReasonStandby: another node owns the IP; self does nothing.
	ReasonStandby Reason = "Standby"
	// ReasonDeferring: self is the target owner but became eligible while
	// another candidate held the IP; it leaves the IP there (View.Defer)
	// and takes it only if nobody holds it.
	ReasonDeferring Reason = "Deferring"
)

// View is one node's knowledge of one IP on one segment, built from the
// heartbeats it currently hears plus its own state.
type View struct {
	// Self is the deciding node's name.
	Self string
	// Eligible are the live nodes eligible for the IP on this segment
	// (self included when self is eligible). Nodes not listed are treated
	// as dead or ineligible.
	Eligible []string
	// Claimants are the live nodes whose latest heartbeat claims the IP
	// (self included when self currently claims it). Claimants that are
	// not candidates (not eligible, or leaving) are ignored.
	Claimants []string
	// Leaving are live nodes that announced they are leaving (self included
	// when self is leaving). They are not candidates.
	Leaving []string
	// Settled reports that self has listened to the segment, and been
	// eligible for the IP, for at least one heartbeat interval (plus
	// jitter), so peers' eligibility and claims have had time to arrive.
	// Until then self never starts a new claim.
	Settled bool
	// Defer: self became eligible for the IP while another node held it
	// (a drain ended, a second endpoint of a Local Service became ready).
	// Self then does not take the IP from a candidate that claims it —
	// moving an address that is served well breaks its connections for
	// nothing — and claims it only when no candidate does. A restarted
	// node does not defer: it takes its share back, which keeps placement
	// even.
	Defer bool
}

// Decision is what one node should do about one IP now.
type Decision struct {
	// Claim: list the IP in self's heartbeat claims.
	Claim bool
	// Answer: answer ARP/NDP for the IP (implies Claim).
	Answer bool
	// Owner is the target owner in this view: the best-ranked live
	// eligible node that is not leaving ("" when there is none). For a
	// leaving self it is the successor.
	Owner string
	// OwnerClaims reports whether Owner claims the IP in this view. A
	// leaving node may end its grace window early once its successor
	// claims.
	OwnerClaims bool
	// Reason explains the decision.
	Reason Reason
	// WaitingFor lists, best first, the worse-ranked candidates whose
	// claims self waits to see released (ReasonAwaitingRelease, or
	// ReasonHolding without answering).
	WaitingFor []string
}

// Decide returns what v.Self should do about addr. It implements the rules
// in the package documentation; it is total (any input, including empty or
// inconsistent views, yields a decision) and deterministic.
func Decide(addr netip.Addr, v View) Decision {
	leaving := toSet(v.Leaving)
	claimants := toSet(v.Claimants)

	// Candidates: eligible, not leaving; find the owner and self's score.
	var (
		owner     scored
		haveOwner bool
		selfCand  bool
		cands     = make([]scored, 0, len(v.Eligible))
		seen      = make(map[string]struct{}, len(v.Eligible))
	)
	for _, n := range v.Eligible {
		if _, dup := seen[n]; dup {
			continue
		}
		seen[n] = struct{}{}
		if _, l := leaving[n]; l {
			continue
		}
		s := scored{name: n, score: Score(n, addr)}
		cands = append(cands, s)
		if !haveOwner || better(s, owner) {
			owner, haveOwner = s, true
		}
		if n == v.Self {
			selfCand = true
		}
	}

	d := Decision{}
	if haveOwner {
		d.Owner = owner.name
		_, d.OwnerClaims = claimants[owner.name]
	}
	if _, l := leaving[v.Self]; l {
		d.Reason = ReasonLeaving
		return d
	}
	if !selfCand {
		d.Reason = ReasonNotEligible
		return d
	}

	self := scored{name: v.Self, score: Score(v.Self, addr)}
	var worse []scored
	for _, c := range cands {
		if c.name == v.Self {
			continue
		}
		if _, ok := claimants[c.name]; !ok {
			continue
		}
		if better(c, self) {
			// A better-ranked candidate claims it: release now.
			d.Reason = ReasonYield
			return d
		}
		worse = append(worse, c)
	}
	slices.SortFunc(worse, compareScored)

	_, selfClaims := claimants[v.Self]
	switch {
	case owner.name == v.Self:
		if !selfClaims && !v.Settled {
			d.Reason = ReasonUnsettled
			return d
		}
		if !selfClaims && v.Defer && othersClaim(cands, claimants, v.Self) {
			d.Reason = ReasonDeferring
			return d
		}
		d.Claim = true
		d.Answer = len(worse) == 0
		d.Reason = ReasonOwner
		if !d.Answer {
			d.Reason = ReasonAwaitingRelease
		}
	case selfClaims:
		// Not the owner, but holding: keep it until the owner claims, so
		// the IP always has an answerer.
		d.Claim = true
		d.Answer = len(worse) == 0
		d.Reason = ReasonHolding
	default:
		d.Reason = ReasonStandby
		return d
	}
	if !d.Answer {
		d.WaitingFor = make([]string, len(worse))
		for i, w := range worse {
			d.WaitingFor[i] = w.name
		}
	}
	return d
}

// othersClaim reports whether a candidate other than self claims the IP.
func othersClaim(cands []scored, claimants map[string]struct{}, self string) bool {
	for _, c := range cands {
		if _, ok := claimants[c.name]; ok && c.name != self {
			return true
		}
	}
	return false
}

// toSet makes a set of names.
func toSet(names []string) map[string]struct{} {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}
