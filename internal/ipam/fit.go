package ipam

import (
	"fmt"
	"slices"
)

// Fit is whether one pool may hand a Service new addresses, and if not,
// why: the allocator's own rule (evalPools, noPoolWhy), exported so that an
// explanation of a Service (herald explain) never disagrees with it.
type Fit string

// The ways a pool fits a Service, in the order the allocator checks them.
const (
	// FitOK: the pool may hand the Service addresses.
	FitOK Fit = "Serves"
	// FitPinnedElsewhere: the Service is pinned (herald.dev/pool or its
	// MetalLB forms) to another pool.
	FitPinnedElsewhere Fit = "PinnedElsewhere"
	// FitNotSelected: the pool's serviceSelector does not select the
	// Service.
	FitNotSelected Fit = "NotSelected"
	// FitConflict: the pool is in conflict and hands out nothing.
	FitConflict Fit = "Conflict"
	// FitDisabled: the pool is disabled (addresses already held stay).
	FitDisabled Fit = "Disabled"
	// FitNoFamily: the pool has no address of a family the Service wants.
	FitNoFamily Fit = "NoFamily"
	// FitInvalidRequest: the Service's request cannot be read.
	FitInvalidRequest Fit = "InvalidRequest"
)

// poolAdmits is the allocator's rule for one pool and a Service's labels
// and pinned pool: selects (the selector matches), keep (the Service may
// hold addresses of the pool).
func poolAdmits(name string, sel Selector, conflict ConflictReason, labels map[string]string, pin string) (selects, keep bool) {
	selects = sel == nil || sel.Matches(labels)
	keep = selects && (pin == "" || pin == name) && conflict == ""
	return selects, keep
}

// FitPool says whether pool p, in conflict or not as the controller found
// it (its PoolConflict condition), may hand svc new addresses, with a
// message naming the annotation, selector or family concerned. Whether the
// pool still has free addresses is the pool's status, not decided here.
func FitPool(p Pool, conflict ConflictReason, svc Service) (Fit, string) {
	r, bad := normalize(&svc)
	if bad != nil {
		return FitInvalidRequest, bad.Message
	}
	selects, keep := poolAdmits(p.Name, p.Selector, conflict, r.labels, r.pool)
	switch {
	case r.pool != "" && r.pool != p.Name:
		return FitPinnedElsewhere, fmt.Sprintf("the Service is pinned to pool %q (herald.dev/pool)", r.pool)
	case !selects:
		return FitNotSelected, fmt.Sprintf("the serviceSelector of pool %q does not select the Service", p.Name)
	case !keep:
		return FitConflict, fmt.Sprintf("pool %q is in conflict (%s) and hands out nothing", p.Name, conflict)
	case p.Disabled:
		return FitDisabled, fmt.Sprintf("pool %q is disabled", p.Name)
	}
	var offers []Family
	for _, b := range p.Blocks {
		if b.valid() && !slices.Contains(offers, b.Family()) {
			offers = append(offers, b.Family())
		}
	}
	var missing []Family
	for _, f := range r.wanted() {
		if !slices.Contains(offers, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) == len(r.wanted()) {
		return FitNoFamily, fmt.Sprintf("pool %q has no %v address the Service wants", p.Name, missing)
	}
	return FitOK, fmt.Sprintf("pool %q may serve the Service", p.Name)
}
