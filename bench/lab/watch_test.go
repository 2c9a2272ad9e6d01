package labbench_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// background is the goroutines of a prober or watcher, which run while a
// trial's fault happens: stop ends them and waits for them, once, so that
// a trial can stop its samplers before it reads them and b.Cleanup can
// stop them again after a failed trial.
type background struct {
	cancel   func()
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// stop ends the goroutines and waits for them; later calls do nothing.
func (g *background) stop() {
	g.stopOnce.Do(func() {
		g.cancel()
		g.wg.Wait()
	})
}

// netlinkAt returns a netlink handle in the network namespace ns (as
// `ip netns` names it). The watchers read the kernel over netlink rather
// than with `ip`, to look every few milliseconds.
func netlinkAt(b *testing.B, ns string) *netlink.Handle {
	b.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		b.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nsh)
	_ = nsh.Close()
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// watchNetlink calls read with a netlink handle in the network namespace
// ns at once and then every interval, on a goroutine of g, until limit
// passes or g stops; the handle is closed then. b's cleanup stops g.
func (g *background) watchNetlink(b *testing.B, ns string, limit, every time.Duration, read func(h *netlink.Handle)) {
	b.Helper()
	h := netlinkAt(b, ns)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	g.cancel = cancel
	g.wg.Go(func() {
		defer h.Close()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			read(h)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	b.Cleanup(g.stop)
}
