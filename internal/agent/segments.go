package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/dataplane"
	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/membership"
	"github.com/herald-lb/herald/internal/netnsenter"
	"github.com/herald-lb/herald/internal/placement"
)

// segment is this node's presence on one interface.
type segment struct {
	iface     string
	member    *membership.Member
	responder *l2.Responder
	cancel    context.CancelFunc
	done      sync.WaitGroup
	// failed is set when the heartbeat or responder loop stopped on its
	// own (the interface was deleted, say): /healthz reports it.
	failed   atomic.Pointer[string]
	eligible []netip.Addr
	// eligibleSet is eligible as a set.
	eligibleSet map[netip.Addr]bool
	// eligibleSince is when each address became eligible here: a node
	// claims nothing new until it has been eligible for an interval, so
	// the peers' eligibility has had time to arrive.
	eligibleSince map[netip.Addr]time.Time
	// releasing are addresses this node answers but may no longer
	// announce here (drained by the exclude label, endpoint gone, policy
	// changed), with when that began: it keeps answering until a peer
	// claims them or LeaveGrace passes — make before break.
	releasing map[netip.Addr]time.Time
	answering map[netip.Addr]bool
	claims    map[netip.Addr]bool
	// leavingSince is when the segment started leaving (zero: it is not).
	leavingSince time.Time
	// dirty: decide again (eligibility, a probe, the clock changed).
	dirty bool
	// updated is set by the membership's updates (a peer joined, died or
	// changed its claims) for the main loop.
	updated atomic.Bool
	// wakeAt is the earliest time a decision here changes by the clock
	// alone (an address settles, a hand-over's grace ends); zero: none.
	wakeAt time.Time
	// peerClaims are the claims of the live peers that were not leaving
	// at the last decision, by node (the snapshot's lists, shared, not
	// copied): a peer missing from the next one died or is leaving.
	peerClaims map[string][]netip.Addr
	// takeoverFrom are addresses such a departed peer claimed, with when
	// this node noticed the departure: if this node starts answering one
	// within takeoverWindow, it took it over.
	takeoverFrom map[netip.Addr]time.Time
	// handovers times those take-overs to their first announcement.
	handovers *handovers
}

// setEligible records the addresses this node may announce on the segment.
func (s *segment) setEligible(eligible []netip.Addr, now time.Time) {
	s.eligible = eligible
	set := make(map[netip.Addr]bool, len(eligible))
	for _, ip := range eligible {
		set[ip] = true
		if _, ok := s.eligibleSince[ip]; !ok {
			s.eligibleSince[ip] = now
		}
		delete(s.releasing, ip)
	}
	for ip := range s.eligibleSince {
		if !set[ip] {
			delete(s.eligibleSince, ip)
		}
	}
	s.eligibleSet = set
}

// startSegment opens the heartbeat member and the responder on an
// interface, inside the node's network namespace.
func (a *Agent) startSegment(name string) (*segment, error) {
	seg := &segment{
		iface: name, answering: map[netip.Addr]bool{}, claims: map[netip.Addr]bool{},
		eligibleSince: map[netip.Addr]time.Time{}, releasing: map[netip.Addr]time.Time{},
		takeoverFrom: map[netip.Addr]time.Time{},
		handovers:    newHandovers(a.met.takeover.WithLabelValues(name)),
	}
	log := a.log.With("interface", name)
	err := netnsenter.DoOptional(a.opts.NetNS, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("find interface: %w", err)
		}
		seg.member, err = membership.New(membership.Config{
			Interface: name, Node: a.opts.NodeName, ClusterID: a.opts.ClusterID, Keys: a.keys,
			Interval: a.opts.Interval, DeadAfter: a.opts.DeadAfter, Registerer: a.opts.Registerer, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("start heartbeats: %w", err)
		}
		seg.responder, err = l2.NewResponder(ifi, l2.Options{
			Logger: log, Metrics: a.l2m, OnConflict: a.onConflict, DefendInterval: a.opts.DefendInterval,
			OnFirstAnnouncement: seg.handovers.announced,
		})
		if err != nil {
			_ = seg.member.Close()
			return fmt.Errorf("start responder: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	seg.cancel = cancel
	fail := func(what string, err error) {
		msg := what + ": " + err.Error()
		seg.failed.Store(&msg)
		log.Warn(what, "err", err)
	}
	seg.done.Go(func() {
		if err := seg.member.Run(ctx); err != nil && ctx.Err() == nil {
			fail("heartbeats stopped", err)
		}
	})
	seg.done.Go(func() {
		if err := seg.responder.Run(ctx); err != nil && ctx.Err() == nil {
			fail("responder stopped", err)
		}
	})
	seg.done.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-seg.member.Updates():
				if !ok {
					return
				}
				seg.updated.Store(true)
				signal(a.updates)
			}
		}
	})
	log.Info("announcing on interface")
	return seg, nil
}

// stopSegment ends the presence on an interface; with leave, peers are told
// first so they take over at once.
func (a *Agent) stopSegment(seg *segment, leave bool) {
	if leave {
		ctx, cancel := context.WithTimeout(context.Background(), 3*a.opts.Interval)
		_ = seg.member.Leave(ctx)
		cancel()
	}
	seg.responder.SetOwned(nil)
	for ip := range seg.answering {
		a.met.owned.DeleteLabelValues(ip.String(), seg.iface)
	}
	seg.cancel()
	seg.done.Wait()
	a.log.Info("stopped announcing on interface", "interface", seg.iface)
}

// decide runs placement for every eligible address of a segment and applies
// the outcome: heartbeat claims, answers, probes. With leaving, the node
// hands everything over: it keeps answering each address until its
// successor claims it, and the result counts those still waiting for one.
// Without, it reports whether the answered set changed.
func (a *Agent) decide(seg *segment, leaving bool) int {
	pending, changed := a.decideSegment(seg, leaving)
	if leaving {
		return pending
	}
	if changed {
		return 1
	}
	return 0
}

// decideSegment is decide's work: pending hand-overs (leaving) and whether
// the answers changed.
func (a *Agent) decideSegment(seg *segment, leaving bool) (pending int, changed bool) {
	snap := seg.member.Snapshot()
	now := time.Now()
	seg.noteDepartures(snap, now)
	eligibleBy := map[netip.Addr][]string{}
	claimedBy := map[netip.Addr][]string{}
	var leavingPeers []string
	for _, p := range snap.Peers {
		if p.Leaving {
			leavingPeers = append(leavingPeers, p.Node)
		}
		for _, ip := range p.Eligible {
			eligibleBy[ip] = append(eligibleBy[ip], p.Node)
		}
		for _, ip := range p.Claims {
			claimedBy[ip] = append(claimedBy[ip], p.Node)
			// Only while a Service uses it: a peer's claim heard just after
			// a release must not spare the address its next probe.
			if !a.seenClaimed[ip] && len(a.state.users[ip]) > 0 {
				a.seenClaimed[ip] = true
			}
		}
	}
	if leaving {
		leavingPeers = append(leavingPeers, a.opts.NodeName)
	}
	claims := map[netip.Addr]bool{}
	answer := map[netip.Addr]bool{}
	type verdict struct {
		d placement.Decision
		v placement.View
	}
	why := map[netip.Addr]verdict{}
	candidates := seg.eligible
	if leaving {
		candidates = slices.Collect(maps.Keys(seg.answering))
	}
	a.met.decides.Inc()
	a.met.addressesDecided.Add(float64(len(candidates)))
	seg.wakeAt = time.Time{}
	wakeAt := func(t time.Time) {
		if t.After(now) && (seg.wakeAt.IsZero() || t.Before(seg.wakeAt)) {
			seg.wakeAt = t
		}
	}
	for _, ip := range candidates {
		if settles := seg.eligibleSince[ip].Add(a.opts.Interval); !leaving && settles.After(now) {
			wakeAt(settles)
		}
		v := placement.View{
			Self:      a.opts.NodeName,
			Eligible:  append([]string{a.opts.NodeName}, eligibleBy[ip]...),
			Claimants: claimedBy[ip],
			Leaving:   leavingPeers,
			Settled:   snap.Settled && now.Sub(seg.eligibleSince[ip]) >= a.opts.Interval,
			Defer:     a.undrained(seg.eligibleSince[ip]),
		}
		if seg.claims[ip] {
			v.Claimants = append(v.Claimants, a.opts.NodeName)
		}
		d := placement.Decide(ip, v)
		if d.Answer && !seg.answering[ip] {
			why[ip] = verdict{d, v} // for the log line of a new answer
		}
		if leaving {
			// Keep answering what this node answers until the successor
			// claims it; with no successor there is nothing to wait for.
			if seg.answering[ip] && !d.OwnerClaims {
				answer[ip], claims[ip] = true, true
				if d.Owner != "" && d.Owner != a.opts.NodeName {
					pending++
				}
			}
			continue
		}
		if a.probeBlocked(ip) {
			continue // a foreign host used it before it was ever announced (reported)
		}
		if d.Claim && !a.mayAnswer(seg, ip) {
			// Being probed: not claimed yet, so peers do not mistake it
			// for an address Herald already announces.
			continue
		}
		if d.Claim {
			claims[ip] = true
		}
		if d.Answer {
			answer[ip] = true
		}
	}
	if !leaving {
		// Addresses answered here that are no longer eligible here: keep
		// answering (and claiming, which peers ignore since this node no
		// longer advertises eligibility) until another node claims them.
		for ip := range seg.answering {
			if seg.eligibleSet[ip] {
				continue
			}
			since, ok := seg.releasing[ip]
			if !ok {
				since = now
				seg.releasing[ip] = now
				a.log.Info("address no longer eligible here; answering until a successor claims it", "ip", ip, "interface", seg.iface)
			}
			if len(claimedBy[ip]) == 0 && now.Sub(since) < a.opts.LeaveGrace {
				answer[ip], claims[ip] = true, true
				wakeAt(since.Add(a.opts.LeaveGrace))
			}
		}
		for ip := range seg.releasing {
			if !answer[ip] {
				delete(seg.releasing, ip)
			}
		}
	}
	advertised := seg.eligible
	if !snap.Settled || leaving {
		// Until this node has heard every live peer it advertises nothing
		// new, so peers keep serving while it warms up.
		advertised = nil
	}
	if err := seg.member.SetState(advertised, sortedAddrs(claims)); err != nil {
		a.log.Warn("cannot publish claims", "interface", seg.iface, "err", err)
	}
	seg.claims = claims
	if !maps.Equal(seg.answering, answer) {
		changed = true
		var started, stopped []netip.Addr
		for ip := range answer {
			if !seg.answering[ip] {
				a.seenClaimed[ip] = true
				started = append(started, ip)
				a.met.owned.WithLabelValues(ip.String(), seg.iface).Set(1)
				if since, ok := seg.takeoverFrom[ip]; ok {
					// Timed up to its first announcement, which
					// SetOwned below schedules.
					delete(seg.takeoverFrom, ip)
					seg.handovers.expect(ip, since)
				}
			}
		}
		for ip := range seg.answering {
			if !answer[ip] {
				stopped = append(stopped, ip)
				a.met.owned.DeleteLabelValues(ip.String(), seg.iface)
				seg.handovers.forget(ip)
			}
		}
		// One line per address while that stays readable; a fail-over of
		// thousands is one line.
		if len(started)+len(stopped) <= maxLoggedAddrs {
			for _, ip := range started {
				w := why[ip]
				a.log.Info("answering", "ip", ip, "interface", seg.iface, "reason", w.d.Reason,
					"eligible", w.v.Eligible, "claimants", w.v.Claimants)
			}
			for _, ip := range stopped {
				a.log.Info("stopped answering", "ip", ip, "interface", seg.iface)
			}
		} else {
			a.log.Info("answering changed", "interface", seg.iface, "started", len(started), "stopped", len(stopped),
				"answering", len(answer))
		}
		seg.answering = answer
		seg.responder.SetOwned(sortedAddrs(answer))
	}
	return pending, changed
}

// noteDepartures compares the live peers of snap with those of the last
// decision: the claims of a peer that died or started leaving since become
// candidates for the take-over histogram, timed from when the membership
// published the change (snap.Changed). Candidates older than
// takeoverWindow are dropped. The cost follows the peers, plus the
// departed peers' claims.
func (seg *segment) noteDepartures(snap membership.Snapshot, now time.Time) {
	live := make(map[string][]netip.Addr, len(snap.Peers))
	for _, p := range snap.Peers {
		if !p.Leaving {
			live[p.Node] = p.Claims
		}
	}
	at := snap.Changed
	if at.IsZero() || at.After(now) {
		at = now
	}
	for node, claims := range seg.peerClaims {
		if _, ok := live[node]; ok {
			continue
		}
		for _, ip := range claims {
			seg.takeoverFrom[ip] = at
		}
	}
	seg.peerClaims = live
	for ip, since := range seg.takeoverFrom {
		if now.Sub(since) > takeoverWindow {
			delete(seg.takeoverFrom, ip)
		}
	}
}

// maxLoggedAddrs is the most addresses a decision logs one by one.
const maxLoggedAddrs = 16

// undrainWindow is how long after the exclude label went away an address
// that becomes eligible counts as eligible because of it.
const undrainWindow = 10 * time.Second

// undrained reports whether an address that became eligible at since did
// so because the node's exclude label went away: ending a drain moves no
// address back that another node serves (placement's View.Defer).
func (a *Agent) undrained(since time.Time) bool {
	return !a.undrainedAt.IsZero() && !since.Before(a.undrainedAt) && since.Sub(a.undrainedAt) < undrainWindow
}

// leave hands every address over: a last "leaving" heartbeat on each
// segment, then answers continue until each successor claims or the grace
// window ends.
func (a *Agent) leave() {
	if len(a.segments) == 0 {
		return
	}
	a.handedOver = true
	a.log.Info("leaving: handing addresses over")
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.LeaveGrace)
	defer cancel()
	for _, seg := range a.segments {
		if seg.leavingSince.IsZero() {
			_ = seg.member.Leave(ctx)
		}
	}
	tick := time.NewTicker(a.opts.Interval / 2)
	defer tick.Stop()
handover:
	for {
		pending := 0
		for _, seg := range a.segments {
			pending += a.decide(seg, true)
		}
		if pending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			a.log.Warn("grace window over before every successor claimed", "pending", pending)
			break handover
		case <-tick.C:
		}
	}
	for name, seg := range a.segments {
		a.stopSegment(seg, false)
		delete(a.segments, name)
	}
	a.trackAnswers()
}

// openDataplane resolves --dataplane (auto asks dataplane.Detect) and opens
// Herald's nftables table when this node should forward.
func (a *Agent) openDataplane() error {
	mode := a.opts.Dataplane
	a.dataPlane = heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone}
	if mode == DataplaneAuto {
		m, why, err := dataplane.Detect(a.opts.NetNS)
		if err != nil {
			return fmt.Errorf("detect the data plane: %w", err)
		}
		mode = DataplaneNFTables
		a.dataPlane.Evidence = why
		if m == dataplane.ModeNone {
			mode = DataplaneNone
			a.log.Info("another data plane forwards load-balancer traffic; Herald only announces", "evidence", why)
		}
	}
	if mode != DataplaneNFTables {
		return nil
	}
	a.dataPlane.Mode = heraldv1.DataPlaneNFTables
	t, err := dataplane.Open(dataplane.Options{NetNS: a.opts.NetNS, Logger: a.log})
	if err != nil {
		return fmt.Errorf("open the nftables data plane: %w", err)
	}
	a.table = t
	return nil
}

// syncDataplane passes the table the views of the Services that changed,
// one group per Service (an empty view removes its group), and nothing
// else: the table compares just those with what it holds and sends only
// the changes, so the cost follows what changed, not the number of
// Services. A failure keeps the Services pending and is retried (see
// nextWake); the previous rules keep forwarding meanwhile.
func (a *Agent) syncDataplane(ctx context.Context) {
	if a.table == nil || (len(a.dpDirty) == 0 && a.dpFailed.IsZero()) {
		return
	}
	groups := make(map[string][]dataplane.Service, len(a.dpDirty))
	for key := range a.dpDirty {
		groups[key] = a.state.dataplane[key]
	}
	err := a.table.Update(ctx, groups)
	if err != nil && !errors.Is(err, dataplane.ErrInvalidService) {
		a.log.Warn("programming the nftables data plane failed; retrying", "err", err)
		a.dpFailed = time.Now()
		return
	}
	if len(a.dpDirty) > 1024 {
		a.dpDirty = nil // Go maps do not shrink: the first plan's is dropped
	} else {
		clear(a.dpDirty)
	}
	a.dpFailed = time.Time{}
	if err != nil {
		// Valid services are programmed; the error names the others.
		a.log.Warn("some services cannot be forwarded", "err", err)
	}
}

// dataplaneCheckEvery is how often the agent makes sure its nftables table
// is still what it programmed: a firewall reload (nft flush ruleset) would
// otherwise leave the node without it until the next change.
const dataplaneCheckEvery = time.Minute

// checkDataplane rebuilds the table if it is not what the agent left.
func (a *Agent) checkDataplane(ctx context.Context, now time.Time) {
	if a.table == nil || now.Sub(a.dpChecked) < dataplaneCheckEvery {
		return
	}
	a.dpChecked = now
	rebuilt, err := a.table.Check(ctx)
	switch {
	case err != nil:
		a.log.Warn("checking the nftables table failed", "err", err)
	case rebuilt:
		a.log.Warn("the nftables table had been changed or removed by someone else; rebuilt it")
	}
}

// checkKernelARP looks for kube-proxy's IPVS mode without strictARP: the
// node's own kernel then answers ARP for every load-balancer address on
// the interfaces Herald announces on (and the LAN ones), beside the one
// owner Herald chose. Herald cannot stop that without changing the host's
// sysctls, which are kube-proxy's to set; it reports it, in the HeraldNode
// and through it in every Service's herald.dev/Announced condition.
func (a *Agent) checkKernelARP() {
	var names []string
	for _, i := range a.ifaces {
		if i.LAN || a.segments[i.Name] != nil || len(a.state.eligible[i.Name]) > 0 {
			names = append(names, i.Name)
		}
	}
	got, err := dataplane.KernelARPInterfaces(a.opts.NetNS, names)
	if err != nil {
		a.log.Warn("checking whether the kernel answers ARP for kube-ipvs0's addresses failed", "err", err)
		return // keep what was known
	}
	if slices.Equal(got, a.dataPlane.KernelARPInterfaces) {
		return
	}
	if len(got) > 0 {
		a.log.Warn("kube-proxy's IPVS mode without strictARP: this node's kernel answers ARP for every load-balancer address "+
			"on kube-ipvs0, so several nodes answer for one address; set ipvs.strictARP: true in kube-proxy's configuration",
			"interfaces", got)
	} else if len(a.dataPlane.KernelARPInterfaces) > 0 {
		a.log.Info("the kernel no longer answers ARP for kube-ipvs0's addresses", "interfaces", a.dataPlane.KernelARPInterfaces)
	}
	a.dataPlane.KernelARPInterfaces = got
	a.statusDirty = true
}
