package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Peer is one BGP neighbor the speaker connects to.
//
// Each session carries the unicast family of the peer's address: an IPv4
// peer receives the IPv4 routes, an IPv6 peer the IPv6 routes (a
// dual-stack node peers over both families, as FRR, BIRD and MetalLB
// configure it).
type Peer struct {
	// Address of the neighbor (no zone).
	Address netip.Addr
	// Port the neighbor listens on; 0 means 179.
	Port uint16
	// PeerASN is the neighbor's AS number. Equal to the local ASN it
	// makes the session iBGP, otherwise eBGP.
	PeerASN uint32
	// LocalASN overrides Config.ASN for this session; 0 keeps it.
	LocalASN uint32
	// Password enables TCP MD5 signatures (RFC 2385) with this key (at
	// most 80 bytes); empty disables them.
	Password string
	// LocalAddress is the source address of the session; the zero value
	// lets the kernel choose it from the route to the peer.
	LocalAddress netip.Addr
	// HoldTime proposed in OPEN, in whole seconds; 0 means 90 s. The
	// session uses the smaller of both sides' values.
	HoldTime time.Duration
	// KeepaliveTime, in whole seconds; 0 means a third of the hold time.
	KeepaliveTime time.Duration
	// ConnectRetry is the wait between connection attempts, in whole
	// seconds; 0 means DefaultConnectRetry.
	ConnectRetry time.Duration
	// EBGPMultihopTTL, when not 0, lets an eBGP neighbor be that many
	// hops away; 0 means directly connected (TTL 1).
	EBGPMultihopTTL uint8
	// GracefulRestart (RFC 4724) capability.
	GracefulRestart GracefulRestart
	// BFD, when set, runs a single-hop BFD session (RFC 5880/5881) to
	// the neighbor; when it goes down, the BGP session is reset at once
	// instead of after the hold time.
	BFD *BFD
}

// GracefulRestart configures the graceful restart capability.
type GracefulRestart struct {
	// Enabled advertises the capability: the neighbor keeps this node's
	// routes for RestartTime while the session is down.
	Enabled bool
	// RestartTime announced to the neighbor, in whole seconds (at most
	// 4095); 0 means the hold time.
	RestartTime time.Duration
}

// BFD configures a BFD session. Intervals are in microsecond precision on
// the wire; zero values take GoBGP's defaults (1 s intervals,
// multiplier 3).
//
// What GoBGP v4.8.0's BFD does: single-hop sessions only (TTL 255, RFC
// 5881), no echo mode, no authentication; it listens on UDP port 3784 on
// every address of the node while some peer has BFD; it transmits at
// MinTx whatever the peer asks for. The speaker starts it once the BGP
// session is established (see bfdArmDelay). A BFD AdminDown from the peer
// (a router whose BFD session is deconfigured) resets the BGP session
// once: GoBGP treats it as a failure, which RFC 5882 §3.2 says it should
// not.
type BFD struct {
	// MinTx is the desired minimum transmit interval.
	MinTx time.Duration
	// MinRx is the required minimum receive interval.
	MinRx time.Duration
	// Multiplier is the detection multiplier: the session is down after
	// this many missed packets.
	Multiplier uint8
}

// DefaultConnectRetry is the wait between connection attempts when
// Peer.ConnectRetry is 0. GoBGP's own default is 120 s, long enough that
// a router restarted a moment after a failed attempt would see the node
// only two minutes later; FRR's datacenter profile uses 10 s.
const DefaultConnectRetry = 10 * time.Second

// maxPasswordLen is the TCP MD5 key limit of Linux (TCP_MD5SIG_MAXKEYLEN).
const maxPasswordLen = 80

// normalize validates p and fills the defaults that are the speaker's
// (not GoBGP's), so that equal configurations compare equal.
func (p Peer) normalize() (Peer, error) {
	if !p.Address.IsValid() {
		return Peer{}, fmt.Errorf("peer without a valid address")
	}
	name := p.Address.String()
	if p.Address.Zone() != "" || p.Address.IsUnspecified() || p.Address.IsMulticast() || p.Address.Is4In6() {
		return Peer{}, fmt.Errorf("peer %s: not a usable unicast address (link-local peers with a zone are not supported)", name)
	}
	if p.PeerASN == 0 {
		return Peer{}, fmt.Errorf("peer %s: peer ASN is required", name)
	}
	if len(p.Password) > maxPasswordLen {
		return Peer{}, fmt.Errorf("peer %s: password is %d bytes long; TCP MD5 keys are at most %d", name, len(p.Password), maxPasswordLen)
	}
	if p.LocalAddress.IsValid() && (p.LocalAddress.Is4() != p.Address.Is4() || p.LocalAddress.Zone() != "") {
		return Peer{}, fmt.Errorf("peer %s: local address %s is not of the peer's address family", name, p.LocalAddress)
	}
	for _, d := range []struct {
		what string
		v    time.Duration
		max  time.Duration
	}{
		{"hold time", p.HoldTime, 65535 * time.Second},
		{"keepalive time", p.KeepaliveTime, 65535 * time.Second},
		{"connect retry", p.ConnectRetry, 65535 * time.Second},
		{"graceful restart time", p.GracefulRestart.RestartTime, 4095 * time.Second},
	} {
		if d.v < 0 || d.v%time.Second != 0 || d.v > d.max {
			return Peer{}, fmt.Errorf("peer %s: %s %v must be whole seconds between 0 and %v", name, d.what, d.v, d.max)
		}
	}
	if p.HoldTime != 0 && p.HoldTime < 3*time.Second {
		return Peer{}, fmt.Errorf("peer %s: hold time %v is below 3 s (RFC 4271)", name, p.HoldTime)
	}
	hold := p.HoldTime
	if hold == 0 {
		hold = 90 * time.Second
	}
	if p.KeepaliveTime > hold {
		return Peer{}, fmt.Errorf("peer %s: keepalive time %v exceeds the hold time %v", name, p.KeepaliveTime, hold)
	}
	if p.ConnectRetry == 0 {
		p.ConnectRetry = DefaultConnectRetry
	}
	if p.BFD != nil {
		b := *p.BFD
		for _, d := range []struct {
			what string
			v    time.Duration
		}{{"BFD minimum transmit interval", b.MinTx}, {"BFD minimum receive interval", b.MinRx}} {
			if d.v < 0 || d.v%time.Microsecond != 0 || d.v.Microseconds() > 1<<32-1 {
				return Peer{}, fmt.Errorf("peer %s: %s %v must be whole microseconds between 0 and %v", name, d.what, d.v, time.Duration(1<<32-1)*time.Microsecond)
			}
		}
		p.BFD = &b // the caller keeps its pointer
	}
	return p, nil
}

// peerEqual reports whether two normalized peers are configured alike.
func peerEqual(a, b Peer) bool {
	return sessionEqual(a, b) && bfdEqual(a.BFD, b.BFD)
}

// sessionEqual compares everything but BFD: the parts of a peer whose
// change needs the session to be set up again.
func sessionEqual(a, b Peer) bool {
	a.BFD, b.BFD = nil, nil
	return a == b
}

func bfdEqual(a, b *BFD) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// peerTable validates and normalizes peers and indexes them by address.
func peerTable(peers []Peer) (map[netip.Addr]Peer, error) {
	out := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		n, err := p.normalize()
		if err != nil {
			return nil, err
		}
		if old, dup := out[n.Address]; dup && !peerEqual(old, n) {
			return nil, fmt.Errorf("peer %s is given twice with different settings", n.Address)
		}
		out[n.Address] = n
	}
	return out, nil
}

// peerDiff is what turns the current peers into the desired ones; each
// list is sorted by address.
type peerDiff struct {
	// Add are new peers.
	Add []Peer
	// Reset are peers whose session settings changed: GoBGP's UpdatePeer
	// would tear the session down for most of them anyway, and for the
	// rest (timers) it would only apply them at the next session, so the
	// speaker deletes and adds them again.
	Reset []Peer
	// UpdateBFD are peers whose only change is BFD, which GoBGP applies
	// without touching the session.
	UpdateBFD []Peer
	// Remove are peers no longer desired.
	Remove []netip.Addr
}

// diffPeers compares normalized peer tables.
func diffPeers(current, desired map[netip.Addr]Peer) peerDiff {
	var d peerDiff
	for a, p := range desired {
		old, ok := current[a]
		switch {
		case !ok:
			d.Add = append(d.Add, p)
		case !sessionEqual(old, p):
			d.Reset = append(d.Reset, p)
		case !bfdEqual(old.BFD, p.BFD):
			d.UpdateBFD = append(d.UpdateBFD, p)
		}
	}
	for a := range current {
		if _, ok := desired[a]; !ok {
			d.Remove = append(d.Remove, a)
		}
	}
	byAddr := func(a, b Peer) int { return a.Address.Compare(b.Address) }
	slices.SortFunc(d.Add, byAddr)
	slices.SortFunc(d.Reset, byAddr)
	slices.SortFunc(d.UpdateBFD, byAddr)
	slices.SortFunc(d.Remove, func(a, b netip.Addr) int { return a.Compare(b) })
	return d
}
