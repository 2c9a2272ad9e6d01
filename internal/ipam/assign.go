package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// svcReq is a Service after normalization: what Assign and Adopt decide on.
type svcReq struct {
	key    string
	labels map[string]string
	pool   string
	policy FamilyPolicy
	// families are the effective families, primary first: for SingleStack
	// only the first of Service.Families.
	families []Family
	// allFamilies are Service.Families, deduplicated (for messages).
	allFamilies []Family
	// requested maps a family to the requested address of that family.
	requested map[Family]netip.Addr
	// reqOrder are the requested addresses in the order given.
	reqOrder []netip.Addr
	view     shareView
	// announced are Service.Announced, plain.
	announced []netip.Addr
}

// wasAnnounced reports whether addr was announced for the Service once.
func (r *svcReq) wasAnnounced(addr netip.Addr) bool { return slices.Contains(r.announced, addr) }

// normalize checks svc and builds its svcReq. A malformed Service view
// yields an InvalidRequest result instead of a panic or a guess.
//
// Lenient defaults, as Kubernetes would fill them: an empty Policy is
// SingleStack; empty Families are the families of Requested, else IPv4.
func normalize(svc *Service) (*svcReq, *Result) {
	bad := func(format string, args ...any) (*svcReq, *Result) {
		return nil, &Result{Reason: InvalidRequest, Message: fmt.Sprintf(format, args...)}
	}
	if svc.Key == "" {
		return bad("the Service has no key")
	}
	r := &svcReq{key: svc.Key, labels: svc.Labels, pool: svc.Pool, policy: svc.Policy}
	for _, a := range svc.Announced {
		if a.IsValid() {
			r.announced = append(r.announced, plain(a))
		}
	}
	switch r.policy {
	case "":
		r.policy = SingleStack
	case SingleStack, PreferDualStack, RequireDualStack:
	default:
		return bad("unknown ipFamilyPolicy %q", string(svc.Policy))
	}
	for _, f := range svc.Families {
		if f != IPv4 && f != IPv6 {
			return bad("unknown IP family %d in spec.ipFamilies", int(f))
		}
		if !slices.Contains(r.allFamilies, f) {
			r.allFamilies = append(r.allFamilies, f)
		}
	}
	for _, addr := range svc.Requested {
		if !addr.IsValid() {
			return bad("a requested address is not a valid IP address")
		}
		if addr.Zone() != "" {
			return bad("requested %s has a zone; zones are not allowed", addr)
		}
		addr = addr.Unmap()
		f := FamilyOf(addr)
		if prev, dup := r.requested[f]; dup {
			return bad("requested %s and %s are both %s; at most one address per family", prev, addr, f)
		}
		if r.requested == nil {
			r.requested = make(map[Family]netip.Addr, 2)
		}
		r.requested[f] = addr
		r.reqOrder = append(r.reqOrder, addr)
	}
	if len(r.allFamilies) == 0 {
		for _, addr := range r.reqOrder {
			r.allFamilies = append(r.allFamilies, FamilyOf(addr))
		}
		if len(r.allFamilies) == 0 {
			r.allFamilies = []Family{IPv4}
		}
	}
	r.families = r.allFamilies
	if r.policy == SingleStack {
		r.families = r.allFamilies[:1]
	}
	r.view = newShareView(svc)
	return r, nil
}

// policyFailure checks the family policy against the families and the
// requested addresses, before any pool is looked at.
func (r *svcReq) policyFailure() *Result {
	fail := func(format string, args ...any) *Result {
		return &Result{Reason: FamilyUnavailable, Message: fmt.Sprintf(format, args...)}
	}
	for _, addr := range r.reqOrder {
		if f := FamilyOf(addr); !slices.Contains(r.families, f) {
			return fail("requested %s is %s but the Service's families are %v", addr, f, r.families)
		}
	}
	if r.policy == RequireDualStack {
		if len(r.families) < 2 {
			return fail("RequireDualStack needs two IP families but the Service's families are %v", r.families)
		}
		if len(r.reqOrder) == 1 {
			return fail("RequireDualStack needs an address of each family but only %s (%s) is requested",
				r.reqOrder[0], FamilyOf(r.reqOrder[0]))
		}
	}
	return nil
}

// wanted returns the families to assign: exactly the requested ones when
// addresses are requested, else the effective families.
func (r *svcReq) wanted() []Family {
	if len(r.requested) == 0 {
		return r.families
	}
	var out []Family
	for _, f := range r.families {
		if _, ok := r.requested[f]; ok {
			out = append(out, f)
		}
	}
	return out
}

// wants reports whether family f is one to assign.
func (r *svcReq) wants(f Family) bool { return slices.Contains(r.wanted(), f) }

// sortByFamily orders assignments primary family first.
func (r *svcReq) sortByFamily(list []Assignment) {
	slices.SortStableFunc(list, func(x, y Assignment) int {
		return slices.Index(r.families, FamilyOf(x.Addr)) - slices.Index(r.families, FamilyOf(y.Addr))
	})
}

// outcome is the plan for one family.
type outcome struct {
	family Family
	ok     bool
	as     Assignment
	// sharedWith names the other holders when the address is shared.
	sharedWith []string
	reason     Reason
	msg        string
	// dropped explains why a held address of this family was not kept.
	dropped string
}

// Assign gives the Service the addresses it should hold and returns the
// outcome. It is idempotent: it keeps what the Service validly holds,
// releases what is no longer valid (pool shrunk or gone, selector or pin
// changed, family no longer wanted, not the requested address, excluded,
// sharing no longer compatible), and allocates what is missing.
//
// On failure the Service holds nothing; Result.Released lists what it
// dropped. Assign never changes the addresses of other Services.
func (a *Allocator) Assign(svc Service) Result {
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
		if len(old) > 0 {
			a.apply(&svcReq{key: svc.Key}, old, nil)
			fail.Released = slices.Clone(old)
		}
		return *fail
	}

	ev := a.evalPools(r)
	wanted := r.wanted()
	outs := make([]outcome, 0, len(wanted))
	for _, f := range wanted {
		var held *Assignment
		for i := range old {
			if FamilyOf(old[i].Addr) == f {
				held = &old[i]
				break
			}
		}
		outs = append(outs, a.planFamily(r, ev, f, held))
	}

	res := r.decide(outs)
	target := make([]Assignment, 0, len(outs))
	if res.Reason == Allocated {
		for _, o := range outs {
			if o.ok {
				target = append(target, o.as)
			}
		}
	}
	a.apply(r, old, target)
	if len(target) > 0 {
		res.Assigned = slices.Clone(target)
	}
	for _, o := range old {
		if !slices.ContainsFunc(target, func(x Assignment) bool { return x.Addr == o.Addr }) {
			res.Released = append(res.Released, o)
		}
	}
	if len(res.Released) > 0 && res.Reason == Allocated {
		res.Message += "; released " + describeReleased(res.Released, outs)
	}
	return res
}

// describeReleased lists released addresses with the reason each one was
// dropped, when known.
func describeReleased(released []Assignment, outs []outcome) string {
	parts := make([]string, 0, len(released))
	for _, rel := range released {
		why := ""
		for _, o := range outs {
			if o.family == FamilyOf(rel.Addr) && o.dropped != "" {
				why = o.dropped
			}
		}
		if why == "" {
			why = fmt.Sprintf("%s is no longer wanted", FamilyOf(rel.Addr))
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", rel.Addr, why))
	}
	return strings.Join(parts, ", ")
}

// planFamily decides the address of family f: keep the held one if still
// valid, else the requested one, else join a sharer, else the lowest free
// address of the first candidate pool offering f.
func (a *Allocator) planFamily(r *svcReq, ev []poolEval, f Family, held *Assignment) outcome {
	out := outcome{family: f}
	if req, ok := r.requested[f]; ok {
		if held != nil && held.Addr != req {
			out.dropped = fmt.Sprintf("not the requested %s", req)
		}
		return a.planRequested(r, ev, req, held, out)
	}
	if held != nil {
		pool, why := a.keepable(r, ev, held.Addr)
		if why == "" {
			return a.success(r, out, Assignment{Addr: held.Addr, Pool: pool})
		}
		out.dropped = why
	}

	// Count first; the pool names are only needed for a failure message.
	candidates, offering := 0, 0
	for _, e := range ev {
		if e.candidate {
			candidates++
			if e.p.offers[famIdx(f)] {
				offering++
			}
		}
	}
	names := func(offers bool) []string {
		var out []string
		for _, e := range ev {
			if e.candidate && (!offers || e.p.offers[famIdx(f)]) {
				out = append(out, e.p.name)
			}
		}
		return out
	}
	switch {
	case candidates == 0:
		out.reason, out.msg = NoPool, a.noPoolWhy(r, ev)
		return out
	case offering == 0:
		out.reason = FamilyUnavailable
		out.msg = fmt.Sprintf("no LoadBalancerIPPool for this Service has %s addresses (candidate %s)",
			f, quoteNames(names(false)))
		return out
	}
	if r.view.sharing != nil {
		if as, ok := a.join(r, ev, f); ok {
			return a.success(r, out, as)
		}
	}
	if as, ok := a.fresh(ev, f); ok {
		return a.success(r, out, as)
	}
	verb := "has"
	if offering > 1 {
		verb = "have"
	}
	out.reason = OutOfIPs
	out.msg = fmt.Sprintf("%s %s no free %s address", quoteNames(names(true)), verb, f)
	return out
}

// planRequested decides a requested address: keep it if held and still
// valid (even from a disabled pool), else it must be free or shareable in
// a candidate pool and not in use by a foreign host.
func (a *Allocator) planRequested(r *svcReq, ev []poolEval, req netip.Addr, held *Assignment, out outcome) outcome {
	if held != nil && held.Addr == req {
		pool, why := a.keepable(r, ev, req)
		if why == "" {
			return a.success(r, out, Assignment{Addr: req, Pool: pool})
		}
		out.dropped = why
	}
	if desc, ex := a.excluded[req]; ex {
		out.reason, out.msg = AddressConflict, "requested "+conflictText(req, desc)
		return out
	}
	pool := ""
	for _, e := range ev {
		if e.candidate && e.p.contains(req) {
			pool = e.p.name
			break
		}
	}
	if pool == "" {
		out.reason = RequestedIPNotInPool
		out.msg = fmt.Sprintf("requested %s cannot be allocated: %s", req, a.poolWhy(r, ev, req))
		return out
	}
	if h := a.addrs[req]; h != nil {
		for _, k := range h.keys {
			if k == r.key {
				continue
			}
			e := a.svcs[k]
			if e == nil {
				continue
			}
			switch {
			case r.view.sharing == nil:
				out.reason = RequestedIPInUse
				out.msg = fmt.Sprintf("requested %s is in use by %s (this Service has no sharing key)", req, k)
				return out
			case e.view.sharing == nil:
				out.reason = RequestedIPInUse
				out.msg = fmt.Sprintf("requested %s is in use by %s, which does not share its address", req, k)
				return out
			}
			if why := sharingConflict(&r.view, &e.view); why != "" {
				out.reason = SharingIncompatible
				out.msg = fmt.Sprintf("requested %s cannot be shared with %s: %s", req, k, why)
				return out
			}
		}
	}
	return a.success(r, out, Assignment{Addr: req, Pool: pool})
}

// join finds the lowest address of family f already shared under r's key
// that r may join: in a candidate pool, not excluded, compatible with
// every holder. Only addresses filed under the key are visited.
func (a *Allocator) join(r *svcReq, ev []poolEval, f Family) (Assignment, bool) {
	t := a.shared[r.view.sharing.Key]
	if t == nil {
		return Assignment{}, false
	}
	start := netip.IPv4Unspecified()
	if f == IPv6 {
		start = netip.IPv6Unspecified()
	}
	var found Assignment
	ok := false
	t.AscendGreaterOrEqual(start, func(addr netip.Addr) bool {
		if FamilyOf(addr) != f {
			return false // past the family
		}
		if _, ex := a.excluded[addr]; ex {
			return true
		}
		pool := ""
		for _, e := range ev {
			if e.candidate && e.p.contains(addr) {
				pool = e.p.name
				break
			}
		}
		if pool == "" || a.shareWhy(r, addr) != "" {
			return true
		}
		found, ok = Assignment{Addr: addr, Pool: pool}, true
		return false
	})
	return found, ok
}

// fresh returns the lowest free address of family f in the first
// candidate pool (name order) that has one. Within a pool the blocks are
// sorted and disjoint, so the first block with a free address has the
// pool's lowest; one NextFree per block makes it O(B log n).
func (a *Allocator) fresh(ev []poolEval, f Family) (Assignment, bool) {
	for _, e := range ev {
		if !e.candidate || !e.p.offers[famIdx(f)] {
			continue
		}
		for _, b := range e.p.blocks {
			if b.Family() != f {
				continue
			}
			if x := a.taken.NextFree(b.First); x.IsValid() && !b.Last.Less(x) {
				return Assignment{Addr: x, Pool: e.p.name}, true
			}
		}
	}
	return Assignment{}, false
}

// success fills a successful outcome, noting the other holders.
func (a *Allocator) success(r *svcReq, out outcome, as Assignment) outcome {
	out.ok, out.as = true, as
	if h := a.addrs[as.Addr]; h != nil {
		for _, k := range h.keys {
			if k != r.key {
				out.sharedWith = append(out.sharedWith, k)
			}
		}
	}
	return out
}

// decide turns per-family outcomes into the Result, by family policy:
// requested addresses, SingleStack and RequireDualStack need every wanted
// family; PreferDualStack needs at least one.
func (r *svcReq) decide(outs []outcome) Result {
	good, failed := 0, 0
	for _, o := range outs {
		if o.ok {
			good++
		} else {
			failed++
		}
	}
	needAll := len(r.requested) > 0 || r.policy != PreferDualStack
	if good > 0 && (failed == 0 || !needAll) {
		var b strings.Builder
		successText(&b, outs)
		for _, o := range outs {
			if !o.ok {
				fmt.Fprintf(&b, "; no %s address: %s", o.family, o.msg)
			}
		}
		return Result{Reason: Allocated, Message: b.String()}
	}
	if failed == 0 { // no wanted family at all; cannot happen after policyFailure
		return Result{Reason: FamilyUnavailable, Message: fmt.Sprintf("no IP family to assign (families %v)", r.families)}
	}
	// Pick the reason a user can act on: for RequireDualStack a missing
	// family explains everything; for PreferDualStack a missing family is
	// expected and the other failure is the news.
	var pick *outcome
	for i := range outs {
		o := &outs[i]
		if o.ok {
			continue
		}
		if pick == nil {
			pick = o
		}
		if r.policy == RequireDualStack && len(r.requested) == 0 && o.reason == FamilyUnavailable {
			pick = o
			break
		}
		if r.policy == PreferDualStack && pick.reason == FamilyUnavailable && o.reason != FamilyUnavailable {
			pick = o
			break
		}
	}
	var msgs []string
	if pick.msg != "" {
		msgs = append(msgs, pick.msg)
	}
	for _, o := range outs {
		if !o.ok && o.msg != "" && !slices.Contains(msgs, o.msg) {
			msgs = append(msgs, o.msg)
		}
	}
	if r.policy == RequireDualStack && good > 0 {
		msgs = append(msgs, "RequireDualStack needs both families, so nothing is assigned")
	}
	return Result{Reason: pick.reason, Message: strings.Join(msgs, "; ")}
}

// successText writes what was assigned: `allocated 10.0.0.1 from pool "a"`,
// and with whom each address is shared. It avoids fmt: it runs on every
// successful Assign.
func successText(b *strings.Builder, outs []outcome) {
	b.WriteString("allocated ")
	n := 0
	for _, o := range outs {
		if !o.ok {
			continue
		}
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		var buf [64]byte
		b.Write(o.as.Addr.AppendTo(buf[:0]))
		b.WriteString(" from pool ")
		b.WriteString(strconv.Quote(o.as.Pool))
		if len(o.sharedWith) > 0 {
			b.WriteString(" (shared with ")
			b.WriteString(strings.Join(o.sharedWith, ", "))
			b.WriteString(")")
		}
	}
}
