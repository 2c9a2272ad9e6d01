package ipam

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// TestRestartStability runs a cluster's worth of Services, with holes and
// edits that make fresh allocation order differ from the current layout,
// then "restarts the controller" five times: a new allocator adopts every
// Service's status (oldest first) and assigns everything again. No address
// may change.
func TestRestartStability(t *testing.T) {
	pools := func() []Pool {
		return []Pool{
			mkPool(t, "a", "10.0.0.0/27"),
			mkPool(t, "b", "10.0.1.0/27"),
			mkPool(t, "v6", "2001:db8::/64"),
			disabled(mkPool(t, "old", "10.0.9.0/29")),
		}
	}
	// Services, oldest first.
	var svcs []Service
	for i := range 40 {
		var mods []func(*Service)
		switch i % 8 {
		case 1:
			mods = append(mods, dual(PreferDualStack))
		case 2:
			mods = append(mods, dual(RequireDualStack))
		case 3:
			mods = append(mods, share("web", "*"), ports(int32(8000+i)))
		case 4:
			mods = append(mods, pin("b"))
		case 5:
			mods = append(mods, req(fmt.Sprintf("10.0.1.%d", 20+i%7)))
		case 6:
			mods = append(mods, fams(IPv6))
		}
		svcs = append(svcs, mkSvc(fmt.Sprintf("ns%d/svc%02d", i%3, i), mods...))
	}
	a := New()
	a.SetPools(append(pools()[:3], mkPool(t, "old", "10.0.9.0/29")), nil)
	// Fill "old" first (while enabled), then make holes.
	for i := range 3 {
		mustAssign(t, a, mkSvc(fmt.Sprintf("legacy/s%d", i), pin("old")), fmt.Sprintf("10.0.9.%d", i+1))
	}
	for _, s := range svcs {
		a.Assign(s)
	}
	for i := 0; i < len(svcs); i += 5 {
		a.Release(svcs[i].Key)
	}
	for i := 0; i < len(svcs); i += 5 {
		a.Assign(svcs[i]) // refill holes in a different order
	}
	a.SetPools(pools(), nil) // "old" disabled now
	svcs = append([]Service{mkSvc("legacy/s0", pin("old")), mkSvc("legacy/s1"), mkSvc("legacy/s2", pin("old"))}, svcs...)
	want := map[string][]Assignment{}
	for _, s := range svcs {
		r := a.Assign(s)
		want[s.Key] = r.Assigned
	}
	statuses := a.PoolStatuses()

	for restart := range 5 {
		b := New()
		b.SetPools(pools(), nil)
		for _, s := range svcs {
			var status []netip.Addr
			for _, as := range want[s.Key] {
				status = append(status, as.Addr)
			}
			if got := b.Adopt(s, status); !reflect.DeepEqual(got, want[s.Key]) && !(len(got) == 0 && len(want[s.Key]) == 0) {
				t.Fatalf("restart %d: Adopt(%s) = %v; want %v", restart, s.Key, got, want[s.Key])
			}
		}
		for _, s := range svcs {
			r := b.Assign(s)
			if !reflect.DeepEqual(r.Assigned, want[s.Key]) && !(len(r.Assigned) == 0 && len(want[s.Key]) == 0) || len(r.Released) != 0 {
				t.Fatalf("restart %d: Assign(%s) = %s; want %v", restart, s.Key, describe(r), want[s.Key])
			}
		}
		if !reflect.DeepEqual(b.PoolStatuses(), statuses) {
			t.Fatalf("restart %d: statuses %+v; want %+v", restart, b.PoolStatuses(), statuses)
		}
		checkInvariants(t, b)
	}
}

func TestAdoptDropsInvalid(t *testing.T) {
	a := New()
	a.SetPools([]Pool{
		mkPool(t, "a", "10.0.0.0/24"),
		withSelector(mkPool(t, "team", "10.0.5.0/24"), map[string]string{"team": "x"}),
		created(mkPool(t, "late", "10.0.0.128/25"), 10), // in conflict with a
		mkPool(t, "v6", "2001:db8::/64"),
	}, nil)
	a.SetExcluded(map[netip.Addr]string{ip("10.0.0.66"): "foreign"})
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, ip(x))
		}
		return out
	}
	tests := []struct {
		name  string
		svc   Service
		addrs []netip.Addr
		want  []string
	}{
		{"valid", mkSvc("ns/ok"), addrs("10.0.0.10"), []string{"10.0.0.10"}},
		{"not in any pool", mkSvc("ns/nopool"), addrs("10.9.9.9"), nil},
		{"network address of a CIDR", mkSvc("ns/net"), addrs("10.0.0.0"), nil},
		{"wrong family", mkSvc("ns/fam"), addrs("2001:db8::5"), nil},
		{"first of each family wins", mkSvc("ns/two", dual(PreferDualStack)), addrs("10.0.0.11", "10.0.0.12", "2001:db8::7", "2001:db8::8"), []string{"10.0.0.11", "2001:db8::7"}},
		{"single stack keeps the primary family only", mkSvc("ns/single"), addrs("2001:db8::9", "10.0.0.13"), []string{"10.0.0.13"}},
		{"held by an earlier non-sharer", mkSvc("ns/dup"), addrs("10.0.0.10"), nil},
		{"excluded", mkSvc("ns/ex"), addrs("10.0.0.66"), nil},
		{"not the requested one", mkSvc("ns/req", req("10.0.0.20")), addrs("10.0.0.21"), nil},
		{"the requested one", mkSvc("ns/req2", req("10.0.0.22")), addrs("10.0.0.22"), []string{"10.0.0.22"}},
		{"selector does not match", mkSvc("ns/sel"), addrs("10.0.5.1"), nil},
		{"selector matches", mkSvc("ns/sel2", label("team", "x")), addrs("10.0.5.1"), []string{"10.0.5.1"}},
		{"pinned elsewhere", mkSvc("ns/pin", pin("v6")), addrs("10.0.0.30"), nil},
		{"only conflicting pool would count", mkSvc("ns/conf", pin("late")), addrs("10.0.0.200"), nil},
		{"zoned and mapped forms are normalized", mkSvc("ns/norm"), addrs("::ffff:10.0.0.40"), []string{"10.0.0.40"}},
		{"invalid service", Service{}, addrs("10.0.0.50"), nil},
		{"invalid address", mkSvc("ns/inv"), []netip.Addr{{}}, nil},
		{"sharers adopt together", mkSvc("ns/sh1", share("k"), ports(80)), addrs("10.0.0.60"), []string{"10.0.0.60"}},
		{"compatible sharer", mkSvc("ns/sh2", share("k"), ports(443)), addrs("10.0.0.60"), []string{"10.0.0.60"}},
		{"incompatible sharer", mkSvc("ns/sh3", share("k"), ports(443)), addrs("10.0.0.60"), nil},
		{"RequireDualStack with one family", mkSvc("ns/req1", policy(RequireDualStack)), addrs("10.0.0.70"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := addrsOf(a.Adopt(tt.svc, tt.addrs))
			if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Fatalf("Adopt = %v; want %v", got, tt.want)
			}
			if held := addrsOf(a.Lookup(tt.svc.Key)); !slices.Equal(held, got) && !(len(got) == 0 && len(held) == 0) {
				t.Fatalf("holds %v; adopted %v", held, got)
			}
			checkInvariants(t, a)
		})
	}
	// An address dropped at adoption is released and re-allocated on Assign.
	if r := a.Assign(mkSvc("ns/dup")); r.Reason != Allocated || r.Assigned[0].Addr == ip("10.0.0.10") {
		t.Fatalf("%s", describe(r))
	}
}

func TestAdoptTwiceAndAfterAssign(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "v6", "2001:db8::/64")}, nil)
	s := mkSvc("ns/s", dual(PreferDualStack))
	if got := addrsOf(a.Adopt(s, []netip.Addr{ip("10.0.0.9")})); !slices.Equal(got, []string{"10.0.0.9"}) {
		t.Fatalf("%v", got)
	}
	// A second Adopt adds the missing family and ignores a second IPv4.
	if got := addrsOf(a.Adopt(s, []netip.Addr{ip("10.0.0.10"), ip("2001:db8::9")})); !slices.Equal(got, []string{"2001:db8::9"}) {
		t.Fatalf("%v", got)
	}
	if got := addrsOf(a.Lookup("ns/s")); !slices.Equal(got, []string{"10.0.0.9", "2001:db8::9"}) {
		t.Fatalf("%v", got)
	}
	// Adopt with a view under which the held address is invalid drops it.
	a.Adopt(mkSvc("ns/s", dual(PreferDualStack), pin("v6")), nil)
	if got := addrsOf(a.Lookup("ns/s")); !slices.Equal(got, []string{"2001:db8::9"}) {
		t.Fatalf("%v", got)
	}
	r := mustAssign(t, a, mkSvc("ns/s", dual(PreferDualStack)), "10.0.0.1", "2001:db8::9")
	if len(r.Released) != 0 {
		t.Fatalf("%s", describe(r))
	}
}
