package ipam

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchCase is a pool and a number of Services already holding addresses.
type benchCase struct {
	name string
	cidr string
	fam  Family
	n    int
	// pairs: Services come in pairs sharing one address (distinct ports),
	// so 100k Services fit in an IPv4 /16.
	pairs bool
}

// benchCases: a /16 has 65534 usable addresses, so 100k Services in an
// IPv4 /16 only fit when they share in pairs; the /12 case shows 100k
// distinct IPv4 addresses.
func benchCases() []benchCase {
	return []benchCase{
		{name: "ipv4-16", cidr: "10.0.0.0/16", fam: IPv4, n: 10_000},
		{name: "ipv4-16", cidr: "10.0.0.0/16", fam: IPv4, n: 60_000},
		{name: "ipv4-16-pairs", cidr: "10.0.0.0/16", fam: IPv4, n: 100_000, pairs: true},
		{name: "ipv4-12", cidr: "10.0.0.0/12", fam: IPv4, n: 100_000},
		{name: "ipv6-64", cidr: "2001:db8::/64", fam: IPv6, n: 10_000},
		{name: "ipv6-64", cidr: "2001:db8::/64", fam: IPv6, n: 100_000},
	}
}

func (c benchCase) String() string { return fmt.Sprintf("%s/services=%d", c.name, c.n) }

// svc returns the i-th Service of the case.
func (c benchCase) svc(i int) Service {
	s := mkSvc(fmt.Sprintf("ns%d/svc%d", i%50, i), fams(c.fam))
	if c.pairs {
		s.Namespace = "shared"
		s.Key = fmt.Sprintf("shared/svc%d", i)
		s.Sharing = &Sharing{Key: fmt.Sprintf("k%d", i/2)}
		s.Ports = []Port{{Protocol: "TCP", Port: int32(80 + i%2)}}
	}
	return s
}

// setup returns an allocator holding the first n Services of c.
func (c benchCase) setup(b *testing.B, n int) (*Allocator, []Service) {
	b.Helper()
	a := New()
	a.SetPools([]Pool{mkPool(b, "bench", c.cidr)}, nil)
	svcs := make([]Service, n)
	for i := range svcs {
		svcs[i] = c.svc(i)
		if r := a.Assign(svcs[i]); r.Reason != Allocated {
			b.Fatalf("setup %d: %s", i, describe(r))
		}
	}
	return a, svcs
}

// BenchmarkAssign measures one more Assign (a new Service, lowest free
// address) and its Release, with n Services already holding addresses.
// For the pairs case the new Service joins an existing shared address.
func BenchmarkAssign(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(c.String(), func(b *testing.B) {
			a, _ := c.setup(b, c.n)
			probe := mkSvc("bench/probe", fams(c.fam))
			if c.pairs {
				probe = c.svc(c.n / 3)
				probe.Key = "shared/probe"
				probe.Ports = []Port{{Protocol: "TCP", Port: 8080}}
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := a.Assign(probe); r.Reason != Allocated {
					b.Fatal(describe(r))
				}
				a.Release(probe.Key)
			}
		})
	}
}

// BenchmarkReassign measures the reconcile of a Service that already holds
// its address (the controller's steady state: resyncs, unrelated edits).
func BenchmarkReassign(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(c.String(), func(b *testing.B) {
			a, svcs := c.setup(b, c.n)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			for b.Loop() {
				if r := a.Assign(svcs[rng.IntN(len(svcs))]); r.Reason != Allocated {
					b.Fatal(describe(r))
				}
			}
		})
	}
}

// BenchmarkChurn measures Release+Assign of random Services in a pool with
// scattered holes: n+n/20 Services are assigned, n/20 random ones released,
// then each op releases a random holder and assigns it again (it takes the
// lowest hole, so holes keep moving and the used set stays fragmented).
func BenchmarkChurn(b *testing.B) {
	for _, c := range benchCases() {
		if c.pairs {
			continue // pairs rejoin their partner; covered by BenchmarkAssign
		}
		b.Run(c.String(), func(b *testing.B) {
			extra := c.n / 20 // n+n/20 still fits a /16 at n=60k
			a, all := c.setup(b, c.n+extra)
			rng := rand.New(rand.NewPCG(3, 4))
			rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			for _, s := range all[c.n:] {
				a.Release(s.Key)
			}
			held := all[:c.n]
			b.ReportAllocs()
			for b.Loop() {
				s := held[rng.IntN(len(held))]
				a.Release(s.Key)
				if r := a.Assign(s); r.Reason != Allocated {
					b.Fatal(describe(r))
				}
			}
			b.ReportMetric(float64(a.held.Runs()), "runs")
		})
	}
}

// BenchmarkSetPools measures a pool edit (conflicts and usage recount)
// with n Services holding addresses.
func BenchmarkSetPools(b *testing.B) {
	for _, c := range benchCases() {
		if c.pairs {
			continue
		}
		b.Run(c.String(), func(b *testing.B) {
			a, _ := c.setup(b, c.n)
			pools := []Pool{mkPool(b, "bench", c.cidr), mkPool(b, "other", "192.168.0.0/24")}
			b.ReportAllocs()
			for b.Loop() {
				a.SetPools(pools, nil)
			}
		})
	}
}
