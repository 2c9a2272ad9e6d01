package lab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/herald-lb/herald/internal/lab/labnet"
)

// Host is one machine on the lab's LAN: a network namespace with eth0 on
// the LAN bridge.
type Host struct {
	// Name is the host's name (cp1, node1, client).
	Name string
	// NetNS is its network namespace.
	NetNS string
	// IPv4 is its LAN address.
	IPv4 netip.Addr
	// IPv6 is its LAN address when the lab has IPv6.
	IPv6 netip.Addr
}

// Topology is the lab's network: a switch namespace holding bridge br0,
// and hosts wired to it. Nothing in it routes to or from the root
// namespace.
type Topology struct {
	// Prefix starts the name of every namespace the lab owns.
	Prefix string
	// Switch is the namespace of the LAN bridge.
	Switch string
	// Nodes are the Kubernetes nodes, control plane first.
	Nodes []Host
	// Client is the LAN client.
	Client Host
	// Router is the LAN's router (`herald-lab up --bgp`; nil without):
	// on the LAN like a host, the nodes' default gateway, and the BGP
	// peer of every node (FRR, AS RouterASN). Behind it, on a subnet of
	// its own, is Far.
	Router *Host `json:",omitempty"`
	// Far is a client behind the router, in another subnet
	// (192.168.20.0/24): it reaches load-balancer addresses only through
	// the routes the router learns by BGP.
	Far *Host `json:",omitempty"`
	// Core is a second router behind Router, on a subnet of its own
	// (192.168.21.0/24; IPv4 only): BIRD 2 in AS CoreASN. The nodes
	// reach it only through Router, so their sessions with it are eBGP
	// multihop. It has no default route: it reaches a load-balancer
	// address only by the routes it learns from the nodes and puts into
	// its kernel.
	Core *Host `json:",omitempty"`
}

// The BGP lab's numbers: the router's, the nodes' and the core router's AS
// numbers (private, RFC 6996: eBGP between the routers and the nodes), the
// far subnet and the router's and far client's hosts in it, the router's
// host on the LAN and on the core subnet, the core router's host there.
const (
	RouterASN  = 64512
	NodeASN    = 64513
	CoreASN    = 64514
	farV4Text  = "192.168.20.0/24"
	farV6Text  = "fd00:20::/64"
	coreV4Text = "192.168.21.0/24"
	routerHost = 1
	farHost    = 10
	coreHost   = 2
)

func farV4() netip.Prefix  { return netip.MustParsePrefix(farV4Text) }
func farV6() netip.Prefix  { return netip.MustParsePrefix(farV6Text) }
func coreV4() netip.Prefix { return netip.MustParsePrefix(coreV4Text) }

// RouterCoreLink returns the router's address on the core subnet.
func (t Topology) RouterCoreLink() netip.Prefix {
	return netip.PrefixFrom(addrIn(coreV4(), routerHost), coreV4().Bits())
}

// RouterUplink returns the router's addresses on the far subnet (IPv6
// invalid in an IPv4-only lab).
func (t Topology) RouterUplink() (v4, v6 netip.Prefix) {
	v4 = netip.PrefixFrom(addrIn(farV4(), routerHost), farV4().Bits())
	if t.Client.IPv6.IsValid() {
		v6 = netip.PrefixFrom(addrIn(farV6(), routerHost), farV6().Bits())
	}
	return v4, v6
}

// AddRouter adds the router at 192.168.10.1 (fd00:10::1), the far
// client at 192.168.20.10 (fd00:20::10) behind it and the core router at
// 192.168.21.2 behind it.
func (t *Topology) AddRouter() {
	r := Host{Name: "router", NetNS: t.Prefix + "router", IPv4: addrIn(lanV4(), routerHost)}
	f := Host{Name: "far", NetNS: t.Prefix + "far", IPv4: addrIn(farV4(), farHost)}
	c := Host{Name: "core", NetNS: t.Prefix + "core", IPv4: addrIn(coreV4(), coreHost)}
	if t.Client.IPv6.IsValid() {
		r.IPv6 = addrIn(lanV6(), routerHost)
		f.IPv6 = addrIn(farV6(), 0x10)
	}
	t.Router, t.Far, t.Core = &r, &f, &c
}

// The tutorial's LAN: nodes from 192.168.10.215, the client at .10.
const (
	lanV4Text  = "192.168.10.0/24"
	lanV6Text  = "fd00:10::/64"
	firstNode  = 215
	clientHost = 10
)

func lanV4() netip.Prefix { return netip.MustParsePrefix(lanV4Text) }
func lanV6() netip.Prefix { return netip.MustParsePrefix(lanV6Text) }

// NewTopology lays out a lab of nodes nodes (cp1, node1, …) whose
// namespaces start with prefix.
func NewTopology(prefix string, nodes int, ipv6 bool) (Topology, error) {
	if nodes < 1 || nodes > 30 {
		return Topology{}, fmt.Errorf("--nodes %d: want 1 to 30", nodes)
	}
	t := Topology{Prefix: prefix, Switch: prefix + "lan"}
	host := func(name string, n int) Host {
		h := Host{Name: name, NetNS: prefix + name, IPv4: addrIn(lanV4(), n)}
		if ipv6 {
			// The same digits as the IPv4 host part: .215 is ::215.
			digits, _ := strconv.ParseUint(strconv.Itoa(n), 16, 32)
			h.IPv6 = addrIn(lanV6(), int(digits))
		}
		return h
	}
	for i := range nodes {
		name := fmt.Sprintf("node%d", i)
		if i == 0 {
			name = "cp1"
		}
		t.Nodes = append(t.Nodes, host(name, firstNode+i))
	}
	t.Client = host("client", clientHost)
	return t, nil
}

// addrIn returns the n-th address of prefix.
func addrIn(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().AsSlice()
	for i := len(b) - 1; n > 0 && i >= 0; i-- {
		sum := int(b[i]) + n
		b[i], n = byte(sum), sum>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Hosts returns the hosts on the LAN: the nodes, the client and the
// router if there is one.
func (t Topology) Hosts() []Host {
	hosts := append(append([]Host(nil), t.Nodes...), t.Client)
	if t.Router != nil {
		hosts = append(hosts, *t.Router)
	}
	return hosts
}

// Node returns the named node, client, router, far client or core
// router.
func (t Topology) Node(name string) (Host, bool) {
	all := t.Hosts()
	for _, h := range []*Host{t.Far, t.Core} {
		if h != nil {
			all = append(all, *h)
		}
	}
	for _, h := range all {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Create builds the network from scratch, removing what a previous lab
// with the same prefix left.
func (t Topology) Create() error {
	if err := labnet.RemoveNamespaces(t.Prefix); err != nil {
		return err
	}
	steps := [][]string{
		{"netns", "add", t.Switch},
		{"-n", t.Switch, "link", "add", "br0", "type", "bridge"},
		{"-n", t.Switch, "link", "set", "br0", "up"},
	}
	for _, h := range t.Hosts() {
		steps = append(steps, t.hostSteps(h)...)
	}
	steps = append(steps, t.routerSteps()...)
	if err := runIP(steps); err != nil {
		return err
	}
	if t.Router != nil {
		for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
			if _, err := labnet.IP("netns", "exec", t.Router.NetNS, "sysctl", "-qw", k); err != nil {
				return fmt.Errorf("lab network: router: %w", err)
			}
		}
	}
	return nil
}

// MAC is the host's eth0 address: locally administered, 02:00 and then the
// host's IPv4 address. A machine keeps its NIC's address across a reboot,
// so a node the lab boots again after a crash has its old one: its
// neighbours' ARP caches stay right, as on a real LAN.
func (h Host) MAC() net.HardwareAddr {
	v4 := h.IPv4.As4()
	return net.HardwareAddr{0x02, 0x00, v4[0], v4[1], v4[2], v4[3]}
}

// hostSteps are the `ip` commands that create a LAN host's namespace and
// plug it into the switch: eth0 with its addresses, port h.Name on br0.
func (t Topology) hostSteps(h Host) [][]string {
	steps := [][]string{
		{"netns", "add", h.NetNS},
		{"-n", t.Switch, "link", "add", h.Name, "type", "veth", "peer", "name", "eth0", "address", h.MAC().String(), "netns", h.NetNS},
		{"-n", t.Switch, "link", "set", h.Name, "master", "br0", "up"},
		{"-n", h.NetNS, "link", "set", "lo", "up"},
		{"-n", h.NetNS, "addr", "add", netip.PrefixFrom(h.IPv4, lanV4().Bits()).String(), "dev", "eth0"},
	}
	if h.IPv6.IsValid() {
		steps = append(steps, []string{"-n", h.NetNS, "addr", "add", netip.PrefixFrom(h.IPv6, lanV6().Bits()).String(), "dev", "eth0", "nodad"})
	}
	return append(steps, []string{"-n", h.NetNS, "link", "set", "eth0", "up"})
}

// gatewaySteps are the `ip` commands that make the router a node's
// default gateway; none without a router.
func (t Topology) gatewaySteps(n Host) [][]string {
	r := t.Router
	if r == nil {
		return nil
	}
	steps := [][]string{{"-n", n.NetNS, "route", "add", "default", "via", r.IPv4.String()}}
	if r.IPv6.IsValid() {
		steps = append(steps, []string{"-n", n.NetNS, "-6", "route", "add", "default", "via", r.IPv6.String()})
	}
	return steps
}

// RecreateNode builds a node's namespace and LAN link again after
// RemoveNode, as Create did.
func (t Topology) RecreateNode(name string) error {
	i := slices.IndexFunc(t.Nodes, func(h Host) bool { return h.Name == name })
	if i < 0 {
		return fmt.Errorf("no node %q in the lab", name)
	}
	h := t.Nodes[i]
	return runIP(append(t.hostSteps(h), t.gatewaySteps(h)...))
}

// RemoveNode takes a node off the network as a power cut does: first its
// LAN link (the switch's port and the node's eth0 go together, so nothing
// the node's processes send as they die reaches the LAN), then its
// namespace, which the kernel frees once nothing holds it any more.
func (t Topology) RemoveNode(name string) error {
	i := slices.IndexFunc(t.Nodes, func(h Host) bool { return h.Name == name })
	if i < 0 {
		return fmt.Errorf("no node %q in the lab", name)
	}
	return runIP([][]string{{"-n", t.Switch, "link", "del", name}})
}

// runIP runs `ip` commands in order, stopping at the first that fails.
func runIP(steps [][]string) error {
	for _, args := range steps {
		if _, err := labnet.IP(args...); err != nil {
			return fmt.Errorf("lab network: %w", err)
		}
	}
	return nil
}

// routerSteps are the `ip` commands that wire the far client and the core
// router to the router and make the router every node's default gateway;
// none without a router.
func (t Topology) routerSteps() [][]string {
	if t.Router == nil || t.Far == nil {
		return nil
	}
	r, f := t.Router, t.Far
	up4, up6 := t.RouterUplink()
	steps := [][]string{
		{"netns", "add", f.NetNS},
		{"-n", r.NetNS, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", f.NetNS},
		{"-n", f.NetNS, "link", "set", "lo", "up"},
		{"-n", r.NetNS, "addr", "add", up4.String(), "dev", "eth1"},
		{"-n", f.NetNS, "addr", "add", netip.PrefixFrom(f.IPv4, farV4().Bits()).String(), "dev", "eth0"},
	}
	if up6.IsValid() {
		steps = append(steps,
			[]string{"-n", r.NetNS, "addr", "add", up6.String(), "dev", "eth1", "nodad"},
			[]string{"-n", f.NetNS, "addr", "add", netip.PrefixFrom(f.IPv6, farV6().Bits()).String(), "dev", "eth0", "nodad"})
	}
	steps = append(steps,
		[]string{"-n", r.NetNS, "link", "set", "eth1", "up"},
		[]string{"-n", f.NetNS, "link", "set", "eth0", "up"},
		[]string{"-n", f.NetNS, "route", "add", "default", "via", up4.Addr().String()})
	if up6.IsValid() {
		steps = append(steps, []string{"-n", f.NetNS, "-6", "route", "add", "default", "via", up6.Addr().String()})
	}
	if c := t.Core; c != nil {
		link := t.RouterCoreLink()
		steps = append(steps,
			[]string{"netns", "add", c.NetNS},
			[]string{"-n", r.NetNS, "link", "add", "eth2", "type", "veth", "peer", "name", "eth0", "netns", c.NetNS},
			[]string{"-n", c.NetNS, "link", "set", "lo", "up"},
			[]string{"-n", r.NetNS, "addr", "add", link.String(), "dev", "eth2"},
			[]string{"-n", c.NetNS, "addr", "add", netip.PrefixFrom(c.IPv4, coreV4().Bits()).String(), "dev", "eth0"},
			[]string{"-n", r.NetNS, "link", "set", "eth2", "up"},
			[]string{"-n", c.NetNS, "link", "set", "eth0", "up"},
			// The LAN only, not a default route: the nodes' sessions and
			// replies to them go through the router, load-balancer
			// addresses only by what BIRD learns.
			[]string{"-n", c.NetNS, "route", "add", lanV4().String(), "via", link.Addr().String()})
	}
	for _, n := range t.Nodes {
		steps = append(steps, t.gatewaySteps(n)...)
	}
	return steps
}
