package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/herald-lb/herald/internal/frr"
)

// frrBase holds the lab router's FRR directory (sockets, configuration,
// logs); frr.RemoveLeftovers cleans it after a crashed lab.
const frrBase = "/run/herald-lab-frr"

// routerConfig is the lab router's FRR configuration: AS RouterASN,
// every node a neighbor in AS NodeASN (IPv4, and IPv6 on a dual-stack
// lab), ECMP over up to 16 paths into the kernel, BFD offered to every
// node (a node whose BGPPeer has no BFD simply never answers it, which
// FRR does not hold against the session).
func routerConfig(t Topology) string {
	var b strings.Builder
	r := t.Router
	fmt.Fprintf(&b, `frr defaults datacenter
hostname router
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 bgp bestpath as-path multipath-relax
 neighbor nodes peer-group
 neighbor nodes remote-as %d
 neighbor nodes bfd
`, RouterASN, r.IPv4, NodeASN)
	if r.IPv6.IsValid() {
		fmt.Fprintf(&b, " neighbor nodes6 peer-group\n neighbor nodes6 remote-as %d\n neighbor nodes6 bfd\n", NodeASN)
	}
	for _, n := range t.Nodes {
		fmt.Fprintf(&b, " neighbor %s peer-group nodes\n", n.IPv4)
		if n.IPv6.IsValid() && r.IPv6.IsValid() {
			fmt.Fprintf(&b, " neighbor %s peer-group nodes6\n", n.IPv6)
		}
	}
	b.WriteString(" address-family ipv4 unicast\n  neighbor nodes activate\n  maximum-paths 16\n")
	if r.IPv6.IsValid() {
		b.WriteString("  no neighbor nodes6 activate\n")
	}
	b.WriteString(" exit-address-family\n")
	if r.IPv6.IsValid() {
		b.WriteString(" address-family ipv6 unicast\n  neighbor nodes6 activate\n  maximum-paths 16\n exit-address-family\n")
	}
	b.WriteString("!\n")
	return b.String()
}

// startRouter runs FRR (zebra, bgpd, bfdd) in the router's namespace.
func startRouter(ctx context.Context, t Topology) (*frr.Router, error) {
	if err := frr.Available(); err != nil {
		return nil, fmt.Errorf("the lab's router (--bgp) needs FRR (apt-get install frr): %w", err)
	}
	if err := frr.RemoveLeftovers(frrBase); err != nil {
		return nil, err
	}
	dir, err := frr.NewDir(frrBase, "router")
	if err != nil {
		return nil, err
	}
	r, err := frr.Start(ctx, frr.Options{Namespace: t.Router.NetNS, Dir: dir, Config: routerConfig(t), BFD: true})
	if err != nil {
		return nil, fmt.Errorf("the lab's router: %w", err)
	}
	return r, nil
}

// Vtysh replaces this process with FRR's vtysh on the lab's router, with
// args (for example -c "show bgp summary").
func Vtysh(s State, args []string) error {
	if s.Topology.Router == nil || s.RouterDir == "" {
		return fmt.Errorf("the lab has no router: herald-lab up --bgp")
	}
	path, err := exec.LookPath("vtysh")
	if err != nil {
		return err
	}
	return syscall.Exec(path, append([]string{"vtysh", "--vty_socket", s.RouterDir}, args...), os.Environ())
}
