package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// svcID is what the kernel matches a service by: VIP, protocol and port.
type svcID struct {
	vip   netip.Addr
	proto byte
	port  uint16
}

// fam is the index into families of the service's family.
func (id svcID) fam() int {
	if id.vip.Is4() {
		return 0
	}
	return 1
}

// record is one service as the Table programs it. Records are never
// modified once built, so the state and a change may point at the same
// one.
type record struct {
	key   string
	id    svcID
	local bool
	// eps are the endpoints the service uses on this node (family and
	// traffic policy applied), sorted and unique; empty: no-endpoints.
	// Endpoint i is bucket i of the service in its endpoint map.
	eps []netip.AddrPort
}

// sameRecord reports whether two records program the same.
func sameRecord(a, b *record) bool {
	return a.key == b.key && a.id == b.id && a.local == b.local && slices.Equal(a.eps, b.eps)
}

// masqKey is one element of a masquerade set: an endpoint of a Cluster
// service, its protocol and the service port.
type masqKey struct {
	ep    netip.AddrPort
	proto byte
	vport uint16
}

// state is what the kernel's table holds, as far as the Table knows.
type state struct {
	recs map[string]*record // by Key
	byID map[svcID]*record  // the same records
	masq map[masqKey]int32  // services that need each masquerade element
	// counts is, per family, how many services have each number of
	// endpoints: the endpoint maps (and DNAT rules) that exist.
	counts [2]map[int]int32
}

func newState() state {
	return state{recs: map[string]*record{}, byID: map[svcID]*record{}, masq: map[masqKey]int32{}, counts: [2]map[int]int32{{}, {}}}
}

// maps is the number of endpoint maps in the table.
func (s *state) maps() int { return len(s.counts[0]) + len(s.counts[1]) }

// want is a valid service of the desired set: the first of its group with
// its Key (a group's later ones are invalid duplicates and not kept). Of
// the groups' wants with one Key, the one of the group with the smallest
// name owns the Key; of the Key owners with one VIP:port/protocol, the one
// with the smallest Key is programmed. Both are what Sync does with the
// groups flattened in name order, and keeping every claimant in a list
// (normally of one) finds the next one when the first goes without
// looking at any other service.
type want struct {
	group string
	proto string  // the Protocol as given, for messages
	rec   *record // what it programs when it is programmed
	// err is why it is not programmed (see desired.status), nil when it
	// is; kept up to date for the wants whose Key or VIP:port/protocol
	// changes hands, so that reporting costs no look-up for the others.
	err error
	// nextKey is the next want with the same Key, of a group with a
	// greater name.
	nextKey *want
	// nextID is, for a Key owner, the next Key owner with the same
	// VIP:port/protocol, with a greater Key.
	nextID *want
}

// desired is the desired set, by group, and the claims that decide what
// of it is programmed.
type desired struct {
	groups map[string][]*want // each group's wants, sorted by Key
	keys   map[string]*want   // per Key, its wants by group name: the first owns it
	ids    map[svcID]*want    // per VIP:port/protocol, its Key owners by Key: the first is programmed
}

func newDesired() desired {
	return desired{groups: map[string][]*want{}, keys: map[string]*want{}, ids: map[svcID]*want{}}
}

// programmed is the record the desired set programs under Key k, or nil.
func (d *desired) programmed(k string) *record {
	w := d.keys[k]
	if w == nil || d.ids[w.rec.id] != w {
		return nil
	}
	return w.rec
}

// all is every record the desired set programs, in Key order: what a full
// replacement writes.
func (d *desired) all() []*record {
	out := make([]*record, 0, len(d.ids))
	for _, w := range d.ids {
		out = append(out, w.rec)
	}
	slices.SortFunc(out, func(a, b *record) int { return strings.Compare(a.key, b.key) })
	return out
}

// status is why w is not programmed (an error wrapping
// ErrInvalidService), or nil when it is.
func (d *desired) status(w *want) error {
	k := w.rec.key
	if d.keys[k] != w {
		return fmt.Errorf("%w %q: %s", ErrInvalidService, k, dupKey)
	}
	if h := d.ids[w.rec.id]; h != w {
		return fmt.Errorf("%w %q: %s:%d/%s already used by %q", ErrInvalidService, k, w.rec.id.vip, w.rec.id.port, w.proto, h.rec.key)
	}
	return nil
}

// dupKey is why a service whose Key another one has is left out.
const dupKey = "its Key is used by another service of the desired set"

// change is one service that differs between the state and the desired
// set: old is nil for a new service, new is nil for a removed one.
type change struct{ old, new *record }

func (c change) key() string {
	if c.old != nil {
		return c.old.key
	}
	return c.new.key
}

// keyedErr is an invalid service's error, sorted by Key at the end.
type keyedErr struct {
	key string
	err error
}

// scratch is memory a Table reuses from one call to the next, so that a
// call allocates in proportion to what changed.
type scratch struct {
	order   []int
	eps     []netip.AddrPort
	wants   []*want
	changes []change
	keys    map[string]struct{} // Keys whose programmed record may change
	ids     map[svcID]struct{}  // VIP:port/protocols whose claimants changed
	masq    map[masqKey]int32
	counts  [2]map[int]int32
}

// scratchKeep bounds the scratch maps (and the pending Keys) a Table
// keeps between calls. Go maps do not shrink, and clearing or walking one
// costs in proportion to the most it ever held, so the maps a first Sync
// of 10 000 services fills are dropped rather than kept for calls that
// change a few: otherwise every later call would pay for the first.
const scratchKeep = 64

func (sc *scratch) shrink() {
	if len(sc.keys) > scratchKeep {
		sc.keys = nil
	}
	if len(sc.ids) > scratchKeep {
		sc.ids = nil
	}
	if len(sc.masq) > scratchKeep {
		sc.masq = nil
	}
	for fi := range sc.counts {
		if len(sc.counts[fi]) > scratchKeep {
			sc.counts[fi] = nil
		}
	}
}

func byKey(a, b Service) int { return strings.Compare(a.Key, b.Key) }

// syncGroup is the group Sync puts its services in.
const syncGroup = ""

// stage makes each of groups the desired list of the group of its name
// (all: and drops every other group), adds the Keys whose programmed
// record may have changed to t.pending, and returns, in Key order, the
// errors of the groups' invalid services and of the services of other
// groups that the change takes out of the table. It does not talk to the
// kernel; apply does. Its cost follows the services of the groups, not
// the desired set (but for the groups all drops).
func (t *Table) stage(groups map[string][]Service, all bool) []error {
	d, sc := &t.want, &t.sc
	if sc.keys == nil {
		sc.keys = map[string]struct{}{}
	}
	if sc.ids == nil {
		sc.ids = map[svcID]struct{}{}
	}
	clear(sc.keys)
	clear(sc.ids)
	if all {
		for name, ws := range d.groups {
			if _, keep := groups[name]; keep {
				continue
			}
			for _, w := range ws {
				t.removeWant(w)
			}
			delete(d.groups, name)
		}
	}
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	slices.Sort(names)
	var invalid []keyedErr
	for _, name := range names {
		invalid = t.setGroup(name, groups[name], invalid)
	}
	// A VIP:port/protocol whose claimants changed may change hands: from
	// the record the kernel holds to the first claimant now.
	for id := range sc.ids {
		if w := d.ids[id]; w != nil {
			sc.keys[w.rec.key] = struct{}{}
		}
		if r := t.st.byID[id]; r != nil {
			sc.keys[r.key] = struct{}{}
		}
	}
	for k := range sc.keys {
		for w := d.keys[k]; w != nil; w = w.nextKey {
			w.err = d.status(w)
		}
	}
	for id := range sc.ids {
		for w := d.ids[id]; w != nil; w = w.nextID {
			w.err = d.status(w)
		}
	}
	for _, name := range names {
		for _, w := range d.groups[name] {
			if w.err != nil {
				invalid = append(invalid, keyedErr{w.rec.key, w.err})
			}
		}
	}
	// Services of other groups that lose their place in the table to
	// these groups' are reported too: the caller would not hear of them
	// otherwise.
	for k := range sc.keys {
		was := t.st.recs[k]
		for w := d.keys[k]; was != nil && w != nil; w = w.nextKey {
			if w.rec != was {
				continue
			}
			if _, given := groups[w.group]; !given && w.err != nil {
				invalid = append(invalid, keyedErr{k, w.err})
			}
			break
		}
		t.pending[k] = struct{}{}
	}
	if len(invalid) == 0 {
		return nil
	}
	slices.SortStableFunc(invalid, func(a, b keyedErr) int { return strings.Compare(a.key, b.key) })
	errs := make([]error, len(invalid))
	for i, ie := range invalid {
		errs[i] = ie.err
	}
	return errs
}

// setGroup makes services the desired list of group name. It walks the
// services in Key order (the input's order breaking ties) alongside the
// group's wants: a service that programs what its want does keeps it
// (one comparison, no allocation), others replace theirs in the claims.
// Invalid services, and the later ones of a Key, are appended to invalid.
func (t *Table) setGroup(name string, services []Service, invalid []keyedErr) []keyedErr {
	d, sc := &t.want, &t.sc
	old := d.groups[name]
	sorted := slices.IsSortedFunc(services, byKey)
	if !sorted {
		sc.order = sc.order[:0]
		for i := range services {
			sc.order = append(sc.order, i)
		}
		slices.SortStableFunc(sc.order, func(a, b int) int { return byKey(services[a], services[b]) })
	}
	sc.wants = sc.wants[:0]
	var (
		prevKey  string
		hasPrev  bool
		j        int  // next want of the group
		reshaped bool // a Key came or went: the group's list is new
	)
	for n := range services {
		i := n
		if !sorted {
			i = sc.order[n]
		}
		s := &services[i]
		proto, err := protoNumber(s.Protocol)
		if err == nil && !s.VIP.IsValid() {
			err = errors.New("no VIP")
		}
		if err == nil && s.Port == 0 {
			err = errors.New("port 0")
		}
		if err == nil && hasPrev && s.Key == prevKey {
			err = errors.New(dupKey)
		}
		if err != nil {
			invalid = append(invalid, keyedErr{s.Key, fmt.Errorf("%w %q: %v", ErrInvalidService, s.Key, err)})
			continue
		}
		prevKey, hasPrev = s.Key, true
		// Wants with smaller Keys are not wanted any more.
		for j < len(old) && old[j].rec.key < s.Key {
			t.removeWant(old[j])
			j++
			reshaped = true
		}
		var o *want
		if j < len(old) && old[j].rec.key == s.Key {
			o = old[j]
			j++
		}
		id := svcID{vip: s.VIP.Unmap(), proto: proto, port: s.Port}
		eps := usedEndpoints(sc.eps[:0], s, id.vip.Is4())
		sc.eps = eps
		if o != nil && o.rec.id == id && o.rec.local == s.TrafficPolicyLocal && slices.Equal(o.rec.eps, eps) {
			if o.proto != s.Protocol {
				// Only its message shows it: made again with the Key's.
				o.proto = s.Protocol
				sc.keys[s.Key] = struct{}{}
			}
			sc.wants = append(sc.wants, o)
			continue
		}
		w := &want{group: name, proto: s.Protocol, rec: &record{key: s.Key, id: id, local: s.TrafficPolicyLocal}}
		if len(eps) > 0 {
			w.rec.eps = slices.Clone(eps)
		}
		if o != nil {
			t.removeWant(o)
		} else {
			reshaped = true
		}
		t.addWant(w)
		sc.wants = append(sc.wants, w)
	}
	for ; j < len(old); j++ {
		t.removeWant(old[j])
		reshaped = true
	}
	switch {
	case len(sc.wants) == 0:
		delete(d.groups, name)
	case !reshaped:
		copy(old, sc.wants) // the same Keys: no allocation
	case cap(sc.wants) <= 2*len(sc.wants):
		// The scratch fits: it becomes the list, the old list the scratch
		// (a Sync of many services that adds or removes one allocates
		// nothing).
		clear(old)
		d.groups[name], sc.wants = sc.wants, old[:0]
	default:
		d.groups[name] = slices.Clone(sc.wants)
	}
	return invalid
}

// addWant enters w among the wants of its Key; when it comes first it
// owns the Key and claims its VIP:port/protocol.
func (t *Table) addWant(w *want) {
	d := &t.want
	k := w.rec.key
	t.sc.keys[k] = struct{}{}
	h := d.keys[k]
	if h == nil || w.group < h.group {
		if h != nil {
			t.unclaim(h)
		}
		w.nextKey, d.keys[k] = h, w
		t.claim(w)
		return
	}
	p := h
	for p.nextKey != nil && p.nextKey.group < w.group {
		p = p.nextKey
	}
	w.nextKey, p.nextKey = p.nextKey, w
}

// removeWant takes w out of the wants of its Key; when it owned the Key,
// the next one owns it.
func (t *Table) removeWant(w *want) {
	d := &t.want
	k := w.rec.key
	t.sc.keys[k] = struct{}{}
	if h := d.keys[k]; h == w {
		t.unclaim(w)
		if n := w.nextKey; n != nil {
			d.keys[k] = n
			t.claim(n)
		} else {
			delete(d.keys, k)
		}
	} else {
		for p := h; p != nil; p = p.nextKey {
			if p.nextKey == w {
				p.nextKey = w.nextKey
				break
			}
		}
	}
	w.nextKey = nil
}

// claim enters the Key owner w among the claimants of its
// VIP:port/protocol, in Key order.
func (t *Table) claim(w *want) {
	d := &t.want
	id := w.rec.id
	t.sc.ids[id] = struct{}{}
	h := d.ids[id]
	if h == nil || w.rec.key < h.rec.key {
		w.nextID, d.ids[id] = h, w
		return
	}
	p := h
	for p.nextID != nil && p.nextID.rec.key < w.rec.key {
		p = p.nextID
	}
	w.nextID, p.nextID = p.nextID, w
}

// unclaim takes w out of the claimants of its VIP:port/protocol.
func (t *Table) unclaim(w *want) {
	d := &t.want
	id := w.rec.id
	t.sc.ids[id] = struct{}{}
	if h := d.ids[id]; h == w {
		if w.nextID != nil {
			d.ids[id] = w.nextID
		} else {
			delete(d.ids, id)
		}
	} else {
		for p := h; p != nil; p = p.nextID {
			if p.nextID == w {
				p.nextID = w.nextID
				break
			}
		}
	}
	w.nextID = nil
}

// pendingChanges compares, for each pending Key, the record the state
// holds with the one the desired set programs, and returns the
// differences in Key order (in the Table's scratch memory until the next
// call). Its cost follows the pending Keys only.
func (t *Table) pendingChanges() []change {
	st, sc := &t.st, &t.sc
	sc.changes = sc.changes[:0]
	for k := range t.pending {
		o, n := st.recs[k], t.want.programmed(k)
		switch {
		case o == nil && n == nil:
		case o != nil && n != nil && sameRecord(o, n):
			// The kernel holds it already; the state follows the desired
			// set's record, so that it still knows which want it holds.
			st.recs[k], st.byID[n.id] = n, n
		default:
			sc.changes = append(sc.changes, change{old: o, new: n})
		}
	}
	slices.SortFunc(sc.changes, func(a, b change) int { return strings.Compare(a.key(), b.key()) })
	return sc.changes
}

// donePending forgets the pending Keys once the kernel holds them.
func (t *Table) donePending() {
	if len(t.pending) > scratchKeep {
		t.pending = map[string]struct{}{}
		return
	}
	clear(t.pending)
}

// usedEndpoints appends to buf the endpoints of s that it uses here, as
// they go into the ruleset: of the VIP's family, local ones only for a
// Local service, sorted, without duplicates.
func usedEndpoints(buf []netip.AddrPort, s *Service, v4 bool) []netip.AddrPort {
	for _, e := range s.Endpoints {
		a := e.Addr.Unmap()
		if !a.IsValid() || e.Port == 0 || a.Is4() != v4 {
			continue
		}
		if s.TrafficPolicyLocal && !e.Local {
			continue
		}
		buf = append(buf, netip.AddrPortFrom(a, e.Port))
	}
	if !slices.IsSortedFunc(buf, netip.AddrPort.Compare) {
		slices.SortFunc(buf, netip.AddrPort.Compare)
	}
	return slices.Compact(buf)
}

func protoNumber(p string) (byte, error) {
	switch {
	case strings.EqualFold(p, "TCP"):
		return unix.IPPROTO_TCP, nil
	case strings.EqualFold(p, "UDP"):
		return unix.IPPROTO_UDP, nil
	case strings.EqualFold(p, "SCTP"):
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("unsupported protocol %q", p)
}

// masqueraded calls fn for each masquerade element r needs.
func (r *record) masqueraded(fn func(masqKey)) {
	if r == nil || r.local {
		return
	}
	for _, ep := range r.eps {
		fn(masqKey{ep: ep, proto: r.id.proto, vport: r.id.port})
	}
}

// masqChanges is the masquerade elements a diff adds and deletes, and the
// net change of each one's use count.
type masqChanges struct {
	add, del []masqKey
	delta    map[masqKey]int32
}

// masqDelta works out which masquerade elements changes add and delete:
// an element exists while at least one service needs it.
func (t *Table) masqDelta(changes []change) masqChanges {
	sc := &t.sc
	if sc.masq == nil {
		sc.masq = map[masqKey]int32{}
	}
	clear(sc.masq)
	for _, c := range changes {
		c.old.masqueraded(func(k masqKey) { sc.masq[k]-- })
		c.new.masqueraded(func(k masqKey) { sc.masq[k]++ })
	}
	out := masqChanges{delta: sc.masq}
	for k, d := range sc.masq {
		before := t.st.masq[k]
		after := before + d
		switch {
		case before == 0 && after > 0:
			out.add = append(out.add, k)
		case before > 0 && after == 0:
			out.del = append(out.del, k)
		}
	}
	cmpMasq := func(a, b masqKey) int {
		return cmp.Or(a.ep.Compare(b.ep), cmp.Compare(a.proto, b.proto), cmp.Compare(a.vport, b.vport))
	}
	slices.SortFunc(out.add, cmpMasq)
	slices.SortFunc(out.del, cmpMasq)
	return out
}

// countChanges is how changes alter the endpoint maps: per family, the
// maps (numbers of endpoints) that appear and go, whether the DNAT rules
// must be rewritten, and then the numbers in use, in ascending order.
type countChanges struct {
	delta          [2]map[int]int32
	added, removed [2][]int
	rules          [2]bool
	after          [2][]int
}

// countDelta works out which endpoint maps changes add and delete: a map
// exists while at least one service of its family has its number of
// endpoints.
func (t *Table) countDelta(changes []change) countChanges {
	var out countChanges
	for fi := range families {
		if t.sc.counts[fi] == nil {
			t.sc.counts[fi] = map[int]int32{}
		}
		clear(t.sc.counts[fi])
		out.delta[fi] = t.sc.counts[fi]
	}
	for _, c := range changes {
		if o := c.old; o != nil && len(o.eps) > 0 {
			out.delta[o.id.fam()][len(o.eps)]--
		}
		if n := c.new; n != nil && len(n.eps) > 0 {
			out.delta[n.id.fam()][len(n.eps)]++
		}
	}
	for fi := range families {
		for k, d := range out.delta[fi] {
			before := t.st.counts[fi][k]
			after := before + d
			switch {
			case before == 0 && after > 0:
				out.added[fi] = append(out.added[fi], k)
			case before > 0 && after == 0:
				out.removed[fi] = append(out.removed[fi], k)
			}
		}
		slices.Sort(out.added[fi])
		slices.Sort(out.removed[fi])
		if len(out.added[fi]) == 0 && len(out.removed[fi]) == 0 {
			continue
		}
		out.rules[fi] = true
		for k, n := range t.st.counts[fi] {
			if n+out.delta[fi][k] > 0 {
				out.after[fi] = append(out.after[fi], k)
			}
		}
		out.after[fi] = append(out.after[fi], out.added[fi]...)
		slices.Sort(out.after[fi])
	}
	return out
}

// commit records that the kernel's table now holds changes applied to
// the state.
func (t *Table) commit(changes []change, masq masqChanges, counts countChanges) {
	s := &t.st
	for _, c := range changes {
		if o := c.old; o != nil {
			if s.byID[o.id] == o {
				delete(s.byID, o.id)
			}
			if s.recs[o.key] == o {
				delete(s.recs, o.key)
			}
		}
	}
	for _, c := range changes {
		if n := c.new; n != nil {
			s.byID[n.id], s.recs[n.key] = n, n
		}
	}
	for k, d := range masq.delta {
		if n := s.masq[k] + d; n > 0 {
			s.masq[k] = n
		} else {
			delete(s.masq, k)
		}
	}
	for fi := range families {
		for k, d := range counts.delta[fi] {
			if n := s.counts[fi][k] + d; n > 0 {
				s.counts[fi][k] = n
			} else {
				delete(s.counts[fi], k)
			}
		}
	}
}
