package bgp

import (
	"context"
	"log/slog"
)

// dialErrorMessage is the message GoBGP v4.8.0's connect loop logs (at
// debug level, on a logger carrying the peer's address as "Key") when a TCP
// connection attempt fails. It is the only place the reason is exposed: a
// session that never gets a TCP connection (wrong TCP MD5 password, a
// filter, nobody listening) otherwise just stays in Active or Connect.
const dialErrorMessage = "failed to connect"

// logHook is the slog.Handler given to GoBGP: it passes records on to the
// speaker's logger as that logger's level allows, and reports failed
// connection attempts to noteDialError whatever the level.
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
	if r.Message == dialErrorMessage && h.peer != "" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "Error" {
				h.note(h.peer, a.Value.String())
				return false
			}
			return true
		})
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
