package membership

import (
	"net"
	"net/netip"
	"slices"
	"time"
)

// Peer is a live node heard on the segment.
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
	incarnation uint64
	seq         uint64
	parts       int
	seen        uint64
	pendElig    []netip.Addr
	pendClaims  []netip.Addr

	// live: a complete heartbeat was assembled and the peer has not been
	// silent for DeadAfter intervals since.
	live bool
	// silentSince is when the silence that may kill the peer began: its
	// latest frame's arrival, pushed later by our own stalls (pause).
	silentSince time.Time
	hw          net.HardwareAddr
	interval    time.Duration
	leaving     bool
	eligible    []netip.Addr
	claims      []netip.Addr
	lastHeard   time.Time
}

// observation is the outcome of one frame.
type observation struct {
	drop dropReason
	// changed: the set of live peers or a live peer's incarnation,
	// leaving flag, eligibility or claims changed.
	changed bool
	// joined: the peer became live.
	joined bool
	// restarted: a new incarnation of a known peer.
	restarted bool
	// selfIncarnation is set with dropSelf.
	selfIncarnation uint64
}

// peerTable tracks the peers of one segment. It does no I/O and reads no
// clock (callers pass the time), so its rules are tested directly; it is
// not safe for concurrent use.
type peerTable struct {
	self      string
	deadAfter int
	maxPeers  int
	peers     map[string]*peerState
}

func newPeerTable(self string, deadAfter, maxPeers int) *peerTable {
	return &peerTable{self: self, deadAfter: deadAfter, maxPeers: maxPeers, peers: map[string]*peerState{}}
}

// observe applies one authenticated frame received at now.
//
// Replay rules: a frame of an older incarnation than the newest seen for
// that name, or of an older sequence within it, or a part already accepted
// for the current sequence, is a replay. A newer incarnation is a restart.
// Liveness is refreshed by every accepted part, but the peer's lists change
// only when all parts of one sequence have arrived, so a partial heartbeat
// never shows a truncated claim list.
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
			if p.live {
				// The old run's lists died with it; the new run's come
				// with its first complete heartbeat.
				obs.changed = true
			}
		}
		p.incarnation, p.seq, p.parts, p.seen = f.Incarnation, 0, 0, 0
		p.pendElig, p.pendClaims = nil, nil
		p.eligible, p.claims = nil, nil
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
	p.seen |= bit
	p.pendElig = append(p.pendElig, f.Eligible...)
	p.pendClaims = append(p.pendClaims, f.Claims...)
	p.lastHeard, p.silentSince = now, now
	p.hw = f.Source
	p.interval = f.Interval
	if p.leaving != f.Leaving {
		p.leaving = f.Leaving
		if p.live {
			obs.changed = true
		}
	}
	if p.seen != fullMask(p.parts) {
		return obs
	}
	elig, claims := sortedUnique(p.pendElig), sortedUnique(p.pendClaims)
	p.pendElig, p.pendClaims = nil, nil
	if !slices.Equal(elig, p.eligible) || !slices.Equal(claims, p.claims) {
		p.eligible, p.claims = elig, claims
		obs.changed = true
	}
	if !p.live {
		p.live = true
		obs.joined, obs.changed = true, true
	}
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

// expire marks peers silent for longer than their deadline as dead and
// returns their names, sorted.
func (t *peerTable) expire(now time.Time) []string {
	var died []string
	for _, p := range t.peers {
		if p.live && now.Sub(p.silentSince) > t.deadline(p) {
			p.live = false
			p.eligible, p.claims = nil, nil
			died = append(died, p.node)
		}
	}
	slices.Sort(died)
	return died
}

// pause credits every live peer with d of silence: this process was not
// running (descheduled, CPU-throttled) for that long, so it could not hear
// them, and silence it could not hear is no evidence of death.
func (t *peerTable) pause(d time.Duration) {
	for _, p := range t.peers {
		if p.live {
			p.silentSince = p.silentSince.Add(d)
		}
	}
}

// evictDead forgets the dead peer heard least recently, to make room; it
// reports false when every peer is live.
func (t *peerTable) evictDead() bool {
	var victim *peerState
	for _, p := range t.peers {
		if !p.live && (victim == nil || p.lastHeard.Before(victim.lastHeard)) {
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
		if !p.live {
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
			LastHeard:    p.lastHeard,
		})
	}
	slices.SortFunc(out, func(a, b Peer) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	return out
}
