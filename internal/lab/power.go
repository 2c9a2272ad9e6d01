package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testenv"
)

// controlFile is the daemon's control socket in the lab's directory
// (State.Control): herald-lab node crash and node boot talk to it.
const controlFile = "control.sock"

// crashTimeout bounds the wait for a crashed node's processes to be gone.
const crashTimeout = 30 * time.Second

// bootTimeout bounds a node's boot: its namespace, containerd and the
// kubelet up, and the Node Ready again.
const bootTimeout = 2 * time.Minute

// nodePower crashes and boots the lab's real nodes while the daemon runs.
// It owns what the daemon keeps open in a node's namespace — the
// KubePrism proxy, the registry's listener, the Pod route keeper's
// netlink sockets — because each of them holds the namespace: a node's
// namespace is only gone once they are closed.
type nodePower struct {
	topo     Topology
	env      *testenv.Env
	rn       *realNodes
	upstream string // the API server's host:port, for KubePrism
	runCtx   context.Context
	wg       *sync.WaitGroup
	errc     chan<- error
	log      *slog.Logger

	mu     sync.Mutex
	prisms map[string]func() // stops a node's KubePrism and waits for it
	keeper func()            // stops the route keeper and waits for it
	down   map[string]bool   // crashed, not booted again
}

// startPrism opens a node's KubePrism and serves it until runCtx ends or
// the node crashes.
func (p *nodePower) startPrism(h Host) error {
	prism, err := ListenKubePrism(h.NetNS, p.upstream, p.log.With("node", h.Name))
	if err != nil {
		return fmt.Errorf("kubeprism on %s: %w", h.Name, err)
	}
	ctx, cancel := context.WithCancel(p.runCtx)
	done := make(chan struct{})
	p.wg.Go(func() {
		defer close(done)
		prism.Serve(ctx)
	})
	p.prisms[h.Name] = func() { cancel(); <-done }
	return nil
}

// startKeeper keeps the Pod routes (and default routes) of every node that
// is up, replacing the keeper that ran before.
func (p *nodePower) startKeeper(ctx context.Context) error {
	if p.keeper != nil {
		p.keeper()
		p.keeper = nil
	}
	routes, err := podRoutes(ctx, p.env, p.topo)
	if err != nil {
		return err
	}
	up := routes[:0]
	for _, r := range routes {
		if !p.down[strings.TrimPrefix(r.netns, p.topo.Prefix)] {
			up = append(up, r)
		}
	}
	keeper, err := newRouteKeeper(up)
	if err != nil {
		return err
	}
	if err := keeper.apply(); err != nil {
		keeper.close()
		return err
	}
	kctx, cancel := context.WithCancel(p.runCtx)
	done := make(chan struct{})
	p.wg.Go(func() {
		defer close(done)
		keeper.keep(kctx, p.log)
	})
	p.keeper = func() { cancel(); <-done }
	return nil
}

// crash cuts a node's power: its LAN link goes first, so nothing its
// processes send as they die (a TCP FIN, a BGP notification, a gratuitous
// ARP) reaches anyone; then every process of the node is killed at once
// and its namespace deleted. Its Node object stays, NotReady once the
// node lifecycle controller notices, as with a real machine.
func (p *nodePower) crash(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, err := p.node(name, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, crashTimeout)
	defer cancel()
	if err := p.topo.RemoveNode(name); err != nil {
		return err
	}
	p.down[name] = true
	var errs []error
	if err := p.rn.kill(ctx, name); err != nil {
		errs = append(errs, err)
	}
	if stop := p.prisms[name]; stop != nil {
		stop()
		delete(p.prisms, name)
	}
	// The keeper holds a netlink socket in every node's namespace; the
	// others' routes are kept again at once.
	if err := p.startKeeper(ctx); err != nil {
		errs = append(errs, err)
	}
	if _, err := labnet.IP("netns", "delete", h.NetNS); err != nil {
		errs = append(errs, err)
	}
	p.log.Info("lab: node crashed", "node", name)
	return errors.Join(errs...)
}

// boot starts a crashed node again: its namespace and LAN link, KubePrism,
// the registry's listener, containerd and the kubelet from the node's
// directory, the routes; it returns once the kubelet has reported the
// Node Ready again.
func (p *nodePower) boot(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, err := p.node(name, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	booted := time.Now()
	if err := p.topo.RecreateNode(name); err != nil {
		return err
	}
	if err := p.startPrism(h); err != nil {
		return err
	}
	if err := p.rn.boot(ctx, p.runCtx, p.wg, name, p.errc); err != nil {
		return err
	}
	delete(p.down, name)
	if err := p.startKeeper(ctx); err != nil {
		return err
	}
	if err := p.waitReady(ctx, name, booted); err != nil {
		return err
	}
	p.log.Info("lab: node booted", "node", name, "took", time.Since(booted).Round(time.Millisecond))
	return nil
}

// waitReady waits until the booted kubelet has renewed its node Lease
// (after since: a renewal time has microseconds, unlike the Node's
// heartbeat, so a renewal by the kubelet that ran before the crash cannot
// pass for it) and the Node is Ready.
func (p *nodePower) waitReady(ctx context.Context, name string, since time.Time) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.renewedSince(ctx, name, since) && p.nodeReady(ctx, name) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: wait for the kubelet to renew its lease and report Ready: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

func (p *nodePower) renewedSince(ctx context.Context, name string, since time.Time) bool {
	l, err := p.env.Clientset().CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
	return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since)
}

func (p *nodePower) nodeReady(ctx context.Context, name string) bool {
	n, err := p.env.Clientset().CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// node returns the named node, which must be down (crashed) or up as
// wantDown says.
func (p *nodePower) node(name string, wantDown bool) (Host, error) {
	for _, h := range p.topo.Nodes {
		if h.Name != name {
			continue
		}
		switch {
		case wantDown && !p.down[name]:
			return Host{}, fmt.Errorf("node %s is not down", name)
		case !wantDown && p.down[name]:
			return Host{}, fmt.Errorf("node %s is already down", name)
		}
		return h, nil
	}
	return Host{}, fmt.Errorf("no node %q in the lab", name)
}

// stop stops the KubePrism proxies and the route keeper.
func (p *nodePower) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, stop := range p.prisms {
		stop()
		delete(p.prisms, name)
	}
	if p.keeper != nil {
		p.keeper()
		p.keeper = nil
	}
}

// serveControl serves the daemon's control socket until ctx ends:
// POST /nodes/NAME/crash and POST /nodes/NAME/boot.
func (p *nodePower) serveControl(ctx context.Context, path string) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	handle := func(op func(context.Context, string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := op(r.Context(), r.PathValue("name")); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /nodes/{name}/crash", handle(p.crash))
	mux.HandleFunc("POST /nodes/{name}/boot", handle(p.boot))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	p.wg.Go(func() { _ = srv.Serve(ln) })
	p.wg.Go(func() {
		<-ctx.Done()
		_ = srv.Close()
		_ = os.Remove(path)
	})
	return nil
}

// CrashNode cuts the power of a node of the running lab (herald-lab node
// crash NAME): its LAN link, every process it runs (SIGKILL) and its
// network namespace go at once.
func CrashNode(ctx context.Context, s State, name string) error {
	return control(ctx, s, "/nodes/"+name+"/crash")
}

// BootNode starts a crashed node again (herald-lab node boot NAME) and
// returns once its Node is Ready.
func BootNode(ctx context.Context, s State, name string) error {
	return control(ctx, s, "/nodes/"+name+"/boot")
}

// control posts to the daemon's control socket.
func control(ctx context.Context, s State, path string) error {
	if s.Control == "" {
		return errors.New("the lab's daemon has no control socket (a lab from an older herald-lab: herald-lab down, then up)")
	}
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", s.Control)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://lab"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("the lab's daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the lab's daemon: %s", strings.TrimSpace(string(body)))
	}
	return nil
}

// controlPath is the control socket of a lab whose directory is dir.
func controlPath(dir string) string { return filepath.Join(dir, controlFile) }
