package bgp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/herald-lb/herald/internal/bgp/community"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func u32(v uint32) *uint32 { return &v }

func TestRouteNormalize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      Route
		want    Route
		wantErr string
	}{
		{name: "host route", in: Route{Prefix: pfx("10.0.0.1/32")}, want: Route{Prefix: pfx("10.0.0.1/32")}},
		{name: "IPv6 host route", in: Route{Prefix: pfx("fd00::1/128")}, want: Route{Prefix: pfx("fd00::1/128")}},
		{name: "aggregate", in: Route{Prefix: pfx("10.0.0.0/24")}, want: Route{Prefix: pfx("10.0.0.0/24")}},
		{
			name: "sorted, without duplicates, empty as nil",
			in: Route{
				Prefix:           pfx("10.0.0.1/32"),
				Communities:      []Community{3, 1, 3, 2},
				LargeCommunities: []LargeCommunity{{Global: 2, Local1: 0, Local2: 0}, {Global: 1, Local1: 5, Local2: 0}, {Global: 1, Local1: 2, Local2: 9}, {Global: 1, Local1: 2, Local2: 9}},
				Peers:            []netip.Addr{addr("192.0.2.2"), addr("192.0.2.1"), addr("192.0.2.2")},
			},
			want: Route{
				Prefix:           pfx("10.0.0.1/32"),
				Communities:      []Community{1, 2, 3},
				LargeCommunities: []LargeCommunity{{Global: 1, Local1: 2, Local2: 9}, {Global: 1, Local1: 5, Local2: 0}, {Global: 2, Local1: 0, Local2: 0}},
				Peers:            []netip.Addr{addr("192.0.2.1"), addr("192.0.2.2")},
			},
		},
		{name: "empty slices", in: Route{Prefix: pfx("10.0.0.1/32"), Communities: []Community{}, Peers: []netip.Addr{}}, want: Route{Prefix: pfx("10.0.0.1/32")}},
		{name: "next hop", in: Route{Prefix: pfx("10.0.0.1/32"), NextHop: addr("192.0.2.1")}, want: Route{Prefix: pfx("10.0.0.1/32"), NextHop: addr("192.0.2.1")}},
		{name: "local pref", in: Route{Prefix: pfx("10.0.0.1/32"), LocalPref: u32(200)}, want: Route{Prefix: pfx("10.0.0.1/32"), LocalPref: u32(200)}},
		{name: "no prefix", in: Route{}, wantErr: "without a valid prefix"},
		{name: "host bits", in: Route{Prefix: pfx("10.0.0.1/24")}, wantErr: "did you mean 10.0.0.0/24"},
		{name: "mapped", in: Route{Prefix: pfx("::ffff:10.0.0.1/128")}, wantErr: "IPv4-mapped"},
		{name: "next hop family", in: Route{Prefix: pfx("10.0.0.1/32"), NextHop: addr("fd00::1")}, wantErr: "not of the prefix's address family"},
		{name: "next hop family v6", in: Route{Prefix: pfx("fd00::1/128"), NextHop: addr("192.0.2.1")}, wantErr: "not of the prefix's address family"},
		{name: "next hop unspecified", in: Route{Prefix: pfx("10.0.0.1/32"), NextHop: addr("0.0.0.0")}, wantErr: "not a unicast address"},
		{name: "next hop multicast", in: Route{Prefix: pfx("10.0.0.1/32"), NextHop: addr("224.0.0.1")}, wantErr: "not a unicast address"},
		{name: "next hop zone", in: Route{Prefix: pfx("fd00::1/128"), NextHop: addr("fe80::1%eth0")}, wantErr: "not a unicast address"},
		{name: "reserved large community", in: Route{Prefix: pfx("10.0.0.1/32"), LargeCommunities: []LargeCommunity{{Global: reservedASN, Local1: 0, Local2: 0}}}, wantErr: "reserved"},
		{name: "invalid peer", in: Route{Prefix: pfx("10.0.0.1/32"), Peers: []netip.Addr{{}}}, wantErr: "invalid peer address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.normalize()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("normalize() = %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("normalize() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRouteNormalizeCopiesLocalPref(t *testing.T) {
	lp := uint32(100)
	r, err := Route{Prefix: pfx("10.0.0.1/32"), LocalPref: &lp}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	lp = 5
	if *r.LocalPref != 100 {
		t.Errorf("the normalized route follows the caller's pointer: %d", *r.LocalPref)
	}
}

func TestRouteTable(t *testing.T) {
	a, b, c := addr("192.0.2.1"), addr("192.0.2.2"), addr("192.0.2.3")
	p1 := pfx("10.0.0.1/32")
	peers := func(ps ...netip.Addr) []netip.Addr { return ps }
	for _, tc := range []struct {
		name    string
		in      []Route
		want    map[netip.Prefix][]Route
		wantErr string
	}{
		{name: "none", want: map[netip.Prefix][]Route{}},
		{
			name: "merged peers",
			in:   []Route{{Prefix: p1, Peers: peers(b)}, {Prefix: p1, Peers: peers(a, b)}},
			want: map[netip.Prefix][]Route{p1: {{Prefix: p1, Peers: peers(a, b)}}},
		},
		{
			name: "every peer wins",
			in:   []Route{{Prefix: p1, Peers: peers(b)}, {Prefix: p1}},
			want: map[netip.Prefix][]Route{p1: {{Prefix: p1}}},
		},
		{
			name: "identical twice",
			in:   []Route{{Prefix: p1, Communities: []Community{1}}, {Prefix: p1, Communities: []Community{1, 1}}},
			want: map[netip.Prefix][]Route{p1: {{Prefix: p1, Communities: []Community{1}}}},
		},
		{
			name: "two prefixes",
			in:   []Route{{Prefix: p1}, {Prefix: pfx("10.0.0.0/24")}},
			want: map[netip.Prefix][]Route{p1: {{Prefix: p1}}, pfx("10.0.0.0/24"): {{Prefix: pfx("10.0.0.0/24")}}},
		},
		{
			name: "different attributes for disjoint peers, sorted by first peer",
			in: []Route{
				{Prefix: p1, Communities: []Community{2}, Peers: peers(c, b)},
				{Prefix: p1, Communities: []Community{1}, LocalPref: u32(200), Peers: peers(a)},
			},
			want: map[netip.Prefix][]Route{p1: {
				{Prefix: p1, Communities: []Community{1}, LocalPref: u32(200), Peers: peers(a)},
				{Prefix: p1, Communities: []Community{2}, Peers: peers(b, c)},
			}},
		},
		{
			name: "one peer per route (as bgpplan gives them), same attributes merged",
			in: []Route{
				{Prefix: p1, LocalPref: u32(200), Peers: peers(a)},
				{Prefix: p1, Peers: peers(b)},
				{Prefix: p1, LocalPref: u32(200), Peers: peers(c)},
				{Prefix: p1, LocalPref: u32(200), Peers: peers(a)},
			},
			want: map[netip.Prefix][]Route{p1: {
				{Prefix: p1, LocalPref: u32(200), Peers: peers(a, c)},
				{Prefix: p1, Peers: peers(b)},
			}},
		},
		{
			name: "next hops differ",
			in:   []Route{{Prefix: p1, NextHop: addr("192.0.2.11"), Peers: peers(b)}, {Prefix: p1, NextHop: addr("192.0.2.12"), Peers: peers(a)}},
			want: map[netip.Prefix][]Route{p1: {
				{Prefix: p1, NextHop: addr("192.0.2.12"), Peers: peers(a)},
				{Prefix: p1, NextHop: addr("192.0.2.11"), Peers: peers(b)},
			}},
		},
		{
			name:    "different attributes, every peer and some",
			in:      []Route{{Prefix: p1, Communities: []Community{1}}, {Prefix: p1, Communities: []Community{2}, Peers: peers(a)}},
			wantErr: "route 10.0.0.1/32: given for every peer with communities 0:1, and with communities 0:2 for 192.0.2.1",
		},
		{
			name:    "different attributes, every peer twice",
			in:      []Route{{Prefix: p1, LocalPref: u32(1)}, {Prefix: p1}},
			wantErr: "route 10.0.0.1/32: given for every peer twice with different attributes: local-pref 1, and no attributes",
		},
		{
			name: "overlapping peers",
			in: []Route{
				{Prefix: p1, Communities: []Community{community.NoExport}, Peers: peers(a, b)},
				{Prefix: p1, LargeCommunities: []LargeCommunity{{Global: 1, Local1: 2, Local2: 3}}, LocalPref: u32(5), NextHop: addr("192.0.2.11"), Peers: peers(c, b)},
			},
			wantErr: "route 10.0.0.1/32: given to peer 192.0.2.2 twice with different attributes: communities no-export, and large communities 1:2:3, local-pref 5, next hop 192.0.2.11",
		},
		{name: "invalid", in: []Route{{Prefix: p1}, {}}, wantErr: "without a valid prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := routeTable(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("routeTable() = %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("routeTable() (-want +got):\n%s", diff)
			}
		})
	}
}

// The input's routes are not changed by routeTable's merging.
func TestRouteTableKeepsInput(t *testing.T) {
	in := []Route{
		{Prefix: pfx("10.0.0.1/32"), Peers: []netip.Addr{addr("192.0.2.2")}},
		{Prefix: pfx("10.0.0.1/32"), Peers: []netip.Addr{addr("192.0.2.1")}},
	}
	if _, err := routeTable(in); err != nil {
		t.Fatal(err)
	}
	if len(in[0].Peers) != 1 || in[0].Peers[0] != addr("192.0.2.2") {
		t.Errorf("input changed: %v", in[0].Peers)
	}
}

func TestDiffRoutes(t *testing.T) {
	a, b := addr("192.0.2.1"), addr("192.0.2.2")
	r1 := Route{Prefix: pfx("10.0.0.1/32")}
	r2 := Route{Prefix: pfx("10.0.0.2/32")}
	r2c := Route{Prefix: pfx("10.0.0.2/32"), Communities: []Community{7}}
	r2p := Route{Prefix: pfx("10.0.0.2/32"), Peers: []netip.Addr{a}}
	r2lp := Route{Prefix: pfx("10.0.0.2/32"), LocalPref: u32(5)}
	r2lp2 := Route{Prefix: pfx("10.0.0.2/32"), LocalPref: u32(6)}
	r3 := Route{Prefix: pfx("fd00::3/128")}
	// One prefix, two peers, two sets of attributes.
	r4a := Route{Prefix: pfx("10.0.0.4/32"), LocalPref: u32(200), Peers: []netip.Addr{a}}
	r4b := Route{Prefix: pfx("10.0.0.4/32"), Communities: []Community{1}, Peers: []netip.Addr{b}}
	r4b2 := Route{Prefix: pfx("10.0.0.4/32"), Communities: []Community{2}, Peers: []netip.Addr{b}}
	table := func(rs ...Route) map[netip.Prefix][]Route {
		m, err := routeTable(rs)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	p := func(rs ...Route) []netip.Prefix {
		var out []netip.Prefix
		for _, r := range rs {
			out = append(out, r.Prefix)
		}
		return out
	}
	for _, tc := range []struct {
		name         string
		cur, desired map[netip.Prefix][]Route
		want         routeDiff
	}{
		{name: "nothing", cur: table(), desired: table()},
		{name: "unchanged", cur: table(r1, r2, r4a, r4b), desired: table(r4b, r2, r1, r4a)},
		{name: "add", cur: table(r1), desired: table(r3, r1, r2), want: routeDiff{Put: p(r2, r3)}},
		{name: "withdraw", cur: table(r1, r2, r3), desired: table(r2), want: routeDiff{Withdraw: p(r1, r3)}},
		{name: "communities changed", cur: table(r1, r2), desired: table(r1, r2c), want: routeDiff{Put: p(r2c)}},
		{name: "peers changed", cur: table(r2), desired: table(r2p), want: routeDiff{Put: p(r2p)}},
		{name: "local pref set", cur: table(r2), desired: table(r2lp), want: routeDiff{Put: p(r2lp)}},
		{name: "local pref changed", cur: table(r2lp), desired: table(r2lp2), want: routeDiff{Put: p(r2lp2)}},
		{name: "local pref same value, other pointer", cur: table(r2lp), desired: table(Route{Prefix: r2lp.Prefix, LocalPref: u32(5)})},
		{name: "one peer's attributes changed", cur: table(r1, r4a, r4b), desired: table(r1, r4a, r4b2), want: routeDiff{Put: p(r4a)}},
		{name: "one route becomes two", cur: table(Route{Prefix: r4a.Prefix, Peers: []netip.Addr{a, b}}), desired: table(r4a, r4b), want: routeDiff{Put: p(r4a)}},
		{name: "two routes become one", cur: table(r4a, r4b), desired: table(r4a), want: routeDiff{Put: p(r4a)}},
		{name: "everything", cur: table(r1, r2, r4a, r4b), desired: table(r2c, r3), want: routeDiff{Put: p(r2c, r3), Withdraw: p(r1, r4a)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diffRoutes(tc.cur, tc.desired)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("diffRoutes() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRouteToPath(t *testing.T) {
	marks := []LargeCommunity{{Global: reservedASN, Local1: tagAll, Local2: 0}}
	for _, tc := range []struct {
		name    string
		r       Route
		family  bgppkt.Family
		nexthop string
		attrs   []bgppkt.BGPAttrType
	}{
		{
			name: "IPv4, session's address", r: Route{Prefix: pfx("10.0.0.1/32")},
			family: bgppkt.RF_IPv4_UC, nexthop: "0.0.0.0",
			attrs: []bgppkt.BGPAttrType{bgppkt.BGP_ATTR_TYPE_ORIGIN, bgppkt.BGP_ATTR_TYPE_NEXT_HOP, bgppkt.BGP_ATTR_TYPE_LARGE_COMMUNITY},
		},
		{
			name: "IPv6, explicit next hop, all attributes",
			r: Route{Prefix: pfx("fd00::1/128"), NextHop: addr("fd00::a"), Communities: []Community{1},
				LargeCommunities: []LargeCommunity{{Global: 1, Local1: 2, Local2: 3}}, LocalPref: u32(7)},
			family: bgppkt.RF_IPv6_UC, nexthop: "fd00::a",
			attrs: []bgppkt.BGPAttrType{bgppkt.BGP_ATTR_TYPE_ORIGIN, bgppkt.BGP_ATTR_TYPE_MP_REACH_NLRI, bgppkt.BGP_ATTR_TYPE_COMMUNITIES,
				bgppkt.BGP_ATTR_TYPE_LARGE_COMMUNITY, bgppkt.BGP_ATTR_TYPE_LOCAL_PREF},
		},
		{
			name: "IPv6, session's address", r: Route{Prefix: pfx("fd00::/64")},
			family: bgppkt.RF_IPv6_UC, nexthop: "::",
			attrs: []bgppkt.BGPAttrType{bgppkt.BGP_ATTR_TYPE_ORIGIN, bgppkt.BGP_ATTR_TYPE_MP_REACH_NLRI, bgppkt.BGP_ATTR_TYPE_LARGE_COMMUNITY},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.r.normalize()
			if err != nil {
				t.Fatal(err)
			}
			p, err := routeToPath(r, marks)
			if err != nil {
				t.Fatal(err)
			}
			if p.Family != tc.family || p.Nlri.String() != tc.r.Prefix.String() {
				t.Errorf("family %v, NLRI %v; want %v, %v", p.Family, p.Nlri, tc.family, tc.r.Prefix)
			}
			var types []bgppkt.BGPAttrType
			for _, a := range p.Attrs {
				types = append(types, a.GetType())
				switch a := a.(type) {
				case *bgppkt.PathAttributeNextHop:
					if a.Value.String() != tc.nexthop {
						t.Errorf("next hop %v, want %s", a.Value, tc.nexthop)
					}
				case *bgppkt.PathAttributeMpReachNLRI:
					if a.Nexthop.String() != tc.nexthop {
						t.Errorf("MP_REACH next hop %v, want %s", a.Nexthop, tc.nexthop)
					}
				case *bgppkt.PathAttributeLargeCommunities:
					// the route's own, then the marks
					want := len(tc.r.LargeCommunities) + len(marks)
					if len(a.Values) != want || a.Values[len(a.Values)-1].ASN != reservedASN {
						t.Errorf("large communities %v: want the route's and the marks", a.Values)
					}
				case *bgppkt.PathAttributeLocalPref:
					if a.Value != *tc.r.LocalPref {
						t.Errorf("local pref %d", a.Value)
					}
				}
			}
			if diff := cmp.Diff(tc.attrs, types); diff != "" {
				t.Errorf("attributes (-want +got):\n%s", diff)
			}
		})
	}
}
