package bgpplan

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// labels is a Selector matching when every key has its value.
type labels map[string]string

func (s labels) Matches(l map[string]string) bool {
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return true
}

var (
	addr = netip.MustParseAddr
	pfx  = netip.MustParsePrefix
)

func u32(v uint32) *uint32 { return &v }

// node1 is a dual-stack node: eth0 on the rack's LAN (IPv4 and IPv6), a
// Pod bridge, loopback with a stable address.
func node1() Node {
	return Node{
		Name:  "node1",
		Addrs: []netip.Addr{addr("192.168.20.11"), addr("2001:db8:20::11")},
		Interfaces: []Interface{
			{Name: "lo", Up: true, Loopback: true, Addrs: []netip.Prefix{pfx("127.0.0.1/8"), pfx("10.255.0.11/32")}},
			{Name: "eth0", Up: true, LAN: true, Addrs: []netip.Prefix{pfx("192.168.20.11/24"), pfx("2001:db8:20::11/64"), pfx("fe80::11/64")}},
			{Name: "cni0", Up: true, Addrs: []netip.Prefix{pfx("10.244.1.1/24")}},
		},
	}
}

// torA is the rack's router, eBGP.
func torA() Peer {
	return Peer{Name: "tor-a", Addr: addr("192.168.20.1"), Port: 179, PeerASN: 64512, LocalASN: 64513, SelectsNode: true,
		Labels: map[string]string{"rack": "a"}}
}

// torA6 is the same router over IPv6.
func torA6() Peer {
	return Peer{Name: "tor-a-v6", Addr: addr("2001:db8:20::1"), Port: 179, PeerASN: 64512, LocalASN: 64513, SelectsNode: true,
		Labels: map[string]string{"rack": "a"}}
}

// all advertises everything to everyone from everywhere.
func all() Advertisement {
	return Advertisement{Name: "all", SelectsNode: true, AggregationLength: 32, AggregationLengthV6: 128}
}

func svc(key, ip string, mods ...func(*Service)) Service {
	ns, name, _ := strings.Cut(key, "/")
	s := Service{Key: key, Labels: map[string]string{"io.kubernetes.service.namespace": ns, "io.kubernetes.service.name": name}}
	for _, a := range strings.Split(ip, ",") {
		if a != "" {
			s.Addrs = append(s.Addrs, Address{Addr: addr(a), Pool: "bgp", PoolLabels: map[string]string{"announce": "bgp"}})
		}
	}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func local(ready bool) func(*Service) {
	return func(s *Service) { s.TrafficPolicyLocal, s.LocalReadyEndpoint = true, ready }
}

func TestRouterID(t *testing.T) {
	v6only := Node{Name: "node6", Addrs: []netip.Addr{addr("2001:db8::6")}}
	cases := []struct {
		name   string
		node   Node
		want   netip.Addr
		source RouterIDSource
	}{
		{"override", func() Node { n := node1(); n.Override.RouterID = addr("10.255.0.11"); return n }(), addr("10.255.0.11"), RouterIDOverride},
		{"first IPv4 node address", node1(), addr("192.168.20.11"), RouterIDNodeAddress},
		{"IPv4 after IPv6", Node{Name: "n", Addrs: []netip.Addr{addr("2001:db8::1"), addr("10.0.0.7"), addr("10.0.0.8")}}, addr("10.0.0.7"), RouterIDNodeAddress},
		{"mapped IPv4", Node{Name: "n", Addrs: []netip.Addr{addr("::ffff:10.0.0.9")}}, addr("10.0.0.9"), RouterIDNodeAddress},
		{"IPv6-only: derived from the name", v6only, netip.Addr{}, RouterIDDerived},
		{"IPv6 override ignored", func() Node { n := v6only; n.Override.RouterID = addr("2001:db8::1"); return n }(), netip.Addr{}, RouterIDDerived},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, src := NewPlanner(c.node, nil, nil).RouterID()
			if src != c.source {
				t.Errorf("source %s, want %s", src, c.source)
			}
			if c.want.IsValid() && got != c.want {
				t.Errorf("router ID %s, want %s", got, c.want)
			}
			if !got.Is4() || got == netip.IPv4Unspecified() {
				t.Errorf("router ID %s is not a non-zero IPv4 address", got)
			}
		})
	}
	// Derived IDs: stable, and different for different names.
	a, _ := NewPlanner(Node{Name: "node6"}, nil, nil).RouterID()
	b, _ := NewPlanner(Node{Name: "node6"}, nil, nil).RouterID()
	c, _ := NewPlanner(Node{Name: "node7"}, nil, nil).RouterID()
	if a != b || a == c {
		t.Errorf("derived router IDs: node6 %s and %s, node7 %s", a, b, c)
	}
}

func TestSessions(t *testing.T) {
	routed := Peer{Name: "rr", Addr: addr("10.99.0.1"), PeerASN: 64513, LocalASN: 64513, SelectsNode: true}
	cases := []struct {
		name   string
		node   func(*Node)
		peer   func(*Peer)
		extra  []Peer // other peers, before the one checked
		open   bool
		reason Reason
		// local address, its source, interface; or words of the message.
		local     string
		source    LocalAddrSource
		iface     string
		ibgp      bool
		localASN  uint32
		wantWords []string
	}{
		{name: "connected IPv4", open: true, local: "192.168.20.11", source: LocalAddrSubnet, iface: "eth0", localASN: 64513},
		{name: "connected IPv6, link-local skipped", peer: func(p *Peer) { *p = torA6() },
			open: true, local: "2001:db8:20::11", source: LocalAddrSubnet, iface: "eth0", localASN: 64513},
		{name: "LAN interface preferred over another on the same subnet",
			node: func(n *Node) {
				n.Interfaces = append([]Interface{{Name: "aaa0", Up: true, Addrs: []netip.Prefix{pfx("192.168.20.99/24")}}}, n.Interfaces...)
			}, open: true, local: "192.168.20.11", source: LocalAddrSubnet, iface: "eth0", localASN: 64513},
		{name: "by name among non-LAN interfaces",
			node: func(n *Node) {
				n.Interfaces = []Interface{
					{Name: "vlan20", Up: true, Addrs: []netip.Prefix{pfx("192.168.20.12/24")}},
					{Name: "bond0", Up: true, Addrs: []netip.Prefix{pfx("192.168.20.13/24")}},
				}
			}, open: true, local: "192.168.20.13", source: LocalAddrSubnet, iface: "bond0", localASN: 64513},
		{name: "first matching address of the interface",
			node: func(n *Node) {
				n.Interfaces[1].Addrs = []netip.Prefix{pfx("10.1.0.5/16"), pfx("192.168.20.11/24"), pfx("192.168.20.50/24")}
			}, open: true, local: "192.168.20.11", source: LocalAddrSubnet, iface: "eth0", localASN: 64513},
		{name: "down interface not used",
			node: func(n *Node) { n.Interfaces[1].Up = false },
			open: false, reason: NoLocalAddress, wantWords: []string{"tor-a", "none of node node1's subnets", "ebgpMultihop", "10.244.1.0/24 on cni0"}},
		{name: "loopback's subnet not used for a connected peer",
			peer: func(p *Peer) { p.Addr = addr("10.255.0.1") },
			node: func(n *Node) { n.Interfaces[0].Addrs = []netip.Prefix{pfx("10.255.0.11/24")} },
			open: false, reason: NoLocalAddress, wantWords: []string{"10.255.0.1", "ebgpMultihop"}},
		{name: "eBGP not connected, no multihop", peer: func(p *Peer) { p.Addr = addr("10.99.0.1") },
			open: false, reason: NoLocalAddress, wantWords: []string{"BGPPeer tor-a (10.99.0.1, AS 64512)", "192.168.20.0/24 on eth0", "spec.ebgpMultihop"}},
		{name: "eBGP, the node has no IPv4 subnet",
			node: func(n *Node) {
				n.Interfaces = n.Interfaces[:1]
				n.Interfaces[0].Loopback = false
				n.Interfaces[0].Up = false
			},
			reason: NoLocalAddress, wantWords: []string{"it has no IPv4 subnet"}},
		{name: "eBGP multihop 1 is no multihop", peer: func(p *Peer) { p.Addr, p.EBGPMultihop = addr("10.99.0.1"), 1 },
			open: false, reason: NoLocalAddress, wantWords: []string{"ebgpMultihop"}},
		{name: "eBGP multihop: the node's own address", peer: func(p *Peer) { p.Addr, p.EBGPMultihop = addr("10.99.0.1"), 2 },
			open: true, local: "192.168.20.11", source: LocalAddrNodeAddress, iface: "", localASN: 64513},
		{name: "iBGP routed: the node's own address", peer: func(p *Peer) { *p = routed },
			open: true, local: "192.168.20.11", source: LocalAddrNodeAddress, ibgp: true, localASN: 64513},
		{name: "routed IPv6 peer: the node's IPv6 address", peer: func(p *Peer) { *p = routed; p.Addr = addr("2001:db8:99::1") },
			open: true, local: "2001:db8:20::11", source: LocalAddrNodeAddress, ibgp: true, localASN: 64513},
		{name: "routed IPv6 peer, IPv4-only node", peer: func(p *Peer) { *p = routed; p.Addr = addr("2001:db8:99::1") },
			node:   func(n *Node) { n.Addrs = n.Addrs[:1]; n.Interfaces[1].Addrs = n.Interfaces[1].Addrs[:1] },
			reason: NoLocalAddress, wantWords: []string{"no IPv6 address of its own"}},
		{name: "override address on loopback", peer: func(p *Peer) { *p = routed },
			node: func(n *Node) { n.Override.LocalAddrs = map[string]netip.Addr{"rr": addr("10.255.0.11")} },
			open: true, local: "10.255.0.11", source: LocalAddrOverride, iface: "lo", ibgp: true, localASN: 64513},
		{name: "override address beats the subnet",
			node: func(n *Node) { n.Override.LocalAddrs = map[string]netip.Addr{"tor-a": addr("10.255.0.11")} },
			open: true, local: "10.255.0.11", source: LocalAddrOverride, iface: "lo", localASN: 64513},
		{name: "override for another peer ignored",
			node: func(n *Node) { n.Override.LocalAddrs = map[string]netip.Addr{"tor-b": addr("10.255.0.11")} },
			open: true, local: "192.168.20.11", source: LocalAddrSubnet, iface: "eth0", localASN: 64513},
		{name: "override address the node lacks",
			node:   func(n *Node) { n.Override.LocalAddrs = map[string]netip.Addr{"tor-a": addr("192.168.20.200")} },
			reason: NoLocalAddress, wantWords: []string{"BGPNodeOverride", "192.168.20.200", "no up interface"}},
		{name: "override address of the other family",
			node:   func(n *Node) { n.Override.LocalAddrs = map[string]netip.Addr{"tor-a": addr("2001:db8:20::11")} },
			reason: NoLocalAddress, wantWords: []string{"2001:db8:20::11", "IPv4 peer"}},
		{name: "local ASN override makes it iBGP",
			node: func(n *Node) { n.Override.LocalASN = 64512 },
			open: true, local: "192.168.20.11", source: LocalAddrSubnet, iface: "eth0", ibgp: true, localASN: 64512},
		{name: "peer does not select the node", peer: func(p *Peer) { p.SelectsNode = false },
			reason: NodeNotSelectedByPeer, wantWords: []string{"BGPPeer tor-a's nodeSelector", "node1"}},
		{name: "same address as an earlier peer", peer: func(p *Peer) { p.Name = "tor-b" },
			extra: []Peer{torA()}, reason: DuplicateAddress, wantWords: []string{"tor-a and tor-b", "192.168.20.1", "tor-a only"}},
		{name: "same address as an earlier peer that cannot open", peer: func(p *Peer) { p.Name = "tor-b" },
			extra: []Peer{func() Peer { p := torA(); p.SelectsNode = false; return p }()},
			open:  true, local: "192.168.20.11", source: LocalAddrSubnet, iface: "eth0", localASN: 64513},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := node1()
			if c.node != nil {
				c.node(&n)
			}
			peer := torA()
			if c.peer != nil {
				c.peer(&peer)
			}
			plan := Compute(n, append(slices.Clone(c.extra), peer), nil, nil)
			var st PeerStatus
			for _, s := range plan.Peers {
				if s.Peer == peer.Name {
					st = s
				}
			}
			var sess *Session
			for i := range plan.Sessions {
				if plan.Sessions[i].Peer.Name == peer.Name {
					sess = &plan.Sessions[i]
				}
			}
			if st.Open != c.open || (sess != nil) != c.open {
				t.Fatalf("open %v (session %v), want %v: %+v", st.Open, sess != nil, c.open, st)
			}
			if !c.open {
				if st.Reason != c.reason {
					t.Errorf("reason %s, want %s: %s", st.Reason, c.reason, st.Message)
				}
				for _, w := range c.wantWords {
					if !strings.Contains(st.Message, w) {
						t.Errorf("message %q lacks %q", st.Message, w)
					}
				}
				return
			}
			if sess.LocalAddr != addr(c.local) || sess.LocalAddrSource != c.source || sess.Interface != c.iface {
				t.Errorf("local %s (%s, %q), want %s (%s, %q)", sess.LocalAddr, sess.LocalAddrSource, sess.Interface, c.local, c.source, c.iface)
			}
			if sess.IBGP != c.ibgp || sess.LocalASN != c.localASN {
				t.Errorf("iBGP %v local AS %d, want %v %d", sess.IBGP, sess.LocalASN, c.ibgp, c.localASN)
			}
			if sess.Peer.Name != peer.Name || sess.Peer.Port != peer.Port {
				t.Errorf("session's peer %+v", sess.Peer)
			}
		})
	}
}

// Each reason, in its order: every case breaks one more rule than the
// reasons after it can see.
func TestVerdicts(t *testing.T) {
	cases := []struct {
		name     string
		node     func(*Node)
		peer     func(*Peer)
		ads      []Advertisement
		services []Service
		// want is the verdict on web's address (or its absence) for tor-a.
		want      Reason
		wantWords []string
		prefixes  []string
	}{
		{name: "advertised", ads: []Advertisement{all()}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: Advertised, prefixes: []string{"198.51.100.10/32"},
			wantWords: []string{"node node1 advertises 198.51.100.10 as 198.51.100.10/32 to BGPPeer tor-a (192.168.20.1, AS 64512) with next hop 192.168.20.11, by all"}},
		{name: "no address of the peer's family", ads: []Advertisement{all()}, services: []Service{svc("prod/web", "2001:db8:100::10")},
			want: NoAddressOfPeerFamily, wantWords: []string{"prod/web has no IPv4 address for BGPPeer tor-a (192.168.20.1)"}},
		{name: "no advertisement", services: []Service{svc("prod/web", "198.51.100.10")},
			want: NoAdvertisement, wantWords: []string{"no BGPAdvertisement selects prod/web with pool bgp"}},
		{name: "no advertisement selects the Service",
			ads:      []Advertisement{{Name: "db", SelectsNode: true, Services: labels{"io.kubernetes.service.name": "db"}}},
			services: []Service{svc("prod/web", "198.51.100.10")}, want: NoAdvertisement},
		{name: "no advertisement selects the pool",
			ads:      []Advertisement{{Name: "l2", SelectsNode: true, Pools: labels{"announce": "l2"}}},
			services: []Service{svc("prod/web", "198.51.100.10")}, want: NoAdvertisement},
		{name: "address in no pool, even for an advertisement of every pool", ads: []Advertisement{all()},
			services: []Service{svc("prod/web", "198.51.100.10", func(s *Service) { s.Addrs[0].Pool, s.Addrs[0].PoolLabels = "", nil })},
			want:     NoAdvertisement, wantWords: []string{"in no LoadBalancerIPPool"}},
		{name: "peer not selected",
			ads:      []Advertisement{{Name: "rack-b", SelectsNode: true, Peers: labels{"rack": "b"}}},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want:     PeerNotSelected, wantWords: []string{"the BGPAdvertisements selecting prod/web (rack-b) do not select BGPPeer tor-a"}},
		{name: "excluded by label",
			node: func(n *Node) { n.ExcludedByLabel = true },
			ads:  []Advertisement{all()}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: ExcludedByLabel, wantWords: []string{"exclude-from-external-load-balancers", "keeps its BGP sessions"}},
		{name: "excluded comes after the cluster-wide reasons",
			node: func(n *Node) { n.ExcludedByLabel = true }, services: []Service{svc("prod/web", "198.51.100.10")},
			want: NoAdvertisement},
		{name: "peer does not select the node", peer: func(p *Peer) { p.SelectsNode = false },
			ads: []Advertisement{all()}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: NodeNotSelectedByPeer, wantWords: []string{"BGPPeer tor-a's nodeSelector does not select node node1"}},
		{name: "advertisement does not select the node",
			ads: []Advertisement{{Name: "workers", SelectsNode: false}}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: NodeNotSelected, wantWords: []string{"(workers) do not select node node1"}},
		{name: "only advertisements for other peers select the node",
			ads: []Advertisement{
				{Name: "workers", SelectsNode: false},
				{Name: "rack-b", SelectsNode: true, Peers: labels{"rack": "b"}},
			}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: NodeNotSelected, wantWords: []string{"to BGPPeer tor-a (workers)"}},
		{name: "no local address", peer: func(p *Peer) { p.Addr = addr("10.99.0.1") },
			ads: []Advertisement{all()}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: NoLocalAddress, wantWords: []string{"none of node node1's subnets"}},
		{name: "duplicate address",
			peer: func(p *Peer) { p.Name = "tor-z" },
			ads:  []Advertisement{all()}, services: []Service{svc("prod/web", "198.51.100.10")},
			want: DuplicateAddress, wantWords: []string{"tor-a and tor-z"}},
		{name: "local without an endpoint", ads: []Advertisement{all()},
			services: []Service{svc("prod/web", "198.51.100.10", local(false))},
			want:     NoLocalEndpoints, wantWords: []string{"prod/web has externalTrafficPolicy Local and no ready endpoint on node node1"}},
		{name: "local with an endpoint", ads: []Advertisement{all()},
			services: []Service{svc("prod/web", "198.51.100.10", local(true))}, want: Advertised, prefixes: []string{"198.51.100.10/32"}},
		{name: "cluster ignores endpoints", ads: []Advertisement{all()},
			services: []Service{svc("prod/web", "198.51.100.10", func(s *Service) { s.LocalReadyEndpoint = false })},
			want:     Advertised, prefixes: []string{"198.51.100.10/32"}},
		{name: "shared address: advertised through the other Service's advertisement",
			ads:      []Advertisement{{Name: "api", SelectsNode: true, Services: labels{"io.kubernetes.service.name": "api"}, AggregationLength: 32}},
			services: []Service{svc("prod/web", "198.51.100.10"), svc("prod/api", "198.51.100.10")},
			want:     Advertised, prefixes: []string{"198.51.100.10/32"}, wantWords: []string{"shared by prod/api, prod/web", "by api"}},
		{name: "shared Local address: one sharer without an endpoint holds it back",
			ads:      []Advertisement{all()},
			services: []Service{svc("prod/web", "198.51.100.10", local(true)), svc("prod/api", "198.51.100.10", local(false))},
			want:     NoLocalEndpoints, wantWords: []string{"prod/api"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := node1()
			if c.node != nil {
				c.node(&n)
			}
			peers := []Peer{torA()}
			if c.peer != nil {
				p := torA()
				c.peer(&p)
				if p.Name != "tor-a" {
					peers = append(peers, p)
				} else {
					peers[0] = p
				}
			}
			checked := "tor-a"
			if len(peers) > 1 {
				checked = peers[1].Name
			}
			plan := Compute(n, peers, c.ads, c.services)
			var got *Verdict
			for i, v := range plan.Verdicts {
				if v.Service == "prod/web" && v.Peer == checked {
					if got != nil {
						t.Fatalf("two verdicts for prod/web and %s: %+v and %+v", checked, *got, v)
					}
					got = &plan.Verdicts[i]
				}
			}
			if got == nil {
				t.Fatalf("no verdict for prod/web and %s: %+v", checked, plan.Verdicts)
			}
			if got.Reason != c.want {
				t.Fatalf("reason %s, want %s: %s", got.Reason, c.want, got.Message)
			}
			if got.Message == "" {
				t.Errorf("no message")
			}
			for _, w := range c.wantWords {
				if !strings.Contains(got.Message, w) {
					t.Errorf("message %q lacks %q", got.Message, w)
				}
			}
			var prefixes []string
			for _, p := range got.Prefixes {
				prefixes = append(prefixes, p.String())
			}
			if !slices.Equal(prefixes, c.prefixes) {
				t.Errorf("prefixes %v, want %v", prefixes, c.prefixes)
			}
			if (got.Reason == NoAddressOfPeerFamily) == got.Addr.IsValid() {
				t.Errorf("address %v with reason %s", got.Addr, got.Reason)
			}
			// A route exists exactly when the verdict says Advertised.
			routed := false
			for _, s := range plan.Sessions {
				for _, r := range s.Routes {
					if s.Peer.Name == checked && got.Addr.IsValid() && r.Prefix.Contains(got.Addr) {
						routed = true
					}
				}
			}
			if routed != (got.Reason == Advertised) {
				t.Errorf("route present %v with reason %s", routed, got.Reason)
			}
		})
	}
}

// One verdict per Service, peer and address; the other family's peers say
// so; an address listed twice is one verdict, an invalid one none.
func TestVerdictsPerFamily(t *testing.T) {
	services := []Service{
		svc("prod/dual", "198.51.100.10,2001:db8:100::10"),
		svc("prod/v4", "198.51.100.11,198.51.100.11", func(s *Service) { s.Addrs = append(s.Addrs, Address{}) }),
	}
	plan := Compute(node1(), []Peer{torA(), torA6()}, []Advertisement{all()}, services)
	type row struct {
		svc, peer, addr string
		reason          Reason
	}
	var got []row
	for _, v := range plan.Verdicts {
		a := ""
		if v.Addr.IsValid() {
			a = v.Addr.String()
		}
		got = append(got, row{v.Service, v.Peer, a, v.Reason})
	}
	want := []row{
		{"prod/dual", "tor-a", "198.51.100.10", Advertised},
		{"prod/dual", "tor-a-v6", "2001:db8:100::10", Advertised},
		{"prod/v4", "tor-a", "198.51.100.11", Advertised},
		{"prod/v4", "tor-a-v6", "", NoAddressOfPeerFamily},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(row{})); d != "" {
		t.Errorf("verdicts (-want +got):\n%s", d)
	}
	for _, s := range plan.Sessions {
		for _, r := range s.Routes {
			if family(r.Prefix.Addr()) != family(s.Peer.Addr) {
				t.Errorf("route %s to %s peer %s", r.Prefix, family(s.Peer.Addr), s.Peer.Name)
			}
			if r.NextHop != s.LocalAddr {
				t.Errorf("route %s next hop %s, session from %s", r.Prefix, r.NextHop, s.LocalAddr)
			}
		}
	}
}

// routeView is what the route tests compare.
type routeView struct {
	Peer             string
	Prefix           string
	Communities      []string
	LargeCommunities []string
	LocalPref        uint32 // 0: none
	Advertisements   []string
	Services         []string
	Notes            []string
}

func routesOf(plan Plan) []routeView {
	var out []routeView
	for _, s := range plan.Sessions {
		for _, r := range s.Routes {
			v := routeView{Peer: s.Peer.Name, Prefix: r.Prefix.String(), Advertisements: r.Advertisements, Services: r.Services, Notes: r.Notes}
			for _, c := range r.Communities {
				v.Communities = append(v.Communities, c.String())
			}
			for _, c := range r.LargeCommunities {
				v.LargeCommunities = append(v.LargeCommunities, c.String())
			}
			if r.LocalPref != nil {
				v.LocalPref = *r.LocalPref
			}
			out = append(out, v)
		}
	}
	return out
}

func TestRoutes(t *testing.T) {
	ibgp := torA()
	ibgp.Name, ibgp.PeerASN = "tor-i", 64513
	ibgp.Addr = addr("192.168.20.2")
	comm := func(ss ...string) []Community {
		var out []Community
		for _, s := range ss {
			c, err := ParseCommunity(s)
			if err != nil {
				panic(err)
			}
			out = append(out, c)
		}
		return out
	}
	large := func(ss ...string) []LargeCommunity {
		var out []LargeCommunity
		for _, s := range ss {
			c, err := ParseLargeCommunity(s)
			if err != nil {
				panic(err)
			}
			out = append(out, c)
		}
		return out
	}
	cases := []struct {
		name     string
		peers    []Peer
		ads      []Advertisement
		services []Service
		want     []routeView
	}{
		{name: "one host route per address",
			peers: []Peer{torA()}, ads: []Advertisement{all()},
			services: []Service{svc("prod/web", "198.51.100.10"), svc("prod/db", "198.51.100.11")},
			want: []routeView{
				{Peer: "tor-a", Prefix: "198.51.100.10/32", Advertisements: []string{"all"}, Services: []string{"prod/web"}},
				{Peer: "tor-a", Prefix: "198.51.100.11/32", Advertisements: []string{"all"}, Services: []string{"prod/db"}},
			}},
		{name: "aggregated: one route for the addresses of a prefix",
			peers: []Peer{torA(), torA6()},
			ads:   []Advertisement{{Name: "agg", SelectsNode: true, AggregationLength: 24, AggregationLengthV6: 64}},
			services: []Service{svc("prod/web", "198.51.100.10,2001:db8:100::10"), svc("prod/db", "198.51.100.11,2001:db8:100::11"),
				svc("prod/far", "203.0.113.5")},
			want: []routeView{
				{Peer: "tor-a", Prefix: "198.51.100.0/24", Advertisements: []string{"agg"}, Services: []string{"prod/db", "prod/web"}},
				{Peer: "tor-a", Prefix: "203.0.113.0/24", Advertisements: []string{"agg"}, Services: []string{"prod/far"}},
				{Peer: "tor-a-v6", Prefix: "2001:db8:100::/64", Advertisements: []string{"agg"}, Services: []string{"prod/db", "prod/web"}},
			}},
		{name: "Local Services are always host routes",
			peers:    []Peer{torA(), torA6()},
			ads:      []Advertisement{{Name: "agg", SelectsNode: true, AggregationLength: 24, AggregationLengthV6: 64}},
			services: []Service{svc("prod/web", "198.51.100.10,2001:db8:100::10", local(true)), svc("prod/db", "198.51.100.11")},
			want: []routeView{
				{Peer: "tor-a", Prefix: "198.51.100.0/24", Advertisements: []string{"agg"}, Services: []string{"prod/db"}},
				{Peer: "tor-a", Prefix: "198.51.100.10/32", Advertisements: []string{"agg"}, Services: []string{"prod/web"}},
				{Peer: "tor-a-v6", Prefix: "2001:db8:100::10/128", Advertisements: []string{"agg"}, Services: []string{"prod/web"}},
			}},
		{name: "two advertisements, two lengths: two routes (MetalLB's /32 inside, /24 outside)",
			peers: []Peer{torA()},
			ads: []Advertisement{
				{Name: "host", SelectsNode: true, AggregationLength: 32, Communities: comm("no-advertise")},
				{Name: "agg", SelectsNode: true, AggregationLength: 24, Communities: comm("64512:24")},
			},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want: []routeView{
				{Peer: "tor-a", Prefix: "198.51.100.0/24", Communities: []string{"64512:24"}, Advertisements: []string{"agg"}, Services: []string{"prod/web"}},
				{Peer: "tor-a", Prefix: "198.51.100.10/32", Communities: []string{"no-advertise"}, Advertisements: []string{"host"}, Services: []string{"prod/web"}},
			}},
		{name: "same prefix: communities united, highest local-pref (iBGP)",
			peers: []Peer{ibgp},
			ads: []Advertisement{
				{Name: "b", SelectsNode: true, AggregationLength: 32, Communities: comm("64512:200", "no-export"), LargeCommunities: large("64512:1:2"), LocalPref: u32(100)},
				{Name: "a", SelectsNode: true, AggregationLength: 32, Communities: comm("64512:100", "65535:65281"), LargeCommunities: large("64512:1:1", "64512:1:2"), LocalPref: u32(200)},
				{Name: "c", SelectsNode: true, AggregationLength: 32, Communities: comm("local-as")},
			},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want: []routeView{{Peer: "tor-i", Prefix: "198.51.100.10/32",
				Communities:      []string{"64512:100", "64512:200", "no-export", "no-export-subconfed"},
				LargeCommunities: []string{"64512:1:1", "64512:1:2"}, LocalPref: 200,
				Advertisements: []string{"a", "b", "c"}, Services: []string{"prod/web"},
				Notes: []string{"several local-prefs for 198.51.100.10/32 (200 of a, 100 of b): the highest, 200, is used"}}}},
		{name: "one local-pref: no note",
			peers: []Peer{ibgp},
			ads: []Advertisement{
				{Name: "a", SelectsNode: true, AggregationLength: 32, LocalPref: u32(150)},
				{Name: "b", SelectsNode: true, AggregationLength: 32, LocalPref: u32(150)},
				{Name: "c", SelectsNode: true, AggregationLength: 32},
			},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want: []routeView{{Peer: "tor-i", Prefix: "198.51.100.10/32", LocalPref: 150,
				Advertisements: []string{"a", "b", "c"}, Services: []string{"prod/web"}}}},
		{name: "local-pref not sent to an eBGP peer",
			peers:    []Peer{torA(), ibgp},
			ads:      []Advertisement{{Name: "pref", SelectsNode: true, AggregationLength: 32, LocalPref: u32(300)}},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want: []routeView{
				{Peer: "tor-a", Prefix: "198.51.100.10/32", Advertisements: []string{"pref"}, Services: []string{"prod/web"},
					Notes: []string{"local-pref 300 not sent: BGPPeer tor-a is an eBGP peer (AS 64512, local AS 64513)"}},
				{Peer: "tor-i", Prefix: "198.51.100.10/32", LocalPref: 300, Advertisements: []string{"pref"}, Services: []string{"prod/web"}},
			}},
		{name: "per-peer advertisements: attributes only where selected",
			peers: []Peer{torA(), func() Peer { p := ibgp; p.Labels = map[string]string{"rack": "core"}; return p }()},
			ads: []Advertisement{
				all(),
				{Name: "core", SelectsNode: true, AggregationLength: 32, Peers: labels{"rack": "core"}, Communities: comm("64513:1")},
			},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want: []routeView{
				{Peer: "tor-a", Prefix: "198.51.100.10/32", Advertisements: []string{"all"}, Services: []string{"prod/web"}},
				{Peer: "tor-i", Prefix: "198.51.100.10/32", Communities: []string{"64513:1"}, Advertisements: []string{"all", "core"}, Services: []string{"prod/web"}},
			}},
		{name: "advertisement not selecting the node gives no attributes",
			peers: []Peer{torA()},
			ads: []Advertisement{
				all(),
				{Name: "other-nodes", SelectsNode: false, AggregationLength: 32, Communities: comm("64513:9")},
			},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want:     []routeView{{Peer: "tor-a", Prefix: "198.51.100.10/32", Advertisements: []string{"all"}, Services: []string{"prod/web"}}}},
		{name: "shared address: one route carrying both Services, attributes of both advertisements",
			peers: []Peer{torA()},
			ads: []Advertisement{
				{Name: "web", SelectsNode: true, AggregationLength: 32, Services: labels{"io.kubernetes.service.name": "web"}, Communities: comm("1:1")},
				{Name: "api", SelectsNode: true, AggregationLength: 32, Services: labels{"io.kubernetes.service.name": "api"}, Communities: comm("2:2")},
			},
			services: []Service{svc("prod/web", "198.51.100.10"), svc("prod/api", "198.51.100.10")},
			want: []routeView{{Peer: "tor-a", Prefix: "198.51.100.10/32", Communities: []string{"1:1", "2:2"},
				Advertisements: []string{"api", "web"}, Services: []string{"prod/api", "prod/web"}}}},
		{name: "aggregate: only the addresses this node advertises contribute",
			peers: []Peer{torA()},
			ads:   []Advertisement{{Name: "agg", SelectsNode: true, AggregationLength: 24}},
			services: []Service{svc("prod/web", "198.51.100.10"), svc("prod/db", "198.51.100.11", func(s *Service) {
				s.Addrs[0].Pool = ""
			})},
			want: []routeView{{Peer: "tor-a", Prefix: "198.51.100.0/24", Advertisements: []string{"agg"}, Services: []string{"prod/web"}}}},
		{name: "aggregation length 0: the default route, as asked",
			peers: []Peer{torA()}, ads: []Advertisement{{Name: "zero", SelectsNode: true}},
			services: []Service{svc("prod/web", "198.51.100.10")},
			want:     []routeView{{Peer: "tor-a", Prefix: "0.0.0.0/0", Advertisements: []string{"zero"}, Services: []string{"prod/web"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := routesOf(Compute(node1(), c.peers, c.ads, c.services))
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("routes (-want +got):\n%s", d)
			}
		})
	}
}

// An excluded node keeps its sessions and advertises nothing.
func TestExcludedKeepsSessions(t *testing.T) {
	n := node1()
	n.ExcludedByLabel = true
	plan := Compute(n, []Peer{torA(), torA6()}, []Advertisement{all()}, []Service{svc("prod/web", "198.51.100.10,2001:db8:100::10")})
	if len(plan.Sessions) != 2 {
		t.Fatalf("%d sessions, want 2", len(plan.Sessions))
	}
	for _, s := range plan.Sessions {
		if len(s.Routes) != 0 {
			t.Errorf("session %s advertises %v", s.Peer.Name, s.Routes)
		}
	}
	for _, v := range plan.Verdicts {
		if v.Reason != ExcludedByLabel {
			t.Errorf("%+v", v)
		}
	}
}

// Messages off: the same decisions, no text.
func TestMessagesOff(t *testing.T) {
	n := node1()
	peers := []Peer{torA(), torA6(), {Name: "far", Addr: addr("10.9.9.9"), PeerASN: 1, LocalASN: 2, SelectsNode: true}}
	ads := []Advertisement{all(), {Name: "x", Peers: labels{"rack": "z"}}}
	services := []Service{svc("prod/web", "198.51.100.10"), svc("prod/local", "198.51.100.12", local(false)), svc("prod/v6", "2001:db8:100::10")}
	with := Compute(n, peers, ads, services)
	p := NewPlanner(n, peers, ads)
	p.Messages = false
	without := p.Plan(services)
	if len(with.Verdicts) != len(without.Verdicts) {
		t.Fatalf("%d and %d verdicts", len(with.Verdicts), len(without.Verdicts))
	}
	for i := range with.Verdicts {
		a, b := with.Verdicts[i], without.Verdicts[i]
		if a.Message == "" {
			t.Errorf("no message with Messages: %+v", a)
		}
		if b.Message != "" {
			t.Errorf("message without Messages: %+v", b)
		}
		a.Message = ""
		if d := cmp.Diff(a, b, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); d != "" {
			t.Errorf("verdict differs:\n%s", d)
		}
	}
}

// The plan does not depend on the order of its inputs (the advertisements'
// included: their names order what they give).
func TestOrderIndependent(t *testing.T) {
	n := node1()
	peers := []Peer{torA(), torA6(), {Name: "rr", Addr: addr("10.99.0.1"), PeerASN: 64513, LocalASN: 64513, SelectsNode: true},
		{Name: "dup", Addr: addr("192.168.20.1"), PeerASN: 1, LocalASN: 2, SelectsNode: true}}
	ads := []Advertisement{
		all(),
		{Name: "agg", SelectsNode: true, AggregationLength: 24, AggregationLengthV6: 48, LocalPref: u32(10), Communities: []Community{NoExport}},
		{Name: "pref", SelectsNode: true, AggregationLength: 24, AggregationLengthV6: 48, LocalPref: u32(20), Communities: []Community{1}},
	}
	services := []Service{
		svc("a/one", "198.51.100.1,2001:db8:100::1"), svc("a/two", "198.51.100.2"), svc("b/three", "198.51.100.2"),
		svc("b/four", "203.0.113.4", local(true)), svc("c/five", "2001:db8:100::5", local(false)),
	}
	want := Compute(n, peers, ads, services)
	opts := []cmp.Option{cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		r.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		r.Shuffle(len(services), func(i, j int) { services[i], services[j] = services[j], services[i] })
		r.Shuffle(len(ads), func(i, j int) { ads[i], ads[j] = ads[j], ads[i] })
		got := Compute(n, peers, ads, services)
		if d := cmp.Diff(want, got, opts...); d != "" {
			t.Fatalf("plan changed with the order of peers and services (-first +now):\n%s", d)
		}
	}
}
