package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/announce"
)

// link is one network interface of the node: the view announce decides on
// (without LAN, which needs the Node's addresses), its MAC and its
// addresses.
type link struct {
	announce.Interface
	MAC   string
	Addrs []netip.Addr
	// Prefixes are Addrs with their prefix lengths.
	Prefixes []netip.Prefix
	// Gateways are the next hops of the default routes through the link.
	Gateways []netip.Addr
}

// withLAN returns the announce view of links, marking as LAN the
// interfaces that carry one of the node's own addresses.
func withLAN(links []link, nodeAddrs []netip.Addr) []announce.Interface {
	out := make([]announce.Interface, len(links))
	for i, l := range links {
		out[i] = l.Interface
		for _, a := range l.Addrs {
			if slices.Contains(nodeAddrs, a) {
				out[i].LAN = true
				break
			}
		}
	}
	return out
}

// listLinks reads the node's links and their addresses through h.
func listLinks(h *netlink.Handle) ([]link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	byIndex := map[int][]netip.Addr{}
	prefixes := map[int][]netip.Prefix{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			byIndex[a.LinkIndex] = append(byIndex[a.LinkIndex], ip.Unmap())
			if a.IPNet != nil {
				ones, _ := a.Mask.Size()
				prefixes[a.LinkIndex] = append(prefixes[a.LinkIndex], netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
	}
	gateways, err := defaultGateways(h)
	if err != nil {
		return nil, err
	}
	out := make([]link, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		// A link is up when it is administratively up and its carrier is
		// not known to be down (veth and dummy links report "unknown").
		up := a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
		ips := byIndex[a.Index]
		slices.SortFunc(ips, netip.Addr.Compare)
		pfx := prefixes[a.Index]
		slices.SortFunc(pfx, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		out = append(out, link{
			Interface: announce.Interface{
				Name:      a.Name,
				Up:        up,
				Broadcast: a.Flags&net.FlagBroadcast != 0 && a.RawFlags&unix.IFF_NOARP == 0,
				Loopback:  a.Flags&net.FlagLoopback != 0,
				Enslaved:  a.MasterIndex != 0,
			},
			MAC:      a.HardwareAddr.String(),
			Addrs:    ips,
			Prefixes: pfx,
			Gateways: gateways[a.Index],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// defaultGateways returns, by link index, the next hops of the default
// routes of the main table (single or multipath), sorted.
func defaultGateways(h *netlink.Handle) (map[int][]netip.Addr, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out := map[int][]netip.Addr{}
	add := func(index int, gw net.IP) {
		if ip, ok := netip.AddrFromSlice(gw); ok && index != 0 && !slices.Contains(out[index], ip.Unmap()) {
			out[index] = append(out[index], ip.Unmap())
		}
	}
	for _, r := range routes {
		if !isDefaultRoute(r) {
			continue
		}
		add(r.LinkIndex, r.Gw)
		for _, nh := range r.MultiPath {
			add(nh.LinkIndex, nh.Gw)
		}
	}
	for _, gws := range out {
		slices.SortFunc(gws, netip.Addr.Compare)
	}
	return out, nil
}

// isDefaultRoute reports whether r is a main-table default route (netlink
// leaves Dst nil for 0.0.0.0/0 and ::/0).
func isDefaultRoute(r netlink.Route) bool {
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		return false
	}
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// watchLinks sends the node's links to out now and after every change of a
// link, an address or a default route, until ctx is done. (Other routes
// are left out: CNIs and route daemons rewrite them often, and nothing
// Herald reports depends on them.) out keeps only the latest list.
func watchLinks(ctx context.Context, ns *netns.NsHandle, out chan []link, log *slog.Logger) error {
	var h *netlink.Handle
	var err error
	if ns != nil {
		h, err = netlink.NewHandleAt(*ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	defer h.Close()

	linkUpdates := make(chan netlink.LinkUpdate, 64)
	addrUpdates := make(chan netlink.AddrUpdate, 64)
	routeUpdates := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	onErr := func(err error) {
		if ctx.Err() == nil {
			log.Warn("netlink subscription error", "err", err)
		}
	}
	lopts := netlink.LinkSubscribeOptions{ErrorCallback: onErr, Namespace: ns}
	if err := netlink.LinkSubscribeWithOptions(linkUpdates, done, lopts); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	aopts := netlink.AddrSubscribeOptions{ErrorCallback: onErr, Namespace: ns}
	if err := netlink.AddrSubscribeWithOptions(addrUpdates, done, aopts); err != nil {
		return fmt.Errorf("subscribe to address updates: %w", err)
	}
	ropts := netlink.RouteSubscribeOptions{ErrorCallback: onErr, Namespace: ns}
	if err := netlink.RouteSubscribeWithOptions(routeUpdates, done, ropts); err != nil {
		return fmt.Errorf("subscribe to route updates: %w", err)
	}
	send := func() error {
		links, err := listLinks(h)
		if err != nil {
			return err
		}
		select {
		case <-out: // drop the stale list: only the latest matters
		default:
		}
		out <- links
		return nil
	}
	if err := send(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-linkUpdates:
			if !ok {
				return fmt.Errorf("link subscription closed")
			}
		case _, ok := <-addrUpdates:
			if !ok {
				return fmt.Errorf("address subscription closed")
			}
		case u, ok := <-routeUpdates:
			if !ok {
				return fmt.Errorf("route subscription closed")
			}
			if !isDefaultRoute(u.Route) {
				continue
			}
		}
		// Drain a burst of updates before listing once.
		for drained := false; !drained; {
			select {
			case <-linkUpdates:
			case <-addrUpdates:
			case <-routeUpdates:
			default:
				drained = true
			}
		}
		if err := send(); err != nil {
			log.Warn("listing links failed", "err", err)
		}
	}
}
