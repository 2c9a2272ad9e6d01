// Package registry is the lab's OCI registry: go-containerregistry's
// implementation of the OCI distribution specification, with blobs on
// disk, served on listeners the lab chooses (loopback in the root network
// namespace for pushes and helm, and 127.0.0.1:5000 inside every node's
// network namespace, where containerd pulls from it).
package registry

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Server serves one registry on any number of listeners.
type Server struct {
	handler http.Handler
	mu      sync.Mutex
	servers []*http.Server
	wg      sync.WaitGroup
}

// New returns a registry whose blobs live in dir. Its manifests and tags
// live in memory: they are gone with the Server, and the lab pushes its
// images again on every start.
func New(dir string, logger *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry blob directory: %w", err)
	}
	h := ggcr.New(
		ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(dir)),
		ggcr.Logger(log.New(slogWriter{logger}, "", 0)),
	)
	return &Server{handler: h}, nil
}

// Serve serves the registry on ln until Close.
func (s *Server) Serve(ln net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	s.wg.Go(func() { _ = srv.Serve(ln) })
}

// Close stops every listener and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Push writes img to the registry at addr (host:port, plain HTTP) as
// repository:tag, e.g. "library/nginx:latest".
func Push(ctx context.Context, addr, ref string, img v1.Image) error {
	tag, err := name.NewTag(addr+"/"+ref, name.Insecure, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image reference %s: %w", ref, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	return nil
}

// slogWriter sends the registry's log lines to a slog.Logger at debug
// level: one line per request.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("registry: " + string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
