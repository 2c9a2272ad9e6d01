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

// record is one service as the Table programmed it. Records are never
// modified once built (but for seen and idx, a Sync's own bookkeeping),
// so a diff may point at them while the state still holds them.
type record struct {
	key   string
	id    svcID
	local bool
	// eps are the endpoints the service uses on this node (family and
	// traffic policy applied), sorted and unique; empty: no-endpoints.
	// Endpoint i is bucket i of the service in its endpoint map.
	eps []netip.AddrPort
	// seen is the number of the last Sync that wanted the service, and
	// idx its entry in that Sync's scratch.
	seen uint64
	idx  int
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
	recs []*record         // sorted by Key
	byID map[svcID]*record // the same records
	masq map[masqKey]int32 // services that need each masquerade element
	// counts is, per family, how many services have each number of
	// endpoints: the endpoint maps (and DNAT rules) that exist.
	counts [2]map[int]int32
	gen    uint64 // Syncs so far
}

func newState() state {
	return state{byID: map[svcID]*record{}, masq: map[masqKey]int32{}, counts: [2]map[int]int32{{}, {}}}
}

// maps is the number of endpoint maps in the table.
func (s *state) maps() int { return len(s.counts[0]) + len(s.counts[1]) }

// change is one service that differs between the state and the desired
// set: old is nil for a new service, new is nil for a removed one.
type change struct{ old, new *record }

// diff is what one Sync asks for.
type diff struct {
	changes []change
	// final is every desired (valid) service in Key order: what a full
	// replacement programs, and the state once the Sync succeeded.
	final []*record
}

// entry is one accepted service of a Sync: its record (old itself when
// nothing changed) and the record the state holds under its Key.
type entry struct {
	svc  *Service
	rec  *record
	old  *record
	lost bool // its VIP:port/protocol went to a service with a smaller Key
}

// keyedErr is an invalid service's error, sorted by Key at the end.
type keyedErr struct {
	key string
	err error
}

// scratch is memory a Table reuses from one Sync to the next, so that a
// Sync allocates in proportion to what changed.
type scratch struct {
	order   []int
	eps     []netip.AddrPort
	entries []entry
	final   []*record
	changes []change
	claims  map[svcID]int
	masq    map[masqKey]int32
	counts  [2]map[int]int32
}

// scratchKeep bounds the scratch maps a Table keeps between Syncs: Go maps
// do not shrink, so the maps a first Sync of 10 000 services fills are
// dropped rather than kept for Syncs that change a few.
const scratchKeep = 1024

func (sc *scratch) shrink() {
	if len(sc.claims) > scratchKeep {
		sc.claims = nil
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

// diff validates services, filters endpoints by family and traffic policy,
// and compares the result with the state, walking both in Key order.
// Services are taken in Key order (the input's order breaking ties), so
// that of two services with the same VIP:port/protocol the one with the
// smaller Key is programmed whatever the input's order and whatever the
// state. Its cost is one comparison per service, plus map look-ups for
// the services that are new or moved. The returned diff lives in the
// Table's scratch memory until the next call.
func (t *Table) diff(services []Service) (diff, []error) {
	st, sc := &t.st, &t.sc
	st.gen++
	gen := st.gen
	sc.entries, sc.final, sc.changes = sc.entries[:0], sc.final[:0], sc.changes[:0]
	sorted := slices.IsSortedFunc(services, byKey)
	if !sorted {
		sc.order = sc.order[:0]
		for i := range services {
			sc.order = append(sc.order, i)
		}
		slices.SortStableFunc(sc.order, func(a, b int) int { return byKey(services[a], services[b]) })
	}
	var (
		invalid  []keyedErr
		prevKey  string
		hasPrev  bool
		unstable bool // a service is new or has a new VIP:port/protocol
		j        int  // next record of the state
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
			err = errors.New("its Key is used by another service in the same Sync")
		}
		if err != nil {
			invalid = append(invalid, keyedErr{s.Key, fmt.Errorf("%w %q: %v", ErrInvalidService, s.Key, err)})
			continue
		}
		prevKey, hasPrev = s.Key, true
		// Records with smaller Keys are not wanted any more.
		for j < len(st.recs) && st.recs[j].key < s.Key {
			sc.changes = append(sc.changes, change{old: st.recs[j]})
			j++
		}
		var old *record
		if j < len(st.recs) && st.recs[j].key == s.Key {
			old = st.recs[j]
			old.seen, old.idx = gen, len(sc.entries)
			j++
		}
		id := svcID{vip: s.VIP.Unmap(), proto: proto, port: s.Port}
		eps := usedEndpoints(sc.eps[:0], s, id.vip.Is4())
		sc.eps = eps
		e := entry{svc: s, old: old}
		if old != nil && old.id == id && old.local == s.TrafficPolicyLocal && slices.Equal(old.eps, eps) {
			e.rec = old
		} else {
			e.rec = &record{key: s.Key, id: id, local: s.TrafficPolicyLocal}
			if len(eps) > 0 {
				e.rec.eps = slices.Clone(eps)
			}
			unstable = unstable || old == nil || old.id != id
		}
		sc.entries = append(sc.entries, e)
	}
	for ; j < len(st.recs); j++ {
		sc.changes = append(sc.changes, change{old: st.recs[j]})
	}
	if unstable {
		invalid = t.resolveClaims(invalid)
	}
	for i := range sc.entries {
		e := &sc.entries[i]
		switch {
		case e.lost && e.old != nil:
			sc.changes = append(sc.changes, change{old: e.old})
		case e.lost:
		case e.rec != e.old:
			sc.changes = append(sc.changes, change{old: e.old, new: e.rec})
			sc.final = append(sc.final, e.rec)
		default:
			sc.final = append(sc.final, e.rec)
		}
	}
	var errs []error
	if len(invalid) > 0 {
		slices.SortStableFunc(invalid, func(a, b keyedErr) int { return strings.Compare(a.key, b.key) })
		for _, ie := range invalid {
			errs = append(errs, ie.err)
		}
	}
	return diff{changes: sc.changes, final: sc.final}, errs
}

// resolveClaims finds services that claim the same VIP:port/protocol and
// marks all but the one with the smallest Key lost. Two services that
// keep the VIP:port/protocol their records hold cannot collide (the state
// never holds two records with one), so only services that are new or
// moved are looked up: among themselves, and in the state's index for a
// service that keeps its own.
func (t *Table) resolveClaims(invalid []keyedErr) []keyedErr {
	st, sc := &t.st, &t.sc
	if sc.claims == nil {
		sc.claims = map[svcID]int{}
	}
	clear(sc.claims)
	lose := func(loser, winner *entry) {
		loser.lost = true
		s := loser.svc
		invalid = append(invalid, keyedErr{s.Key, fmt.Errorf("%w %q: %s:%d/%s already used by %q",
			ErrInvalidService, s.Key, loser.rec.id.vip, s.Port, s.Protocol, winner.svc.Key)})
	}
	for i := range sc.entries {
		e := &sc.entries[i]
		if e.old != nil && e.old.id == e.rec.id {
			continue // keeps its own
		}
		id := e.rec.id
		if w, ok := sc.claims[id]; ok {
			lose(e, &sc.entries[w]) // w has the smaller Key
			continue
		}
		sc.claims[id] = i
		r := st.byID[id]
		if r == nil || r.seen != st.gen {
			continue // free, or its holder is not wanted any more
		}
		holder := &sc.entries[r.idx]
		if holder.rec.id != id || holder.lost {
			continue // its holder moves away
		}
		if e.svc.Key < holder.svc.Key {
			lose(holder, e)
		} else {
			lose(e, holder)
			delete(sc.claims, id)
		}
	}
	return invalid
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

// commit records that the kernel's table now holds d.
func (t *Table) commit(d diff, masq masqChanges, counts countChanges) {
	s := &t.st
	for _, c := range d.changes {
		if c.old != nil && s.byID[c.old.id] == c.old {
			delete(s.byID, c.old.id)
		}
	}
	for _, c := range d.changes {
		if c.new != nil {
			s.byID[c.new.id] = c.new
		}
	}
	// d.final becomes the state; the state's old slice the next scratch.
	s.recs, t.sc.final = d.final, s.recs[:0]
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
