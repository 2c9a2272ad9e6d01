package bgp

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
)

// tracker keeps what GoBGP tells the speaker about its sessions through
// events and logs, which ListPeer does not report: when a state was
// entered, why a session failed, and BFD states.
type tracker struct {
	mu       sync.Mutex
	sessions map[netip.Addr]*tracked
	changed  func()
	now      func() time.Time
}

type tracked struct {
	state     SessionState
	since     time.Time
	lastError string
	hasBFD    bool
	bfd       BFDState
}

func (t *tracker) init(changed func()) {
	t.sessions = map[netip.Addr]*tracked{}
	t.changed = changed
	t.now = time.Now
}

// add starts tracking a peer (again, for a reconfigured one: its old
// session's history does not describe the new one).
func (t *tracker) add(a netip.Addr, bfd bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := &tracked{state: StateIdle, since: t.now(), hasBFD: bfd}
	if bfd {
		tr.bfd = BFDDown
	}
	t.sessions[a] = tr
}

func (t *tracker) remove(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.sessions, a)
}

func (t *tracker) setBFD(a netip.Addr, bfd bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.sessions[a]; ok {
		tr.hasBFD = bfd
		tr.bfd = BFDDisabled
		if bfd {
			tr.bfd = BFDDown
		}
	}
}

func (t *tracker) get(a netip.Addr) (tracked, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.sessions[a]
	if !ok {
		return tracked{}, false
	}
	return *tr, true
}

func (t *tracker) anyBFD() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.sessions {
		if tr.hasBFD {
			return true
		}
	}
	return false
}

// peerEvent is GoBGP's peer state callback.
func (t *tracker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, ts time.Time) {
	if ev == nil || ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	if t.update(st.NeighborAddress, fsmState(st.SessionState), st.DisconnectReason, st.DisconnectMessage, ts) {
		t.changed()
	}
}

// update applies one state change and reports whether anything the
// caller sees changed.
func (t *tracker) update(a netip.Addr, state SessionState, reason api.PeerState_DisconnectReason, msg string, ts time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.sessions[a]
	if !ok {
		return false // a removed peer's last words
	}
	changed := false
	if tr.state != state {
		tr.state, tr.since = state, ts
		changed = true
	}
	switch {
	case state == StateEstablished:
		if tr.lastError != "" {
			tr.lastError = ""
			changed = true
		}
	// A reason comes with the fall to Idle; the way up again (Idle to
	// Active: "idle-hold-timer-expired") is no failure and must not hide
	// the one before it.
	case state == StateIdle && reason != api.PeerState_DISCONNECT_REASON_UNSPECIFIED &&
		reason != api.PeerState_DISCONNECT_REASON_DECONFIGURED && msg != "":
		// The log hook may have noted the same NOTIFICATION a moment
		// before, with the words that came with it ("…: BFD is down");
		// the event's text is that without them.
		if tr.lastError != msg && !strings.HasPrefix(tr.lastError, msg+": ") {
			tr.lastError = msg
			changed = true
		}
	}
	return changed
}

// established returns the peers with BFD whose sessions have been
// established for at least d.
func (t *tracker) established(d time.Duration) map[netip.Addr]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[netip.Addr]bool{}
	for a, tr := range t.sessions {
		if tr.hasBFD && tr.state == StateEstablished && t.now().Sub(tr.since) >= d {
			out[a] = true
		}
	}
	return out
}

// failed is the log hook's callback: a failure GoBGP only logs (a failed
// connection attempt, a NOTIFICATION while opening), or the words that
// came with a NOTIFICATION that ends an established session (the state
// event that follows keeps them). Nothing else replaces the error of an
// established session.
func (t *tracker) failed(peer, err string) {
	a, perr := netip.ParseAddr(peer)
	if perr != nil {
		return
	}
	t.mu.Lock()
	changed := false
	if tr, ok := t.sessions[a]; ok && (tr.state != StateEstablished || strings.HasPrefix(err, "notification-")) && tr.lastError != err {
		tr.lastError = err
		changed = true
	}
	t.mu.Unlock()
	if changed {
		t.changed()
	}
}

// bfdStates applies polled BFD states; a BFD peer GoBGP does not list yet
// is down.
func (t *tracker) bfdStates(states map[netip.Addr]BFDState) {
	t.mu.Lock()
	changed := false
	for a, tr := range t.sessions {
		if !tr.hasBFD {
			continue
		}
		st, ok := states[a]
		if !ok {
			st = BFDDown
		}
		if tr.bfd != st {
			tr.bfd = st
			changed = true
		}
	}
	t.mu.Unlock()
	if changed {
		t.changed()
	}
}
