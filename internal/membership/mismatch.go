package membership

import (
	"net"
	"slices"
	"strings"
	"time"
)

// maxMismatches bounds the table of senders with another key, and the
// number of distinct peer label values of
// herald_membership_key_mismatch_total, per Member: the names come from
// unauthenticated frames, so anyone on the segment can invent them.
const maxMismatches = 64

// Mismatch is a sender on the segment whose heartbeats carry this
// cluster's hash but do not authenticate under this Member's keys: most
// likely a Herald agent that loaded another version of the heartbeat
// Secret. Every field comes from unauthenticated frames, so it is a report
// for operators, never evidence: such a sender is never a peer and never
// influences placement.
type Mismatch struct {
	// Node is the node name its frames claim.
	Node string
	// HardwareAddr is the Ethernet source of its latest such frame.
	HardwareAddr net.HardwareAddr
	// Fingerprints are the fingerprints of the keys its frames claim to
	// be signed with (compare Snapshot.Fingerprints).
	Fingerprints []string
	// LastHeard is when its latest such frame arrived.
	LastHeard time.Time
}

// mismatchEntry is one row of the mismatch table.
type mismatchEntry struct {
	node string
	hw   net.HardwareAddr
	ids  []KeyID
	// lastHeard is the latest frame's arrival; silentSince is the same,
	// pushed later by this process's stalls (see peerTable.pause).
	lastHeard   time.Time
	silentSince time.Time
	// logged is when a mismatch of this sender was last logged.
	logged time.Time
}

// mismatchTable tracks senders that fail authentication, by claimed node
// name, for reporting. It holds at most max entries (the least recently
// heard is evicted), and an entry expires after deadline without frames,
// like a live peer. It does no I/O and reads no clock; it is not safe for
// concurrent use.
type mismatchTable struct {
	max      int
	deadline time.Duration
	entries  map[string]*mismatchEntry
}

func newMismatchTable(max int, deadline time.Duration) *mismatchTable {
	return &mismatchTable{max: max, deadline: deadline, entries: map[string]*mismatchEntry{}}
}

// observe records an authentication failure of a frame claiming node,
// sent from hw with key IDs ids, at now. It returns the entry, and
// whether the reported set of (node, fingerprints) changed: a new sender,
// one with other keys, or one evicted to make room.
func (t *mismatchTable) observe(node string, hw net.HardwareAddr, ids []KeyID, now time.Time) (*mismatchEntry, bool) {
	e := t.entries[node]
	changed := false
	if e == nil {
		if len(t.entries) >= t.max {
			var victim *mismatchEntry
			for _, o := range t.entries {
				if victim == nil || o.lastHeard.Before(victim.lastHeard) ||
					(o.lastHeard.Equal(victim.lastHeard) && o.node < victim.node) {
					victim = o
				}
			}
			delete(t.entries, victim.node)
		}
		e = &mismatchEntry{node: node}
		t.entries[node] = e
		changed = true
	}
	if !slices.Equal(e.ids, ids) {
		e.ids = slices.Clone(ids)
		changed = true
	}
	e.hw = slices.Clone(hw)
	e.lastHeard, e.silentSince = now, now
	return e, changed
}

// expire forgets senders silent for longer than the deadline and reports
// whether any was forgotten.
func (t *mismatchTable) expire(now time.Time) bool {
	changed := false
	for name, e := range t.entries {
		if now.Sub(e.silentSince) > t.deadline {
			delete(t.entries, name)
			changed = true
		}
	}
	return changed
}

// nextExpiry is the earliest time an entry expires (zero: none).
func (t *mismatchTable) nextExpiry() time.Time {
	var next time.Time
	for _, e := range t.entries {
		if d := e.silentSince.Add(t.deadline); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next
}

// pause credits every entry with d of silence this process could not
// hear (see peerTable.pause).
func (t *mismatchTable) pause(d time.Duration) {
	for _, e := range t.entries {
		e.silentSince = e.silentSince.Add(d)
	}
}

// list returns the entries as Mismatches, sorted by node name (nil when
// empty).
func (t *mismatchTable) list() []Mismatch {
	if len(t.entries) == 0 {
		return nil
	}
	out := make([]Mismatch, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, Mismatch{
			Node:         e.node,
			HardwareAddr: slices.Clone(e.hw),
			Fingerprints: fingerprints(e.ids),
			LastHeard:    e.lastHeard,
		})
	}
	slices.SortFunc(out, func(a, b Mismatch) int { return strings.Compare(a.Node, b.Node) })
	return out
}
