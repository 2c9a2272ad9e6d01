package lab

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/herald-lb/herald/internal/lab/labnet"
)

// KubePrismAddr is where Talos's KubePrism listens on every node.
const KubePrismAddr = "127.0.0.1:7445"

// KubePrism is a TCP proxy listening on localhost:7445 inside a node's
// network namespace and forwarding to the API server from outside it, like
// Talos's KubePrism: agents reach the API server without kube-proxy or the
// Service network, and a fault on the node's LAN link does not cut them off.
type KubePrism struct {
	ln       net.Listener
	upstream string
	log      *slog.Logger
	wg       sync.WaitGroup
}

// ListenKubePrism opens the proxy's listener in netns; Serve forwards to
// upstream (host:port).
func ListenKubePrism(netns, upstream string, log *slog.Logger) (*KubePrism, error) {
	ln, err := labnet.Listen(netns, "tcp", KubePrismAddr)
	if err != nil {
		return nil, err
	}
	return &KubePrism{ln: ln, upstream: upstream, log: log}, nil
}

// Serve forwards connections until ctx is done, then closes the listener
// and every open connection.
func (p *KubePrism) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		_ = p.ln.Close()
	}()
	defer p.wg.Wait()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer in.Close()
			d := net.Dialer{Timeout: 5 * time.Second}
			out, err := d.DialContext(ctx, "tcp", p.upstream)
			if err != nil {
				p.log.Warn("kubeprism: dial API server", "err", err)
				return
			}
			defer out.Close()
			stop := context.AfterFunc(ctx, func() { _ = in.Close(); _ = out.Close() })
			defer stop()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
			<-done
		}()
	}
}
