package bird

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp/community"
)

// testdata holds BIRD 2.0.12's replies as birdc -v printed them in
// internal/bgp's BIRD tests (HERALD_BIRD_DUMP=1).
func reply(t *testing.T, name string) []Line {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := ParseReply(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestParseProtocols(t *testing.T) {
	ps, err := ParseProtocols(reply(t, "protocols-dynamic.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if want := []string{"device1", "kernel1", "bfd1", "nodes", "node1", "node2"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("protocols %v, want %v", names, want)
	}
	k := ps[1]
	if c, ok := k.Channel("ipv4"); !ok || c.State != "UP" || c.Table != "master4" || c.Exported != 1 || c.Imported != 0 {
		t.Errorf("kernel1 channel %+v", c)
	}
	if _, ok := k.Attrs["Import updates"]; ok || len(k.Attrs) != 0 {
		t.Errorf("channel attributes leaked into the protocol's: %v", k.Attrs)
	}

	tmpl := ps[3]
	if tmpl.BGPState() != "Passive" || tmpl.NeighborAddress().IsValid() || tmpl.Attrs["Neighbor range"] != "192.168.10.0/24" || tmpl.LocalAS() != 64512 || tmpl.Info != "Passive" {
		t.Errorf("template %+v", tmpl)
	}

	d := ps[4]
	if d.Proto != "BGP" || d.State != "up" || d.Since != "06:42:24.941" || d.Info != "Established" || d.BGPState() != "Established" ||
		d.NeighborAddress() != netip.MustParseAddr("192.168.10.215") || d.NeighborAS() != 64513 || d.LocalAS() != 64512 ||
		d.Attrs["Session"] != "external AS4" || d.Attrs["Hold timer"] != "7.747/9" || d.Attrs["Source address"] != "192.168.10.1" || d.LastError() != "" {
		t.Errorf("dynamic protocol %+v", d)
	}
	for _, k := range []string{"AF announced", "IPv6 nexthop", "Hostname"} {
		if _, ok := d.Attrs[k]; ok {
			t.Errorf("capability line %q read as an attribute: %v", k, d.Attrs)
		}
	}
	if c, ok := d.Channel("ipv4"); !ok || c.Imported != 1 || c.Preferred != 1 || c.Attrs["BGP Next hop"] != "192.168.10.1" {
		t.Errorf("dynamic protocol's channel %+v", c)
	}

	p, ok, err := FindBGPNeighbor(ps, netip.MustParseAddr("192.168.10.216"))
	if err != nil || !ok || p.Name != "node2" {
		t.Errorf("FindBGPNeighbor = %s, %v, %v", p.Name, ok, err)
	}
	if _, ok, _ := FindBGPNeighbor(ps, netip.MustParseAddr("192.168.10.99")); ok {
		t.Error("FindBGPNeighbor found a neighbor nobody has")
	}

	// A session the node closed (Cease, peer de-configured).
	ps, err = ParseProtocols(reply(t, "protocols-deconfigured.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n, ok, _ := FindBGPNeighbor(ps, netip.MustParseAddr("192.168.30.11"))
	if !ok || n.Name != "node1" || n.State != "start" || n.Info != "Active Received: Peer de-configured" ||
		n.BGPState() != "Active" || n.LastError() != "Received: Peer de-configured" {
		t.Errorf("closed session %+v", n)
	}
}

func TestFindBGPNeighborPrefersEstablished(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.1")
	ps := []Protocol{
		{Name: "old", Proto: "BGP", Attrs: map[string]string{"Neighbor address": "10.0.0.1", "BGP state": "Active"}},
		{Name: "new", Proto: "BGP", Attrs: map[string]string{"Neighbor address": "10.0.0.1%eth0", "BGP state": "Established"}},
	}
	if p, ok, _ := FindBGPNeighbor(ps, a); !ok || p.Name != "old" {
		// "10.0.0.1%eth0" is not the address 10.0.0.1 (an interface
		// suffix BIRD prints for link-local neighbors).
		t.Errorf("got %s, %v", p.Name, ok)
	}
	ps[1].Attrs["Neighbor address"] = "10.0.0.1"
	if p, ok, _ := FindBGPNeighbor(ps, a); !ok || p.Name != "new" {
		t.Errorf("got %s, %v; want the established one", p.Name, ok)
	}
}

func TestParseRoutes(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		file string
		want []Route
	}{{
		// Two nodes: BIRD's best route and the other.
		file: "routes-ecmp.txt",
		want: []Route{{
			Table: "master4", Net: netip.MustParsePrefix("192.168.30.1/32"), Dest: "unicast", Protocol: "node1", Primary: true, Preference: 100,
			Info: "[AS64513i]", NextHops: []NextHop{{Gateway: netip.MustParseAddr("192.168.10.215"), Interface: "eth0"}}, Type: "BGP univ",
			BGP: &BGPAttrs{Origin: "IGP", ASPath: "64513", NextHop: []netip.Addr{netip.MustParseAddr("192.168.10.215")}, LocalPref: u32(100)},
		}, {
			Table: "master4", Net: netip.MustParsePrefix("192.168.30.1/32"), Dest: "unicast", Protocol: "node2", Preference: 100,
			Info: "[AS64513i]", NextHops: []NextHop{{Gateway: netip.MustParseAddr("192.168.10.216"), Interface: "eth0"}}, Type: "BGP univ",
			BGP: &BGPAttrs{Origin: "IGP", ASPath: "64513", NextHop: []netip.Addr{netip.MustParseAddr("192.168.10.216")}, LocalPref: u32(100)},
		}},
	}, {
		// iBGP with local preference, communities (one well-known) and
		// large communities.
		file: "routes-ibgp.txt",
		want: []Route{{
			Table: "master4", Net: netip.MustParsePrefix("10.96.0.30/32"), Dest: "unicast", Protocol: "node1", Primary: true, Preference: 100,
			Info: "[i]", NextHops: []NextHop{{Gateway: netip.MustParseAddr("192.168.30.11"), Interface: "eth0"}}, Type: "BGP univ",
			BGP: &BGPAttrs{Origin: "IGP", NextHop: []netip.Addr{netip.MustParseAddr("192.168.30.11")}, LocalPref: u32(250),
				Communities:      []community.Community{65000<<16 | 7, 65000<<16 | 100, 0xFFFFFF01},
				LargeCommunities: []community.Large{{Global: 64512, Local1: 1, Local2: 2}, {Global: 64512, Local1: 3, Local2: 4}}},
		}},
	}, {
		file: "routes-ipv6.txt",
		want: []Route{{
			Table: "master6", Net: netip.MustParsePrefix("fd00:96::10/128"), Dest: "unicast", Protocol: "node1", Primary: true, Preference: 100,
			Info: "[AS64513i]", NextHops: []NextHop{{Gateway: netip.MustParseAddr("fd00:30::11"), Interface: "eth0"}}, Type: "BGP univ",
			BGP: &BGPAttrs{Origin: "IGP", ASPath: "64513", NextHop: []netip.Addr{netip.MustParseAddr("fd00:30::11")}, LocalPref: u32(100)},
		}},
	}} {
		rs, err := ParseRoutes(reply(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if len(rs) != len(tc.want) {
			t.Fatalf("%s: %d routes, want %d: %+v", tc.file, len(rs), len(tc.want), rs)
		}
		for i := range rs {
			got := rs[i]
			got.Attrs = nil
			if !reflect.DeepEqual(got, tc.want[i]) {
				t.Errorf("%s route %d:\n got %+v %+v\nwant %+v %+v", tc.file, i, got, got.BGP, tc.want[i], tc.want[i].BGP)
			}
		}
	}
	rs, _ := ParseRoutes(reply(t, "routes-ibgp.txt"))
	if rs[0].Attrs["BGP.community"] != "(65000,7) (65000,100) (65535,65281)" {
		t.Errorf("raw attributes %v", rs[0].Attrs)
	}
	if got := rs[0].BGP.Communities[2].String(); got != "no-export" {
		t.Errorf("(65535,65281) = %s, want no-export", got)
	}
}

// Forms the BIRD tests did not meet, written here in BIRD's format (see
// rt_show_rte in BIRD's nest/rt-show.c): a route learnt from a neighbor
// that is not its next hop, a multipath route with weights, an IPv6 next
// hop pair, a route without next hop, several tables.
const otherRoutesReply = "0001 BIRD 2.0.12 ready.\n" +
	"1007-Table master4:\n" +
	"     10.96.0.20/32        unicast [ibgp1 06:33:28.001 from 192.168.30.2] * (100/0) [i]\n" +
	"     \tvia 192.168.30.12 on eth0 weight 1\n" +
	"     \tvia 192.168.30.13 on eth0 weight 2\n" +
	"1008-\tType: BGP univ\n" +
	"1012-\tBGP.origin: IGP\n" +
	"     \tBGP.as_path: \n" +
	"     \tBGP.next_hop: 192.168.30.12\n" +
	"     \tBGP.med: 5\n" +
	"     \tBGP.local_pref: 250\n" +
	"1007-     \n" +
	"1007-Table master6:\n" +
	"     fd00:96::10/128      unicast [dynbgp3 06:40:00.000] * (100) [AS64513i]\n" +
	"     \tvia fe80::11 on eth0\n" +
	"1008-\tType: BGP univ\n" +
	"1012-\tBGP.next_hop: fd00:30::11 fe80::11\n" +
	"1007-     \n" +
	"1007-Table master4:\n" +
	"     10.0.0.0/8           unreachable [static1 2026-11-30] * (200)\n" +
	"1008-\tType: static univ\n"

func TestParseOtherRoutes(t *testing.T) {
	lines, err := ParseReply(otherRoutesReply)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseRoutes(lines)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("%d routes, want 3: %+v", len(rs), rs)
	}
	u32 := func(v uint32) *uint32 { return &v }
	want := []Route{{
		Table: "master4", Net: netip.MustParsePrefix("10.96.0.20/32"), Dest: "unicast", Protocol: "ibgp1", From: netip.MustParseAddr("192.168.30.2"),
		Primary: true, Preference: 100, Info: "[i]",
		NextHops: []NextHop{{Gateway: netip.MustParseAddr("192.168.30.12"), Interface: "eth0", Weight: 1}, {Gateway: netip.MustParseAddr("192.168.30.13"), Interface: "eth0", Weight: 2}},
		Type:     "BGP univ",
		BGP:      &BGPAttrs{Origin: "IGP", NextHop: []netip.Addr{netip.MustParseAddr("192.168.30.12")}, LocalPref: u32(250), MED: u32(5)},
	}, {
		Table: "master6", Net: netip.MustParsePrefix("fd00:96::10/128"), Dest: "unicast", Protocol: "dynbgp3", Primary: true, Preference: 100,
		Info:     "[AS64513i]",
		NextHops: []NextHop{{Gateway: netip.MustParseAddr("fe80::11"), Interface: "eth0"}},
		Type:     "BGP univ",
		BGP:      &BGPAttrs{NextHop: []netip.Addr{netip.MustParseAddr("fd00:30::11"), netip.MustParseAddr("fe80::11")}},
	}, {
		Table: "master4", Net: netip.MustParsePrefix("10.0.0.0/8"), Dest: "unreachable", Protocol: "static1", Primary: true, Preference: 200,
		Type: "static univ",
	}}
	for i := range rs {
		got := rs[i]
		got.Attrs = nil
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("route %d:\n got %+v %+v\nwant %+v %+v", i, got, got.BGP, want[i], want[i].BGP)
		}
	}
}

func TestParseRoutesErrors(t *testing.T) {
	for name, reply := range map[string]string{
		"detail first":    "1007-\tvia 10.0.0.1 on eth0\n",
		"bad head":        "1007-10.0.0.0/8 what is this\n",
		"bad community":   "1007-10.0.0.0/8 unicast [b 1] * (100)\n1012-\tBGP.community: (65000,70000)\n",
		"bad large":       "1007-10.0.0.0/8 unicast [b 1] * (100)\n1012-\tBGP.large_community: (1, 2)\n",
		"bad next hop":    "1007-10.0.0.0/8 unicast [b 1] * (100)\n     \tvia nowhere on eth0\n",
		"bad local pref":  "1007-10.0.0.0/8 unicast [b 1] * (100)\n1012-\tBGP.local_pref: high\n",
		"no net":          "1007-                unicast [b 1] * (100)\n",
		"bad BGP nexthop": "1007-10.0.0.0/8 unicast [b 1] * (100)\n1012-\tBGP.next_hop: x\n",
	} {
		lines, err := ParseReply(reply)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rs, err := ParseRoutes(lines); err == nil {
			t.Errorf("%s: no error, routes %+v", name, rs)
		}
	}
}

func TestParseBFDSessions(t *testing.T) {
	ss, err := ParseBFDSessions(reply(t, "bfd-sessions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []BFDSession{
		{Protocol: "bfd1", Address: netip.MustParseAddr("192.168.10.215"), Interface: "eth0", State: "Up", Since: "06:42:28.079", Interval: 300 * time.Millisecond, Timeout: 900 * time.Millisecond},
		{Protocol: "bfd1", Address: netip.MustParseAddr("192.168.10.216"), Interface: "eth0", State: "Up", Since: "06:42:16.766", Interval: 300 * time.Millisecond, Timeout: 900 * time.Millisecond},
	}
	if !reflect.DeepEqual(ss, want) {
		t.Errorf("got %+v\nwant %+v", ss, want)
	}
	// A date for a session older than a day.
	ss, err = ParseBFDSessions([]Line{{Code: codeBFDSessions, Text: "bfd1:"}, {Code: codeBFDSessions, Text: "fd00:30::12               eth0       Down       2026-11-30      1.000    0.000"}})
	if err != nil || len(ss) != 1 || ss[0].Since != "2026-11-30" || ss[0].Interval != time.Second || ss[0].Address != netip.MustParseAddr("fd00:30::12") {
		t.Errorf("got %+v, %v", ss, err)
	}
	if _, err := ParseBFDSessions([]Line{{Code: codeBFDSessions, Text: "192.168.30.11 eth0 Up"}}); err == nil {
		t.Error("short line accepted")
	}
}

func TestParseReply(t *testing.T) {
	// An error code: the lines and a *ReplyError.
	lines, err := ParseReply("0001 BIRD 2.0.12 ready.\n8001 Network not found\n")
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 8001 || re.Text != "Network not found" || len(lines) != 1 {
		t.Errorf("8001: lines %+v, err %v", lines, err)
	}
	_, err = ParseReply("0001 BIRD 2.0.12 ready.\n9001 syntax error, unexpected CF_SYM_UNDEFINED\n")
	if !errors.As(err, &re) || re.Code != 9001 {
		t.Errorf("9001: %v", err)
	}
	// Continuation lines take the code of the line before.
	lines, err = ParseReply("0001 BIRD 2.0.12 ready.\n0002-Reading configuration from /x\n0003 Reconfigured\n")
	if err != nil || !reflect.DeepEqual(lines, []Line{{2, "Reading configuration from /x"}, {3, "Reconfigured"}}) {
		t.Errorf("reconfigure: %+v, %v", lines, err)
	}
	lines, err = ParseReply("0001 BIRD 2.0.12 ready.\n1020-bfd1:\n     x y\n")
	if err != nil || !reflect.DeepEqual(lines, []Line{{1020, "bfd1:"}, {1020, "x y"}}) {
		t.Errorf("continuation: %+v, %v", lines, err)
	}
	// What birdc writes by itself is not a reply.
	for _, out := range []string{
		"Unable to connect to server control socket (/run/x/bird.ctl): No such file or directory\n",
		"0001 BIRD 2.0.12 ready.\nNo such command. Press `?' for help.\n",
		"",
	} {
		if _, err := ParseReply(out); err == nil || errors.As(err, &re) {
			t.Errorf("%q: err %v, want a plain error", out, err)
		}
	}
}

func TestWrapper(t *testing.T) {
	w := wrapper("/run/herald-bird/1-abc-r/bird.conf")
	if !strings.HasPrefix(w, "log stderr all;\n") || !strings.Contains(w, `include "/run/herald-bird/1-abc-r/bird.conf";`) {
		t.Errorf("wrapper %q", w)
	}
}
