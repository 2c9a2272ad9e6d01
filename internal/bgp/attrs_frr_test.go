package bgp_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp"
	"github.com/herald-lb/herald/internal/frr"
)

// One node, one router, two sessions: iBGP from the node's address and
// eBGP (the node's peer-specific local AS) from a second address of the
// node to a second address of the router. One /32 goes to both with
// different attributes; each session's path at the router carries exactly
// its own, and changing one peer's attributes leaves the other's path as
// it was: GoBGP sends it again (export.go), and the router, which logs
// its UPDATEs here, ignores it as a duplicate.
func TestPerPeerAttributesIBGPAndEBGP(t *testing.T) {
	lan := newLAN(t, withFRR)
	routerV4b := netip.MustParseAddr("192.168.30.2")
	node1V4b := netip.MustParseAddr("192.168.30.21")
	lan.IP("router", "addr", "add", routerV4b.String()+"/24", "dev", "eth0")
	lan.IP("node1", "addr", "add", node1V4b.String()+"/24", "dev", "eth0")
	rv := startRouter(t, lan, "log stdout debugging\ndebug bgp updates in\n"+
		neighborsConfig("ipv4", neighbor{addr: node1V4, asn: routerASN}, neighbor{addr: node1V4b, asn: nodeASN}), false)
	ibgpPeer := nodePeer(routerV4, routerASN)
	ibgpPeer.LocalAddress = node1V4
	ebgpPeer := nodePeer(routerV4b, routerASN)
	ebgpPeer.LocalASN = nodeASN
	ebgpPeer.LocalAddress = node1V4b
	sp := startNode1(t, lan, routerASN, ibgpPeer, ebgpPeer)

	vip := netip.MustParsePrefix("10.96.0.50/32")
	// A third-party next hop on the LAN for the eBGP peer.
	thirdParty := netip.MustParseAddr("192.168.30.12")
	lp := uint32(250)
	toIBGP := bgp.Route{Prefix: vip, Communities: mustCommunities(t, "65000:1"), LargeCommunities: mustLarge(t, "64512:1:1"),
		LocalPref: &lp, Peers: []netip.Addr{routerV4}}
	toEBGP := bgp.Route{Prefix: vip, Communities: mustCommunities(t, "65000:2", "no-export"), LargeCommunities: mustLarge(t, "64512:2:2"),
		NextHop: thirdParty, Peers: []netip.Addr{routerV4b}}
	// The same /32 to both with one set of attributes for each: the
	// overlap is refused.
	if resp := sp.call(request{Op: "routes", Routes: []bgp.Route{toIBGP, toEBGP, {Prefix: vip, Peers: []netip.Addr{routerV4}}}}); resp.Err == "" {
		t.Error("overlapping peers with different attributes accepted")
	}
	sp.setRoutes(toIBGP, toEBGP)

	eventually(t, 30*time.Second, "both sessions established", func() (bool, string) {
		ss := sp.sessions()
		a, b := rv.neighbor(node1V4), rv.neighbor(node1V4b)
		return len(ss) == 2 && ss[0].State == bgp.StateEstablished && ss[1].State == bgp.StateEstablished &&
			a.State == "Established" && b.State == "Established", fmt.Sprintf("speaker %+v, router %+v %+v", ss, a, b)
	})
	ibgpPath, ebgpPath := waitPaths(t, rv, vip, node1V4, node1V4b, func(i, e frr.Path) bool { return true })
	checkPath(t, "iBGP", ibgpPath, node1V4.String(), "Local", &lp, "65000:1", "64512:1:1")
	checkPath(t, "eBGP", ebgpPath, thirdParty.String(), fmt.Sprint(nodeASN), nil, "65000:2 no-export", "64512:2:2")

	// The eBGP peer's communities change; the iBGP path stays as it was.
	unchanged := watchUnchanged(t, rv, node1V4, vip)
	toEBGP.Communities = mustCommunities(t, "65000:3")
	sp.setRoutes(toIBGP, toEBGP)
	ibgpPath2, ebgpPath2 := waitPaths(t, rv, vip, node1V4, node1V4b, func(i, e frr.Path) bool {
		return e.Community != nil && e.Community.String == "65000:3"
	})
	checkPath(t, "eBGP after its change", ebgpPath2, thirdParty.String(), fmt.Sprint(nodeASN), nil, "65000:3", "64512:2:2")
	checkPath(t, "iBGP after the eBGP change", ibgpPath2, node1V4.String(), "Local", &lp, "65000:1", "64512:1:1")
	unchanged()

	// The iBGP peer's local-pref changes; the eBGP path stays.
	unchanged = watchUnchanged(t, rv, node1V4b, vip)
	lp2 := uint32(90)
	toIBGP.LocalPref = &lp2
	sp.setRoutes(toIBGP, toEBGP)
	ibgpPath3, ebgpPath3 := waitPaths(t, rv, vip, node1V4, node1V4b, func(i, e frr.Path) bool {
		return i.LocalPref != nil && *i.LocalPref == lp2
	})
	checkPath(t, "iBGP after its change", ibgpPath3, node1V4.String(), "Local", &lp2, "65000:1", "64512:1:1")
	checkPath(t, "eBGP after the iBGP change", ebgpPath3, thirdParty.String(), fmt.Sprint(nodeASN), nil, "65000:3", "64512:2:2")
	unchanged()

	// No local-pref for the iBGP peer: GoBGP's default, 100.
	toIBGP.LocalPref = nil
	sp.setRoutes(toIBGP, toEBGP)
	hundred := uint32(100)
	ibgpPath4, _ := waitPaths(t, rv, vip, node1V4, node1V4b, func(i, e frr.Path) bool {
		return i.LocalPref != nil && *i.LocalPref == hundred
	})
	checkPath(t, "iBGP without local-pref", ibgpPath4, node1V4.String(), "Local", &hundred, "65000:1", "64512:1:1")

	// The eBGP peer loses the route: withdrawn there only. Then both get
	// one set of attributes (one route for both peers).
	unchanged = watchUnchanged(t, rv, node1V4, vip)
	sp.setRoutes(toIBGP)
	eventually(t, 10*time.Second, "eBGP path withdrawn", func() (bool, string) {
		ps := rv.paths(vip)
		return len(ps) == 1 && ps[0].Peer.PeerID == node1V4.String(), fmt.Sprintf("%+v", ps)
	})
	checkPath(t, "iBGP after the eBGP withdrawal", rv.paths(vip)[0], node1V4.String(), "Local", &hundred, "65000:1", "64512:1:1")
	unchanged()
	both := toIBGP
	both.Peers = []netip.Addr{routerV4, routerV4b}
	sp.setRoutes(both)
	i5, e5 := waitPaths(t, rv, vip, node1V4, node1V4b, func(i, e frr.Path) bool { return true })
	checkPath(t, "iBGP, one route for both", i5, node1V4.String(), "Local", &hundred, "65000:1", "64512:1:1")
	checkPath(t, "eBGP, one route for both", e5, node1V4b.String(), fmt.Sprint(nodeASN), nil, "65000:1", "64512:1:1")
	// The iBGP path wins (equal LOCAL_PREF, shorter AS path).
	waitFIB(t, lan, vip, 10*time.Second, node1V4)
}

// watchUnchanged notes the UPDATEs a neighbor has sent the router so far;
// the function it returns then checks that every UPDATE for p since (if
// any: GoBGP sends the replaced path to each of its peers) changed nothing
// at the router, which logs such an UPDATE as a duplicate.
func watchUnchanged(t *testing.T, rv routerView, neighbor netip.Addr, p netip.Prefix) func() {
	t.Helper()
	updates := rv.neighbor(neighbor).MessageStats.UpdatesRecv
	logLen := len(rv.r.Logs())
	received := regexp.MustCompile(regexp.QuoteMeta(neighbor.String()) + `\S* rcvd ` + regexp.QuoteMeta(p.String()) + ` .*`)
	return func() {
		t.Helper()
		// The UPDATE for the other peer arrived; one for this neighbor
		// would be sent at the same time.
		time.Sleep(500 * time.Millisecond)
		n := rv.neighbor(neighbor).MessageStats.UpdatesRecv - updates
		var lines []string
		for _, l := range received.FindAllString(rv.r.Logs()[logLen:], -1) {
			lines = append(lines, l)
			if !strings.HasSuffix(l, "duplicate ignored") {
				t.Errorf("the router changed the path of %s for %s: %s", neighbor, p, l)
			}
		}
		if uint64(len(lines)) != n {
			t.Errorf("%d UPDATEs from %s, the router's log has %d lines for %s: %q", n, neighbor, len(lines), p, lines)
		}
		t.Logf("%s sent %d UPDATEs of its unchanged %s, the router ignored them as duplicates", neighbor, n, p)
	}
}

// waitPaths waits until the router has the prefix from both neighbors
// and ok holds, and returns the two paths.
func waitPaths(t *testing.T, rv routerView, p netip.Prefix, ibgp, ebgp netip.Addr, ok func(i, e frr.Path) bool) (frr.Path, frr.Path) {
	t.Helper()
	var i, e frr.Path
	eventually(t, 10*time.Second, "paths from both sessions", func() (bool, string) {
		ps := rv.paths(p)
		var gotI, gotE bool
		for _, x := range ps {
			switch x.Peer.PeerID {
			case ibgp.String():
				i, gotI = x, true
			case ebgp.String():
				e, gotE = x, true
			}
		}
		return gotI && gotE && ok(i, e), fmt.Sprintf("%+v", ps)
	})
	return i, e
}

// checkPath compares a path's attributes with the expected ones
// (communities compared as sets; no large communities but those given:
// the speaker's marks must not leave it).
func checkPath(t *testing.T, what string, p frr.Path, nextHop, asPath string, lp *uint32, comms, large string) {
	t.Helper()
	if len(p.Nexthops) == 0 || p.Nexthops[0].IP != nextHop || p.ASPath.String != asPath {
		t.Errorf("%s path %+v: want next hop %s, AS path %q", what, p, nextHop, asPath)
	}
	switch {
	case lp == nil && p.LocalPref != nil:
		t.Errorf("%s path has LOCAL_PREF %d, want none", what, *p.LocalPref)
	case lp != nil && (p.LocalPref == nil || *p.LocalPref != *lp):
		t.Errorf("%s path has LOCAL_PREF %v, want %d", what, p.LocalPref, *lp)
	}
	if p.Community == nil || !sameWords(p.Community.String, comms) {
		t.Errorf("%s path has communities %+v, want %s", what, p.Community, comms)
	}
	if p.LargeCommunity == nil || !sameWords(p.LargeCommunity.String, large) {
		t.Errorf("%s path has large communities %+v, want exactly %s", what, p.LargeCommunity, large)
	}
}
