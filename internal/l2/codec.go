// Package l2 is the node agent's ARP (IPv4) and NDP (IPv6) responder.
//
// Herald never adds a LoadBalancer address to the node's NIC: the kernel would
// then answer for it on every interface, keep answering after the agent dies,
// and leave stale duplicates behind (the kube-vip failure mode). Instead a
// Responder answers ARP requests and Neighbor Solicitations for the addresses
// it owns from user space, on AF_PACKET sockets whose classic BPF filter lets
// only frames about owned addresses reach Go. The package also sends the
// gratuitous ARPs / unsolicited Neighbor Advertisements that move clients to
// a new owner, reports other hosts that claim an owned address, and runs the
// RFC 5227 probe / IPv6 Duplicate Address Detection before an address is
// first announced.
//
// The package has no Kubernetes imports: the agent decides what is owned and
// hands the set to Responder.SetOwned.
package l2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// ErrMalformed marks a frame that claims to be ARP or NDP but breaks the
// protocol's rules (bad lengths, wrong hop limit, bad checksum, …). Decode
// wraps it so the caller can count such frames with errors.Is and drop them.
var ErrMalformed = errors.New("l2: malformed frame")

// ErrNotNeighbor marks a well-formed frame that is simply not an ARP
// request/reply or an ICMPv6 Neighbor Solicitation/Advertisement (an IPv4
// packet, a Router Advertisement, an IPv6 packet with extension headers…).
// It is not an attack or a bug, so callers ignore it rather than count it as
// malformed.
var ErrNotNeighbor = errors.New("l2: not an ARP or NDP neighbor message")

// Kind says which neighbor-discovery message a decoded frame carries.
type Kind uint8

// The kinds of frames Decode understands. The ARP kinds follow RFC 5227's
// vocabulary: a probe has sender IP 0.0.0.0, an announcement (gratuitous ARP
// request) has sender IP == target IP.
const (
	// KindARPRequest is an ordinary ARP request ("who has TargetIP?").
	KindARPRequest Kind = iota + 1
	// KindARPProbe is an RFC 5227 probe: a request with sender IP 0.0.0.0.
	KindARPProbe
	// KindARPAnnouncement is a gratuitous ARP in request form (sender IP ==
	// target IP).
	KindARPAnnouncement
	// KindARPReply is an ordinary ARP reply.
	KindARPReply
	// KindARPGratuitousReply is a gratuitous ARP in reply form (sender IP ==
	// target IP).
	KindARPGratuitousReply
	// KindNeighborSolicitation is an ICMPv6 Neighbor Solicitation from an
	// address (address resolution or unreachability detection).
	KindNeighborSolicitation
	// KindDADSolicitation is a Neighbor Solicitation from the unspecified
	// address: another host's Duplicate Address Detection for TargetIP.
	KindDADSolicitation
	// KindNeighborAdvertisement is an ICMPv6 Neighbor Advertisement,
	// solicited or not.
	KindNeighborAdvertisement
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindARPRequest:
		return "arp-request"
	case KindARPProbe:
		return "arp-probe"
	case KindARPAnnouncement:
		return "garp-request"
	case KindARPReply:
		return "arp-reply"
	case KindARPGratuitousReply:
		return "garp-reply"
	case KindNeighborSolicitation:
		return "ns"
	case KindDADSolicitation:
		return "dad-ns"
	case KindNeighborAdvertisement:
		return "na"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// IsARP reports whether the kind is an ARP (IPv4) message.
func (k Kind) IsARP() bool { return k >= KindARPRequest && k <= KindARPGratuitousReply }

// Message is a decoded ARP or NDP neighbor message, flattened to the fields
// the responder and the prober act on.
type Message struct {
	// Kind is the message type.
	Kind Kind
	// EthDst and EthSrc are the Ethernet destination and source addresses.
	EthDst, EthSrc net.HardwareAddr
	// SenderHW is the ARP sender hardware address, or for NDP the source
	// (NS) / target (NA) link-layer address option; nil when an NDP message
	// carries no such option.
	SenderHW net.HardwareAddr
	// SenderIP is the ARP sender protocol address or the IPv6 source address.
	SenderIP netip.Addr
	// TargetHW is the ARP target hardware address (nil for NDP).
	TargetHW net.HardwareAddr
	// TargetIP is the ARP target protocol address or the NDP target address.
	TargetIP netip.Addr
	// DstIP is the IPv6 destination address (invalid for ARP).
	DstIP netip.Addr
	// Router, Solicited and Override are the Neighbor Advertisement flags.
	Router, Solicited, Override bool
}

// Family returns "ipv4" for ARP and "ipv6" for NDP, the metric label value.
func (m *Message) Family() string {
	if m.Kind.IsARP() {
		return familyIPv4
	}
	return familyIPv6
}

// LinkAddr is the MAC the message claims for its subject: the link-layer
// option or ARP sender address when present, else the Ethernet source.
func (m *Message) LinkAddr() net.HardwareAddr {
	if len(m.SenderHW) == 6 {
		return m.SenderHW
	}
	return m.EthSrc
}

const (
	familyIPv4 = "ipv4"
	familyIPv6 = "ipv6"

	ethHeaderLen  = 14
	arpPacketLen  = 28
	ipv6HeaderLen = 40
	// icmpv6NDLen is the ICMPv6 header plus the fixed NS/NA body (reserved
	// or flags, and the target address): RFC 4861's "24 or more octets".
	icmpv6NDLen = 24

	protoICMPv6 = 58
	// ndHopLimit is the only hop limit RFC 4861 §7.1 accepts: it proves the
	// message was not forwarded by a router from off-link.
	ndHopLimit = 255
)

// The well-known addresses are functions, not package variables, so no
// caller can modify a shared slice.

// allNodes is ff02::1, the link-local all-nodes group.
func allNodes() netip.Addr { return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 1}) }

// allNodesMAC is the Ethernet group of ff02::1.
func allNodesMAC() net.HardwareAddr { return net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} }

// broadcastMAC is ff:ff:ff:ff:ff:ff.
func broadcastMAC() net.HardwareAddr { return net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

// zeroMAC is the all-zero hardware address ARP uses for "unknown".
func zeroMAC() net.HardwareAddr { return net.HardwareAddr{0, 0, 0, 0, 0, 0} }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Decode parses an Ethernet frame (as read from a raw AF_PACKET socket) into
// a Message. It returns an error wrapping ErrMalformed for a broken ARP or
// NDP frame and one wrapping ErrNotNeighbor for any other traffic. It never
// panics, whatever the input.
func Decode(frame []byte) (Message, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return Message{}, malformed("ethernet: %v", err)
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		return decodeARP(&f)
	case ethernet.EtherTypeIPv6:
		return decodeNDP(&f)
	default:
		return Message{}, fmt.Errorf("%w: ethertype %#04x", ErrNotNeighbor, uint16(f.EtherType))
	}
}

func decodeARP(f *ethernet.Frame) (Message, error) {
	// Check the fixed header ourselves before handing the payload to the arp
	// codec: it trusts the length fields, and an Ethernet ARP packet must be
	// exactly htype 1 / ptype IPv4 / hlen 6 / plen 4. Trailing bytes are
	// Ethernet padding and are ignored.
	p := f.Payload
	if len(p) < arpPacketLen {
		return Message{}, malformed("arp: %d bytes, want %d", len(p), arpPacketLen)
	}
	if ht := binary.BigEndian.Uint16(p[0:2]); ht != 1 {
		return Message{}, malformed("arp: hardware type %d", ht)
	}
	if pt := binary.BigEndian.Uint16(p[2:4]); pt != uint16(ethernet.EtherTypeIPv4) {
		return Message{}, malformed("arp: protocol type %#04x", pt)
	}
	if p[4] != 6 || p[5] != 4 {
		return Message{}, malformed("arp: address lengths %d/%d", p[4], p[5])
	}
	var pkt arp.Packet
	if err := pkt.UnmarshalBinary(p[:arpPacketLen]); err != nil {
		return Message{}, malformed("arp: %v", err)
	}
	m := Message{
		EthDst:   f.Destination,
		EthSrc:   f.Source,
		SenderHW: pkt.SenderHardwareAddr,
		SenderIP: pkt.SenderIP,
		TargetHW: pkt.TargetHardwareAddr,
		TargetIP: pkt.TargetIP,
	}
	gratuitous := pkt.SenderIP == pkt.TargetIP
	switch pkt.Operation {
	case arp.OperationRequest:
		switch {
		case pkt.SenderIP == netip.IPv4Unspecified():
			m.Kind = KindARPProbe
		case gratuitous:
			m.Kind = KindARPAnnouncement
		default:
			m.Kind = KindARPRequest
		}
	case arp.OperationReply:
		if gratuitous {
			m.Kind = KindARPGratuitousReply
		} else {
			m.Kind = KindARPReply
		}
	default:
		// RARP and InARP use other opcodes; on a plain Ethernet segment an
		// ARP frame with any other opcode is junk.
		return Message{}, malformed("arp: operation %d", uint16(pkt.Operation))
	}
	if pkt.TargetIP.IsMulticast() || pkt.SenderIP.IsMulticast() {
		return Message{}, malformed("arp: multicast protocol address")
	}
	// Replies go to the sender hardware address, so it must be a usable
	// unicast MAC; anything else could make us send to a group or nowhere.
	if pkt.SenderHardwareAddr[0]&1 != 0 || sameMAC(pkt.SenderHardwareAddr, zeroMAC()) {
		return Message{}, malformed("arp: sender hardware address %s", pkt.SenderHardwareAddr)
	}
	return m, nil
}

func decodeNDP(f *ethernet.Frame) (Message, error) {
	p := f.Payload
	if len(p) < ipv6HeaderLen {
		return Message{}, malformed("ipv6: %d bytes of header", len(p))
	}
	if v := p[0] >> 4; v != 6 {
		return Message{}, malformed("ipv6: version %d", v)
	}
	plen := int(binary.BigEndian.Uint16(p[4:6]))
	if plen > len(p)-ipv6HeaderLen {
		return Message{}, malformed("ipv6: payload length %d, only %d bytes", plen, len(p)-ipv6HeaderLen)
	}
	if p[6] != protoICMPv6 {
		// Neighbor Discovery is never sent with extension headers by any
		// stack we care about; the BPF filter drops these as well.
		return Message{}, fmt.Errorf("%w: ipv6 next header %d", ErrNotNeighbor, p[6])
	}
	src := netip.AddrFrom16([16]byte(p[8:24]))
	dst := netip.AddrFrom16([16]byte(p[24:40]))
	body := p[ipv6HeaderLen : ipv6HeaderLen+plen] // drop Ethernet padding
	if len(body) < 4 {
		return Message{}, malformed("icmpv6: %d bytes", len(body))
	}
	t := ipv6.ICMPType(body[0])
	if t != ipv6.ICMPTypeNeighborSolicitation && t != ipv6.ICMPTypeNeighborAdvertisement {
		return Message{}, fmt.Errorf("%w: icmpv6 type %d", ErrNotNeighbor, body[0])
	}

	// RFC 4861 §7.1.1 / §7.1.2 validity checks: a node MUST silently
	// discard messages that fail any of them.
	if hl := p[7]; hl != ndHopLimit {
		return Message{}, malformed("ndp: hop limit %d, want 255", hl)
	}
	if got := icmpv6Checksum(src, dst, body); got != 0 {
		return Message{}, malformed("ndp: bad icmpv6 checksum")
	}
	if body[1] != 0 {
		return Message{}, malformed("ndp: icmpv6 code %d", body[1])
	}
	if len(body) < icmpv6NDLen {
		return Message{}, malformed("ndp: %d bytes, want at least %d", len(body), icmpv6NDLen)
	}
	// RFC 4861 §4.6: a zero-length option makes the whole message invalid.
	// Check the option framing here so the error says what is wrong, rather
	// than leaving it to the ndp parser's generic failure.
	if err := checkNDOptions(body[icmpv6NDLen:]); err != nil {
		return Message{}, err
	}
	msg, err := ndp.ParseMessage(body)
	if err != nil {
		return Message{}, malformed("ndp: %v", err)
	}

	m := Message{EthDst: f.Destination, EthSrc: f.Source, SenderIP: src, DstIP: dst}
	switch v := msg.(type) {
	case *ndp.NeighborSolicitation:
		m.TargetIP = v.TargetAddress
		m.SenderHW = linkLayerOption(v.Options, ndp.Source)
		if src.IsUnspecified() {
			// DAD: must go to the target's solicited-node group and must
			// not carry a source link-layer option (RFC 4861 §7.1.1).
			if !isSolicitedNodeFor(dst, v.TargetAddress) {
				return Message{}, malformed("ndp: DAD NS to %s, not the solicited-node group", dst)
			}
			if m.SenderHW != nil {
				return Message{}, malformed("ndp: DAD NS with source link-layer option")
			}
			m.Kind = KindDADSolicitation
		} else {
			m.Kind = KindNeighborSolicitation
		}
	case *ndp.NeighborAdvertisement:
		if dst.IsMulticast() && v.Solicited {
			return Message{}, malformed("ndp: solicited NA to multicast %s", dst)
		}
		m.Kind = KindNeighborAdvertisement
		m.TargetIP = v.TargetAddress
		m.SenderHW = linkLayerOption(v.Options, ndp.Target)
		m.Router, m.Solicited, m.Override = v.Router, v.Solicited, v.Override
	default:
		return Message{}, fmt.Errorf("%w: ndp %T", ErrNotNeighbor, msg)
	}
	if m.TargetIP.IsMulticast() {
		return Message{}, malformed("ndp: multicast target %s", m.TargetIP)
	}
	return m, nil
}

// checkNDOptions walks the TLV options of an NS/NA body and rejects a zero
// length or an option running past the end.
func checkNDOptions(b []byte) error {
	for len(b) > 0 {
		if len(b) < 2 {
			return malformed("ndp: truncated option")
		}
		l := int(b[1]) * 8
		if l == 0 {
			return malformed("ndp: zero-length option")
		}
		if l > len(b) {
			return malformed("ndp: option overruns message")
		}
		b = b[l:]
	}
	return nil
}

func linkLayerOption(opts []ndp.Option, dir ndp.Direction) net.HardwareAddr {
	for _, o := range opts {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == dir && len(lla.Addr) == 6 {
			return lla.Addr
		}
	}
	return nil
}

// icmpv6Checksum computes the ICMPv6 checksum over the IPv6 pseudo-header
// and the message. Over a message whose checksum field is already filled in
// it returns 0 when the checksum is right, so one function both verifies and
// (with the field zeroed) computes.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	s, d := src.As16(), dst.As16()
	for i := 0; i < 16; i += 2 {
		sum += uint32(s[i])<<8 | uint32(s[i+1])
		sum += uint32(d[i])<<8 | uint32(d[i+1])
	}
	sum += uint32(len(msg)) >> 16
	sum += uint32(len(msg)) & 0xffff
	sum += protoICMPv6
	n := len(msg)
	for i := 0; i+1 < n; i += 2 {
		sum += uint32(msg[i])<<8 | uint32(msg[i+1])
	}
	if n%2 == 1 {
		sum += uint32(msg[n-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// SolicitedNodeGroup returns the solicited-node multicast address
// (ff02::1:ffXX:XXXX) of an IPv6 address and the Ethernet multicast MAC it
// maps to (33:33:ff:XX:XX:XX), per RFC 4291 §2.7.1 and RFC 2464 §7.
func SolicitedNodeGroup(addr netip.Addr) (netip.Addr, net.HardwareAddr, error) {
	g, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("solicited-node group of %s: %w", addr, err)
	}
	return g, multicastMAC(g), nil
}

func multicastMAC(group netip.Addr) net.HardwareAddr {
	b := group.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

func isSolicitedNodeFor(dst, target netip.Addr) bool {
	g, err := ndp.SolicitedNodeMulticast(target)
	return err == nil && g == dst
}

func checkMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("l2: hardware address %q is not a 6-byte Ethernet address", mac)
	}
	return nil
}

func check4(addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("l2: %s is not an IPv4 address", addr)
	}
	return nil
}

func check6(addr netip.Addr) error {
	if !addr.Is6() || addr.Is4In6() || addr.Zone() != "" {
		return fmt.Errorf("l2: %s is not a plain IPv6 address", addr)
	}
	return nil
}

func marshalFrame(dst, src net.HardwareAddr, et ethernet.EtherType, payload []byte) ([]byte, error) {
	f := ethernet.Frame{Destination: dst, Source: src, EtherType: et, Payload: payload}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal ethernet frame: %w", err)
	}
	return b, nil
}

func arpFrame(op arp.Operation, ethDst, srcHW net.HardwareAddr, srcIP netip.Addr, dstHW net.HardwareAddr, dstIP netip.Addr) ([]byte, error) {
	if err := checkMAC(srcHW); err != nil {
		return nil, err
	}
	if err := checkMAC(dstHW); err != nil {
		return nil, err
	}
	if err := checkMAC(ethDst); err != nil {
		return nil, err
	}
	pkt, err := arp.NewPacket(op, srcHW, srcIP, dstHW, dstIP)
	if err != nil {
		return nil, fmt.Errorf("build arp %s: %w", op, err)
	}
	payload, err := pkt.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal arp %s: %w", op, err)
	}
	return marshalFrame(ethDst, srcHW, ethernet.EtherTypeARP, payload)
}

// ARPRequest builds an ordinary broadcast ARP request from mac/senderIP
// asking for target. Herald itself never resolves addresses; the function
// exists for tests and tools that play a client.
func ARPRequest(mac net.HardwareAddr, senderIP, target netip.Addr) ([]byte, error) {
	if err := check4(senderIP); err != nil {
		return nil, err
	}
	if err := check4(target); err != nil {
		return nil, err
	}
	return arpFrame(arp.OperationRequest, broadcastMAC(), mac, senderIP, zeroMAC(), target)
}

// ARPReply builds the reply that tells the sender of req that addr is at mac.
// It is unicast to the requester, as the kernel does. A probe (sender IP
// 0.0.0.0) gets a reply with target IP 0.0.0.0, which is exactly what makes
// the prober see a conflict (RFC 5227 §2.1.1).
func ARPReply(mac net.HardwareAddr, addr netip.Addr, req *Message) ([]byte, error) {
	if req == nil || !req.Kind.IsARP() {
		return nil, errors.New("l2: ARPReply needs a decoded ARP request")
	}
	if err := check4(addr); err != nil {
		return nil, err
	}
	return arpFrame(arp.OperationReply, req.SenderHW, mac, addr, req.SenderHW, req.SenderIP)
}

// GratuitousARPRequest builds a broadcast ARP announcement (RFC 5227 §3):
// a request with sender IP == target IP == addr and a zero target hardware
// address. Every host with a cache entry for addr updates it to mac.
func GratuitousARPRequest(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	if err := check4(addr); err != nil {
		return nil, err
	}
	return arpFrame(arp.OperationRequest, broadcastMAC(), mac, addr, zeroMAC(), addr)
}

// GratuitousARPReply builds the reply form of a gratuitous ARP, broadcast,
// with sender IP == target IP == addr and target hardware address == mac.
// Some hosts only honour one of the two forms; Linux treats a reply as
// gratuitous only when the target hardware address equals the sender's
// (arp_is_garp), which is why it is mac and not zero or broadcast.
func GratuitousARPReply(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	if err := check4(addr); err != nil {
		return nil, err
	}
	return arpFrame(arp.OperationReply, broadcastMAC(), mac, addr, mac, addr)
}

// ARPProbe builds an RFC 5227 §2.1.1 probe for addr: a broadcast request with
// sender IP 0.0.0.0 (so no host caches anything from it) and a zero target
// hardware address.
func ARPProbe(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	if err := check4(addr); err != nil {
		return nil, err
	}
	return arpFrame(arp.OperationRequest, broadcastMAC(), mac, netip.IPv4Unspecified(), zeroMAC(), addr)
}

// ndpFrame wraps an NDP message in IPv6 (hop limit 255) and Ethernet, with
// the ICMPv6 checksum over the pseudo-header filled in.
func ndpFrame(ethDst, ethSrc net.HardwareAddr, src, dst netip.Addr, m ndp.Message) ([]byte, error) {
	if err := checkMAC(ethSrc); err != nil {
		return nil, err
	}
	if err := checkMAC(ethDst); err != nil {
		return nil, err
	}
	body, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", m.Type(), err)
	}
	if len(body) > 0xffff {
		return nil, fmt.Errorf("marshal %s: %d bytes is too long", m.Type(), len(body))
	}
	p := make([]byte, ipv6HeaderLen+len(body))
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:6], uint16(len(body)))
	p[6] = protoICMPv6
	p[7] = ndHopLimit
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	copy(p[ipv6HeaderLen:], body)
	return marshalFrame(ethDst, ethSrc, ethernet.EtherTypeIPv6, p)
}

// NeighborSolicitation builds an address-resolution NS from mac/src for
// target, sent to target's solicited-node group with a source link-layer
// option. Like ARPRequest it exists for tests and tools playing a client.
func NeighborSolicitation(mac net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	if err := check6(src); err != nil {
		return nil, err
	}
	if err := check6(target); err != nil {
		return nil, err
	}
	group, gmac, err := SolicitedNodeGroup(target)
	if err != nil {
		return nil, err
	}
	ns := &ndp.NeighborSolicitation{
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}},
	}
	return ndpFrame(gmac, mac, src, group, ns)
}

// SolicitedNA builds the answer to a Neighbor Solicitation for target: an NA
// with the Solicited and Override flags and a target link-layer option, sent
// from target to the soliciting address and MAC (RFC 4861 §7.2.4). The VIP
// itself is the source address because it is the address being defended and
// the interface may have no other usable one.
func SolicitedNA(mac net.HardwareAddr, target netip.Addr, dstMAC net.HardwareAddr, dstIP netip.Addr) ([]byte, error) {
	if err := check6(target); err != nil {
		return nil, err
	}
	if err := check6(dstIP); err != nil {
		return nil, err
	}
	na := &ndp.NeighborAdvertisement{
		Solicited:     true,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	return ndpFrame(dstMAC, mac, target, dstIP, na)
}

// UnsolicitedNA builds an unsolicited Neighbor Advertisement for target to
// all nodes (ff02::1) with the Override flag, so neighbors that already have
// an entry for target switch it to mac (RFC 4861 §7.2.6). It is also the
// defence against another host's DAD probe (§7.2.4, source unspecified).
func UnsolicitedNA(mac net.HardwareAddr, target netip.Addr) ([]byte, error) {
	if err := check6(target); err != nil {
		return nil, err
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	return ndpFrame(allNodesMAC(), mac, target, allNodes(), na)
}

// DADSolicitation builds an RFC 4862 §5.4.2 Duplicate Address Detection
// probe for target: an NS from the unspecified address to target's
// solicited-node group, without a source link-layer option.
func DADSolicitation(mac net.HardwareAddr, target netip.Addr) ([]byte, error) {
	if err := check6(target); err != nil {
		return nil, err
	}
	group, gmac, err := SolicitedNodeGroup(target)
	if err != nil {
		return nil, err
	}
	return ndpFrame(gmac, mac, netip.IPv6Unspecified(), group, &ndp.NeighborSolicitation{TargetAddress: target})
}

// sameMAC compares two hardware addresses.
func sameMAC(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }
