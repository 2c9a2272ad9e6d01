package l2

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// The classic BPF filters here run in the kernel on every ARP or IPv6 frame
// the interface receives, before anything is copied to user space. Their job
// is to make an ARP or NS flood for addresses Herald does not own cost
// nothing in Go: only frames that mention an owned address pass.
//
// Frames on a raw AF_PACKET socket start at the Ethernet header. VLAN tags
// are not in the frame data on Linux (they are moved to skb metadata), so the
// offsets below are fixed; a tagged frame for a VLAN without its own device
// is marked PACKET_OTHERHOST by the kernel and dropped by the guard.

const (
	// bpfAccept is the snap length returned for accepted frames: far more
	// than any ARP/NDP frame, so nothing is truncated.
	bpfAccept = 0x40000
	// maxFilterInstructions is the kernel's BPF_MAXINSNS: a longer program
	// is refused by SO_ATTACH_FILTER. The filters are compiled to fit it,
	// coarser if need be. The kernel also charges the program (converted to
	// eBPF, about 8 bytes an instruction) against net.core.optmem_max (128
	// KiB on current kernels, 20 KiB on old ones), the old and the new
	// program together while it swaps them; if it refuses a program for
	// that reason the Responder tries again with half the instructions,
	// and ends with the coarse filter.
	maxFilterInstructions = 4096
	// maxFilterBytes bounds a program's charge against optmem_max (see
	// ebpfSize), so that the old and the new program fit the default 128
	// KiB together while they are swapped.
	maxFilterBytes = 60 << 10
	// packetOtherHost is PACKET_OTHERHOST: a frame not addressed to this
	// interface (seen in promiscuous mode, or tagged for a VLAN this host
	// does not have). The kernel's own ARP/NDP ignores those, and so do we.
	packetOtherHost = 3

	offEtherType  = 12
	offARPOp      = ethHeaderLen + 6
	offARPSender  = ethHeaderLen + 14
	offARPTarget  = ethHeaderLen + 24
	offIPv6Next   = ethHeaderLen + 6
	offICMPv6Type = ethHeaderLen + ipv6HeaderLen
	offNDTarget   = ethHeaderLen + ipv6HeaderLen + 8
)

// guardLen is the length of the packet-type guard that starts every filter.
// The x/net/bpf VM cannot run ancillary loads, so tests run the program from
// guardLen on.
const guardLen = 3

// pktTypeGuard drops frames that are not for this host (PACKET_OTHERHOST).
func pktTypeGuard() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packetOtherHost, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}
}

// filterInfo says what a compiled filter lets through.
type filterInfo struct {
	// owned is the number of owned addresses of the filter's family.
	owned int
	// instructions is the program's length.
	instructions int
	// exact: only frames that mention an owned address pass.
	exact bool
	// coarse: the catch-all filter (every ARP request and reply, or every
	// NS and NA).
	coarse bool
	// extraTargets is how many addresses not owned pass as an ARP or NS/NA
	// target; extraSenders as an ARP sender. 0 when exact.
	extraTargets, extraSenders float64
}

// arpHeadLen bounds the instructions of the ARP filter outside the two
// searches: the guard, the EtherType and opcode checks, the key loads and a
// few shared returns.
const arpHeadLen = 16

// ndpHeadLen is the same for the NDP filter: guard, NS/NA checks, the four
// target word loads.
const ndpHeadLen = 24

// arpFilter returns the filter for the ETH_P_ARP socket, at most budget
// instructions long. It passes
//   - ARP requests whose target IP is owned (someone resolving our address,
//     a probe for it, or a gratuitous request for it from another host),
//   - ARP requests and replies whose sender IP is owned (another host claims
//     our address: conflict detection),
//
// and drops everything else. The two tests are searches over the owned set
// (see bpfcompile.go). When the exact searches do not fit the budget, the
// sender search is made coarser first, down to a quarter of the budget,
// then the target search: info says how many non-owned addresses pass.
// The Go side checks ownership of every frame anyway.
func arpFilter(owned []netip.Addr, budget int) ([]bpf.Instruction, filterInfo) {
	var keys [][4]uint32
	for _, a := range owned {
		if a.Is4() {
			b := a.As4()
			keys = append(keys, [4]uint32{3: binary.BigEndian.Uint32(b[:])})
		}
	}
	keys = sortedKeys(keys)
	info := filterInfo{owned: len(keys)}
	if len(keys) == 0 {
		prog := append(pktTypeGuard(), bpf.RetConstant{Val: 0})
		info.instructions, info.exact = len(prog), true
		return prog, info
	}
	avail := budget - arpHeadLen
	target := bestTree(keys, false)
	sender := target // the searches only differ once one is made coarser
	c := target.cost()
	var tc, sc *coarsener
	if 2*c > avail {
		bt := min(c, max(avail-c, avail*3/4))
		dense := target
		if dense.k != maxBitmapSlots {
			dense = densestTree(keys, false)
		}
		if c > bt {
			target = dense
			tc = newCoarsener(target)
			tc.shrink(bt)
		}
		// The sender search starts from the target's (it needs no
		// more): a copy made coarser.
		sender = target.clone()
		if tc == nil {
			sender = dense.clone()
		}
		sc = newCoarsener(sender)
		sc.shrink(avail - target.cost())
	}
	for range 64 {
		prog := genARP(target, sender)
		over := overBudget(prog, budget)
		if over <= 0 {
			info.instructions = len(prog)
			info.extraTargets, info.extraSenders = target.fp, sender.fp
			info.exact = target.fp == 0 && sender.fp == 0
			return prog, info
		}
		// The shared returns and long jumps took more room than
		// estimated, or the kernel would charge too much memory for
		// it: make one search smaller by the overrun, the sender's
		// first (down to a quarter of the budget).
		if sc == nil {
			sender = densestTree(keys, false)
			sc = newCoarsener(sender)
		}
		if before := sender.cost(); before > avail/4 {
			sc.shrink(max(before-over, avail/4))
			if sender.cost() < before {
				continue
			}
		}
		if tc == nil {
			target = densestTree(keys, false)
			tc = newCoarsener(target)
		}
		tc.shrink(target.cost() - over)
	}
	prog := arpCoarseFilter()
	info.instructions, info.coarse = len(prog), true
	info.extraTargets, info.extraSenders = math.Inf(1), math.Inf(1)
	return prog, info
}

// genARP lays out the ARP filter: guard, head, the target search (whose
// misses go on to the sender search), the sender search.
func genARP(target, sender *ownedTree) []bpf.Instruction {
	e := newEmitter()
	entry := e.genTree(sender)
	if sender.bitmaps > 0 {
		entry = e.genBitmapPrologue(sender, entry, slotKey, true, bpf.LoadScratch{Dst: bpf.RegA, N: slotKey})
	}
	e.fallTo(entry)
	senderEntry := e.emit(bpf.LoadAbsolute{Off: offARPSender, Size: 4})

	e.setDrop(senderEntry)
	entry = e.genTree(target)
	if target.bitmaps > 0 {
		entry = e.genBitmapPrologue(target, entry, slotKey, true, bpf.LoadScratch{Dst: bpf.RegA, N: slotKey})
	}
	e.fallTo(entry)
	targetEntry := e.emit(bpf.LoadAbsolute{Off: offARPTarget, Size: 4})

	e.setDrop(-1)
	// Requests (op 1) try the target then the sender; replies (op 2) only
	// the sender; other opcodes are dropped.
	reply := e.cond(bpf.JumpEqual, 2, at(senderEntry), tDrop)
	e.cond(bpf.JumpEqual, 1, at(targetEntry), at(reply))
	op := e.emit(bpf.LoadAbsolute{Off: offARPOp, Size: 2})
	e.cond(bpf.JumpEqual, etherTypeARP, at(op), tDrop)
	e.emit(bpf.LoadAbsolute{Off: offEtherType, Size: 2})
	guard := pktTypeGuard()
	for i := len(guard) - 1; i >= 0; i-- {
		e.emit(guard[i])
	}
	return e.program()
}

// sortedKeys sorts keys and removes duplicates.
func sortedKeys(keys [][4]uint32) [][4]uint32 {
	compare := func(a, b [4]uint32) int {
		for i := range a {
			if a[i] != b[i] {
				return cmp.Compare(a[i], b[i])
			}
		}
		return 0
	}
	if !slices.IsSortedFunc(keys, compare) {
		slices.SortFunc(keys, compare)
	}
	return slices.Compact(keys)
}

// bitmapWidths are the bitmap widths tried for an exact search over a few
// keys: narrower bitmaps have a shorter prologue (fewer instructions run
// per frame). Above smallSet keys only the widest, densest one is built.
var bitmapWidths = []int{0, 1, 2, 4, maxBitmapSlots}

const smallSet = 1024

// bestTree returns the smallest exact search over keys.
func bestTree(keys [][4]uint32, v6 bool) *ownedTree {
	widths := bitmapWidths
	if len(keys) > smallSet {
		widths = widths[len(widths)-1:]
	}
	var best *ownedTree
	for _, k := range widths {
		t := newTree(keys, v6, k)
		if best == nil || t.cost() < best.cost() {
			best = t
		}
	}
	return best
}

// densestTree returns the exact search with the widest bitmaps, the
// starting point for a coarser one.
func densestTree(keys [][4]uint32, v6 bool) *ownedTree {
	return newTree(keys, v6, maxBitmapSlots)
}

// ndpFilter returns the filter for the ETH_P_IPV6 socket, at most budget
// instructions long. It passes ICMPv6 Neighbor Solicitations whose target
// is owned (resolution, unreachability detection, another host's DAD) and
// Neighbor Advertisements whose target is owned (another host claims it:
// conflict detection); all other IPv6 traffic is dropped in the kernel.
// IPv6 packets with extension headers are dropped too: Neighbor Discovery
// does not use them. The target test is a search over the owned set, one
// 32-bit word at a time (see bpfcompile.go), made coarser when the exact
// one does not fit: info says how many non-owned addresses pass.
func ndpFilter(owned []netip.Addr, budget int) ([]bpf.Instruction, filterInfo) {
	var keys [][4]uint32
	for _, a := range owned {
		if a.Is6() && !a.Is4In6() {
			b := a.As16()
			keys = append(keys, [4]uint32{
				binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8]),
				binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint32(b[12:16]),
			})
		}
	}
	keys = sortedKeys(keys)
	info := filterInfo{owned: len(keys)}
	if len(keys) == 0 {
		prog := append(pktTypeGuard(), bpf.RetConstant{Val: 0})
		info.instructions, info.exact = len(prog), true
		return prog, info
	}
	avail := budget - ndpHeadLen
	t := bestTree(keys, true)
	var c *coarsener
	if t.cost() > avail {
		t = densestTree(keys, true)
		c = newCoarsener(t)
		c.shrink(avail)
	}
	for range 64 {
		prog := genNDP(t)
		over := overBudget(prog, budget)
		if over <= 0 {
			info.instructions = len(prog)
			info.extraTargets = t.fp
			info.exact = t.fp == 0
			return prog, info
		}
		if c == nil {
			t = densestTree(keys, true)
			c = newCoarsener(t)
		}
		c.shrink(t.cost() - over)
	}
	prog := ndpCoarseFilter()
	info.instructions, info.coarse = len(prog), true
	info.extraTargets = math.Inf(1)
	return prog, info
}

// genNDP lays out the NDP filter: guard, NS/NA checks, the target's words
// into scratch slots 1–3 (word 0 in A), the search.
func genNDP(t *ownedTree) []bpf.Instruction {
	e := newEmitter()
	entry := e.genTree(t)
	e.fallTo(entry)
	entry = at(e.emit(bpf.LoadAbsolute{Off: offNDTarget, Size: 4}))
	if t.bitmaps > 0 {
		// On the last word, which the loads below leave in A.
		entry = e.genBitmapPrologue(t, entry, 3, false, nil)
	}
	e.fallTo(entry)
	for w := 3; w >= 1; w-- {
		e.emit(bpf.StoreScratch{Src: bpf.RegA, N: w})
		e.emit(bpf.LoadAbsolute{Off: offNDTarget + 4*uint32(w), Size: 4})
	}
	head := ndpHead()
	for i := len(head) - 1; i >= 0; i-- {
		e.emit(head[i])
	}
	return e.program()
}

// ndpHead is the guard plus the checks that the frame is an ICMPv6 NS or
// NA without extension headers.
func ndpHead() []bpf.Instruction {
	return append(pktTypeGuard(),
		bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv6, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.LoadAbsolute{Off: offIPv6Next, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoICMPv6, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.LoadAbsolute{Off: offICMPv6Type, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 135, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 136, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	)
}

// ndpCoarseFilter passes every ICMPv6 NS and NA; Go filters by target.
func ndpCoarseFilter() []bpf.Instruction {
	return append(ndpHead(), bpf.RetConstant{Val: bpfAccept})
}

// arpCoarseFilter passes every ARP request and reply; Go filters by
// address.
func arpCoarseFilter() []bpf.Instruction {
	return append(pktTypeGuard(),
		bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeARP, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.LoadAbsolute{Off: offARPOp, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: bpfAccept},
	)
}

// dropAllFilter is attached when a socket is opened, before bind(2), so no
// frame is queued before the first real filter is in place.
func dropAllFilter() ([]bpf.RawInstruction, error) {
	return assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
}

// assemble turns a program into kernel form.
func assemble(prog []bpf.Instruction) ([]bpf.RawInstruction, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble bpf filter: %w", err)
	}
	return raw, nil
}

// overBudget is by how many instructions prog must shrink to be at most
// budget instructions long and maxFilterBytes in the kernel; <= 0 if it fits.
func overBudget(prog []bpf.Instruction, budget int) int {
	over := len(prog) - budget
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return len(prog) // cannot happen: the emitter only makes valid jumps
	}
	if size := ebpfSize(raw); size > maxFilterBytes {
		// Each classic instruction is at least 8 bytes.
		over = max(over, (size-maxFilterBytes+7)/8)
	}
	if over <= 0 {
		return over
	}
	return over + 2
}

// ebpfSize estimates the bytes the kernel charges against the socket's
// net.core.optmem_max for a classic program: it converts it to eBPF
// (bpf_convert_filter) and charges 8 bytes per eBPF instruction plus the
// program header. A return is 2 eBPF instructions, an absolute load about
// 15, a conditional jump whose constant has the top bit set needs one more
// (the immediate is sign-extended), and so does one whose true and false
// branches both jump (two jumps), except jeq/jgt/jge with the true branch
// next, which are inverted.
func ebpfSize(raw []bpf.RawInstruction) int {
	const (
		classLD, classJMP, classRET = 0x00, 0x05, 0x06
		modeABS, modeIND            = 0x20, 0x40
		opJA, opJSET                = 0x00, 0x40
		header                      = 256 // struct bpf_prog and the conversion's prologue
	)
	n := 10
	for _, ins := range raw {
		switch ins.Op & 0x07 {
		case classRET:
			n += 2
		case classLD:
			switch ins.Op & 0xe0 {
			case modeABS, modeIND:
				n += 16
			default:
				n++
			}
		case classJMP:
			n++
			if ins.Op&0xf0 == opJA {
				break
			}
			if ins.Op&0x08 == 0 && int32(ins.K) < 0 {
				n++
			}
			if ins.Jf != 0 && (ins.Jt != 0 || ins.Op&0xf0 == opJSET) {
				n++
			}
		default:
			n++
		}
	}
	return header + 8*n
}
