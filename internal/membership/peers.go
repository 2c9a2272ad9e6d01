package membership

import (
	"cmp"
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
	// Eligible and Claims are shared by every snapshot that shows the
	// same state of the peer: read them, never modify them.
	//
	// Eligible are the IPs it may announce on this segment, sorted: the
	// latest of its states this Member received complete. While its
	// heartbeats name a newer state that has not arrived yet (a lost
	// frame; it is being asked for), they stay the previous state's,
	// never empty nor partial (see the package documentation).
	Eligible []netip.Addr
	// Claims are the IPs it claims, sorted, from the same state as
	// Eligible.
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
	// token is the identity token of incarnation, which this node puts
	// in its requests.
	token Token
	// Replay window: highest incarnation and, within it, the highest
	// sequence accepted, and which parts of that sequence were accepted.
	// Frames of unverified incarnations move it too, so that a frame
	// accepted once (if only into the window) is a replay ever after.
	incarnation uint64
	seq         uint64
	parts       int
	seen        uint64
	// full and digest are what the current sequence carries: whether it
	// is a full heartbeat, and the digest of the sender's state then.
	full       bool
	digest     Digest
	pendElig   []netip.Addr
	pendClaims []netip.Addr

	// heard: a frame of this incarnation arrived and the peer has not
	// been silent for its deadline since.
	heard bool
	// verified: since it was last heard after a silence, this incarnation
	// sent an authenticated frame echoing our token — at sequence
	// verifySeq. Only then is it known to be running now rather than
	// replayed.
	verified  bool
	verifySeq uint64
	// known: since it was last heard after a silence, a state of this
	// incarnation is known: eligible and claims, whose digest is
	// knownDigest. confirmSeq is the latest sequence whose frames
	// advertised knownDigest: the lists were the peer's state then.
	known       bool
	knownDigest Digest
	confirmSeq  uint64
	// wanted: the peer's current state is not known and no full
	// heartbeat of it is arriving, so this node asks for it (requests
	// its token); requested is when our latest heartbeat that did was
	// sent, so that a peer is asked at most once per half interval of
	// its own (an answer needs a round trip; the triggered heartbeats in
	// between need not repeat the request) and, with more than
	// MaxRequests wanted, the least recently asked go first.
	wanted    bool
	requested time.Time
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
// with a known state confirmed by a heartbeat no older than the one that
// verified it (so that lists from frames replayed before the verification
// show only if the live peer itself says they are its state).
func (p *peerState) live() bool {
	return p.heard && p.verified && p.known && p.confirmSeq >= p.verifySeq
}

// current reports whether the lists held are the peer's current state:
// its latest heartbeat advertises their digest.
func (p *peerState) current() bool { return p.known && p.knownDigest == p.digest }

// assembling reports whether a full heartbeat of the current sequence is
// partly received.
func (p *peerState) assembling() bool { return p.full && p.seen != fullMask(p.parts) }

// challenging reports whether the peer is heard but not verified: while
// any is, this node's heartbeats challenge.
func (p *peerState) challenging() bool { return p.heard && !p.verified }

// forget drops what the peer's current run proved: its verification and
// state. It happens on death and on restart; a peer heard again must be
// verified again, and its state learnt again.
func (p *peerState) forget() {
	p.verified, p.verifySeq = false, 0
	p.known, p.knownDigest, p.confirmSeq = false, Digest{}, 0
	p.wanted, p.requested = false, time.Time{}
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
	// request: with this frame this node started to want the peer's
	// full state (see peerState.wanted), so it should ask at once.
	request bool
	// badState: a full heartbeat completed whose lists do not match the
	// digest it carries (a bug on one side); its lists were not taken.
	badState bool
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
// Every accepted part refreshes the peer's silence.
//
// State: every frame carries the digest of its sender's state. When it
// names the state held, the lists are current and nothing else is done.
// Otherwise the lists held stay as they are — the peer's previous state —
// until a full heartbeat with that digest has arrived complete (every part
// of one sequence, and lists that hash to the digest); then they are
// replaced at once. A peer whose state is not known at all (just heard)
// is not live: its lists would be empty, and it is not claiming nothing.
// The empty state's digest is known without asking.
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
				// once verified and with its state known.
				obs.changed = true
			}
		}
		p.incarnation, p.seq, p.parts, p.seen = f.Incarnation, 0, 0, 0
		p.token = IdentityToken(f.Node, f.Incarnation)
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
		if f.Parts != p.parts || f.Full != p.full || f.Digest != p.digest {
			return observation{drop: dropMalformed}
		}
	default:
		p.seq, p.parts, p.seen = f.Sequence, f.Parts, 0
		p.full, p.digest = f.Full, f.Digest
		p.pendElig, p.pendClaims = nil, nil
	}
	wasLive, wasChallenging := p.live(), p.challenging()
	p.seen |= bit
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
	switch {
	case p.known && f.Digest == p.knownDigest:
		// The lists held are the state this frame names: nothing to
		// receive, whatever it carries.
		p.pendElig, p.pendClaims = nil, nil
	case !p.known && !f.Full && f.Digest == emptyDigest:
		p.known, p.knownDigest = true, emptyDigest
	case f.Full:
		p.pendElig = append(p.pendElig, f.Eligible...)
		p.pendClaims = append(p.pendClaims, f.Claims...)
		if p.seen != fullMask(p.parts) {
			break
		}
		elig, claims := sortedUnique(p.pendElig), sortedUnique(p.pendClaims)
		p.pendElig, p.pendClaims = nil, nil
		if StateDigest(elig, claims) != p.digest {
			obs.badState = true
			break
		}
		if !slices.Equal(elig, p.eligible) || !slices.Equal(claims, p.claims) {
			p.eligible, p.claims = elig, claims
			obs.changed = obs.changed || wasLive
		}
		p.known, p.knownDigest = true, p.digest
	}
	if p.known && p.knownDigest == p.digest {
		p.confirmSeq = max(p.confirmSeq, p.seq)
	}
	// Ask for the state when it is not current and no full heartbeat of
	// it is on its way (a multi-part one whose first parts are in). The
	// request goes out at once the first time; while the state stays
	// wanted, every heartbeat of ours repeats it.
	wanted := !p.current() && !p.assembling()
	obs.request = wanted && !p.wanted
	p.wanted = wanted
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

// nextDeadline is the earliest time a heard peer's silence reaches its
// deadline (zero: no peer is heard).
func (t *peerTable) nextDeadline() time.Time {
	var next time.Time
	for _, p := range t.peers {
		if !p.heard {
			continue
		}
		if d := p.silentSince.Add(t.deadline(p)); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next
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

// requests returns the tokens of the peers whose state this node wants,
// for its heartbeat sent at now: those not asked within the last half of
// their interval (an answer takes a round trip; a lost one is asked for
// again by the next periodic heartbeat), at most MaxRequests, least
// recently asked first.
// Nil (no allocation) when none is wanted, which is the steady state.
func (t *peerTable) requests(now time.Time) []Token {
	var want []*peerState
	for _, p := range t.peers {
		if p.heard && p.wanted && now.Sub(p.requested) >= p.interval/2 {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		return nil
	}
	slices.SortFunc(want, func(a, b *peerState) int {
		return cmp.Or(a.requested.Compare(b.requested), strings.Compare(a.node, b.node))
	})
	want = want[:min(len(want), MaxRequests)]
	out := make([]Token, len(want))
	for i, p := range want {
		out[i] = p.token
		p.requested = now
	}
	return out
}

// stale counts the live peers whose current state is not known: placement
// sees their previous lists until their full state arrives.
func (t *peerTable) stale() int {
	n := 0
	for _, p := range t.peers {
		if p.live() && !p.current() {
			n++
		}
	}
	return n
}

// learning counts the peers heard and verified whose state has never
// been known since: they are not live only because their state has not
// arrived yet.
func (t *peerTable) learning() int {
	n := 0
	for _, p := range t.peers {
		if p.heard && p.verified && !p.live() {
			n++
		}
	}
	return n
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
			// Shared, not copied: a peer's lists are replaced when its
			// state changes, never modified, so publishing a snapshot
			// costs O(peers), not O(addresses).
			Eligible:     p.eligible,
			Claims:       p.claims,
			Fingerprints: fingerprints(p.keyIDs),
			LastHeard:    p.lastHeard,
		})
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Node, b.Node) })
	return out
}
