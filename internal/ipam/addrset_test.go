package ipam

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestAddrSetAgainstMap checks the run set against a plain map under random
// inserts and removals, near the top of both families too.
func TestAddrSetAgainstMap(t *testing.T) {
	bases := []netip.Addr{
		ip("10.0.0.0"),
		ip("255.255.255.224"), // runs up to the last IPv4 address
		ip("2001:db8::"),
		ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffe0"),
	}
	addr := func(base netip.Addr, off int) netip.Addr {
		for range off {
			base = base.Next()
		}
		return base
	}
	rng := rand.New(rand.NewPCG(7, 8))
	s := newAddrSet()
	ref := map[netip.Addr]bool{}
	for step := range 20000 {
		base := bases[rng.IntN(len(bases))]
		x := addr(base, rng.IntN(32))
		if rng.IntN(2) == 0 {
			if got := s.Insert(x); got == ref[x] {
				t.Fatalf("step %d: Insert(%s) = %v with member=%v", step, x, got, ref[x])
			}
			ref[x] = true
		} else {
			if got := s.Remove(x); got != ref[x] {
				t.Fatalf("step %d: Remove(%s) = %v with member=%v", step, x, got, ref[x])
			}
			delete(ref, x)
		}
		if step%97 != 0 {
			continue
		}
		// Full comparison now and then.
		for _, base := range bases {
			for off := range 32 {
				y := addr(base, off)
				if s.Contains(y) != ref[y] {
					t.Fatalf("step %d: Contains(%s) = %v", step, y, !ref[y])
				}
				// NextFree: first non-member at or after y, or invalid at the top.
				want := y
				for want.IsValid() && ref[want] {
					want = want.Next()
				}
				if got := s.NextFree(y); got != want {
					t.Fatalf("step %d: NextFree(%s) = %v; want %v", step, y, got, want)
				}
				for l := 0; l < 32-off; l += 1 + rng.IntN(5) {
					z := addr(y, l)
					var n uint64
					for w := y; ; w = w.Next() {
						if ref[w] {
							n++
						}
						if w == z {
							break
						}
					}
					if got := s.Count(y, z); got != n {
						t.Fatalf("step %d: Count(%s, %s) = %d; want %d", step, y, z, got, n)
					}
				}
			}
		}
		// Runs are maximal and disjoint.
		var prev run
		first := true
		s.t.Ascend(func(r run) bool {
			if !first && (!prev.hi.Less(r.lo) || prev.hi.Next() == r.lo) {
				t.Fatalf("step %d: runs %v %v not merged", step, prev, r)
			}
			prev, first = r, false
			return true
		})
	}
	if s.Count(ip("10.0.0.9"), ip("10.0.0.1")) != 0 {
		t.Fatal("Count of an empty range")
	}
}

func TestSpanSaturates(t *testing.T) {
	if got := span(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")); got != ^uint64(0) {
		t.Fatalf("span = %d", got)
	}
	if got := span(ip("10.0.0.1"), ip("10.0.0.10")); got != 10 {
		t.Fatalf("span = %d", got)
	}
	if satAdd(^uint64(0), 5) != ^uint64(0) {
		t.Fatal("satAdd wrapped")
	}
}
