package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/bgpplan"
	"github.com/herald-lb/herald/internal/ipam"
)

// The views of Herald's BGP objects for internal/bgpplan. Each checks again
// what the CRD validates at admission (a CRD installed without validation,
// an older CRD) and names the field it cannot use; such an object is left
// out by the caller and its Valid condition says why.

// BGPPeerView reduces a BGPPeer to what node (nil: unknown, so a
// nodeSelector matches nothing) decides on, its defaults applied.
func BGPPeerView(p *heraldv1.BGPPeer, node *corev1.Node) (bgpplan.Peer, error) {
	s := &p.Spec
	view := bgpplan.Peer{Name: p.Name, Labels: p.Labels, Port: heraldv1.DefaultBGPPort}
	a, err := netip.ParseAddr(s.Address)
	if err != nil || a.Zone() != "" {
		return bgpplan.Peer{}, fmt.Errorf("spec.address: %q is not an IP address", s.Address)
	}
	view.Addr = a.Unmap()
	if view.PeerASN, err = asn("spec.peerASN", s.PeerASN); err != nil {
		return bgpplan.Peer{}, err
	}
	if view.LocalASN, err = asn("spec.localASN", s.LocalASN); err != nil {
		return bgpplan.Peer{}, err
	}
	if s.Port != 0 {
		if s.Port < 1 || s.Port > 65535 {
			return bgpplan.Peer{}, fmt.Errorf("spec.port: %d is not a port", s.Port)
		}
		view.Port = uint16(s.Port)
	}
	if s.EBGPMultihop != nil {
		if *s.EBGPMultihop < 1 || *s.EBGPMultihop > 255 {
			return bgpplan.Peer{}, fmt.Errorf("spec.ebgpMultihop: %d is not from 1 to 255", *s.EBGPMultihop)
		}
		view.EBGPMultihop = uint8(*s.EBGPMultihop)
	}
	if r := s.PasswordSecretRef; r != nil {
		view.Password = bgpplan.SecretKey{Name: r.Name, Key: r.Key}
		if view.Password.Key == "" {
			view.Password.Key = "password"
		}
	}

	// Timers: whole seconds; hold 0 or 3..65535 s; keepalive below hold
	// (a third of it when unset); connect retry 1..65535 s.
	view.HoldTime = heraldv1.DefaultHoldTimeSeconds * time.Second
	if s.HoldTime != nil {
		view.HoldTime = s.HoldTime.Duration
		if err := wholeSeconds("spec.holdTime", view.HoldTime, 0, 65535); err != nil {
			return bgpplan.Peer{}, err
		}
		if view.HoldTime != 0 && view.HoldTime < 3*time.Second {
			return bgpplan.Peer{}, fmt.Errorf("spec.holdTime: %s is neither 0 nor at least 3s", view.HoldTime)
		}
	}
	view.KeepaliveTime = (view.HoldTime / 3).Truncate(time.Second)
	if s.KeepaliveTime != nil {
		view.KeepaliveTime = s.KeepaliveTime.Duration
		if err := wholeSeconds("spec.keepaliveTime", view.KeepaliveTime, 0, 65535); err != nil {
			return bgpplan.Peer{}, err
		}
		if view.HoldTime == 0 && view.KeepaliveTime != 0 || view.HoldTime != 0 && view.KeepaliveTime >= view.HoldTime {
			return bgpplan.Peer{}, fmt.Errorf("spec.keepaliveTime: %s is not less than the hold time %s (0 when it is 0)", view.KeepaliveTime, view.HoldTime)
		}
	}
	view.ConnectRetryTime = heraldv1.DefaultConnectRetrySeconds * time.Second
	if s.ConnectRetryTime != nil {
		view.ConnectRetryTime = s.ConnectRetryTime.Duration
		if err := wholeSeconds("spec.connectRetryTime", view.ConnectRetryTime, 1, 65535); err != nil {
			return bgpplan.Peer{}, err
		}
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled {
		view.GracefulRestart = true
		view.RestartTime = heraldv1.DefaultGracefulRestartSeconds * time.Second
		if gr.RestartTime != nil {
			view.RestartTime = gr.RestartTime.Duration
			if err := wholeSeconds("spec.gracefulRestart.restartTime", view.RestartTime, 1, 4095); err != nil {
				return bgpplan.Peer{}, err
			}
		}
	}
	if b := s.BFD; b != nil {
		bfd := &bgpplan.BFD{MinTransmit: 300 * time.Millisecond, MinReceive: 300 * time.Millisecond, Multiplier: 3}
		for _, f := range []struct {
			field string
			v     *int32
			into  *time.Duration
		}{{"spec.bfd.minTransmitInterval", b.MinTransmitInterval, &bfd.MinTransmit}, {"spec.bfd.minReceiveInterval", b.MinReceiveInterval, &bfd.MinReceive}} {
			if f.v == nil {
				continue
			}
			if *f.v < 10 || *f.v > 60000 {
				return bgpplan.Peer{}, fmt.Errorf("%s: %d ms is not from 10 to 60000", f.field, *f.v)
			}
			*f.into = time.Duration(*f.v) * time.Millisecond
		}
		if b.Multiplier != nil {
			if *b.Multiplier < 1 || *b.Multiplier > 255 {
				return bgpplan.Peer{}, fmt.Errorf("spec.bfd.multiplier: %d is not from 1 to 255", *b.Multiplier)
			}
			bfd.Multiplier = uint8(*b.Multiplier)
		}
		view.BFD = bfd
	}

	view.SelectsNode = true
	if s.NodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(s.NodeSelector)
		if err != nil {
			return bgpplan.Peer{}, fmt.Errorf("spec.nodeSelector: %w", err)
		}
		view.SelectsNode = node != nil && sel.Matches(labels.Set(node.Labels))
	}
	return view, nil
}

// asn checks an AS number's range.
func asn(field string, v int64) (uint32, error) {
	if v < 1 || v > 4294967295 || v == 23456 {
		return 0, fmt.Errorf("%s: %d is not an AS number (1 to 4294967295, not 23456)", field, v)
	}
	return uint32(v), nil
}

// wholeSeconds checks a BGP timer: whole seconds from lo to hi.
func wholeSeconds(field string, d time.Duration, lo, hi int64) error {
	if d%time.Second != 0 || int64(d/time.Second) < lo || int64(d/time.Second) > hi {
		return fmt.Errorf("%s: %s is not whole seconds from %ds to %ds", field, d, lo, hi)
	}
	return nil
}

// BGPAdvertisementView reduces a BGPAdvertisement to what node (nil:
// unknown, so a nodeSelector matches nothing) decides on.
func BGPAdvertisementView(a *heraldv1.BGPAdvertisement, node *corev1.Node) (bgpplan.Advertisement, error) {
	s := &a.Spec
	view := bgpplan.Advertisement{Name: a.Name, AggregationLength: s.AggregationLengthV4(), AggregationLengthV6: s.AggregationLengthIPv6()}
	if view.AggregationLength < 0 || view.AggregationLength > 32 {
		return bgpplan.Advertisement{}, fmt.Errorf("spec.aggregationLength: %d is not from 0 to 32", view.AggregationLength)
	}
	if view.AggregationLengthV6 < 0 || view.AggregationLengthV6 > 128 {
		return bgpplan.Advertisement{}, fmt.Errorf("spec.aggregationLengthV6: %d is not from 0 to 128", view.AggregationLengthV6)
	}
	for i, c := range s.Communities {
		v, err := bgpplan.ParseCommunity(string(c))
		if err != nil {
			return bgpplan.Advertisement{}, fmt.Errorf("spec.communities[%d]: %w", i, err)
		}
		view.Communities = append(view.Communities, v)
	}
	for i, c := range s.LargeCommunities {
		v, err := bgpplan.ParseLargeCommunity(string(c))
		if err != nil {
			return bgpplan.Advertisement{}, fmt.Errorf("spec.largeCommunities[%d]: %w", i, err)
		}
		view.LargeCommunities = append(view.LargeCommunities, v)
	}
	if s.LocalPref != nil {
		if *s.LocalPref < 0 || *s.LocalPref > 4294967295 {
			return bgpplan.Advertisement{}, fmt.Errorf("spec.localPref: %d is not from 0 to 4294967295", *s.LocalPref)
		}
		v := uint32(*s.LocalPref)
		view.LocalPref = &v
	}
	for _, f := range []struct {
		field string
		sel   *metav1.LabelSelector
		into  *bgpplan.Selector
	}{{"spec.poolSelector", s.PoolSelector, &view.Pools}, {"spec.serviceSelector", s.ServiceSelector, &view.Services}, {"spec.peerSelector", s.PeerSelector, &view.Peers}} {
		if f.sel == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(f.sel)
		if err != nil {
			return bgpplan.Advertisement{}, fmt.Errorf("%s: %w", f.field, err)
		}
		*f.into = LabelSelector{Selector: sel}
	}
	view.SelectsNode = true
	if s.NodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(s.NodeSelector)
		if err != nil {
			return bgpplan.Advertisement{}, fmt.Errorf("spec.nodeSelector: %w", err)
		}
		view.SelectsNode = node != nil && sel.Matches(labels.Set(node.Labels))
	}
	return view, nil
}

// BGPNode is the bgpplan view of node: excluded is whether it counts as
// carrying the exclude label, ifaces its interfaces (from netlink in the
// agent, from its HeraldNode report elsewhere: BGPReportInterfaces), and
// override its BGPNodeOverride (nil: none). An override that cannot be
// used is an error naming the field; the node is then planned without it.
func BGPNode(node *corev1.Node, excluded bool, ifaces []bgpplan.Interface, override *heraldv1.BGPNodeOverride) (bgpplan.Node, error) {
	view := bgpplan.Node{Name: node.Name, ExcludedByLabel: excluded, Addrs: NodeAddrs(node), Interfaces: ifaces}
	if override == nil {
		return view, nil
	}
	var o bgpplan.Override
	s := &override.Spec
	if s.RouterID != "" {
		a, err := netip.ParseAddr(s.RouterID)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			return view, fmt.Errorf("spec.routerID: %q is not a non-zero IPv4 address", s.RouterID)
		}
		o.RouterID = a
	}
	if s.LocalASN != nil {
		v, err := asn("spec.localASN", *s.LocalASN)
		if err != nil {
			return view, err
		}
		o.LocalASN = v
	}
	for i, p := range s.Peers {
		a, err := netip.ParseAddr(p.LocalAddress)
		if err != nil || a.Zone() != "" {
			return view, fmt.Errorf("spec.peers[%d].localAddress: %q is not an IP address", i, p.LocalAddress)
		}
		if o.LocalAddrs == nil {
			o.LocalAddrs = map[string]netip.Addr{}
		}
		o.LocalAddrs[p.Peer] = a.Unmap()
	}
	view.Override = o
	return view, nil
}

// NodeAddrs are node's InternalIPs, then its ExternalIPs, as addresses.
func NodeAddrs(node *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, na := range node.Status.Addresses {
			if na.Type != t {
				continue
			}
			if a, err := netip.ParseAddr(na.Address); err == nil && !slices.Contains(out, a.Unmap()) {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// BGPReportInterfaces is the bgpplan view of the interfaces an agent
// reports in its HeraldNode. Agents report addresses for LAN interfaces
// only, so a session the agent sources from another interface (a
// loopback named by an override) is judged without it: the agent's own
// plan, from netlink, is the authority, and its sessions are in
// status.bgp.
func BGPReportInterfaces(report *heraldv1.HeraldNodeStatus) []bgpplan.Interface {
	var out []bgpplan.Interface
	for _, i := range report.Interfaces {
		v := bgpplan.Interface{Name: i.Name, Up: i.Up, Loopback: i.Loopback, LAN: i.LAN}
		for _, s := range i.Addresses {
			if p, err := netip.ParsePrefix(s); err == nil {
				v.Addrs = append(v.Addrs, p)
			}
		}
		out = append(out, v)
	}
	return out
}

// PoolIndex finds the LoadBalancerIPPool an address comes from.
type PoolIndex struct {
	pools []indexedPool
}

type indexedPool struct {
	name    string
	labels  map[string]string
	created time.Time
	blocks  []ipam.Block
}

// NewPoolIndex indexes pools. Where pools overlap, an address belongs to
// the oldest (then first by name): the allocator marks the newer pool
// PoolConflict and hands out nothing from it.
func NewPoolIndex(pools []heraldv1.LoadBalancerIPPool) *PoolIndex {
	x := &PoolIndex{}
	for i := range pools {
		p := &pools[i]
		ip := indexedPool{name: p.Name, labels: p.Labels, created: p.CreationTimestamp.Time}
		for _, b := range p.Spec.Blocks {
			if blk, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, true); err == nil {
				ip.blocks = append(ip.blocks, blk)
			}
		}
		x.pools = append(x.pools, ip)
	}
	slices.SortFunc(x.pools, func(a, b indexedPool) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return x
}

// Lookup is the pool holding a, with its labels; "" when none does (or
// x is nil).
func (x *PoolIndex) Lookup(a netip.Addr) (string, map[string]string) {
	if x == nil {
		return "", nil
	}
	for _, p := range x.pools {
		if slices.ContainsFunc(p.blocks, func(b ipam.Block) bool { return b.Contains(a) }) {
			return p.name, p.labels
		}
	}
	return "", nil
}

// BGPService reduces a Service to what BGP advertising needs: its
// load-balancer addresses (when Herald serves it) with their pools.
// localReady is whether this node has a ready endpoint of it. ok is false
// for a Service with nothing to advertise.
func BGPService(svc *corev1.Service, defaultClass, localReady bool, pools *PoolIndex) (bgpplan.Service, bool) {
	view := bgpplan.Service{
		Key:                svc.Namespace + "/" + svc.Name,
		Labels:             ServiceLabels(svc),
		TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		LocalReadyEndpoint: localReady,
	}
	if !Serves(svc, defaultClass) {
		return view, false
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(in.IP)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if slices.ContainsFunc(view.Addrs, func(x bgpplan.Address) bool { return x.Addr == a }) {
			continue
		}
		name, l := pools.Lookup(a)
		view.Addrs = append(view.Addrs, bgpplan.Address{Addr: a, Pool: name, PoolLabels: l})
	}
	return view, len(view.Addrs) > 0
}

// IndexBGPAdvertisers adds what node advertises by BGP (its HeraldNode's
// status.bgp: addresses and the peers of established sessions that get
// them) to advertisers, by address, for announce.WithBGP. notReady: the
// Node is known not to be Ready.
func IndexBGPAdvertisers(advertisers map[netip.Addr][]announce.Advertiser, node string, st *heraldv1.NodeBGP, notReady bool) {
	if st == nil {
		return
	}
	peers := map[string]announce.BGPPeerRef{}
	for _, s := range st.Sessions {
		a, _ := netip.ParseAddr(s.Address)
		peers[s.Peer] = announce.BGPPeerRef{Name: s.Peer, Addr: a, ASN: uint32(s.PeerASN)}
	}
	for _, adv := range st.Advertised {
		ip, err := netip.ParseAddr(adv.Address)
		if err != nil {
			continue
		}
		a := announce.Advertiser{Node: node, NotReady: notReady}
		for _, p := range adv.Peers {
			a.Peers = append(a.Peers, peers[p])
		}
		advertisers[ip.Unmap()] = append(advertisers[ip.Unmap()], a)
	}
}
