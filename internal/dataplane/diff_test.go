package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// goTable is a Table without a kernel, for the Go side alone.
func goTable() *Table {
	return &Table{st: newState(), want: newDesired(), pending: map[string]struct{}{}}
}

// goStep stages groups (all: as Sync does) and returns the changes the
// kernel would get and the errors; with commit it records the changes as
// a successful call does, without it the state stays as after a failed
// one.
func goStep(tbl *Table, groups map[string][]Service, all, commit bool) ([]change, []error) {
	errs := tbl.stage(groups, all)
	changes := tbl.pendingChanges()
	if commit {
		tbl.commit(changes, tbl.masqDelta(changes), tbl.countDelta(changes))
		tbl.donePending()
		tbl.sc.shrink()
	}
	return changes, errs
}

// flatten is the one list of services that the groups make: groups in
// name order, each in its own order.
func flatten(groups map[string][]Service) []Service {
	var out []Service
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		out = append(out, groups[name]...)
	}
	return out
}

// checkChanges checks that changes turn the state before (by Key) into
// exactly the desired set's records, and that only services that differ
// change.
func checkChanges(t *testing.T, what string, before map[string]*record, changes []change, tbl *Table) {
	t.Helper()
	got := maps.Clone(before)
	for _, c := range changes {
		if c.old != nil && c.new != nil && sameRecord(c.old, c.new) {
			t.Fatalf("%s: change of %q changes nothing", what, c.old.key)
		}
		if c.old != nil {
			if got[c.old.key] != c.old {
				t.Fatalf("%s: change removes %q, which the state does not hold", what, c.old.key)
			}
			delete(got, c.old.key)
		}
	}
	for _, c := range changes {
		if c.new != nil {
			if got[c.new.key] != nil {
				t.Fatalf("%s: change adds %q twice", what, c.new.key)
			}
			got[c.new.key] = c.new
		}
	}
	final := tbl.want.all()
	if len(got) != len(final) {
		t.Fatalf("%s: changes leave %d services, want %d", what, len(got), len(final))
	}
	for _, r := range final {
		if g := got[r.key]; g == nil || !sameRecord(g, r) {
			t.Fatalf("%s: changes do not leave %q as wanted", what, r.key)
		}
	}
}

// checkDesired checks the claim lists against themselves: every group's
// wants sorted and listed under their Key, the Key owners (and only they)
// listed under their VIP:port/protocol, both lists in order.
func checkDesired(t *testing.T, tbl *Table) {
	t.Helper()
	d := &tbl.want
	n := 0
	for name, ws := range d.groups {
		if len(ws) == 0 {
			t.Errorf("group %q kept without services", name)
		}
		if !slices.IsSortedFunc(ws, func(a, b *want) int { return strings.Compare(a.rec.key, b.rec.key) }) {
			t.Errorf("group %q not sorted by Key", name)
		}
		for i, w := range ws {
			n++
			if w.group != name || i > 0 && ws[i-1].rec.key == w.rec.key {
				t.Errorf("group %q: want %q misplaced", name, w.rec.key)
			}
			found := false
			for p := d.keys[w.rec.key]; p != nil; p = p.nextKey {
				found = found || p == w
			}
			if !found {
				t.Errorf("group %q: want %q not among the wants of its Key", name, w.rec.key)
			}
		}
	}
	m, owners := 0, 0
	for k, h := range d.keys {
		for p := h; p != nil; p = p.nextKey {
			m++
			if p.rec.key != k || p.nextKey != nil && p.nextKey.group <= p.group {
				t.Errorf("Key %q: wants out of order", k)
			}
		}
		owners++
		found := false
		for p := d.ids[h.rec.id]; p != nil; p = p.nextID {
			found = found || p == h
		}
		if !found {
			t.Errorf("the owner of %q does not claim its VIP:port/protocol", k)
		}
	}
	if m != n {
		t.Errorf("%d wants in groups, %d among the Keys", n, m)
	}
	claims := 0
	for id, h := range d.ids {
		for p := h; p != nil; p = p.nextID {
			claims++
			if p.rec.id != id || d.keys[p.rec.key] != p || p.nextID != nil && p.nextID.rec.key <= p.rec.key {
				t.Errorf("%v: claimants out of order or not Key owners", id)
			}
		}
	}
	if claims != owners {
		t.Errorf("%d Key owners, %d claimants", owners, claims)
	}
	for _, ws := range d.groups {
		for _, w := range ws {
			if got, want := fmt.Sprint(w.err), fmt.Sprint(d.status(w)); got != want {
				t.Errorf("want %q of group %q: status %s, want %s", w.rec.key, w.group, got, want)
			}
		}
	}
}

// errLines is errs as sorted lines.
func errLines(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	slices.Sort(out)
	return out
}

// TestDiffMatchesFresh drives the Go side of one Table's Syncs (no
// kernel) through random desired sets and checks after each that it
// accepts and rejects exactly what a Table without history does, that
// its changes are exactly the services that differ, and that the state it
// commits is the desired one.
func TestDiffMatchesFresh(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	tbl := goTable()
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

		what := fmt.Sprintf("step %d", step)
		before := maps.Clone(tbl.st.recs)
		commit := rng.IntN(10) > 0 // else as if the batch failed: the state stays
		changes, errs := goStep(tbl, map[string][]Service{syncGroup: svcs}, true, commit)
		fresh := goTable()
		_, ferrs := goStep(fresh, map[string][]Service{syncGroup: svcs}, true, true)
		if got, want := errors.Join(errs...), errors.Join(ferrs...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: errors\n%v\nwithout history\n%v", what, got, want)
		}
		if got, want := tbl.want.all(), fresh.want.all(); !slices.EqualFunc(got, want, sameRecord) {
			t.Fatalf("%s: programs %v, without history %v", what, got, want)
		}
		checkChanges(t, what, before, changes, tbl)
		checkDesired(t, tbl)
		if commit {
			checkState(t, tbl)
		}
	}
}

// TestUpdateMatchesFresh drives the Go side of one Table through random
// Updates of a few groups at a time (no kernel): services added, removed
// and changed, VIPs moved, Keys and VIP:port/protocols claimed by several
// groups, invalid services, and now and then a call that fails. After
// each it checks that the Table programs exactly what a fresh Table's Sync
// of all groups in one list does, that its changes are exactly the
// services that differ, and that its errors are the fresh Sync's for the
// groups it was given.
func TestUpdateMatchesFresh(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	tbl := goTable()
	groups := map[string][]Service{}
	protos := []string{"TCP", "udp", "Tcp", "SCTP", "ICMP"}
	service := func(key string) Service {
		s := Service{Key: key, Port: uint16(80 + rng.IntN(2)), Protocol: protos[rng.IntN(len(protos))], TrafficPolicyLocal: rng.IntN(3) == 0}
		if rng.IntN(25) > 0 {
			s.VIP = netip.AddrFrom4([4]byte{10, 96, 0, byte(rng.IntN(4))})
		}
		if rng.IntN(30) == 0 {
			s.Port = 0
		}
		for range rng.IntN(4) {
			s.Endpoints = append(s.Endpoints, Endpoint{Addr: netip.AddrFrom4([4]byte{10, 244, 0, byte(rng.IntN(5))}), Port: 8080, Local: rng.IntN(2) == 0})
		}
		return s
	}
	failed := false
	for step := range 5000 {
		changed := map[string][]Service{}
		for range 1 + rng.IntN(3) {
			g := fmt.Sprintf("g%d", rng.IntN(8))
			if rng.IntN(4) == 0 {
				changed[g] = nil
				continue
			}
			list := slices.Clone(groups[g])
			switch r := rng.IntN(10); {
			case len(list) > 0 && r < 4: // endpoints or VIP of one service
				i := rng.IntN(len(list))
				s := service(list[i].Key)
				if r < 2 {
					list[i].Endpoints = s.Endpoints
				} else {
					list[i].VIP = s.VIP
				}
			case len(list) > 0 && r < 5:
				i := rng.IntN(len(list))
				list = slices.Delete(list, i, i+1)
			default:
				// Keys mostly of the group's own, now and then one another
				// group uses too, or one the group has already.
				k := fmt.Sprintf("%s/s%d", g, rng.IntN(4))
				if rng.IntN(6) == 0 {
					k = fmt.Sprintf("shared/s%d", rng.IntN(3))
				}
				list = append(list, service(k))
			}
			if rng.IntN(3) == 0 {
				rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
			}
			changed[g] = list
		}
		for g, list := range changed {
			if len(list) == 0 {
				delete(groups, g)
			} else {
				groups[g] = list
			}
		}

		what := fmt.Sprintf("step %d (%v)", step, slices.Sorted(maps.Keys(changed)))
		before := maps.Clone(tbl.st.recs)
		commit := rng.IntN(10) > 0
		changes, errs := goStep(tbl, changed, false, commit)
		fresh := goTable()
		_, ferrs := goStep(fresh, map[string][]Service{syncGroup: flatten(groups)}, true, true)
		if got, want := tbl.want.all(), fresh.want.all(); !slices.EqualFunc(got, want, sameRecord) {
			t.Fatalf("%s: programs\n%v\na fresh Sync of all groups\n%v", what, got, want)
		}
		checkChanges(t, what, before, changes, tbl)
		checkDesired(t, tbl)
		if commit {
			checkState(t, tbl)
		}
		// Errors: each one is the fresh Sync's, no Key has more than there,
		// and every service of the groups given that is not programmed is
		// reported (at most one per Key is).
		got, all := errLines(errs), errLines(ferrs)
		perKey := func(lines []string) map[string]int {
			n := map[string]int{}
			for _, e := range lines {
				k, _, _ := strings.Cut(strings.TrimPrefix(e, ErrInvalidService.Error()+" "), ": ")
				n[k]++
			}
			return n
		}
		gotN, allN := perKey(got), perKey(all)
		for _, e := range got {
			if _, ok := slices.BinarySearch(all, e); !ok {
				t.Fatalf("%s: error %q; a fresh Sync's are\n%s", what, e, strings.Join(all, "\n"))
			}
		}
		wantN := map[string]int{}
		for g, list := range changed {
			for _, s := range list {
				wantN[fmt.Sprintf("%q", s.Key)]++
				if w := tbl.want.keys[s.Key]; w != nil && w.group == g && tbl.want.programmed(s.Key) == w.rec {
					wantN[fmt.Sprintf("%q", s.Key)]-- // the one programmed
				}
			}
		}
		for k, n := range gotN {
			if n > allN[k] {
				t.Fatalf("%s: %d errors for %s, a fresh Sync has %d", what, n, k, allN[k])
			}
		}
		for k, n := range wantN {
			if gotN[k] < n {
				t.Fatalf("%s: %d errors for %s, want at least %d:\n%s\nfresh:\n%s", what, gotN[k], k, n, strings.Join(got, "\n"), strings.Join(all, "\n"))
			}
		}
		failed = failed || !commit
	}
	if !failed {
		t.Error("no step simulated a failed call")
	}
}

// TestClaims is the claim logic step by step: which service of several
// with one Key or one VIP:port/protocol is programmed, who takes over when
// it goes, and what the Update that displaces a service reports.
func TestClaims(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.1")
	other := netip.MustParseAddr("10.96.0.2")
	svc := func(key string, addr netip.Addr) Service {
		return Service{Key: key, VIP: addr, Port: 80, Protocol: "TCP"}
	}
	type step struct {
		what   string
		groups map[string][]Service
		// programmed is Key@VIP for every programmed service.
		programmed []string
		errs       []string // substrings of the errors, in order
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"the smaller Key wins and the other takes over", []step{
			{"b alone", map[string][]Service{"B": {svc("b", vip)}}, []string{"b@10.96.0.1"}, nil},
			{"a takes the VIP from b", map[string][]Service{"A": {svc("a", vip)}}, []string{"a@10.96.0.1"},
				[]string{`"b": 10.96.0.1:80/TCP already used by "a"`}},
			{"c cannot", map[string][]Service{"C": {svc("c", vip)}}, []string{"a@10.96.0.1"},
				[]string{`"c": 10.96.0.1:80/TCP already used by "a"`}},
			{"c's protocol written otherwise: the message follows", map[string][]Service{"C": {{Key: "c", VIP: vip, Port: 80, Protocol: "tcp"}}},
				[]string{"a@10.96.0.1"}, []string{`"c": 10.96.0.1:80/tcp already used by "a"`}},
			{"a goes: b, the next Key, takes over", map[string][]Service{"A": nil}, []string{"b@10.96.0.1"}, nil},
			{"b moves away: c takes over", map[string][]Service{"B": {svc("b", other)}}, []string{"b@10.96.0.2", "c@10.96.0.1"}, nil},
			{"b comes back and wins", map[string][]Service{"B": {svc("b", vip)}}, []string{"b@10.96.0.1"},
				[]string{`"c": 10.96.0.1:80/tcp already used by "b"`}},
		}},
		{"one Key in two groups: the smaller group name owns it", []step{
			{"in group y", map[string][]Service{"y": {svc("k", vip)}}, []string{"k@10.96.0.1"}, nil},
			{"group x takes the Key with another VIP", map[string][]Service{"x": {svc("k", other)}}, []string{"k@10.96.0.2"},
				[]string{`"k": its Key is used by another service`}},
			{"group x lets go: y's is back", map[string][]Service{"x": {}}, []string{"k@10.96.0.1"}, nil},
		}},
		{"a Key twice in one group: the first counts", []step{
			{"two", map[string][]Service{"g": {svc("k", vip), svc("k", other), svc("j", other)}}, []string{"j@10.96.0.2", "k@10.96.0.1"},
				[]string{`"k": its Key is used by another service`}},
			{"the first is invalid: the second counts", map[string][]Service{"g": {{Key: "k", VIP: vip, Port: 80, Protocol: "ICMP"}, svc("k", other)}},
				[]string{"k@10.96.0.2"}, []string{`"k": unsupported protocol "ICMP"`}},
		}},
		{"Sync sets everything, Update changes it", []step{
			{"an Update", map[string][]Service{"g": {svc("g", other)}}, []string{"g@10.96.0.2"}, nil},
			{"a Sync (group \"\", all others dropped)", nil, []string{"s@10.96.0.1"}, nil},
			{"an Update of group \"\"", map[string][]Service{"": {svc("s", other)}}, []string{"s@10.96.0.2"}, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := goTable()
			for _, st := range tc.steps {
				var errs []error
				if st.groups == nil {
					_, errs = goStep(tbl, map[string][]Service{syncGroup: {svc("s", vip)}}, true, true)
				} else {
					_, errs = goStep(tbl, st.groups, false, true)
				}
				var got []string
				for _, r := range tbl.want.all() {
					got = append(got, r.key+"@"+r.id.vip.String())
				}
				if !slices.Equal(got, st.programmed) {
					t.Errorf("%s: programmed %v, want %v", st.what, got, st.programmed)
				}
				if len(errs) != len(st.errs) {
					t.Errorf("%s: errors %v, want %d", st.what, errs, len(st.errs))
					continue
				}
				for i, e := range errs {
					if !errors.Is(e, ErrInvalidService) || !strings.Contains(e.Error(), st.errs[i]) {
						t.Errorf("%s: error %d is %q, want one with %q", st.what, i, e, st.errs[i])
					}
				}
				checkDesired(t, tbl)
				checkState(t, tbl)
			}
		})
	}
}

// BenchmarkDiff is the Go side of a Sync of 10 000 services × 3 endpoints
// where nothing changed: what every unchanged Sync costs.
func BenchmarkDiff(b *testing.B) {
	svcs := benchServices(10000)
	tbl := goTable()
	all := map[string][]Service{syncGroup: svcs}
	goStep(tbl, all, true, true)
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if changes, _ := goStep(tbl, all, true, true); len(changes) != 0 {
			b.Fatal("changes")
		}
	}
}

// flipEndpoint changes the port of the third endpoint of svcs[i]: a
// Deployment replacing one Pod, undone by the next flip.
func flipEndpoint(svcs []Service, i int) {
	e := &svcs[i].Endpoints[2]
	if e.Port < 9000 {
		e.Port += 1000
	} else {
		e.Port -= 1000
	}
}

// BenchmarkUpdateGoSide is the Go side (no kernel) of one call that
// changes the endpoints of one service among N services × 3 endpoints:
// an Update of its group (one group per service, as the agent makes them)
// against a Sync of all N. The Update's cost does not grow with N.
func BenchmarkUpdateGoSide(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d/Update-1-group", n), func(b *testing.B) {
			svcs := benchServices(n)
			tbl := goTable()
			groups := map[string][]Service{}
			for i := range svcs {
				groups[svcs[i].Key] = svcs[i : i+1]
			}
			goStep(tbl, groups, false, true)
			b.ReportAllocs()
			defer reportCPU(b)()
			i := 0
			for b.Loop() {
				k := i % n
				flipEndpoint(svcs, k)
				if changes, _ := goStep(tbl, map[string][]Service{svcs[k].Key: svcs[k : k+1]}, false, true); len(changes) != 1 {
					b.Fatal("want one change")
				}
				i += 7
			}
		})
		b.Run(fmt.Sprintf("services=%d/Sync-1-changed", n), func(b *testing.B) {
			svcs := benchServices(n)
			tbl := goTable()
			all := map[string][]Service{syncGroup: svcs}
			goStep(tbl, all, true, true)
			b.ReportAllocs()
			defer reportCPU(b)()
			i := 0
			for b.Loop() {
				flipEndpoint(svcs, i%n)
				if changes, _ := goStep(tbl, all, true, true); len(changes) != 1 {
					b.Fatal("want one change")
				}
				i += 7
			}
		})
	}
}
