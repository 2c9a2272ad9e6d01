package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/mdlayher/packet"
)

// Probe defaults. RFC 5227 waits 1–2 s between probes and 2 s after the
// last (RFC 4862 DAD: 1 s); that protects hosts that configure an address on
// every boot. Herald probes only an address it is about to announce for the
// first time, on a segment where every other node runs Herald too, and the
// Service stays pending while it probes, so it uses a few hundred
// milliseconds instead. A host that answers ARP at all answers within
// milliseconds; raise the values for slow or lossy segments.
const (
	// DefaultProbeCount is the default number of probes sent.
	DefaultProbeCount = 3
	// DefaultProbeInterval is the default time between probes.
	DefaultProbeInterval = 100 * time.Millisecond
	// DefaultProbeWait is the default time to listen after the last probe.
	DefaultProbeWait = 300 * time.Millisecond
)

// ProbeOptions tune Probe. The zero value uses the defaults.
type ProbeOptions struct {
	// Count is the number of ARP probes / DAD solicitations sent. 0 means
	// DefaultProbeCount.
	Count int
	// Interval separates the probes. 0 means DefaultProbeInterval.
	Interval time.Duration
	// Wait is how long to listen after the last probe. 0 means
	// DefaultProbeWait.
	Wait time.Duration
}

// Probe reports whether another host answers for addr on ifi; a non-nil
// *Conflict names the MAC. It sends RFC 5227 ARP probes (sender IP 0.0.0.0)
// for an IPv4 address, or RFC 4862 Duplicate Address Detection
// solicitations for an IPv6 one, and listens for the answer. For IPv4, any
// ARP reply or request whose sender IP is addr, or another host's probe for
// addr, is a conflict; for IPv6, a Neighbor Advertisement for addr or
// another host's DAD solicitation for it. Frames from ifi's own MAC are
// ignored, so a Responder on the same interface does not count.
//
// The socket is opened in the calling thread's network namespace, like
// NewResponder's. Probe returns early on the first conflict, and with
// ctx.Err() when ctx ends first.
func Probe(ctx context.Context, ifi *net.Interface, addr netip.Addr, opts ProbeOptions) (*Conflict, error) {
	cs, err := ProbeMany(ctx, ifi, []netip.Addr{addr}, opts)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	return &cs[0], nil
}

// MaxProbeBatch is the most addresses ProbeMany probes at once: its probes
// go out back to back, so a batch is a burst on the LAN.
const MaxProbeBatch = 256

// ProbeMany probes up to MaxProbeBatch addresses of one family on ifi at
// once, as Probe does for one: every round sends a probe for each address,
// and one listening window after the last round serves them all, so a
// thousand new addresses take a few seconds of probing rather than minutes.
// It returns the conflicts found, at most one per address, in address
// order; it returns early once every address has one.
func ProbeMany(ctx context.Context, ifi *net.Interface, addrs []netip.Addr, opts ProbeOptions) ([]Conflict, error) {
	if ifi == nil {
		return nil, errors.New("l2: Probe needs an interface")
	}
	if err := checkMAC(ifi.HardwareAddr); err != nil {
		return nil, fmt.Errorf("probe on %s: %w", ifi.Name, err)
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	if len(addrs) > MaxProbeBatch {
		return nil, fmt.Errorf("l2: %d addresses in one probe, at most %d", len(addrs), MaxProbeBatch)
	}
	set := make(map[netip.Addr]bool, len(addrs))
	var sorted []netip.Addr
	v6 := addrs[0].Unmap().Is6()
	for _, addr := range addrs {
		addr = addr.Unmap()
		if !addr.IsValid() || addr.Zone() != "" || addr.IsUnspecified() || addr.IsMulticast() {
			return nil, fmt.Errorf("l2: cannot probe for %s", addr)
		}
		if addr.Is6() != v6 {
			return nil, errors.New("l2: one probe covers one address family")
		}
		if !set[addr] {
			set[addr] = true
			sorted = append(sorted, addr)
		}
	}
	slices.SortFunc(sorted, netip.Addr.Compare)
	if opts.Count <= 0 {
		opts.Count = DefaultProbeCount
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultProbeInterval
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultProbeWait
	}
	mac := ifi.HardwareAddr

	etherType := etherTypeARP
	if v6 {
		etherType = etherTypeIPv6
	}
	frames := make([][]byte, len(sorted))
	for i, addr := range sorted {
		var err error
		if v6 {
			frames[i], err = DADSolicitation(mac, addr)
		} else {
			frames[i], err = ARPProbe(mac, addr)
		}
		if err != nil {
			return nil, err
		}
	}
	conn, err := listen(ifi, etherType)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := attachProbeFilter(conn, sorted); err != nil {
		return nil, err
	}
	if v6 {
		// Other hosts' DAD solicitations go to each address's
		// solicited-node group and defending NAs to all-nodes: open the
		// NIC filter for them, and tell snooping switches about the groups.
		mld, mldErr := openMLD(ifi, nil)
		if mldErr == nil {
			defer mld.Close()
		}
		joined := map[string]bool{}
		for _, addr := range sorted {
			group, gmac, err := SolicitedNodeGroup(addr)
			if err != nil {
				return nil, err
			}
			if joined[gmac.String()] {
				continue
			}
			joined[gmac.String()] = true
			if err := conn.JoinGroup(gmac); err != nil {
				return nil, fmt.Errorf("join %s on %s: %w", gmac, ifi.Name, err)
			}
			if mldErr == nil {
				_ = mld.join(group) // best effort, as for the Responder
			}
		}
		if err := conn.JoinGroup(allNodesMAC()); err != nil {
			return nil, fmt.Errorf("join %s on %s: %w", allNodesMAC(), ifi.Name, err)
		}
	}

	// Cancelling ctx unblocks a pending read.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	found := map[netip.Addr]Conflict{}
	buf := make([]byte, 1<<16)
	sent := 0
	nextSend := time.Now()
	var end time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := time.Now()
		if sent < opts.Count && !now.Before(nextSend) {
			for i, frame := range frames {
				if _, ok := found[sorted[i]]; ok {
					continue // already known to be in use
				}
				// The frame's own Ethernet destination: broadcast, or the
				// solicited-node group.
				if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])}); err != nil {
					return nil, fmt.Errorf("send probe for %s on %s: %w", sorted[i], ifi.Name, err)
				}
			}
			sent++
			nextSend = now.Add(opts.Interval)
			if sent == opts.Count {
				end = now.Add(opts.Wait)
			}
		}
		if len(found) == len(sorted) || sent == opts.Count && !now.Before(end) {
			break
		}
		deadline := end
		if sent < opts.Count {
			deadline = nextSend
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			return nil, fmt.Errorf("probe on %s: %w", ifi.Name, err)
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return nil, fmt.Errorf("probe on %s: %w", ifi.Name, err)
		}
		msg, err := Decode(buf[:n])
		if err != nil {
			continue
		}
		for _, addr := range []netip.Addr{msg.SenderIP, msg.TargetIP} {
			if !set[addr] {
				continue
			}
			if _, ok := found[addr]; ok {
				continue
			}
			if c := probeConflict(&msg, addr, mac); c != nil {
				c.Interface = ifi.Name
				found[addr] = *c
			}
		}
	}
	out := make([]Conflict, 0, len(found))
	for _, addr := range sorted {
		if c, ok := found[addr]; ok {
			out = append(out, c)
		}
	}
	return out, nil
}

func attachProbeFilter(conn *packet.Conn, owned []netip.Addr) error {
	prog, _ := arpFilter(owned, maxFilterInstructions)
	if owned[0].Is6() {
		prog, _ = ndpFilter(owned, maxFilterInstructions)
	}
	return setFilter(conn, prog)
}

// probeConflict decides whether a frame received while probing for addr
// shows another host using (or claiming) it.
func probeConflict(msg *Message, addr netip.Addr, mac net.HardwareAddr) *Conflict {
	if sameMAC(msg.EthSrc, mac) || sameMAC(msg.SenderHW, mac) {
		return nil
	}
	kind := ""
	switch msg.Kind {
	case KindARPReply:
		if msg.SenderIP == addr {
			kind = ConflictARPReply
		}
	case KindARPGratuitousReply, KindARPAnnouncement:
		if msg.SenderIP == addr {
			kind = ConflictGARP
		}
	case KindARPRequest:
		if msg.SenderIP == addr {
			kind = ConflictARPRequest
		}
	case KindARPProbe:
		if msg.TargetIP == addr {
			kind = ConflictARPProbe
		}
	case KindNeighborAdvertisement:
		if msg.TargetIP == addr {
			kind = ConflictNA
		}
	case KindDADSolicitation:
		if msg.TargetIP == addr {
			kind = ConflictDAD
		}
	}
	if kind == "" {
		return nil
	}
	other := msg.LinkAddr()
	return &Conflict{Addr: addr, MAC: append(net.HardwareAddr(nil), other...), Kind: kind}
}
