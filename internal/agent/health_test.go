package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/l2"
)

// /healthz: healthy while starting and while the loops turn; unhealthy,
// saying why, when the main loop stalls, a segment's loop ended, or the
// informers stopped.
func TestHealth(t *testing.T) {
	var h health
	now := time.Now()
	if err := h.check(now); err != nil {
		t.Fatalf("starting: %v", err)
	}
	h.synced()
	h.turned(now)
	if err := h.check(now.Add(time.Second)); err != nil {
		t.Fatalf("turning: %v", err)
	}
	if err := h.check(now.Add(stallLimit + time.Second)); err == nil || !strings.Contains(err.Error(), "main loop") {
		t.Fatalf("stalled: %v", err)
	}
	h.turned(now.Add(stallLimit))
	h.segments("interface eth0: responder stopped: read: no such device")
	if err := h.check(now.Add(stallLimit)); err == nil || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("segment down: %v", err)
	}
	h.segments("")
	if err := h.check(now.Add(stallLimit)); err != nil {
		t.Fatalf("segment back: %v", err)
	}
	h.fail("informer cache stopped: boom")
	if err := h.check(now.Add(stallLimit)); err == nil || !strings.Contains(err.Error(), "informer") {
		t.Fatalf("informers stopped: %v", err)
	}
}

// The probe pool reports every job queued, and its workers end with the
// context (so no probe outlives the agent).
func TestProberReportsEveryJobAndStops(t *testing.T) {
	results := make(chan probeResult)
	p := newProber(nil, l2.ProbeOptions{}, results)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	const jobs = 20
	for i := range jobs {
		// No such interface: each probe fails at once, which is enough to
		// see every job reported.
		p.enqueue(probeJob{addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), iface: "no-such-interface"})
	}
	for range jobs {
		select {
		case r := <-results:
			if r.err == nil {
				t.Fatalf("probe on a missing interface: %+v", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a probe was not reported")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the probe workers did not end with the context")
	}
}
