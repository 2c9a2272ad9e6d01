package placement

import (
	"net/netip"
	"testing"
)

func BenchmarkScore(b *testing.B) {
	ip := ips(1)[0]
	for b.Loop() {
		_ = Score("worker-node-17", ip)
	}
}

// converged returns a 1000-IP, 5-node table in which every owner claims its
// IPs.
func converged() (Table, []netip.Addr) {
	addrs := ips(1000)
	tb := fullTable(names(5), addrs)
	tb.Claims = map[string][]netip.Addr{}
	for ip, o := range Assign(tb).Owners {
		tb.Claims[o] = append(tb.Claims[o], ip)
	}
	return tb, addrs
}

// BenchmarkAssign1000x5 computes the whole-segment placement of 1000 IPs
// over 5 nodes (what an agent does on each membership change).
func BenchmarkAssign1000x5(b *testing.B) {
	tb, _ := converged()
	b.ReportAllocs()
	for b.Loop() {
		_ = Assign(tb)
	}
}

// BenchmarkDecideAll1000x5 is one node deciding all 1000 IPs from an
// Assignment.
func BenchmarkDecideAll1000x5(b *testing.B) {
	tb, addrs := converged()
	a := Assign(tb)
	b.ReportAllocs()
	for b.Loop() {
		for _, ip := range addrs {
			v := a.View("node1", ip)
			v.Settled = true
			_ = Decide(ip, v)
		}
	}
}
