package membership

import (
	"cmp"
	"slices"
)

// echoRepeat is how many of this node's heartbeats echo a peer's token
// after the peer's latest challenge: the peer challenges in every
// heartbeat until it has verified us, so the echo only needs to outlast a
// few lost frames of ours after its last challenge.
const echoRepeat = 4

// echoEntry is one peer incarnation whose token this node echoes.
type echoEntry struct {
	node  string
	token Token
	// remaining is how many more heartbeats carry the token.
	remaining int
	// lastSent is the sequence of the latest heartbeat that carried it
	// (0: none yet), so that with more than MaxEchoes challengers the
	// least recently answered go first.
	lastSent uint64
}

// echoTable is the set of tokens this node echoes: one per challenging
// peer (its latest incarnation), bounded by max. It does no I/O and reads
// no clock; it is not safe for concurrent use.
type echoTable struct {
	max     int
	entries map[string]*echoEntry
}

func newEchoTable(max int) *echoTable {
	return &echoTable{max: max, entries: map[string]*echoEntry{}}
}

// challenged records an authenticated challenge from node's incarnation
// inc: its token is echoed in the next echoRepeat heartbeats. It reports
// whether the token is new (not being echoed already), in which case the
// caller should send a heartbeat now so that the challenger verifies this
// node within one frame's transit.
func (t *echoTable) challenged(node string, inc uint64) bool {
	tok := IdentityToken(node, inc)
	if e := t.entries[node]; e != nil {
		fresh := e.token != tok
		if fresh {
			e.token, e.lastSent = tok, 0
		}
		e.remaining = echoRepeat
		return fresh
	}
	if len(t.entries) >= t.max {
		// Only authenticated peers get here, and the peer table holds at
		// most max of them: a full table is a bug, not an attack.
		// Dropping the challenge costs the challenger one verification.
		return false
	}
	t.entries[node] = &echoEntry{node: node, token: tok, remaining: echoRepeat}
	return true
}

// take returns the tokens the heartbeat with sequence seq echoes: all of
// them, or the MaxEchoes least recently sent when there are more, so that
// every challenger is answered within a few heartbeats. Each returned
// token counts against its entry's remaining repeats.
func (t *echoTable) take(seq uint64) []Token {
	if len(t.entries) == 0 {
		return nil
	}
	es := make([]*echoEntry, 0, len(t.entries))
	for _, e := range t.entries {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *echoEntry) int {
		return cmp.Or(cmp.Compare(a.lastSent, b.lastSent), cmp.Compare(a.node, b.node))
	})
	es = es[:min(len(es), MaxEchoes)]
	out := make([]Token, len(es))
	for i, e := range es {
		out[i] = e.token
		e.lastSent = seq
		e.remaining--
		if e.remaining <= 0 {
			delete(t.entries, e.node)
		}
	}
	return out
}
