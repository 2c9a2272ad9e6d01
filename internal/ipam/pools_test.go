package ipam

import (
	"math/big"
	"net/netip"
	"strings"
	"testing"
)

func TestConflicts(t *testing.T) {
	type want struct {
		reason ConflictReason
		msg    string // exact message; "" with an empty reason
	}
	tests := []struct {
		name  string
		pools func(t testing.TB) []Pool
		nodes []NodeAddress
		want  map[string]want
	}{
		{name: "disjoint pools and adjacent blocks",
			pools: pools(pl("a", "10.0.0.1-10.0.0.5", "10.0.0.6-10.0.0.9"), pl("b", "10.0.0.10-10.0.0.20"), pl("c", "2001:db8::/64")),
			want:  map[string]want{"a": {}, "b": {}, "c": {}}},
		{name: "blocks of one pool overlap",
			pools: pools(pl("a", "192.168.1.5-192.168.1.20", "192.168.1.1-192.168.1.9")),
			want:  map[string]want{"a": {ConflictOverlap, "block 192.168.1.1-192.168.1.9 overlaps block 192.168.1.5-192.168.1.20"}}},
		{name: "same block twice",
			pools: pools(pl("a", "10.0.0.1", "10.0.0.1", "10.0.0.1")),
			want:  map[string]want{"a": {ConflictOverlap, "block 10.0.0.1 overlaps block 10.0.0.1 (and 1 more overlaps)"}}},
		{name: "newer pool by creation time",
			pools: pools(mod(pl("z", "10.0.0.1-10.0.0.9"), func(p Pool) Pool { return created(p, 0) }),
				mod(pl("a", "10.0.0.5-10.0.0.20"), func(p Pool) Pool { return created(p, 10) })),
			want: map[string]want{"z": {}, "a": {ConflictOverlap, `overlaps pool "z" (older) at 10.0.0.5-10.0.0.9`}}},
		{name: "same creation time: the later name is newer",
			pools: pools(pl("b", "10.0.0.5-10.0.0.20"), pl("a", "10.0.0.1-10.0.0.9")),
			want:  map[string]want{"a": {}, "b": {ConflictOverlap, `overlaps pool "a" (older) at 10.0.0.5-10.0.0.9`}}},
		{name: "contained pool",
			pools: pools(pl("a", "10.0.0.0/16"), pl("b", "10.0.3.7")),
			want:  map[string]want{"a": {}, "b": {ConflictOverlap, `overlaps pool "a" (older) at 10.0.3.7`}}},
		{name: "overlaps two older pools",
			pools: pools(pl("a", "10.0.0.1-10.0.0.5"), pl("b", "10.0.0.8-10.0.0.9"), pl("c", "10.0.0.4-10.0.0.8")),
			want: map[string]want{"a": {}, "b": {},
				"c": {ConflictOverlap, `overlaps pool "a" (older) at 10.0.0.4-10.0.0.5; overlaps pool "b" (older) at 10.0.0.8`}}},
		{name: "chain: overlapping only a conflicting pool still conflicts",
			pools: pools(pl("a", "10.0.0.1-10.0.0.5"), pl("b", "10.0.0.5-10.0.0.10"), pl("c", "10.0.0.10-10.0.0.12")),
			want: map[string]want{"a": {}, "b": {ConflictOverlap, `overlaps pool "a" (older) at 10.0.0.5`},
				"c": {ConflictOverlap, `overlaps pool "b" (older) at 10.0.0.10`}}},
		{name: "ipv6 overlap",
			pools: pools(pl("a", "2001:db8::/64"), pl("b", "2001:db8::ffff:0:0:0-2001:db9::1")),
			want: map[string]want{"a": {},
				"b": {ConflictOverlap, `overlaps pool "a" (older) at 2001:db8:0:0:ffff::-2001:db8::ffff:ffff:ffff:fffe`}}},
		{name: "node address",
			pools: pools(pl("lb", "192.168.10.0/24"), pl("ok", "192.168.20.0/24")),
			nodes: []NodeAddress{{Node: "cp1", Addr: ip("192.168.10.215")}, {Node: "cp1", Addr: ip("fd00::1")}},
			want:  map[string]want{"lb": {ConflictNodeAddress, "contains the address 192.168.10.215 of node cp1"}, "ok": {}}},
		{name: "node address at an excluded network address does not count",
			pools: pools(pl("lb", "192.168.10.0/24")),
			nodes: []NodeAddress{{Node: "gw", Addr: ip("192.168.10.0")}, {Node: "bc", Addr: ip("192.168.10.255")}},
			want:  map[string]want{"lb": {}}},
		{name: "many node addresses, mapped and zoned forms",
			pools: pools(pl("lb", "192.168.10.0/24", "fe80::/64")),
			nodes: []NodeAddress{
				{Node: "n4", Addr: ip("192.168.10.4")}, {Node: "n1", Addr: ip("::ffff:192.168.10.1")},
				{Node: "n3", Addr: ip("192.168.10.3")}, {Node: "n2", Addr: ip("fe80::2%eth0")},
			},
			want: map[string]want{"lb": {ConflictNodeAddress,
				"contains the address 192.168.10.1 of node n1, 192.168.10.3 of node n3, 192.168.10.4 of node n4 and 1 more node addresses"}}},
		{name: "all causes, reason by priority",
			pools: pools(pl("a", "10.0.0.1-10.0.0.9"), pl("b", "10.0.0.5-10.0.0.12", "10.0.0.11-10.0.0.20")),
			nodes: []NodeAddress{{Node: "cp1", Addr: ip("10.0.0.15")}},
			want: map[string]want{"a": {},
				"b": {ConflictOverlap, `block 10.0.0.5-10.0.0.12 overlaps block 10.0.0.11-10.0.0.20; contains the address 10.0.0.15 of node cp1; overlaps pool "a" (older) at 10.0.0.5-10.0.0.9`}}},
		{name: "node conflict before pool overlap",
			pools: pools(pl("a", "10.0.0.1-10.0.0.9"), pl("b", "10.0.0.5-10.0.0.12")),
			nodes: []NodeAddress{{Node: "cp1", Addr: ip("10.0.0.11")}},
			want: map[string]want{"a": {},
				"b": {ConflictNodeAddress, `contains the address 10.0.0.11 of node cp1; overlaps pool "a" (older) at 10.0.0.5-10.0.0.9`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New()
			sts := a.SetPools(tt.pools(t), tt.nodes)
			if len(sts) != len(tt.want) {
				t.Fatalf("got %d statuses; want %d", len(sts), len(tt.want))
			}
			for i, st := range sts {
				if i > 0 && sts[i-1].Name >= st.Name {
					t.Fatalf("statuses not in name order: %q before %q", sts[i-1].Name, st.Name)
				}
				w, okName := tt.want[st.Name]
				if !okName {
					t.Fatalf("unexpected pool %q", st.Name)
				}
				if st.Conflict != w.reason || st.ConflictMessage != w.msg {
					t.Errorf("pool %s: conflict %q %q; want %q %q", st.Name, st.Conflict, st.ConflictMessage, w.reason, w.msg)
				}
			}
			// Conflicts heal when the cause goes.
			var clean []Pool
			for _, p := range tt.pools(t) {
				if st := statusOf(sts, p.Name); st.Conflict == "" {
					clean = append(clean, p)
				}
			}
			for _, st := range a.SetPools(clean, nil) {
				if st.Conflict != "" {
					t.Errorf("pool %s still in conflict after the cause went: %s", st.Name, st.ConflictMessage)
				}
			}
		})
	}
}

func statusOf(sts []PoolStatus, name string) PoolStatus {
	for _, st := range sts {
		if st.Name == name {
			return st
		}
	}
	return PoolStatus{}
}

func TestConflictHealsAndHandsOut(t *testing.T) {
	a := New()
	older := mkPool(t, "a", "10.0.0.1-10.0.0.2")
	newer := created(mkPool(t, "b", "10.0.0.2-10.0.0.9"), 5)
	a.SetPools([]Pool{older, newer}, nil)
	for _, want := range []string{"10.0.0.1", "10.0.0.2"} {
		if r := a.Assign(mkSvc("ns/" + want)); r.Reason != Allocated || r.Assigned[0].Addr.String() != want {
			t.Fatalf("%s", describe(r))
		}
	}
	// b is in conflict: it hands out nothing.
	if r := a.Assign(mkSvc("ns/x")); r.Reason != OutOfIPs {
		t.Fatalf("conflicting pool handed out: %s", describe(r))
	}
	// The overlap goes (a is deleted): b heals and serves. 10.0.0.2, which b
	// also contains, is kept (now through b); 10.0.0.1 is in no pool and moves.
	a.SetPools([]Pool{newer}, nil)
	if st := a.PoolStatuses()[0]; st.Conflict != "" || st.Used != 1 {
		t.Fatalf("b after heal: %+v", st)
	}
	if r := a.Assign(mkSvc("ns/10.0.0.2")); r.Reason != Allocated || r.Assigned[0] != (Assignment{ip("10.0.0.2"), "b"}) || len(r.Released) != 0 {
		t.Fatalf("kept address not re-attributed to b: %s", describe(r))
	}
	if r := a.Assign(mkSvc("ns/10.0.0.1")); r.Reason != Allocated || r.Assigned[0].Addr != ip("10.0.0.3") || addrsOf(r.Released)[0] != "10.0.0.1" {
		t.Fatalf("address of deleted pool not moved: %s", describe(r))
	}
	checkInvariants(t, a)
}

func TestPoolCounts(t *testing.T) {
	a := New()
	sts := a.SetPools([]Pool{
		mkPool(t, "a", "10.0.0.0/24"),
		mkPool(t, "six", "2001:db8::/64"),
		mkPool(t, "wide", "3000::/8"),
		mkPool(t, "tut", "192.168.10.75-192.168.10.78"),
		{Name: "empty"},
		{Name: "junk", Blocks: []Block{{}, {First: ip("10.9.0.9"), Last: ip("10.9.0.1")}}},
	}, nil)
	pow := func(n uint, minus int64) *big.Int {
		x := new(big.Int).Lsh(big.NewInt(1), n)
		return x.Sub(x, big.NewInt(minus))
	}
	wantTotal := map[string]*big.Int{
		"a": big.NewInt(254), "six": pow(64, 2), "wide": pow(120, 2), "tut": big.NewInt(4),
		"empty": big.NewInt(0), "junk": big.NewInt(0),
	}
	for _, st := range sts {
		if st.Total.Cmp(wantTotal[st.Name]) != 0 || st.Available.Cmp(st.Total) != 0 || st.Used != 0 {
			t.Errorf("%s: total %v available %v used %d; want total %v", st.Name, st.Total, st.Available, st.Used, wantTotal[st.Name])
		}
	}
	// Callers may scribble on the returned big.Ints.
	sts[0].Total.SetInt64(-1)

	for i := range 3 {
		a.Assign(mkSvc("ns/s"+string(rune('0'+i)), pin("a")))
	}
	a.Assign(mkSvc("ns/sh1", pin("a"), share("k"), ports(80)))
	a.Assign(mkSvc("ns/sh2", pin("a"), share("k"), ports(443)))
	a.Assign(mkSvc("ns/v6", fams(IPv6), pin("wide")))
	check := func(name string, used uint64) {
		t.Helper()
		st := statusOf(a.PoolStatuses(), name)
		want := new(big.Int).Sub(wantTotal[name], new(big.Int).SetUint64(used))
		if st.Used != used || st.Available.Cmp(want) != 0 {
			t.Fatalf("%s: used %d available %v; want %d %v", name, st.Used, st.Available, used, want)
		}
	}
	check("a", 4) // 3 + one shared address counted once
	check("wide", 1)
	check("six", 0)
	a.Release("ns/s1")
	check("a", 3)
	a.Release("ns/sh1")
	check("a", 3) // sh2 still holds the shared address
	a.Release("ns/sh2")
	check("a", 2)

	// SetPools recomputes: shrink a so that one held address falls outside.
	held := addrsOf(a.Lookup("ns/s2"))[0]
	if held != "10.0.0.3" {
		t.Fatalf("s2 holds %s", held)
	}
	sts = a.SetPools([]Pool{mkPool(t, "a", "10.0.0.1-10.0.0.2"), mkPool(t, "wide", "3000::/8")}, nil)
	if st := statusOf(sts, "a"); st.Used != 1 || st.Available.Cmp(big.NewInt(1)) != 0 {
		t.Fatalf("after shrink: %+v", st)
	}
	if st := statusOf(sts, "wide"); st.Used != 1 {
		t.Fatalf("wide after SetPools: %+v", st)
	}
	checkInvariants(t, a)
}

func TestSetPoolsIgnoresDuplicateNames(t *testing.T) {
	a := New()
	sts := a.SetPools([]Pool{mkPool(t, "a", "10.0.0.1"), mkPool(t, "a", "10.0.0.2")}, nil)
	if len(sts) != 1 || sts[0].Total.Int64() != 1 || sts[0].Conflict != "" {
		t.Fatalf("%+v", sts)
	}
	if r := a.Assign(mkSvc("ns/s")); r.Assigned[0].Addr != ip("10.0.0.1") {
		t.Fatalf("%s", describe(r))
	}
}

func TestConflictMessageNamesNodeWithStrings(t *testing.T) {
	a := New()
	sts := a.SetPools([]Pool{mkPool(t, "lb", "192.168.10.200-192.168.10.220")},
		[]NodeAddress{{Node: "cp1", Addr: netip.MustParseAddr("192.168.10.215")}})
	if sts[0].Conflict != ConflictNodeAddress || !strings.Contains(sts[0].ConflictMessage, "192.168.10.215 of node cp1") {
		t.Fatalf("%+v", sts[0])
	}
	if r := a.Assign(mkSvc("ns/s")); r.Reason != NoPool || !strings.Contains(r.Message, `pool "lb" is in conflict (NodeAddress)`) {
		t.Fatalf("%s", describe(r))
	}
}
