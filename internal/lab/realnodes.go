package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/herald-lb/herald/internal/lab/labimages"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/lab/node"
	"github.com/herald-lb/herald/internal/lab/registry"
	"github.com/herald-lb/herald/internal/testenv"
)

// registryAddr is where the lab's registry listens inside every node's
// network namespace; containerd pulls from it.
const registryAddr = "127.0.0.1:5000"

// cgroupPrefix starts the cgroup name of every real node of a lab whose
// namespaces start with prefix (node.Config.CgroupName's default).
func cgroupPrefix(prefix string) string { return "herald-" + prefix }

// clusterDialer is how the API server reaches kubelets and Pods (logs,
// exec, port-forward): from inside the namespace of the node that has the
// address, or of the first node for any other address (a Pod's, routed
// between nodes).
func clusterDialer(topo Topology) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		ns := topo.Nodes[0].NetNS
		if host, _, err := net.SplitHostPort(address); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil {
				for _, h := range topo.Nodes {
					if h.IPv4 == ip || h.IPv6 == ip {
						ns = h.NetNS
					}
				}
			}
		}
		return labnet.Dialer(ns)(ctx, network, address)
	}
}

// realNodes are the lab's real nodes and the registry they pull from.
type realNodes struct {
	registry *registry.Server
	// nodes are the lab's nodes in topology order, running or crashed.
	nodes   []*runningNode
	sockets map[string]string
	ctr     string
	// pushAddr is the registry's listener on loopback in the root
	// namespace.
	pushAddr string
}

// runningNode is a real node, the configuration it boots with and what
// the daemon keeps open in its namespace for it while it runs.
type runningNode struct {
	cfg node.Config
	// node is nil while the node is crashed (kill) and not booted again.
	node *node.Node
	// registryLn is the registry's listener in the node's namespace.
	registryLn net.Listener
	// stopWatch ends the goroutine that reports the node's daemons
	// exiting.
	stopWatch context.CancelFunc
}

// startRealNodes starts the lab's registry, pushes the lab's images into
// it and starts a real node (containerd and the kubelet) per host of topo.
// Exits of a node's daemons are reported on errc while runCtx lasts.
func startRealNodes(ctx, runCtx context.Context, wg *sync.WaitGroup, opts Options, topo Topology, env *testenv.Env,
	clusterCIDR, herald string, log *slog.Logger, errc chan<- error) (_ *realNodes, err error) {
	log.Info("lab: building (or finding in the cache) the kubelet, kube-proxy, agnhost and containerd")
	bins, err := testenv.NodeBinaries(ctx)
	if err != nil {
		return nil, err
	}
	rn := &realNodes{sockets: map[string]string{}, ctr: bins.Ctr}
	defer func() {
		if err != nil {
			err = errors.Join(err, rn.stop())
		}
	}()

	if rn.registry, err = registry.New(filepath.Join(opts.Dir, "registry"), log); err != nil {
		return nil, err
	}
	push, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	rn.registry.Serve(push)
	rn.pushAddr = push.Addr().String()
	cache, err := testenv.CacheBase()
	if err != nil {
		return nil, err
	}
	log.Info("lab: building the images (Herald, agnhost, Debian's nginx) and pushing them to the lab's registry")
	images, err := labimages.Build(ctx, labimages.Sources{
		Herald: herald, HeraldTag: opts.HeraldTag, HeraldVersion: opts.HeraldTag,
		Agnhost: bins.Agnhost, AgnhostVersion: bins.AgnhostVersion,
		Cache: filepath.Join(cache, "images"),
	})
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		for _, ref := range img.Refs {
			// The registry holds each image under its path in its home
			// registry: docker.io/library/nginx:latest is library/nginx:latest.
			_, path, _ := strings.Cut(ref, "/")
			if err := registry.Push(ctx, push.Addr().String(), path, img.Image); err != nil {
				return nil, err
			}
		}
	}

	var proxy node.KubeProxy
	if opts.Proxy != ProxyNone {
		kubeconfig, err := env.KubeProxyKubeconfig("https://" + KubePrismAddr)
		if err != nil {
			return nil, err
		}
		proxy = node.KubeProxy{Mode: opts.Proxy, Kubeconfig: kubeconfig, ClusterCIDR: clusterCIDR}
	}
	for _, h := range topo.Nodes {
		kubeconfig, err := env.NodeKubeconfig(h.Name, "https://"+KubePrismAddr)
		if err != nil {
			return nil, err
		}
		cfg := node.Config{
			Name: h.Name, NetNS: h.NetNS, IP: h.IPv4, IPv6: h.IPv6,
			Dir:        filepath.Join(opts.Dir, "nodes", h.Name),
			Kubeconfig: kubeconfig, Binaries: bins,
			SandboxImage: labimages.SandboxImage(bins.AgnhostVersion),
			Registry:     registryAddr, Mirrored: labimages.Registries(),
			KubeProxy: proxy, Log: log,
		}
		r := &runningNode{cfg: cfg}
		if err := rn.start(ctx, runCtx, wg, r, errc); err != nil {
			return nil, err
		}
		rn.nodes = append(rn.nodes, r)
		rn.sockets[h.Name] = r.node.Socket()
	}
	return rn, nil
}

// start opens the registry's listener in r's namespace, starts the node
// (containerd and the kubelet) and reports an exit of its daemons on errc
// while runCtx lasts and the node is not killed.
func (rn *realNodes) start(ctx, runCtx context.Context, wg *sync.WaitGroup, r *runningNode, errc chan<- error) error {
	ln, err := labnet.Listen(r.cfg.NetNS, "tcp", registryAddr)
	if err != nil {
		return fmt.Errorf("registry on %s: %w", r.cfg.Name, err)
	}
	rn.registry.Serve(ln)
	n, err := node.Start(ctx, r.cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	watchCtx, stopWatch := context.WithCancel(runCtx)
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
				if err := n.Exited(); err != nil && watchCtx.Err() == nil {
					errc <- err
					return
				}
			}
		}
	})
	r.node, r.registryLn, r.stopWatch = n, ln, stopWatch
	return nil
}

// find returns the named node, running or crashed.
func (rn *realNodes) find(name string) (*runningNode, error) {
	i := slices.IndexFunc(rn.nodes, func(r *runningNode) bool { return r.cfg.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("no node %s", name)
	}
	return rn.nodes[i], nil
}

// kill cuts the named node's power (node.Node.Kill) and closes the
// registry's listener in its namespace. It leaves the namespace itself.
func (rn *realNodes) kill(ctx context.Context, name string) error {
	r, err := rn.find(name)
	if err != nil {
		return err
	}
	if r.node == nil {
		return fmt.Errorf("node %s is not running", name)
	}
	r.stopWatch()
	err = r.node.Kill(ctx)
	r.node = nil
	if cerr := r.registryLn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, fmt.Errorf("registry on %s: %w", name, cerr))
	}
	return err
}

// boot starts a killed node again with its configuration, in its
// (recreated) namespace.
func (rn *realNodes) boot(ctx, runCtx context.Context, wg *sync.WaitGroup, name string, errc chan<- error) error {
	r, err := rn.find(name)
	if err != nil {
		return err
	}
	if r.node != nil {
		return fmt.Errorf("node %s is running", name)
	}
	return rn.start(ctx, runCtx, wg, r, errc)
}

// stop stops the nodes (last first), then the registry.
func (rn *realNodes) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), downGrace)
	defer cancel()
	var errs []error
	for i := len(rn.nodes) - 1; i >= 0; i-- {
		if r := rn.nodes[i]; r.node != nil {
			r.stopWatch()
			if err := r.node.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	rn.nodes = nil
	if rn.registry != nil {
		if err := rn.registry.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// labelControlPlane gives the first node the control-plane role label,
// which the kubelet may not set itself (NodeRestriction forbids it).
func labelControlPlane(ctx context.Context, env *testenv.Env, topo Topology) error {
	patch := []byte(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`)
	if _, err := env.Clientset().CoreV1().Nodes().Patch(ctx, topo.Nodes[0].Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label %s as the control plane: %w", topo.Nodes[0].Name, err)
	}
	return nil
}

// podCIDRs returns a Node's Pod CIDRs, one per family.
func podCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

// removeRealNodes kills what real nodes of the lab left (containers and
// their shims outlive a killed daemon) and removes their cgroups.
func removeRealNodes(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return node.CleanupAll(ctx, cgroupPrefix(prefix))
}
