package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// egressConfig is the API server's EgressSelectorConfiguration: the
// "cluster" traffic (kubelets, Pods, Services) goes as HTTP CONNECT over a
// Unix socket; the rest is dialled directly.
const egressConfig = `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`

// egressProxy serves HTTP CONNECT on a Unix socket with a dialer: the API
// server's way into the cluster's network (see Options.ClusterDialer).
type egressProxy struct {
	ln     net.Listener
	dial   func(ctx context.Context, network, address string) (net.Conn, error)
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startEgressProxy listens on dir/egress.sock, writes the egress selector
// configuration that points the API server at it into dir and returns the
// configuration's path.
func startEgressProxy(dir string, dial func(ctx context.Context, network, address string) (net.Conn, error),
	log *slog.Logger) (string, *egressProxy, error) {
	sock := filepath.Join(dir, "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", nil, fmt.Errorf("listen for the API server's cluster egress: %w", err)
	}
	config := filepath.Join(dir, "egress-selector.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, egressConfig, sock), 0o644); err != nil {
		_ = ln.Close()
		return "", nil, fmt.Errorf("write egress selector configuration: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &egressProxy{ln: ln, dial: dial, log: log, ctx: ctx, cancel: cancel}
	p.wg.Go(p.serve)
	return config, p, nil
}

func (p *egressProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.handle(c) })
	}
}

// handle answers one CONNECT and then copies bytes both ways until either
// side closes or the proxy is closed.
func (p *egressProxy) handle(in net.Conn) {
	defer in.Close()
	br := bufio.NewReader(in)
	req, err := http.ReadRequest(br)
	if err != nil {
		p.log.Debug("testenv: egress: read CONNECT", "err", err)
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = fmt.Fprintf(in, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	out, err := p.dial(ctx, "tcp", req.Host)
	cancel()
	if err != nil {
		p.log.Debug("testenv: egress: dial", "addr", req.Host, "err", err)
		_, _ = fmt.Fprintf(in, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer out.Close()
	if _, err := fmt.Fprintf(in, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	stop := context.AfterFunc(p.ctx, func() { _ = in.Close(); _ = out.Close() })
	defer stop()
	// The first side to finish ends the tunnel (the deferred closes end
	// the other copy).
	done := make(chan struct{}, 2)
	go func() {
		// The client speaks first (TLS), but pass on anything buffered.
		_, _ = io.Copy(out, br)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(in, out)
		done <- struct{}{}
	}()
	<-done
}

// close stops accepting, ends every open connection and waits for them.
func (p *egressProxy) close() {
	_ = p.ln.Close()
	p.cancel()
	p.wg.Wait()
}
