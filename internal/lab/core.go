package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/herald-lb/herald/internal/bird"
)

// birdBase holds the core router's BIRD directory (control socket,
// configuration); bird.RemoveLeftovers cleans it after a crashed lab.
const birdBase = "/run/herald-lab-bird"

// coreConfig is the core router's BIRD configuration: AS CoreASN, a
// passive eBGP multihop session with every node that connects from the
// LAN (AS NodeASN, two hops away: through the router), the routes learned
// put into the kernel (one route, a next hop per distinct gateway).
//
// The nodes' next hops (their LAN addresses) are not on the core's
// subnet: BIRD resolves them recursively, through the static route to the
// LAN via the router, so the kernel routes a load-balancer address to the
// router, which balances it over the nodes.
func coreConfig(t Topology) string {
	return fmt.Sprintf(`router id %s;

protocol device {}

# The LAN is behind the router: how BIRD resolves the nodes' next hops.
protocol static {
	ipv4;
	route %s via %s;
}

protocol kernel {
	ipv4 { export where source = RTS_BGP; };
	merge paths on;
}

protocol bgp nodes {
	local as %d;
	neighbor range %s as %d;  # one session per node that connects
	dynamic name "node";
	multihop 2;
	# A refused or failed node may try again after a second, not BIRD's
	# default minute.
	error wait time 1, 30;
	ipv4 { import all; export none; };
}
`, t.Core.IPv4, lanV4(), t.RouterCoreLink().Addr(), CoreASN, lanV4(), NodeASN)
}

// startCore runs BIRD in the core router's namespace.
func startCore(ctx context.Context, t Topology) (*bird.Router, error) {
	if err := bird.Available(); err != nil {
		return nil, fmt.Errorf("the lab's core router (--bgp) needs BIRD 2 (apt-get install bird2): %w", err)
	}
	if err := bird.RemoveLeftovers(birdBase); err != nil {
		return nil, err
	}
	dir, err := bird.NewDir(birdBase, "core")
	if err != nil {
		return nil, err
	}
	r, err := bird.Start(ctx, bird.Options{Namespace: t.Core.NetNS, Dir: dir, Config: coreConfig(t)})
	if err != nil {
		return nil, fmt.Errorf("the lab's core router: %w", err)
	}
	return r, nil
}

// Birdc replaces this process with BIRD's birdc on the lab's core router,
// with args (for example "show route").
func Birdc(s State, args []string) error {
	if s.Topology.Core == nil || s.CoreSocket == "" {
		return fmt.Errorf("the lab has no core router: herald-lab up --bgp")
	}
	path, err := exec.LookPath(bird.Client)
	if err != nil {
		return err
	}
	return syscall.Exec(path, append([]string{"birdc", "-s", s.CoreSocket}, args...), os.Environ())
}
