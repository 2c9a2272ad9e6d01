package l2

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
)

// runFilter runs a generated program (minus the packet-type guard, which
// the x/net/bpf VM cannot execute) on a frame and reports whether it passed.
func runFilter(t testing.TB, prog []bpf.Instruction, frame []byte) bool {
	t.Helper()
	vm := newVM(t, prog)
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatalf("vm run: %v", err)
	}
	return n > 0
}

func newVM(t testing.TB, prog []bpf.Instruction) *bpf.VM {
	t.Helper()
	if len(prog) < guardLen {
		t.Fatalf("program of %d instructions has no guard", len(prog))
	}
	want := pktTypeGuard()
	for i := range guardLen {
		if prog[i] != want[i] {
			t.Fatalf("instruction %d is %v, want the guard's %v", i, prog[i], want[i])
		}
	}
	if len(prog) > maxFilterInstructions {
		t.Fatalf("program has %d instructions, kernel limit is %d", len(prog), maxFilterInstructions)
	}
	vm, err := bpf.NewVM(prog[guardLen:])
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return vm
}

func TestGuardJumpsToBody(t *testing.T) {
	// The guard's "not OTHERHOST" branch must land on the body's first
	// instruction: skipping exactly the drop.
	g := pktTypeGuard()
	j, ok := g[1].(bpf.JumpIf)
	if !ok || j.SkipTrue != 1 || j.SkipFalse != 0 || len(g) != guardLen {
		t.Fatalf("unexpected guard %v", g)
	}
	if _, err := bpf.Assemble(g); err != nil {
		t.Fatal(err)
	}
}

func TestARPFilter(t *testing.T) {
	owned := []netip.Addr{vip4, netip.MustParseAddr("192.168.10.76"), vip6}
	prog, exact := arpFilter(owned)
	if !exact {
		t.Fatal("small set got the coarse filter")
	}
	other := netip.MustParseAddr("192.168.10.77")
	mf := mustFrame(t)
	req := mustDecode(t, mf(ARPRequest(clientMAC, client4, vip4)))
	reqOther := mustDecode(t, mf(ARPRequest(clientMAC, client4, other)))
	hlen7 := mf(ARPRequest(clientMAC, client4, vip4))
	hlen7[18] = 7 // malformed, but the target is owned: Go must see and count it
	op3 := mf(ARPRequest(clientMAC, client4, vip4))
	op3[21] = 3
	ipv4 := mf(ARPRequest(clientMAC, client4, vip4))
	ipv4[12], ipv4[13] = 0x08, 0x00

	cases := []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"request for owned", mf(ARPRequest(clientMAC, client4, vip4)), true},
		{"request for second owned", mf(ARPRequest(clientMAC, client4, netip.MustParseAddr("192.168.10.76"))), true},
		{"request for other", mf(ARPRequest(clientMAC, client4, other)), false},
		{"probe for owned", mf(ARPProbe(clientMAC, vip4)), true},
		{"probe for other", mf(ARPProbe(clientMAC, other)), false},
		{"garp request for owned", mf(GratuitousARPRequest(clientMAC, vip4)), true},
		{"garp reply for owned", mf(GratuitousARPReply(clientMAC, vip4)), true},
		{"garp for other", mf(GratuitousARPReply(clientMAC, other)), false},
		{"reply from owned", mf(ARPReply(clientMAC, vip4, &reqOther)), true},
		{"reply about other", mf(ARPReply(clientMAC, other, &req)), false},
		{"request from owned sender", mf(ARPRequest(clientMAC, vip4, client4)), true},
		{"malformed hlen, owned target", hlen7, true},
		{"op 3", op3, false},
		{"ipv4 ethertype", ipv4, false},
		{"truncated", mf(ARPRequest(clientMAC, client4, vip4))[:40], false},
		{"empty", nil, false},
	}
	for _, c := range cases {
		if got := runFilter(t, prog, c.frame); got != c.pass {
			t.Errorf("%s: passed = %v, want %v", c.name, got, c.pass)
		}
	}
}

func TestNDPFilter(t *testing.T) {
	owned := []netip.Addr{vip6, netip.MustParseAddr("fd00:10::76"), vip4}
	prog, exact := ndpFilter(owned)
	if !exact {
		t.Fatal("small set got the coarse filter")
	}
	other := netip.MustParseAddr("fd00:10::77")
	// Same low word as vip6, different prefix: every word must be compared.
	otherPrefix := netip.MustParseAddr("fd00:11::75")
	mf := mustFrame(t)
	hop64 := mf(NeighborSolicitation(clientMAC, client6, vip6))
	hop64[21] = 64 // malformed but owned: Go must count it
	withExt := mf(NeighborSolicitation(clientMAC, client6, vip6))
	withExt[20] = 0 // hop-by-hop header
	group, gmac, _ := SolicitedNodeGroup(vip6)
	rs, err := ndpFrame(gmac, clientMAC, client6, group, &ndp.RouterSolicitation{})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"ns for owned", mf(NeighborSolicitation(clientMAC, client6, vip6)), true},
		{"ns for second owned", mf(NeighborSolicitation(clientMAC, client6, netip.MustParseAddr("fd00:10::76"))), true},
		{"ns for other", mf(NeighborSolicitation(clientMAC, client6, other)), false},
		{"ns for other prefix", mf(NeighborSolicitation(clientMAC, client6, otherPrefix)), false},
		{"dad for owned", mf(DADSolicitation(clientMAC, vip6)), true},
		{"na for owned", mf(UnsolicitedNA(clientMAC, vip6)), true},
		{"solicited na for owned", mf(SolicitedNA(clientMAC, vip6, testMAC, client6)), true},
		{"na for other", mf(UnsolicitedNA(clientMAC, other)), false},
		{"malformed hop limit, owned", hop64, true},
		{"extension header", withExt, false},
		{"router solicitation", rs, false},
		{"arp frame", mf(ARPRequest(clientMAC, client4, vip4)), false},
		{"truncated before target", mf(NeighborSolicitation(clientMAC, client6, vip6))[:70], false},
	}
	for _, c := range cases {
		if got := runFilter(t, prog, c.frame); got != c.pass {
			t.Errorf("%s: passed = %v, want %v", c.name, got, c.pass)
		}
	}
}

// TestNDPFilterRestoresLastWord: a partial match on one address (same last
// word, different prefix) must not break the compare against the next.
func TestNDPFilterRestoresLastWord(t *testing.T) {
	mf := mustFrame(t)
	prog, _ := ndpFilter([]netip.Addr{
		netip.MustParseAddr("fd00:11::75"), netip.MustParseAddr("fd00:10:0:1::75"), vip6,
	})
	if !runFilter(t, prog, mf(NeighborSolicitation(clientMAC, client6, vip6))) {
		t.Error("third address dropped after two partial matches")
	}
	if runFilter(t, prog, mf(NeighborSolicitation(clientMAC, client6, netip.MustParseAddr("fd00:12::75")))) {
		t.Error("address matching only the last word passed")
	}
}

func TestEmptySetDropsEverything(t *testing.T) {
	mf := mustFrame(t)
	for _, f := range [][]byte{
		mf(ARPRequest(clientMAC, client4, vip4)),
		mf(NeighborSolicitation(clientMAC, client6, vip6)),
	} {
		for name, build := range map[string]func([]netip.Addr) ([]bpf.Instruction, bool){"arp": arpFilter, "ndp": ndpFilter} {
			prog, exact := build(nil)
			if !exact || runFilter(t, prog, f) {
				t.Errorf("%s: empty set passed a frame", name)
			}
		}
	}
}

// v4Set returns n IPv4 addresses from 10.0.0.0/8: only ever put in an owned
// set, never on an interface or sent to.
func v4Set(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// v6Set returns n IPv6 addresses from fd00:10::1:0 on.
func v6Set(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		// fd00:10::1:0 and up, clear of the addresses the tests resolve.
		out[i] = netip.AddrFrom16([16]byte{0: 0xfd, 1: 0, 3: 0x10, 13: 1 + byte(i>>16), 14: byte(i >> 8), 15: byte(i)})
	}
	return out
}

// TestFilterSizeLimit checks every set size around the fallback point: an
// exact program always fits BPF_MAXINSNS, and above it the coarse program
// passes everything relevant (Go then filters).
func TestFilterSizeLimit(t *testing.T) {
	mf := mustFrame(t)
	sawExact, sawCoarse := [2]bool{}, [2]bool{}
	for n := 1; n <= 1100; n++ {
		set := v4Set(n)
		prog, exact := arpFilter(set)
		if len(prog) > maxFilterInstructions {
			t.Fatalf("arp, %d addresses: %d instructions", n, len(prog))
		}
		if _, err := bpf.Assemble(prog); err != nil {
			t.Fatalf("arp, %d addresses: %v", n, err)
		}
		if n%50 == 0 || n > 1015 && n < 1025 {
			last := set[n-1]
			if !runFilter(t, prog, mf(ARPRequest(clientMAC, client4, last))) {
				t.Fatalf("arp, %d addresses: last owned address dropped", n)
			}
			if got := runFilter(t, prog, mf(ARPRequest(clientMAC, client4, netip.MustParseAddr("192.0.2.1")))); got == exact {
				t.Fatalf("arp, %d addresses (exact=%v): unowned passed=%v", n, exact, got)
			}
		}
		sawExact[0] = sawExact[0] || exact
		sawCoarse[0] = sawCoarse[0] || !exact
	}
	for n := 1; n <= 500; n++ {
		set := v6Set(n)
		prog, exact := ndpFilter(set)
		if len(prog) > maxFilterInstructions {
			t.Fatalf("ndp, %d addresses: %d instructions", n, len(prog))
		}
		if n%50 == 0 || n > 445 && n < 460 {
			last := set[n-1]
			if !runFilter(t, prog, mf(NeighborSolicitation(clientMAC, client6, last))) {
				t.Fatalf("ndp, %d addresses: last owned address dropped", n)
			}
			if got := runFilter(t, prog, mf(NeighborSolicitation(clientMAC, client6, netip.MustParseAddr("2001:db8::1")))); got == exact {
				t.Fatalf("ndp, %d addresses (exact=%v): unowned passed=%v", n, exact, got)
			}
		}
		sawExact[1] = sawExact[1] || exact
		sawCoarse[1] = sawCoarse[1] || !exact
	}
	if sawExact != [2]bool{true, true} || sawCoarse != [2]bool{true, true} {
		t.Fatalf("size sweep did not cover both programs: exact %v coarse %v", sawExact, sawCoarse)
	}
}

func TestCoarseFilters(t *testing.T) {
	mf := mustFrame(t)
	if !runFilter(t, arpCoarseFilter(), mf(ARPRequest(clientMAC, client4, vip4))) {
		t.Error("coarse ARP filter dropped a request")
	}
	op3 := mf(ARPRequest(clientMAC, client4, vip4))
	op3[21] = 3
	if runFilter(t, arpCoarseFilter(), op3) {
		t.Error("coarse ARP filter passed op 3")
	}
	if !runFilter(t, ndpCoarseFilter(), mf(UnsolicitedNA(clientMAC, vip6))) {
		t.Error("coarse NDP filter dropped an NA")
	}
	ext := mf(UnsolicitedNA(clientMAC, vip6))
	ext[20] = 0
	if runFilter(t, ndpCoarseFilter(), ext) {
		t.Error("coarse NDP filter passed an extension header")
	}
}

func BenchmarkBPFVM(b *testing.B) {
	mf := mustFrame(b)
	for _, n := range []int{1, 64, 1000} {
		set := v4Set(n)
		prog, exact := arpFilter(set)
		vm := newVM(b, prog)
		miss := mf(ARPRequest(clientMAC, client4, netip.MustParseAddr("192.0.2.1")))
		b.Run(fmt.Sprintf("arp/owned=%d/exact=%v/unowned", n, exact), func(b *testing.B) {
			for b.Loop() {
				if n, _ := vm.Run(miss); n != 0 && exact {
					b.Fatal("passed")
				}
			}
		})
	}
	for _, n := range []int{1, 64, 400} {
		set := v6Set(n)
		prog, exact := ndpFilter(set)
		vm := newVM(b, prog)
		miss := mf(NeighborSolicitation(clientMAC, client6, netip.MustParseAddr("2001:db8::1")))
		hit := mf(NeighborSolicitation(clientMAC, client6, set[n-1]))
		b.Run(fmt.Sprintf("ndp/owned=%d/exact=%v/unowned", n, exact), func(b *testing.B) {
			for b.Loop() {
				vm.Run(miss)
			}
		})
		b.Run(fmt.Sprintf("ndp/owned=%d/exact=%v/last-owned", n, exact), func(b *testing.B) {
			for b.Loop() {
				if n, _ := vm.Run(hit); n == 0 {
					b.Fatal("dropped")
				}
			}
		})
	}
}
