package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/frr"
	"github.com/herald-lb/herald/internal/netnstest"
)

// The FRR tests' LAN: a router and two nodes on one bridge.
const (
	nsPrefix = "hbgp"
	// frrBase holds the routers' directories: under /run, since FRR's
	// daemons run as the frr user and cannot enter a test's TempDir.
	frrBase = "/run/herald-frrtest"

	routerASN = 64512
	nodeASN   = 64513
)

var (
	routerV4 = netip.MustParseAddr("192.168.30.1")
	node1V4  = netip.MustParseAddr("192.168.30.11")
	node2V4  = netip.MustParseAddr("192.168.30.12")
	routerV6 = netip.MustParseAddr("fd00:30::1")
	node1V6  = netip.MustParseAddr("fd00:30::11")
)

// withFRR makes newLAN's LAN one for FRR.
var withFRR = newRouterKind("FRR", nsPrefix, frrBase, frr.Available, frr.RemoveLeftovers, frr.NewDir)

// startRouter runs FRR in the LAN's router namespace.
func startRouter(t *testing.T, lan *netnstest.LAN, config string, bfd bool) routerView {
	t.Helper()
	r := startRouterOf(t, withFRR, func(ctx context.Context, dir string) (*frr.Router, error) {
		return frr.Start(ctx, frr.Options{Namespace: lan.Namespace("router"), Dir: dir, Config: config, BFD: bfd})
	})
	return routerView{t: t, r: r}
}

// routerConfig is the router's FRR configuration: AS 64512, ECMP over up
// to 8 paths, and the given neighbor lines inside `router bgp` (lines that
// start with "address-family" open a block the caller closes).
func routerConfig(neighbors ...string) string {
	return fmt.Sprintf(`frr defaults datacenter
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
%s
 address-family ipv4 unicast
  maximum-paths 8
  maximum-paths ibgp 8
 exit-address-family
 address-family ipv6 unicast
  maximum-paths 8
 exit-address-family
!
`, routerASN, routerV4, " "+strings.Join(neighbors, "\n "))
}

// neighbor is one neighbor of the router's FRR configuration.
type neighbor struct {
	addr netip.Addr
	asn  uint32
	// more are further `neighbor ADDR ...` settings, such as
	// "password x".
	more []string
}

// neighborsConfig is routerConfig for neighbors that are all activated in
// one address family ("ipv4" or "ipv6").
func neighborsConfig(family string, ns ...neighbor) string {
	var lines []string
	for _, n := range ns {
		lines = append(lines, fmt.Sprintf("neighbor %s remote-as %d", n.addr, n.asn))
		for _, m := range n.more {
			lines = append(lines, fmt.Sprintf("neighbor %s %s", n.addr, m))
		}
	}
	lines = append(lines, "address-family "+family+" unicast")
	for _, n := range ns {
		lines = append(lines, fmt.Sprintf(" neighbor %s activate", n.addr))
	}
	return routerConfig(append(lines, "exit-address-family")...)
}

// eventually polls cond every 100 ms until it returns true or timeout
// passes; then the test fails with cond's last description.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, timeout, desc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctx returns a context for one FRR query.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

// routerView is one test's queries of its router.
type routerView struct {
	t *testing.T
	r *frr.Router
}

// neighbor returns the router's BGP state for a neighbor.
func (v routerView) neighbor(addr netip.Addr) frr.Neighbor {
	v.t.Helper()
	ns, err := v.r.Neighbors(ctx(v.t))
	if err != nil {
		v.t.Fatal(err)
	}
	return ns[addr.String()]
}

// session implements peerRouter.
func (v routerView) session(node netip.Addr) (bool, string) {
	n := v.neighbor(node)
	return n.State == "Established", fmt.Sprintf("router %+v", n)
}

// paths returns the router's BGP paths for a prefix.
func (v routerView) paths(p netip.Prefix) []frr.Path {
	v.t.Helper()
	ps, err := v.r.Paths(ctx(v.t), p)
	if err != nil {
		v.t.Fatal(err)
	}
	return ps
}

// routeCount implements peerRouter.
func (v routerView) routeCount(p netip.Prefix) (int, string) {
	ps := v.paths(p)
	return len(ps), fmt.Sprintf("%+v", ps)
}

// kernelRoute is one route of `ip -j route show` in the router's
// namespace.
type kernelRoute struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Protocol string `json:"protocol"`
	Nexthops []struct {
		Gateway string `json:"gateway"`
	} `json:"nexthops"`
}

// fibNextHops returns the next hops of the router kernel's route to p
// (none without a route), sorted.
func fibNextHops(t *testing.T, lan *netnstest.LAN, p netip.Prefix) []string {
	t.Helper()
	args := []string{"-j", "route", "show", "exact", p.String()}
	if p.Addr().Is6() {
		args = append([]string{"-6"}, args...)
	}
	out := lan.IP("router", args...)
	var rs []kernelRoute
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("parse ip route output %q: %v", out, err)
	}
	var hops []string
	for _, r := range rs {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, n := range r.Nexthops {
			hops = append(hops, n.Gateway)
		}
	}
	slices.Sort(hops)
	return hops
}

// waitFIB waits until the router's kernel routes p via exactly hops (none:
// no route).
func waitFIB(t *testing.T, lan *netnstest.LAN, p netip.Prefix, timeout time.Duration, hops ...netip.Addr) {
	t.Helper()
	want := make([]string, len(hops))
	for i, h := range hops {
		want[i] = h.String()
	}
	slices.Sort(want)
	eventually(t, timeout, fmt.Sprintf("router's kernel routes %s via %v", p, want), func() (bool, string) {
		got := fibNextHops(t, lan, p)
		return slices.Equal(got, want), fmt.Sprintf("next hops %v\n%s", got, lan.IP("router", "route", "show", "table", "all"))
	})
}
