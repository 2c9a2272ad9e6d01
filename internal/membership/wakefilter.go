package membership

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// The Member's two receive queues and why are described in the package
// documentation ("Receiving"). wakeFilter is the kernel filter that sorts
// frames into them.

// Fixed offsets the filter reads, from the start of the Ethernet frame.
const (
	wakeFlagsOff    = ethHeaderLen + 5
	wakeKeyCountOff = ethHeaderLen + keyCountOff
	wakeKeyIDsOff   = ethHeaderLen + keyCountOff + 1
	wakeFlags       = flagLeaving | flagChallenge | flagFull
	// acceptFrame is the filter's "keep the whole frame".
	acceptFrame = 0xFFFFFFFF
)

// wakeFilter assembles the socket filter of the wake socket (wake true:
// keep the frames that need the receiver at once) or of the beat socket
// (wake false: keep every other frame, the short ones included).
func wakeFilter(wake bool) ([]bpf.RawInstruction, error) {
	var onWake, onBeat uint32 = acceptFrame, 0
	if !wake {
		onWake, onBeat = 0, acceptFrame
	}
	const (
		beat = "beat"
		woke = "wake"
	)
	// Jumps are written by label and resolved below: cBPF jumps are
	// relative counts of instructions, easy to get wrong by hand.
	type step struct {
		ins             bpf.Instruction
		onTrue, onFalse string // a conditional jump's targets ("" = next)
		label           string
	}
	prog := []step{
		// Too short to hold the key count: not ours to judge.
		{ins: bpf.LoadExtension{Num: bpf.ExtLen}},
		{ins: bpf.JumpIf{Cond: bpf.JumpLessThan, Val: wakeKeyIDsOff}, onTrue: beat},
		{ins: bpf.LoadAbsolute{Off: wakeFlagsOff, Size: 1}},
		{ins: bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: wakeFlags}, onTrue: woke},
		// X = offset of the name length: key IDs start + 4 × key count.
		{ins: bpf.LoadAbsolute{Off: wakeKeyCountOff, Size: 1}},
		{ins: bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2}},
		{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: wakeKeyIDsOff}},
		{ins: bpf.TAX{}},
		{ins: bpf.LoadExtension{Num: bpf.ExtLen}},
		{ins: bpf.JumpIfX{Cond: bpf.JumpGreaterThan}, onFalse: beat},
		// X = offset of the echo count: after the name.
		{ins: bpf.LoadIndirect{Off: 0, Size: 1}},
		{ins: bpf.ALUOpX{Op: bpf.ALUOpAdd}},
		{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1}},
		{ins: bpf.TAX{}},
		{ins: bpf.LoadExtension{Num: bpf.ExtLen}},
		{ins: bpf.JumpIfX{Cond: bpf.JumpGreaterThan}, onFalse: beat},
		{ins: bpf.LoadIndirect{Off: 0, Size: 1}},
		{ins: bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0}, onTrue: woke},
		// No echoes: the request count is the next byte.
		{ins: bpf.TXA{}},
		{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1}},
		{ins: bpf.TAX{}},
		{ins: bpf.LoadExtension{Num: bpf.ExtLen}},
		{ins: bpf.JumpIfX{Cond: bpf.JumpGreaterThan}, onFalse: beat},
		{ins: bpf.LoadIndirect{Off: 0, Size: 1}},
		{ins: bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0}, onTrue: woke},
		{ins: bpf.RetConstant{Val: onBeat}, label: beat},
		{ins: bpf.RetConstant{Val: onWake}, label: woke},
	}
	at := map[string]int{}
	for i, s := range prog {
		if s.label != "" {
			at[s.label] = i
		}
	}
	skip := func(from int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := at[label]
		if !ok || to <= from || to-from-1 > 255 {
			return 0, fmt.Errorf("wake filter: bad jump from %d to %q", from, label)
		}
		return uint8(to - from - 1), nil
	}
	ins := make([]bpf.Instruction, len(prog))
	for i, s := range prog {
		t, err := skip(i, s.onTrue)
		if err != nil {
			return nil, err
		}
		f, err := skip(i, s.onFalse)
		if err != nil {
			return nil, err
		}
		switch j := s.ins.(type) {
		case bpf.JumpIf:
			j.SkipTrue, j.SkipFalse = t, f
			ins[i] = j
		case bpf.JumpIfX:
			j.SkipTrue, j.SkipFalse = t, f
			ins[i] = j
		default:
			ins[i] = s.ins
		}
	}
	raw, err := bpf.Assemble(ins)
	if err != nil {
		return nil, fmt.Errorf("wake filter: %w", err)
	}
	return raw, nil
}
