package placement

import (
	"math"
	"net/netip"
	"slices"
)

// Node is one live node's state on a segment, as its heartbeats tell it.
type Node struct {
	// Name is the node's name.
	Name string
	// Leaving reports that the node announced it is leaving.
	Leaving bool
	// Eligible are the IPs the node may announce on this segment.
	Eligible []netip.Addr
	// Claims are the IPs the node claims (answers, or is about to).
	Claims []netip.Addr
}

// Table is the full view of one segment: who is live, who is leaving, who
// is eligible for which IP and who claims what.
type Table struct {
	// Live are the nodes live on the segment (the viewer included).
	Live []string
	// Leaving are live nodes that announced they are leaving.
	Leaving []string
	// Eligible maps each IP to the nodes eligible for it. Nodes that are
	// not in Live are ignored, so the caller may pass eligibility from any
	// source without filtering it.
	Eligible map[netip.Addr][]string
	// Claims maps each node to the IPs it claims. Nodes that are not in
	// Live are ignored.
	Claims map[string][]netip.Addr
}

// TableFromNodes builds a Table from the states of the live nodes (the
// viewer's own included), which is the shape the membership layer reports.
func TableFromNodes(nodes []Node) Table {
	t := Table{
		Eligible: make(map[netip.Addr][]string),
		Claims:   make(map[string][]netip.Addr, len(nodes)),
	}
	for _, n := range nodes {
		t.Live = append(t.Live, n.Name)
		if n.Leaving {
			t.Leaving = append(t.Leaving, n.Name)
		}
		for _, a := range n.Eligible {
			t.Eligible[a] = append(t.Eligible[a], n.Name)
		}
		if len(n.Claims) > 0 {
			t.Claims[n.Name] = append(t.Claims[n.Name], n.Claims...)
		}
	}
	return t
}

// Evenness measures how evenly the owned IPs spread over the candidate
// nodes (live, not leaving, eligible for at least one IP).
type Evenness struct {
	// Nodes is the number of candidate nodes.
	Nodes int
	// IPs is the number of IPs that have an owner.
	IPs int
	// Mean is IPs / Nodes (0 when there are no nodes).
	Mean float64
	// Min and Max are the fewest and most IPs any candidate node owns.
	Min, Max int
	// MaxDeviation is max |load − Mean| / Mean over candidate nodes: 0 is
	// perfectly even, 0.2 means some node is 20% off the mean. It is 0 when
	// no IP has an owner.
	MaxDeviation float64
}

// addrView is the per-IP part of a View.
type addrView struct {
	eligible  []string
	claimants []string
}

// Assignment is the target placement of every IP of a Table.
type Assignment struct {
	// Owners maps every IP that has a candidate to its target owner.
	Owners map[netip.Addr]string
	// Orphans are IPs with no live eligible node that is not leaving,
	// sorted. Nobody should answer for them.
	Orphans []netip.Addr
	// Contested are IPs claimed by more than one candidate, sorted; the
	// claims resolve within one heartbeat interval.
	Contested []netip.Addr
	// Pending are IPs whose target owner does not claim them yet (a
	// take-over or hand-over in progress), sorted.
	Pending []netip.Addr
	// Load is the number of IPs each candidate node owns (0 included).
	Load map[string]int
	// Evenness summarises Load.
	Evenness Evenness

	leaving []string
	perAddr map[netip.Addr]addrView
}

// Assign computes the target owner of every IP in t (every key of
// t.Eligible and every claimed IP), and how evenly they spread. It costs
// one Score per (IP, live eligible node).
func Assign(t Table) Assignment {
	live := toSet(t.Live)
	leaving := make(map[string]struct{}, len(t.Leaving))
	for _, n := range t.Leaving {
		if _, ok := live[n]; ok {
			leaving[n] = struct{}{}
		}
	}

	a := Assignment{
		Owners:  make(map[netip.Addr]string, len(t.Eligible)),
		Load:    make(map[string]int),
		perAddr: make(map[netip.Addr]addrView, len(t.Eligible)),
	}
	for n := range leaving {
		a.leaving = append(a.leaving, n)
	}
	slices.Sort(a.leaving)

	// Per-IP claimants from the per-node claims, live nodes only, in node
	// order so that results do not depend on map iteration.
	claimers := make([]string, 0, len(t.Claims))
	for n := range t.Claims {
		if _, ok := live[n]; ok {
			claimers = append(claimers, n)
		}
	}
	slices.Sort(claimers)
	for _, n := range claimers {
		for _, ip := range t.Claims[n] {
			v := a.perAddr[ip]
			if !slices.Contains(v.claimants, n) {
				v.claimants = append(v.claimants, n)
			}
			a.perAddr[ip] = v
		}
	}
	for ip, nodes := range t.Eligible {
		v := a.perAddr[ip]
		for _, n := range nodes {
			if _, ok := live[n]; ok && !slices.Contains(v.eligible, n) {
				v.eligible = append(v.eligible, n)
			}
		}
		a.perAddr[ip] = v
	}

	for ip, v := range a.perAddr {
		var cands []string
		for _, n := range v.eligible {
			if _, l := leaving[n]; !l {
				cands = append(cands, n)
				if _, ok := a.Load[n]; !ok {
					a.Load[n] = 0 // candidates that own nothing count too
				}
			}
		}
		ranked := Rank(ip, cands)
		if len(ranked) == 0 {
			a.Orphans = append(a.Orphans, ip)
			continue
		}
		owner := ranked[0]
		a.Owners[ip] = owner
		a.Load[owner]++
		claims := 0
		for _, c := range v.claimants {
			if slices.Contains(cands, c) {
				claims++
			}
		}
		if claims > 1 {
			a.Contested = append(a.Contested, ip)
		}
		if !slices.Contains(v.claimants, owner) {
			a.Pending = append(a.Pending, ip)
		}
	}
	for _, s := range [][]netip.Addr{a.Orphans, a.Contested, a.Pending} {
		slices.SortFunc(s, netip.Addr.Compare)
	}
	a.Evenness = evenness(a.Load, len(a.Owners))
	return a
}

// evenness summarises a load map.
func evenness(load map[string]int, ips int) Evenness {
	e := Evenness{Nodes: len(load), IPs: ips}
	if e.Nodes == 0 {
		return e
	}
	e.Mean = float64(ips) / float64(e.Nodes)
	first := true
	for _, l := range load {
		if first || l < e.Min {
			e.Min = l
		}
		if first || l > e.Max {
			e.Max = l
		}
		first = false
		if e.Mean > 0 {
			e.MaxDeviation = math.Max(e.MaxDeviation, math.Abs(float64(l)-e.Mean)/e.Mean)
		}
	}
	return e
}

// View returns self's View of addr under the Table this Assignment was
// computed from. The caller fills in View.Settled, which only it knows,
// before calling Decide.
func (a Assignment) View(self string, addr netip.Addr) View {
	v := a.perAddr[addr]
	return View{
		Self:      self,
		Eligible:  slices.Clone(v.eligible),
		Claimants: slices.Clone(v.claimants),
		Leaving:   slices.Clone(a.leaving),
	}
}
