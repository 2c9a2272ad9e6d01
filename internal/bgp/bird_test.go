package bgp_test

// The speaker against BIRD 2 (Debian's bird2) as the router: the same
// network-namespace LAN as the FRR tests (newLAN in helper_test.go), BIRD
// in the router's namespace (internal/bird), the speakers in child
// processes in the nodes' namespaces (helper_test.go). BIRD's kernel
// protocol puts the routes it learns into the router namespace's kernel,
// with `merge paths` for ECMP, so each test checks both BIRD's table and
// the kernel's.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp"
	"github.com/herald-lb/herald/internal/bgp/community"
	"github.com/herald-lb/herald/internal/bird"
	"github.com/herald-lb/herald/internal/netnstest"
)

const (
	birdNSPrefix = "hbird"
	// birdBase holds the BIRD routers' directories: under /run, since
	// BIRD runs as the bird user and cannot enter a test's TempDir.
	birdBase = "/run/herald-birdtest"
)

// withBIRD makes newLAN's LAN one for BIRD.
var withBIRD = newRouterKind("BIRD", birdNSPrefix, birdBase, bird.Available, bird.RemoveLeftovers, bird.NewDir)

// startBIRD runs BIRD with config in the LAN's router namespace.
func startBIRD(t *testing.T, lan *netnstest.LAN, config string) birdView {
	t.Helper()
	r := startRouterOf(t, withBIRD, func(ctx context.Context, dir string) (*bird.Router, error) {
		return bird.Start(ctx, bird.Options{Namespace: lan.Namespace("router"), Dir: dir, Config: config})
	})
	return birdView{t: t, r: r}
}

// birdConfig is a router configuration for the tests: router ID, kernel
// protocols for both families (ECMP merged), protocol debugging to the
// log, and the given protocols.
func birdConfig(protocols ...string) string {
	return fmt.Sprintf(`router id %s;
debug protocols { states, events };
protocol device {}
protocol kernel kernel4 {
	ipv4 { export where source = RTS_BGP; };
	merge paths on;
}
protocol kernel kernel6 {
	ipv6 { export where source = RTS_BGP; };
	merge paths on;
}
%s
`, routerV4, strings.Join(protocols, "\n"))
}

// birdNode1 is a `protocol bgp node1` of the router (AS routerASN) for
// one neighbor, addr in AS asn, with lines (options, channels) inside.
func birdNode1(addr netip.Addr, asn uint32, lines ...string) string {
	return fmt.Sprintf("protocol bgp node1 {\n\tlocal as %d;\n\tneighbor %s as %d;\n\t%s\n}", routerASN, addr, asn, strings.Join(lines, "\n\t"))
}

// The channels of the routers' BGP protocols: import from the nodes,
// export nothing to them.
const (
	birdIPv4 = "ipv4 { import all; export none; };"
	birdIPv6 = "ipv6 { import all; export none; };"
)

// birdView is one test's queries of its BIRD.
type birdView struct {
	t *testing.T
	r *bird.Router
}

// neighbor returns BIRD's BGP protocol for a neighbor (the zero Protocol
// without one).
func (v birdView) neighbor(addr netip.Addr) bird.Protocol {
	v.t.Helper()
	p, _, err := v.r.BGPNeighbor(ctx(v.t), addr)
	if err != nil {
		v.t.Fatal(err)
	}
	return p
}

// session implements peerRouter.
func (v birdView) session(node netip.Addr) (bool, string) {
	p := v.neighbor(node)
	return p.BGPState() == "Established", fmt.Sprintf("BIRD %s %s %q %v", p.Name, p.BGPState(), p.Info, p.Attrs)
}

// routes returns BIRD's routes for a prefix.
func (v birdView) routes(p netip.Prefix) []bird.Route {
	v.t.Helper()
	rs, err := v.r.Routes(ctx(v.t), p)
	if err != nil {
		v.t.Fatal(err)
	}
	return rs
}

// routeCount implements peerRouter.
func (v birdView) routeCount(p netip.Prefix) (int, string) {
	rs := v.routes(p)
	return len(rs), fmt.Sprintf("%+v", rs)
}

// dump logs BIRD's raw replies to what the tests read, when
// HERALD_BIRD_DUMP is set (internal/bird's parser tests hold such
// replies).
func (v birdView) dump() {
	if os.Getenv("HERALD_BIRD_DUMP") == "" {
		return
	}
	for _, c := range [][]string{{"show", "protocols", "all"}, {"show", "route", "all"}, {"show", "bfd", "sessions"}} {
		out, _ := exec.Command(bird.Client, append([]string{"-v", "-s", v.r.Socket()}, c...)...).CombinedOutput()
		v.t.Logf("birdc %s:\n%s", strings.Join(c, " "), out)
	}
}

// waitRoutes waits until BIRD holds n routes for p and returns them.
func (v birdView) waitRoutes(p netip.Prefix, n int, timeout time.Duration) []bird.Route {
	v.t.Helper()
	var rs []bird.Route
	eventually(v.t, timeout, fmt.Sprintf("%d routes for %s in BIRD", n, p), func() (bool, string) {
		rs = v.routes(p)
		return len(rs) == n, fmt.Sprintf("%+v", rs)
	})
	return rs
}

// gateways returns a BIRD route's next hops.
func gateways(r bird.Route) []string {
	var out []string
	for _, h := range r.NextHops {
		out = append(out, h.Gateway.String())
	}
	slices.Sort(out)
	return out
}

// checkBIRDRoute compares a BIRD route's BGP attributes with the
// expected ones: next hop (BGP.next_hop's first address and the route's
// gateway), AS path, local preference (nil: not checked), communities and
// large communities (exactly these, in any order: the speaker's marks
// must not leave it).
func checkBIRDRoute(t *testing.T, what string, r bird.Route, nextHop netip.Addr, asPath string, lp *uint32, comms []bgp.Community, large []bgp.LargeCommunity) {
	t.Helper()
	if r.BGP == nil {
		t.Errorf("%s: route %+v without BGP attributes", what, r)
		return
	}
	if len(r.BGP.NextHop) == 0 || r.BGP.NextHop[0] != nextHop || !slices.Equal(gateways(r), []string{nextHop.String()}) {
		t.Errorf("%s: BGP.next_hop %v, gateways %v: want %s", what, r.BGP.NextHop, gateways(r), nextHop)
	}
	if r.BGP.ASPath != asPath {
		t.Errorf("%s: AS path %q, want %q", what, r.BGP.ASPath, asPath)
	}
	if lp != nil && (r.BGP.LocalPref == nil || *r.BGP.LocalPref != *lp) {
		t.Errorf("%s: local preference %v, want %d", what, r.BGP.LocalPref, *lp)
	}
	gotC := slices.Sorted(slices.Values(r.BGP.Communities))
	wantC := slices.Sorted(slices.Values(comms))
	if !slices.Equal(gotC, wantC) {
		t.Errorf("%s: communities %v, want %v (%s)", what, gotC, wantC, r.Attrs["BGP.community"])
	}
	gotL := slices.SortedFunc(slices.Values(r.BGP.LargeCommunities), community.CompareLarge)
	wantL := slices.SortedFunc(slices.Values(large), community.CompareLarge)
	if !slices.Equal(gotL, wantL) {
		t.Errorf("%s: large communities %v, want exactly %v (%s)", what, gotL, wantL, r.Attrs["BGP.large_community"])
	}
}

func TestBIRDEBGPIPv4(t *testing.T) {
	lan := newLAN(t, withBIRD)
	v := startBIRD(t, lan, birdConfig(birdNode1(node1V4, nodeASN, birdIPv4)))
	sp := startSpeaker(t, "node1", lan.Namespace("node1"), bgp.Config{
		RouterID: node1V4, ASN: nodeASN,
		// Long enough to see BIRD drop the route while the session is
		// still up.
		WithdrawGrace: 4 * time.Second,
	})
	sp.setPeers(nodePeer(routerV4, routerASN))
	vip := netip.MustParsePrefix("10.96.0.10/32")
	comms := mustCommunities(t, "65000:1", "no-export")
	large := mustLarge(t, "64512:7:8")
	sp.setRoutes(bgp.Route{Prefix: vip, Communities: comms, LargeCommunities: large})

	s := waitEstablished(t, sp, v, node1V4)
	p := v.neighbor(node1V4)
	if s.PeerASN != routerASN || s.LastError != "" || s.Since.IsZero() {
		t.Errorf("session %+v: want peer AS %d, no error, an uptime", s, routerASN)
	}
	if p.Name != "node1" || p.NeighborAS() != nodeASN || p.LocalAS() != routerASN || !strings.HasPrefix(p.Attrs["Session"], "external") ||
		p.Attrs["Hold timer"] == "" || !strings.HasSuffix(p.Attrs["Hold timer"], "/9") {
		t.Errorf("BIRD's protocol %s: %v: want an external session with AS %d and the node's 9 s hold time", p.Name, p.Attrs, nodeASN)
	}

	// In BIRD's table: the node's next hop (the route said none), the
	// node's AS, the communities as set; BIRD adds its default local
	// preference (100) to an eBGP route.
	r := v.waitRoutes(vip, 1, 10*time.Second)[0]
	hundred := uint32(100)
	checkBIRDRoute(t, "eBGP", r, node1V4, fmt.Sprint(nodeASN), &hundred, comms, large)
	if !r.Primary || r.Protocol != "node1" || r.Type != "BGP univ" || r.Dest != "unicast" {
		t.Errorf("route %+v: want BIRD's best route, from node1", r)
	}
	waitFIB(t, lan, vip, 10*time.Second, node1V4)
	eventually(t, 5*time.Second, "1 route advertised", func() (bool, string) {
		s := sp.session()
		return s.RoutesAdvertised == 1, fmt.Sprintf("%+v", s)
	})
	if c, ok := v.neighbor(node1V4).Channel("ipv4"); !ok || c.Imported != 1 {
		t.Errorf("BIRD's channel %+v: want 1 route imported", c)
	}

	// A new set of routes: the old one is withdrawn, the new one arrives.
	vip2 := netip.MustParsePrefix("10.96.0.11/32")
	sp.setRoutes(bgp.Route{Prefix: vip2})
	waitFIB(t, lan, vip, 10*time.Second)
	waitFIB(t, lan, vip2, 10*time.Second, node1V4)
	if rs := v.routes(vip); len(rs) != 0 {
		t.Errorf("withdrawn route still in BIRD: %+v", rs)
	}

	// Stop withdraws first: the route leaves BIRD while the session is
	// still established, then the session closes.
	checkStopWithdrawsFirst(t, lan, sp, v, node1V4, vip2)
	t.Logf("BIRD after Stop: %s %q", v.neighbor(node1V4).BGPState(), v.neighbor(node1V4).Info)
	v.dump()
}

// readmeBIRDConfig is the BIRD configuration of the README's BGP section,
// which TestBIRDReadmeConfigECMPAndBFD loads as it is.
func readmeBIRDConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/bird-router.conf")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README's BIRD configuration on the README's addresses: two nodes
// with BFD as in the README's BGPPeer, one ECMP route in the router's
// kernel; BFD takes a dead link's route out in about a second (the hold
// time is 9 s), and the node comes back.
func TestBIRDReadmeConfigECMPAndBFD(t *testing.T) {
	routerAddr := netip.MustParseAddr("192.168.10.1")
	n1, n2 := netip.MustParseAddr("192.168.10.215"), netip.MustParseAddr("192.168.10.216")
	lan := newLAN(t, withBIRD,
		netnstest.Host{Role: "router", Addrs: []string{"192.168.10.1/24"}},
		netnstest.Host{Role: "node1", Addrs: []string{"192.168.10.215/24"}},
		netnstest.Host{Role: "node2", Addrs: []string{"192.168.10.216/24"}},
	)
	v := startBIRD(t, lan, readmeBIRDConfig(t))
	vip := netip.MustParsePrefix("192.168.30.1/32")
	sps := map[netip.Addr]*speakerProc{}
	for _, n := range []struct {
		role string
		addr netip.Addr
	}{{"node1", n1}, {"node2", n2}} {
		sps[n.addr] = startBFDNode(t, lan, n.role, n.role, n.addr, routerAddr, vip)
	}
	for a, sp := range sps {
		waitEstablished(t, sp, v, a)
		if p := v.neighbor(a); !strings.HasPrefix(p.Name, "node") {
			t.Errorf("BIRD's protocol for %s: %s %v, want one spawned from nodes (dynamic name node)", a, p.Name, p.Attrs)
		}
	}

	// Two routes in BIRD's table, one kernel route over both nodes.
	rs := v.waitRoutes(vip, 2, 10*time.Second)
	var hops []string
	for _, r := range rs {
		hops = append(hops, gateways(r)...)
	}
	slices.Sort(hops)
	if !slices.Equal(hops, []string{n1.String(), n2.String()}) {
		t.Errorf("BIRD's routes go via %v, want both nodes: %+v", hops, rs)
	}
	waitFIB(t, lan, vip, 10*time.Second, n1, n2)

	waitBFDUp := func(what string, nodes ...netip.Addr) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() (bool, string) {
			bs, err := v.r.BFDSessions(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			ok := true
			var desc []string
			for _, a := range nodes {
				s := sps[a].session()
				birdUp := false
				for _, b := range bs {
					birdUp = birdUp || (b.Address == a && b.State == "Up")
				}
				ok = ok && s.BFD == bgp.BFDUp && birdUp
				desc = append(desc, fmt.Sprintf("%s: speaker %+v", a, s))
			}
			return ok, fmt.Sprintf("%s; BIRD %+v", strings.Join(desc, "; "), bs)
		})
	}
	waitBFDUp("BFD up on both nodes and in BIRD", n1, n2)
	bs, _ := v.r.BFDSessions(ctx(t))
	for _, b := range bs {
		if b.Interval != 300*time.Millisecond || b.Timeout != 900*time.Millisecond {
			t.Errorf("BIRD's BFD session %+v: want 300 ms × 3", b)
		}
	}

	// Node 1's link goes down: BFD takes its next hop out of the
	// router's kernel long before the 9 s hold time would.
	lan.IP("node1", "link", "set", "eth0", "down")
	down := time.Now()
	waitFIB(t, lan, vip, 3*time.Second, n2)
	t.Logf("node 1's next hop gone from the router's FIB %v after its link went down", time.Since(down).Round(10*time.Millisecond))
	eventually(t, 5*time.Second, "node 1's session down at BIRD", func() (bool, string) {
		p := v.neighbor(n1)
		return p.BGPState() != "Established", fmt.Sprintf("%s %s %q %v", p.Name, p.BGPState(), p.Info, p.Attrs)
	})
	eventually(t, 5*time.Second, "node 1's speaker session down", func() (bool, string) {
		s := sps[n1].session()
		return s.State != bgp.StateEstablished && strings.HasSuffix(s.LastError, "BFD is down"), fmt.Sprintf("%+v", s)
	})
	t.Logf("node 1 after its link went down: speaker %+v", sps[n1].session())

	// Back: the session, BFD and the ECMP route return.
	lan.IP("node1", "link", "set", "eth0", "up")
	waitEstablished(t, sps[n1], v, n1)
	waitBFDUp("BFD up again on node 1", n1, n2)
	waitFIB(t, lan, vip, 10*time.Second, n1, n2)
	v.dump()

	// A restarted agent: node 2's speaker stops (withdraws, closes the
	// session with a Cease) and a new one starts. BIRD takes it back at
	// once (a Cease puts no error wait on the neighbor), BFD included.
	sps[n2].must(request{Op: "stop"})
	waitFIB(t, lan, vip, 10*time.Second, n1)
	restarted := time.Now()
	sps[n2] = startBFDNode(t, lan, "node2-again", "node2", n2, routerAddr, vip)
	waitFIB(t, lan, vip, 10*time.Second, n1, n2)
	t.Logf("node 2's new speaker back in the router's FIB %v after it started", time.Since(restarted).Round(10*time.Millisecond))
	waitBFDUp("BFD up with node 2's new speaker", n1, n2)
}

func TestBIRDIBGPAttributes(t *testing.T) {
	lan := newLAN(t, withBIRD)
	// BIRD takes an iBGP neighbor for a multihop one, with next hops
	// resolved recursively in a table that has no connected routes
	// here: direct makes it a neighbor on the LAN, whose next hop is
	// used as it is.
	v := startBIRD(t, lan, birdConfig(birdNode1(node1V4, routerASN, "direct;", birdIPv4)))
	sp := startNode1(t, lan, routerASN, nodePeer(routerV4, routerASN))
	comms := mustCommunities(t, "65000:100", "no-export", "65000:7")
	large := mustLarge(t, "64512:1:2", "64512:3:4")
	lp := uint32(250)
	vip := netip.MustParsePrefix("10.96.0.30/32")
	sp.setRoutes(bgp.Route{Prefix: vip, Communities: comms, LargeCommunities: large, LocalPref: &lp})

	waitEstablished(t, sp, v, node1V4)
	if p := v.neighbor(node1V4); !strings.HasPrefix(p.Attrs["Session"], "internal") {
		t.Errorf("BIRD's session %q, want internal", p.Attrs["Session"])
	}
	r := v.waitRoutes(vip, 1, 10*time.Second)[0]
	checkBIRDRoute(t, "iBGP", r, node1V4, "", &lp, comms, large)
	v.dump()
	waitFIB(t, lan, vip, 10*time.Second, node1V4)

	// A new local preference and communities replace the path.
	lp2 := uint32(90)
	comms2 := mustCommunities(t, "65000:8")
	sp.setRoutes(bgp.Route{Prefix: vip, Communities: comms2, LargeCommunities: large, LocalPref: &lp2})
	eventually(t, 10*time.Second, "new local preference in BIRD", func() (bool, string) {
		rs := v.routes(vip)
		return len(rs) == 1 && rs[0].BGP != nil && rs[0].BGP.LocalPref != nil && *rs[0].BGP.LocalPref == lp2, fmt.Sprintf("%+v", rs)
	})
	checkBIRDRoute(t, "iBGP after the change", v.routes(vip)[0], node1V4, "", &lp2, comms2, large)

	// No local-pref: GoBGP's default, 100.
	sp.setRoutes(bgp.Route{Prefix: vip, Communities: comms2})
	hundred := uint32(100)
	eventually(t, 10*time.Second, "default local preference in BIRD", func() (bool, string) {
		rs := v.routes(vip)
		return len(rs) == 1 && rs[0].BGP != nil && rs[0].BGP.LocalPref != nil && *rs[0].BGP.LocalPref == hundred, fmt.Sprintf("%+v", rs)
	})
	checkBIRDRoute(t, "iBGP without local-pref", v.routes(vip)[0], node1V4, "", &hundred, comms2, nil)
}

func TestBIRDIPv6OverIPv6Session(t *testing.T) {
	lan := newLAN(t, withBIRD)
	v := startBIRD(t, lan, birdConfig(birdNode1(node1V6, nodeASN, birdIPv4, birdIPv6)))
	sp := startNode1(t, lan, nodeASN, nodePeer(routerV6, routerASN))
	vip := netip.MustParsePrefix("fd00:96::10/128")
	// An IPv4 route is not sent over the IPv6 session, though BIRD
	// offers the IPv4 family on it too.
	vip4 := netip.MustParsePrefix("10.96.0.40/32")
	sp.setRoutes(bgp.Route{Prefix: vip}, bgp.Route{Prefix: vip4})
	waitEstablished(t, sp, v, node1V6)

	r := v.waitRoutes(vip, 1, 10*time.Second)[0]
	if r.Table != "master6" || r.BGP == nil || len(r.BGP.NextHop) == 0 || r.BGP.NextHop[0] != node1V6 || r.BGP.ASPath != fmt.Sprint(nodeASN) {
		t.Errorf("route %+v %+v: want BGP.next_hop %s (global), AS path %d, in master6", r, r.BGP, node1V6, nodeASN)
	}
	t.Logf("BIRD's IPv6 route: BGP.next_hop %v, gateways %v", r.BGP.NextHop, gateways(r))
	v.dump()
	waitFIB(t, lan, vip, 10*time.Second, r.NextHops[0].Gateway)
	if g := r.NextHops[0].Gateway; g != node1V6 {
		t.Errorf("BIRD routes %s via %s, want the node's global address %s", vip, g, node1V6)
	}
	checkIPv6Only(t, lan, sp, v, vip, vip4)
}

func TestBIRDPasswordAndASNErrors(t *testing.T) {
	lan := newLAN(t, withBIRD)
	// A neighbor range with a password: BIRD keys the whole range. The
	// short error wait lets the node back in quickly after the refused
	// ASNs below (BIRD's default: 60 s).
	v := startBIRD(t, lan, birdConfig(fmt.Sprintf(`protocol bgp nodes {
	local as %d;
	neighbor range 192.168.30.0/24 as %d;
	password "s3cret-Key";
	error wait time 1, 30;
	ipv4 { import all; export none; };
}`, routerASN, nodeASN)))
	sp := startNode1(t, lan, nodeASN)
	vip := netip.MustParsePrefix("10.96.0.50/32")
	sp.setRoutes(bgp.Route{Prefix: vip})

	// The right password: established, the route arrives; a wrong one:
	// no session, and the speaker says why.
	good := checkPassword(t, lan, sp, v, vip)
	v.dump()

	// No password at all: the same.
	none := good
	none.Password = ""
	sp.setPeers(none)
	waitConnectFailure(t, sp, "connection failure without a password reported")

	// Right again: established, the route is back.
	reestablish(t, lan, sp, v, good, vip)

	// The right password and a wrong peer ASN: the speaker refuses
	// BIRD's OPEN with a NOTIFICATION and says so; BIRD too.
	wrongASN := good
	wrongASN.PeerASN = 65099
	sp.setPeers(wrongASN)
	eventually(t, 20*time.Second, "bad peer AS reported", func() (bool, string) {
		s := sp.session()
		p := v.neighbor(node1V4)
		return s.State != bgp.StateEstablished && strings.Contains(s.LastError, "bad peer as") &&
			p.BGPState() != "Established", fmt.Sprintf("speaker %+v, BIRD %s %q %v", s, p.BGPState(), p.Info, p.Attrs)
	})
	waitFIB(t, lan, vip, 10*time.Second)
	t.Logf("wrong peer ASN: speaker %q, BIRD %q", sp.session().LastError, v.neighbor(node1V4).LastError())

	// BIRD expects another AS than the node's: BIRD refuses the OPEN with
	// a NOTIFICATION, which GoBGP v4.8.0 reports as "invalid-msg" (see
	// TestPasswordAndASNErrors); BIRD names the cause.
	wrongLocal := good
	wrongLocal.LocalASN = 65098
	sp.setPeers(wrongLocal)
	eventually(t, 20*time.Second, "refusal by BIRD reported", func() (bool, string) {
		s := sp.session()
		p := v.neighbor(node1V4)
		return s.State != bgp.StateEstablished && s.LocalASN == 65098 && s.LastError == "invalid-msg" &&
			strings.Contains(p.LastError(), "Bad peer AS"), fmt.Sprintf("speaker %+v, BIRD %s %q %v", s, p.BGPState(), p.Info, p.Attrs)
	})
	t.Logf("BIRD expects another AS: speaker %q, BIRD %q", sp.session().LastError, v.neighbor(node1V4).LastError())

	// Fixed: back within BIRD's error wait and the speaker's retry.
	reestablish(t, lan, sp, v, good, vip)
}

// BFD turned off on both sides of an established session with BFD up.
func TestBIRDBFDTurnedOff(t *testing.T) {
	lan := newLAN(t, withBIRD)
	conf := func(bfd string) string {
		return birdConfig(`protocol bfd {
	interface "*" { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; };
}
` + birdNode1(node1V4, nodeASN, "bfd "+bfd+";", birdIPv4))
	}
	v := startBIRD(t, lan, conf("on"))
	vip := netip.MustParsePrefix("10.96.0.70/32")
	sp := startBFDNode(t, lan, "node1", "node1", node1V4, routerV4, vip)
	waitEstablished(t, sp, v, node1V4)
	eventually(t, 20*time.Second, "BFD up", func() (bool, string) {
		s := sp.session()
		bs, err := v.r.BFDSessions(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		return s.BFD == bgp.BFDUp && len(bs) == 1 && bs[0].State == "Up", fmt.Sprintf("speaker %+v, BIRD %+v", s, bs)
	})
	before := sp.session()

	// BIRD first, then the speaker, as an operator would. Unlike FRR,
	// whose AdminDown GoBGP v4.8.0 takes for a failure (TestBFDWithFRR),
	// BIRD drops its BFD session silently, and the BGP session stays up
	// for longer than a detection time (0.9 s).
	if err := v.r.Reconfigure(ctx(t), conf("off")); err != nil {
		t.Fatal(err)
	}
	sp.setPeers(nodePeer(routerV4, routerASN)) // without BFD
	for range 6 {
		time.Sleep(500 * time.Millisecond)
		s, p := sp.session(), v.neighbor(node1V4)
		if s.State != bgp.StateEstablished || !s.Since.Equal(before.Since) || s.BFD != bgp.BFDDisabled || p.BGPState() != "Established" {
			t.Fatalf("after BFD was turned off: speaker %+v (before %+v), BIRD %s %q: want the same established session without BFD", s, before, p.BGPState(), p.Info)
		}
	}
	if bs, err := v.r.BFDSessions(ctx(t)); err != nil || len(bs) != 0 {
		t.Errorf("BIRD's BFD sessions after BFD was turned off: %+v, %v", bs, err)
	}
	waitFIB(t, lan, vip, time.Second, node1V4)
}
