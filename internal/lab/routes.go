package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/herald-lb/herald/internal/testenv"
)

// routeEvery is how often the lab puts the routes between the nodes' Pod
// ranges back, besides at every link change: taking a node's link down
// makes its kernel drop the routes through it, and a CNI's route daemon
// (flannel's host-gw, for one) restores them when the link comes back.
const routeEvery = time.Second

// podRoute is one node's route to another node's Pod range.
type podRoute struct {
	// netns is the namespace of the node that holds the route.
	netns string
	dst   netip.Prefix
	via   netip.Addr
}

// podRoutes returns, for every node, a route to every other node's Pod
// ranges through that node's LAN address: the lab's CNI is a bridge per
// node, so Pods on different nodes reach each other through these routes,
// as on a flat routed network; and with a router, each node's default
// route through it.
func podRoutes(ctx context.Context, env *testenv.Env, topo Topology) ([]podRoute, error) {
	var routes []podRoute
	for _, h := range topo.Nodes {
		n, err := env.Clientset().CoreV1().Nodes().Get(ctx, h.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", h.Name, err)
		}
		for _, cidr := range podCIDRs(n) {
			p, err := netip.ParsePrefix(cidr)
			if err != nil {
				return nil, fmt.Errorf("node %s: podCIDR %q: %w", h.Name, cidr, err)
			}
			via := h.IPv4
			if p.Addr().Is6() {
				via = h.IPv6
			}
			if !via.IsValid() {
				continue
			}
			for _, other := range topo.Nodes {
				if other.Name != h.Name {
					routes = append(routes, podRoute{netns: other.NetNS, dst: p, via: via})
				}
			}
		}
	}
	// With a router (--bgp), each node's default route through it: the
	// kernel drops it too with the link, and a node's network manager
	// (DHCP, networkd, Talos) puts it back when the link returns.
	if r := topo.Router; r != nil {
		for _, h := range topo.Nodes {
			routes = append(routes, podRoute{netns: h.NetNS, dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), via: r.IPv4})
			if r.IPv6.IsValid() && h.IPv6.IsValid() {
				routes = append(routes, podRoute{netns: h.NetNS, dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0), via: r.IPv6})
			}
		}
	}
	return routes, nil
}

// routeKeeper replaces the routes in their namespaces.
type routeKeeper struct {
	routes  []podRoute
	handles map[string]*netlink.Handle
}

func newRouteKeeper(routes []podRoute) (*routeKeeper, error) {
	k := &routeKeeper{routes: routes, handles: map[string]*netlink.Handle{}}
	for _, r := range routes {
		if _, ok := k.handles[r.netns]; ok {
			continue
		}
		ns, err := netns.GetFromName(r.netns)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("open network namespace %s: %w", r.netns, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			k.close()
			return nil, fmt.Errorf("netlink in %s: %w", r.netns, err)
		}
		k.handles[r.netns] = h
	}
	return k, nil
}

// apply replaces every route (a no-op for a route that is there) and
// returns the errors, one per route that could not be set.
func (k *routeKeeper) apply() error {
	var errs []error
	for _, r := range k.routes {
		dst := &net.IPNet{IP: r.dst.Addr().AsSlice(), Mask: net.CIDRMask(r.dst.Bits(), r.dst.Addr().BitLen())}
		if err := k.handles[r.netns].RouteReplace(&netlink.Route{Dst: dst, Gw: r.via.AsSlice()}); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s in %s: %w", r.dst, r.via, r.netns, err))
		}
	}
	return errors.Join(errs...)
}

// keep applies the routes whenever a link of a node changes (a link that
// comes back up gets its routes at once) and every routeEvery, until ctx
// is done. A route whose next hop is unreachable (the node's link is down)
// fails until the link is back; that is expected and logged at debug level
// only.
func (k *routeKeeper) keep(ctx context.Context, log *slog.Logger) {
	defer k.close()
	// One channel per subscription: netlink closes a subscription's
	// channel when it ends, so they cannot share one.
	changed := make(chan struct{}, 1)
	done := make(chan struct{})
	var forwarders sync.WaitGroup
	// On return: end the subscriptions and wait until their sockets are
	// closed (a socket holds its namespace: a crashed node's namespace is
	// only gone once this keeper has stopped).
	defer forwarders.Wait()
	defer close(done)
	for name := range k.handles {
		ns, err := netns.GetFromName(name)
		if err != nil {
			log.Warn("lab: watch links", "netns", name, "err", err)
			continue
		}
		updates := make(chan netlink.LinkUpdate, 16)
		err = netlink.LinkSubscribeAt(ns, updates, done)
		ns.Close()
		if err != nil {
			log.Warn("lab: watch links", "netns", name, "err", err)
			continue
		}
		forwarders.Go(func() {
			for range updates {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		})
	}
	tick := time.NewTicker(routeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		if err := k.apply(); err != nil {
			log.Debug("lab: Pod routes", "err", err)
		}
	}
}

func (k *routeKeeper) close() {
	for _, h := range k.handles {
		h.Close()
	}
}
