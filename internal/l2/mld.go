package l2

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv6"
)

// mldGroups joins IPv6 multicast groups at the IP layer on one interface.
//
// Joining a solicited-node group on the packet socket only opens the NIC's
// multicast filter. A switch (or Linux bridge) with MLD snooping forwards a
// group only to ports that sent an MLD report for it, and only the kernel's
// IPv6 stack sends those reports: so the responder also joins each group
// through an ICMPv6 socket, whose membership makes the kernel report it and
// answer the querier. The socket is never read; its ICMPv6 filter blocks
// every type so nothing queues on it.
type mldGroups struct {
	c   net.PacketConn
	pc  *ipv6.PacketConn
	ifi *net.Interface
}

// openMLD opens the ICMPv6 socket in the calling thread's network namespace.
func openMLD(ifi *net.Interface) (*mldGroups, error) {
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("open icmpv6 socket: %w", err)
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := pc.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("set icmpv6 filter: %w", err)
	}
	ifc := *ifi
	return &mldGroups{c: c, pc: pc, ifi: &ifc}, nil
}

func (g *mldGroups) join(group netip.Addr) error {
	if err := g.pc.JoinGroup(g.ifi, &net.IPAddr{IP: group.AsSlice()}); err != nil {
		return fmt.Errorf("join %s on %s: %w", group, g.ifi.Name, err)
	}
	return nil
}

func (g *mldGroups) leave(group netip.Addr) error {
	if err := g.pc.LeaveGroup(g.ifi, &net.IPAddr{IP: group.AsSlice()}); err != nil {
		return fmt.Errorf("leave %s on %s: %w", group, g.ifi.Name, err)
	}
	return nil
}

// Close closes the socket, which drops its memberships.
func (g *mldGroups) Close() error {
	if err := g.c.Close(); err != nil {
		return fmt.Errorf("close icmpv6 socket: %w", err)
	}
	return nil
}
