// Package agent is Herald's node agent: the Kubernetes glue that decides,
// from L2AnnouncementPolicies, Services, EndpointSlices, its own Node and the
// node's links, which addresses this node may announce on which interface
// (internal/announce), keeps a heartbeat presence on each such segment
// (internal/membership), settles with its peers which node answers for each
// address (internal/placement), answers ARP/NDP for the addresses it owns
// (internal/l2) and reports what it does in its HeraldNode. The API server
// is needed to learn what to announce, never to keep announcing or to fail
// over: liveness comes from the segment itself.
//
// Field safety, in short: an address that has been announced is never given
// up because another host claims it — the owner defends it (RFC 5227 §2.4
// (c)) and reports the conflict; a heartbeat that fails authentication comes
// from a Herald node with another key, never from a stranger, and never
// makes a node yield; and the keys come from a Secret the agent watches, so
// a rotation needs no restart.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/membership"
)

// Options configure an Agent.
type Options struct {
	// NodeName is this node's Kubernetes name (required).
	NodeName string
	// ClusterID separates clusters sharing a LAN (default "herald").
	ClusterID string
	// Keys, when set, are fixed heartbeat keys (--key-file); the agent
	// never reloads them. Without them the agent reads KeySecret.
	Keys [][]byte
	// KeySecret is the Secret holding the cluster's heartbeat keys
	// (entries key-<N>, and the legacy key). The agent watches it and
	// reloads the keys within seconds of a change, without restarting.
	KeySecret types.NamespacedName
	// DefaultClass announces LoadBalancer Services without a class, as the
	// controller serves them.
	DefaultClass bool
	// IgnoreExcludeLabel announces from a node that carries
	// node.kubernetes.io/exclude-from-external-load-balancers.
	IgnoreExcludeLabel bool
	// Interval and DeadAfter tune heartbeats (membership defaults:
	// 50 ms, 6 intervals).
	Interval  time.Duration
	DeadAfter int
	// Probe configures the RFC 5227 probe / DAD run before an address is
	// first announced; ProbeDisable skips it.
	Probe        l2.ProbeOptions
	ProbeDisable bool
	// ConflictReprobe is how often an address found in use before its
	// first announcement is probed again (default 30 s): once free, it is
	// no longer excluded.
	ConflictReprobe time.Duration
	// ConflictHold is how long a conflict on an announced address stays
	// reported after the other host's last frame (default 60 s).
	ConflictHold time.Duration
	// DefendInterval is the least time between two defences of one
	// address (default 10 s, RFC 5227's DEFEND_INTERVAL).
	DefendInterval time.Duration
	// Dataplane chooses who forwards load-balancer traffic (default none:
	// kube-proxy or Cilium does).
	Dataplane DataplaneMode
	// LeaveGrace bounds how long a node keeps answering an address it
	// gives up (it stops, it is drained, the address is no longer eligible
	// here) while it waits for the successor to claim it; with a data
	// plane, a stopping agent's table then forwards for one more
	// LeaveGrace before it is removed.
	LeaveGrace time.Duration
	// StatusDelay batches HeraldNode status writes: changes within it make
	// one write (default 200 ms).
	StatusDelay time.Duration
	// IdleCheck is how often an agent that sees nothing change decides
	// every address again anyway, which catches a lost wake-up (default
	// 30 s).
	IdleCheck time.Duration
	// Namespace is Herald's namespace, where BGPPeers' password Secrets
	// are (default herald-system).
	Namespace string
	// Version is reported in the HeraldNode status.
	Version string
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
	if o.ConflictReprobe == 0 {
		o.ConflictReprobe = 30 * time.Second
	}
	if o.ConflictHold == 0 {
		o.ConflictHold = time.Minute
	}
	if o.StatusDelay == 0 {
		o.StatusDelay = 200 * time.Millisecond
	}
	if o.IdleCheck == 0 {
		o.IdleCheck = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Namespace == "" {
		o.Namespace = "herald-system"
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
	kube   kubernetes.Interface
	status *statusWriter
	events record.EventBroadcaster
	l2m    *l2.Metrics
	met    *metrics
	health health
	prober *prober

	trigger chan struct{} // Kubernetes state changed (see pending)
	pending changes       // what changed, from the informers
	links   chan []link   // latest link list
	updates chan struct{} // a segment's membership changed (see segment.updated)
	probed  chan probeResult
	keysCh  chan keyUpdate
	pings   chan chan struct{} // /healthz asks the main loop to answer

	// State below is owned by the Run goroutine.
	linkList  []link
	ifaces    []announce.Interface // linkList with LAN marked
	nodeAddrs []netip.Addr
	excluded  bool // the exclude label applies to this node
	// undrainedAt is when the exclude label last went away: addresses
	// that become eligible because of it do not move back (placement's
	// Defer).
	undrainedAt time.Time
	keys        *membership.Keyring
	keyErr      string
	segments    map[string]*segment
	// seenClaimed are addresses some Herald node claimed: they were probed
	// by that node, so a take-over needs no probe.
	seenClaimed map[netip.Addr]bool
	// state is the cluster as this node sees it, kept per Service and
	// address (state.go).
	state *planState
	// dpDirty are the Services whose data plane view changed since the
	// table last took it: the groups the next Update passes.
	dpDirty map[string]bool
	// dpFailed is when the last Update failed (zero: it did not).
	dpFailed time.Time
	// statusDirty: something the HeraldNode shows may have changed.
	statusDirty    bool
	probeState     map[netip.Addr]probeStatus
	probeConflicts map[netip.Addr]*conflictRecord // found by a probe: not announced
	liveConflicts  map[netip.Addr]*conflictRecord // on announced addresses: defended
	answerSince    map[netip.Addr]time.Time
	startFailed    map[string]time.Time // interfaces whose segment failed to start, and when
	table          *dataplane.Table     // nil without a data plane
	dpChecked      time.Time            // when the table was last checked
	handedOver     bool                 // leave handed addresses to successors
	incarnation    uint64

	// dataPlane is what the HeraldNode reports about the node's data
	// plane; kernelARPDue asks reconcile to look at kube-ipvs0 and the
	// ARP sysctls again (the links changed, or the idle timer fired).
	dataPlane    heraldv1.NodeDataPlane
	kernelARPDue bool

	conflictsMu  sync.Mutex
	newConflicts []l2.Conflict

	// bgp runs the BGP speaker beside the L2 loop; bgpChanged tells the
	// loop that its status changed.
	bgp        *bgpRunner
	bgpChanged chan struct{}
	bgpMet     *bgpMetrics
}

// keyUpdate is a new set of heartbeat keys, or why there is none.
type keyUpdate struct {
	keys [][]byte
	err  error
}

// New builds an agent for the cluster cfg points at.
func New(cfg *rest.Config, opts Options) (*Agent, error) {
	opts = opts.withDefaults()
	if opts.NodeName == "" {
		return nil, errors.New("node name is empty: set --node-name or NODE_NAME")
	}
	if len(opts.Keys) == 0 && opts.KeySecret.Name == "" {
		return nil, errors.New("no heartbeat key: name the Secret (--heartbeat-secret) or a key file (--key-file)")
	}
	if len(opts.Keys) > 0 {
		if _, err := membership.NewKeyring(opts.Keys...); err != nil {
			return nil, fmt.Errorf("heartbeat key: %w", err)
		}
	}
	scheme, err := kube.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{
		Scheme: scheme,
		// Nothing reads managedFields, kubectl's last-applied
		// annotation or the endpoints' targetRefs; with thousands of
		// Services they would be most of the cache (trimForCache).
		DefaultTransform: trimForCache,
		ByObject: map[client.Object]cache.ByObject{
			// Only this node's Node object: its labels feed nodeSelectors
			// and the exclude label, its addresses find the LAN.
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", opts.NodeName)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create informer cache: %w", err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme, Cache: &client.CacheOptions{
		Reader: c,
		// The agent reads its own HeraldNode only, and rarely: no informer
		// holding every node's report.
		DisableFor: []client.Object{&heraldv1.HeraldNode{}},
	}})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kc.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "herald-agent", Host: opts.NodeName})
	l2m, err := l2.NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register l2 metrics: %w", err)
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	bgpMet, err := newBGPMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("component", "agent", "node", opts.NodeName)
	a := &Agent{
		met:            met,
		opts:           opts,
		log:            log,
		cache:          c,
		client:         cl,
		kube:           kc,
		events:         broadcaster,
		l2m:            l2m,
		trigger:        make(chan struct{}, 1),
		links:          make(chan []link, 1),
		updates:        make(chan struct{}, 1),
		probed:         make(chan probeResult, 2*l2.MaxProbeBatch),
		keysCh:         make(chan keyUpdate, 1),
		pings:          make(chan chan struct{}),
		segments:       map[string]*segment{},
		seenClaimed:    map[netip.Addr]bool{},
		state:          newPlanState(),
		probeState:     map[netip.Addr]probeStatus{},
		probeConflicts: map[netip.Addr]*conflictRecord{},
		liveConflicts:  map[netip.Addr]*conflictRecord{},
		answerSince:    map[netip.Addr]time.Time{},
		startFailed:    map[string]time.Time{},
		incarnation:    uint64(time.Now().UnixNano()),
	}
	a.bgpChanged = make(chan struct{}, 1)
	a.bgpMet = bgpMet
	a.bgp = newBGPRunner(a)
	a.status = newStatusWriter(cl, recorder, opts.NodeName, opts.StatusDelay, log)
	a.prober = newProber(opts.NetNS, opts.Probe, a.probed)
	return a, nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Healthy reports whether the agent's loops are alive: the informers run,
// every segment's heartbeats and responder run, and the main loop answers
// (it sleeps while nothing changes, so it is asked rather than watched). It
// backs /healthz, so a wedged agent is restarted.
func (a *Agent) Healthy(ctx context.Context) error {
	if err := a.health.check(); err != nil {
		return err
	}
	if !a.health.isSynced.Load() {
		return nil // starting: the kubelet's initial delay covers a normal sync
	}
	ctx, cancel := context.WithTimeout(ctx, loopAnswerWithin)
	defer cancel()
	reply := make(chan struct{})
	select {
	case a.pings <- reply:
	case <-ctx.Done():
		return fmt.Errorf("the main loop did not answer within %s", loopAnswerWithin)
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the main loop did not answer within %s", loopAnswerWithin)
	}
}

// loopAnswerWithin bounds how long a health check waits for the main loop:
// its longest normal task is a hand-over (LeaveGrace, 1 s by default).
const loopAnswerWithin = 10 * time.Second

// Run announces until ctx is done, then leaves gracefully: peers are told
// at once, and this node keeps answering until its successors claim (or
// LeaveGrace passes).
func (a *Agent) Run(ctx context.Context) error {
	if err := a.cache.IndexField(ctx, &discoveryv1.EndpointSlice{}, sliceServiceIndex, func(o client.Object) []string {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok && sliceService(s) != "" {
			return []string{sliceService(s)}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index endpoint slices: %w", err)
	}
	// An event names what it concerns: one Service (a slice names its
	// Service), or everything (this node, a policy).
	onService := func(obj any) {
		key, slice := objectKey(obj)
		a.pending.service(key)
		_ = slice
		signal(a.trigger)
	}
	onAll := func(any) { a.pending.everything(); signal(a.trigger) }
	handlers := map[client.Object]toolscache.ResourceEventHandlerFuncs{
		&corev1.Service{}: {AddFunc: onService, UpdateFunc: func(_, n any) { onService(n) }, DeleteFunc: onService},
		&discoveryv1.EndpointSlice{}: {AddFunc: onService, DeleteFunc: onService, UpdateFunc: func(o, n any) {
			onService(o) // a slice moved to another Service concerns both
			onService(n)
		}},
		&corev1.Node{}:                   {AddFunc: onAll, UpdateFunc: func(_, n any) { onAll(n) }, DeleteFunc: onAll},
		&heraldv1.L2AnnouncementPolicy{}: {AddFunc: onAll, UpdateFunc: func(_, n any) { onAll(n) }, DeleteFunc: onAll},
	}
	for obj, h := range handlers {
		inf, err := a.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("start informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	// The cache and the status writer outlive ctx a little: a stopping
	// agent still reads state while it hands over, and reports the end.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.cache.Start(bg); err != nil {
			a.log.Error("informer cache stopped", "err", err)
			a.health.fail("informer cache stopped: " + err.Error())
		}
	})
	defer wg.Wait()
	defer stopBG()
	defer a.events.Shutdown()

	// Probes run on a bounded pool and end with the agent.
	probeCtx, stopProbes := context.WithCancel(ctx)
	wg.Go(func() { a.prober.run(probeCtx) })
	defer stopProbes()

	linkErr := make(chan error, 1)
	wg.Go(func() { linkErr <- watchLinks(bg, a.opts.NetNS, a.links, a.log) })
	a.watchKeys(bg, &wg)

	if !a.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("informer caches did not sync")
	}
	a.health.synced()
	// BGP has its own lifetime: on a stop it withdraws its routes while
	// the L2 loop hands its addresses over, and Run waits for both.
	if a.opts.NetNS != nil {
		a.log.Info("BGP is off: the agent does not run in the node's network namespace (the speaker's sockets would not be the node's)")
	} else {
		wg.Go(func() { a.bgp.run(ctx) })
	}
	a.restoreConflicts(ctx)
	wg.Go(func() { a.status.run(bg) })
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
	a.log.Info("agent started", "dataplane", a.table != nil, "incarnation", a.incarnation)
	a.pending.everything()
	// The loop sleeps while nothing changes: informer events (coalesced
	// over one interval), link changes, heartbeats that change something,
	// probe results and the timers a decision depends on wake it.
	planTimer := time.NewTimer(time.Hour)
	planTimer.Stop()
	planArmed := false
	armPlan := func(d time.Duration) {
		if !planArmed {
			planTimer.Reset(d)
			planArmed = true
		}
	}
	wake := time.NewTimer(a.opts.IdleCheck)
	defer wake.Stop()
	defer planTimer.Stop()
	linksKnown := false
	for {
		doPlan, timers := false, false
		select {
		case <-ctx.Done():
			a.leave()
			a.status.flush(bg, a.statusSnapshot())
			return nil
		case err := <-linkErr:
			a.leave()
			return fmt.Errorf("watching links: %w", err)
		case a.linkList = <-a.links:
			a.bgp.setLinks(a.linkList)
			linksKnown = true
			a.kernelARPDue = true
			a.pending.everything()
			armPlan(0)
			continue
		case u := <-a.keysCh:
			a.applyKeys(u)
			a.statusDirty = true
		case <-a.trigger:
			armPlan(a.opts.Interval)
			continue
		case <-planTimer.C:
			planArmed = false
			doPlan = true
		case <-a.updates:
		case r := <-a.probed:
			a.probeDone(r)
			// A batch of results arrives together: take them all before
			// deciding once.
			for more := true; more; {
				select {
				case r := <-a.probed:
					a.probeDone(r)
				default:
					more = false
				}
			}
			a.statusDirty = true // a conflict found or cleared
			for _, seg := range a.segments {
				seg.dirty = true
			}
		case <-wake.C:
			timers = true
		case reply := <-a.pings:
			close(reply)
			continue
		case <-a.bgpChanged:
			a.statusDirty = true
		}
		if !linksKnown {
			continue // deciding without the node's links would report false problems
		}
		if doPlan && !a.plan(ctx) {
			armPlan(time.Second) // retry: the changes are kept
		}
		a.reconcile(ctx, timers)
		next := a.nextWake(time.Now())
		if !wake.Stop() {
			select {
			case <-wake.C:
			default:
			}
		}
		wake.Reset(max(time.Until(next), time.Millisecond))
	}
}

// plan applies the pending informer changes; on failure it keeps them for
// the next try and reports false.
func (a *Agent) plan(ctx context.Context) bool {
	services, all := a.pending.take()
	changed, err := a.replan(ctx, services, all)
	if err != nil {
		a.log.Warn("reading cluster state failed; keeping the current announcements", "err", err)
		if all {
			a.pending.everything()
		}
		for k := range services {
			a.pending.service(k)
		}
		return false
	}
	for ifc := range changed {
		if seg := a.segments[ifc]; seg != nil {
			seg.dirty = true
		}
	}
	a.publishEligible(changed, all)
	if len(changed) > 0 || all {
		a.statusDirty = true
	}
	a.syncDataplane(ctx)
	return true
}

// reconcile brings segments, claims and answers in line with what this node
// may announce and what its peers say. With timers set, the time-driven
// work (re-probes, conflicts that expire) runs and every segment is
// decided again.
func (a *Agent) reconcile(ctx context.Context, timers bool) {
	now := time.Now()
	if a.drainConflicts() {
		a.statusDirty = true
	}
	if timers {
		if a.expireConflicts(now) {
			a.statusDirty = true
		}
		if !a.dpFailed.IsZero() {
			a.syncDataplane(ctx) // a failed Sync is retried
		}
		a.checkDataplane(ctx, now)
		a.kernelARPDue = true
		a.scheduleReprobes(now)
		for _, seg := range a.segments {
			seg.dirty = true
		}
	}

	if a.kernelARPDue {
		a.kernelARPDue = false
		a.checkKernelARP()
	}

	if a.keys == nil {
		// No key, no heartbeat: without one this node cannot take part,
		// and announcing alone would answer for addresses peers own.
		for name, seg := range a.segments {
			a.stopSegment(seg, true)
			delete(a.segments, name)
		}
		a.publishStatus()
		return
	}

	// Segments: one per interface with something eligible. A segment
	// whose last address went away keeps answering, leaving, until the
	// successors claim (make before break), then stops.
	st := a.state
	for name, seg := range a.segments {
		if len(st.eligible[name]) > 0 && seg.leavingSince.IsZero() {
			continue
		}
		a.statusDirty = true
		if len(st.eligible[name]) > 0 {
			// Eligible again while leaving: the member's leaving flag is
			// final, so stop now and start afresh below.
			a.stopSegment(seg, false)
			delete(a.segments, name)
			continue
		}
		if seg.leavingSince.IsZero() {
			seg.leavingSince = now
			a.log.Info("nothing left to announce on interface; handing over", "interface", name)
			lctx, cancel := context.WithTimeout(context.Background(), 3*a.opts.Interval)
			_ = seg.member.Leave(lctx)
			cancel()
		}
		if a.decide(seg, true) == 0 || now.Sub(seg.leavingSince) >= a.opts.LeaveGrace {
			a.stopSegment(seg, false)
			delete(a.segments, name)
		}
	}
	names := make([]string, 0, len(st.eligible))
	for name := range st.eligible {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		seg := a.segments[name]
		if seg == nil {
			if now.Sub(a.startFailed[name]) < time.Second {
				continue // retry a failed start once a second, not on every event
			}
			var err error
			if seg, err = a.startSegment(name); err != nil {
				a.log.Warn("cannot announce on interface", "interface", name, "err", err)
				a.startFailed[name] = now
				continue
			}
			delete(a.startFailed, name)
			a.segments[name] = seg
			seg.dirty = true
			a.statusDirty = true
		}
		updated := seg.updated.Swap(false)
		if updated {
			a.statusDirty = true // its peers may have changed
		}
		if seg.dirty || updated {
			seg.dirty = false
			seg.setEligible(st.eligibleOn(name), now)
			if a.decide(seg, false) > 0 {
				a.statusDirty = true
			}
		}
	}
	if a.statusDirty {
		// Every change of what a segment answers marks the status dirty;
		// without one the answers are what trackAnswers last saw, and
		// walking every owned address on each event is what it saves.
		a.trackAnswers()
	}
	a.health.segments(a.segmentsHealthy())
	a.publishStatus()
}

// publishStatus hands the status writer a new report when something it
// shows may have changed.
func (a *Agent) publishStatus() {
	if a.statusDirty {
		a.statusDirty = false
		a.status.update(a.statusSnapshot())
	}
}

// nextWake is when the main loop must wake up even if nothing happens: the
// earliest time a decision depends on (an address settling, a grace
// window, a re-probe, a conflict expiring, a failed segment's retry), at
// most IdleCheck from now.
func (a *Agent) nextWake(now time.Time) time.Time {
	next := now.Add(a.opts.IdleCheck)
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	for _, seg := range a.segments {
		earlier(seg.wakeAt)
		if !seg.leavingSince.IsZero() {
			earlier(now.Add(a.opts.Interval / 2))
		}
	}
	for _, c := range a.probeConflicts {
		earlier(c.lastProbe.Add(a.opts.ConflictReprobe))
	}
	for _, c := range a.liveConflicts {
		earlier(c.last.Add(a.opts.ConflictHold))
	}
	for _, t := range a.startFailed {
		earlier(t.Add(time.Second))
	}
	if !a.dpFailed.IsZero() {
		earlier(a.dpFailed.Add(time.Second))
	}
	if next.Before(now) {
		next = now
	}
	return next
}

// now is the agent's clock.
func (a *Agent) now() time.Time { return time.Now() }

// excludedByLabel reports whether node carries the exclude label (any
// value, as the Kubernetes convention has it).
func excludedByLabel(node *corev1.Node) bool {
	_, ok := node.Labels[kube.ExcludeFromLBLabel]
	return ok
}

// nodeAddresses are the Node's InternalIP and ExternalIP addresses.
func nodeAddresses(node *corev1.Node) []netip.Addr {
	if node == nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// watchKeys starts the source of heartbeat keys: the fixed keys are sent
// once; otherwise the Secret is watched and every change is sent.
func (a *Agent) watchKeys(ctx context.Context, wg *sync.WaitGroup) {
	send := func(u keyUpdate) {
		select {
		case <-a.keysCh: // only the latest matters
		default:
		}
		select {
		case a.keysCh <- u:
		case <-ctx.Done():
		}
	}
	if len(a.opts.Keys) > 0 {
		send(keyUpdate{keys: a.opts.Keys})
		return
	}
	ns, name := a.opts.KeySecret.Namespace, a.opts.KeySecret.Name
	wg.Go(func() {
		heartbeatkey.Watch(ctx, a.kube, ns, name, func(ks heartbeatkey.Keys, err error) {
			if len(ks.Ignored) > 0 {
				// A typo such as key1 for key-1 would otherwise go unseen.
				a.log.Warn("heartbeat Secret entries that are not keys are ignored", "secret", ns+"/"+name, "entries", ks.Ignored)
			}
			send(keyUpdate{keys: ks.Values(), err: err})
		})
	})
}

// applyKeys installs new heartbeat keys on every segment at once, so the
// next heartbeat is signed with them and incoming ones are checked with
// them. An error keeps the keys the agent has: a Secret that disappears or
// turns invalid must not silence a running cluster.
func (a *Agent) applyKeys(u keyUpdate) {
	if u.err == nil && len(u.keys) == 0 {
		u.err = errors.New("the heartbeat Secret holds no key")
	}
	if u.err != nil {
		a.keyErr = u.err.Error()
		if a.keys == nil {
			a.log.Warn("no heartbeat key yet; announcing nothing until there is one", "err", u.err)
		} else {
			a.log.Warn("heartbeat keys unusable; keeping the current ones", "err", u.err, "fingerprints", a.keys.Fingerprints())
		}
		return
	}
	ring, err := membership.NewKeyring(u.keys...)
	if err != nil {
		a.keyErr = err.Error()
		a.log.Warn("heartbeat keys unusable; keeping the current ones", "err", err)
		return
	}
	a.keyErr = ""
	if a.keys != nil && slices.Equal(a.keys.Fingerprints(), ring.Fingerprints()) {
		return
	}
	a.log.Info("heartbeat keys loaded", "fingerprints", ring.Fingerprints())
	a.keys = ring
	for _, seg := range a.segments {
		if err := seg.member.SetKeys(ring); err != nil {
			a.log.Warn("cannot load heartbeat keys on interface", "interface", seg.iface, "err", err)
		}
	}
}

// segmentsHealthy returns why a segment's loops stopped, or "".
func (a *Agent) segmentsHealthy() string {
	for name, seg := range a.segments {
		if msg := seg.failed.Load(); msg != nil {
			return fmt.Sprintf("interface %s: %s", name, *msg)
		}
	}
	return ""
}

// trackAnswers keeps, for the status, since when this node answers each
// address (on any interface).
func (a *Agent) trackAnswers() {
	now := time.Now()
	answering := map[netip.Addr]bool{}
	for _, seg := range a.segments {
		for ip := range seg.answering {
			answering[ip] = true
			if _, ok := a.answerSince[ip]; !ok {
				a.answerSince[ip] = now
			}
		}
	}
	for ip := range a.answerSince {
		if !answering[ip] {
			delete(a.answerSince, ip)
		}
	}
}

// incarnationString is the incarnation as the status shows it.
func (a *Agent) incarnationString() string { return strconv.FormatUint(a.incarnation, 10) }

// health tracks what /healthz reports besides the main loop's answer.
type health struct {
	isSynced atomic.Bool
	segErr   atomic.Pointer[string]
	fatal    atomic.Pointer[string]
}

func (h *health) synced()         { h.isSynced.Store(true) }
func (h *health) fail(msg string) { h.fatal.Store(&msg) }
func (h *health) segments(msg string) {
	if msg == "" {
		h.segErr.Store(nil)
		return
	}
	h.segErr.Store(&msg)
}

func (h *health) check() error {
	if msg := h.fatal.Load(); msg != nil {
		return errors.New(*msg)
	}
	if msg := h.segErr.Load(); msg != nil {
		return errors.New(*msg)
	}
	return nil
}
