package dataplane

import (
	"fmt"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// udpBackends is, per UDP service VIP:port, the endpoints a Sync
// programmed. UDP has no connection end: without cleanup, a client that
// keeps sending from the same source port stays pinned by conntrack to an
// endpoint that was removed, until the entry times out. kube-proxy clears
// these entries too. TCP needs nothing: connections to a gone backend are
// reset or time out, and new ones pick a live endpoint.
type udpBackends map[netip.AddrPort]map[netip.AddrPort]struct{}

func udpBackendsOf(plan []planned) udpBackends {
	out := udpBackends{}
	for _, p := range plan {
		if p.proto != unix.IPPROTO_UDP || len(p.eps) == 0 {
			continue
		}
		eps := make(map[netip.AddrPort]struct{}, len(p.eps))
		for _, e := range p.eps {
			eps[netip.AddrPortFrom(e.Addr, e.Port)] = struct{}{}
		}
		out[netip.AddrPortFrom(p.svc.VIP, p.svc.Port)] = eps
	}
	return out
}

// staleFilter matches UDP conntrack entries whose original destination is
// a service VIP:port and whose reply source (the DNAT target) is an
// endpoint that service no longer uses.
type staleFilter map[netip.AddrPort]map[netip.AddrPort]struct{}

// staleSince returns the (service, endpoint) pairs in old but not in now.
func staleSince(old, now udpBackends) staleFilter {
	stale := staleFilter{}
	for svc, eps := range old {
		for ep := range eps {
			if _, ok := now[svc][ep]; ok {
				continue
			}
			if stale[svc] == nil {
				stale[svc] = map[netip.AddrPort]struct{}{}
			}
			stale[svc][ep] = struct{}{}
		}
	}
	return stale
}

// MatchConntrackFlow implements vnl.CustomConntrackFilter.
func (f staleFilter) MatchConntrackFlow(flow *vnl.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	if !ok {
		return false
	}
	eps := f[netip.AddrPortFrom(dst.Unmap(), flow.Forward.DstPort)]
	if eps == nil {
		return false
	}
	src, ok := netip.AddrFromSlice(flow.Reverse.SrcIP)
	if !ok {
		return false
	}
	_, stale := eps[netip.AddrPortFrom(src.Unmap(), flow.Reverse.SrcPort)]
	return stale
}

// deleteStale removes the conntrack entries f matches in the namespace
// nsFD (-1: the current one) and returns how many it removed.
func deleteStale(nsFD int, f staleFilter) (uint, error) {
	var (
		h   *vnl.Handle
		err error
	)
	if nsFD >= 0 {
		h, err = vnl.NewHandleAt(netns.NsHandle(nsFD))
	} else {
		h, err = vnl.NewHandle()
	}
	if err != nil {
		return 0, fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	var v4, v6 bool
	for svc := range f {
		if svc.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	var total uint
	for _, fam := range []struct {
		use bool
		f   vnl.InetFamily
	}{{v4, unix.AF_INET}, {v6, unix.AF_INET6}} {
		if !fam.use {
			continue
		}
		n, err := h.ConntrackDeleteFilters(vnl.ConntrackTable, fam.f, f)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete conntrack entries: %w", err)
		}
	}
	return total, nil
}
