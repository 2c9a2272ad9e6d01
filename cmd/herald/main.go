// Command herald is the binary that Herald's image ships: the LB-IPAM
// controller, the node agent and (as it lands) the user CLI. It holds only
// what runs in a cluster or on a laptop; the lab is cmd/herald-lab.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-lb/herald/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.NewRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}
