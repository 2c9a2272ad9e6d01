// Command pause is the sandbox ("pause") program of the lab's real nodes:
// the first process of every Pod, which holds the Pod's namespaces and
// does nothing else. It waits for SIGTERM or SIGINT and exits 0, like
// Kubernetes' own pause. The lab builds it into a one-file image (see
// node.SandboxImage), since no registry outside is reachable.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
