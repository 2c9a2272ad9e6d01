package kubelet

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/herald-lb/herald/internal/lab/labnet"
)

// nodeNetwork is a node's Pod network, like a bridge CNI plugin with
// host-gateway routes: a cni0 bridge holding each podCIDR's first address,
// a veth per Pod, and a route per other node's podCIDR via that node.
type nodeNetwork struct {
	netns     string
	iface     string
	podPrefix string
	log       *slog.Logger

	mu     sync.Mutex
	pools  []*addrPool // one per podCIDR, IPv4 first
	routes map[netip.Prefix]netip.Addr
}

// addrPool hands out the addresses of one podCIDR.
type addrPool struct {
	cidr    netip.Prefix
	gateway netip.Addr
	used    map[netip.Addr]bool
}

// take returns the lowest free address, leaving out the gateway and, for
// IPv4, the broadcast address.
func (p *addrPool) take() (netip.Addr, bool) {
	for a := p.gateway.Next(); p.cidr.Contains(a); a = a.Next() {
		if p.used[a] || (a.Is4() && !p.cidr.Contains(a.Next())) {
			continue
		}
		p.used[a] = true
		return a, true
	}
	return netip.Addr{}, false
}

// setUp creates the bridge with each podCIDR's gateway address and turns
// on forwarding in the node's namespace.
func (n *nodeNetwork) setUp(cidrs []netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, _ = labnet.IP("-n", n.netns, "link", "del", bridgeName)
	if _, err := labnet.IP("-n", n.netns, "link", "add", bridgeName, "type", "bridge"); err != nil {
		return fmt.Errorf("pod bridge: %w", err)
	}
	n.pools = nil
	for _, cidr := range cidrs {
		cidr = cidr.Masked()
		gw := cidr.Addr().Next()
		args := []string{"-n", n.netns, "addr", "add", netip.PrefixFrom(gw, cidr.Bits()).String(), "dev", bridgeName}
		sysctl := "echo 1 > /proc/sys/net/ipv4/ip_forward"
		if gw.Is6() {
			args = append(args, "nodad")
			sysctl = "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding"
		}
		if _, err := labnet.IP(args...); err != nil {
			return fmt.Errorf("pod bridge: %w", err)
		}
		if _, err := labnet.IP("netns", "exec", n.netns, "sh", "-c", sysctl); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
		n.pools = append(n.pools, &addrPool{cidr: cidr, gateway: gw, used: map[netip.Addr]bool{gw: true}})
		n.log.Info("kubelet: pod network ready", "podCIDR", cidr, "gateway", gw)
	}
	if _, err := labnet.IP("-n", n.netns, "link", "set", bridgeName, "up"); err != nil {
		return fmt.Errorf("pod bridge: %w", err)
	}
	if n.routes == nil {
		n.routes = map[netip.Prefix]netip.Addr{}
	}
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
		// Replaced every time, not only when new: the kernel drops the
		// routes with the link (ip link set eth0 down), and a periodic
		// sync puts them back, as a CNI's route daemon would.
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

// podNetwork is one Pod's namespace and addresses (IPv4 first).
type podNetwork struct {
	netns string
	addrs []netip.Addr
	veth  string
}

// addPod creates a namespace for the Pod with id (a short unique string),
// with eth0 on the node's bridge, an address from each podCIDR and
// default routes via the gateways.
func (n *nodeNetwork) addPod(id string) (*podNetwork, error) {
	p := &podNetwork{netns: n.podPrefix + id, veth: "veth" + id}
	n.mu.Lock()
	if len(n.pools) == 0 {
		n.mu.Unlock()
		return nil, fmt.Errorf("the node has no podCIDR yet")
	}
	steps := [][]string{}
	for _, pool := range n.pools {
		addr, ok := pool.take()
		if !ok {
			n.mu.Unlock()
			n.release(p)
			return nil, fmt.Errorf("podCIDR %s is full", pool.cidr)
		}
		p.addrs = append(p.addrs, addr)
		addrArgs := []string{"-n", p.netns, "addr", "add", netip.PrefixFrom(addr, pool.cidr.Bits()).String(), "dev", "eth0"}
		routeArgs := []string{"-n", p.netns, "route", "add", "default", "via", pool.gateway.String()}
		if addr.Is6() {
			addrArgs = append(addrArgs, "nodad")
			routeArgs = append([]string{"-6"}, routeArgs...)
		}
		steps = append(steps, addrArgs, routeArgs)
	}
	n.mu.Unlock()

	n.removePodNetns(p) // leftovers of a crashed run with the same id
	steps = append([][]string{
		{"netns", "add", p.netns},
		{"-n", n.netns, "link", "add", p.veth, "type", "veth", "peer", "name", "eth0", "netns", p.netns},
		{"-n", n.netns, "link", "set", p.veth, "master", bridgeName, "up"},
		{"-n", p.netns, "link", "set", "lo", "up"},
		{"-n", p.netns, "link", "set", "eth0", "up"},
	}, steps...)
	for _, args := range steps {
		if _, err := labnet.IP(args...); err != nil {
			n.removePod(p)
			return nil, fmt.Errorf("pod network: %w", err)
		}
	}
	return p, nil
}

// removePod deletes the Pod's namespace (and with it the veth pair) and
// frees its addresses.
func (n *nodeNetwork) removePod(p *podNetwork) {
	n.removePodNetns(p)
	n.release(p)
}

func (n *nodeNetwork) release(p *podNetwork) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range p.addrs {
		for _, pool := range n.pools {
			if pool.cidr.Contains(a) {
				delete(pool.used, a)
			}
		}
	}
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
	if err := labnet.RemoveNamespaces(n.podPrefix); err != nil {
		n.log.Warn("kubelet: remove pod namespaces", "err", err)
	}
}
