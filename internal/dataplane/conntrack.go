package dataplane

import (
	"fmt"
	"net/netip"
	"slices"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UDP has no connection end: without cleanup, a client that keeps sending
// from the same source port stays pinned by conntrack to an endpoint that
// was removed, until the entry times out. kube-proxy clears these entries
// too. TCP needs nothing: connections to a gone backend are reset or time
// out, and new ones pick a live endpoint.

// staleFilter matches UDP conntrack entries whose original destination is
// a service VIP:port and whose reply source (the DNAT target) is an
// endpoint that service no longer uses.
type staleFilter map[netip.AddrPort]map[netip.AddrPort]struct{}

// staleUDP returns the (UDP service VIP:port, endpoint) pairs that changes
// take out of the table. Only changed services can lose endpoints, and a
// VIP:port that an old record held can only be held now by a changed
// record: a record that did not change kept its own VIP:port, and no two
// records share one.
func staleUDP(changes []change) staleFilter {
	var now map[svcID]*record
	for _, c := range changes {
		if c.new != nil && c.new.id.proto == unix.IPPROTO_UDP && len(c.new.eps) > 0 {
			if now == nil {
				now = map[svcID]*record{}
			}
			now[c.new.id] = c.new
		}
	}
	stale := staleFilter{}
	for _, c := range changes {
		o := c.old
		if o == nil || o.id.proto != unix.IPPROTO_UDP {
			continue
		}
		for _, ep := range o.eps {
			if n := now[o.id]; n != nil {
				if _, ok := slices.BinarySearchFunc(n.eps, ep, netip.AddrPort.Compare); ok {
					continue
				}
			}
			svc := netip.AddrPortFrom(o.id.vip, o.id.port)
			if stale[svc] == nil {
				stale[svc] = map[netip.AddrPort]struct{}{}
			}
			stale[svc][ep] = struct{}{}
		}
	}
	return stale
}

// clearUDP deletes the conntrack entries that lead to the UDP endpoints
// changes removed. The rules are in place whatever happens here, so a
// failure is logged, not returned: a retried call would not retry it, and
// the entries expire on their own (conntrack's UDP timeout).
func (t *Table) clearUDP(changes []change) {
	stale := staleUDP(changes)
	if len(stale) == 0 {
		return
	}
	t.stats.RoundTrips++
	n, err := deleteStale(t.nsFD, stale)
	if err != nil {
		t.log.Warn("clearing conntrack entries of removed UDP endpoints failed", "err", err)
		return
	}
	t.log.Debug("cleared conntrack entries of removed UDP endpoints", "entries", n)
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
