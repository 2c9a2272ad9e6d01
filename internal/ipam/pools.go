package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// poolState is a pool as the allocator keeps it: its blocks sorted, its
// union precomputed, its conflict and its usage counter.
type poolState struct {
	name     string
	selector Selector
	disabled bool
	// blocks are the pool's valid blocks, sorted by First. Outside a
	// conflict they are disjoint, so the first block with a free address
	// holds the pool's lowest free address.
	blocks []Block
	// merged is the union of blocks: sorted, disjoint, non-adjacent.
	merged []Block
	// offers says whether the pool has IPv4 (index 0) / IPv6 (index 1)
	// addresses.
	offers      [2]bool
	conflict    ConflictReason
	conflictMsg string
	total       *big.Int
	// used counts distinct held addresses inside merged; updated on every
	// first hold / last release of an address, recomputed by SetPools.
	used uint64
}

// famIdx maps a family to an index of poolState.offers.
func famIdx(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// contains reports whether a is in the pool (binary search of merged).
func (p *poolState) contains(a netip.Addr) bool {
	i := sort.Search(len(p.merged), func(i int) bool { return a.Less(p.merged[i].First) })
	return i > 0 && p.merged[i-1].Contains(a)
}

// status returns the pool's PoolStatus, with fresh big.Ints the caller
// may keep or modify.
func (p *poolState) status() PoolStatus {
	total := new(big.Int).Set(p.total)
	avail := new(big.Int).SetUint64(p.used)
	avail.Sub(total, avail)
	if avail.Sign() < 0 { // cannot happen; keep the status sane anyway
		avail.SetInt64(0)
	}
	return PoolStatus{
		Name:            p.name,
		Conflict:        p.conflict,
		ConflictMessage: p.conflictMsg,
		Total:           total,
		Used:            p.used,
		Available:       avail,
	}
}

// newer reports whether pool x is newer than pool y (Created, then Name).
func newer(x, y *Pool) bool {
	if !x.Created.Equal(y.Created) {
		return x.Created.After(y.Created)
	}
	return x.Name > y.Name
}

// conflictNote is one cause of a pool's conflict.
type conflictNote struct {
	reason ConflictReason
	msg    string
}

// buildPools turns the caller's pools into poolStates in name order and
// computes their conflicts. A later pool with an already seen name is
// ignored (Kubernetes names are unique; this only keeps the result
// deterministic for a confused caller). Invalid blocks are ignored.
func buildPools(pools []Pool, nodes []NodeAddress) []*poolState {
	seen := make(map[string]bool, len(pools))
	states := make([]*poolState, 0, len(pools))
	views := make(map[*poolState]*Pool, len(pools))
	for i := range pools {
		p := &pools[i]
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		st := &poolState{name: p.Name, selector: p.Selector, disabled: p.Disabled, total: new(big.Int)}
		for _, b := range p.Blocks {
			if b.valid() {
				st.blocks = append(st.blocks, b)
			}
		}
		slices.SortFunc(st.blocks, compareBlocks)
		st.merged = mergeBlocks(st.blocks)
		for _, b := range st.merged {
			st.offers[famIdx(b.Family())] = true
			st.total.Add(st.total, b.Size())
		}
		states = append(states, st)
		views[st] = p
	}
	sort.Slice(states, func(i, j int) bool { return states[i].name < states[j].name })

	notes := make(map[*poolState][]conflictNote)
	// 1. Blocks of one pool overlapping each other: the pool cannot say
	// which block an address belongs to, and its count would lie.
	for _, st := range states {
		if msg := selfOverlap(st.blocks); msg != "" {
			notes[st] = append(notes[st], conflictNote{ConflictOverlap, msg})
		}
	}
	// 2. A block containing a node's own address: announcing it would
	// steal the node's address on the LAN.
	ns := slices.Clone(nodes)
	for i := range ns {
		ns[i].Addr = ns[i].Addr.WithZone("").Unmap()
	}
	slices.SortFunc(ns, func(x, y NodeAddress) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return strings.Compare(x.Node, y.Node)
	})
	for _, st := range states {
		if msg := nodeOverlap(st, ns); msg != "" {
			notes[st] = append(notes[st], conflictNote{ConflictNodeAddress, msg})
		}
	}
	// 3. Pools overlapping each other: the newer one is marked, so the
	// older one keeps working and the newer heals when the overlap goes.
	for st, msg := range poolOverlaps(states, views) {
		notes[st] = append(notes[st], conflictNote{ConflictOverlap, msg})
	}
	for _, st := range states {
		ns := notes[st]
		if len(ns) == 0 {
			continue
		}
		st.conflict = ns[0].reason
		msgs := make([]string, len(ns))
		for i, n := range ns {
			msgs[i] = n.msg
		}
		st.conflictMsg = strings.Join(msgs, "; ")
	}
	return states
}

// selfOverlap describes the first overlap between sorted blocks, or "".
func selfOverlap(blocks []Block) string {
	if len(blocks) < 2 {
		return ""
	}
	widest := 0 // index of the block reaching furthest so far
	var first string
	n := 0
	for i := 1; i < len(blocks); i++ {
		if !blocks[widest].Last.Less(blocks[i].First) {
			if n == 0 {
				first = fmt.Sprintf("block %s overlaps block %s", blocks[widest], blocks[i])
			}
			n++
		}
		if blocks[widest].Last.Less(blocks[i].Last) {
			widest = i
		}
	}
	if n > 1 {
		first += fmt.Sprintf(" (and %d more overlaps)", n-1)
	}
	return first
}

// maxListed caps how many node addresses a conflict message lists.
const maxListed = 3

// nodeOverlap describes the node addresses inside st, or "".
func nodeOverlap(st *poolState, nodes []NodeAddress) string {
	var parts []string
	n := 0
	for _, na := range nodes {
		if !st.contains(na.Addr) {
			continue
		}
		if n < maxListed {
			parts = append(parts, fmt.Sprintf("%s of node %s", na.Addr, na.Node))
		}
		n++
	}
	if n == 0 {
		return ""
	}
	msg := "contains the address " + strings.Join(parts, ", ")
	if n > maxListed {
		msg += fmt.Sprintf(" and %d more node addresses", n-maxListed)
	}
	return msg
}

// poolOverlaps finds, for every pool that overlaps an older pool, a message
// naming each older pool and the first overlapping range. It sweeps all
// merged blocks in address order, so it costs O(B log B) plus the number
// of overlapping pairs, for B blocks in all.
func poolOverlaps(states []*poolState, views map[*poolState]*Pool) map[*poolState]string {
	type item struct {
		b  Block
		st *poolState
	}
	var items []item
	for _, st := range states {
		for _, b := range st.merged {
			items = append(items, item{b, st})
		}
	}
	slices.SortStableFunc(items, func(x, y item) int { return compareBlocks(x.b, y.b) })
	type hit struct {
		older string
		at    Block
	}
	hits := make(map[*poolState][]hit)
	recorded := make(map[[2]*poolState]bool)
	for i := range items {
		for j := i + 1; j < len(items) && !items[i].b.Last.Less(items[j].b.First); j++ {
			x, y := items[i], items[j]
			if x.st == y.st {
				continue
			}
			nw, old := x.st, y.st
			if newer(views[y.st], views[x.st]) {
				nw, old = y.st, x.st
			}
			if recorded[[2]*poolState{nw, old}] {
				continue
			}
			recorded[[2]*poolState{nw, old}] = true
			at := Block{First: y.b.First, Last: x.b.Last} // y starts later
			if y.b.Last.Less(at.Last) {
				at.Last = y.b.Last
			}
			hits[nw] = append(hits[nw], hit{old.name, at})
		}
	}
	out := make(map[*poolState]string, len(hits))
	for st, hs := range hits {
		sort.Slice(hs, func(i, j int) bool { return hs[i].older < hs[j].older })
		parts := make([]string, len(hs))
		for i, h := range hs {
			parts[i] = fmt.Sprintf("overlaps pool %q (older) at %s", h.older, h.at)
		}
		out[st] = strings.Join(parts, "; ")
	}
	return out
}
