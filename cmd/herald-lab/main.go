// Command herald-lab is Herald's lab: a Kubernetes cluster in network
// namespaces on one Linux machine, with Herald installed from its Helm
// chart (see internal/lab). It is a development and demonstration tool,
// kept out of the herald binary that runs in clusters; it runs that binary,
// found next to itself, as Herald's image.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herald-lb/herald/internal/labcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := labcli.NewRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-lab:", err)
		os.Exit(1)
	}
}
