package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/bgp"
	"github.com/herald-lb/herald/internal/bgpplan"
	"github.com/herald-lb/herald/internal/kube"
)

// bgpStopTimeout bounds a stopping speaker's withdraw-then-close.
const bgpStopTimeout = 5 * time.Second

// bgpRunner keeps this node's BGP speaker in line with the cluster: it
// plans (internal/bgpplan) from the BGPPeers, BGPAdvertisements, this
// node's BGPNodeOverride, the pools, the Services and their endpoints and
// the node's links, and hands the sessions and routes to the speaker
// (internal/bgp), which applies only what changed. It runs beside the L2
// loop and shares nothing with it but the informer cache and the link
// list: BGP trouble never holds up an ARP answer.
//
// Without a BGPPeer that selects the node no speaker runs: a cluster that
// only announces by ARP/NDP pays one cheap plan per change and opens no
// socket.
type bgpRunner struct {
	a   *Agent
	log *slog.Logger

	trigger chan struct{}
	links   chan []link // latest link list, from Run

	// Owned by run.
	linkList []link
	speaker  *bgp.Speaker
	routerID netip.Addr
	plan     bgpplan.Plan
	// planErrs are why a planned session is not configured (its password
	// cannot be read), by peer name.
	planErrs map[string]string
	since    map[string]sinceEntry
	secrets  *secretSet

	mu     sync.Mutex
	status *heraldv1.NodeBGP // what the HeraldNode shows; nil: no BGP
}

func newBGPRunner(a *Agent) *bgpRunner {
	return &bgpRunner{
		a:       a,
		log:     a.log.With("part", "bgp"),
		trigger: make(chan struct{}, 1),
		links:   make(chan []link, 1),
	}
}

// setLinks hands the runner the node's latest links (never blocks).
func (r *bgpRunner) setLinks(l []link) {
	select {
	case <-r.links:
	default:
	}
	r.links <- l
}

// snapshot is the HeraldNode's status.bgp now.
func (r *bgpRunner) snapshot() *heraldv1.NodeBGP {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.DeepCopy()
}

func (r *bgpRunner) setStatus(s *heraldv1.NodeBGP) {
	r.mu.Lock()
	old := r.status
	same := equalNodeBGP(old, s)
	r.status = s
	r.mu.Unlock()
	if !same {
		r.a.bgpMet.observe(old, s)
		signal(r.a.bgpChanged)
	}
}

// bgpAvailable reports whether the API server serves the BGP kinds: an
// upgrade with `helm upgrade` leaves the CRDs as they were (Helm never
// upgrades CRDs), and an agent waiting for informers of kinds that do not
// exist would never start.
func (r *bgpRunner) bgpAvailable() (bool, error) {
	res, err := r.a.kube.Discovery().ServerResourcesForGroupVersion(heraldv1.GroupVersion.String())
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", heraldv1.GroupVersion, err)
	}
	want := map[string]bool{"bgppeers": false, "bgpadvertisements": false, "bgpnodeoverrides": false}
	for _, r := range res.APIResources {
		if _, ok := want[r.Name]; ok {
			want[r.Name] = true
		}
	}
	for _, ok := range want {
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// run plans and applies until ctx ends, then withdraws every route before
// it closes the sessions.
func (r *bgpRunner) run(ctx context.Context) {
	for {
		ok, err := r.bgpAvailable()
		if err == nil && !ok {
			r.log.Warn("the API server has no BGPPeer, BGPAdvertisement or BGPNodeOverride: BGP is off; " +
				"apply the chart's CRDs (kubectl apply --server-side -f crds/) and restart the agents")
			return
		}
		if err == nil {
			break
		}
		r.log.Warn("cannot tell whether BGP is installed; trying again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
	onAny := func(any) { signal(r.trigger) }
	handler := toolscache.ResourceEventHandlerFuncs{AddFunc: onAny, UpdateFunc: func(_, n any) { onAny(n) }, DeleteFunc: onAny}
	var synced []toolscache.InformerSynced
	for _, obj := range []client.Object{&heraldv1.BGPPeer{}, &heraldv1.BGPAdvertisement{}, &heraldv1.BGPNodeOverride{},
		&heraldv1.LoadBalancerIPPool{}, &corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{}} {
		inf, err := r.a.cache.GetInformer(ctx, obj)
		if err != nil {
			r.log.Error("BGP is off: cannot watch", "kind", fmt.Sprintf("%T", obj), "err", err)
			return
		}
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			r.log.Error("BGP is off: cannot watch", "kind", fmt.Sprintf("%T", obj), "err", err)
			return
		}
		synced = append(synced, reg.HasSynced)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	r.secrets = newSecretSet(r.a.kube, r.a.opts.Namespace, r.trigger, r.log)
	defer r.secrets.stop()
	defer r.stopSpeaker()

	timer := time.NewTimer(0)
	defer timer.Stop()
	armed := true
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	var changes <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return
		case r.linkList = <-r.links:
			arm(0)
		case <-r.trigger:
			// Coalesce a burst of events into one plan.
			arm(r.a.opts.Interval)
		case <-timer.C:
			armed = false
			if err := r.replan(ctx); err != nil {
				r.log.Warn("BGP plan failed; trying again", "err", err)
				arm(time.Second)
			}
		case <-changes:
			r.refreshStatus(ctx)
		}
		if r.speaker != nil {
			changes = r.speaker.Changes()
		} else {
			changes = nil
		}
	}
}

// stopSpeaker withdraws every route, waits for the peers to act on it
// and closes the sessions.
func (r *bgpRunner) stopSpeaker() {
	if r.speaker == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), bgpStopTimeout)
	defer cancel()
	start := time.Now()
	if err := r.speaker.Stop(ctx); err != nil {
		r.log.Warn("stopping the BGP speaker", "err", err)
	}
	r.log.Info("BGP speaker stopped: routes withdrawn, sessions closed", "took", time.Since(start))
	r.speaker = nil
}

// replan computes the plan from the cache and applies it.
func (r *bgpRunner) replan(ctx context.Context) error {
	a := r.a
	var peerList heraldv1.BGPPeerList
	if err := a.cache.List(ctx, &peerList); err != nil {
		return fmt.Errorf("list BGPPeers: %w", err)
	}
	if len(peerList.Items) == 0 && r.speaker == nil {
		r.secrets.want(nil)
		r.setStatus(nil)
		return nil
	}
	var node corev1.Node
	nodePtr := &node
	if err := a.cache.Get(ctx, client.ObjectKey{Name: a.opts.NodeName}, &node); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get node: %w", err)
		}
		nodePtr = nil
	}
	var problems []string
	peers := make([]bgpplan.Peer, 0, len(peerList.Items))
	for i := range peerList.Items {
		v, err := kube.BGPPeerView(&peerList.Items[i], nodePtr)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		peers = append(peers, v)
	}
	var adList heraldv1.BGPAdvertisementList
	if err := a.cache.List(ctx, &adList); err != nil {
		return fmt.Errorf("list BGPAdvertisements: %w", err)
	}
	ads := make([]bgpplan.Advertisement, 0, len(adList.Items))
	for i := range adList.Items {
		v, err := kube.BGPAdvertisementView(&adList.Items[i], nodePtr)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		ads = append(ads, v)
	}
	var override *heraldv1.BGPNodeOverride
	var o heraldv1.BGPNodeOverride
	switch err := a.cache.Get(ctx, client.ObjectKey{Name: a.opts.NodeName}, &o); {
	case err == nil:
		override = &o
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get BGPNodeOverride: %w", err)
	}
	var poolList heraldv1.LoadBalancerIPPoolList
	if err := a.cache.List(ctx, &poolList); err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	pools := kube.NewPoolIndex(poolList.Items)
	var svcList corev1.ServiceList
	if err := a.cache.List(ctx, &svcList); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var sliceList discoveryv1.EndpointSliceList
	if err := a.cache.List(ctx, &sliceList); err != nil {
		return fmt.Errorf("list endpoint slices: %w", err)
	}
	ready := localReadyServices(sliceList.Items, a.opts.NodeName)
	services := make([]bgpplan.Service, 0, len(svcList.Items))
	for i := range svcList.Items {
		s := &svcList.Items[i]
		if v, ok := kube.BGPService(s, a.opts.DefaultClass, ready[s.Namespace+"/"+s.Name], pools); ok {
			services = append(services, v)
		}
	}
	excluded := nodePtr != nil && excludedByLabel(nodePtr) && !a.opts.IgnoreExcludeLabel
	bn, err := kube.BGPNode(nodePtr, excluded, bgpInterfaces(r.linkList, nodeAddresses(nodePtr)), override)
	if err != nil {
		problems = append(problems, err.Error())
	}
	bn.Name = a.opts.NodeName
	plan := bgpplan.Compute(bn, peers, ads, services)
	for _, p := range problems {
		r.log.Warn("BGP object not used", "err", p)
	}
	return r.apply(ctx, plan)
}

// bgpInterfaces is the bgpplan view of the node's links.
func bgpInterfaces(links []link, nodeAddrs []netip.Addr) []bgpplan.Interface {
	lan := withLAN(links, nodeAddrs)
	out := make([]bgpplan.Interface, len(links))
	for i, l := range links {
		out[i] = bgpplan.Interface{Name: l.Name, Up: l.Up, Loopback: l.Loopback, LAN: lan[i].LAN, Addrs: l.Prefixes}
	}
	return out
}

// apply hands the plan to the speaker: it starts one for the first
// session, restarts it for a new router ID, and stops it (withdrawing
// first) when the node has no session left.
func (r *bgpRunner) apply(ctx context.Context, plan bgpplan.Plan) error {
	names := make([]string, 0, len(plan.Sessions))
	for _, s := range plan.Sessions {
		if s.Peer.Password.Name != "" {
			names = append(names, s.Peer.Password.Name)
		}
	}
	r.secrets.want(names)
	if len(plan.Sessions) == 0 {
		r.stopSpeaker()
		r.plan = plan
		r.setStatus(r.statusOf(plan, nil))
		return nil
	}
	if r.speaker != nil && r.routerID != plan.RouterID {
		r.log.Info("router ID changed: restarting the BGP speaker", "from", r.routerID, "to", plan.RouterID)
		r.stopSpeaker()
	}
	if r.speaker == nil {
		sp, err := bgp.New(bgp.Config{RouterID: plan.RouterID, ASN: plan.Sessions[0].LocalASN, Logger: r.log})
		if err != nil {
			return fmt.Errorf("BGP speaker: %w", err)
		}
		if err := sp.Start(ctx); err != nil {
			return fmt.Errorf("start BGP speaker: %w", err)
		}
		r.speaker, r.routerID = sp, plan.RouterID
		r.log.Info("BGP speaker started", "routerID", plan.RouterID)
	}
	peers := make([]bgp.Peer, 0, len(plan.Sessions))
	var errs []error
	for _, s := range plan.Sessions {
		p := bgp.Peer{
			Address:         s.Peer.Addr,
			Port:            s.Peer.Port,
			PeerASN:         s.Peer.PeerASN,
			LocalASN:        s.LocalASN,
			LocalAddress:    s.LocalAddr,
			HoldTime:        s.Peer.HoldTime,
			KeepaliveTime:   s.Peer.KeepaliveTime,
			ConnectRetry:    s.Peer.ConnectRetryTime,
			EBGPMultihopTTL: s.Peer.EBGPMultihop,
			GracefulRestart: bgp.GracefulRestart{Enabled: s.Peer.GracefulRestart, RestartTime: s.Peer.RestartTime},
		}
		if s.Peer.BFD != nil {
			p.BFD = &bgp.BFD{MinTx: s.Peer.BFD.MinTransmit, MinRx: s.Peer.BFD.MinReceive, Multiplier: s.Peer.BFD.Multiplier}
		}
		if s.Peer.Password.Name != "" {
			pw, err := r.secrets.value(s.Peer.Password.Name, s.Peer.Password.Key)
			if err != nil {
				// Without its password the session could not come up;
				// leaving it out says so in the status.
				errs = append(errs, fmt.Errorf("BGPPeer %s: %w", s.Peer.Name, err))
				continue
			}
			p.Password = pw
		}
		peers = append(peers, p)
	}
	if err := r.speaker.SetPeers(ctx, peers); err != nil {
		errs = append(errs, fmt.Errorf("set BGP peers: %w", err))
	}
	if err := r.speaker.SetRoutes(ctx, speakerRoutes(plan.Sessions)); err != nil {
		errs = append(errs, fmt.Errorf("set BGP routes: %w", err))
	}
	r.plan = plan
	r.planErrs = map[string]string{}
	for _, err := range errs {
		r.log.Warn("BGP", "err", err)
	}
	for _, s := range plan.Sessions {
		for _, err := range errs {
			if strings.HasPrefix(err.Error(), "BGPPeer "+s.Peer.Name+":") {
				r.planErrs[s.Peer.Name] = strings.TrimPrefix(err.Error(), "BGPPeer "+s.Peer.Name+": ")
			}
		}
	}
	r.refreshStatus(ctx)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// speakerRoutes turns the plan's routes, per session, into the speaker's:
// one route per prefix and peer with that peer's attributes, the next hop
// left to each session (its local address, which is the plan's next hop).
// The speaker merges equal ones and sends each peer its own.
func speakerRoutes(sessions []bgpplan.Session) []bgp.Route {
	var out []bgp.Route
	for _, s := range sessions {
		for _, rt := range s.Routes {
			out = append(out, bgp.Route{Prefix: rt.Prefix, LocalPref: rt.LocalPref, Peers: []netip.Addr{s.Peer.Addr},
				Communities: rt.Communities, LargeCommunities: rt.LargeCommunities})
		}
	}
	return out
}

// refreshStatus reads the speaker's sessions and publishes the status.
func (r *bgpRunner) refreshStatus(ctx context.Context) {
	var live []bgp.Session
	if r.speaker != nil {
		var err error
		if live, err = r.speaker.Sessions(ctx); err != nil {
			r.log.Warn("reading BGP sessions failed", "err", err)
			return
		}
	}
	r.setStatus(r.statusOf(r.plan, live))
}

// statusOf is the HeraldNode's status.bgp for plan and the speaker's live
// sessions: a session per BGPPeer that selects the node (one it cannot
// open is Idle with the reason), and the addresses it advertises, each
// with the peers whose sessions are established.
func (r *bgpRunner) statusOf(plan bgpplan.Plan, live []bgp.Session) *heraldv1.NodeBGP {
	if len(plan.Peers) == 0 {
		return nil
	}
	byAddr := map[netip.Addr]bgp.Session{}
	for _, s := range live {
		byAddr[s.Peer] = s
	}
	st := &heraldv1.NodeBGP{}
	if plan.RouterID.IsValid() {
		st.RouterID = plan.RouterID.String()
	}
	established := map[string]bool{}
	for _, s := range plan.Sessions {
		bs := heraldv1.BGPSession{
			Peer: s.Peer.Name, Address: s.Peer.Addr.String(), PeerASN: int64(s.Peer.PeerASN), LocalASN: int64(s.LocalASN),
			LocalAddress: s.LocalAddr.String(), State: heraldv1.BGPSessionIdle,
		}
		since := r.sinceOf(s.Peer.Name, "")
		if l, ok := byAddr[s.Peer.Addr]; ok {
			bs.State = heraldv1.BGPSessionState(l.State)
			bs.RoutesAdvertised = int32(l.RoutesAdvertised)
			bs.BFDState = heraldv1.BFDState(l.BFD)
			bs.LastError = l.LastError
			if !l.Since.IsZero() {
				since = l.Since
			}
		}
		if e := r.planErrs[s.Peer.Name]; e != "" {
			bs.LastError = e
		}
		bs.Since = metav1.NewTime(since.Truncate(time.Second))
		established[s.Peer.Name] = bs.State == heraldv1.BGPSessionEstablished
		st.Sessions = append(st.Sessions, bs)
	}
	for _, p := range plan.Peers {
		if p.Open || p.Reason == bgpplan.NodeNotSelectedByPeer {
			continue
		}
		st.Sessions = append(st.Sessions, heraldv1.BGPSession{Peer: p.Peer, State: heraldv1.BGPSessionIdle,
			Since: metav1.NewTime(r.sinceOf(p.Peer, string(p.Reason)).Truncate(time.Second)), LastError: p.Message})
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].Peer < st.Sessions[j].Peer })
	if len(st.Sessions) == 0 {
		return nil
	}
	adv := map[netip.Addr][]string{}
	for _, v := range plan.Verdicts {
		if v.Reason == bgpplan.Advertised && established[v.Peer] && !slices.Contains(adv[v.Addr], v.Peer) {
			adv[v.Addr] = append(adv[v.Addr], v.Peer)
		}
	}
	addrs := make([]netip.Addr, 0, len(adv))
	for a := range adv {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		peers := adv[a]
		sort.Strings(peers)
		st.Advertised = append(st.Advertised, heraldv1.BGPAdvertised{Address: a.String(), Peers: peers})
	}
	return st
}

// sinceOf is when the session with peer first showed its current reason
// for not running (kept while the reason stays), for sessions the speaker
// has not reported on.
func (r *bgpRunner) sinceOf(peer, reason string) time.Time {
	if r.since == nil {
		r.since = map[string]sinceEntry{}
	}
	e, ok := r.since[peer]
	if !ok || e.reason != reason {
		e = sinceEntry{reason: reason, at: time.Now()}
		r.since[peer] = e
	}
	return e.at
}

type sinceEntry struct {
	reason string
	at     time.Time
}

// equalNodeBGP compares two statuses, so an unchanged one is not written.
func equalNodeBGP(a, b *heraldv1.NodeBGP) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.RouterID != b.RouterID || len(a.Sessions) != len(b.Sessions) || len(a.Advertised) != len(b.Advertised) {
		return false
	}
	for i := range a.Sessions {
		x, y := a.Sessions[i], b.Sessions[i]
		if x.Peer != y.Peer || x.Address != y.Address || x.PeerASN != y.PeerASN || x.LocalASN != y.LocalASN ||
			x.LocalAddress != y.LocalAddress || x.State != y.State || !x.Since.Equal(&y.Since) ||
			x.RoutesAdvertised != y.RoutesAdvertised || x.BFDState != y.BFDState || x.LastError != y.LastError {
			return false
		}
	}
	for i := range a.Advertised {
		if a.Advertised[i].Address != b.Advertised[i].Address || !slices.Equal(a.Advertised[i].Peers, b.Advertised[i].Peers) {
			return false
		}
	}
	return true
}
