// Command herald is the binary that Herald's image ships: the LB-IPAM
// controller, the node agent and the operator commands (pools, services,
// announcements, status, explain, doctor, import). Run as kubectl-herald (a symlink), it is the
// kubectl plugin with the same commands. It holds only what runs in a
// cluster or on a laptop; the lab is cmd/herald-lab.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/herald-lb/herald/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	name := filepath.Base(os.Args[0])
	err := cli.NewRoot(name).ExecuteContext(ctx)
	stop()
	if err != nil {
		// A report that found problems has printed them; the error only
		// says so (exit code 1 either way).
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
