package labbench_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/herald-lb/herald/internal/lab/labnet"
)

type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// get does one GET of path from addr (host:port) on a new connection made
// by dial, reads the whole body into buf's size chunks and returns the body
// size. Anything but a 200 with the announced length is an error. ctx
// bounds the whole exchange.
func get(ctx context.Context, dial dialFunc, addr, path string, buf []byte) (int64, error) {
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: herald-lab-bench\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 64<<10), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("GET %s%s: %d of %d bytes", addr, path, n, resp.ContentLength)
	}
	return n, nil
}

// inClient runs fn on one OS thread inside the client's network namespace,
// with a plain dialer: no namespace switch per connection in the timings.
func (e *env) inClient(fn func(dial dialFunc) error) error {
	return labnet.In(e.st.Topology.Client.NetNS, func() error {
		var d net.Dialer
		return fn(d.DialContext)
	})
}

// getOK reports whether n GETs of / from the VIP in a row succeed, each
// within timeout.
func (e *env) getOK(b *testing.B, n int, timeout time.Duration) bool {
	dial := labnet.Dialer(e.st.Topology.Client.NetNS)
	buf := make([]byte, 4096)
	for range n {
		ctx, cancel := context.WithTimeout(b.Context(), timeout)
		_, err := get(ctx, dial, net.JoinHostPort(e.vip, "80"), "/", buf)
		cancel()
		if err != nil {
			return false
		}
	}
	return true
}

// sample is one request of a prober.
type sample struct {
	start, end time.Time
	err        error
}

// prober GETs / from the VIP every interval, each on a new connection with
// its own timeout, concurrently, and keeps every result. It stops by itself
// after max.
type prober struct {
	background
	every, timeout time.Duration
	mu             sync.Mutex
	samples        []sample
}

const (
	probeEvery   = 10 * time.Millisecond
	probeTimeout = 100 * time.Millisecond
)

func (e *env) startProber(b *testing.B, max time.Duration) *prober {
	b.Helper()
	return e.startProberFrom(b, e.st.Topology.Client.NetNS, e.vip, max)
}

// startProberFrom is startProber from the network namespace netns (the
// LAN client's or the far client's) to port 80 of vip.
func (e *env) startProberFrom(b *testing.B, netns, vip string, max time.Duration) *prober {
	b.Helper()
	dial := labnet.Dialer(netns)
	addr := net.JoinHostPort(vip, "80")
	ctx, cancel := context.WithTimeout(context.Background(), max)
	p := &prober{every: probeEvery, timeout: probeTimeout}
	p.cancel = cancel
	p.wg.Go(func() {
		t := time.NewTicker(p.every)
		defer t.Stop()
		for n := 0; n < int(max/p.every); n++ {
			start := time.Now()
			p.wg.Go(func() {
				rctx, cancel := context.WithTimeout(ctx, p.timeout)
				defer cancel()
				_, err := get(rctx, dial, addr, "/", make([]byte, 4096))
				if ctx.Err() != nil {
					return // stopped: not a sample
				}
				p.mu.Lock()
				p.samples = append(p.samples, sample{start: start, end: time.Now(), err: err})
				p.mu.Unlock()
			})
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	b.Cleanup(p.stop)
	return p
}

// snapshot returns the samples so far, by start time.
func (p *prober) snapshot() []sample {
	p.mu.Lock()
	s := slices.Clone(p.samples)
	p.mu.Unlock()
	sort.Slice(s, func(i, j int) bool { return s[i].start.Before(s[j].start) })
	return s
}

// clean reports whether every request that ended in the last d succeeded,
// and enough of them ended.
func (p *prober) clean(d time.Duration) bool {
	since := time.Now().Add(-d)
	n := 0
	for _, s := range p.snapshot() {
		if s.end.Before(since) {
			continue
		}
		if s.err != nil {
			return false
		}
		n++
	}
	return n >= int(d/p.every)*7/10
}

// waitClean waits until the last d was clean.
func (p *prober) waitClean(b *testing.B, d, timeout time.Duration) {
	b.Helper()
	if err := poll(b.Context(), timeout, func() (bool, error) { return p.clean(d), nil }); err != nil {
		fails, _, kinds := p.failures(time.Now().Add(-d), time.Now())
		b.Fatalf("requests to the VIP did not run clean for %s within %s: %d failed in the last %s (%s)", d, timeout, fails, d, kinds)
	}
}

// gap is a stretch without a successful response.
type gap struct {
	from time.Time // the last success before
	len  time.Duration
}

// gaps returns the stretches longer than min between consecutive
// successful responses that end in [from, to] (the success just before
// from counts as the start of the first).
func (p *prober) gaps(from, to time.Time, min time.Duration) []gap {
	var ends []time.Time
	for _, s := range p.snapshot() {
		if s.err == nil {
			ends = append(ends, s.end)
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	var out []gap
	var prev time.Time
	for _, t := range ends {
		if t.After(to) {
			break
		}
		if !t.Before(from) && !prev.IsZero() && t.Sub(prev) > min {
			out = append(out, gap{from: prev, len: t.Sub(prev)})
		}
		prev = t
	}
	return out
}

// longest returns the longest of gs, or 0.
func longest(gs []gap) time.Duration {
	var m time.Duration
	for _, g := range gs {
		m = max(m, g.len)
	}
	return m
}

// failures counts the requests started in [from, to) and those that failed,
// with the kinds of error.
func (p *prober) failures(from, to time.Time) (failed, total int, kinds string) {
	count := map[string]int{}
	for _, s := range p.snapshot() {
		if s.start.Before(from) || !s.start.Before(to) {
			continue
		}
		total++
		if s.err != nil {
			failed++
			count[errorKind(s.err)]++
		}
	}
	var parts []string
	for k, n := range count {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	slices.Sort(parts)
	return failed, total, strings.Join(parts, ", ")
}

// errorKind names what went wrong with a request.
func errorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "other (" + err.Error() + ")"
}

// describe renders gaps relative to t0 for logs.
func describe(gs []gap, t0 time.Time) string {
	var parts []string
	for _, g := range gs {
		parts = append(parts, fmt.Sprintf("%s at %+dms", g.len.Round(time.Millisecond), g.from.Sub(t0).Milliseconds()))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// distribution reports p50, p99 and max of ds in ms on b.
func distribution(b *testing.B, unit string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	b.ReportMetric(ms(percentile(ds, 0.50)), "p50-"+unit)
	b.ReportMetric(ms(percentile(ds, 0.99)), "p99-"+unit)
	b.ReportMetric(ms(ds[len(ds)-1]), "max-"+unit)
	b.Logf("%s over %d trials: p50 %s p99 %s max %s", unit, len(ds), percentile(ds, 0.5), percentile(ds, 0.99), ds[len(ds)-1])
}

// percentile of sorted ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	return ds[min(len(ds)-1, int(p*float64(len(ds))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// macChange is the client's neighbour entry for the VIP taking a new MAC.
type macChange struct {
	at  time.Time
	mac string
}

// macWatcher records the MAC the client's kernel uses for the VIP, read
// over netlink every 10 ms, to tell which node the traffic went to.
type macWatcher struct {
	background
	mu      sync.Mutex
	changes []macChange
}

func (e *env) watchMAC(b *testing.B, limit time.Duration) *macWatcher {
	b.Helper()
	vip := net.ParseIP(e.vip)
	w := &macWatcher{}
	last := ""
	w.watchNetlink(b, e.st.Topology.Client.NetNS, limit, 10*time.Millisecond, func(h *netlink.Handle) {
		neighs, err := h.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			return
		}
		mac := ""
		for _, n := range neighs {
			if n.IP.Equal(vip) && len(n.HardwareAddr) > 0 {
				mac = n.HardwareAddr.String()
			}
		}
		if mac != last {
			w.mu.Lock()
			w.changes = append(w.changes, macChange{at: time.Now(), mac: mac})
			w.mu.Unlock()
			last = mac
		}
	})
	return w
}

// describe renders the MACs the client used from t0 on, with node names.
func (w *macWatcher) describe(t0 time.Time, names map[string]string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for i, c := range w.changes {
		name := names[c.mac]
		if name == "" {
			name = c.mac
		}
		if c.mac == "" {
			name = "(none)"
		}
		if c.at.Before(t0) {
			if i+1 < len(w.changes) && !w.changes[i+1].at.After(t0) {
				continue
			}
			parts = append(parts, name)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s at %+dms", name, c.at.Sub(t0).Milliseconds()))
	}
	return strings.Join(parts, " → ")
}
