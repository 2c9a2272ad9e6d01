package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/netnsenter"
)

// Another host on the LAN using a load-balancer address is handled by when
// it is found:
//
//   - Before the address was ever announced (the RFC 5227 probe / DAD that
//     precedes a first announcement finds it): the address is not
//     announced, the conflict goes into the HeraldNode status (phase
//     Probe), and the controller gives the Service another address and
//     excludes this one. The agent probes it again every ConflictReprobe and
//     drops the entry once it is free. The entry survives agent restarts:
//     the agent reads it back from its own status when it starts.
//   - While this node announces it: the node keeps the address and keeps
//     answering (an address users put in DNS and firewalls must not move
//     because of one stray or forged frame), defends it with one
//     announcement at most every DefendInterval, and reports it (phase
//     Announced) until the other host has been quiet for ConflictHold.
//
// A Herald node is never a foreign host: frames from the MAC of a peer —
// authenticated, or heard with another heartbeat key — are hand-overs or a
// key mismatch, which placement and the status report, never a conflict.

type probeStatus int

const (
	probeRunning probeStatus = iota + 1
	probePassed
	probeFailed
)

// conflictRecord is another host found using an address.
type conflictRecord struct {
	mac       string
	iface     string
	since     time.Time
	last      time.Time // last frame (Announced) or last probe (Probe)
	lastProbe time.Time
}

type probeResult struct {
	addr     netip.Addr
	iface    string
	conflict *l2.Conflict
	err      error
}

// probeJob is one probe to run.
type probeJob struct {
	addr  netip.Addr
	iface string
}

// maxConcurrentProbes bounds the probes running at once: a thousand new
// Services must not open a thousand sockets and goroutines. Each probe
// covers up to l2.MaxProbeBatch queued addresses of one interface and
// family at once.
const maxConcurrentProbes = 4

// prober runs probes on a fixed pool of workers, in the node's network
// namespace, and ends them when its context ends.
type prober struct {
	ns      *netns.NsHandle
	opts    l2.ProbeOptions
	results chan<- probeResult

	mu    sync.Mutex
	queue []probeJob
	wake  chan struct{}
}

func newProber(ns *netns.NsHandle, opts l2.ProbeOptions, results chan<- probeResult) *prober {
	return &prober{ns: ns, opts: opts, results: results, wake: make(chan struct{}, maxConcurrentProbes)}
}

// enqueue adds a probe; the caller keeps at most one per address queued
// or running (probeState), so the queue is bounded by the addresses.
func (p *prober) enqueue(j probeJob) {
	p.mu.Lock()
	p.queue = append(p.queue, j)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// next takes a batch: the first queued job and every other queued job of
// the same interface and family, up to l2.MaxProbeBatch.
func (p *prober) next() []probeJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil
	}
	first := p.queue[0]
	batch := []probeJob{first}
	rest := p.queue[:0]
	for _, j := range p.queue[1:] {
		if len(batch) < l2.MaxProbeBatch && j.iface == first.iface && j.addr.Is6() == first.addr.Is6() {
			batch = append(batch, j)
		} else {
			rest = append(rest, j)
		}
	}
	p.queue = rest
	return batch
}

// run serves the queue with maxConcurrentProbes workers until ctx ends.
func (p *prober) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range maxConcurrentProbes {
		wg.Go(func() {
			for {
				batch := p.next()
				if batch == nil {
					select {
					case <-ctx.Done():
						return
					case <-p.wake:
						continue
					}
				}
				for _, r := range p.probe(ctx, batch) {
					select {
					case p.results <- r:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// probe runs one RFC 5227 probe / DAD for a batch on its interface and
// returns one result per address.
func (p *prober) probe(ctx context.Context, batch []probeJob) []probeResult {
	iface := batch[0].iface
	addrs := make([]netip.Addr, len(batch))
	for i, j := range batch {
		addrs[i] = j.addr
	}
	var conflicts []l2.Conflict
	err := netnsenter.DoOptional(p.ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("find interface: %w", err)
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conflicts, err = l2.ProbeMany(pctx, ifi, addrs, p.opts)
		return err
	})
	found := make(map[netip.Addr]*l2.Conflict, len(conflicts))
	for i := range conflicts {
		found[conflicts[i].Addr] = &conflicts[i]
	}
	out := make([]probeResult, len(batch))
	for i, addr := range addrs {
		out[i] = probeResult{addr: addr, iface: iface, conflict: found[addr.Unmap()], err: err}
	}
	return out
}

// mayAnswer gates the first claim of an address nobody has claimed: it is
// probed first (RFC 5227 / DAD) so Herald never takes an address a foreign
// host uses. Addresses seen claimed by any node were probed by that node,
// and addresses the Services show as announced once are Herald's for good;
// both are taken at once: fail-over must not wait for a probe.
func (a *Agent) mayAnswer(seg *segment, ip netip.Addr) bool {
	if a.opts.ProbeDisable || a.seenClaimed[ip] || a.state.announced[ip] > 0 || a.probeState[ip] == probePassed {
		return true
	}
	if a.probeState[ip] == probeRunning || a.probeState[ip] == probeFailed {
		return false
	}
	a.probeState[ip] = probeRunning
	a.prober.enqueue(probeJob{addr: ip, iface: seg.iface})
	return false
}

// probeBlocked reports whether a probe found a foreign host on ip before
// it was ever announced: then it is not announced.
func (a *Agent) probeBlocked(ip netip.Addr) bool {
	if a.state.announced[ip] > 0 {
		return false
	}
	_, ok := a.probeConflicts[ip]
	return ok
}

// probeDone records a probe's outcome.
func (a *Agent) probeDone(r probeResult) {
	now := time.Now()
	switch {
	case r.err != nil:
		if a.probeConflicts[r.addr] != nil {
			// A re-probe that could not run keeps the conflict.
			a.probeConflicts[r.addr].lastProbe = now
			a.probeState[r.addr] = probeFailed
			a.log.Warn("re-probe failed; keeping the address excluded", "ip", r.addr, "interface", r.iface, "err", r.err)
			return
		}
		a.log.Warn("probe failed; will retry", "ip", r.addr, "interface", r.iface, "err", r.err)
		delete(a.probeState, r.addr)
	case r.conflict != nil && a.isHeraldMAC(r.conflict.MAC):
		// Another Herald node already answers (with our key or another):
		// the address is Herald's, and placement settles who keeps it.
		a.seenClaimed[r.addr] = true
		delete(a.probeConflicts, r.addr)
		delete(a.probeState, r.addr)
	case r.conflict != nil:
		c := a.probeConflicts[r.addr]
		if c == nil {
			a.log.Warn("address in use by another host on the LAN before it was announced; not announcing it",
				"ip", r.addr, "mac", r.conflict.MAC.String(), "interface", r.conflict.Interface)
			c = &conflictRecord{since: now}
			a.probeConflicts[r.addr] = c
		}
		c.mac, c.iface, c.last, c.lastProbe = r.conflict.MAC.String(), r.conflict.Interface, now, now
		a.probeState[r.addr] = probeFailed
	default:
		if c := a.probeConflicts[r.addr]; c != nil {
			a.log.Info("address found in use earlier is free now", "ip", r.addr, "interface", r.iface, "was", c.mac)
			delete(a.probeConflicts, r.addr)
		}
		a.probeState[r.addr] = probePassed
	}
}

// scheduleReprobes probes again, every ConflictReprobe, the addresses a
// probe found in use, on the interface it found them on.
func (a *Agent) scheduleReprobes(now time.Time) {
	for ip, c := range a.probeConflicts {
		if a.probeState[ip] == probeRunning || now.Sub(c.lastProbe) < a.opts.ConflictReprobe {
			continue
		}
		if !slices.ContainsFunc(a.linkList, func(l link) bool { return l.Name == c.iface && l.Up }) {
			continue // the interface is gone or down: nothing to learn yet
		}
		a.probeState[ip] = probeRunning
		a.prober.enqueue(probeJob{addr: ip, iface: c.iface})
	}
}

// restoreConflicts reads back the probe conflicts this node reported
// before it restarted, so an excluded address stays excluded until a probe
// finds it free (the controller drops an exclusion the moment its reporter
// stops listing it).
func (a *Agent) restoreConflicts(ctx context.Context) {
	var hn heraldv1.HeraldNode
	if err := a.client.Get(ctx, client.ObjectKey{Name: a.opts.NodeName}, &hn); err != nil {
		if !isNotFoundOrNoMatch(err) {
			a.log.Warn("cannot read the previous HeraldNode status; earlier probe conflicts are forgotten", "err", err)
		}
		return
	}
	for _, c := range hn.Status.Conflicts {
		if c.Phase != heraldv1.ConflictProbe {
			continue
		}
		ip, err := netip.ParseAddr(c.Address)
		if err != nil {
			continue
		}
		// lastProbe zero: probed again as soon as the interface is known.
		a.probeConflicts[ip.Unmap()] = &conflictRecord{mac: c.MAC, iface: c.Interface, since: c.Since.Time, last: c.Since.Time}
		a.probeState[ip.Unmap()] = probeFailed
	}
	if n := len(a.probeConflicts); n > 0 {
		a.log.Info("restored addresses found in use before this restart", "addresses", n)
	}
}

// onConflict is called by responders (on their goroutines) when another
// MAC answers for an owned address.
func (a *Agent) onConflict(c l2.Conflict) {
	a.conflictsMu.Lock()
	if len(a.newConflicts) < 1024 {
		a.newConflicts = append(a.newConflicts, c)
	}
	a.conflictsMu.Unlock()
	signal(a.updates)
}

// drainConflicts classifies conflicts reported by responders: a Herald
// node's MAC is a hand-over in progress or a key mismatch (placement and
// the status settle those); any other MAC is a foreign host, and the owner
// defends the address and reports it — it never withdraws.
func (a *Agent) drainConflicts() (changed bool) {
	a.conflictsMu.Lock()
	cs := a.newConflicts
	a.newConflicts = nil
	a.conflictsMu.Unlock()
	now := time.Now()
	for _, c := range cs {
		if a.isHeraldMAC(c.MAC) {
			continue
		}
		rec := a.liveConflicts[c.Addr]
		if rec == nil || rec.mac != c.MAC.String() {
			a.log.Warn("another host claims an announced address; keeping it and defending it", "ip", c.Addr,
				"mac", c.MAC.String(), "interface", c.Interface, "kind", c.Kind)
			rec = &conflictRecord{mac: c.MAC.String(), iface: c.Interface, since: now}
			a.liveConflicts[c.Addr] = rec
			changed = true
		}
		rec.last = now
		if seg := a.segments[c.Interface]; seg != nil {
			seg.responder.Defend(c.Addr)
		}
	}
	return changed
}

// expireConflicts forgets conflicts on announced addresses whose other
// host has been quiet for ConflictHold, and those on addresses this node
// no longer answers.
func (a *Agent) expireConflicts(now time.Time) (changed bool) {
	for ip, c := range a.liveConflicts {
		if now.Sub(c.last) >= a.opts.ConflictHold || !a.answers(ip) {
			delete(a.liveConflicts, ip)
			changed = true
		}
	}
	return changed
}

// answers reports whether this node answers for ip on some interface.
func (a *Agent) answers(ip netip.Addr) bool {
	for _, seg := range a.segments {
		if seg.answering[ip] {
			return true
		}
	}
	return false
}

// isHeraldMAC reports whether mac is a Herald node heard on a segment:
// an authenticated peer, or an agent whose heartbeats fail authentication
// (another key) — a Herald node all the same, never a foreign host.
func (a *Agent) isHeraldMAC(mac net.HardwareAddr) bool {
	for _, seg := range a.segments {
		snap := seg.member.Snapshot()
		for _, p := range snap.Peers {
			if slices.Equal(p.HardwareAddr, mac) {
				return true
			}
		}
		for _, m := range snap.Mismatched {
			if slices.Equal(m.HardwareAddr, mac) {
				return true
			}
		}
	}
	return false
}
