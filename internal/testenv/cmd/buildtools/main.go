// Command buildtools builds (or finds in the cache) the binaries that
// internal/testenv runs and hands to tests (kube-apiserver,
// kube-controller-manager, kube-scheduler, etcd, kubectl and helm), and
// prints the directory that holds them, so that a Makefile or CI can build
// them ahead of the tests:
//
//	go run ./internal/testenv/cmd/buildtools
//
// With -node it also builds the binaries of a real node (kubelet,
// kube-proxy, containerd, ctr and containerd-shim-runc-v2; see
// testenv.NodeBinaries) and prints their directory on the next line; with
// -promtool, Prometheus's promtool and promqlnames (see testenv.PromTools),
// whose directory it prints last.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-lb/herald/internal/testenv"
)

func main() {
	node := flag.Bool("node", false, "also build the node binaries (kubelet, kube-proxy, agnhost, containerd, ctr, containerd-shim-runc-v2)")
	prom := flag.Bool("promtool", false, "also build Prometheus's promtool and promqlnames (hack/promtool)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *node, *prom); err != nil {
		fmt.Fprintln(os.Stderr, "buildtools:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, node, prom bool) error {
	paths, err := testenv.Binaries(ctx)
	if err != nil {
		return err
	}
	fmt.Println(paths.Dir)
	if node {
		np, err := testenv.NodeBinaries(ctx)
		if err != nil {
			return err
		}
		fmt.Println(np.Dir)
	}
	if prom {
		pp, err := testenv.PromTools(ctx)
		if err != nil {
			return err
		}
		fmt.Println(pp.Dir)
	}
	return nil
}
