package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/l2"
)

// /healthz: healthy while starting and while the main loop answers;
// unhealthy, saying why, when a segment's loop ended, the informers
// stopped, or the main loop does not answer.
func TestHealth(t *testing.T) {
	a := &Agent{pings: make(chan chan struct{})}
	if err := a.Healthy(context.Background()); err != nil {
		t.Fatalf("starting: %v", err)
	}
	a.health.synced()
	stop := make(chan struct{})
	go func() { // the main loop's part
		for {
			select {
			case r := <-a.pings:
				close(r)
			case <-stop:
				return
			}
		}
	}()
	if err := a.Healthy(context.Background()); err != nil {
		t.Fatalf("answering: %v", err)
	}
	a.health.segments("interface eth0: responder stopped: read: no such device")
	if err := a.Healthy(context.Background()); err == nil || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("segment down: %v", err)
	}
	a.health.segments("")
	close(stop) // the main loop wedges
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := a.Healthy(ctx); err == nil || !strings.Contains(err.Error(), "main loop") {
		t.Fatalf("wedged: %v", err)
	}
	a.health.fail("informer cache stopped: boom")
	if err := a.Healthy(context.Background()); err == nil || !strings.Contains(err.Error(), "informer") {
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
