// Command buildtools builds (or finds in the cache) the binaries that
// internal/testenv runs and hands to tests (kube-apiserver,
// kube-controller-manager, kube-scheduler, etcd, kubectl and helm), and
// prints the directory that holds them, so that a Makefile or CI can build
// them ahead of the tests:
//
//	go run ./internal/testenv/cmd/buildtools
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-lb/herald/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	paths, err := testenv.Binaries(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildtools:", err)
		stop()
		os.Exit(1)
	}
	fmt.Println(paths.Dir)
}
