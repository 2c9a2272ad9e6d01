// Command devcluster runs a real etcd and kube-apiserver (built from the
// modules pinned in hack/tools) with Herald's CRDs installed, until it is
// interrupted. The quickstart runs Herald's controller against it.
//
//	go run ./hack/devcluster -kubeconfig /tmp/herald-dev.kubeconfig
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-lb/herald/internal/testenv"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "copy the admin kubeconfig to this path once the API server is ready")
	crds := flag.String("crds", "config/crd", "directory of CRD manifests to install")
	flag.Parse()
	if err := run(*kubeconfig, *crds); err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, crds string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := testenv.Start(ctx, testenv.Options{CRDDirs: []string{crds}, Logger: slog.Default()})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			slog.Error("stop", "err", err)
		}
	}()
	if kubeconfig != "" {
		data, err := os.ReadFile(env.KubeconfigPath)
		if err != nil {
			return fmt.Errorf("read kubeconfig: %w", err)
		}
		if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
			return fmt.Errorf("write kubeconfig: %w", err)
		}
		defer os.Remove(kubeconfig)
	}
	fmt.Printf("API server %s ready; kubeconfig %s; kubectl %s\n", env.APIServerURL, env.KubeconfigPath, env.Binaries.Kubectl)
	<-ctx.Done()
	return nil
}
