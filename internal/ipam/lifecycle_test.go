package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// mustAssign assigns and checks the addresses and that nothing else moved.
func mustAssign(t *testing.T, a *Allocator, svc Service, want ...string) Result {
	t.Helper()
	r := a.Assign(svc)
	if r.Reason != Allocated || !slices.Equal(addrsOf(r.Assigned), want) {
		t.Fatalf("Assign(%s) = %s; want %v", svc.Key, describe(r), want)
	}
	checkInvariants(t, a)
	return r
}

func TestAssignIsIdempotent(t *testing.T) {
	a := New()
	a.SetPools([]Pool{
		mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "v6", "2001:db8::/64"),
		disabled(mkPool(t, "off", "10.0.9.0/24")),
	}, nil)
	svcs := []Service{
		mkSvc("ns/plain"),
		mkSvc("ns/req", req("10.0.0.100")),
		mkSvc("ns/dual", dual(RequireDualStack)),
		mkSvc("ns/pref", dual(PreferDualStack)),
		mkSvc("ns/sh1", share("k"), ports(80)),
		mkSvc("ns/sh2", share("k"), ports(443)),
		mkSvc("ns/v6", fams(IPv6)),
		mkSvc("ns/nopool", pin("off")),
		mkSvc("ns/inuse", req("10.0.0.100")),
	}
	first := map[string]Result{}
	for _, s := range svcs {
		first[s.Key] = a.Assign(s)
	}
	before := a.PoolStatuses()
	for round := range 3 {
		for _, s := range svcs {
			r := a.Assign(s)
			f := first[s.Key]
			// The message of round 0 may differ from the first call
			// (a later sharer joined), but not between later rounds.
			if r.Reason != f.Reason || !reflect.DeepEqual(r.Assigned, f.Assigned) || len(r.Released) != 0 || (round > 0 && r.Message != f.Message) {
				t.Fatalf("round %d %s: %s; before %s", round, s.Key, describe(r), describe(f))
			}
			first[s.Key] = r
		}
	}
	if !reflect.DeepEqual(before, a.PoolStatuses()) {
		t.Fatalf("counts changed: %+v -> %+v", before, a.PoolStatuses())
	}
	checkInvariants(t, a)
}

func TestDeterminism(t *testing.T) {
	run := func() []string {
		a := New()
		a.SetPools([]Pool{
			mkPool(t, "b", "10.0.1.0/28"), mkPool(t, "a", "10.0.0.0/29", "10.0.0.64/30"),
			mkPool(t, "v6", "2001:db8::/120"),
		}, nil)
		rng := rand.New(rand.NewPCG(1, 2))
		var log []string
		for i := range 400 {
			key := fmt.Sprintf("ns%d/s%d", rng.IntN(3), rng.IntN(30))
			if rng.IntN(4) == 0 {
				log = append(log, fmt.Sprint(a.Release(key)))
				continue
			}
			mods := []func(*Service){}
			switch rng.IntN(5) {
			case 0:
				mods = append(mods, dual(PreferDualStack))
			case 1:
				mods = append(mods, share("k", "*"), ports(int32(rng.IntN(4))))
			case 2:
				mods = append(mods, pin("b"))
			case 3:
				mods = append(mods, req(fmt.Sprintf("10.0.1.%d", 1+rng.IntN(14))))
			}
			r := a.Assign(mkSvc(key, mods...))
			log = append(log, fmt.Sprintf("%d %s", i, describe(r)))
		}
		return log
	}
	x, y := run(), run()
	if !slices.Equal(x, y) {
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("runs differ at %d:\n%s\n%s", i, x[i], y[i])
			}
		}
	}
}

func TestPoolGrowKeepsAddresses(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "lb", "192.168.10.75-192.168.10.76")}, nil)
	mustAssign(t, a, mkSvc("ns/a"), "192.168.10.75")
	mustAssign(t, a, mkSvc("ns/b"), "192.168.10.76")
	if r := a.Assign(mkSvc("ns/c")); r.Reason != OutOfIPs {
		t.Fatalf("%s", describe(r))
	}
	a.SetPools([]Pool{mkPool(t, "lb", "192.168.10.70-192.168.10.78")}, nil)
	if r := mustAssign(t, a, mkSvc("ns/a"), "192.168.10.75"); len(r.Released) != 0 {
		t.Fatalf("grow released: %s", describe(r))
	}
	mustAssign(t, a, mkSvc("ns/b"), "192.168.10.76")
	mustAssign(t, a, mkSvc("ns/c"), "192.168.10.70") // lowest free of the grown pool
}

func TestPoolShrinkMovesToAnotherPool(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.1-10.0.0.3"), mkPool(t, "b", "10.0.1.0/24")}, nil)
	for i := 1; i <= 3; i++ {
		mustAssign(t, a, mkSvc(fmt.Sprintf("ns/s%d", i)), fmt.Sprintf("10.0.0.%d", i))
	}
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.1"), mkPool(t, "b", "10.0.1.0/24")}, nil)
	// SetPools alone releases nothing.
	if got := addrsOf(a.Lookup("ns/s2")); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Fatalf("SetPools released by itself: %v", got)
	}
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	r := mustAssign(t, a, mkSvc("ns/s2"), "10.0.1.1")
	if !slices.Equal(addrsOf(r.Released), []string{"10.0.0.2"}) ||
		!strings.Contains(r.Message, "released 10.0.0.2 (10.0.0.2 is no longer available to this Service: no LoadBalancerIPPool contains it)") {
		t.Fatalf("%s", describe(r))
	}
	if r.Assigned[0].Pool != "b" {
		t.Fatalf("pool %q", r.Assigned[0].Pool)
	}
	mustAssign(t, a, mkSvc("ns/s3"), "10.0.1.2")
}

func TestPoolDeletedWithoutReplacement(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	a.SetPools(nil, nil)
	r := a.Assign(mkSvc("ns/s1"))
	if r.Reason != NoPool || len(r.Assigned) != 0 || !slices.Equal(addrsOf(r.Released), []string{"10.0.0.1"}) {
		t.Fatalf("%s", describe(r))
	}
	if a.Lookup("ns/s1") != nil || a.Holders(ip("10.0.0.1")) != nil {
		t.Fatal("still held")
	}
	checkInvariants(t, a)
}

func TestSelectorChangeMoves(t *testing.T) {
	a := New()
	a.SetPools([]Pool{withSelector(mkPool(t, "a", "10.0.0.0/24"), map[string]string{"team": "x"}), mkPool(t, "b", "10.0.1.0/24")}, nil)
	s := mkSvc("ns/s1", label("team", "x"))
	mustAssign(t, a, s, "10.0.0.1")
	a.SetPools([]Pool{withSelector(mkPool(t, "a", "10.0.0.0/24"), map[string]string{"team": "y"}), mkPool(t, "b", "10.0.1.0/24")}, nil)
	r := mustAssign(t, a, s, "10.0.1.1")
	if !strings.Contains(r.Message, `pool "a" does not select this Service`) {
		t.Fatalf("%s", describe(r))
	}
	// The Service's labels change instead: same effect.
	a.SetPools([]Pool{withSelector(mkPool(t, "a", "10.0.0.0/24"), map[string]string{"team": "x"})}, nil)
	mustAssign(t, a, s, "10.0.0.1")
	r = a.Assign(mkSvc("ns/s1", label("team", "z")))
	if r.Reason != NoPool || len(r.Released) != 1 {
		t.Fatalf("%s", describe(r))
	}
}

func TestPinChangeMoves(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "b", "10.0.1.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	mustAssign(t, a, mkSvc("ns/s1", pin("b")), "10.0.1.1")
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.1.1") // unpinned: any pool keeps it
}

func TestDisabledPoolKeepsExisting(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "b", "10.0.1.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	mustAssign(t, a, mkSvc("ns/req", req("10.0.0.50")), "10.0.0.50")
	mustAssign(t, a, mkSvc("ns/pinned", pin("a")), "10.0.0.2")
	a.SetPools([]Pool{disabled(mkPool(t, "a", "10.0.0.0/24")), mkPool(t, "b", "10.0.1.0/24")}, nil)
	if r := mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1"); r.Assigned[0].Pool != "a" {
		t.Fatalf("%s", describe(r))
	}
	mustAssign(t, a, mkSvc("ns/req", req("10.0.0.50")), "10.0.0.50")
	mustAssign(t, a, mkSvc("ns/pinned", pin("a")), "10.0.0.2")
	mustAssign(t, a, mkSvc("ns/new"), "10.0.1.1")
	if r := a.Assign(mkSvc("ns/new2", req("10.0.0.60"))); r.Reason != RequestedIPNotInPool || !strings.Contains(r.Message, `pool "a" is disabled`) {
		t.Fatalf("%s", describe(r))
	}
	if r := a.Assign(mkSvc("ns/new3", pin("a"))); r.Reason != NoPool || r.Message != `pool "a" is disabled` {
		t.Fatalf("%s", describe(r))
	}
	if st := statusOf(a.PoolStatuses(), "a"); st.Used != 3 {
		t.Fatalf("disabled pool counts: %+v", st)
	}
	// Released addresses of a disabled pool are not handed out again.
	a.Release("ns/s1")
	if r := a.Assign(mkSvc("ns/s1")); addrsOf(r.Assigned)[0] != "10.0.1.2" {
		t.Fatalf("%s", describe(r))
	}
}

func TestNodeAddressConflictMoves(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "b", "10.0.1.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "b", "10.0.1.0/24")},
		[]NodeAddress{{Node: "cp1", Addr: ip("10.0.0.200")}})
	r := mustAssign(t, a, mkSvc("ns/s1"), "10.0.1.1")
	if !strings.Contains(r.Message, `pool "a" is in conflict (NodeAddress: contains the address 10.0.0.200 of node cp1)`) {
		t.Fatalf("%s", describe(r))
	}
	// Heals: the node address goes, the pool hands out again.
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "b", "10.0.1.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s2"), "10.0.0.1")
}

func TestOlderPoolKeepsAddressesWhenNewerOverlaps(t *testing.T) {
	a := New()
	a.SetPools([]Pool{created(mkPool(t, "z", "10.0.0.0/24"), 0)}, nil)
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	a.SetPools([]Pool{created(mkPool(t, "z", "10.0.0.0/24"), 0), created(mkPool(t, "a", "10.0.0.0/25"), 100)}, nil)
	if r := mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1"); r.Assigned[0].Pool != "z" || len(r.Released) != 0 {
		t.Fatalf("%s", describe(r))
	}
	if r := mustAssign(t, a, mkSvc("ns/s2"), "10.0.0.2"); r.Assigned[0].Pool != "z" {
		t.Fatalf("%s", describe(r))
	}
}

func TestFamilyChanges(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "v6", "2001:db8::/64")}, nil)
	mustAssign(t, a, mkSvc("ns/s", dual(PreferDualStack)), "10.0.0.1", "2001:db8::1")
	r := mustAssign(t, a, mkSvc("ns/s", fams(IPv4, IPv6)), "10.0.0.1") // back to SingleStack
	if !slices.Equal(addrsOf(r.Released), []string{"2001:db8::1"}) || !strings.Contains(r.Message, "IPv6 is no longer wanted") {
		t.Fatalf("%s", describe(r))
	}
	mustAssign(t, a, mkSvc("ns/s", dual(RequireDualStack)), "10.0.0.1", "2001:db8::1")
	// v6 pool deleted: RequireDualStack gives up everything.
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	r = a.Assign(mkSvc("ns/s", dual(RequireDualStack)))
	if r.Reason != FamilyUnavailable || len(r.Assigned) != 0 || len(r.Released) != 2 || a.Lookup("ns/s") != nil {
		t.Fatalf("%s", describe(r))
	}
	// PreferDualStack keeps the v4 it can get.
	mustAssign(t, a, mkSvc("ns/s", dual(PreferDualStack)), "10.0.0.1")
}

func TestPreferDualStackKeepsDisabledFamily(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "v6", "2001:db8::/64")}, nil)
	mustAssign(t, a, mkSvc("ns/s", dual(PreferDualStack)), "10.0.0.1", "2001:db8::1")
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), disabled(mkPool(t, "v6", "2001:db8::/64"))}, nil)
	mustAssign(t, a, mkSvc("ns/s", dual(PreferDualStack)), "10.0.0.1", "2001:db8::1")
	mustAssign(t, a, mkSvc("ns/t", dual(PreferDualStack)), "10.0.0.2")
}

func TestRequestedChanges(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s"), "10.0.0.1")
	r := mustAssign(t, a, mkSvc("ns/s", req("10.0.0.5")), "10.0.0.5")
	if !slices.Equal(addrsOf(r.Released), []string{"10.0.0.1"}) || !strings.Contains(r.Message, "not the requested 10.0.0.5") {
		t.Fatalf("%s", describe(r))
	}
	// Dropping the request keeps the address.
	mustAssign(t, a, mkSvc("ns/s"), "10.0.0.5")
	// A request that cannot be met releases what is held.
	r = a.Assign(mkSvc("ns/s", req("10.9.9.9")))
	if r.Reason != RequestedIPNotInPool || !slices.Equal(addrsOf(r.Released), []string{"10.0.0.5"}) {
		t.Fatalf("%s", describe(r))
	}
	// The pending Service gets its address as soon as the cause goes.
	mustAssign(t, a, mkSvc("ns/t", req("10.0.0.7")), "10.0.0.7")
	if r := a.Assign(mkSvc("ns/s", req("10.0.0.7"))); r.Reason != RequestedIPInUse {
		t.Fatalf("%s", describe(r))
	}
	a.Release("ns/t")
	mustAssign(t, a, mkSvc("ns/s", req("10.0.0.7")), "10.0.0.7")
}

func TestExcludedMoves(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.1")
	mustAssign(t, a, mkSvc("ns/s2"), "10.0.0.2")
	mustAssign(t, a, mkSvc("ns/req", req("10.0.0.9")), "10.0.0.9")
	a.SetExcluded(map[netip.Addr]string{
		ip("10.0.0.1"): "answered by 02:42:ac:11:00:01 on eth0",
		ip("10.0.0.9"): "answered by 02:42:ac:11:00:09 on eth0",
		{}:             "ignored",
	})
	// SetExcluded alone releases nothing.
	if a.Lookup("ns/s1") == nil {
		t.Fatal("released by SetExcluded")
	}
	r := mustAssign(t, a, mkSvc("ns/s1"), "10.0.0.3")
	if !strings.Contains(r.Message, "released 10.0.0.1 (10.0.0.1 is in use by another host on the LAN (answered by 02:42:ac:11:00:01 on eth0))") {
		t.Fatalf("%s", describe(r))
	}
	r = a.Assign(mkSvc("ns/req", req("10.0.0.9")))
	if r.Reason != AddressConflict || !slices.Equal(addrsOf(r.Released), []string{"10.0.0.9"}) {
		t.Fatalf("%s", describe(r))
	}
	// The released excluded address is not free.
	mustAssign(t, a, mkSvc("ns/s3"), "10.0.0.4")
	// The conflict goes: the addresses are free again.
	a.SetExcluded(nil)
	mustAssign(t, a, mkSvc("ns/req", req("10.0.0.9")), "10.0.0.9")
	mustAssign(t, a, mkSvc("ns/s4"), "10.0.0.1")
	// Excluding an address and un-excluding it while held leaves it held.
	a.SetExcluded(map[netip.Addr]string{ip("10.0.0.4"): ""})
	a.SetExcluded(map[netip.Addr]string{})
	mustAssign(t, a, mkSvc("ns/s3"), "10.0.0.4")
}

// An address that was announced for a Service stays with it when another
// host is later found on it: only never-announced addresses move. Sharers
// of an announced address keep it too, fresh allocation still skips it,
// and adoption after a restart keeps it.
func TestExcludedAnnouncedStays(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/web", announced("10.0.0.1")), "10.0.0.1")
	mustAssign(t, a, mkSvc("ns/new"), "10.0.0.2")
	mustAssign(t, a, mkSvc("ns/req", req("10.0.0.9"), announced("10.0.0.9")), "10.0.0.9")
	a.SetExcluded(map[netip.Addr]string{
		ip("10.0.0.1"): "MAC 02:00:00:00:00:99 seen by node n1 on eth0",
		ip("10.0.0.2"): "MAC 02:00:00:00:00:98 seen by node n1 on eth0",
		ip("10.0.0.9"): "MAC 02:00:00:00:00:97 seen by node n1 on eth0",
	})
	// Announced: kept, whatever the exclusion says.
	if r := mustAssign(t, a, mkSvc("ns/web", announced("10.0.0.1")), "10.0.0.1"); len(r.Released) != 0 {
		t.Fatalf("released an announced address: %s", describe(r))
	}
	mustAssign(t, a, mkSvc("ns/req", req("10.0.0.9"), announced("10.0.0.9")), "10.0.0.9")
	// Never announced: moves, and the reason is said once.
	r := mustAssign(t, a, mkSvc("ns/new"), "10.0.0.3")
	want := "released 10.0.0.2 (10.0.0.2 is in use by another host on the LAN (MAC 02:00:00:00:00:98 seen by node n1 on eth0))"
	if !strings.Contains(r.Message, want) || strings.Count(r.Message, "in use by another host") != 1 {
		t.Fatalf("message %q, want it to contain %q once", r.Message, want)
	}
	// Fresh allocation skips excluded addresses, announced or not.
	mustAssign(t, a, mkSvc("ns/other"), "10.0.0.4")
	// A restart adopts the announced address although it is excluded.
	b := New()
	b.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	b.SetExcluded(map[netip.Addr]string{ip("10.0.0.1"): "x"})
	if got := b.Adopt(mkSvc("ns/web", announced("10.0.0.1")), []netip.Addr{ip("10.0.0.1")}); len(got) != 1 {
		t.Fatalf("adopt of an announced excluded address kept %v", got)
	}
	if got := b.Adopt(mkSvc("ns/new"), []netip.Addr{ip("10.0.0.1")}); len(got) != 0 {
		t.Fatalf("adopt gave an excluded address to a Service it was never announced for: %v", got)
	}
	checkInvariants(t, a)
}

func TestSharingChanges(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	mustAssign(t, a, mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1")
	// The sole holder changes its key: the address is re-filed under it.
	mustAssign(t, a, mkSvc("ns/s1", share("j"), ports(80)), "10.0.0.1")
	mustAssign(t, a, mkSvc("ns/s2", share("j"), ports(443)), "10.0.0.1")
	mustAssign(t, a, mkSvc("ns/s3", share("k"), ports(443)), "10.0.0.2")
	// A sharer starts using a port its co-holder uses: it moves, the other stays.
	r := mustAssign(t, a, mkSvc("ns/s2", share("j"), ports(80)), "10.0.0.3")
	if !strings.Contains(r.Message, "cannot share 10.0.0.1 with ns/s1: port 80 is used by ns/s1") {
		t.Fatalf("%s", describe(r))
	}
	if got := a.Holders(ip("10.0.0.1")); !slices.Equal(got, []string{"ns/s1"}) {
		t.Fatalf("holders %v", got)
	}
	// A sharer stops sharing while sharing: it moves.
	mustAssign(t, a, mkSvc("ns/s4", share("j"), ports(8080)), "10.0.0.1")
	r = mustAssign(t, a, mkSvc("ns/s4", ports(8080)), "10.0.0.4")
	if !strings.Contains(r.Message, "(this Service has no sharing key)") {
		t.Fatalf("%s", describe(r))
	}
	// Alone, it may stop sharing and keep its address.
	mustAssign(t, a, mkSvc("ns/s3", ports(443)), "10.0.0.2")
	mustAssign(t, a, mkSvc("ns/s5", share("k"), ports(1)), "10.0.0.5")
	// Release of one sharer leaves the address to the others.
	mustAssign(t, a, mkSvc("ns/s6", share("j"), ports(443)), "10.0.0.1")
	if got := a.Release("ns/s1"); !slices.Equal(addrsOf(got), []string{"10.0.0.1"}) {
		t.Fatalf("Release = %v", got)
	}
	if got := a.Holders(ip("10.0.0.1")); !slices.Equal(got, []string{"ns/s6"}) {
		t.Fatalf("holders %v", got)
	}
	checkInvariants(t, a)
}

func TestReleaseAndLookup(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24"), mkPool(t, "v6", "2001:db8::/64")}, nil)
	mustAssign(t, a, mkSvc("ns/s", dual(RequireDualStack)), "10.0.0.1", "2001:db8::1")
	got := a.Lookup("ns/s")
	want := []Assignment{{ip("10.0.0.1"), "a"}, {ip("2001:db8::1"), "v6"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Lookup = %v", got)
	}
	got[0].Pool = "scribbled"
	if a.Lookup("ns/s")[0].Pool != "a" {
		t.Fatal("Lookup returned internal state")
	}
	if h := a.Holders(ip("2001:db8::1")); !slices.Equal(h, []string{"ns/s"}) {
		t.Fatalf("Holders = %v", h)
	}
	if rel := a.Release("ns/s"); !reflect.DeepEqual(rel, want) {
		t.Fatalf("Release = %v", rel)
	}
	if a.Lookup("ns/s") != nil || a.Holders(ip("10.0.0.1")) != nil || a.Release("ns/s") != nil || a.Release("nope") != nil {
		t.Fatal("not released")
	}
	mustAssign(t, a, mkSvc("ns/t"), "10.0.0.1")
}

func TestZeroAllocator(t *testing.T) {
	var a Allocator
	if r := a.Assign(mkSvc("ns/s")); r.Reason != NoPool {
		t.Fatalf("%s", describe(r))
	}
	if a.Lookup("x") != nil || a.Holders(ip("10.0.0.1")) != nil || a.Release("x") != nil || len(a.PoolStatuses()) != 0 {
		t.Fatal("zero allocator not empty")
	}
	var b Allocator
	b.SetExcluded(map[netip.Addr]string{ip("10.0.0.1"): ""})
	b.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/24")}, nil)
	if r := b.Assign(mkSvc("ns/s")); r.Assigned[0].Addr != ip("10.0.0.2") {
		t.Fatalf("%s", describe(r))
	}
	var c Allocator
	if got := c.Adopt(mkSvc("ns/s"), []netip.Addr{ip("10.0.0.1")}); got != nil {
		t.Fatalf("adopted %v without pools", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	a := New()
	a.SetPools([]Pool{mkPool(t, "a", "10.0.0.0/20"), mkPool(t, "v6", "2001:db8::/64")}, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprintf("ns%d/s%d", g, i%20)
				switch i % 5 {
				case 0:
					a.Release(key)
				case 1:
					a.PoolStatuses()
					a.Holders(ip("10.0.0.1"))
				default:
					if r := a.Assign(mkSvc(key, dual(PreferDualStack), share("k", "*"), ports(int32(g*1000+i)))); r.Reason != Allocated {
						t.Errorf("%s", describe(r))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	checkInvariants(t, a)
}

// TestRandomOperations drives the allocator with random pool edits,
// exclusions and Service changes, checking every index after each step and
// that every successful assignment is valid for the Service.
func TestRandomOperations(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			randomOps(t, seed, 600)
		})
	}
}

func randomOps(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	a := New()
	poolSets := [][]Pool{
		{mkPool(t, "a", "10.0.0.1-10.0.0.6"), mkPool(t, "b", "10.0.0.4-10.0.0.12"), mkPool(t, "v6", "2001:db8::1-2001:db8::5")},
		{mkPool(t, "a", "10.0.0.1-10.0.0.3"), disabled(mkPool(t, "b", "10.0.0.7-10.0.0.12"))},
		{withSelector(mkPool(t, "a", "10.0.0.1-10.0.0.9"), map[string]string{"tier": "web"}), mkPool(t, "c", "10.0.0.10-10.0.0.14"), mkPool(t, "v6", "2001:db8::/125")},
		{},
	}
	a.SetPools(poolSets[0], nil)
	for i := range steps {
		key := fmt.Sprintf("ns%d/s%d", rng.IntN(2), rng.IntN(12))
		switch op := rng.IntN(20); {
		case op == 0:
			a.SetPools(poolSets[rng.IntN(len(poolSets))], []NodeAddress{{Node: "n", Addr: ip(fmt.Sprintf("10.0.0.%d", 1+rng.IntN(40)))}})
		case op == 1:
			a.SetExcluded(map[netip.Addr]string{ip(fmt.Sprintf("10.0.0.%d", 1+rng.IntN(14))): "x"})
		case op < 5:
			a.Release(key)
		case op == 5:
			var addrs []netip.Addr
			for range rng.IntN(3) {
				addrs = append(addrs, ip(fmt.Sprintf("10.0.0.%d", 1+rng.IntN(14))))
			}
			a.Adopt(randomSvc(rng, key), addrs)
		default:
			s := randomSvc(rng, key)
			r := a.Assign(s)
			if r.Reason == Allocated {
				checkValid(t, a, s, r)
			} else if len(r.Assigned) != 0 || a.Lookup(key) != nil {
				t.Fatalf("step %d: failed Assign holds: %s", i, describe(r))
			}
			if r2 := a.Assign(s); r2.Reason != r.Reason || !reflect.DeepEqual(r2.Assigned, r.Assigned) || len(r2.Released) != 0 {
				t.Fatalf("step %d: not idempotent: %s then %s", i, describe(r), describe(r2))
			}
		}
		checkInvariants(t, a)
	}
}

func randomSvc(rng *rand.Rand, key string) Service {
	var mods []func(*Service)
	if rng.IntN(3) == 0 {
		mods = append(mods, share([]string{"k", "j"}[rng.IntN(2)], []string{"*", "ns0", "ns1"}[rng.IntN(3)]), ports(int32(rng.IntN(3))))
	}
	if rng.IntN(4) == 0 {
		mods = append(mods, dual([]FamilyPolicy{PreferDualStack, RequireDualStack}[rng.IntN(2)]))
	}
	if rng.IntN(5) == 0 {
		mods = append(mods, req(fmt.Sprintf("10.0.0.%d", 1+rng.IntN(14))))
	}
	if rng.IntN(5) == 0 {
		mods = append(mods, pin([]string{"a", "b", "c"}[rng.IntN(3)]))
	}
	if rng.IntN(2) == 0 {
		mods = append(mods, label("tier", "web"))
	}
	if rng.IntN(6) == 0 {
		mods = append(mods, local(map[string]string{"app": []string{"x", "y"}[rng.IntN(2)]}))
	}
	return mkSvc(key, mods...)
}

// checkValid checks a successful assignment against the rules, from the
// outside: each address is in a usable pool for the Service, is requested
// when something is requested, is not excluded, and the families follow the
// policy.
func checkValid(t *testing.T, a *Allocator, s Service, r Result) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[Family]bool{}
	for _, as := range r.Assigned {
		f := FamilyOf(as.Addr)
		if seen[f] {
			t.Fatalf("%s: two %s addresses: %s", s.Key, f, describe(r))
		}
		seen[f] = true
		if _, ex := a.excluded[as.Addr]; ex {
			t.Fatalf("%s: excluded address: %s", s.Key, describe(r))
		}
		if len(s.Requested) > 0 && !slices.Contains(s.Requested, as.Addr) {
			t.Fatalf("%s: not requested: %s", s.Key, describe(r))
		}
		p := a.byName[as.Pool]
		if p == nil || !p.contains(as.Addr) || p.conflict != "" || (s.Pool != "" && s.Pool != p.name) ||
			(p.selector != nil && !p.selector.Matches(s.Labels)) {
			t.Fatalf("%s: address not valid in pool %q: %s", s.Key, as.Pool, describe(r))
		}
	}
	switch {
	case len(s.Requested) > 0:
		if len(r.Assigned) != len(s.Requested) {
			t.Fatalf("%s: requested %v got %s", s.Key, s.Requested, describe(r))
		}
	case s.Policy == RequireDualStack:
		if len(r.Assigned) != 2 {
			t.Fatalf("%s: RequireDualStack got %s", s.Key, describe(r))
		}
	case s.Policy == SingleStack:
		if len(r.Assigned) != 1 || FamilyOf(r.Assigned[0].Addr) != s.Families[0] {
			t.Fatalf("%s: SingleStack got %s", s.Key, describe(r))
		}
	}
}
