package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/announce"
)

// listInterfaces reads the node's links through h.
func listInterfaces(h *netlink.Handle) ([]announce.Interface, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]announce.Interface, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		// A link is up when it is administratively up and its carrier is
		// not known to be down (veth and dummy links report "unknown").
		up := a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
		out = append(out, announce.Interface{
			Name:      a.Name,
			Up:        up,
			Broadcast: a.Flags&net.FlagBroadcast != 0 && a.RawFlags&unix.IFF_NOARP == 0,
			Loopback:  a.Flags&net.FlagLoopback != 0,
			Enslaved:  a.MasterIndex != 0,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// watchLinks sends the node's interfaces to out now and after every link
// change, until ctx is done. out keeps only the latest list.
func watchLinks(ctx context.Context, ns *netns.NsHandle, out chan []announce.Interface, log *slog.Logger) error {
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

	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil {
				log.Warn("link subscription error", "err", err)
			}
		},
	}
	if ns != nil {
		opts.Namespace = ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	send := func() error {
		ifaces, err := listInterfaces(h)
		if err != nil {
			return err
		}
		select {
		case <-out: // drop the stale list: only the latest matters
		default:
		}
		out <- ifaces
		return nil
	}
	if err := send(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				return fmt.Errorf("link subscription closed")
			}
			// Drain a burst of updates before listing once.
			for drained := false; !drained; {
				select {
				case <-updates:
				default:
					drained = true
				}
			}
			if err := send(); err != nil {
				log.Warn("listing links failed", "err", err)
			}
		}
	}
}
