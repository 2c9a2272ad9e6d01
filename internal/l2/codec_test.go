package l2

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/ndp"
)

var (
	testMAC   = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0xcc, 0, 0, 0, 0x10}
	vip4      = netip.MustParseAddr("192.168.10.75")
	client4   = netip.MustParseAddr("192.168.10.10")
	vip6      = netip.MustParseAddr("fd00:10::75")
	client6   = netip.MustParseAddr("fd00:10::10")
)

// mustFrame returns a function that fails the test when a frame builder
// fails: mustFrame(t)(ARPProbe(mac, ip)).
func mustFrame(t testing.TB) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatalf("build frame: %v", err)
		}
		return b
	}
}

func mustDecode(t testing.TB, b []byte) Message {
	t.Helper()
	m, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	req := mustDecode(t, mustFrame(t)(ARPRequest(clientMAC, client4, vip4)))
	probeReq := mustDecode(t, mustFrame(t)(ARPProbe(clientMAC, vip4)))
	group, gmac, err := SolicitedNodeGroup(vip6)
	if err != nil {
		t.Fatal(err)
	}
	bcast := broadcastMAC()

	tests := []struct {
		name  string
		build func() ([]byte, error)
		want  Message
	}{
		{
			name:  "arp request",
			build: func() ([]byte, error) { return ARPRequest(clientMAC, client4, vip4) },
			want: Message{Kind: KindARPRequest, EthDst: bcast, EthSrc: clientMAC, SenderHW: clientMAC,
				SenderIP: client4, TargetHW: zeroMAC(), TargetIP: vip4},
		},
		{
			name:  "arp reply",
			build: func() ([]byte, error) { return ARPReply(testMAC, vip4, &req) },
			want: Message{Kind: KindARPReply, EthDst: clientMAC, EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: vip4, TargetHW: clientMAC, TargetIP: client4},
		},
		{
			name:  "arp reply to a probe",
			build: func() ([]byte, error) { return ARPReply(testMAC, vip4, &probeReq) },
			want: Message{Kind: KindARPReply, EthDst: clientMAC, EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: vip4, TargetHW: clientMAC, TargetIP: netip.IPv4Unspecified()},
		},
		{
			name:  "gratuitous arp request",
			build: func() ([]byte, error) { return GratuitousARPRequest(testMAC, vip4) },
			want: Message{Kind: KindARPAnnouncement, EthDst: bcast, EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: vip4, TargetHW: zeroMAC(), TargetIP: vip4},
		},
		{
			name:  "gratuitous arp reply",
			build: func() ([]byte, error) { return GratuitousARPReply(testMAC, vip4) },
			want: Message{Kind: KindARPGratuitousReply, EthDst: bcast, EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: vip4, TargetHW: testMAC, TargetIP: vip4},
		},
		{
			name:  "arp probe",
			build: func() ([]byte, error) { return ARPProbe(testMAC, vip4) },
			want: Message{Kind: KindARPProbe, EthDst: bcast, EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: netip.IPv4Unspecified(), TargetHW: zeroMAC(), TargetIP: vip4},
		},
		{
			name:  "neighbor solicitation",
			build: func() ([]byte, error) { return NeighborSolicitation(clientMAC, client6, vip6) },
			want: Message{Kind: KindNeighborSolicitation, EthDst: gmac, EthSrc: clientMAC, SenderHW: clientMAC,
				SenderIP: client6, TargetIP: vip6, DstIP: group},
		},
		{
			name:  "solicited NA",
			build: func() ([]byte, error) { return SolicitedNA(testMAC, vip6, clientMAC, client6) },
			want: Message{Kind: KindNeighborAdvertisement, EthDst: clientMAC, EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: vip6, TargetIP: vip6, DstIP: client6, Solicited: true, Override: true},
		},
		{
			name:  "unsolicited NA",
			build: func() ([]byte, error) { return UnsolicitedNA(testMAC, vip6) },
			want: Message{Kind: KindNeighborAdvertisement, EthDst: allNodesMAC(), EthSrc: testMAC, SenderHW: testMAC,
				SenderIP: vip6, TargetIP: vip6, DstIP: allNodes(), Override: true},
		},
		{
			name:  "DAD solicitation",
			build: func() ([]byte, error) { return DADSolicitation(testMAC, vip6) },
			want: Message{Kind: KindDADSolicitation, EthDst: gmac, EthSrc: testMAC,
				SenderIP: netip.IPv6Unspecified(), TargetIP: vip6, DstIP: group},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustFrame(t)(tt.build())
			got := mustDecode(t, b)
			if !equalMessage(got, tt.want) {
				t.Fatalf("decoded\n got %+v\nwant %+v", got, tt.want)
			}
			// Ethernet padding (frames under 60 bytes are padded on the
			// wire) must not change the result.
			padded := append(append([]byte(nil), b...), make([]byte, 64)...)
			if got := mustDecode(t, padded); !equalMessage(got, tt.want) {
				t.Fatalf("decoded padded frame\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func equalMessage(a, b Message) bool {
	return a.Kind == b.Kind && sameMAC(a.EthDst, b.EthDst) && sameMAC(a.EthSrc, b.EthSrc) &&
		sameMAC(a.SenderHW, b.SenderHW) && sameMAC(a.TargetHW, b.TargetHW) &&
		a.SenderIP == b.SenderIP && a.TargetIP == b.TargetIP && a.DstIP == b.DstIP &&
		a.Router == b.Router && a.Solicited == b.Solicited && a.Override == b.Override
}

func TestSolicitedNodeGroup(t *testing.T) {
	g, mac, err := SolicitedNodeGroup(netip.MustParseAddr("fd00:10::1:2345:6789"))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("ff02::1:ff45:6789"); g != want {
		t.Errorf("group = %s, want %s", g, want)
	}
	if want := (net.HardwareAddr{0x33, 0x33, 0xff, 0x45, 0x67, 0x89}); !sameMAC(mac, want) {
		t.Errorf("mac = %s, want %s", mac, want)
	}
	if _, _, err := SolicitedNodeGroup(vip4); err == nil {
		t.Error("IPv4 address has a solicited-node group")
	}
}

func TestEncodeRejectsBadInput(t *testing.T) {
	short := net.HardwareAddr{1, 2, 3}
	cases := map[string]func() ([]byte, error){
		"arp request v6":  func() ([]byte, error) { return ARPRequest(testMAC, vip6, vip4) },
		"garp short mac":  func() ([]byte, error) { return GratuitousARPRequest(short, vip4) },
		"garp v6":         func() ([]byte, error) { return GratuitousARPReply(testMAC, vip6) },
		"probe v6":        func() ([]byte, error) { return ARPProbe(testMAC, vip6) },
		"reply nil":       func() ([]byte, error) { return ARPReply(testMAC, vip4, nil) },
		"na v4":           func() ([]byte, error) { return UnsolicitedNA(testMAC, vip4) },
		"na mapped":       func() ([]byte, error) { return UnsolicitedNA(testMAC, netip.MustParseAddr("::ffff:1.2.3.4")) },
		"solicited short": func() ([]byte, error) { return SolicitedNA(testMAC, vip6, short, client6) },
		"dad v4":          func() ([]byte, error) { return DADSolicitation(testMAC, vip4) },
		"ns zone": func() ([]byte, error) {
			return NeighborSolicitation(testMAC, netip.MustParseAddr("fe80::1%eth0"), vip6)
		},
	}
	for name, build := range cases {
		if _, err := build(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// reChecksum recomputes the ICMPv6 checksum of an IPv6 frame after a test
// edited it, so only the intended defect remains.
func reChecksum(b []byte) []byte {
	p := b[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(p[4:6]))
	body := p[ipv6HeaderLen : ipv6HeaderLen+plen]
	body[2], body[3] = 0, 0
	src := netip.AddrFrom16([16]byte(p[8:24]))
	dst := netip.AddrFrom16([16]byte(p[24:40]))
	binary.BigEndian.PutUint16(body[2:4], icmpv6Checksum(src, dst, body))
	return b
}

func TestDecodeMalformed(t *testing.T) {
	arpReq := func() []byte { return mustFrame(t)(ARPRequest(clientMAC, client4, vip4)) }
	ns := func() []byte { return mustFrame(t)(NeighborSolicitation(clientMAC, client6, vip6)) }
	na := func() []byte { return mustFrame(t)(UnsolicitedNA(clientMAC, vip6)) }
	dad := func() []byte { return mustFrame(t)(DADSolicitation(clientMAC, vip6)) }

	cases := map[string][]byte{
		"empty":             {},
		"short ethernet":    arpReq()[:10],
		"truncated arp":     arpReq()[:30],
		"arp htype 6":       func() []byte { b := arpReq(); b[15] = 6; return b }(),
		"arp ptype ipv6":    func() []byte { b := arpReq(); b[16], b[17] = 0x86, 0xdd; return b }(),
		"arp hlen 7":        func() []byte { b := arpReq(); b[18] = 7; return b }(),
		"arp plen 16":       func() []byte { b := arpReq(); b[19] = 16; return b }(),
		"arp op 3":          func() []byte { b := arpReq(); b[21] = 3; return b }(),
		"arp multicast sha": func() []byte { b := arpReq(); b[22] = 0x01; return b }(),
		"arp zero sha":      func() []byte { b := arpReq(); copy(b[22:28], zeroMAC()); return b }(),
		"arp multicast tpa": func() []byte { b := arpReq(); b[38] = 224; return b }(),
		"short ipv6":        ns()[:40],
		"ipv6 version 4":    func() []byte { b := ns(); b[14] = 0x40; return b }(),
		"payload too long":  func() []byte { b := ns(); b[18], b[19] = 0x01, 0x00; return b }(),
		"hop limit 64":      func() []byte { b := ns(); b[21] = 64; return reChecksum(b) }(),
		"bad checksum":      func() []byte { b := ns(); b[56] ^= 0xff; return b }(),
		"icmp code 1":       func() []byte { b := ns(); b[55] = 1; return reChecksum(b) }(),
		"ns too short": func() []byte {
			b := ns()[:ethHeaderLen+ipv6HeaderLen+20]
			binary.BigEndian.PutUint16(b[18:20], 20)
			return reChecksum(b)
		}(),
		"zero-length option": func() []byte { b := ns(); b[79] = 0; return reChecksum(b) }(),
		"option overrun":     func() []byte { b := ns(); b[79] = 2; return reChecksum(b) }(),
		"multicast target":   func() []byte { b := ns(); b[62] = 0xff; return reChecksum(b) }(),
		"dad to all-nodes":   func() []byte { b := dad(); copy(b[38:54], allNodes().AsSlice()); return reChecksum(b) }(),
		"solicited NA to multicast": func() []byte {
			b := na()
			b[58] |= 0x40
			return reChecksum(b)
		}(),
	}
	for name, b := range cases {
		_, err := Decode(b)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestDecodeNotNeighbor(t *testing.T) {
	ipv4 := mustFrame(t)(ARPRequest(clientMAC, client4, vip4))
	ipv4[12], ipv4[13] = 0x08, 0x00
	ns := mustFrame(t)(NeighborSolicitation(clientMAC, client6, vip6))
	udp := append([]byte(nil), ns...)
	udp[20] = 17
	rs, err := ndp.MarshalMessageChecksum(&ndp.RouterSolicitation{}, client6, allNodes())
	if err != nil {
		t.Fatal(err)
	}
	rsFrame := append(append([]byte(nil), ns[:ethHeaderLen+ipv6HeaderLen]...), rs...)
	binary.BigEndian.PutUint16(rsFrame[18:20], uint16(len(rs)))
	for name, b := range map[string][]byte{"ipv4": ipv4, "udp": udp, "router solicitation": rsFrame} {
		_, err := Decode(b)
		if !errors.Is(err, ErrNotNeighbor) {
			t.Errorf("%s: err = %v, want ErrNotNeighbor", name, err)
		}
	}
}

func TestDecodeKernelDADWithNonce(t *testing.T) {
	// Linux sends DAD solicitations with an RFC 7527 nonce option by
	// default (enhanced_dad); they must decode.
	group, gmac, _ := SolicitedNodeGroup(vip6)
	nonce := &ndp.RawOption{Type: 14, Length: 1, Value: []byte{1, 2, 3, 4, 5, 6}}
	b, err := ndpFrame(gmac, clientMAC, netip.IPv6Unspecified(), group,
		&ndp.NeighborSolicitation{TargetAddress: vip6, Options: []ndp.Option{nonce}})
	if err != nil {
		t.Fatal(err)
	}
	m := mustDecode(t, b)
	if m.Kind != KindDADSolicitation || m.TargetIP != vip6 {
		t.Fatalf("got %+v", m)
	}
}

func TestLinkAddrFallsBackToEthernetSource(t *testing.T) {
	group, gmac, _ := SolicitedNodeGroup(vip6)
	b, err := ndpFrame(gmac, clientMAC, client6, group, &ndp.NeighborSolicitation{TargetAddress: vip6})
	if err != nil {
		t.Fatal(err)
	}
	m := mustDecode(t, b)
	if m.SenderHW != nil || !sameMAC(m.LinkAddr(), clientMAC) {
		t.Fatalf("SenderHW %s LinkAddr %s", m.SenderHW, m.LinkAddr())
	}
}
