package membership

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Peer is a live node heard on the segment: it sent an authenticated
// heartbeat recently, and its current incarnation has proven it is live
// now by echoing this Member's identity token.
type Peer struct {
	// Node is the peer's node name.
	Node string
	// Incarnation identifies the run of the peer's agent.
	Incarnation uint64
	// HardwareAddr is the Ethernet source of its latest frame.
	HardwareAddr net.HardwareAddr
	// Interval is the heartbeat interval it advertises.
	Interval time.Duration
	// Leaving reports that it announced it is shutting down.
	Leaving bool
	// Eligible are the IPs it may announce on this segment, sorted.
	Eligible []netip.Addr
	// Claims are the IPs it claims, sorted.
	Claims []netip.Addr
	// Fingerprints are the fingerprints of the keys its latest frame is
	// signed with (its keyring), in its order: during a key rotation they
	// show which peers have loaded the new key.
	Fingerprints []string
	// LastHeard is when its latest accepted frame arrived.
	LastHeard time.Time
}

// dropReason names why a frame was not accepted; the values are the
// "reason" label of herald_membership_heartbeats_dropped_total.
type dropReason string

const (
	dropNone      dropReason = ""
	dropAuth      dropReason = "auth"
	dropReplay    dropReason = "replay"
	dropMalformed dropReason = "malformed"
	dropCluster   dropReason = "cluster"
	// dropCapacity: the peer table is full of live peers.
	dropCapacity dropReason = "capacity"
	// dropSelf: our own name; not counted as a drop, but a different
	// incarnation of it is logged (two agents claim to be this node).
	dropSelf dropReason = "self"
)

// peerState is everything known about one node name, dead or alive. It
// outlives the peer's death so that its old frames stay replays.
type peerState struct {
	node string
	// Replay window: highest incarnation and, within it, the highest
	// sequence accepted, and which parts of that sequence were accepted.
	// Frames of unverified incarnations move it too, so that a frame
	// accepted once (if only into the window) is a replay ever after.
	incarnation uint64
	seq         uint64
	parts       int
	seen        uint64
	pendElig    []netip.Addr
	pendClaims  []netip.Addr

	// heard: a frame of this incarnation arrived and the peer has not
	// been silent for its deadline since.
	heard bool
	// verified: since it was last heard after a silence, this incarnation
	// sent an authenticated frame echoing our token — at sequence
	// verifySeq. Only then is it known to be running now rather than
	// replayed.
	verified  bool
	verifySeq uint64
	// assembled: since it was last heard after a silence, a complete
	// heartbeat (all parts of sequence listSeq) of this incarnation
	// arrived; eligible and claims are its lists.
	assembled bool
	listSeq   uint64
	// silentSince is when the silence that may kill the peer began: its
	// latest frame's arrival, pushed later by our own stalls (pause).
	silentSince time.Time
	hw          net.HardwareAddr
	interval    time.Duration
	leaving     bool
	keyIDs      []KeyID
	eligible    []netip.Addr
	claims      []netip.Addr
	lastHeard   time.Time
}

// live reports whether the peer counts as alive: heard, verified, and
// with lists from a heartbeat no older than the one that verified it (so
// that lists assembled from frames replayed before the verification never
// show).
func (p *peerState) live() bool {
	return p.heard && p.verified && p.assembled && p.listSeq >= p.verifySeq
}

// challenging reports whether the peer is heard but not verified: while
// any is, this node's heartbeats challenge.
func (p *peerState) challenging() bool { return p.heard && !p.verified }

// forget drops what the peer's current run proved: its verification and
// lists. It happens on death and on restart; a peer heard again must be
// verified again.
func (p *peerState) forget() {
	p.verified, p.verifySeq = false, 0
	p.assembled, p.listSeq = false, 0
	p.eligible, p.claims = nil, nil
}

// observation is the outcome of one frame.
type observation struct {
	drop dropReason
	// changed: the set of live peers or a live peer's incarnation,
	// leaving flag, keys, eligibility or claims changed.
	changed bool
	// joined: the peer became live.
	joined bool
	// restarted: a new incarnation of a known peer.
	restarted bool
	// unverified: the frame was accepted (into the replay window) from an
	// incarnation this node has not verified.
	unverified bool
	// challenge: with this frame the peer became heard but unverified, so
	// this node starts to challenge (if it was not already).
	challenge bool
	// selfIncarnation is set with dropSelf.
	selfIncarnation uint64
}

// peerTable tracks the peers of one segment. It does no I/O and reads no
// clock (callers pass the time), so its rules are tested directly; it is
// not safe for concurrent use.
type peerTable struct {
	self string
	// token is our identity token, which a peer must echo to be verified.
	token     Token
	deadAfter int
	maxPeers  int
	peers     map[string]*peerState
}

func newPeerTable(self string, incarnation uint64, deadAfter, maxPeers int) *peerTable {
	return &peerTable{
		self: self, token: IdentityToken(self, incarnation),
		deadAfter: deadAfter, maxPeers: maxPeers, peers: map[string]*peerState{},
	}
}

// observe applies one authenticated frame received at now.
//
// Replay rules: a frame of an older incarnation than the newest seen for
// that name, or of an older sequence within it, or a part already accepted
// for the current sequence, is a replay. A newer incarnation is a restart.
// Every accepted part refreshes the peer's silence, but the peer's lists
// change only when all parts of one sequence have arrived, so a partial
// heartbeat never shows a truncated claim list.
//
// Verification: a frame echoing our token verifies its incarnation; until
// then the peer is not live, however many frames it sends, because
// authenticated frames prove who sent them but not when, and ours is the
// only token no frame sent before we started can hold.
func (t *peerTable) observe(f *Frame, now time.Time) observation {
	if f.Node == t.self {
		return observation{drop: dropSelf, selfIncarnation: f.Incarnation}
	}
	p := t.peers[f.Node]
	if p == nil {
		if len(t.peers) >= t.maxPeers && !t.evictDead() {
			return observation{drop: dropCapacity}
		}
		p = &peerState{node: f.Node}
		t.peers[f.Node] = p
	}
	var obs observation
	switch {
	case f.Incarnation < p.incarnation:
		return observation{drop: dropReplay}
	case f.Incarnation > p.incarnation:
		if p.incarnation != 0 {
			obs.restarted = true
			if p.live() {
				// The old run's lists died with it; the new run is live
				// once verified and with its first complete heartbeat.
				obs.changed = true
			}
		}
		p.incarnation, p.seq, p.parts, p.seen = f.Incarnation, 0, 0, 0
		p.pendElig, p.pendClaims = nil, nil
		p.forget()
		p.heard, p.leaving = false, false
	}
	bit := uint64(1) << uint(f.Part)
	switch {
	case f.Sequence < p.seq:
		return observation{drop: dropReplay}
	case f.Sequence == p.seq:
		if p.seen&bit != 0 {
			return observation{drop: dropReplay}
		}
		if f.Parts != p.parts {
			return observation{drop: dropMalformed}
		}
	default:
		p.seq, p.parts, p.seen = f.Sequence, f.Parts, 0
		p.pendElig, p.pendClaims = nil, nil
	}
	wasLive, wasChallenging := p.live(), p.challenging()
	p.seen |= bit
	p.pendElig = append(p.pendElig, f.Eligible...)
	p.pendClaims = append(p.pendClaims, f.Claims...)
	p.heard = true
	p.lastHeard, p.silentSince = now, now
	p.hw = f.Source
	p.interval = f.Interval
	if !slices.Equal(p.keyIDs, f.KeyIDs) {
		p.keyIDs = slices.Clone(f.KeyIDs)
		obs.changed = obs.changed || wasLive
	}
	if p.leaving != f.Leaving {
		p.leaving = f.Leaving
		obs.changed = obs.changed || wasLive
	}
	if !p.verified && slices.Contains(f.Echoes, t.token) {
		p.verified, p.verifySeq = true, f.Sequence
	}
	if p.seen == fullMask(p.parts) {
		elig, claims := sortedUnique(p.pendElig), sortedUnique(p.pendClaims)
		p.pendElig, p.pendClaims = nil, nil
		if !slices.Equal(elig, p.eligible) || !slices.Equal(claims, p.claims) {
			p.eligible, p.claims = elig, claims
			obs.changed = obs.changed || wasLive
		}
		p.assembled, p.listSeq = true, p.seq
	}
	if p.live() && !wasLive {
		obs.joined, obs.changed = true, true
	}
	obs.unverified = !p.verified
	obs.challenge = p.challenging() && !wasChallenging
	return obs
}

// fullMask has the low n bits set (1 ≤ n ≤ 64).
func fullMask(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return uint64(1)<<uint(n) - 1
}

// sortedUnique sorts and deduplicates a (fresh) address list.
func sortedUnique(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, netip.Addr.Compare)
	return slices.Compact(a)
}

// deadline is how long a peer may stay silent: DeadAfter of its intervals
// plus half an interval of slack, so that a heartbeat that is merely late
// (scheduling jitter) is not taken for a lost one. A peer is thus declared
// dead exactly when DeadAfter consecutive heartbeats are missing.
func (t *peerTable) deadline(p *peerState) time.Duration {
	return time.Duration(t.deadAfter)*p.interval + p.interval/2
}

// expire marks peers silent for longer than their deadline as no longer
// heard, and returns the names of those that were live (they died),
// sorted. A silent peer, live or not, must be verified again when heard
// again: frames it sent while we could not hear it may be replayed to us
// later, and only a fresh echo tells them from the peer itself.
func (t *peerTable) expire(now time.Time) []string {
	var died []string
	for _, p := range t.peers {
		if p.heard && now.Sub(p.silentSince) > t.deadline(p) {
			if p.live() {
				died = append(died, p.node)
			}
			p.heard = false
			p.forget()
		}
	}
	slices.Sort(died)
	return died
}

// challenging reports whether any peer is heard but not verified.
func (t *peerTable) challenging() bool {
	for _, p := range t.peers {
		if p.challenging() {
			return true
		}
	}
	return false
}

// pause credits every heard peer with d of silence: this process was not
// running (descheduled, CPU-throttled) for that long, so it could not hear
// them, and silence it could not hear is no evidence of death.
func (t *peerTable) pause(d time.Duration) {
	for _, p := range t.peers {
		if p.heard {
			p.silentSince = p.silentSince.Add(d)
		}
	}
}

// evictDead forgets the peer that is not live and was heard least
// recently, to make room; it reports false when every peer is live.
func (t *peerTable) evictDead() bool {
	var victim *peerState
	for _, p := range t.peers {
		if !p.live() && (victim == nil || p.lastHeard.Before(victim.lastHeard)) {
			victim = p
		}
	}
	if victim == nil {
		return false
	}
	delete(t.peers, victim.node)
	return true
}

// live returns copies of the live peers, sorted by name.
func (t *peerTable) live() []Peer {
	out := make([]Peer, 0, len(t.peers))
	for _, p := range t.peers {
		if !p.live() {
			continue
		}
		out = append(out, Peer{
			Node:         p.node,
			Incarnation:  p.incarnation,
			HardwareAddr: slices.Clone(p.hw),
			Interval:     p.interval,
			Leaving:      p.leaving,
			Eligible:     slices.Clone(p.eligible),
			Claims:       slices.Clone(p.claims),
			Fingerprints: fingerprints(p.keyIDs),
			LastHeard:    p.lastHeard,
		})
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Node, b.Node) })
	return out
}
