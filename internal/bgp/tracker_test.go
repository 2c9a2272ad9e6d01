package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

func TestTrackerUpdate(t *testing.T) {
	a := addr("192.0.2.1")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		state       SessionState
		reason      api.PeerState_DisconnectReason
		msg         string
		wantChanged bool
		wantErr     string
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "up", steps: []step{
			{state: StateActive, wantChanged: true},
			{state: StateOpenSent, wantChanged: true},
			{state: StateEstablished, wantChanged: true},
			{state: StateEstablished}, // nothing new
		}},
		{name: "hold timer, then the way up again keeps the reason", steps: []step{
			{state: StateEstablished, wantChanged: true},
			{state: StateIdle, reason: api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED, msg: "hold-timer-expired", wantChanged: true, wantErr: "hold-timer-expired"},
			{state: StateActive, reason: api.PeerState_DISCONNECT_REASON_IDLE_TIMER_EXPIRED, msg: "idle-hold-timer-expired", wantChanged: true, wantErr: "hold-timer-expired"},
			{state: StateEstablished, wantChanged: true},
		}},
		{name: "own removal is no error", steps: []step{
			{state: StateEstablished, wantChanged: true},
			{state: StateIdle, reason: api.PeerState_DISCONNECT_REASON_DECONFIGURED, msg: "deconfigured", wantChanged: true},
		}},
		{name: "reason without message", steps: []step{
			{state: StateIdle, reason: api.PeerState_DISCONNECT_REASON_INVALID_MSG},
		}},
		{name: "same error twice", steps: []step{
			{state: StateIdle, reason: api.PeerState_DISCONNECT_REASON_BAD_PEER_AS, msg: "bad-peer-as", wantChanged: true, wantErr: "bad-peer-as"},
			{state: StateActive, wantChanged: true, wantErr: "bad-peer-as"},
			{state: StateIdle, reason: api.PeerState_DISCONNECT_REASON_BAD_PEER_AS, msg: "bad-peer-as", wantChanged: true, wantErr: "bad-peer-as"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr tracker
			tr.init(func() {})
			tr.now = func() time.Time { return t0 }
			tr.add(a, false)
			for i, s := range tc.steps {
				ts := t0.Add(time.Duration(i+1) * time.Second)
				if got := tr.update(a, s.state, s.reason, s.msg, ts); got != s.wantChanged {
					t.Errorf("step %d (%s): changed %v, want %v", i, s.state, got, s.wantChanged)
				}
				got, _ := tr.get(a)
				if got.state != s.state || got.lastError != s.wantErr {
					t.Errorf("step %d: %+v, want state %s, error %q", i, got, s.state, s.wantErr)
				}
			}
		})
	}
	var tr tracker
	tr.init(func() { t.Error("a removed peer signalled a change") })
	if tr.update(a, StateIdle, 0, "", t0) {
		t.Error("update of an unknown peer changed something")
	}
	tr.failed(a.String(), "dial tcp: i/o timeout")
	tr.failed("not an address", "x")
}

func TestTrackerFailedAndBFD(t *testing.T) {
	a, b := addr("192.0.2.1"), addr("192.0.2.2")
	signals := 0
	var tr tracker
	tr.init(func() { signals++ })
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	tr.now = func() time.Time { return now }
	tr.add(a, true)
	tr.add(b, false)

	tr.failed(a.String(), "dial tcp 192.0.2.1:179: connect: connection refused")
	tr.failed(a.String(), "dial tcp 192.0.2.1:179: connect: connection refused")
	if got, _ := tr.get(a); got.lastError != "dial tcp 192.0.2.1:179: connect: connection refused" || signals != 1 {
		t.Errorf("after a dial failure: %+v, %d signals", got, signals)
	}
	// While established, only a NOTIFICATION is noted, and the event
	// that follows keeps its words.
	tr.update(a, StateEstablished, 0, "", t0)
	signals = 0
	tr.failed(a.String(), "dial tcp 192.0.2.1:179: connect: connection refused")
	if got, _ := tr.get(a); got.lastError != "" || signals != 0 {
		t.Errorf("established: %+v, %d signals", got, signals)
	}
	tr.failed(a.String(), "notification-sent code 6(cease) subcode 4(administrative reset): BFD is down")
	if !tr.update(a, StateIdle, api.PeerState_DISCONNECT_REASON_NOTIFICATION_SENT, "notification-sent code 6(cease) subcode 4(administrative reset)", t0) {
		t.Error("the fall to Idle changed nothing")
	}
	// (update reports changes to peerEvent, which signals; failed signals
	// itself.)
	if got, _ := tr.get(a); got.lastError != "notification-sent code 6(cease) subcode 4(administrative reset): BFD is down" || signals != 1 {
		t.Errorf("after a NOTIFICATION: %+v, %d signals", got, signals)
	}
	tr.update(a, StateEstablished, 0, "", t0)
	signals = 0

	// BFD: a peer GoBGP does not list is down; changes signal once.
	if got, _ := tr.get(a); got.bfd != BFDDown {
		t.Errorf("initial BFD state %q", got.bfd)
	}
	tr.bfdStates(map[netip.Addr]BFDState{a: BFDUp})
	tr.bfdStates(map[netip.Addr]BFDState{a: BFDUp})
	if got, _ := tr.get(a); got.bfd != BFDUp || signals != 1 {
		t.Errorf("BFD %q, %d signals", got.bfd, signals)
	}
	if got, _ := tr.get(b); got.bfd != BFDDisabled {
		t.Errorf("peer without BFD: %q", got.bfd)
	}
	tr.bfdStates(nil)
	if got, _ := tr.get(a); got.bfd != BFDDown {
		t.Errorf("BFD after the peer vanished: %q", got.bfd)
	}

	// established() waits for the session to have been up bfdArmDelay.
	if up := tr.established(time.Second); len(up) != 0 {
		t.Errorf("established at once: %v", up)
	}
	now = t0.Add(time.Second)
	if up := tr.established(time.Second); !up[a] || len(up) != 1 {
		t.Errorf("established after a second: %v", up)
	}
	tr.setBFD(a, false)
	if got, _ := tr.get(a); got.bfd != BFDDisabled || tr.anyBFD() {
		t.Errorf("BFD off: %+v, any %v", got, tr.anyBFD())
	}
}

func TestLogHookFailure(t *testing.T) {
	rec := func(msg string, level slog.Level, attrs ...slog.Attr) slog.Record {
		r := slog.NewRecord(time.Time{}, level, msg, 0)
		r.AddAttrs(attrs...)
		return r
	}
	for _, tc := range []struct {
		name string
		r    slog.Record
		want string
	}{
		{name: "dial", r: rec("failed to connect", slog.LevelDebug, slog.String("Error", "dial tcp 192.0.2.1:179: i/o timeout")),
			want: "dial tcp 192.0.2.1:179: i/o timeout"},
		{name: "bad peer AS sent", r: rec("sent notification", slog.LevelInfo, slog.String("State", "BGP_FSM_ACTIVE"), slog.Int("Code", 2), slog.Int("Subcode", 2), slog.Any("Data", []byte{})),
			want: "notification-sent code 2(open) subcode 2(bad peer as)"},
		{name: "shutdown received with a message", r: rec("received notification", slog.LevelInfo, slog.Int("Code", 6), slog.Int("Subcode", 2), slog.String("Communicated-Reason", "maintenance")),
			want: "notification-received code 6(cease) subcode 2(administrative shutdown): maintenance"},
		{name: "own de-configuration", r: rec("sent notification", slog.LevelInfo, slog.Int("Code", 6), slog.Int("Subcode", 3))},
		{name: "de-configured by the router", r: rec("received notification", slog.LevelInfo, slog.Int("Code", 6), slog.Int("Subcode", 3)),
			want: "notification-received code 6(cease) subcode 3(peer deconfigured)"},
		{name: "other", r: rec("Peer Up", slog.LevelInfo, slog.String("Error", "x"))},
	} {
		if got := failure(tc.r); got != tc.want {
			t.Errorf("%s: failure() = %q, want %q", tc.name, got, tc.want)
		}
	}

	// Through the handler: the peer comes from WithAttrs, records below
	// the inner handler's level are noted but not passed on.
	var noted []string
	var passed int
	inner := countHandler{level: slog.LevelInfo, n: &passed}
	h := (&logHook{inner: inner, note: func(p, e string) { noted = append(noted, p+" "+e) }}).
		WithAttrs([]slog.Attr{slog.String("Topic", "Peer"), slog.String("Key", "192.0.2.1")})
	ctx := context.Background()
	if !h.Enabled(ctx, slog.LevelDebug) {
		t.Error("debug records are not asked for")
	}
	_ = h.Handle(ctx, rec("failed to connect", slog.LevelDebug, slog.String("Error", "refused")))
	_ = h.Handle(ctx, rec("Peer Up", slog.LevelInfo))
	_ = h.WithGroup("g").Handle(ctx, rec("failed to connect", slog.LevelDebug, slog.String("Error", "again")))
	if len(noted) != 2 || noted[0] != "192.0.2.1 refused" || noted[1] != "192.0.2.1 again" || passed != 1 {
		t.Errorf("noted %q, passed %d", noted, passed)
	}
}

type countHandler struct {
	level slog.Level
	n     *int
}

func (h countHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h countHandler) Handle(context.Context, slog.Record) error    { *h.n++; return nil }
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h countHandler) WithGroup(string) slog.Handler                { return h }
