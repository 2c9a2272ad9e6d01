package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/netnstest"
)

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU starts counting the CPU time the process uses; the function
// it returns, called after the loop, reports it per op as cpu-ns/op. On a
// shared machine wall time per op measures the other jobs too; the
// process's CPU time (its own, the garbage collector's and the kernel's
// on its behalf, such as nf_tables applying a batch) measures the call.
func reportCPU(b *testing.B) func() {
	b.Helper()
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

// benchServices returns n services with 3 endpoints each, half of them
// Local, in Key order (as the agent passes them).
func benchServices(n int) []Service {
	svcs := make([]Service, n)
	for i := range svcs {
		svcs[i] = Service{
			Key: fmt.Sprintf("ns/svc-%05d:http/TCP", i), VIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			Port: 80, Protocol: "TCP", TrafficPolicyLocal: i%2 == 0,
		}
		for j := range 3 {
			svcs[i].Endpoints = append(svcs[i].Endpoints, Endpoint{
				Addr: netip.AddrFrom4([4]byte{10, 244, byte(j), byte(i % 250)}), Port: 8080 + uint16(i/250), Local: true})
		}
	}
	return svcs
}

func benchTable(b *testing.B) *Table {
	b.Helper()
	lan := netnstest.New(b, prefix, netnstest.Host{Role: "node"})
	h := lan.Handle("node")
	tbl, err := Open(Options{NetNS: &h})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tbl.Close(true) })
	return tbl
}

func benchSync(b *testing.B, tbl *Table, svcs []Service) {
	b.Helper()
	if err := tbl.Sync(context.Background(), svcs); err != nil {
		b.Fatal(err)
	}
}

// forceFull makes the Table's next Sync replace the whole table, as the
// first Sync after Open does.
func (t *Table) forceFull() {
	t.mu.Lock()
	t.full = true
	t.mu.Unlock()
}

// BenchmarkSync1000x3 is one full Sync (the whole table replaced in one
// batch, as every Sync did before issue 12) of 1000 services × 3
// endpoints; DPN=3000 sets another count.
func BenchmarkSync1000x3(b *testing.B) {
	tbl := benchTable(b)
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("DPN")); err == nil {
		n = v
	}
	svcs := benchServices(n)
	b.ResetTimer()
	for b.Loop() {
		tbl.forceFull()
		benchSync(b, tbl, svcs)
	}
}

// BenchmarkTableAtScale measures one Sync of N services × 3 endpoints:
// full (first Sync), unchanged, with the endpoints of 1 or 50 services
// changed, with 1 service added or removed (alternately); and the memory
// a Table holds for them.
func BenchmarkTableAtScale(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			svcs := benchServices(n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tbl := benchTable(b)
			benchSync(b, tbl, svcs)
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
			runtime.KeepAlive(svcs)

			b.Run("full", func(b *testing.B) {
				defer reportCPU(b)()
				for b.Loop() {
					tbl.forceFull()
					benchSync(b, tbl, svcs)
				}
			})
			b.Run("unchanged", func(b *testing.B) {
				defer reportCPU(b)()
				for b.Loop() {
					benchSync(b, tbl, svcs)
				}
			})
			// flip changes the third endpoint's port of service i: a
			// Deployment replacing one Pod.
			flip := func(i int) {
				e := &svcs[i%n].Endpoints[2]
				if e.Port < 9000 {
					e.Port += 1000
				} else {
					e.Port -= 1000
				}
			}
			for _, k := range []int{1, 50} {
				b.Run(fmt.Sprintf("%d-changed", k), func(b *testing.B) {
					defer reportCPU(b)()
					i := 0
					for b.Loop() {
						for range k {
							flip(i)
							i += 7
						}
						benchSync(b, tbl, svcs)
					}
				})
				// Back to the original endpoints.
				for i := range svcs {
					if e := &svcs[i].Endpoints[2]; e.Port >= 9000 {
						e.Port -= 1000
					}
				}
				benchSync(b, tbl, svcs)
			}
			b.Run("1-added-or-removed", func(b *testing.B) {
				extra := extraService()
				with := append(slices.Clip(svcs), extra)
				add := true
				cpu := reportCPU(b)
				for b.Loop() {
					if add {
						benchSync(b, tbl, with)
					} else {
						benchSync(b, tbl, svcs)
					}
					add = !add
				}
				cpu()
				benchSync(b, tbl, svcs)
			})
			b.Run("held", func(b *testing.B) { reportHeld(b, held) })
		})
	}
}

func benchUpdate(b *testing.B, tbl *Table, groups map[string][]Service) {
	b.Helper()
	if err := tbl.Update(context.Background(), groups); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkUpdateAtScale measures one Table.Update of one group (one
// service × 3 endpoints, as the agent makes one group per Kubernetes
// Service) among N: its endpoints changed, nothing changed, the group
// added or removed (alternately); and the memory a Table holds for N
// groups. Unlike a Sync's, the Go side of an Update does not grow with N:
// compare 1-group-changed with BenchmarkTableAtScale's 1-changed.
func BenchmarkUpdateAtScale(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			svcs := benchServices(n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tbl := benchTable(b)
			groups := make(map[string][]Service, n)
			for i := range svcs {
				groups[svcs[i].Key] = svcs[i : i+1]
			}
			benchUpdate(b, tbl, groups)
			clear(groups)
			runtime.GC()
			runtime.ReadMemStats(&after)
			held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
			runtime.KeepAlive(svcs)

			one := func(i int) map[string][]Service { return map[string][]Service{svcs[i].Key: svcs[i : i+1]} }
			b.Run("1-group-changed", func(b *testing.B) {
				b.ReportAllocs()
				cpu := reportCPU(b)
				i := 0
				for b.Loop() {
					flipEndpoint(svcs, i%n)
					benchUpdate(b, tbl, one(i%n))
					i += 7
				}
				cpu()
				for i := range svcs { // back to the original endpoints
					if e := &svcs[i].Endpoints[2]; e.Port >= 9000 {
						e.Port -= 1000
						benchUpdate(b, tbl, one(i))
					}
				}
			})
			b.Run("1-group-unchanged", func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				i := 0
				for b.Loop() {
					benchUpdate(b, tbl, one(i%n))
					i += 7
				}
			})
			b.Run("1-group-added-or-removed", func(b *testing.B) {
				b.ReportAllocs()
				extra := map[string][]Service{"ns/svc-99999": {extraService()}}
				gone := map[string][]Service{"ns/svc-99999": nil}
				add := true
				cpu := reportCPU(b)
				for b.Loop() {
					if add {
						benchUpdate(b, tbl, extra)
					} else {
						benchUpdate(b, tbl, gone)
					}
					add = !add
				}
				cpu()
				benchUpdate(b, tbl, gone)
			})
			b.Run("held", func(b *testing.B) { reportHeld(b, held) })
		})
	}
}

// extraService is the service the "added or removed" benchmarks add and
// remove: one not in the generated set.
func extraService() Service {
	return Service{Key: "ns/svc-99999:http/TCP", VIP: netip.MustParseAddr("10.97.0.1"), Port: 80, Protocol: "TCP",
		Endpoints: []Endpoint{{Addr: netip.MustParseAddr("10.244.9.1"), Port: 8080}, {Addr: netip.MustParseAddr("10.244.9.2"), Port: 8080}, {Addr: netip.MustParseAddr("10.244.9.3"), Port: 8080}}}
}

// reportHeld reports the memory a Table holds (bytes, measured by the
// caller) as a sub-benchmark of its own.
func reportHeld(b *testing.B, held float64) {
	for b.Loop() {
	}
	b.ReportMetric(held/(1<<20), "MiB-held")
	b.ReportMetric(0, "ns/op")
}
