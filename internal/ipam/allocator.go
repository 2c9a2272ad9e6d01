package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"
)

// Allocator hands out load-balancer addresses from pools to Services.
//
// It is safe for concurrent use; every method takes one mutex, so callers
// see each operation as atomic. Its zero value is ready to use, like New().
//
// Costs, for n held addresses, P pools and B blocks per pool: Assign,
// Adopt and Release are O(P·(B + log n)) plus, for a sharing Service with no
// requested address, the addresses already held under its sharing key.
// SetPools is O(n + total blocks · log). Nothing walks an address range.
type Allocator struct {
	mu sync.Mutex

	// pools in name order, and by name.
	pools  []*poolState
	byName map[string]*poolState

	// excluded are addresses a foreign host on the LAN answers for, with
	// the description shown to users.
	excluded map[netip.Addr]string

	// held has every address held by at least one Service; taken has held
	// plus excluded, and is where fresh allocation looks for the lowest
	// free address in one O(log n) step.
	held  *addrSet
	taken *addrSet

	// addrs are the holders of each held address.
	addrs map[netip.Addr]*holding
	// svcs are the Services holding at least one address (a Service that
	// holds nothing has no entry, so failed Services cost no memory).
	svcs map[string]*svcEntry
	// shared indexes, per sharing key, the addresses whose holders share
	// under that key, in address order, so a new sharer finds the lowest
	// joinable address without looking at unrelated addresses.
	shared map[string]*btree.BTreeG[netip.Addr]

	// evBuf is reused by evalPools (under mu) to spare an allocation per
	// Assign.
	evBuf []poolEval
}

// holding is one held address.
type holding struct {
	// keys are the holders' Service keys, sorted.
	keys []string
	// shareKey is the sharing key the holders share under ("" when the
	// single holder does not share); it is the address's key in shared.
	shareKey string
}

// svcEntry is a Service that holds addresses.
type svcEntry struct {
	view shareView
	held []Assignment // primary family first
}

// New returns an empty allocator: no pools, nothing held.
func New() *Allocator {
	a := &Allocator{}
	a.init()
	return a
}

// init makes the zero Allocator usable.
func (a *Allocator) init() {
	if a.held != nil {
		return
	}
	a.byName = map[string]*poolState{}
	a.excluded = map[netip.Addr]string{}
	a.held = newAddrSet()
	a.taken = newAddrSet()
	a.addrs = map[netip.Addr]*holding{}
	a.svcs = map[string]*svcEntry{}
	a.shared = map[string]*btree.BTreeG[netip.Addr]{}
}

// SetPools replaces the pool set, recomputes conflicts and per-pool counts,
// and returns a PoolStatus per pool in name order.
//
// It releases nothing by itself: the caller re-runs Assign for every
// Service afterwards, and Assign releases held addresses that are no longer
// valid (pool shrunk, deleted, selector changed, in conflict). Disabling a
// pool keeps what it already handed out.
func (a *Allocator) SetPools(pools []Pool, nodes []NodeAddress) []PoolStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	a.pools = buildPools(pools, nodes)
	a.byName = make(map[string]*poolState, len(a.pools))
	for _, p := range a.pools {
		a.byName[p.name] = p
		for _, b := range p.merged {
			p.used = satAdd(p.used, a.held.Count(b.First, b.Last))
		}
	}
	return a.statusesLocked()
}

// PoolStatuses returns the current status of every pool, in name order.
// Counts follow every Assign, Adopt and Release.
func (a *Allocator) PoolStatuses() []PoolStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statusesLocked()
}

func (a *Allocator) statusesLocked() []PoolStatus {
	out := make([]PoolStatus, len(a.pools))
	for i, p := range a.pools {
		out[i] = p.status()
	}
	return out
}

// SetExcluded replaces the set of addresses that a foreign host on the LAN
// was found using (address-conflict detection); the value describes the
// finding for users (e.g. "answered by 02:42:ac:11:00:01 on eth0").
//
// Excluded addresses are never handed out fresh; a Service holding one that
// was never announced for it (Service.Announced) moves to another address
// on its next Assign, unless it requested that one, and then it gets
// Reason AddressConflict. A Service keeps an excluded address that was
// announced for it. Like SetPools, it releases nothing by itself.
func (a *Allocator) SetExcluded(ex map[netip.Addr]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	next := make(map[netip.Addr]string, len(ex))
	for addr, why := range ex {
		if addr.IsValid() {
			next[plain(addr)] = why
		}
	}
	for addr := range a.excluded {
		if _, still := next[addr]; !still && a.addrs[addr] == nil {
			a.taken.Remove(addr)
		}
	}
	for addr := range next {
		a.taken.Insert(addr)
	}
	a.excluded = next
}

// PoolsContaining returns the names of the pools whose blocks contain
// addr, in pool order (overlapping pools are possible while one is in
// conflict).
func (a *Allocator) PoolsContaining(addr netip.Addr) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, p := range a.pools {
		if p.contains(plain(addr)) {
			out = append(out, p.name)
		}
	}
	return out
}

// plain strips a zone and unmaps an IPv4-mapped address, so that one
// address has one identity in every map and set.
func plain(addr netip.Addr) netip.Addr { return addr.WithZone("").Unmap() }

// Adopt records addresses a Service already had (status.loadBalancer.ingress
// found at controller start). It keeps each address that is valid for the
// Service by the same rules as keeping in Assign, including sharing
// compatibility with holders adopted before it, at most one per family, and
// ignores the rest. It returns the adopted addresses, in the order given.
//
// The controller calls it for every Service, oldest first, before any
// Assign, so that restarts change no address: a later Assign keeps what was
// adopted. If the Service already holds addresses, they come first and are
// re-checked the same way (Adopt never leaves an invalid holding behind),
// and an adopted address of a family it still holds is ignored.
func (a *Allocator) Adopt(svc Service, addrs []netip.Addr) []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	var old []Assignment
	if e := a.svcs[svc.Key]; e != nil {
		old = e.held
	}
	r, fail := normalize(&svc)
	if fail == nil {
		fail = r.policyFailure()
	}
	if fail != nil {
		// Nothing is valid for a Service that cannot be assigned; the
		// next Assign reports why.
		if len(old) > 0 {
			a.apply(&svcReq{key: svc.Key}, old, nil)
		}
		return nil
	}
	ev := a.evalPools(r)
	var target, adopted []Assignment
	consider := func(addr netip.Addr) (Assignment, bool) {
		if !addr.IsValid() {
			return Assignment{}, false
		}
		addr = plain(addr)
		f := FamilyOf(addr)
		if !r.wants(f) || slices.ContainsFunc(target, func(x Assignment) bool { return FamilyOf(x.Addr) == f }) {
			return Assignment{}, false
		}
		if req, ok := r.requested[f]; ok && req != addr {
			return Assignment{}, false
		}
		pool, why := a.keepable(r, ev, addr)
		if why != "" {
			return Assignment{}, false
		}
		as := Assignment{Addr: addr, Pool: pool}
		target = append(target, as)
		return as, true
	}
	for _, o := range old {
		consider(o.Addr)
	}
	for _, addr := range addrs {
		if addr.IsValid() {
			if i := slices.IndexFunc(target, func(x Assignment) bool { return x.Addr == plain(addr) }); i >= 0 {
				if !slices.Contains(adopted, target[i]) {
					adopted = append(adopted, target[i])
				}
				continue
			}
		}
		if as, ok := consider(addr); ok {
			adopted = append(adopted, as)
		}
	}
	r.sortByFamily(target)
	a.apply(r, old, target)
	return adopted
}

// Release frees everything the Service holds (it was deleted, its type
// changed, or its class is not Herald's) and returns what it held.
func (a *Allocator) Release(key string) []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	e := a.svcs[key]
	if e == nil {
		return nil
	}
	old := e.held
	a.apply(&svcReq{key: key}, old, nil)
	return slices.Clone(old)
}

// Lookup returns what the Service holds now, primary family first.
func (a *Allocator) Lookup(key string) []Assignment {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	if e := a.svcs[key]; e != nil {
		return slices.Clone(e.held)
	}
	return nil
}

// Holders returns the keys of the Services holding addr, sorted.
func (a *Allocator) Holders(addr netip.Addr) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.init()
	if h := a.addrs[plain(addr)]; h != nil {
		return slices.Clone(h.keys)
	}
	return nil
}

// apply moves the Service from holding old to holding target, keeping the
// address sets, holder lists, sharing index and pool counters in step.
func (a *Allocator) apply(r *svcReq, old, target []Assignment) {
	has := func(list []Assignment, addr netip.Addr) bool {
		return slices.ContainsFunc(list, func(x Assignment) bool { return x.Addr == addr })
	}
	for _, o := range old {
		if !has(target, o.Addr) {
			a.unhold(o.Addr, r.key)
		}
	}
	if len(target) == 0 {
		delete(a.svcs, r.key)
		return
	}
	a.svcs[r.key] = &svcEntry{view: r.view, held: target}
	for _, t := range target {
		if !has(old, t.Addr) {
			a.hold(t.Addr, r.key)
		}
		// The Service's sharing key may have changed while it kept the
		// address alone; re-file the address under the right key.
		a.refile(t.Addr)
	}
}

// hold adds key as a holder of addr.
func (a *Allocator) hold(addr netip.Addr, key string) {
	h := a.addrs[addr]
	if h == nil {
		h = &holding{}
		a.addrs[addr] = h
		a.held.Insert(addr)
		a.taken.Insert(addr)
		for _, p := range a.pools {
			if p.contains(addr) {
				p.used++
			}
		}
	}
	if i, found := slices.BinarySearch(h.keys, key); !found {
		h.keys = slices.Insert(h.keys, i, key)
	}
}

// unhold removes key as a holder of addr, freeing addr with its last holder.
func (a *Allocator) unhold(addr netip.Addr, key string) {
	h := a.addrs[addr]
	if h == nil {
		return
	}
	if i, found := slices.BinarySearch(h.keys, key); found {
		h.keys = slices.Delete(h.keys, i, i+1)
	}
	if len(h.keys) > 0 {
		a.refile(addr)
		return
	}
	a.setShareKey(addr, h, "")
	delete(a.addrs, addr)
	a.held.Remove(addr)
	if _, ex := a.excluded[addr]; !ex {
		a.taken.Remove(addr)
	}
	for _, p := range a.pools {
		if p.contains(addr) && p.used > 0 {
			p.used--
		}
	}
}

// refile files addr in the sharing index under its holders' key. All
// holders share one key (each joined only after checking every holder),
// so the first holder's key is the address's key.
func (a *Allocator) refile(addr netip.Addr) {
	h := a.addrs[addr]
	if h == nil || len(h.keys) == 0 {
		return
	}
	key := ""
	if e := a.svcs[h.keys[0]]; e != nil && e.view.sharing != nil {
		key = e.view.sharing.Key
	}
	a.setShareKey(addr, h, key)
}

// setShareKey moves addr in the sharing index from h.shareKey to key.
func (a *Allocator) setShareKey(addr netip.Addr, h *holding, key string) {
	if h.shareKey == key {
		return
	}
	if t := a.shared[h.shareKey]; t != nil {
		t.Delete(addr)
		if t.Len() == 0 {
			delete(a.shared, h.shareKey)
		}
	}
	h.shareKey = key
	if key == "" {
		return
	}
	t := a.shared[key]
	if t == nil {
		t = btree.NewG(btreeDegree, func(x, y netip.Addr) bool { return x.Less(y) })
		a.shared[key] = t
	}
	t.ReplaceOrInsert(addr)
}

// poolEval is what one pool is to the Service being assigned.
type poolEval struct {
	p *poolState
	// selects: the pool's selector matches the Service.
	selects bool
	// keep: the Service may keep an address of this pool (selects, not
	// pinned elsewhere, not in conflict; a disabled pool still counts).
	keep bool
	// candidate: the pool may hand the Service a new address (keep and
	// not disabled).
	candidate bool
}

// evalPools evaluates every pool for r, in name order.
func (a *Allocator) evalPools(r *svcReq) []poolEval {
	ev := slices.Grow(a.evBuf[:0], len(a.pools))[:len(a.pools)]
	a.evBuf = ev
	for i, p := range a.pools {
		sel, keep := poolAdmits(p.name, p.selector, p.conflict, r.labels, r.pool)
		ev[i] = poolEval{p: p, selects: sel, keep: keep, candidate: keep && !p.disabled}
	}
	return ev
}

// keepable returns the pool through which r may hold addr, or why it may
// not: addr must not be excluded, must lie in a pool r may keep addresses
// of, and r must be compatible with every other holder. The family and
// request checks are the caller's.
func (a *Allocator) keepable(r *svcReq, ev []poolEval, addr netip.Addr) (pool, why string) {
	if desc, ex := a.excluded[addr]; ex && !r.wasAnnounced(addr) {
		return "", conflictText(addr, desc)
	}
	for _, e := range ev {
		if e.keep && e.p.contains(addr) {
			pool = e.p.name
			break
		}
	}
	if pool == "" {
		return "", fmt.Sprintf("%s is no longer available to this Service: %s", addr, a.poolWhy(r, ev, addr))
	}
	if why := a.shareWhy(r, addr); why != "" {
		return "", why
	}
	return pool, ""
}

// conflictText describes an excluded address.
func conflictText(addr netip.Addr, desc string) string {
	s := fmt.Sprintf("%s is in use by another host on the LAN", addr)
	if desc != "" {
		s += " (" + desc + ")"
	}
	return s
}

// shareWhy returns why r cannot hold addr alongside its other holders, or "".
func (a *Allocator) shareWhy(r *svcReq, addr netip.Addr) string {
	h := a.addrs[addr]
	if h == nil {
		return ""
	}
	for _, k := range h.keys {
		if k == r.key {
			continue
		}
		e := a.svcs[k]
		if e == nil {
			continue
		}
		if r.view.sharing == nil {
			return fmt.Sprintf("%s is in use by %s (this Service has no sharing key)", addr, k)
		}
		if e.view.sharing == nil {
			return fmt.Sprintf("%s is in use by %s, which does not share its address", addr, k)
		}
		if why := sharingConflict(&r.view, &e.view); why != "" {
			return fmt.Sprintf("cannot share %s with %s: %s", addr, k, why)
		}
	}
	return ""
}

// poolWhy explains why no pool lets r have addr: no pool contains it, or
// for each pool that does, what keeps it from serving r.
func (a *Allocator) poolWhy(r *svcReq, ev []poolEval, addr netip.Addr) string {
	var why []string
	for _, e := range ev {
		if !e.p.contains(addr) {
			continue
		}
		switch {
		case r.pool != "" && r.pool != e.p.name:
			why = append(why, fmt.Sprintf("it is in pool %q but the Service is pinned to pool %q", e.p.name, r.pool))
		case !e.selects:
			why = append(why, fmt.Sprintf("pool %q does not select this Service", e.p.name))
		case e.p.conflict != "":
			why = append(why, fmt.Sprintf("pool %q is in conflict (%s: %s)", e.p.name, e.p.conflict, e.p.conflictMsg))
		case e.p.disabled:
			why = append(why, fmt.Sprintf("pool %q is disabled", e.p.name))
		}
	}
	if len(why) == 0 {
		return "no LoadBalancerIPPool contains it"
	}
	return strings.Join(why, "; ")
}

// noPoolWhy explains why r has no candidate pool at all.
func (a *Allocator) noPoolWhy(r *svcReq, ev []poolEval) string {
	if r.pool != "" {
		p := a.byName[r.pool]
		if p == nil {
			return fmt.Sprintf("pool %q (herald.dev/pool) does not exist", r.pool)
		}
		for _, e := range ev {
			if e.p != p {
				continue
			}
			switch {
			case !e.selects:
				return fmt.Sprintf("pool %q (herald.dev/pool) does not select this Service", r.pool)
			case p.conflict != "":
				return fmt.Sprintf("pool %q is in conflict (%s: %s)", r.pool, p.conflict, p.conflictMsg)
			case p.disabled:
				return fmt.Sprintf("pool %q is disabled", r.pool)
			}
		}
	}
	var why []string
	for _, e := range ev {
		if !e.selects {
			continue
		}
		switch {
		case e.p.conflict != "":
			why = append(why, fmt.Sprintf("pool %q is in conflict (%s)", e.p.name, e.p.conflict))
		case e.p.disabled:
			why = append(why, fmt.Sprintf("pool %q is disabled", e.p.name))
		}
	}
	if len(why) == 0 {
		return "no LoadBalancerIPPool selects this Service"
	}
	return "no usable LoadBalancerIPPool selects this Service: " + strings.Join(why, "; ")
}

// quoteNames writes pool names as `pool "a"` or `pools "a", "b"`.
func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return "pool " + q[0]
	}
	return "pools " + strings.Join(q, ", ")
}
