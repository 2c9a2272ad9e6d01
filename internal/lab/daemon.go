package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testenv"
)

// nodesReadyTimeout bounds the wait for every node to register, get its
// podCIDR and be Ready.
const nodesReadyTimeout = 2 * time.Minute

// podCIDRv6 is the IPv6 Pod CIDR of a lab with --ipv6; each node gets a /64.
const podCIDRv6 = "fd00:10:244::/56"

// RunDaemon is `herald-lab daemon`: it builds the network, starts the
// control plane, the KubePrism proxies, the registry and a real node per
// host (see startRealNodes), publishes the lab's State once every node is
// Ready, and keeps all of it running until ctx is done; then it stops the
// nodes (and their Pods), the control plane and removes the namespaces.
func RunDaemon(ctx context.Context, opts Options, log *slog.Logger) (err error) {
	opts = opts.withDefaults()
	if err := checkProxy(opts.Proxy); err != nil {
		return err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("lab directory: %w", err)
	}
	_ = os.Remove(filepath.Join(opts.Dir, stateFile))
	if err := os.WriteFile(filepath.Join(opts.Dir, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer func() {
		_ = os.Remove(filepath.Join(opts.Dir, stateFile))
		_ = os.Remove(filepath.Join(opts.Dir, pidFile))
	}()

	topo, err := NewTopology(opts.Prefix, opts.Nodes, opts.IPv6)
	if err != nil {
		return err
	}
	if opts.BGP {
		topo.AddRouter()
	}
	_, herald, err := opts.binaries()
	if err != nil {
		return err
	}
	log.Info("lab: building the network", "nodes", len(topo.Nodes), "prefix", opts.Prefix)
	if err := topo.Create(); err != nil {
		return err
	}
	defer func() {
		if rerr := labnet.RemoveNamespaces(opts.Prefix); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()

	log.Info("lab: starting etcd, kube-apiserver, kube-controller-manager and kube-scheduler")
	clusterCIDR := testenv.DefaultClusterCIDR
	if opts.IPv6 {
		// Dual-stack Pods, so IPv6 load-balancer addresses have endpoints.
		clusterCIDR += "," + podCIDRv6
	}
	envOpts := testenv.Options{Controllers: true, ClusterCIDR: clusterCIDR, Logger: log,
		ClusterDialer: clusterDialer(topo)}
	for _, h := range topo.Nodes {
		envOpts.NodeNames = append(envOpts.NodeNames, h.Name)
	}
	env, err := testenv.Start(ctx, envOpts)
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	defer func() {
		if serr := env.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	kubeconfig := filepath.Join(opts.Dir, "kubeconfig")
	data, err := os.ReadFile(env.KubeconfigPath)
	if err == nil {
		err = os.WriteFile(kubeconfig, data, 0o600)
	}
	if err != nil {
		return fmt.Errorf("copy kubeconfig: %w", err)
	}
	u, err := url.Parse(env.APIServerURL)
	if err != nil {
		return fmt.Errorf("API server URL: %w", err)
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	// One exit report per node at most: a node's watcher sends once, and a
	// crashed node's watcher is stopped before its next one starts.
	errc := make(chan error, len(topo.Nodes))
	power := &nodePower{topo: topo, env: env, upstream: u.Host, runCtx: runCtx, wg: &wg, errc: errc, log: log,
		prisms: map[string]func(){}, down: map[string]bool{}}
	defer power.stop()
	for _, node := range topo.Nodes {
		if err := power.startPrism(node); err != nil {
			return err
		}
	}

	rn, err := startRealNodes(ctx, runCtx, &wg, opts, topo, env, clusterCIDR, herald, log, errc)
	if err != nil {
		return err
	}
	defer func() {
		if serr := rn.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	power.rn = rn

	if err := waitNodesReady(ctx, env, topo, errc); err != nil {
		return err
	}
	if err := labelControlPlane(ctx, env, topo); err != nil {
		return err
	}
	if err := power.startKeeper(ctx); err != nil {
		return err
	}
	if err := power.serveControl(runCtx, controlPath(opts.Dir)); err != nil {
		return err
	}
	routerDir := ""
	if topo.Router != nil {
		log.Info("lab: starting the router (FRR)", "netns", topo.Router.NetNS)
		router, err := startRouter(ctx, topo)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := router.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
		routerDir = router.Dir()
	}
	coreSocket := ""
	if topo.Core != nil {
		log.Info("lab: starting the core router (BIRD)", "netns", topo.Core.NetNS)
		core, err := startCore(ctx, topo)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := core.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
		coreSocket = core.Socket()
	}
	if err := writeState(opts.Dir, State{
		PID: os.Getpid(), Kubeconfig: kubeconfig, APIServer: env.APIServerURL, Tools: env.Binaries, Topology: topo,
		Proxy: opts.Proxy, Registry: rn.pushAddr, Containerd: rn.sockets, Ctr: rn.ctr, RouterDir: routerDir,
		CoreSocket: coreSocket, Control: controlPath(opts.Dir),
	}); err != nil {
		return err
	}
	log.Info("lab: up", "kubeconfig", kubeconfig, "apiserver", env.APIServerURL)

	select {
	case <-ctx.Done():
		log.Info("lab: stopping")
		return nil
	case err := <-errc:
		return err
	}
}

// waitNodesReady waits until every node is registered, Ready and has a
// podCIDR.
func waitNodesReady(ctx context.Context, env *testenv.Env, topo Topology, errc <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, nodesReadyTimeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		nodes, err := env.Clientset().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		ready := 0
		if err == nil {
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
						ready++
					}
				}
			}
		}
		if ready == len(topo.Nodes) {
			return nil
		}
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return fmt.Errorf("wait for %d nodes to be Ready with a podCIDR (%d are): %w", len(topo.Nodes), ready, ctx.Err())
		case <-tick.C:
		}
	}
}
