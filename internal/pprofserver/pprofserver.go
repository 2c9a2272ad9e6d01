// Package pprofserver serves Go's profiling endpoints (net/http/pprof) for
// the controller and the agent, behind a flag and on loopback only: a
// profile shows what the process does, and the agent runs on the node's own
// network (hostNetwork), so nothing else may reach it.
package pprofserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"
)

// CheckLoopback returns an error unless addr ("host:port") listens on a
// loopback address only.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("profiling address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("profiling address %q: only a loopback address (127.0.0.1, [::1], localhost) may serve profiles", addr)
	}
	return nil
}

// Serve listens on addr (loopback only) and serves /debug/pprof/ until ctx
// is done or stop is called.
func Serve(ctx context.Context, addr string, log *slog.Logger) (stop func(), err error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on profiling address %s: %w", addr, err)
	}
	// Profiles take their time (a CPU profile lasts 30 s by default), so
	// only the header read is bounded.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("profiling server stopped", "addr", addr, "err", err)
		}
	}()
	stopCtx := context.AfterFunc(ctx, func() { _ = srv.Close() })
	return func() {
		stopCtx()
		_ = srv.Close()
	}, nil
}
