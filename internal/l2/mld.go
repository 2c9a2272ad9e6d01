package l2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/ipv6"
)

// mldGroups joins IPv6 multicast groups at the IP layer on one interface.
//
// Joining a solicited-node group on the packet socket only opens the NIC's
// multicast filter. A switch (or Linux bridge) with MLD snooping forwards a
// group only to ports that sent an MLD report for it, and only the kernel's
// IPv6 stack sends those reports: so the responder also joins each group
// through an ICMPv6 socket, whose membership makes the kernel report it and
// answer the querier. The sockets are never read; their ICMPv6 filter blocks
// every type so nothing queues on them.
//
// The kernel charges each membership (about 56 bytes) against the socket's
// net.core.optmem_max, so one socket holds about 2300 groups with the
// default 128 KiB; beyond that a join fails with ENOMEM. mldGroups then
// opens another socket (in the namespace of the first: open enters it), so
// the number of groups is bounded by memory, not by one socket.
type mldGroups struct {
	ifi  *net.Interface
	open func() (net.PacketConn, error)

	mu     sync.Mutex
	socks  []*mldSocket
	where  map[netip.Addr]*mldSocket
	closed bool
}

type mldSocket struct {
	c  net.PacketConn
	pc *ipv6.PacketConn
	// full is set when a join failed for lack of socket memory, and
	// cleared when a group is left.
	full   bool
	groups int
}

// openMLD opens the first ICMPv6 socket in the calling thread's network
// namespace. open opens further ones in the same namespace; nil means in
// the calling goroutine's (right when the process lives in one namespace).
func openMLD(ifi *net.Interface, open func() (net.PacketConn, error)) (*mldGroups, error) {
	if open == nil {
		open = listenICMPv6
	}
	ifc := *ifi
	g := &mldGroups{ifi: &ifc, open: open, where: map[netip.Addr]*mldSocket{}}
	c, err := listenICMPv6()
	if err != nil {
		return nil, err
	}
	s, err := newMLDSocket(c)
	if err != nil {
		return nil, err
	}
	g.socks = []*mldSocket{s}
	return g, nil
}

func listenICMPv6() (net.PacketConn, error) {
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("open icmpv6 socket: %w", err)
	}
	return c, nil
}

func newMLDSocket(c net.PacketConn) (*mldSocket, error) {
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := pc.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("set icmpv6 filter: %w", err)
	}
	return &mldSocket{c: c, pc: pc}, nil
}

func (g *mldGroups) join(group netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return net.ErrClosed
	}
	if _, ok := g.where[group]; ok {
		return nil
	}
	addr := &net.IPAddr{IP: group.AsSlice()}
	for i := 0; ; i++ {
		var s *mldSocket
		for _, x := range g.socks {
			if !x.full {
				s = x
				break
			}
		}
		if s == nil {
			if i > 0 {
				// A fresh socket could not take one group: not a
				// matter of socket memory.
				return fmt.Errorf("join %s on %s: no socket has room", group, g.ifi.Name)
			}
			c, err := g.open()
			if err != nil {
				return fmt.Errorf("join %s on %s: another socket for more groups: %w", group, g.ifi.Name, err)
			}
			if s, err = newMLDSocket(c); err != nil {
				return err
			}
			g.socks = append(g.socks, s)
		}
		err := s.pc.JoinGroup(g.ifi, addr)
		if err == nil {
			s.groups++
			g.where[group] = s
			return nil
		}
		if !errors.Is(err, syscall.ENOMEM) && !errors.Is(err, syscall.ENOBUFS) {
			return fmt.Errorf("join %s on %s: %w", group, g.ifi.Name, err)
		}
		s.full = true
	}
}

func (g *mldGroups) leave(group netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.where[group]
	if !ok || g.closed {
		return nil
	}
	delete(g.where, group)
	s.groups--
	s.full = false
	if err := s.pc.LeaveGroup(g.ifi, &net.IPAddr{IP: group.AsSlice()}); err != nil {
		return fmt.Errorf("leave %s on %s: %w", group, g.ifi.Name, err)
	}
	return nil
}

// sockets is the number of ICMPv6 sockets open (tests).
func (g *mldGroups) sockets() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.socks)
}

// Close closes the sockets, which drops their memberships.
func (g *mldGroups) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	var errs []error
	for _, s := range g.socks {
		if err := s.c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close icmpv6 socket: %w", err))
		}
	}
	return errors.Join(errs...)
}
