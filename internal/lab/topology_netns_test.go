package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testrequire"
)

// TestTopologyRemoveAndRecreateNode builds a lab network (with the
// router) in real namespaces, cuts a node off as herald-lab crash-node
// does and builds it again as boot-node does: while it is removed the
// switch has no port for it and nothing on the LAN reaches its address;
// afterwards it has its addresses, link and default route back.
func TestTopologyRemoveAndRecreateNode(t *testing.T) {
	testrequire.Root(t, "network namespaces")
	topo, err := NewTopology("hltopo-", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	topo.AddRouter()
	t.Cleanup(func() {
		if err := labnet.RemoveNamespaces(topo.Prefix); err != nil {
			t.Error(err)
		}
	})
	if err := topo.Create(); err != nil {
		t.Fatal(err)
	}
	node1 := topo.Nodes[1]
	// reach connects from the client to a listener on node1 (no ping
	// here: iputils is not among the lab's packages).
	addr := node1.IPv4.String() + ":7000"
	reach := func() error {
		ln, err := labnet.Listen(node1.NetNS, "tcp", addr)
		if err != nil {
			return err
		}
		defer ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := labnet.Dialer(topo.Client.NetNS)(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if err := reach(); err != nil {
		t.Fatalf("the client cannot reach node1 on a fresh lab: %v", err)
	}

	if err := topo.RemoveNode("node1"); err != nil {
		t.Fatal(err)
	}
	if out, err := labnet.IP("-n", topo.Switch, "link", "show", "node1"); err == nil {
		t.Errorf("the switch still has node1's port: %s", out)
	}
	if out, err := labnet.IP("-n", node1.NetNS, "link", "show", "eth0"); err == nil {
		t.Errorf("node1 still has eth0: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := labnet.Dialer(topo.Client.NetNS)(ctx, "tcp", addr); err == nil {
		c.Close()
		t.Error("the client reaches node1's address after RemoveNode")
	}
	if _, err := labnet.IP("netns", "delete", node1.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := topo.RemoveNode("node9"); err == nil {
		t.Error("RemoveNode of a node that is not in the lab succeeded")
	}

	if err := topo.RecreateNode("node1"); err != nil {
		t.Fatal(err)
	}
	if err := reach(); err != nil {
		t.Errorf("the client cannot reach node1 after RecreateNode: %v", err)
	}
	if out, err := labnet.IP("-n", node1.NetNS, "link", "show", "eth0"); err != nil || !strings.Contains(out, "link/ether 02:00:c0:a8:0a:d8 ") {
		t.Errorf("node1's eth0 after RecreateNode has not its old MAC 02:00:c0:a8:0a:d8: %s %v", out, err)
	}
	out, err := labnet.IP("-n", node1.NetNS, "route", "show", "default")
	if err != nil || !strings.Contains(out, "via "+topo.Router.IPv4.String()) {
		t.Errorf("node1's default route after RecreateNode: %q %v", out, err)
	}
	if err := topo.RecreateNode("node1"); err == nil {
		t.Error("RecreateNode of a node that exists succeeded")
	}
}
