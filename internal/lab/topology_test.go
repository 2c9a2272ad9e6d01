package lab

import (
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
