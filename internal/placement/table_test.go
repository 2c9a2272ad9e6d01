package placement

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// fullTable makes a Table where every node is live and eligible for every
// IP and nobody claims anything.
func fullTable(nodes []string, addrs []netip.Addr) Table {
	t := Table{Live: slices.Clone(nodes), Eligible: make(map[netip.Addr][]string, len(addrs))}
	for _, a := range addrs {
		t.Eligible[a] = slices.Clone(nodes)
	}
	return t
}

func TestAssignSpread(t *testing.T) {
	for _, c := range []struct {
		nodes, ips int
	}{
		{5, 1000},
		{3, 1000},
		{7, 1000},
		{2, 500},
	} {
		a := Assign(fullTable(names(c.nodes), ips(c.ips)))
		e := a.Evenness
		if e.Nodes != c.nodes || e.IPs != c.ips {
			t.Fatalf("%d nodes/%d IPs: evenness counts %+v", c.nodes, c.ips, e)
		}
		mean := float64(c.ips) / float64(c.nodes)
		for n, l := range a.Load {
			if float64(l) < 0.8*mean || float64(l) > 1.2*mean {
				t.Errorf("%d nodes/%d IPs: %s owns %d, outside ±20%% of %.0f", c.nodes, c.ips, n, l, mean)
			}
		}
		if e.MaxDeviation > 0.2 {
			t.Errorf("%d nodes/%d IPs: MaxDeviation %.3f > 0.2", c.nodes, c.ips, e.MaxDeviation)
		}
		t.Logf("%d nodes, %d IPs: min %d max %d mean %.1f maxdev %.3f", c.nodes, c.ips, e.Min, e.Max, e.Mean, e.MaxDeviation)
	}
}

func TestAssignDeterministic(t *testing.T) {
	nodes := names(5)
	addrs := ips(300)
	base := Assign(fullTable(nodes, addrs))
	r := rand.New(rand.NewPCG(5, 6))
	for range 10 {
		sh := slices.Clone(nodes)
		r.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		tb := fullTable(sh, addrs)
		for _, a := range addrs {
			e := tb.Eligible[a]
			r.Shuffle(len(e), func(i, j int) { e[i], e[j] = e[j], e[i] })
		}
		got := Assign(tb)
		if !reflect.DeepEqual(got.Owners, base.Owners) || !reflect.DeepEqual(got.Load, base.Load) {
			t.Fatal("Assign depends on input order")
		}
	}
	for _, a := range addrs {
		if base.Owners[a] != ownerOf(a, nodes) {
			t.Fatalf("owner of %s = %s, want %s", a, base.Owners[a], ownerOf(a, nodes))
		}
	}
}

// TestMinimalDisruption: when a node leaves (or dies), only its IPs move,
// and they spread over the others; when a node joins, IPs move only to it.
func TestMinimalDisruption(t *testing.T) {
	nodes := names(5)
	addrs := ips(1000)
	before := Assign(fullTable(nodes, addrs))

	t.Run("leaving", func(t *testing.T) {
		tb := fullTable(nodes, addrs)
		tb.Leaving = []string{"node3"}
		after := Assign(tb)
		checkOnlyMoved(t, before, after, "node3", "")
		if _, ok := after.Load["node3"]; ok {
			t.Error("a leaving node still counts as a candidate")
		}
	})
	t.Run("dead", func(t *testing.T) {
		tb := fullTable(nodes, addrs)
		tb.Live = slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == "node2" })
		after := Assign(tb)
		checkOnlyMoved(t, before, after, "node2", "")
	})
	t.Run("join", func(t *testing.T) {
		more := append(slices.Clone(nodes), "node6")
		after := Assign(fullTable(more, addrs))
		checkOnlyMoved(t, before, after, "", "node6")
		if l := after.Load["node6"]; l < 1000/6*8/10 || l > 1000/6*12/10 {
			t.Errorf("joining node got %d IPs, want about %d", l, 1000/6)
		}
	})
	t.Run("ineligible for one IP", func(t *testing.T) {
		tb := fullTable(nodes, addrs)
		ip := addrs[17]
		owner := before.Owners[ip]
		tb.Eligible[ip] = slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == owner })
		after := Assign(tb)
		moved := 0
		for _, a := range addrs {
			if before.Owners[a] != after.Owners[a] {
				moved++
				if a != ip {
					t.Errorf("%s moved although only %s changed", a, ip)
				}
			}
		}
		if moved != 1 {
			t.Errorf("%d IPs moved, want 1", moved)
		}
	})
}

// checkOnlyMoved asserts that every IP that changed owner was owned by gone
// (when gone != "") or is now owned by joined (when joined != "").
func checkOnlyMoved(t *testing.T, before, after Assignment, gone, joined string) {
	t.Helper()
	moved := 0
	for a, o := range before.Owners {
		n := after.Owners[a]
		if n == o {
			if o == gone {
				t.Errorf("%s still owned by departed %s", a, gone)
			}
			continue
		}
		moved++
		if gone != "" && o != gone {
			t.Errorf("%s moved from %s to %s, but only %s left", a, o, n, gone)
		}
		if joined != "" && n != joined {
			t.Errorf("%s moved from %s to %s, but only %s joined", a, o, n, joined)
		}
	}
	if gone != "" && moved != before.Load[gone] {
		t.Errorf("%d IPs moved, want the %d of %s", moved, before.Load[gone], gone)
	}
	if joined != "" && moved != after.Load[joined] {
		t.Errorf("%d IPs moved, want the %d now on %s", moved, after.Load[joined], joined)
	}
}

func TestAssignStates(t *testing.T) {
	a1 := netip.MustParseAddr("192.168.10.75")
	a2 := netip.MustParseAddr("192.168.10.76")
	a3 := netip.MustParseAddr("192.168.10.77")
	a4 := netip.MustParseAddr("2001:db8::4")
	tb := TableFromNodes([]Node{
		{Name: "a", Eligible: []netip.Addr{a1, a2}, Claims: []netip.Addr{a1, a2}},
		{Name: "b", Eligible: []netip.Addr{a1, a2}, Claims: []netip.Addr{a1}},
		{Name: "c", Leaving: true, Eligible: []netip.Addr{a3}, Claims: []netip.Addr{a3}},
		{Name: "d", Claims: []netip.Addr{a4}}, // claims without eligibility
	})
	// A dead node's claims and eligibility are ignored.
	tb.Claims["ghost"] = []netip.Addr{a2}
	tb.Eligible[a2] = append(tb.Eligible[a2], "ghost")
	got := Assign(tb)

	if !slices.Equal(got.Contested, []netip.Addr{a1}) {
		t.Errorf("Contested = %v, want [%s]", got.Contested, a1)
	}
	if !slices.Equal(got.Orphans, []netip.Addr{a3, a4}) {
		t.Errorf("Orphans = %v, want [%s %s]", got.Orphans, a3, a4)
	}
	if want := ownerOf(a2, []string{"a", "b"}); got.Owners[a2] != want {
		t.Errorf("owner of %s = %s, want %s", a2, got.Owners[a2], want)
	}
	var pending []netip.Addr
	for _, a := range []netip.Addr{a1, a2} {
		if o := got.Owners[a]; !slices.Contains(tb.Claims[o], a) {
			pending = append(pending, a)
		}
	}
	if !slices.Equal(got.Pending, pending) {
		t.Errorf("Pending = %v, want %v", got.Pending, pending)
	}
	if _, ok := got.Load["c"]; ok {
		t.Error("leaving node in Load")
	}
	if _, ok := got.Load["ghost"]; ok {
		t.Error("dead node in Load")
	}

	v := got.View("b", a2)
	if slices.Contains(v.Eligible, "ghost") || slices.Contains(v.Claimants, "ghost") {
		t.Errorf("View includes a dead node: %+v", v)
	}
	if !slices.Equal(v.Leaving, []string{"c"}) {
		t.Errorf("View.Leaving = %v", v.Leaving)
	}
	if empty := Assign(Table{}); empty.Evenness != (Evenness{}) || len(empty.Owners) != 0 {
		t.Errorf("empty table: %+v", empty)
	}
}
