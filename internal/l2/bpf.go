package l2

import (
	"encoding/binary"
	"fmt"
	"net/netip"

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
	// maxFilterInstructions is the kernel's BPF_MAXINSNS. A longer program is
	// refused by SO_ATTACH_FILTER, so above it (about 1000 IPv4 or 450 IPv6
	// addresses per interface) we fall back to the coarse filter and let Go
	// do the per-address filtering. The kernel also charges the program
	// against net.core.optmem_max (128 KiB on current kernels, 20 KiB on
	// old ones); if it refuses an exact program for that reason the
	// Responder falls back to the coarse one as well.
	maxFilterInstructions = 4096
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

// arpFilter returns the filter for the ETH_P_ARP socket. It passes
//   - ARP requests whose target IP is owned (someone resolving our address,
//     a probe for it, or a gratuitous request for it from another host),
//   - ARP requests and replies whose sender IP is owned (another host claims
//     our address: conflict detection),
//
// and drops everything else. exact is false when the owned set is too large
// for BPF_MAXINSNS and the coarse "every ARP request and reply" filter is
// returned instead; the Go side checks ownership of every frame anyway.
func arpFilter(owned []netip.Addr) (prog []bpf.Instruction, exact bool) {
	var v4 []uint32
	for _, a := range owned {
		if a.Is4() {
			b := a.As4()
			v4 = append(v4, binary.BigEndian.Uint32(b[:]))
		}
	}
	prog = pktTypeGuard()
	if len(v4) == 0 {
		return append(prog, bpf.RetConstant{Val: 0}), true
	}
	head := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeARP, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.LoadAbsolute{Off: offARPOp, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipFalse: 1},
	}
	// 2 instructions per address in each of the two chains, plus the head,
	// the jumps, the two loads and the final drop: about 1000 addresses fit.
	exactLen := len(prog) + len(head) + 6 + 4*len(v4)
	if exactLen > maxFilterInstructions {
		return arpCoarseFilter(), false
	}
	prog = append(prog, head...)
	// Conditional jumps have 8-bit offsets, so a reply jumps over the
	// target chain with an unconditional ja (32-bit offset).
	targetChain := 1 + 2*len(v4)
	prog = append(prog,
		bpf.Jump{Skip: uint32(2 + targetChain)}, // op == 2: to the sender chain
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 1},
		bpf.RetConstant{Val: 0}, // neither request nor reply
	)
	// Each address test is "jeq addr → next instruction (accept), else skip
	// it": every jump is short no matter how many addresses there are.
	prog = append(prog, bpf.LoadAbsolute{Off: offARPTarget, Size: 4})
	for _, a := range v4 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: a, SkipFalse: 1},
			bpf.RetConstant{Val: bpfAccept},
		)
	}
	prog = append(prog, bpf.LoadAbsolute{Off: offARPSender, Size: 4})
	for _, a := range v4 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: a, SkipFalse: 1},
			bpf.RetConstant{Val: bpfAccept},
		)
	}
	prog = append(prog, bpf.RetConstant{Val: 0})
	return prog, true
}

// ndpFilter returns the filter for the ETH_P_IPV6 socket. It passes ICMPv6
// Neighbor Solicitations whose target is owned (resolution, unreachability
// detection, another host's DAD) and Neighbor Advertisements whose target is
// owned (another host claims it: conflict detection); all other IPv6 traffic
// is dropped in the kernel. IPv6 packets with extension headers are dropped
// too: Neighbor Discovery does not use them. exact is false when the coarse
// "every NS and NA" filter was returned because the owned set is too large.
func ndpFilter(owned []netip.Addr) (prog []bpf.Instruction, exact bool) {
	var v6 [][4]uint32
	for _, a := range owned {
		if a.Is6() && !a.Is4In6() {
			b := a.As16()
			v6 = append(v6, [4]uint32{
				binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8]),
				binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint32(b[12:16]),
			})
		}
	}
	if len(v6) == 0 {
		return append(pktTypeGuard(), bpf.RetConstant{Val: 0}), true
	}
	prog = ndpHead()
	// The target is loaded once into scratch memory: an absolute load is
	// expanded to several eBPF instructions by the kernel, and the kernel
	// charges the expanded program against net.core.optmem_max, so 4 loads
	// per address made a 400-address filter too big to attach. The last
	// word stays in A: addresses of one pool share their prefix, so the
	// last word tells them apart at the first compare, and a mismatch there
	// costs one instruction per address.
	prog = append(prog,
		bpf.LoadAbsolute{Off: offNDTarget, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: 0},
		bpf.LoadAbsolute{Off: offNDTarget + 4, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: 1},
		bpf.LoadAbsolute{Off: offNDTarget + 8, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: 2},
		bpf.LoadAbsolute{Off: offNDTarget + 12, Size: 4}, bpf.StoreScratch{Src: bpf.RegA, N: 3},
	)
	// 9 instructions per address plus the final drop: about 450 addresses
	// fit in BPF_MAXINSNS.
	if len(prog)+9*len(v6)+1 > maxFilterInstructions {
		return ndpCoarseFilter(), false
	}
	for _, w := range v6 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: w[3], SkipFalse: 8}, // A intact: next address
			bpf.LoadScratch{Dst: bpf.RegA, N: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: w[2], SkipFalse: 5},
			bpf.LoadScratch{Dst: bpf.RegA, N: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: w[1], SkipFalse: 3},
			bpf.LoadScratch{Dst: bpf.RegA, N: 0},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: w[0], SkipFalse: 1},
			bpf.RetConstant{Val: bpfAccept},
			bpf.LoadScratch{Dst: bpf.RegA, N: 3}, // restore the last word for the next address
		)
	}
	return append(prog, bpf.RetConstant{Val: 0}), true
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
