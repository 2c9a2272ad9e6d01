package controller

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
)

// Service condition types and event reasons Herald writes.
const (
	// ConditionIPAllocated is True when the Service has its addresses; its
	// reason says why not otherwise (see ipam.Reason).
	ConditionIPAllocated = kube.ConditionIPAllocated
	// ConditionAnnounced is True when some node answers ARP/NDP for every
	// address of the Service; its reason says why not otherwise (see
	// announce.Summarize).
	ConditionAnnounced = kube.ConditionAnnounced

	EventIPAllocated      = "IPAllocated"
	EventIPReleased       = "IPReleased"
	EventAllocationFailed = "AllocationFailed"
	// EventAnnouncerChanged is recorded when the nodes answering for a
	// Service's addresses change; other Announced reasons are recorded as
	// Warnings with the reason itself.
	EventAnnouncerChanged = "AnnouncerChanged"
)

// fieldManager owns what the controller applies to Services: their
// status.loadBalancer.ingress, the herald.dev conditions, and the
// herald.dev/announced-ips annotation.
const fieldManager = "herald-controller"

// poolStatusDelay batches pool status writes: a burst of allocations
// produces one write per pool, not one per allocation.
const poolStatusDelay = 250 * time.Millisecond

// reconciler is one leadership term's view of the work.
type reconciler struct {
	*Controller
	recorder record.EventRecorder
	queue    workqueue.TypedRateLimitingInterface[string]
}

// processNext handles one queue item; it returns false when the queue is
// shut down.
func (r *reconciler) processNext(ctx context.Context) bool {
	key, shutdown := r.queue.Get()
	if shutdown {
		return false
	}
	defer r.queue.Done(key)
	var err error
	switch key {
	case poolsKey:
		err = r.reconcilePools(ctx)
	case poolStatusKey:
		err = r.writePoolStatus(ctx)
	case announceKey:
		err = r.reconcileAnnounce(ctx)
	case policiesKey:
		err = r.reconcilePolicies(ctx)
	default:
		err = r.reconcileService(ctx, key)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reconcile failed; retrying", "key", key, "err", err)
		}
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

// reconcilePools re-reads pools and nodes, then revisits every Service:
// a pool edit can free, move or unblock any of them.
func (r *reconciler) reconcilePools(ctx context.Context) error {
	if err := r.syncPools(ctx); err != nil {
		return err
	}
	var svcs corev1.ServiceList
	if err := r.client.List(ctx, &svcs); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		r.queue.Add(serviceKey(s.Namespace, s.Name))
	}
	r.queue.AddAfter(poolStatusKey, poolStatusDelay)
	return nil
}

// reconcileService brings one Service's allocation and status in line.
func (r *reconciler) reconcileService(ctx context.Context, key string) error {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		return nil // not a key this controller makes; drop it
	}
	log := r.log.With("service", key)
	var svc corev1.Service
	err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &svc)
	if apierrors.IsNotFound(err) {
		r.release(key, log)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get service %s: %w", key, err)
	}
	if !kube.Serves(&svc, r.opts.DefaultClass) {
		released := r.release(key, log)
		return r.clearStatus(ctx, &svc, released, log)
	}

	view, verr := serviceView(&svc)
	var res ipam.Result
	r.mu.Lock()
	if verr != nil {
		// Bad input loses nothing: keep what the Service holds, say why
		// nothing new happens.
		held := r.alloc.Lookup(key)
		msg := verr.Error()
		if len(held) > 0 {
			msg += "; keeping " + joinAddrs(held) + " until it is fixed"
		}
		res = ipam.Result{Assigned: held, Reason: ipam.InvalidRequest, Message: msg}
	} else {
		res = r.alloc.Assign(view)
	}
	if res.Reason == ipam.Allocated {
		delete(r.pending, key)
		r.allocated[key] = true
	} else {
		r.pending[key] = true
		delete(r.allocated, key)
	}
	r.publishStates()
	r.mu.Unlock()

	if len(res.Released) > 0 {
		r.metrics.releases.Add(float64(len(res.Released)))
		r.afterRelease()
	}
	if res.Reason != ipam.Allocated && verr == nil {
		r.metrics.failures.WithLabelValues(string(res.Reason)).Inc()
	}
	var sums []announce.AddrSummary
	if len(res.Assigned) > 0 {
		addrs := make([]netip.Addr, len(res.Assigned))
		for i, as := range res.Assigned {
			addrs[i] = as.Addr
		}
		if sums, err = r.summarize(ctx, &svc, addrs); err != nil {
			return err
		}
	}
	if err := r.writeAnnounced(ctx, &svc, res.Assigned, sums); err != nil {
		return err
	}
	return r.writeServiceStatus(ctx, &svc, res, sums, log)
}

// publishStates exports the number of served Services by state; r.mu must
// be held.
func (r *reconciler) publishStates() {
	r.metrics.services.WithLabelValues("allocated").Set(float64(len(r.allocated)))
	r.metrics.services.WithLabelValues("pending").Set(float64(len(r.pending)))
}

// trackAnnounced records key's Announced condition (nil: none) for
// herald_controller_services_announced.
func (r *reconciler) trackAnnounced(key string, cond *metav1.Condition) {
	var cur announcedState
	if cond != nil {
		cur = announcedState{status: string(cond.Status), reason: cond.Reason}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics.setAnnounced(r.announced[key], cur)
	if cur.reason == "" {
		delete(r.announced, key)
	} else {
		r.announced[key] = cur
	}
}

// release frees what key holds and wakes the Services waiting for space.
func (r *reconciler) release(key string, log *slog.Logger) []ipam.Assignment {
	r.mu.Lock()
	released := r.alloc.Release(key)
	delete(r.pending, key)
	delete(r.allocated, key)
	r.metrics.setAnnounced(r.announced[key], announcedState{})
	delete(r.announced, key)
	r.publishStates()
	r.mu.Unlock()
	if len(released) > 0 {
		log.Info("released", "addresses", joinAddrs(released))
		r.metrics.releases.Add(float64(len(released)))
		r.afterRelease()
	}
	return released
}

// afterRelease retries the pending Services, oldest key order, and
// refreshes the pool counters.
func (r *reconciler) afterRelease() {
	r.mu.Lock()
	keys := make([]string, 0, len(r.pending))
	for k := range r.pending {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		r.queue.Add(k)
	}
	r.queue.AddAfter(poolStatusKey, poolStatusDelay)
}

// writeServiceStatus applies ingress and the IPAllocated and Announced
// conditions when they differ from what the Service shows, and records an
// Event on each change. Server-side apply with one field manager: the
// controller owns exactly these fields, and nobody else writes them.
func (r *reconciler) writeServiceStatus(ctx context.Context, svc *corev1.Service, res ipam.Result, sums []announce.AddrSummary, log *slog.Logger) error {
	ingress := make([]corev1.LoadBalancerIngress, 0, len(res.Assigned))
	vip := corev1.LoadBalancerIPModeVIP
	for _, a := range res.Assigned {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: a.Addr.String(), IPMode: &vip})
	}
	alloc := metav1.Condition{
		Type:               ConditionIPAllocated,
		Status:             metav1.ConditionFalse,
		Reason:             string(res.Reason),
		Message:            res.Message,
		ObservedGeneration: svc.Generation,
	}
	if res.Reason == ipam.Allocated {
		alloc.Status = metav1.ConditionTrue
	}
	conds := []metav1.Condition{alloc}
	var announced *metav1.Condition
	if st, reason, msg := announce.Condition(sums); reason != "" {
		announced = &metav1.Condition{
			Type: ConditionAnnounced, Status: metav1.ConditionFalse, Reason: string(reason), Message: msg, ObservedGeneration: svc.Generation,
		}
		if st {
			announced.Status = metav1.ConditionTrue
		}
		conds = append(conds, *announced)
	}
	r.trackAnnounced(serviceKey(svc.Namespace, svc.Name), announced)
	prevAlloc := meta.FindStatusCondition(svc.Status.Conditions, ConditionIPAllocated)
	prevAnn := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced)
	ingressChanged := !equalIngress(svc.Status.LoadBalancer.Ingress, ingress)
	allocChanged := conditionChanged(prevAlloc, &alloc)
	annChanged := conditionChanged(prevAnn, announced)
	if !ingressChanged && !allocChanged && !annChanged {
		return nil
	}
	if err := r.applyStatus(ctx, svc, ingress, conds); err != nil {
		return err
	}
	r.queue.AddAfter(poolStatusKey, poolStatusDelay)

	newAddrs := joinAddrs(res.Assigned)
	switch {
	case res.Reason == ipam.Allocated && (ingressChanged || prevAlloc == nil || prevAlloc.Status != metav1.ConditionTrue):
		r.metrics.allocations.Add(float64(len(res.Assigned)))
		log.Info("allocated", "addresses", newAddrs, "message", res.Message)
		r.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPAllocated, "%s", res.Message)
	case res.Reason != ipam.Allocated && (prevAlloc == nil || prevAlloc.Reason != alloc.Reason || prevAlloc.Message != alloc.Message):
		log.Info("pending", "reason", res.Reason, "message", res.Message)
		r.recorder.Eventf(svc, corev1.EventTypeWarning, EventAllocationFailed, "%s: %s", res.Reason, res.Message)
	}
	if len(res.Released) > 0 {
		// The allocator's message already says what was released and why.
		r.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPReleased, "%s", res.Message)
	}
	if annChanged && announced != nil {
		r.announcedEvent(svc, prevAnn, announced, log)
	}
	return nil
}

// announcedEvent records a change of the Announced condition: who answers
// now, or why nobody does. A Service waiting for its first answer (Pending,
// a probe's fraction of a second) makes no noise.
func (r *reconciler) announcedEvent(svc *corev1.Service, prev, cur *metav1.Condition, log *slog.Logger) {
	log.Info("announcement", "status", cur.Status, "reason", cur.Reason, "message", cur.Message)
	switch {
	case cur.Reason == string(announce.Announced):
		r.recorder.Eventf(svc, corev1.EventTypeNormal, EventAnnouncerChanged, "%s", cur.Message)
	case cur.Reason == string(announce.Pending):
	case prev != nil && prev.Reason == cur.Reason && cur.Status == metav1.ConditionFalse && prev.Status == cur.Status:
		// The same problem with other details (a node's interfaces
		// changed): the condition says it; no new Event.
	default:
		r.recorder.Eventf(svc, corev1.EventTypeWarning, cur.Reason, "%s", cur.Message)
	}
}

// conditionChanged reports whether cur differs from prev in what users
// see; nil cur means the condition should not exist.
func conditionChanged(prev, cur *metav1.Condition) bool {
	if prev == nil || cur == nil {
		return (prev == nil) != (cur == nil)
	}
	return prev.Status != cur.Status || prev.Reason != cur.Reason || prev.Message != cur.Message || prev.ObservedGeneration != cur.ObservedGeneration
}

// applyStatus applies the controller's part of a Service's status. A
// condition keeps its lastTransitionTime while its status stays.
func (r *reconciler) applyStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, conds []metav1.Condition) error {
	st := corev1ac.ServiceStatus().WithLoadBalancer(corev1ac.LoadBalancerStatus())
	for _, in := range ingress {
		ing := corev1ac.LoadBalancerIngress().WithIP(in.IP)
		if in.IPMode != nil {
			ing.WithIPMode(*in.IPMode)
		}
		st.LoadBalancer.WithIngress(ing)
	}
	now := metav1.Now()
	for _, c := range conds {
		t := now
		if prev := meta.FindStatusCondition(svc.Status.Conditions, c.Type); prev != nil && prev.Status == c.Status {
			t = prev.LastTransitionTime
		}
		st.WithConditions(metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).
			WithMessage(c.Message).WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(t))
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(st)
	if _, err := r.kube.CoreV1().Services(svc.Namespace).ApplyStatus(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		r.metrics.statusWrite.WithLabelValues("service", "error").Inc()
		return fmt.Errorf("apply status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	r.metrics.statusWrite.WithLabelValues("service", "ok").Inc()
	return nil
}

// writeAnnounced keeps the herald.dev/announced-ips annotation: the held
// addresses a node has answered for at least once. It only grows while the
// Service keeps an address, and loses what the Service no longer holds.
func (r *reconciler) writeAnnounced(ctx context.Context, svc *corev1.Service, held []ipam.Assignment, sums []announce.AddrSummary) error {
	prev := kube.AnnouncedAddrs(svc)
	var want []netip.Addr
	for _, h := range held {
		if slices.Contains(prev, h.Addr) || slices.ContainsFunc(sums, func(s announce.AddrSummary) bool { return s.Addr == h.Addr && s.Answered }) {
			want = append(want, h.Addr)
		}
	}
	slices.SortFunc(want, netip.Addr.Compare)
	value := joinIPs(want)
	if value == svc.Annotations[kube.AnnouncedAnnotation] {
		return nil
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace)
	if value != "" {
		ac.WithAnnotations(map[string]string{kube.AnnouncedAnnotation: value})
	}
	if _, err := r.kube.CoreV1().Services(svc.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("record the announced addresses of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func joinIPs(as []netip.Addr) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

// clearStatus removes what Herald wrote on a Service it no longer serves
// (type changed away from LoadBalancer, or a foreign class): applying an
// empty status drops every field the controller owns, and nothing else.
func (r *reconciler) clearStatus(ctx context.Context, svc *corev1.Service, released []ipam.Assignment, log *slog.Logger) error {
	ours := meta.FindStatusCondition(svc.Status.Conditions, ConditionIPAllocated) != nil ||
		meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced) != nil
	if !ours && len(released) == 0 && svc.Annotations[kube.AnnouncedAnnotation] == "" {
		return nil
	}
	if err := r.writeAnnounced(ctx, svc, nil, nil); err != nil {
		return err
	}
	ac := corev1ac.Service(svc.Name, svc.Namespace).WithStatus(corev1ac.ServiceStatus())
	if _, err := r.kube.CoreV1().Services(svc.Namespace).ApplyStatus(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("clear status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	if len(released) > 0 {
		log.Info("no longer served; released", "addresses", joinAddrs(released))
		r.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPReleased, "released %s: the Service is no longer served by Herald", joinAddrs(released))
	}
	return nil
}

// writePoolStatus writes each pool's conditions and counters when they
// changed.
func (r *reconciler) writePoolStatus(ctx context.Context) error {
	var pools heraldv1.LoadBalancerIPPoolList
	if err := r.client.List(ctx, &pools); err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	r.mu.Lock()
	statuses := map[string]ipam.PoolStatus{}
	all := r.alloc.PoolStatuses()
	for _, s := range all {
		statuses[s.Name] = s
	}
	poolErrors := make(map[string]string, len(r.poolErrors))
	for k, v := range r.poolErrors {
		poolErrors[k] = v
	}
	excluded := map[string][]heraldv1.ExcludedAddress{}
	if idx := r.index.Load(); idx != nil {
		for _, e := range idx.exclusions {
			if ip, err := netip.ParseAddr(e.Address); err == nil {
				for _, pool := range r.alloc.PoolsContaining(ip) {
					excluded[pool] = append(excluded[pool], e)
				}
			}
		}
	}
	r.mu.Unlock()
	r.metrics.setPools(all)

	var firstErr error
	for i := range pools.Items {
		p := &pools.Items[i]
		updated := p.DeepCopy()
		st, known := statuses[p.Name]
		conflict := metav1.Condition{Type: heraldv1.PoolConflictCondition, ObservedGeneration: p.Generation}
		avail := metav1.Condition{Type: heraldv1.IPsAvailableCondition, ObservedGeneration: p.Generation}
		switch {
		case poolErrors[p.Name] != "":
			conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, "InvalidSpec", poolErrors[p.Name]
			avail.Status, avail.Reason, avail.Message = metav1.ConditionFalse, "InvalidSpec", "0"
			updated.Status.IPsTotal, updated.Status.IPsUsed, updated.Status.IPsAvailable = "0", "0", "0"
		case !known:
			// Created after the last pool sync; the pools key is queued.
			continue
		default:
			if st.Conflict != "" {
				conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, string(st.Conflict), st.ConflictMessage
			} else {
				conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionFalse, "NoConflict", "the pool overlaps no other pool and no node address"
			}
			avail.Message = st.Available.String()
			if st.Available.Sign() > 0 {
				avail.Status, avail.Reason = metav1.ConditionTrue, "FreeAddresses"
			} else {
				avail.Status, avail.Reason = metav1.ConditionFalse, "Exhausted"
			}
			updated.Status.IPsTotal = st.Total.String()
			updated.Status.IPsUsed = fmt.Sprint(st.Used)
			updated.Status.IPsAvailable = st.Available.String()
		}
		updated.Status.ExcludedAddresses = excluded[p.Name]
		changed := meta.SetStatusCondition(&updated.Status.Conditions, conflict)
		changed = meta.SetStatusCondition(&updated.Status.Conditions, avail) || changed
		changed = changed || !equality.Semantic.DeepEqual(updated.Status.ExcludedAddresses, p.Status.ExcludedAddresses)
		changed = changed || updated.Status.IPsTotal != p.Status.IPsTotal ||
			updated.Status.IPsUsed != p.Status.IPsUsed || updated.Status.IPsAvailable != p.Status.IPsAvailable
		if !changed {
			continue
		}
		if err := r.client.Status().Update(ctx, updated); err != nil {
			r.metrics.statusWrite.WithLabelValues("pool", "error").Inc()
			if firstErr == nil {
				firstErr = fmt.Errorf("update status of pool %s: %w", p.Name, err)
			}
			continue
		}
		r.metrics.statusWrite.WithLabelValues("pool", "ok").Inc()
	}
	return firstErr
}

func equalIngress(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool {
		if x.IP != y.IP || x.Hostname != y.Hostname || len(x.Ports) != 0 || len(y.Ports) != 0 {
			return false
		}
		return (x.IPMode == nil) == (y.IPMode == nil) && (x.IPMode == nil || *x.IPMode == *y.IPMode)
	})
}

func joinAddrs(as []ipam.Assignment) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.Addr.String()
	}
	return strings.Join(parts, ",")
}

// reconcileAnnounce rebuilds the index of the agents' reports, hands the
// addresses probes found in use to the allocator, and revisits every
// Service: any of them may be announced by another node now, or by none.
func (r *reconciler) reconcileAnnounce(ctx context.Context) error {
	idx, err := r.loadIndex(ctx)
	if err != nil {
		return err
	}
	r.metrics.setConflicts(idx.conflicts)
	r.mu.Lock()
	prev := r.index.Swap(idx)
	changed := prev == nil || !maps.Equal(prev.excluded, idx.excluded)
	if changed {
		r.alloc.SetExcluded(idx.excluded)
	}
	r.mu.Unlock()
	if changed {
		r.log.Info("addresses in use by other hosts on the LAN", "excluded", len(idx.excluded))
		r.queue.AddAfter(poolStatusKey, poolStatusDelay)
	}
	var svcs corev1.ServiceList
	if err := r.client.List(ctx, &svcs); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for i := range svcs.Items {
		if s := &svcs.Items[i]; kube.Serves(s, r.opts.DefaultClass) {
			r.queue.Add(serviceKey(s.Namespace, s.Name))
		}
	}
	return nil
}

// loadIndex builds the announcement index from the cache.
func (c *Controller) loadIndex(ctx context.Context) (*announceIndex, error) {
	var reports heraldv1.HeraldNodeList
	if err := c.client.List(ctx, &reports); err != nil {
		return nil, fmt.Errorf("list HeraldNodes: %w", err)
	}
	var nodes corev1.NodeList
	if err := c.client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return buildIndex(reports.Items, nodes.Items), nil
}

// reconcilePolicies writes each L2AnnouncementPolicy's Valid condition:
// False, naming the field, when a regex or selector cannot be used (the
// API server's validation catches most; RE2 details and selector values
// get here), so a policy that selects nothing says why.
func (r *reconciler) reconcilePolicies(ctx context.Context) error {
	var pols heraldv1.L2AnnouncementPolicyList
	if err := r.client.List(ctx, &pols); err != nil {
		return fmt.Errorf("list policies: %w", err)
	}
	var firstErr error
	for i := range pols.Items {
		p := &pols.Items[i]
		cond := metav1.Condition{Type: heraldv1.PolicyValidCondition, Status: metav1.ConditionTrue, Reason: "Valid",
			Message: "the policy's interfaces and selectors can be used", ObservedGeneration: p.Generation}
		if _, err := kube.PolicyView(p, nil); err != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidSpec", err.Error()+"; the policy announces nothing"
		}
		updated := p.DeepCopy()
		if !meta.SetStatusCondition(&updated.Status.Conditions, cond) {
			continue
		}
		if err := r.client.Status().Update(ctx, updated); err != nil {
			if firstErr == nil && !apierrors.IsNotFound(err) {
				firstErr = fmt.Errorf("update status of policy %s: %w", p.Name, err)
			}
			continue
		}
		if cond.Status == metav1.ConditionFalse {
			r.log.Warn("policy cannot be used", "policy", p.Name, "err", cond.Message)
			r.recorder.Eventf(updated, corev1.EventTypeWarning, "InvalidSpec", "%s", cond.Message)
		}
	}
	return firstErr
}
