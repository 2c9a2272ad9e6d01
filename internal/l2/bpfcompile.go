package l2

import (
	"container/heap"
	"math"
	"math/bits"

	"golang.org/x/net/bpf"
)

// This file compiles an owned set into the body of a classic BPF filter: a
// binary search over the sorted owned addresses, laid out so that it fits
// cBPF's limits (at most 4096 instructions, forward jumps only, 8-bit
// conditional jump offsets), and made coarser step by step, with a bounded
// number of false positives, when the exact search does not fit.
//
// The key is one 32-bit word of the address (the whole IPv4 address, or one
// of the four words of an IPv6 address), in the A register. A level is the
// sorted list of disjoint segments of one word; between and around them every
// key is dropped. Each segment is one of
//
//   - accept: every key in [lo, hi] passes (a run of owned addresses, or one
//     made coarser);
//   - bits: exactly the owned keys listed pass: tested with one jeq each, or,
//     when denser, as 32-bit masks (see below);
//   - sub (IPv6, words 0–2): lo == hi; the next word decides, through the
//     next level.
//
// A balanced binary search (jge on the segments' first keys) finds the only
// segment that can hold the key, then the segment's own test runs. The cost
// of a level is (segments−1) compares plus the segments' own instructions,
// so the exact program for n owned addresses costs about 2 instructions per
// owned address when they are scattered, a few per run when they are
// contiguous, and, with the bitmap test, about 17 per 256 addresses of the
// pool in between (rendezvous placement gives a node a scattered third of a
// pool: about 0.2 instructions per owned address).
//
// Bitmap test: before the search, the program computes onehot = 1 <<
// (key & 31) and stores it in scratch slot slotBits+j, where j is bits 5… of
// the key modulo k, zeroing the other k−1 slots. A bits segment lies in one
// aligned group of 32·k keys, so "key is owned" is "slot j holds a bit of
// mask j" for the group's masks: a load and a jset per non-empty 32-key
// block, the search having already checked that the key is in the group.
//
// Returns (ret accept, and the drop action: ret 0 or a jump to the next
// check) are shared: a jump reuses the nearest one within 255 instructions
// and a new one is placed only when none is; a compare whose other branch is
// farther than 255 instructions goes through a ja (32-bit offset). The
// program is emitted back to front, so every jump target is already placed
// when its jump is emitted.
//
// Coarser programs: when the exact program does not fit its budget, steps
// that save instructions are applied cheapest first, by non-owned addresses
// let through per instruction saved: a bits segment becomes an accept range
// over its owned keys, two neighbouring accept ranges merge across the gap
// between them, and (IPv6) a sub segment stops looking at the lower words.
// Each step's false positives are counted exactly, so the program knows how
// many non-owned addresses it lets through. Addresses outside the ranges
// are always dropped.

const (
	// Scratch memory slots. slotKey holds the IPv4 key; IPv6 words 1–3 are
	// in slots 1–3 (word 0 stays in A); the k bitmap slots follow.
	slotKey  = 0
	slotBits = 4
	// maxBitmapSlots is the largest k: 8 slots, groups of 256 keys.
	maxBitmapSlots = 8
	// jumpReach is the longest conditional jump.
	jumpReach = 255
)

type segKind uint8

const (
	segAccept segKind = iota
	segBits
	segSub
)

type segment struct {
	lo, hi uint32
	kind   segKind
	vals   []uint32 // segBits: the owned keys, sorted
	blocks int      // segBits: distinct 32-key blocks among vals
	sub    *level   // segSub
	count  float64  // owned addresses under the segment
	// first and last are the lowest and highest owned keys in the segment.
	first, last uint32

	lvl        *level
	prev, next *segment
	dead       bool
	// own is the queued step that changes s alone (stepAccept or
	// stepDropSub), merge the one that merges s with its successor.
	own, merge *step
}

type level struct {
	word   int     // 0–3; IPv4 uses 3
	scale  float64 // addresses per key at this level: 2^(32·(3−word))
	first  *segment
	n      int      // segments
	own    int      // (n−1) + Σ ownCost: this level's instructions
	cost   int      // own + the cost of the levels below
	parent *segment // the sub segment leading here; nil for the root
}

// ownedTree is one filter's search: the levels, the bitmap width and the
// false positives let through so far.
type ownedTree struct {
	root    *level
	k       int // bitmap slots; 0: no bitmap tests
	bitmaps int // bits segments tested as bitmaps
	fp      float64
	// v6 says the keys are IPv6 (the prologue loads four words).
	v6 bool
}

// groupShift is log2 of the group size for k bitmap slots (k = 0 still
// groups keys, by 256, to bound jeq chains).
func groupShift(k int) uint {
	if k == 0 {
		return 8
	}
	return 5 + uint(bits.TrailingZeros(uint(k)))
}

// minAcceptRun is the shortest run of consecutive owned keys made an accept
// segment instead of bits: a range costs about two compares, a bitmap two
// instructions per 32 keys, a jeq chain one per key.
func minAcceptRun(k int) int {
	if k == 0 {
		return 4
	}
	return 48
}

// buildLevel builds the exact segments of one level from sorted, distinct
// keys. For words 0–2 of IPv6, keys are grouped by their word and the next
// words form sub-levels.
func (t *ownedTree) buildLevel(keys [][4]uint32, word int, parent *segment) *level {
	l := &level{word: word, scale: math.Ldexp(1, 32*(3-word)), parent: parent}
	var segs []*segment
	if word < 3 {
		for i := 0; i < len(keys); {
			j := i + 1
			for j < len(keys) && keys[j][word] == keys[i][word] {
				j++
			}
			v := keys[i][word]
			s := &segment{lo: v, hi: v, kind: segSub, count: float64(j - i), first: v, last: v}
			s.sub = t.buildLevel(keys[i:j], word+1, s)
			segs = append(segs, s)
			i = j
		}
	} else {
		vals := make([]uint32, len(keys))
		for i, k := range keys {
			vals[i] = k[3]
		}
		segs = t.buildLast(vals)
	}
	l.link(segs)
	return l
}

// buildLast builds the segments of the last word from sorted distinct keys.
// Segments' vals are sub-slices of vals.
func (t *ownedTree) buildLast(vals []uint32) []*segment {
	shift := groupShift(t.k)
	minRun := minAcceptRun(t.k)
	slab := make([]segment, 0, 16)
	alloc := func(s segment) *segment {
		if len(slab) == cap(slab) {
			slab = make([]segment, 0, 2*cap(slab))
		}
		slab = append(slab, s)
		return &slab[len(slab)-1]
	}
	var segs []*segment
	var cur *segment // the bits segment being filled
	start := 0       // cur's first index in vals
	closeCur := func(end int) {
		if cur != nil {
			cur.vals = vals[start:end:end]
			segs = append(segs, cur)
			cur = nil
		}
	}
	for i := 0; i < len(vals); {
		j := i + 1
		for j < len(vals) && vals[j] == vals[j-1]+1 {
			j++
		}
		if j-i >= minRun {
			if cur != nil {
				cur.hi = min(cur.hi, vals[i]-1)
			}
			closeCur(i)
			segs = append(segs, alloc(segment{lo: vals[i], hi: vals[j-1], kind: segAccept,
				count: float64(j - i), first: vals[i], last: vals[j-1]}))
			i = j
			continue
		}
		for ; i < j; i++ {
			v := vals[i]
			g := v >> shift
			if cur != nil && cur.lo>>shift != g {
				closeCur(i)
			}
			if cur == nil {
				lo := g << shift
				if n := len(segs); n > 0 && segs[n-1].hi >= lo {
					lo = segs[n-1].hi + 1
				}
				cur = alloc(segment{lo: lo, hi: g<<shift | (1<<shift - 1), kind: segBits, first: v})
				start = i
			}
			if i == start || vals[i-1]>>5 != v>>5 {
				cur.blocks++
			}
			cur.count++
			cur.last = v
		}
	}
	closeCur(len(vals))
	return segs
}

// link chains segs into l and computes the level's cost (not its parents').
func (l *level) link(segs []*segment) {
	l.n = len(segs)
	var prev *segment
	for _, s := range segs {
		s.lvl = l
		s.prev = prev
		if prev != nil {
			prev.next = s
		} else {
			l.first = s
		}
		prev = s
	}
}

// finish computes the costs of every level bottom up, after building.
func (t *ownedTree) finish(l *level) int {
	l.own = l.n - 1
	l.cost = 0
	for s := l.first; s != nil; s = s.next {
		if s.kind == segBits && t.isBitmap(s) {
			t.bitmaps++
		}
		l.own += t.ownCost(s)
		if s.kind == segSub {
			l.cost += t.finish(s.sub)
		}
	}
	l.cost += l.own
	return l.cost
}

func (t *ownedTree) isBitmap(s *segment) bool {
	return t.k > 0 && 2*s.blocks < len(s.vals)
}

// ownCost is the number of instructions segment s needs in its level's
// search, besides the compares that lead to it.
func (t *ownedTree) ownCost(s *segment) int {
	switch s.kind {
	case segSub:
		return 2 // jeq, ld next word
	case segAccept:
		if s.lo == s.hi {
			return 1 // jeq
		}
		return t.boundChecks(s)
	default:
		if !t.isBitmap(s) {
			return len(s.vals)
		}
		return 2*s.blocks + t.boundChecks(s)
	}
}

// boundChecks is how many of a segment's bounds the search does not imply.
func (t *ownedTree) boundChecks(s *segment) int {
	n := 0
	if s.prev == nil && s.lo != 0 {
		n++
	}
	if s.next == nil {
		if s.hi != math.MaxUint32 {
			n++
		}
	} else if s.next.lo != s.hi+1 {
		n++
	}
	return n
}

// prologueCost is the number of instructions of the bitmap prologue.
func prologueCost(k int, v6 bool) int {
	c := 0
	switch {
	case k == 1:
		c = 7
	case k > 1:
		c = 5*k + 9
	}
	if v6 && c > 0 {
		c-- // the IPv6 key is already in its slot
	}
	return c
}

// cost is the estimated number of instructions of the tree and its
// prologue (without the key loads and the shared returns).
func (t *ownedTree) cost() int {
	c := t.root.cost
	if t.bitmaps > 0 {
		c += prologueCost(t.k, t.v6)
	}
	return c
}

// newTree builds the exact tree for sorted distinct keys.
func newTree(keys [][4]uint32, v6 bool, k int) *ownedTree {
	t := &ownedTree{k: k, v6: v6}
	w := 3
	if v6 {
		w = 0
	}
	t.root = t.buildLevel(keys, w, nil)
	t.finish(t.root)
	return t
}

// clone returns a deep copy of t (sharing the read-only vals).
func (t *ownedTree) clone() *ownedTree {
	c := *t
	c.root = cloneLevel(t.root, nil)
	return &c
}

func cloneLevel(l *level, parent *segment) *level {
	c := *l
	c.parent = parent
	c.first = nil
	var prev *segment
	for s := l.first; s != nil; s = s.next {
		x := *s
		x.lvl, x.prev, x.next, x.own, x.merge = &c, prev, nil, nil, nil
		if s.sub != nil {
			x.sub = cloneLevel(s.sub, &x)
		}
		if prev == nil {
			c.first = &x
		} else {
			prev.next = &x
		}
		prev = &x
	}
	return &c
}

// Coarsening.

type stepKind uint8

const (
	stepAccept  stepKind = iota // a bits segment becomes an accept range
	stepMerge                   // an accept segment merges with the next one
	stepDropSub                 // a sub segment stops looking at lower words
)

type step struct {
	kind  stepKind
	s     *segment
	lo    uint32 // s.lo when priced: the tie-break
	fp    float64
	saved int
	ratio float64
	index int // in the heap; -1 when not queued
}

type stepHeap []*step

func (h stepHeap) Len() int { return len(h) }
func (h stepHeap) Less(i, j int) bool {
	if h[i].ratio != h[j].ratio {
		return h[i].ratio < h[j].ratio
	}
	return h[i].lo < h[j].lo
}
func (h stepHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *stepHeap) Push(x any) {
	st := x.(*step)
	st.index = len(*h)
	*h = append(*h, st)
}
func (h *stepHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	x.index = -1
	*h = old[:len(old)-1]
	return x
}

// coarsener applies the cheapest steps until a tree fits its budget. Each
// segment has at most two steps queued, kept up to date as its
// neighbourhood changes.
type coarsener struct {
	t *ownedTree
	h stepHeap
}

func newCoarsener(t *ownedTree) *coarsener {
	c := &coarsener{t: t}
	var walk func(l *level)
	walk = func(l *level) {
		for s := l.first; s != nil; s = s.next {
			if c.ownStep(s, &s.own) {
				c.h.Push(s.own)
			}
			if c.mergeStep(s, &s.merge) {
				c.h.Push(s.merge)
			}
			if s.kind == segSub {
				walk(s.sub)
			}
		}
	}
	walk(t.root)
	heap.Init(&c.h)
	return c
}

// ownStep prices the step that changes s alone into *slot (allocating it
// if nil) and reports whether there is one; *slot is left alone if not.
func (c *coarsener) ownStep(s *segment, slot **step) bool {
	var kind stepKind
	var fp float64
	switch {
	case s.kind == segBits && len(s.vals) > 1:
		kind, fp = stepAccept, (float64(s.last-s.first)+1-s.count)*s.lvl.scale
	case s.kind == segSub:
		kind, fp = stepDropSub, s.lvl.scale-s.count
	default:
		return false
	}
	c.fill(s, slot, kind, fp)
	return true
}

// mergeStep is ownStep for the step that merges s with its successor.
func (c *coarsener) mergeStep(s *segment, slot **step) bool {
	n := s.next
	if n == nil || s.kind == segSub || n.kind == segSub {
		return false
	}
	lo, hi := mergedBounds(s, n)
	fp := (float64(hi-lo) + 1 - covered(s) - covered(n)) * s.lvl.scale
	c.fill(s, slot, stepMerge, fp)
	return true
}

func (c *coarsener) fill(s *segment, slot **step, kind stepKind, fp float64) {
	st := *slot
	if st == nil {
		st = &step{index: -1}
		*slot = st
	}
	st.kind, st.s, st.lo, st.fp = kind, s, s.lo, fp
	st.saved = c.saving(st)
	st.ratio = priceOf(st.fp, st.saved)
}

// refresh re-prices the steps of s after its neighbourhood changed.
func (c *coarsener) refresh(s *segment) {
	if s == nil || s.dead {
		return
	}
	c.requeue(&s.own, c.ownStep(s, &s.own))
	c.requeue(&s.merge, c.mergeStep(s, &s.merge))
}

// requeue puts the step in *slot in its place in the heap, or takes it out
// if it no longer exists.
func (c *coarsener) requeue(slot **step, exists bool) {
	st := *slot
	switch {
	case st == nil:
	case !exists:
		if st.index >= 0 {
			heap.Remove(&c.h, st.index)
		}
		*slot = nil
	case st.index >= 0:
		heap.Fix(&c.h, st.index)
	default:
		heap.Push(&c.h, st)
	}
}

// covered is the number of keys of its level that s lets through.
func covered(s *segment) float64 {
	if s.kind == segAccept {
		return float64(s.hi-s.lo) + 1
	}
	return s.count
}

// mergedBounds are the bounds of the accept range that replaces s and its
// successor n: their owned keys and the gap between them.
func mergedBounds(s, n *segment) (lo, hi uint32) {
	lo, hi = s.first, n.last
	if s.kind == segAccept {
		lo = s.lo
	}
	if n.kind == segAccept {
		hi = n.hi
	}
	return lo, hi
}

func priceOf(fp float64, saved int) float64 {
	if saved <= 0 {
		return math.Inf(1)
	}
	return fp / float64(saved)
}

// ownOf is ownCost, 0 for nil.
func (t *ownedTree) ownOf(s *segment) int {
	if s == nil {
		return 0
	}
	return t.ownCost(s)
}

// change describes what a step does to the segment list, so that its
// saving can be computed by doing and undoing it.
type change struct {
	s                 *segment
	kind              segKind
	lo, hi, first     uint32
	last              uint32
	next              *segment
	nextPrev          *segment // s.next.next.prev before a merge
	vals              []uint32
	blocks            int
	sub               *level
	count             float64
	bitmapsBefore     int
	removedCompare    int
	removedLevelCost  int
	neighbourhoodCost int
}

// do applies st's effect on the segment list and returns what is needed to
// undo it. It does not touch costs, the heap or the false positives.
func (c *coarsener) do(st *step) change {
	s := st.s
	t := c.t
	ch := change{s: s, kind: s.kind, lo: s.lo, hi: s.hi, first: s.first, last: s.last,
		next: s.next, vals: s.vals, blocks: s.blocks, sub: s.sub, count: s.count, bitmapsBefore: t.bitmaps}
	switch st.kind {
	case stepAccept:
		ch.neighbourhoodCost = t.ownOf(s.prev) + t.ownCost(s) + t.ownOf(s.next)
		if t.isBitmap(s) {
			t.bitmaps--
		}
		s.kind, s.lo, s.hi, s.vals, s.blocks = segAccept, s.first, s.last, nil, 0
	case stepDropSub:
		ch.neighbourhoodCost = t.ownCost(s)
		ch.removedLevelCost = s.sub.cost
		t.bitmaps -= countBitmaps(t, s.sub)
		s.kind, s.sub = segAccept, nil
	case stepMerge:
		n := s.next
		ch.neighbourhoodCost = t.ownOf(s.prev) + t.ownCost(s) + t.ownCost(n) + t.ownOf(n.next)
		ch.removedCompare = 1
		for _, x := range []*segment{s, n} {
			if x.kind == segBits && t.isBitmap(x) {
				t.bitmaps--
			}
		}
		lo, hi := mergedBounds(s, n)
		s.kind, s.lo, s.hi, s.last, s.vals, s.blocks = segAccept, lo, hi, n.last, nil, 0
		s.first = min(s.first, lo)
		s.count += n.count
		s.next = n.next
		if n.next != nil {
			ch.nextPrev = n.next.prev
			n.next.prev = s
		}
	}
	return ch
}

// afterCost is the own cost of the neighbourhood of a changed segment.
func (c *coarsener) afterCost(st *step) int {
	s := st.s
	if st.kind == stepDropSub {
		return c.t.ownCost(s)
	}
	return c.t.ownOf(s.prev) + c.t.ownCost(s) + c.t.ownOf(s.next)
}

func (c *coarsener) undo(ch change) {
	s := ch.s
	if ch.next != nil && s.next != ch.next {
		// A merge: relink the removed successor.
		if ch.next.next != nil {
			ch.next.next.prev = ch.nextPrev
		}
	}
	s.kind, s.lo, s.hi, s.first, s.last = ch.kind, ch.lo, ch.hi, ch.first, ch.last
	s.next, s.vals, s.blocks, s.sub, s.count = ch.next, ch.vals, ch.blocks, ch.sub, ch.count
	c.t.bitmaps = ch.bitmapsBefore
}

// delta is the change in the tree's total cost (prologue included) that
// applying ch's step made, given the neighbourhood cost after it.
func (c *coarsener) delta(ch change, after int) int {
	d := after - ch.neighbourhoodCost - ch.removedCompare - ch.removedLevelCost
	pro := prologueCost(c.t.k, c.t.v6)
	if ch.bitmapsBefore > 0 && c.t.bitmaps == 0 {
		d -= pro
	}
	return d
}

// saving is how many instructions a step saves now.
func (c *coarsener) saving(st *step) int {
	ch := c.do(st)
	d := c.delta(ch, c.afterCost(st))
	c.undo(ch)
	return -d
}

// addCost adds d instructions to l's own cost and to the cost of l and
// every level above it.
func addCost(l *level, own, d int) {
	l.own += own
	for ; l != nil; l = parentLevel(l) {
		l.cost += d
	}
}

func parentLevel(l *level) *level {
	if l.parent == nil {
		return nil
	}
	return l.parent.lvl
}

// shrink applies steps until the tree's cost is at most budget or no step
// is left. It reports whether the budget was met.
func (c *coarsener) shrink(budget int) bool {
	for c.t.cost() > budget {
		if len(c.h) == 0 {
			return false
		}
		st := c.h[0]
		if st.s.dead {
			heap.Pop(&c.h)
			continue
		}
		if saved := c.saving(st); saved != st.saved {
			// A change the refreshes did not see: re-price it.
			st.saved, st.ratio = saved, priceOf(st.fp, saved)
			heap.Fix(&c.h, 0)
			continue
		}
		if math.IsInf(st.ratio, 1) {
			return false // no step left that saves anything
		}
		heap.Pop(&c.h)
		c.apply(st)
	}
	return true
}

func (c *coarsener) apply(st *step) {
	s := st.s
	l := s.lvl
	var removed *segment
	if st.kind == stepMerge {
		removed = s.next
	}
	ch := c.do(st)
	d := c.delta(ch, c.afterCost(st))
	// The prologue is not part of any level.
	pro := 0
	if ch.bitmapsBefore > 0 && c.t.bitmaps == 0 {
		pro = -prologueCost(c.t.k, c.t.v6)
	}
	levelDelta := d - pro
	addCost(l, levelDelta+ch.removedLevelCost, levelDelta)
	if removed != nil {
		removed.dead = true
		l.n--
		for _, x := range []*step{removed.own, removed.merge} {
			if x != nil && x.index >= 0 {
				heap.Remove(&c.h, x.index)
			}
		}
	}
	if ch.sub != nil && s.sub == nil {
		markDead(ch.sub) // their steps leave the heap lazily
	}
	c.t.fp += st.fp
	// st itself is out of the heap: forget it before refreshing.
	if s.own == st {
		s.own = nil
	}
	if s.merge == st {
		s.merge = nil
	}
	if s.prev != nil {
		c.refresh(s.prev.prev)
		c.refresh(s.prev)
	}
	c.refresh(s)
	c.refresh(s.next)
}

// markDead marks the segments of a level and the levels below it as gone.
func markDead(l *level) {
	for s := l.first; s != nil; s = s.next {
		s.dead = true
		if s.sub != nil {
			markDead(s.sub)
		}
	}
}

func countBitmaps(t *ownedTree, l *level) int {
	n := 0
	for s := l.first; s != nil; s = s.next {
		switch {
		case s.kind == segBits && t.isBitmap(s):
			n++
		case s.kind == segSub:
			n += countBitmaps(t, s.sub)
		}
	}
	return n
}

// Code generation, back to front.

type targetKind uint8

const (
	toPos targetKind = iota
	toAccept
	toDrop
)

// target is where a jump goes: an emitted instruction, or the accept or
// drop action (a shared instruction within reach, placed on demand).
type target struct {
	kind targetKind
	pos  int // toPos: index in emitter.rev
}

var (
	tAccept = target{kind: toAccept}
	tDrop   = target{kind: toDrop}
)

func at(pos int) target { return target{pos: pos} }

// emitter builds a program back to front: rev[0] is its last instruction.
// All jumps go forward, so their targets are placed before them here and
// their offsets are known when they are emitted.
type emitter struct {
	rev []bpf.Instruction
	// acc and drop are the indices of the nearest accept and drop
	// instructions, -1 if none.
	acc, drop int
	// dropTo is where the drop action jumps (the next check's entry), or
	// -1 when it is ret 0.
	dropTo int
}

func newEmitter() *emitter {
	e := &emitter{rev: make([]bpf.Instruction, 0, maxFilterInstructions+64), acc: -1, drop: -1, dropTo: -1}
	// The last instruction must be a return.
	e.drop = e.emit(bpf.RetConstant{Val: 0})
	return e
}

func (e *emitter) next() int { return len(e.rev) }

func (e *emitter) emit(ins bpf.Instruction) int {
	e.rev = append(e.rev, ins)
	return len(e.rev) - 1
}

// reaches reports whether an instruction emitted now can jump to index q.
func (e *emitter) reaches(q int) bool { return e.next()-q-1 <= jumpReach }

// setDrop makes the drop action a jump to pos (or ret 0 when pos < 0).
func (e *emitter) setDrop(pos int) {
	e.dropTo, e.drop = pos, -1
}

func (e *emitter) dropInsn() bpf.Instruction {
	if e.dropTo < 0 {
		return bpf.RetConstant{Val: 0}
	}
	return bpf.Jump{Skip: uint32(e.next() - e.dropTo - 1)}
}

// resolve returns an index a jump emitted now can reach that leads to t,
// emitting a shared return or a ja when needed.
func (e *emitter) resolve(t target) int {
	switch t.kind {
	case toAccept:
		if e.acc < 0 || !e.reaches(e.acc) {
			e.acc = e.emit(bpf.RetConstant{Val: bpfAccept})
		}
		return e.acc
	case toDrop:
		if e.drop < 0 || !e.reaches(e.drop) {
			e.drop = e.emit(e.dropInsn())
		}
		return e.drop
	default:
		if !e.reaches(t.pos) {
			return e.emit(bpf.Jump{Skip: uint32(e.next() - t.pos - 1)})
		}
		return t.pos
	}
}

// cond emits "if A <test> val goto yes else goto no" and returns its index.
func (e *emitter) cond(test bpf.JumpTest, val uint32, yes, no target) int {
	qy := e.resolve(yes)
	qn := e.resolve(no)
	if !e.reaches(qy) {
		// Placing no's instruction pushed yes out of reach.
		if yes.kind == toPos {
			yes = at(qy)
		}
		qy = e.resolve(yes)
	}
	p := e.next()
	return e.emit(bpf.JumpIf{Cond: test, Val: val, SkipTrue: uint8(p - qy - 1), SkipFalse: uint8(p - qn - 1)})
}

// fallTo makes sure the next instruction emitted falls through to t.
func (e *emitter) fallTo(t target) {
	switch t.kind {
	case toAccept:
		e.acc = e.emit(bpf.RetConstant{Val: bpfAccept})
	case toDrop:
		e.drop = e.emit(e.dropInsn())
	default:
		if t.pos != e.next()-1 {
			e.emit(bpf.Jump{Skip: uint32(e.next() - t.pos - 1)})
		}
	}
}

// program returns the instructions in program order.
func (e *emitter) program() []bpf.Instruction {
	out := make([]bpf.Instruction, len(e.rev))
	for i, ins := range e.rev {
		out[len(out)-1-i] = ins
	}
	return out
}

// genTree emits the search of t (the key already in A for the root level,
// the prologue done) and returns its entry.
func (e *emitter) genTree(t *ownedTree) target {
	return e.genLevel(t, t.root)
}

func (e *emitter) genLevel(t *ownedTree, l *level) target {
	segs := make([]*segment, 0, l.n)
	for s := l.first; s != nil; s = s.next {
		segs = append(segs, s)
	}
	return e.genSearch(t, segs)
}

func (e *emitter) genSearch(t *ownedTree, segs []*segment) target {
	if len(segs) == 1 {
		return e.genSegment(t, segs[0])
	}
	mid := len(segs) / 2
	right := e.genSearch(t, segs[mid:])
	left := e.genSearch(t, segs[:mid])
	return at(e.cond(bpf.JumpGreaterOrEqual, segs[mid].lo, right, left))
}

func (e *emitter) genSegment(t *ownedTree, s *segment) target {
	var body target
	switch s.kind {
	case segSub:
		sub := e.genLevel(t, s.sub)
		e.fallTo(sub)
		ld := e.emit(bpf.LoadScratch{Dst: bpf.RegA, N: s.lvl.word + 1})
		return at(e.cond(bpf.JumpEqual, s.lo, at(ld), tDrop))
	case segAccept:
		if s.lo == s.hi {
			return at(e.cond(bpf.JumpEqual, s.lo, tAccept, tDrop))
		}
		body = tAccept
	default:
		if !t.isBitmap(s) {
			next := tDrop
			for i := len(s.vals) - 1; i >= 0; i-- {
				next = at(e.cond(bpf.JumpEqual, s.vals[i], tAccept, next))
			}
			return next
		}
		next := tDrop
		blocks := blockMasks(s.vals)
		for i := len(blocks) - 1; i >= 0; i-- {
			b := blocks[i]
			e.cond(bpf.JumpBitsSet, b.mask, tAccept, next)
			slot := slotBits + int(b.block)&(t.k-1)
			next = at(e.emit(bpf.LoadScratch{Dst: bpf.RegA, N: slot}))
		}
		body = next
	}
	// Bound checks the search does not imply. The key is still in A.
	if s.next == nil && s.hi != math.MaxUint32 || s.next != nil && s.next.lo != s.hi+1 {
		body = at(e.cond(bpf.JumpGreaterThan, s.hi, tDrop, body))
	}
	if s.prev == nil && s.lo != 0 {
		body = at(e.cond(bpf.JumpGreaterOrEqual, s.lo, body, tDrop))
	}
	return body
}

type blockMask struct {
	block uint32 // key >> 5
	mask  uint32
}

func blockMasks(vals []uint32) []blockMask {
	var out []blockMask
	for _, v := range vals {
		b := v >> 5
		if len(out) == 0 || out[len(out)-1].block != b {
			out = append(out, blockMask{block: b})
		}
		out[len(out)-1].mask |= 1 << (v & 31)
	}
	return out
}

// genBitmapPrologue emits, before entry, the bitmap prologue on the key in
// A: it stores onehot = 1 << (key & 31) in the bitmap slot of the key's
// block and zero in the others, then runs reload (if not nil) to put the
// search's key back in A. keySlot is the scratch slot that holds the key;
// storeKey says whether the prologue stores it there first. It returns the
// prologue's entry.
func (e *emitter) genBitmapPrologue(t *ownedTree, entry target, keySlot int, storeKey bool, reload bpf.Instruction) target {
	e.fallTo(entry)
	var end int
	if reload != nil {
		end = e.emit(reload)
	} else {
		end = e.next() - 1
	}
	k := t.k
	// Program order:
	//   [st M[key]]; and #31; tax; ld #1; lsh x        A = onehot
	//   k == 1: st M[bits]
	//   k > 1:  tax; ld #0; st M[bits+0..k-1]; ld M[key]; rsh #5; and #k-1
	//           jeq #0 → L0; … jeq #k-2 → L(k-2) else L(k-1)
	//           Lj: txa; st M[bits+j]; ja end          (L0 falls through)
	//   end: reload
	if k == 1 {
		e.emit(bpf.StoreScratch{Src: bpf.RegA, N: slotBits})
	} else {
		labels := make([]int, k)
		e.emit(bpf.StoreScratch{Src: bpf.RegA, N: slotBits})
		labels[0] = e.emit(bpf.TXA{})
		for j := 1; j < k; j++ {
			e.emit(bpf.Jump{Skip: uint32(e.next() - end - 1)})
			e.emit(bpf.StoreScratch{Src: bpf.RegA, N: slotBits + j})
			labels[j] = e.emit(bpf.TXA{})
		}
		next := at(labels[k-1])
		for j := k - 2; j >= 0; j-- {
			next = at(e.cond(bpf.JumpEqual, uint32(j), at(labels[j]), next))
		}
		e.fallTo(next)
		e.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: uint32(k - 1)})
		e.emit(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 5})
		e.emit(bpf.LoadScratch{Dst: bpf.RegA, N: keySlot})
		for j := k - 1; j >= 0; j-- {
			e.emit(bpf.StoreScratch{Src: bpf.RegA, N: slotBits + j})
		}
		e.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: 0})
		e.emit(bpf.TAX{})
	}
	e.emit(bpf.ALUOpX{Op: bpf.ALUOpShiftLeft})
	e.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: 1})
	e.emit(bpf.TAX{})
	p := e.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 31})
	if storeKey {
		p = e.emit(bpf.StoreScratch{Src: bpf.RegA, N: keySlot})
	}
	return at(p)
}
