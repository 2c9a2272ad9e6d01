package kubelet

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/herald-lb/herald/internal/lab/labnet"
)

// nodeNetwork is a node's Pod network, like a bridge CNI plugin with
// host-gateway routes: a cni0 bridge holding the podCIDR's first address,
// a veth per Pod, and a route per other node's podCIDR via that node.
type nodeNetwork struct {
	netns     string
	iface     string
	podPrefix string
	log       *slog.Logger

	mu      sync.Mutex
	cidr    netip.Prefix
	gateway netip.Addr
	used    map[netip.Addr]bool
	routes  map[netip.Prefix]netip.Addr
}

// setUp creates the bridge with the podCIDR's gateway address and turns on
// forwarding in the node's namespace.
func (n *nodeNetwork) setUp(cidr netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !cidr.Addr().Is4() {
		return fmt.Errorf("podCIDR %s: the lab's Pod network is IPv4", cidr)
	}
	cidr = cidr.Masked()
	gw := cidr.Addr().Next()
	_, _ = labnet.IP("-n", n.netns, "link", "del", bridgeName)
	for _, args := range [][]string{
		{"-n", n.netns, "link", "add", bridgeName, "type", "bridge"},
		{"-n", n.netns, "addr", "add", netip.PrefixFrom(gw, cidr.Bits()).String(), "dev", bridgeName},
		{"-n", n.netns, "link", "set", bridgeName, "up"},
	} {
		if _, err := labnet.IP(args...); err != nil {
			return fmt.Errorf("pod bridge: %w", err)
		}
	}
	if _, err := labnet.IP("netns", "exec", n.netns, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	n.cidr, n.gateway = cidr, gw
	n.used = map[netip.Addr]bool{gw: true}
	n.routes = map[netip.Prefix]netip.Addr{}
	n.log.Info("kubelet: pod network ready", "podCIDR", cidr, "gateway", gw)
	return nil
}

// syncRoutes makes the node's routes to other podCIDRs equal want.
func (n *nodeNetwork) syncRoutes(want map[netip.Prefix]netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.routes == nil {
		// Not set up yet: routes come with the first sync after setUp.
		n.routes = map[netip.Prefix]netip.Addr{}
	}
	var errs []error
	for prefix, via := range want {
		if n.routes[prefix] == via {
			continue
		}
		if _, err := labnet.IP("-n", n.netns, "route", "replace", prefix.String(), "via", via.String(), "dev", n.iface); err != nil {
			errs = append(errs, err)
			continue
		}
		n.routes[prefix] = via
	}
	for prefix := range n.routes {
		if _, ok := want[prefix]; !ok {
			_, _ = labnet.IP("-n", n.netns, "route", "del", prefix.String())
			delete(n.routes, prefix)
		}
	}
	return errors.Join(errs...)
}

// podNetwork is one Pod's namespace and address.
type podNetwork struct {
	netns string
	addr  netip.Addr
	veth  string
}

// addPod creates a namespace for the Pod with id (a short unique string),
// with eth0 on the node's bridge and a default route via the gateway.
func (n *nodeNetwork) addPod(id string) (*podNetwork, error) {
	n.mu.Lock()
	if !n.cidr.IsValid() {
		n.mu.Unlock()
		return nil, fmt.Errorf("the node has no podCIDR yet")
	}
	var addr netip.Addr
	for a := n.gateway.Next(); n.cidr.Contains(a); a = a.Next() {
		if !n.used[a] && n.cidr.Contains(a.Next()) { // not the broadcast address
			addr = a
			break
		}
	}
	if !addr.IsValid() {
		n.mu.Unlock()
		return nil, fmt.Errorf("podCIDR %s is full", n.cidr)
	}
	n.used[addr] = true
	bits, gw := n.cidr.Bits(), n.gateway
	n.mu.Unlock()

	p := &podNetwork{netns: n.podPrefix + id, addr: addr, veth: "veth" + id}
	n.removePodNetns(p) // leftovers of a crashed run with the same id
	steps := [][]string{
		{"netns", "add", p.netns},
		{"-n", n.netns, "link", "add", p.veth, "type", "veth", "peer", "name", "eth0", "netns", p.netns},
		{"-n", n.netns, "link", "set", p.veth, "master", bridgeName, "up"},
		{"-n", p.netns, "link", "set", "lo", "up"},
		{"-n", p.netns, "addr", "add", netip.PrefixFrom(addr, bits).String(), "dev", "eth0"},
		{"-n", p.netns, "link", "set", "eth0", "up"},
		{"-n", p.netns, "route", "add", "default", "via", gw.String()},
	}
	for _, args := range steps {
		if _, err := labnet.IP(args...); err != nil {
			n.removePod(p)
			return nil, fmt.Errorf("pod network: %w", err)
		}
	}
	return p, nil
}

// removePod deletes the Pod's namespace (and with it the veth pair) and
// frees its address.
func (n *nodeNetwork) removePod(p *podNetwork) {
	n.removePodNetns(p)
	n.mu.Lock()
	delete(n.used, p.addr)
	n.mu.Unlock()
}

func (n *nodeNetwork) removePodNetns(p *podNetwork) {
	_, _ = labnet.IP("-n", n.netns, "link", "del", p.veth)
	if labnet.Exists(p.netns) {
		if _, err := labnet.IP("netns", "del", p.netns); err != nil {
			n.log.Warn("kubelet: remove pod namespace", "netns", p.netns, "err", err)
		}
	}
}

// tearDown removes the bridge and any Pod namespace left behind.
func (n *nodeNetwork) tearDown() {
	_, _ = labnet.IP("-n", n.netns, "link", "del", bridgeName)
	out, err := labnet.IP("netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, n.podPrefix) {
			_, _ = labnet.IP("netns", "del", name)
		}
	}
}
