package bgp_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp"
)

// nodePeer is a node's peer configuration for the router, with timers
// short enough for tests.
func nodePeer(router netip.Addr, peerASN uint32) bgp.Peer {
	return bgp.Peer{
		Address:       router,
		PeerASN:       peerASN,
		HoldTime:      9 * time.Second,
		KeepaliveTime: 3 * time.Second,
		ConnectRetry:  3 * time.Second,
	}
}

// waitEstablished waits until both the router and the speaker see the
// session up.
func waitEstablished(t *testing.T, sp *speakerProc, r routerView, node netip.Addr) bgp.Session {
	t.Helper()
	var s bgp.Session
	eventually(t, 30*time.Second, "session "+sp.name+" established", func() (bool, string) {
		s = sp.session()
		n := r.neighbor(node)
		return s.State == bgp.StateEstablished && n.State == "Established",
			fmt.Sprintf("speaker %+v, router %+v", s, n)
	})
	return s
}

func TestEBGPIPv4AdvertiseWithdrawStop(t *testing.T) {
	lan := newLAN(t)
	r := startRouter(t, lan, routerConfig(
		fmt.Sprintf("neighbor %s remote-as %d", node1V4, nodeASN),
		"address-family ipv4 unicast",
		fmt.Sprintf(" neighbor %s activate", node1V4),
		"exit-address-family",
	), false)
	rv := routerView{t: t, r: r}

	sp := startSpeaker(t, "node1", lan.Namespace("node1"), bgp.Config{
		RouterID: node1V4, ASN: nodeASN,
		// Long enough to see the router drop the route while the
		// session is still up.
		WithdrawGrace: 4 * time.Second,
	})
	sp.setPeers(nodePeer(routerV4, routerASN))
	vip := netip.MustParsePrefix("10.96.0.10/32")
	lp := uint32(300)
	sp.setRoutes(bgp.Route{Prefix: vip, LocalPref: &lp})

	s := waitEstablished(t, sp, rv, node1V4)
	if s.PeerASN != routerASN || s.LastError != "" || s.Since.IsZero() || s.BFD != bgp.BFDDisabled {
		t.Errorf("session %+v: want peer AS %d, no error, an uptime, no BFD", s, routerASN)
	}

	// In the router's BGP table: next hop = the node's address on the
	// LAN (the route said none), AS path = the node's AS, and no
	// LOCAL_PREF over eBGP.
	eventually(t, 10*time.Second, "route in the router's BGP table", func() (bool, string) {
		ps := rv.paths(vip)
		return len(ps) == 1, fmt.Sprintf("%+v", ps)
	})
	p := rv.paths(vip)[0]
	if len(p.Nexthops) == 0 || p.Nexthops[0].IP != node1V4.String() || p.ASPath.String != fmt.Sprint(nodeASN) {
		t.Errorf("path %+v: want next hop %s, AS path %d", p, node1V4, nodeASN)
	}
	if p.LocalPref != nil {
		t.Errorf("eBGP path carries LOCAL_PREF %d", *p.LocalPref)
	}
	if p.LargeCommunity != nil {
		t.Errorf("path carries large communities %q: the speaker's export marks must not leave it", p.LargeCommunity.String)
	}
	waitFIB(t, lan, vip, 10*time.Second, node1V4)
	eventually(t, 5*time.Second, "1 route advertised", func() (bool, string) {
		s := sp.session()
		return s.RoutesAdvertised == 1, fmt.Sprintf("%+v", s)
	})

	// SetRoutes without the prefix withdraws it; the new one arrives.
	vip2 := netip.MustParsePrefix("10.96.0.11/32")
	sp.setRoutes(bgp.Route{Prefix: vip2})
	waitFIB(t, lan, vip, 10*time.Second)
	waitFIB(t, lan, vip2, 10*time.Second, node1V4)

	// Stop withdraws first: the route leaves the router's table while
	// the session is still established (WithdrawGrace is 4 s), and only
	// then the session closes.
	sp.must(request{Op: "stop-async"})
	eventually(t, 3*time.Second, "route withdrawn by Stop", func() (bool, string) {
		ps := rv.paths(vip2)
		return len(ps) == 0, fmt.Sprintf("%+v", ps)
	})
	if n := rv.neighbor(node1V4); n.State != "Established" {
		t.Errorf("router's session went %s before the withdrawal was seen: Stop must withdraw first", n.State)
	}
	waitFIB(t, lan, vip2, 5*time.Second)
	sp.must(request{Op: "stop-wait"})
	eventually(t, 5*time.Second, "session closed by Stop", func() (bool, string) {
		n := rv.neighbor(node1V4)
		return n.State != "Established", fmt.Sprintf("%+v", n)
	})
}
