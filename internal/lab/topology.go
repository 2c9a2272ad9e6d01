package lab

import (
	"fmt"
	"net/netip"
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

// Hosts returns the nodes and the client.
func (t Topology) Hosts() []Host { return append(append([]Host(nil), t.Nodes...), t.Client) }

// Node returns the named node or client.
func (t Topology) Node(name string) (Host, bool) {
	for _, h := range t.Hosts() {
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
		steps = append(steps,
			[]string{"netns", "add", h.NetNS},
			[]string{"-n", t.Switch, "link", "add", h.Name, "type", "veth", "peer", "name", "eth0", "netns", h.NetNS},
			[]string{"-n", t.Switch, "link", "set", h.Name, "master", "br0", "up"},
			[]string{"-n", h.NetNS, "link", "set", "lo", "up"},
			[]string{"-n", h.NetNS, "addr", "add", netip.PrefixFrom(h.IPv4, lanV4().Bits()).String(), "dev", "eth0"},
		)
		if h.IPv6.IsValid() {
			steps = append(steps, []string{"-n", h.NetNS, "addr", "add", netip.PrefixFrom(h.IPv6, lanV6().Bits()).String(), "dev", "eth0", "nodad"})
		}
		steps = append(steps, []string{"-n", h.NetNS, "link", "set", "eth0", "up"})
	}
	for _, args := range steps {
		if _, err := labnet.IP(args...); err != nil {
			return fmt.Errorf("lab network: %w", err)
		}
	}
	return nil
}
