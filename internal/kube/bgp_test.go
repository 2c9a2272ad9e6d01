package kube

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/bgpplan"
)

var cmpAddrs = []cmp.Option{
	cmp.Comparer(func(x, y netip.Addr) bool { return x == y }),
	cmp.Comparer(func(x, y netip.Prefix) bool { return x == y }),
	// Selectors are checked by what they match, below.
	cmp.Comparer(func(x, y bgpplan.Selector) bool { return (x == nil) == (y == nil) }),
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func rackNode(rack string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"rack": rack}}}
}

func TestBGPPeerView(t *testing.T) {
	base := func(mod func(*heraldv1.BGPPeerSpec)) *heraldv1.BGPPeer {
		p := &heraldv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-a", Labels: map[string]string{"rack": "a"}},
			Spec: heraldv1.BGPPeerSpec{Address: "192.168.20.1", PeerASN: 64512, LocalASN: 64513}}
		if mod != nil {
			mod(&p.Spec)
		}
		return p
	}
	want := func(mod func(*bgpplan.Peer)) bgpplan.Peer {
		v := bgpplan.Peer{Name: "tor-a", Labels: map[string]string{"rack": "a"}, Addr: netip.MustParseAddr("192.168.20.1"), Port: 179,
			PeerASN: 64512, LocalASN: 64513, SelectsNode: true,
			HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second, ConnectRetryTime: 10 * time.Second}
		if mod != nil {
			mod(&v)
		}
		return v
	}
	cases := []struct {
		name    string
		peer    *heraldv1.BGPPeer
		node    *corev1.Node
		want    bgpplan.Peer
		wantErr string
	}{
		{name: "defaults", peer: base(nil), node: rackNode("a"), want: want(nil)},
		{name: "everything", node: rackNode("a"), peer: base(func(s *heraldv1.BGPPeerSpec) {
			s.Address = "::ffff:192.168.20.1"
			s.Port = 1179
			s.PasswordSecretRef = &heraldv1.SecretKeyRef{Name: "tor", Key: "a"}
			s.HoldTime, s.KeepaliveTime, s.ConnectRetryTime = dur(9*time.Second), dur(2*time.Second), dur(5*time.Second)
			s.EBGPMultihop = ptr.To[int32](4)
			s.GracefulRestart = &heraldv1.BGPGracefulRestart{Enabled: true, RestartTime: dur(30 * time.Second)}
			s.BFD = &heraldv1.BGPBFD{MinTransmitInterval: ptr.To[int32](100), MinReceiveInterval: ptr.To[int32](200), Multiplier: ptr.To[int32](5)}
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
		}), want: want(func(v *bgpplan.Peer) {
			v.Port = 1179
			v.Password = bgpplan.SecretKey{Name: "tor", Key: "a"}
			v.HoldTime, v.KeepaliveTime, v.ConnectRetryTime = 9*time.Second, 2*time.Second, 5*time.Second
			v.EBGPMultihop = 4
			v.GracefulRestart, v.RestartTime = true, 30*time.Second
			v.BFD = &bgpplan.BFD{MinTransmit: 100 * time.Millisecond, MinReceive: 200 * time.Millisecond, Multiplier: 5}
		})},
		{name: "keepalive a third of the hold time", peer: base(func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur(10 * time.Second) }),
			want: want(func(v *bgpplan.Peer) { v.HoldTime, v.KeepaliveTime = 10*time.Second, 3*time.Second })},
		{name: "hold 0: no keepalives", peer: base(func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur(0) }),
			want: want(func(v *bgpplan.Peer) { v.HoldTime, v.KeepaliveTime = 0, 0 })},
		{name: "password key defaults", peer: base(func(s *heraldv1.BGPPeerSpec) { s.PasswordSecretRef = &heraldv1.SecretKeyRef{Name: "tor"} }),
			want: want(func(v *bgpplan.Peer) { v.Password = bgpplan.SecretKey{Name: "tor", Key: "password"} })},
		{name: "graceful restart default time", peer: base(func(s *heraldv1.BGPPeerSpec) { s.GracefulRestart = &heraldv1.BGPGracefulRestart{Enabled: true} }),
			want: want(func(v *bgpplan.Peer) { v.GracefulRestart, v.RestartTime = true, 120*time.Second })},
		{name: "graceful restart off", peer: base(func(s *heraldv1.BGPPeerSpec) {
			s.GracefulRestart = &heraldv1.BGPGracefulRestart{RestartTime: dur(time.Second)}
		}), want: want(nil)},
		{name: "BFD defaults", peer: base(func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{} }),
			want: want(func(v *bgpplan.Peer) {
				v.BFD = &bgpplan.BFD{MinTransmit: 300 * time.Millisecond, MinReceive: 300 * time.Millisecond, Multiplier: 3}
			})},
		{name: "other rack", node: rackNode("b"), peer: base(func(s *heraldv1.BGPPeerSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
		}), want: want(func(v *bgpplan.Peer) { v.SelectsNode = false })},
		{name: "unknown node", peer: base(func(s *heraldv1.BGPPeerSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
		}), want: want(func(v *bgpplan.Peer) { v.SelectsNode = false })},

		{name: "bad address", peer: base(func(s *heraldv1.BGPPeerSpec) { s.Address = "tor-a" }), wantErr: "spec.address"},
		{name: "zoned address", peer: base(func(s *heraldv1.BGPPeerSpec) { s.Address = "fe80::1%eth0" }), wantErr: "spec.address"},
		{name: "AS_TRANS", peer: base(func(s *heraldv1.BGPPeerSpec) { s.PeerASN = 23456 }), wantErr: "spec.peerASN"},
		{name: "local ASN 0", peer: base(func(s *heraldv1.BGPPeerSpec) { s.LocalASN = 0 }), wantErr: "spec.localASN"},
		{name: "port", peer: base(func(s *heraldv1.BGPPeerSpec) { s.Port = 70000 }), wantErr: "spec.port"},
		{name: "multihop", peer: base(func(s *heraldv1.BGPPeerSpec) { s.EBGPMultihop = ptr.To[int32](0) }), wantErr: "spec.ebgpMultihop"},
		{name: "hold 2s", peer: base(func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur(2 * time.Second) }), wantErr: "spec.holdTime"},
		{name: "hold fraction", peer: base(func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur(3500 * time.Millisecond) }), wantErr: "spec.holdTime"},
		{name: "keepalive not below hold", peer: base(func(s *heraldv1.BGPPeerSpec) { s.KeepaliveTime = dur(90 * time.Second) }), wantErr: "spec.keepaliveTime"},
		{name: "keepalive with hold 0", peer: base(func(s *heraldv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur(0), dur(time.Second) }), wantErr: "spec.keepaliveTime"},
		{name: "connect retry 0", peer: base(func(s *heraldv1.BGPPeerSpec) { s.ConnectRetryTime = dur(0) }), wantErr: "spec.connectRetryTime"},
		{name: "restart time", peer: base(func(s *heraldv1.BGPPeerSpec) {
			s.GracefulRestart = &heraldv1.BGPGracefulRestart{Enabled: true, RestartTime: dur(4096 * time.Second)}
		}), wantErr: "spec.gracefulRestart.restartTime"},
		{name: "BFD interval", peer: base(func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{MinReceiveInterval: ptr.To[int32](5)} }), wantErr: "spec.bfd.minReceiveInterval"},
		{name: "BFD multiplier", peer: base(func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{Multiplier: ptr.To[int32](0)} }), wantErr: "spec.bfd.multiplier"},
		{name: "node selector", peer: base(func(s *heraldv1.BGPPeerSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: "Near"}}}
		}), wantErr: "spec.nodeSelector"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := BGPPeerView(c.peer, c.node)
			if c.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), c.wantErr+":") {
					t.Fatalf("error %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got, cmpAddrs...); d != "" {
				t.Errorf("view (-want +got):\n%s", d)
			}
		})
	}
}

func TestBGPAdvertisementView(t *testing.T) {
	a := &heraldv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: heraldv1.BGPAdvertisementSpec{
		PoolSelector:        &metav1.LabelSelector{MatchLabels: map[string]string{"announce": "bgp"}},
		ServiceSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{ServiceNamespaceLabel: "prod"}},
		PeerSelector:        &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}},
		NodeSelector:        &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}},
		Communities:         []heraldv1.BGPCommunity{"64512:100", "no-export"},
		LargeCommunities:    []heraldv1.BGPLargeCommunity{"64512:1:2"},
		LocalPref:           ptr.To[int64](200),
		AggregationLength:   ptr.To[int32](24),
		AggregationLengthV6: ptr.To[int32](64),
	}}
	got, err := BGPAdvertisementView(a, rackNode("a"))
	if err != nil {
		t.Fatal(err)
	}
	want := bgpplan.Advertisement{Name: "adv", SelectsNode: true, Pools: LabelSelector{}, Services: LabelSelector{}, Peers: LabelSelector{},
		Communities: []bgpplan.Community{64512<<16 | 100, bgpplan.NoExport}, LargeCommunities: []bgpplan.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}},
		LocalPref: ptr.To[uint32](200), AggregationLength: 24, AggregationLengthV6: 64}
	if d := cmp.Diff(want, got, cmpAddrs...); d != "" {
		t.Errorf("view (-want +got):\n%s", d)
	}
	for _, m := range []struct {
		sel  bgpplan.Selector
		yes  map[string]string
		no   map[string]string
		what string
	}{
		{got.Pools, map[string]string{"announce": "bgp"}, map[string]string{"announce": "l2"}, "pools"},
		{got.Services, map[string]string{ServiceNamespaceLabel: "prod"}, map[string]string{ServiceNamespaceLabel: "dev"}, "services"},
		{got.Peers, map[string]string{"rack": "a"}, map[string]string{"rack": "b"}, "peers"},
	} {
		if !m.sel.Matches(m.yes) || m.sel.Matches(m.no) {
			t.Errorf("%s selector does not match as written", m.what)
		}
	}
	if v, _ := BGPAdvertisementView(a, rackNode("b")); v.SelectsNode {
		t.Error("selects a node of rack b")
	}
	if v, _ := BGPAdvertisementView(a, nil); v.SelectsNode {
		t.Error("selects an unknown node")
	}
	empty, err := BGPAdvertisementView(&heraldv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(bgpplan.Advertisement{Name: "all", SelectsNode: true, AggregationLength: 32, AggregationLengthV6: 128}, empty, cmpAddrs...); d != "" {
		t.Errorf("empty advertisement (-want +got):\n%s", d)
	}

	for _, c := range []struct {
		mod     func(*heraldv1.BGPAdvertisementSpec)
		wantErr string
	}{
		{func(s *heraldv1.BGPAdvertisementSpec) { s.Communities = []heraldv1.BGPCommunity{"1:1", "65536:1"} }, "spec.communities[1]"},
		{func(s *heraldv1.BGPAdvertisementSpec) { s.LargeCommunities = []heraldv1.BGPLargeCommunity{"1:1"} }, "spec.largeCommunities[0]"},
		{func(s *heraldv1.BGPAdvertisementSpec) { s.LocalPref = ptr.To[int64](-1) }, "spec.localPref"},
		{func(s *heraldv1.BGPAdvertisementSpec) { s.AggregationLength = ptr.To[int32](33) }, "spec.aggregationLength"},
		{func(s *heraldv1.BGPAdvertisementSpec) { s.AggregationLengthV6 = ptr.To[int32](-1) }, "spec.aggregationLengthV6"},
		{func(s *heraldv1.BGPAdvertisementSpec) {
			s.PeerSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: "Near"}}}
		}, "spec.peerSelector"},
		{func(s *heraldv1.BGPAdvertisementSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: "Near"}}}
		}, "spec.nodeSelector"},
	} {
		bad := &heraldv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bad"}}
		c.mod(&bad.Spec)
		if _, err := BGPAdvertisementView(bad, nil); err == nil || !strings.HasPrefix(err.Error(), c.wantErr+":") {
			t.Errorf("error %v, want one naming %s", err, c.wantErr)
		}
	}
}

func TestBGPNode(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node1"},
		{Type: corev1.NodeExternalIP, Address: "203.0.113.11"},
		{Type: corev1.NodeInternalIP, Address: "192.168.20.11"},
		{Type: corev1.NodeInternalIP, Address: "2001:db8:20::11"},
		{Type: corev1.NodeInternalIP, Address: "192.168.20.11"},
	}}}
	ifaces := []bgpplan.Interface{{Name: "eth0", Up: true, LAN: true}}
	got, err := BGPNode(node, true, ifaces, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := bgpplan.Node{Name: "node1", ExcludedByLabel: true, Interfaces: ifaces, Addrs: []netip.Addr{
		netip.MustParseAddr("192.168.20.11"), netip.MustParseAddr("2001:db8:20::11"), netip.MustParseAddr("203.0.113.11")}}
	if d := cmp.Diff(want, got, cmpAddrs...); d != "" {
		t.Errorf("node (-want +got):\n%s", d)
	}

	o := &heraldv1.BGPNodeOverride{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: heraldv1.BGPNodeOverrideSpec{
		RouterID: "10.255.0.11", LocalASN: ptr.To[int64](4200000011),
		Peers: []heraldv1.BGPNodePeerOverride{{Peer: "rr", LocalAddress: "10.255.0.11"}, {Peer: "rr6", LocalAddress: "2001:db8:ff::11"}},
	}}
	got, err = BGPNode(node, false, ifaces, o)
	if err != nil {
		t.Fatal(err)
	}
	wantO := bgpplan.Override{RouterID: netip.MustParseAddr("10.255.0.11"), LocalASN: 4200000011, LocalAddrs: map[string]netip.Addr{
		"rr": netip.MustParseAddr("10.255.0.11"), "rr6": netip.MustParseAddr("2001:db8:ff::11")}}
	if d := cmp.Diff(wantO, got.Override, cmpAddrs...); d != "" {
		t.Errorf("override (-want +got):\n%s", d)
	}
	for _, c := range []struct {
		mod     func(*heraldv1.BGPNodeOverrideSpec)
		wantErr string
	}{
		{func(s *heraldv1.BGPNodeOverrideSpec) { s.RouterID = "2001:db8::1" }, "spec.routerID"},
		{func(s *heraldv1.BGPNodeOverrideSpec) { s.RouterID = "0.0.0.0" }, "spec.routerID"},
		{func(s *heraldv1.BGPNodeOverrideSpec) { s.LocalASN = ptr.To[int64](1 << 32) }, "spec.localASN"},
		{func(s *heraldv1.BGPNodeOverrideSpec) { s.Peers[1].LocalAddress = "lo" }, "spec.peers[1].localAddress"},
	} {
		bad := o.DeepCopy()
		c.mod(&bad.Spec)
		v, err := BGPNode(node, false, ifaces, bad)
		if err == nil || !strings.HasPrefix(err.Error(), c.wantErr+":") {
			t.Errorf("error %v, want one naming %s", err, c.wantErr)
		}
		if d := cmp.Diff(bgpplan.Override{}, v.Override, cmpAddrs...); d != "" || v.Name != "node1" {
			t.Errorf("an unusable override still applied: %+v", v)
		}
	}
}

func TestBGPReportInterfaces(t *testing.T) {
	got := BGPReportInterfaces(&heraldv1.HeraldNodeStatus{Interfaces: []heraldv1.NodeInterface{
		{Name: "lo", Up: true, Loopback: true},
		{Name: "eth0", Up: true, Broadcast: true, LAN: true, Addresses: []string{"192.168.20.11/24", "junk", "2001:db8:20::11/64"}},
	}})
	want := []bgpplan.Interface{
		{Name: "lo", Up: true, Loopback: true},
		{Name: "eth0", Up: true, LAN: true, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.20.11/24"), netip.MustParsePrefix("2001:db8:20::11/64")}},
	}
	if d := cmp.Diff(want, got, cmpAddrs...); d != "" {
		t.Errorf("interfaces (-want +got):\n%s", d)
	}
}

func TestBGPService(t *testing.T) {
	at := func(s string) metav1.Time { tm, _ := time.Parse(time.RFC3339, s); return metav1.NewTime(tm) }
	pools := NewPoolIndex([]heraldv1.LoadBalancerIPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "newer", CreationTimestamp: at("2026-02-01T00:00:00Z"), Labels: map[string]string{"age": "new"}},
			Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "198.51.100.0/24"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "older", CreationTimestamp: at("2026-01-01T00:00:00Z"), Labels: map[string]string{"age": "old"}},
			Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{Start: "198.51.100.10", Stop: "198.51.100.20"}, {CIDR: "bad"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "v6", CreationTimestamp: at("2026-03-01T00:00:00Z")},
			Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "2001:db8:100::/64"}}}},
	})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "198.51.100.15"}, {IP: "198.51.100.30"}, {IP: "2001:db8:100::1"}, {IP: "203.0.113.1"}, {Hostname: "lb.example"}, {IP: "::ffff:198.51.100.15"},
		}}},
	}
	got, ok := BGPService(svc, true, true, pools)
	if !ok {
		t.Fatal("not ok")
	}
	want := bgpplan.Service{Key: "prod/web", Labels: map[string]string{"app": "web", ServiceNamespaceLabel: "prod", ServiceNameLabel: "web"},
		TrafficPolicyLocal: true, LocalReadyEndpoint: true, Addrs: []bgpplan.Address{
			{Addr: netip.MustParseAddr("198.51.100.15"), Pool: "older", PoolLabels: map[string]string{"age": "old"}},
			{Addr: netip.MustParseAddr("198.51.100.30"), Pool: "newer", PoolLabels: map[string]string{"age": "new"}},
			{Addr: netip.MustParseAddr("2001:db8:100::1"), Pool: "v6"},
			{Addr: netip.MustParseAddr("203.0.113.1")},
		}}
	if d := cmp.Diff(want, got, cmpAddrs...); d != "" {
		t.Errorf("service (-want +got):\n%s", d)
	}
	if _, ok := BGPService(svc, false, true, pools); ok {
		t.Error("a Service of no class served with --default-class=false")
	}
	other := svc.DeepCopy()
	other.Spec.LoadBalancerClass = ptr.To("example.com/other")
	if _, ok := BGPService(other, true, true, pools); ok {
		t.Error("a Service of another class served")
	}
	pending := svc.DeepCopy()
	pending.Status.LoadBalancer.Ingress = nil
	if _, ok := BGPService(pending, true, true, pools); ok {
		t.Error("a Service without addresses has something to advertise")
	}
	if name, _ := (*PoolIndex)(nil).Lookup(netip.MustParseAddr("198.51.100.15")); name != "" {
		t.Errorf("nil index found %q", name)
	}
}

// The views make a plan end to end: the adapter and the planner agree on
// what the objects say.
func TestBGPViewsPlan(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"rack": "a"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.20.11"}}}}
	peer, err := BGPPeerView(&heraldv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor-a"},
		Spec: heraldv1.BGPPeerSpec{Address: "192.168.20.1", PeerASN: 64512, LocalASN: 64513,
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}}}, node)
	if err != nil {
		t.Fatal(err)
	}
	adv, err := BGPAdvertisementView(&heraldv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "bgp"},
		Spec: heraldv1.BGPAdvertisementSpec{PoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"announce": "bgp"}},
			Communities: []heraldv1.BGPCommunity{"no-export"}}}, node)
	if err != nil {
		t.Fatal(err)
	}
	pools := NewPoolIndex([]heraldv1.LoadBalancerIPPool{
		{ObjectMeta: metav1.ObjectMeta{Name: "bgp", Labels: map[string]string{"announce": "bgp"}}, Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "198.51.100.0/24"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "l2"}, Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "192.168.10.0/24"}}}},
	})
	mk := func(name, ip string) bgpplan.Service {
		s, ok := BGPService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: ip}}}}}, true, false, pools)
		if !ok {
			t.Fatalf("%s not ok", name)
		}
		return s
	}
	n, err := BGPNode(node, false, []bgpplan.Interface{{Name: "eth0", Up: true, LAN: true, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.20.11/24")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan := bgpplan.Compute(n, []bgpplan.Peer{peer}, []bgpplan.Advertisement{adv}, []bgpplan.Service{mk("web", "198.51.100.10"), mk("lan", "192.168.10.5")})
	if len(plan.Sessions) != 1 || len(plan.Sessions[0].Routes) != 1 {
		t.Fatalf("sessions %+v", plan.Sessions)
	}
	r := plan.Sessions[0].Routes[0]
	if r.Prefix.String() != "198.51.100.10/32" || r.NextHop.String() != "192.168.20.11" || len(r.Communities) != 1 || r.Communities[0] != bgpplan.NoExport {
		t.Errorf("route %+v", r)
	}
	for _, v := range plan.Verdicts {
		if v.Service == "prod/lan" && v.Reason != bgpplan.NoAdvertisement {
			t.Errorf("the L2 pool's Service: %+v", v)
		}
	}
}
