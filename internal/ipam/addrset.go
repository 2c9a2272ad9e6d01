package ipam

import (
	"net/netip"

	"github.com/google/btree"
)

// run is a maximal interval [lo, hi] of addresses that are all in an
// addrSet. Runs never mix families: the address after the top of a family
// is invalid, so a run cannot grow across it.
type run struct{ lo, hi netip.Addr }

// runLess orders runs by their first address. netip.Addr.Compare sorts all
// IPv4 addresses before all IPv6 ones, so one tree holds both families.
func runLess(x, y run) bool { return x.lo.Less(y.lo) }

// addrSet is a set of addresses kept as merged runs in a B-tree. Every
// operation costs O(log r) for r runs (r <= number of members), so the
// allocator never walks an address range address by address: the lowest
// free address at or after a is a itself, or the end of the run holding a
// plus one, because runs are maximal.
type addrSet struct {
	t *btree.BTreeG[run]
}

// btreeDegree is the B-tree degree; 32 keeps nodes about a cache line
// multiple and the tree shallow at 10^5..10^6 runs.
const btreeDegree = 32

// newAddrSet returns an empty set.
func newAddrSet() *addrSet { return &addrSet{t: btree.NewG(btreeDegree, runLess)} }

// runAt returns the run containing a, if any.
func (s *addrSet) runAt(a netip.Addr) (run, bool) {
	var r run
	found := false
	s.t.DescendLessOrEqual(run{lo: a}, func(x run) bool {
		r, found = x, true
		return false
	})
	if !found || r.hi.Less(a) {
		return run{}, false
	}
	return r, true
}

// Contains reports whether a is in the set.
func (s *addrSet) Contains(a netip.Addr) bool {
	_, ok := s.runAt(a)
	return ok
}

// Insert adds a, merging it with the runs that end just before or start
// just after it. It reports whether a was new.
func (s *addrSet) Insert(a netip.Addr) bool {
	var prev run
	hasPrev := false
	s.t.DescendLessOrEqual(run{lo: a}, func(x run) bool {
		prev, hasPrev = x, true
		return false
	})
	if hasPrev && !prev.hi.Less(a) {
		return false
	}
	lo, hi := a, a
	if hasPrev && prev.hi.Next() == a {
		lo = prev.lo
	}
	if n := a.Next(); n.IsValid() {
		if next, ok := s.t.Get(run{lo: n}); ok {
			hi = next.hi
			s.t.Delete(next)
		}
	}
	// When a extends prev, lo is prev's key and this replaces prev in place.
	s.t.ReplaceOrInsert(run{lo: lo, hi: hi})
	return true
}

// Remove deletes a, splitting its run if needed. It reports whether a was
// a member.
func (s *addrSet) Remove(a netip.Addr) bool {
	r, ok := s.runAt(a)
	if !ok {
		return false
	}
	if r.lo == a {
		s.t.Delete(r)
	} else {
		s.t.ReplaceOrInsert(run{lo: r.lo, hi: a.Prev()}) // same key: replaces r
	}
	if r.hi != a {
		s.t.ReplaceOrInsert(run{lo: a.Next(), hi: r.hi})
	}
	return true
}

// NextFree returns the lowest address >= a that is not in the set. The
// result is invalid when every address from a to the top of its family is
// in the set.
func (s *addrSet) NextFree(a netip.Addr) netip.Addr {
	r, ok := s.runAt(a)
	if !ok {
		return a
	}
	return r.hi.Next()
}

// Count returns how many members lie in [lo, hi] (saturating at the
// largest uint64). It walks only the runs that overlap the range.
func (s *addrSet) Count(lo, hi netip.Addr) uint64 {
	if hi.Less(lo) {
		return 0
	}
	var n uint64
	add := func(r run) {
		a, b := r.lo, r.hi
		if a.Less(lo) {
			a = lo
		}
		if hi.Less(b) {
			b = hi
		}
		if !b.Less(a) {
			n = satAdd(n, span(a, b))
		}
	}
	// The run starting before lo may reach into the range.
	s.t.DescendLessOrEqual(run{lo: lo}, func(x run) bool {
		if x.lo == lo {
			return true // counted by the ascent below
		}
		add(x)
		return false
	})
	s.t.AscendGreaterOrEqual(run{lo: lo}, func(x run) bool {
		if hi.Less(x.lo) {
			return false
		}
		add(x)
		return true
	})
	return n
}

// Runs returns the number of runs (for tests and benchmarks).
func (s *addrSet) Runs() int { return s.t.Len() }

// satAdd adds without wrapping.
func satAdd(x, y uint64) uint64 {
	if s := x + y; s >= x {
		return s
	}
	return ^uint64(0)
}
