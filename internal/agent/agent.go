// Package agent is Herald's node agent: the Kubernetes glue that decides,
// from L2AnnouncementPolicies, Services, EndpointSlices and the node's
// links, which addresses this node may announce on which interface
// (internal/announce), keeps a heartbeat presence on each such segment
// (internal/membership), settles with its peers which node answers for each
// address (internal/placement), and answers ARP/NDP for the addresses it owns
// (internal/l2). The API server is needed to learn what to announce, never to
// keep announcing or to fail over: liveness comes from the segment itself.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/dataplane"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/membership"
	"github.com/herald-lb/herald/internal/netnsenter"
	"github.com/herald-lb/herald/internal/placement"
)

// Options configure an Agent.
type Options struct {
	// NodeName is this node's Kubernetes name (required).
	NodeName string
	// ClusterID separates clusters sharing a LAN (default "herald").
	ClusterID string
	// Key authenticates heartbeats (HMAC); all agents of a cluster share
	// it (required, see membership.MinKeyLen).
	Key []byte
	// DefaultClass announces LoadBalancer Services without a class, as the
	// controller serves them.
	DefaultClass bool
	// Interval and DeadAfter tune heartbeats (membership defaults:
	// 50 ms, 6 intervals).
	Interval  time.Duration
	DeadAfter int
	// Probe configures the RFC 5227 probe / DAD run before an address is
	// first announced; Disabled skips it.
	Probe        l2.ProbeOptions
	ProbeDisable bool
	// Dataplane chooses who forwards load-balancer traffic (default none:
	// kube-proxy or Cilium does).
	Dataplane DataplaneMode
	// LeaveGrace bounds how long a stopping agent keeps answering after its
	// last "leaving" heartbeat while it waits for successors to claim; with
	// a data plane, the table then forwards for one more LeaveGrace before
	// it is removed, for clients that have not heard the successor yet.
	LeaveGrace time.Duration
	// NetNS, when set, is the network namespace holding the node's links;
	// the agent's raw sockets and link watch live there while its API
	// traffic uses the caller's namespace (tests run several agents in one
	// process this way). Nil means the caller's namespace.
	NetNS *netns.NsHandle
	// Registerer receives the herald_l2_* and herald_membership_* metrics.
	Registerer prometheus.Registerer
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ClusterID == "" {
		o.ClusterID = "herald"
	}
	if o.Interval == 0 {
		o.Interval = membership.DefaultInterval
	}
	if o.DeadAfter == 0 {
		o.DeadAfter = membership.DefaultDeadAfter
	}
	if o.LeaveGrace == 0 {
		o.LeaveGrace = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}

// Agent announces this node's share of the cluster's load-balancer
// addresses.
type Agent struct {
	opts   Options
	log    *slog.Logger
	cache  cache.Cache
	client client.Client
	status *statusWriter
	events record.EventBroadcaster
	l2m    *l2.Metrics

	trigger chan struct{}             // Kubernetes state changed
	links   chan []announce.Interface // latest link list
	updates chan struct{}             // a segment's membership changed
	probed  chan probeResult

	// State below is owned by the Run goroutine.
	ifaces       []announce.Interface
	segments     map[string]*segment
	seenClaimed  map[netip.Addr]bool // addresses some node claimed: no probe needed
	probeState   map[netip.Addr]probeStatus
	conflicts    map[netip.Addr]l2.Conflict
	conflictAt   map[netip.Addr]time.Time
	startFailed  map[string]time.Time // interfaces whose segment failed to start, and when
	lastPlan     announce.Plan
	table        *dataplane.Table    // nil without a data plane
	dpWant       []dataplane.Service // what the table should hold
	dpHave       []dataplane.Service // what the last successful Sync wrote
	handedOver   bool                // leave handed addresses to successors
	conflictsMu  sync.Mutex
	newConflicts []l2.Conflict
}

type probeStatus int

const (
	probeRunning probeStatus = iota + 1
	probePassed
	probeFailed
)

type probeResult struct {
	addr     netip.Addr
	conflict *l2.Conflict
	err      error
}

// segment is this node's presence on one interface.
type segment struct {
	iface     string
	member    *membership.Member
	responder *l2.Responder
	cancel    context.CancelFunc
	done      sync.WaitGroup
	eligible  []netip.Addr
	// eligibleSince is when each address became eligible here: a node
	// claims nothing new until it has been eligible for an interval, so
	// the peers' eligibility has had time to arrive.
	eligibleSince map[netip.Addr]time.Time
	answering     map[netip.Addr]bool
	claims        map[netip.Addr]bool
}

// New builds an agent for the cluster cfg points at.
func New(cfg *rest.Config, opts Options) (*Agent, error) {
	opts = opts.withDefaults()
	if opts.NodeName == "" {
		return nil, errors.New("node name is empty: set --node-name or NODE_NAME")
	}
	if len(opts.Key) < membership.MinKeyLen {
		return nil, fmt.Errorf("heartbeat key has %d bytes, want at least %d", len(opts.Key), membership.MinKeyLen)
	}
	scheme, err := kube.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			// Only this node's Node object: its labels feed nodeSelectors.
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", opts.NodeName)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create informer cache: %w", err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme, Cache: &client.CacheOptions{Reader: c}})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "herald-agent", Host: opts.NodeName})
	l2m, err := l2.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register l2 metrics: %w", err)
	}
	log := opts.Logger.With("component", "agent", "node", opts.NodeName)
	return &Agent{
		opts:        opts,
		log:         log,
		cache:       c,
		client:      cl,
		status:      newStatusWriter(cl, recorder, opts.NodeName, log),
		events:      broadcaster,
		l2m:         l2m,
		trigger:     make(chan struct{}, 1),
		links:       make(chan []announce.Interface, 1),
		updates:     make(chan struct{}, 1),
		probed:      make(chan probeResult, 16),
		segments:    map[string]*segment{},
		seenClaimed: map[netip.Addr]bool{},
		probeState:  map[netip.Addr]probeStatus{},
		conflicts:   map[netip.Addr]l2.Conflict{},
		conflictAt:  map[netip.Addr]time.Time{},
		startFailed: map[string]time.Time{},
	}, nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run announces until ctx is done, then leaves gracefully: peers are told
// at once, and this node keeps answering until its successors claim (or
// LeaveGrace passes).
func (a *Agent) Run(ctx context.Context) error {
	for _, obj := range []client.Object{&corev1.Service{}, &corev1.Node{}, &discoveryv1.EndpointSlice{}, &heraldv1.L2AnnouncementPolicy{}} {
		inf, err := a.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("start informer for %T: %w", obj, err)
		}
		h := toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { signal(a.trigger) },
			UpdateFunc: func(any, any) { signal(a.trigger) },
			DeleteFunc: func(any) { signal(a.trigger) },
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	// The cache and the status writer outlive ctx a little: a stopping
	// agent still reads state while it hands over.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.cache.Start(bg); err != nil {
			a.log.Error("informer cache stopped", "err", err)
		}
	})
	wg.Go(func() { a.status.run(bg) })
	defer wg.Wait()
	defer stopBG()
	defer a.events.Shutdown()

	linkErr := make(chan error, 1)
	wg.Go(func() { linkErr <- watchLinks(bg, a.opts.NetNS, a.links, a.log) })

	if !a.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("informer caches did not sync")
	}
	if err := a.openDataplane(); err != nil {
		return err
	}
	if a.table != nil {
		defer func() {
			// A clean stop removes Herald's table, after the hand-over
			// and one more grace window: clients whose ARP/NDP cache
			// still names this node keep being forwarded while the
			// successors' announcements reach them. A crash leaves the
			// table forwarding until the next agent's first Sync.
			if a.handedOver {
				time.Sleep(a.opts.LeaveGrace)
			}
			if err := a.table.Close(true); err != nil {
				a.log.Warn("removing the nftables table failed", "err", err)
			}
		}()
	}
	a.log.Info("agent started", "dataplane", a.table != nil)
	tick := time.NewTicker(a.opts.Interval)
	defer tick.Stop()
	linksKnown := false
	// replan is set by what changes eligibility (the API's objects, the
	// links); heartbeats, probes and the clock only change decisions, and
	// re-deciding is cheap where re-planning reads every Service.
	replan := true
	for {
		select {
		case <-ctx.Done():
			a.leave()
			return nil
		case err := <-linkErr:
			a.leave()
			return fmt.Errorf("watching links: %w", err)
		case a.ifaces = <-a.links:
			linksKnown, replan = true, true
		case <-a.trigger:
			replan = true
		case <-a.updates:
		case r := <-a.probed:
			a.probeDone(r)
		case <-tick.C:
			// Settling, leaving peers and grace windows change with time
			// alone.
		}
		if !linksKnown {
			continue // deciding without the node's links would report false problems
		}
		a.reconcile(ctx, replan)
		replan = false
	}
}

// reconcile brings segments, claims and answers in line with the current
// Kubernetes state and links (re-read when replan is set) and heartbeats.
func (a *Agent) reconcile(ctx context.Context, replan bool) {
	plan := a.lastPlan
	if replan {
		p, err := a.plan(ctx)
		if err != nil {
			a.log.Warn("reading cluster state failed; keeping the current announcements", "err", err)
		} else {
			plan = p
		}
	}
	a.lastPlan = plan
	a.syncDataplane(ctx)
	a.drainConflicts()
	a.expireConflicts()

	// Segments: one per interface with something eligible.
	for name, seg := range a.segments {
		if len(plan.Eligible[name]) == 0 {
			a.stopSegment(seg, true)
			delete(a.segments, name)
		}
	}
	for name, eligible := range plan.Eligible {
		seg := a.segments[name]
		if seg == nil {
			if time.Since(a.startFailed[name]) < time.Second {
				continue // retry a failed start once a second, not every tick
			}
			var err error
			if seg, err = a.startSegment(name); err != nil {
				a.log.Warn("cannot announce on interface", "interface", name, "err", err)
				a.startFailed[name] = time.Now()
				continue
			}
			delete(a.startFailed, name)
			a.segments[name] = seg
		}
		seg.eligible = eligible
		now := time.Now()
		for _, ip := range eligible {
			if _, ok := seg.eligibleSince[ip]; !ok {
				seg.eligibleSince[ip] = now
			}
		}
		for ip := range seg.eligibleSince {
			if !slices.Contains(eligible, ip) {
				delete(seg.eligibleSince, ip)
			}
		}
	}

	names := make([]string, 0, len(a.segments))
	for n := range a.segments {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		a.decide(a.segments[name], false)
	}
	a.status.update(a.ownership(), plan)
}

// plan computes the current eligibility from the cache.
func (a *Agent) plan(ctx context.Context) (announce.Plan, error) {
	var node corev1.Node
	nodePtr := &node
	if err := a.client.Get(ctx, client.ObjectKey{Name: a.opts.NodeName}, &node); err != nil {
		nodePtr = nil // nodeSelectors then match nothing; services are still read
	}
	var pols heraldv1.L2AnnouncementPolicyList
	if err := a.client.List(ctx, &pols); err != nil {
		return announce.Plan{}, fmt.Errorf("list policies: %w", err)
	}
	var svcs corev1.ServiceList
	if err := a.client.List(ctx, &svcs); err != nil {
		return announce.Plan{}, fmt.Errorf("list services: %w", err)
	}
	var eps discoveryv1.EndpointSliceList
	if err := a.client.List(ctx, &eps); err != nil {
		return announce.Plan{}, fmt.Errorf("list endpoint slices: %w", err)
	}
	var policies []announce.Policy
	for i := range pols.Items {
		v, err := policyView(&pols.Items[i], nodePtr)
		if err != nil {
			a.log.Warn("policy cannot be used", "policy", pols.Items[i].Name, "err", err)
			continue
		}
		policies = append(policies, v)
	}
	if a.table != nil {
		a.dpWant = dataplaneServices(svcs.Items, eps.Items, a.opts.NodeName, a.opts.DefaultClass)
	}
	local := localReadyServices(eps.Items, a.opts.NodeName)
	var services []announce.Service
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if v, ok := serviceView(s, a.opts.DefaultClass, local[s.Namespace+"/"+s.Name]); ok {
			services = append(services, v)
		}
	}
	return announce.Compute(a.opts.NodeName, a.ifaces, policies, services), nil
}

// startSegment opens the heartbeat member and the responder on an
// interface, inside the node's network namespace.
func (a *Agent) startSegment(name string) (*segment, error) {
	seg := &segment{iface: name, answering: map[netip.Addr]bool{}, claims: map[netip.Addr]bool{}, eligibleSince: map[netip.Addr]time.Time{}}
	log := a.log.With("interface", name)
	err := netnsenter.DoOptional(a.opts.NetNS, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("find interface: %w", err)
		}
		seg.member, err = membership.New(membership.Config{
			Interface: name, Node: a.opts.NodeName, ClusterID: a.opts.ClusterID, Key: a.opts.Key,
			Interval: a.opts.Interval, DeadAfter: a.opts.DeadAfter, Registerer: a.opts.Registerer, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("start heartbeats: %w", err)
		}
		seg.responder, err = l2.NewResponder(ifi, l2.Options{
			Logger: log, Metrics: a.l2m, OnConflict: a.onConflict,
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
	seg.done.Go(func() {
		if err := seg.member.Run(ctx); err != nil && ctx.Err() == nil {
			log.Warn("heartbeats stopped", "err", err)
		}
	})
	seg.done.Go(func() {
		if err := seg.responder.Run(ctx); err != nil && ctx.Err() == nil {
			log.Warn("responder stopped", "err", err)
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
	seg.cancel()
	seg.done.Wait()
	a.log.Info("stopped announcing on interface", "interface", seg.iface)
}

// decide runs placement for every eligible address of a segment and applies
// the outcome: heartbeat claims, answers, probes.
func (a *Agent) decide(seg *segment, leaving bool) (pending int) {
	snap := seg.member.Snapshot()
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
			a.seenClaimed[ip] = true
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
	for _, ip := range seg.eligible {
		v := placement.View{
			Self:      a.opts.NodeName,
			Eligible:  append([]string{a.opts.NodeName}, eligibleBy[ip]...),
			Claimants: claimedBy[ip],
			Leaving:   leavingPeers,
			Settled:   snap.Settled && time.Since(seg.eligibleSince[ip]) >= a.opts.Interval,
		}
		if seg.claims[ip] {
			v.Claimants = append(v.Claimants, a.opts.NodeName)
		}
		d := placement.Decide(ip, v)
		why[ip] = verdict{d, v}
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
		if _, bad := a.conflicts[ip]; bad {
			continue // a foreign host uses it: neither claim nor answer (reported)
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
		for ip := range answer {
			if !seg.answering[ip] {
				a.seenClaimed[ip] = true
				w := why[ip]
				a.log.Info("answering", "ip", ip, "interface", seg.iface, "reason", w.d.Reason,
					"eligible", w.v.Eligible, "claimants", w.v.Claimants)
			}
		}
		for ip := range seg.answering {
			if !answer[ip] {
				a.log.Info("stopped answering", "ip", ip, "interface", seg.iface)
			}
		}
		seg.answering = answer
		seg.responder.SetOwned(sortedAddrs(answer))
	}
	return pending
}

// mayAnswer gates the first claim of an address nobody has claimed: it is
// probed first (RFC 5227 / DAD) so Herald never steals an address a foreign
// host uses. Addresses seen claimed by any node were probed by that node and
// are taken at once: fail-over must not wait for a probe.
func (a *Agent) mayAnswer(seg *segment, ip netip.Addr) bool {
	if a.opts.ProbeDisable || a.seenClaimed[ip] || a.probeState[ip] == probePassed {
		return true
	}
	if a.probeState[ip] == probeRunning || a.probeState[ip] == probeFailed {
		return false
	}
	a.probeState[ip] = probeRunning
	iface, opts, ns := seg.iface, a.opts.Probe, a.opts.NetNS
	go func() {
		var conflict *l2.Conflict
		err := netnsenter.DoOptional(ns, func() error {
			ifi, err := net.InterfaceByName(iface)
			if err != nil {
				return fmt.Errorf("find interface: %w", err)
			}
			// The probe runs in the background; its sockets are opened
			// here, in the node's namespace.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conflict, err = l2.Probe(ctx, ifi, ip, opts)
			return err
		})
		a.probed <- probeResult{addr: ip, conflict: conflict, err: err}
	}()
	return false
}

// probeDone records a probe's outcome.
func (a *Agent) probeDone(r probeResult) {
	switch {
	case r.err != nil:
		a.log.Warn("probe failed; will retry", "ip", r.addr, "err", r.err)
		delete(a.probeState, r.addr)
	case r.conflict != nil && a.isPeerMAC(r.conflict.MAC):
		// Another Herald node already answers: the address is Herald's,
		// and placement settles who keeps it.
		a.seenClaimed[r.addr] = true
		delete(a.probeState, r.addr)
	case r.conflict != nil:
		a.log.Warn("address in use by another host on the LAN; not announcing", "ip", r.addr,
			"mac", r.conflict.MAC.String(), "interface", r.conflict.Interface)
		a.probeState[r.addr] = probeFailed
		a.conflicts[r.addr] = *r.conflict
		a.conflictAt[r.addr] = time.Now()
	default:
		a.probeState[r.addr] = probePassed
	}
}

// onConflict is called by responders (on their goroutines) when another
// MAC answers for an owned address.
func (a *Agent) onConflict(c l2.Conflict) {
	a.conflictsMu.Lock()
	a.newConflicts = append(a.newConflicts, c)
	a.conflictsMu.Unlock()
	signal(a.updates)
}

// drainConflicts classifies conflicts reported by responders: a peer's MAC
// is a hand-over in progress (placement settles it); any other MAC is a
// foreign host and the address is no longer announced.
func (a *Agent) drainConflicts() {
	a.conflictsMu.Lock()
	cs := a.newConflicts
	a.newConflicts = nil
	a.conflictsMu.Unlock()
	for _, c := range cs {
		if a.isPeerMAC(c.MAC) {
			continue
		}
		if _, known := a.conflicts[c.Addr]; !known {
			a.log.Warn("another host answers for an announced address; withdrawing", "ip", c.Addr,
				"mac", c.MAC.String(), "interface", c.Interface, "kind", c.Kind)
		}
		a.conflicts[c.Addr] = c
		a.conflictAt[c.Addr] = time.Now()
		delete(a.seenClaimed, c.Addr) // probe again before any new claim
	}
}

// conflictRetry is how long an address a foreign host used stays
// withdrawn before it is probed again: the host may have gone.
const conflictRetry = 30 * time.Second

// expireConflicts forgets conflicts older than conflictRetry, so the
// address is probed afresh.
func (a *Agent) expireConflicts() {
	for ip, at := range a.conflictAt {
		if time.Since(at) >= conflictRetry {
			delete(a.conflicts, ip)
			delete(a.conflictAt, ip)
			delete(a.probeState, ip)
		}
	}
}

func (a *Agent) isPeerMAC(mac net.HardwareAddr) bool {
	for _, seg := range a.segments {
		for _, p := range seg.member.Snapshot().Peers {
			if slices.Equal(p.HardwareAddr, mac) {
				return true
			}
		}
	}
	return false
}

// ownership is, for the status writer, what this node knows about an
// address: the interface it answers on, or the foreign host that uses it.
type ownership struct {
	// Interface this node answers on ("" for a conflict).
	Interface string
	// ConflictWith describes the foreign host ("<mac> on <interface>"), or
	// is "" when this node announces the address.
	ConflictWith string
}

// ownership lists the addresses this node answers for (on the first
// interface by name) and those a foreign host uses.
func (a *Agent) ownership() map[netip.Addr]ownership {
	out := map[netip.Addr]ownership{}
	for name, seg := range a.segments {
		for ip := range seg.answering {
			if cur, ok := out[ip]; !ok || name < cur.Interface {
				out[ip] = ownership{Interface: name}
			}
		}
	}
	for ip, c := range a.conflicts {
		out[ip] = ownership{ConflictWith: c.MAC.String() + " on " + c.Interface}
	}
	return out
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
		_ = seg.member.Leave(ctx)
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
}

// openDataplane resolves --dataplane (auto asks dataplane.Detect) and opens
// Herald's nftables table when this node should forward.
func (a *Agent) openDataplane() error {
	mode := a.opts.Dataplane
	if mode == DataplaneAuto {
		m, why, err := dataplane.Detect(a.opts.NetNS)
		if err != nil {
			return fmt.Errorf("detect the data plane: %w", err)
		}
		mode = DataplaneNFTables
		if m == dataplane.ModeNone {
			mode = DataplaneNone
			a.log.Info("another data plane forwards load-balancer traffic; Herald only announces", "evidence", why)
		}
	}
	if mode != DataplaneNFTables {
		return nil
	}
	t, err := dataplane.Open(dataplane.Options{NetNS: a.opts.NetNS, Logger: a.log})
	if err != nil {
		return fmt.Errorf("open the nftables data plane: %w", err)
	}
	a.table = t
	return nil
}

// syncDataplane writes the table when the wanted view changed; a failure
// is retried on the next re-plan, and the previous rules keep forwarding.
func (a *Agent) syncDataplane(ctx context.Context) {
	if a.table == nil || (a.dpHave != nil && sameDataplane(a.dpWant, a.dpHave)) {
		return
	}
	err := a.table.Sync(ctx, a.dpWant)
	if err != nil && !errors.Is(err, dataplane.ErrInvalidService) {
		a.log.Warn("programming the nftables data plane failed", "err", err)
		return
	}
	if err != nil {
		// Valid services are programmed; the error names the others.
		a.log.Warn("some services cannot be forwarded", "err", err)
	}
	a.dpHave = slices.Clone(a.dpWant)
	if a.dpHave == nil {
		a.dpHave = []dataplane.Service{}
	}
}
