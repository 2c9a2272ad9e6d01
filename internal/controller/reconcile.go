package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
)

// Service condition types and event reasons Herald writes.
const (
	// ConditionIPAllocated is True when the Service has its addresses; its
	// reason says why not otherwise (see ipam.Reason).
	ConditionIPAllocated = "herald.dev/IPAllocated"

	// ConditionAnnounced is written by the node agent that announces the
	// Service's primary address (see internal/agent). The controller reads
	// it for one reason: ReasonAddressConflict, whose message starts with
	// the address a foreign host on the LAN uses, so that address is
	// excluded and the Service moves to another.
	ConditionAnnounced    = "herald.dev/Announced"
	ReasonAddressConflict = "AddressConflict"

	EventIPAllocated      = "IPAllocated"
	EventIPReleased       = "IPReleased"
	EventAllocationFailed = "AllocationFailed"
)

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
	case conflictsKey:
		r.mu.Lock()
		r.applyConflicts()
		r.mu.Unlock()
		err = r.reconcilePools(ctx) // revisit every Service
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
	r.noteConflict(&svc)
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
	return r.writeServiceStatus(ctx, &svc, res, log)
}

// publishStates exports the number of served Services by state; r.mu must
// be held.
func (r *reconciler) publishStates() {
	r.metrics.services.WithLabelValues("allocated").Set(float64(len(r.allocated)))
	r.metrics.services.WithLabelValues("pending").Set(float64(len(r.pending)))
}

// release frees what key holds and wakes the Services waiting for space.
func (r *reconciler) release(key string, log *slog.Logger) []ipam.Assignment {
	r.mu.Lock()
	released := r.alloc.Release(key)
	delete(r.pending, key)
	delete(r.allocated, key)
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

// writeServiceStatus writes ingress and the IPAllocated condition when they
// differ from what the Service shows, and records an Event on each change.
func (r *reconciler) writeServiceStatus(ctx context.Context, svc *corev1.Service, res ipam.Result, log *slog.Logger) error {
	updated := svc.DeepCopy()
	ingress := make([]corev1.LoadBalancerIngress, 0, len(res.Assigned))
	vip := corev1.LoadBalancerIPModeVIP
	for _, a := range res.Assigned {
		ingress = append(ingress, corev1.LoadBalancerIngress{IP: a.Addr.String(), IPMode: &vip})
	}
	if len(ingress) == 0 {
		ingress = nil
	}
	cond := metav1.Condition{
		Type:               ConditionIPAllocated,
		Status:             metav1.ConditionFalse,
		Reason:             string(res.Reason),
		Message:            res.Message,
		ObservedGeneration: svc.Generation,
	}
	if res.Reason == ipam.Allocated {
		cond.Status = metav1.ConditionTrue
	}
	prev := meta.FindStatusCondition(svc.Status.Conditions, ConditionIPAllocated)
	condChanged := meta.SetStatusCondition(&updated.Status.Conditions, cond)
	ingressChanged := !equalIngress(svc.Status.LoadBalancer.Ingress, ingress)
	if ingressChanged {
		updated.Status.LoadBalancer.Ingress = ingress
	}
	if !condChanged && !ingressChanged {
		return nil
	}
	if err := r.client.Status().Update(ctx, updated); err != nil {
		if apierrors.IsConflict(err) {
			r.metrics.statusWrite.WithLabelValues("service", "conflict").Inc()
		} else {
			r.metrics.statusWrite.WithLabelValues("service", "error").Inc()
		}
		return fmt.Errorf("update status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	r.metrics.statusWrite.WithLabelValues("service", "ok").Inc()
	r.queue.AddAfter(poolStatusKey, poolStatusDelay)

	newAddrs := joinAddrs(res.Assigned)
	switch {
	case res.Reason == ipam.Allocated && (ingressChanged || prev == nil || prev.Status != metav1.ConditionTrue):
		r.metrics.allocations.Add(float64(len(res.Assigned)))
		log.Info("allocated", "addresses", newAddrs, "message", res.Message)
		r.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPAllocated, "%s", res.Message)
	case res.Reason != ipam.Allocated && (prev == nil || prev.Reason != cond.Reason || prev.Message != cond.Message):
		log.Info("pending", "reason", res.Reason, "message", res.Message)
		r.recorder.Eventf(svc, corev1.EventTypeWarning, EventAllocationFailed, "%s: %s", res.Reason, res.Message)
	}
	if len(res.Released) > 0 {
		// The allocator's message says why (pool shrunk, address in use by
		// another host, …) and where the Service went.
		r.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPReleased, "released %s: %s", joinAddrs(res.Released), res.Message)
	}
	return nil
}

// clearStatus removes what Herald wrote on a Service it no longer serves
// (type changed away from LoadBalancer, or a foreign class).
func (r *reconciler) clearStatus(ctx context.Context, svc *corev1.Service, released []ipam.Assignment, log *slog.Logger) error {
	updated := svc.DeepCopy()
	changed := meta.RemoveStatusCondition(&updated.Status.Conditions, ConditionIPAllocated)
	if len(released) > 0 && svc.Spec.Type != corev1.ServiceTypeLoadBalancer && len(updated.Status.LoadBalancer.Ingress) > 0 {
		// Only addresses Herald handed out are cleared; another
		// implementation's status on a foreign class is not Herald's.
		updated.Status.LoadBalancer.Ingress = nil
		changed = true
	}
	if !changed {
		return nil
	}
	if err := r.client.Status().Update(ctx, updated); err != nil {
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
		changed := meta.SetStatusCondition(&updated.Status.Conditions, conflict)
		changed = meta.SetStatusCondition(&updated.Status.Conditions, avail) || changed
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

// conflictExpiry is how long an address a foreign host used stays out of
// allocation; after it the address may be handed out (and is probed by the
// agent before it is announced) again: the host may have gone.
const conflictExpiry = 10 * time.Minute

// noteConflict excludes an address that the announcing agent found in use
// by a foreign host (condition herald.dev/Announced, reason
// AddressConflict), so the Service moves to another address.
func (r *reconciler) noteConflict(svc *corev1.Service) {
	c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonAddressConflict {
		return
	}
	fields := strings.Fields(c.Message)
	if len(fields) == 0 {
		return
	}
	addr, err := netip.ParseAddr(fields[0])
	if err != nil {
		return
	}
	addr = addr.Unmap()
	held := false
	for _, a := range ingressAddrs(svc) {
		held = held || a == addr
	}
	if !held {
		return // about an address the Service no longer has
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, known := r.conflicts[addr]; known {
		return
	}
	detail := strings.TrimSpace(strings.TrimPrefix(c.Message, fields[0]))
	r.conflicts[addr] = conflict{detail: detail, at: time.Now()}
	r.log.Warn("address in use by another host on the LAN; excluding it", "ip", addr, "service", svc.Namespace+"/"+svc.Name, "detail", detail)
	r.applyConflicts()
	r.queue.AddAfter(conflictsKey, conflictExpiry)
}

// applyConflicts hands the current exclusions to the allocator, dropping
// expired ones; r.mu must be held.
func (r *reconciler) applyConflicts() {
	ex := make(map[netip.Addr]string, len(r.conflicts))
	for a, c := range r.conflicts {
		if time.Since(c.at) >= conflictExpiry {
			delete(r.conflicts, a)
			continue
		}
		ex[a] = c.detail
	}
	r.alloc.SetExcluded(ex)
}
