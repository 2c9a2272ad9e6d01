package l2

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
)

// checkDecoded asserts what every successful Decode promises, whatever the
// input: a known kind, addresses of the right family, 6-byte MACs.
func checkDecoded(t *testing.T, m Message, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotNeighbor) {
			t.Fatalf("error is neither ErrMalformed nor ErrNotNeighbor: %v", err)
		}
		return
	}
	if len(m.EthSrc) != 6 || len(m.EthDst) != 6 {
		t.Fatalf("bad ethernet addresses %v %v", m.EthSrc, m.EthDst)
	}
	if m.Kind.IsARP() {
		if !m.SenderIP.Is4() || !m.TargetIP.Is4() || len(m.SenderHW) != 6 || len(m.TargetHW) != 6 {
			t.Fatalf("bad ARP message %+v", m)
		}
		return
	}
	switch m.Kind {
	case KindNeighborSolicitation, KindDADSolicitation, KindNeighborAdvertisement:
	default:
		t.Fatalf("unknown kind %v", m.Kind)
	}
	if !m.TargetIP.Is6() || m.TargetIP.IsMulticast() || !m.SenderIP.Is6() || !m.DstIP.Is6() {
		t.Fatalf("bad NDP message %+v", m)
	}
	if m.SenderHW != nil && len(m.SenderHW) != 6 {
		t.Fatalf("bad link-layer option %v", m.SenderHW)
	}
	if (m.Kind == KindDADSolicitation) != m.SenderIP.IsUnspecified() {
		t.Fatalf("DAD kind and unspecified source disagree: %+v", m)
	}
}

// FuzzDecode feeds arbitrary frames to Decode.
func FuzzDecode(f *testing.F) {
	req := mustDecode(f, mustFrame(f)(ARPRequest(clientMAC, client4, vip4)))
	for _, b := range [][]byte{
		mustFrame(f)(ARPRequest(clientMAC, client4, vip4)),
		mustFrame(f)(ARPReply(testMAC, vip4, &req)),
		mustFrame(f)(GratuitousARPRequest(testMAC, vip4)),
		mustFrame(f)(GratuitousARPReply(testMAC, vip4)),
		mustFrame(f)(ARPProbe(testMAC, vip4)),
		mustFrame(f)(NeighborSolicitation(clientMAC, client6, vip6)),
		mustFrame(f)(SolicitedNA(testMAC, vip6, clientMAC, client6)),
		mustFrame(f)(UnsolicitedNA(testMAC, vip6)),
		mustFrame(f)(DADSolicitation(testMAC, vip6)),
		{},
		make([]byte, 14),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		checkDecoded(t, m, err)
	})
}

// FuzzDecodeARP fuzzes the ARP payload behind a fixed Ethernet header, so
// the fuzzer spends its time in the ARP decoder.
func FuzzDecodeARP(f *testing.F) {
	for _, b := range [][]byte{
		mustFrame(f)(ARPRequest(clientMAC, client4, vip4)),
		mustFrame(f)(GratuitousARPReply(testMAC, vip4)),
		mustFrame(f)(ARPProbe(testMAC, vip4)),
	} {
		f.Add(b[ethHeaderLen:])
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		frame := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06}, payload...)
		m, err := Decode(frame)
		checkDecoded(t, m, err)
		if err == nil {
			// A decoded ARP message re-encodes to the same fields.
			again, err2 := arpFrame(arpOp(m.Kind), m.EthDst, m.SenderHW, m.SenderIP, m.TargetHW, m.TargetIP)
			if err2 != nil {
				t.Fatalf("re-encode %+v: %v", m, err2)
			}
			m2, err2 := Decode(again)
			m2.EthSrc = m.EthSrc // arpFrame sends from the sender hardware address
			if err2 != nil || !equalMessage(m, m2) {
				t.Fatalf("round trip changed %+v into %+v (%v)", m, m2, err2)
			}
		}
	})
}

// FuzzDecodeNDP fuzzes the ICMPv6 message behind a valid IPv6 header with a
// correct checksum, so inputs get past the checksum check into the NDP
// parser. The hop limit and the source are fuzzed too.
func FuzzDecodeNDP(f *testing.F) {
	for _, b := range [][]byte{
		mustFrame(f)(NeighborSolicitation(clientMAC, client6, vip6)),
		mustFrame(f)(SolicitedNA(testMAC, vip6, clientMAC, client6)),
		mustFrame(f)(UnsolicitedNA(testMAC, vip6)),
		mustFrame(f)(DADSolicitation(testMAC, vip6)),
	} {
		ip := b[ethHeaderLen:]
		var src, dst [16]byte
		copy(src[:], ip[8:24])
		copy(dst[:], ip[24:40])
		f.Add(ip[ipv6HeaderLen:], src[:], dst[:], uint8(255))
	}
	f.Fuzz(func(t *testing.T, body, src, dst []byte, hopLimit uint8) {
		if len(body) > 0xffff || len(src) != 16 || len(dst) != 16 {
			return
		}
		s, d := netip.AddrFrom16([16]byte(src)), netip.AddrFrom16([16]byte(dst))
		body = append([]byte(nil), body...)
		if len(body) >= 4 {
			body[2], body[3] = 0, 0
			binary.BigEndian.PutUint16(body[2:4], icmpv6Checksum(s, d, body))
		}
		frame := make([]byte, ethHeaderLen+ipv6HeaderLen+len(body))
		copy(frame, []byte{0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd})
		ip := frame[ethHeaderLen:]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(body)))
		ip[6] = protoICMPv6
		ip[7] = hopLimit
		copy(ip[8:24], src)
		copy(ip[24:40], dst)
		copy(ip[ipv6HeaderLen:], body)
		m, err := Decode(frame)
		checkDecoded(t, m, err)
		if err == nil && hopLimit != 255 {
			t.Fatalf("accepted hop limit %d", hopLimit)
		}
	})
}

func arpOp(k Kind) arp.Operation {
	switch k {
	case KindARPReply, KindARPGratuitousReply:
		return 2
	default:
		return 1
	}
}

// FuzzARPFilter compiles owned sets built from the input (gaps between
// consecutive addresses from a base, and an instruction budget) and checks
// the program in the x/net/bpf VM against the set: every owned address
// passes, every other one in the owned range passes only if the filter
// counts it, none outside passes, and the kernel's rules hold.
func FuzzARPFilter(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 200, 0}, uint16(4096), uint32(0x0a400000))
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, uint16(60), uint32(0xc0a80a00))
	f.Add([]byte{0, 255, 0, 255, 31, 32, 63, 64}, uint16(100), uint32(0xffff0000))
	f.Add([]byte{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, uint16(70), uint32(0))
	f.Fuzz(func(t *testing.T, gaps []byte, budget uint16, base uint32) {
		if len(gaps) == 0 || len(gaps) > 256 {
			return
		}
		keys := []uint32{base}
		for _, g := range gaps {
			next := keys[len(keys)-1] + uint32(g) + 1
			if next < keys[len(keys)-1] {
				break // wrapped
			}
			keys = append(keys, next)
		}
		b := 48 + int(budget)%(maxFilterInstructions-47)
		checkV4(t, keys, b, true, rand.New(rand.NewPCG(uint64(base), uint64(len(keys)))))
	})
}

// FuzzNDPFilter is FuzzARPFilter for the NDP filter's multi-word search: a
// byte with the top bit set moves to the next value of word 0, 1 or 2 (bits
// 4–5) and restarts the last word; other bytes are gaps in the last word.
func FuzzNDPFilter(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 100, 0}, uint16(4096), uint32(0x0a400000))
	f.Add([]byte{0, 0x80, 0, 0x90, 5, 0xa0, 0, 0, 1}, uint16(100), uint32(7))
	f.Add([]byte{0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0, 0xa0}, uint16(60), uint32(0xffffff00))
	f.Fuzz(func(t *testing.T, steps []byte, budget uint16, base uint32) {
		if len(steps) == 0 || len(steps) > 256 {
			return
		}
		k := [4]uint32{0xfd000010, 0, 0, base}
		keys := [][4]uint32{k}
		for _, s := range steps {
			if s&0x80 != 0 {
				w := int(s>>4) & 3
				if w == 3 {
					w = 2
				}
				k[w]++
				for i := w + 1; i < 3; i++ {
					k[i] = 0
				}
				k[3] = base
			} else {
				next := k[3] + uint32(s) + 1
				if next < k[3] {
					continue
				}
				k[3] = next
			}
			keys = append(keys, k)
		}
		b := 64 + int(budget)%(maxFilterInstructions-63)
		checkV6(t, sortedKeys(keys), b, rand.New(rand.NewPCG(uint64(base), uint64(len(keys)))))
	})
}
