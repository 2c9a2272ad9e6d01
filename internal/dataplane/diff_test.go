package dataplane

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// sameRecord compares what two records program.
func sameRecord(a, b *record) bool {
	return a.key == b.key && a.id == b.id && a.local == b.local && slices.Equal(a.eps, b.eps)
}

// TestDiffMatchesFresh drives the diff of one Table (no kernel) through
// random desired sets and checks after each that it accepts and rejects
// exactly what a Table without history does, that its changes are
// exactly the services that differ, and that the state it commits is the
// desired one.
func TestDiffMatchesFresh(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	tbl := &Table{st: newState()}
	want := map[string]Service{}
	protos := []string{"TCP", "udp", "SCTP", "ICMP"}
	for step := range 3000 {
		for range 1 + rng.IntN(5) {
			k := fmt.Sprintf("k%02d", rng.IntN(30))
			if rng.IntN(4) == 0 {
				delete(want, k)
				continue
			}
			s := Service{Key: k, Port: uint16(rng.IntN(3)), Protocol: protos[rng.IntN(len(protos))], TrafficPolicyLocal: rng.IntN(3) == 0}
			if rng.IntN(20) > 0 {
				s.VIP = netip.AddrFrom4([4]byte{10, 96, 0, byte(rng.IntN(4))})
			}
			for range rng.IntN(4) {
				s.Endpoints = append(s.Endpoints, Endpoint{Addr: netip.AddrFrom4([4]byte{10, 244, 0, byte(rng.IntN(5))}), Port: 8080, Local: rng.IntN(2) == 0})
			}
			want[k] = s
		}
		svcs := make([]Service, 0, len(want)+1)
		for _, s := range want {
			svcs = append(svcs, s)
		}
		if rng.IntN(10) == 0 && len(svcs) > 0 { // the same Key twice
			svcs = append(svcs, svcs[rng.IntN(len(svcs))])
			svcs[len(svcs)-1].Port++
		}
		if rng.IntN(2) == 0 {
			slices.SortFunc(svcs, byKey)
		}

		before := slices.Clone(tbl.st.recs)
		d, errs := tbl.diff(svcs)
		fresh := &Table{st: newState()}
		fd, ferrs := fresh.diff(svcs)
		if got, want := errors.Join(errs...), errors.Join(ferrs...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d: errors\n%v\nwithout history\n%v", step, got, want)
		}
		if !slices.EqualFunc(d.final, fd.final, sameRecord) {
			t.Fatalf("step %d: programs %v, without history %v", step, d.final, fd.final)
		}
		// The changes turn the state into the desired set, and only
		// services that differ change.
		got := map[string]*record{}
		for _, r := range before {
			got[r.key] = r
		}
		for _, c := range d.changes {
			if c.old != nil && c.new != nil && sameRecord(c.old, c.new) {
				t.Fatalf("step %d: change of %q changes nothing", step, c.old.key)
			}
			if c.old != nil {
				if got[c.old.key] != c.old {
					t.Fatalf("step %d: change removes %q, which the state does not hold", step, c.old.key)
				}
				delete(got, c.old.key)
			}
		}
		for _, c := range d.changes {
			if c.new != nil {
				if got[c.new.key] != nil {
					t.Fatalf("step %d: change adds %q twice", step, c.new.key)
				}
				got[c.new.key] = c.new
			}
		}
		if len(got) != len(d.final) {
			t.Fatalf("step %d: changes leave %d services, want %d", step, len(got), len(d.final))
		}
		for _, r := range d.final {
			if got[r.key] != r {
				t.Fatalf("step %d: changes do not leave %q as wanted", step, r.key)
			}
		}
		if rng.IntN(10) == 0 {
			continue // as if the batch failed: the state stays
		}
		tbl.commit(d, tbl.masqDelta(d.changes), tbl.countDelta(d.changes))
		checkState(t, tbl)
	}
}

// BenchmarkDiff is the Go side of a Sync of 10 000 services × 3 endpoints
// where nothing changed: what every unchanged Sync costs.
func BenchmarkDiff(b *testing.B) {
	svcs := benchServices(10000)
	tbl := &Table{st: newState()}
	d, _ := tbl.diff(svcs)
	tbl.commit(d, tbl.masqDelta(d.changes), tbl.countDelta(d.changes))
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := tbl.diff(svcs); len(d.changes) != 0 {
			b.Fatal("changes")
		}
	}
}
