package lab

import (
	"strings"
	"testing"
)

func TestNewTopology(t *testing.T) {
	topo, err := NewTopology("hl-", 3, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, netns, v4, v6 string }{
		{"cp1", "hl-cp1", "192.168.10.215", "fd00:10::215"},
		{"node1", "hl-node1", "192.168.10.216", "fd00:10::216"},
		{"node2", "hl-node2", "192.168.10.217", "fd00:10::217"},
		{"client", "hl-client", "192.168.10.10", "fd00:10::10"},
	}
	hosts := topo.Hosts()
	if len(hosts) != len(want) || topo.Switch != "hl-lan" {
		t.Fatalf("hosts %+v switch %s", hosts, topo.Switch)
	}
	for i, w := range want {
		h := hosts[i]
		if h.Name != w.name || h.NetNS != w.netns || h.IPv4.String() != w.v4 || h.IPv6.String() != w.v6 {
			t.Errorf("host %d = %s %s %s %s, want %+v", i, h.Name, h.NetNS, h.IPv4, h.IPv6, w)
		}
	}
	if h, ok := topo.Node("node1"); !ok || h.IPv4.String() != "192.168.10.216" {
		t.Errorf("Node(node1) = %+v %v", h, ok)
	}
	if _, ok := topo.Node("node9"); ok {
		t.Error("Node(node9) found a host that does not exist")
	}
	v4only, _ := NewTopology("x-", 1, false)
	if len(v4only.Nodes) != 1 || v4only.Nodes[0].IPv6.IsValid() {
		t.Errorf("IPv4-only lab: %+v", v4only.Nodes)
	}
	for _, n := range []int{0, -1, 31} {
		if _, err := NewTopology("x-", n, false); err == nil {
			t.Errorf("%d nodes accepted", n)
		}
	}
}

func TestAddrIn(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "192.168.10.0"}, {215, "192.168.10.215"}, {255, "192.168.10.255"}, {256, "192.168.11.0"}} {
		if got := addrIn(lanV4(), tc.n).String(); got != tc.want {
			t.Errorf("addrIn(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

func TestAddRouter(t *testing.T) {
	topo, err := NewTopology("hl-", 2, true)
	if err != nil {
		t.Fatal(err)
	}
	if topo.Router != nil || topo.Far != nil || len(topo.routerSteps()) != 0 {
		t.Fatal("a lab without --bgp has a router")
	}
	topo.AddRouter()
	r, ok := topo.Node("router")
	if !ok || r.NetNS != "hl-router" || r.IPv4.String() != "192.168.10.1" || r.IPv6.String() != "fd00:10::1" {
		t.Errorf("router %+v %v", r, ok)
	}
	f, ok := topo.Node("far")
	if !ok || f.NetNS != "hl-far" || f.IPv4.String() != "192.168.20.10" || f.IPv6.String() != "fd00:20::10" {
		t.Errorf("far client %+v %v", f, ok)
	}
	hosts := topo.Hosts()
	if len(hosts) != 4 || hosts[3].Name != "router" {
		t.Errorf("LAN hosts %+v: want the nodes, the client and the router (not the far client)", hosts)
	}
	v4, v6 := topo.RouterUplink()
	if v4.String() != "192.168.20.1/24" || v6.String() != "fd00:20::1/64" {
		t.Errorf("uplink %s %s", v4, v6)
	}
	var gateways int
	for _, s := range topo.routerSteps() {
		if len(s) > 3 && s[len(s)-2] == "via" && (s[len(s)-1] == "192.168.10.1" || s[len(s)-1] == "fd00:10::1") {
			gateways++
		}
	}
	if gateways != 4 {
		t.Errorf("%d default routes via the router, want one per node and family (4)", gateways)
	}
	c, ok := topo.Node("core")
	if !ok || c.NetNS != "hl-core" || c.IPv4.String() != "192.168.21.2" || c.IPv6.IsValid() {
		t.Errorf("core router %+v %v: want 192.168.21.2, IPv4 only", c, ok)
	}
	if got := topo.RouterCoreLink().String(); got != "192.168.21.1/24" {
		t.Errorf("router's core link %s", got)
	}
	// The core's only route off its subnet is to the LAN, via the router:
	// no default route, so load-balancer addresses are reached only by
	// what BIRD learns.
	var coreRoutes []string
	for _, s := range topo.routerSteps() {
		if len(s) > 3 && s[1] == "hl-core" && s[2] == "route" {
			coreRoutes = append(coreRoutes, strings.Join(s[3:], " "))
		}
	}
	if len(coreRoutes) != 1 || coreRoutes[0] != "add 192.168.10.0/24 via 192.168.21.1" {
		t.Errorf("core routes %q", coreRoutes)
	}
	v4only, _ := NewTopology("x-", 1, false)
	v4only.AddRouter()
	if v4only.Router.IPv6.IsValid() || v4only.Far.IPv6.IsValid() {
		t.Errorf("IPv4-only lab with IPv6 router addresses: %+v %+v", v4only.Router, v4only.Far)
	}
	if _, v6 := v4only.RouterUplink(); v6.IsValid() {
		t.Errorf("IPv4-only uplink %s", v6)
	}
}
