package bgp

import (
	"context"
	"log/slog"

	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Some failures GoBGP v4.8.0 reports only in its logs, on loggers that
// carry the peer's address as "Key":
//
//   - "failed to connect" (debug level, attribute Error): a TCP connection
//     attempt failed. A session that never gets a connection (wrong TCP
//     MD5 password, a filter, nobody listening) otherwise just stays in
//     Active or Connect with no reason given.
//   - "sent notification" / "received notification" (attributes Code,
//     Subcode, Communicated-Reason): a NOTIFICATION. When it ends an
//     established session the state event carries the reason too, but one
//     sent or received while opening (a wrong peer AS in the OPEN) comes
//     with no state event at all.
const (
	dialFailedMessage   = "failed to connect"
	notifySentMessage   = "sent notification"
	notifyRecvMessage   = "received notification"
	ceaseCode           = 6
	peerDeconfiguredSub = 3 // what GoBGP sends when the speaker removes or resets a peer
)

// logHook is the slog.Handler given to GoBGP: it passes records on to the
// speaker's logger as that logger's level allows, and reports the failures
// above to note whatever the level.
type logHook struct {
	inner slog.Handler
	peer  string // the "Key" attribute GoBGP's peer loggers carry
	note  func(peer, err string)
}

// Enabled is true from debug level up: the dial failures are debug
// records. Records the inner handler does not want are dropped in Handle
// after a look at their message; GoBGP builds its debug records either way
// (cheaply: attributes are formatted only by a handler that keeps them).
func (h *logHook) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug
}

// Handle notes dial failures and forwards what the inner handler wants.
func (h *logHook) Handle(ctx context.Context, r slog.Record) error {
	if h.peer != "" {
		if msg := failure(r); msg != "" {
			h.note(h.peer, msg)
		}
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs remembers the peer a logger is for.
func (h *logHook) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &logHook{inner: h.inner.WithAttrs(attrs), peer: h.peer, note: h.note}
	for _, a := range attrs {
		if a.Key == "Key" {
			n.peer = a.Value.String()
		}
	}
	return n
}

// WithGroup opens a group on the inner handler.
func (h *logHook) WithGroup(name string) slog.Handler {
	return &logHook{inner: h.inner.WithGroup(name), peer: h.peer, note: h.note}
}

// failure returns the failure a GoBGP record reports, in words, or "".
func failure(r slog.Record) string {
	switch r.Message {
	case dialFailedMessage, notifySentMessage, notifyRecvMessage:
	default:
		return ""
	}
	var errText, reason string
	var code, sub int64
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "Error":
			errText = a.Value.String()
		case "Code":
			code = a.Value.Int64()
		case "Subcode":
			sub = a.Value.Int64()
		case "Communicated-Reason":
			reason = a.Value.String()
		}
		return true
	})
	if r.Message == dialFailedMessage {
		return errText
	}
	if r.Message == notifySentMessage && code == ceaseCode && sub == peerDeconfiguredSub {
		return "" // the speaker's own doing (SetPeers, Stop)
	}
	// The words of GoBGP's own disconnect reasons, so that both sources
	// read alike.
	text := "notification-sent "
	if r.Message == notifyRecvMessage {
		text = "notification-received "
	}
	text += bgppkt.NewNotificationErrorCode(uint8(code), uint8(sub)).String()
	if reason != "" {
		text += ": " + reason
	}
	return text
}
