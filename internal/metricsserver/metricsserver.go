// Package metricsserver serves a Prometheus registry with the health
// endpoints that the Helm chart's probes use: /metrics, /healthz and,
// when the caller has a readiness check, /readyz.
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures Serve.
type Options struct {
	// Addr is the listen address, such as 127.0.0.1:9470.
	Addr string
	// Registry is what /metrics serves.
	Registry *prometheus.Registry
	// Healthy, when set, answers /healthz: nil is alive, an error says
	// what is wedged (the kubelet's liveness probe then restarts the
	// process). Without it /healthz answers ok while the server runs.
	Healthy func(context.Context) error
	// Ready, when set, answers /readyz: nil is ready, an error is the
	// reason it is not. Without it there is no /readyz.
	Ready func(context.Context) error
	// Logger reports a server that stops on its own; nil means
	// slog.Default().
	Logger *slog.Logger
}

// check serves a probe endpoint: 200 "ok", or 503 with the reason.
func check(f func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if f != nil {
			if err := f(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	}
}

// Serve listens on opts.Addr and serves until ctx is done or the returned
// stop function is called. A listen error is returned at once, so a taken
// port fails the command instead of a probe later.
func Serve(ctx context.Context, opts Options) (stop func(), err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", check(opts.Healthy))
	if opts.Ready != nil {
		mux.HandleFunc("/readyz", check(opts.Ready))
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on metrics address %s: %w", opts.Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", opts.Addr, "err", err)
		}
	}()
	stopCtx := context.AfterFunc(ctx, func() { _ = srv.Close() })
	return func() {
		stopCtx()
		_ = srv.Close()
	}, nil
}
