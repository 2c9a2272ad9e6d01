package bird

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/bgp/community"
)

// The replies below are BIRD 2.0.12's, as birdc -v printed them (tabs
// kept).

const protocolsReply = `0001 BIRD 2.0.12 ready.
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     06:32:47.487  
1006-
1002-kernel4    Kernel     master4    up     06:32:47.487  
1006-  Channel ipv4
         State:          UP
         Table:          master4
         Preference:     10
         Input filter:   ACCEPT
         Output filter:  (unnamed)
         Routes:         0 imported, 2 exported, 0 preferred
         Route change stats:     received   rejected   filtered    ignored   accepted
           Import updates:              0          0          0          0          0
           Export updates:              2          0          0        ---          2
     
1002-nodes      BGP        ---        start  06:33:14.460  Passive       
1006-  BGP state:          Passive
         Neighbor range:   192.168.30.0/23
         Neighbor AS:      64513
         Local AS:         64512
       Channel ipv4
         State:          DOWN
         Table:          master4
         Preference:     100
         Input filter:   ACCEPT
         Output filter:  REJECT
     
1002-dynbgp1    BGP        ---        up     06:33:27.552  Established   
1006-  Created from:       nodes
       BGP state:          Established
         Neighbor address: 192.168.30.11
         Neighbor AS:      64513
         Local AS:         64512
         Neighbor ID:      192.168.30.11
         Local capabilities
           Multiprotocol
             AF announced: ipv4
           Route refresh
           4-octet AS numbers
         Neighbor capabilities
           Multiprotocol
             AF announced: ipv4
           Graceful restart
         Session:          external AS4
         Source address:   192.168.30.1
         Hold timer:       7.281/9
         Keepalive timer:  1.009/3
       Channel ipv4
         State:          UP
         Table:          master4
         Preference:     100
         Input filter:   ACCEPT
         Output filter:  REJECT
         Routes:         2 imported, 0 exported, 2 preferred
         BGP Next hop:   192.168.30.1
     
1002-r2         BGP        ---        start  2026-11-30    Active        Received: Bad peer AS
1006-  BGP state:          Active
         Neighbor address: 192.168.30.12
         Neighbor AS:      64513
         Local AS:         64512
         Connect delay:    2.201/5
         Last error:       Received: Bad peer AS
`

func TestParseProtocols(t *testing.T) {
	lines, err := ParseReply(protocolsReply)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ParseProtocols(lines)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if want := []string{"device1", "kernel4", "nodes", "dynbgp1", "r2"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("protocols %v, want %v", names, want)
	}
	k := ps[1]
	if c, ok := k.Channel("ipv4"); !ok || c.State != "UP" || c.Table != "master4" || c.Exported != 2 || c.Imported != 0 {
		t.Errorf("kernel4 channel %+v", c)
	}
	if _, ok := k.Attrs["Import updates"]; ok {
		t.Errorf("channel attributes leaked into the protocol's: %v", k.Attrs)
	}

	tmpl := ps[2]
	if tmpl.BGPState() != "Passive" || tmpl.NeighborAddress().IsValid() || tmpl.Attrs["Neighbor range"] != "192.168.30.0/23" || tmpl.LocalAS() != 64512 {
		t.Errorf("template %+v", tmpl)
	}

	d := ps[3]
	if d.Proto != "BGP" || d.State != "up" || d.Info != "Established" || d.BGPState() != "Established" ||
		d.NeighborAddress() != netip.MustParseAddr("192.168.30.11") || d.NeighborAS() != 64513 || d.LocalAS() != 64512 ||
		d.Attrs["Session"] != "external AS4" || d.Attrs["Hold timer"] != "7.281/9" || d.Attrs["Created from"] != "nodes" || d.LastError() != "" {
		t.Errorf("dynamic protocol %+v", d)
	}
	if _, ok := d.Attrs["AF announced"]; ok {
		t.Errorf("capability lines read as attributes: %v", d.Attrs)
	}
	if c, ok := d.Channel("ipv4"); !ok || c.Imported != 2 || c.Preferred != 2 || c.Attrs["BGP Next hop"] != "192.168.30.1" {
		t.Errorf("dynamic protocol's channel %+v", c)
	}

	r2 := ps[4]
	if r2.Since != "2026-11-30" || r2.Info != "Active Received: Bad peer AS" || r2.LastError() != "Received: Bad peer AS" || r2.BGPState() != "Active" {
		t.Errorf("failed protocol %+v", r2)
	}

	p, ok, err := FindBGPNeighbor(ps, netip.MustParseAddr("192.168.30.11"))
	if err != nil || !ok || p.Name != "dynbgp1" {
		t.Errorf("FindBGPNeighbor = %s, %v, %v", p.Name, ok, err)
	}
	if _, ok, _ := FindBGPNeighbor(ps, netip.MustParseAddr("192.168.30.99")); ok {
		t.Error("FindBGPNeighbor found a neighbor nobody has")
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

const routesReply = "0001 BIRD 2.0.12 ready.\n" +
	"1007-Table master4:\n" +
	"     10.96.0.20/32        unicast [dynbgp1 06:33:27.602] * (100) [AS64513i]\n" +
	"     \tvia 192.168.30.11 on eth0\n" +
	"1008-\tType: BGP univ\n" +
	"1012-\tBGP.origin: IGP\n" +
	"     \tBGP.as_path: 64513\n" +
	"     \tBGP.next_hop: 192.168.30.11\n" +
	"     \tBGP.local_pref: 100\n" +
	"     \tBGP.community: (65000,100) (65535,65281)\n" +
	"     \tBGP.large_community: (64512, 1, 2) (64512, 3, 4)\n" +
	"1007-                     unicast [dynbgp2 06:33:28.001 from 192.168.30.2] (100/0) [i]\n" +
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
	"1012-\tBGP.origin: IGP\n" +
	"     \tBGP.as_path: 64513\n" +
	"     \tBGP.next_hop: fd00:30::11 fe80::11\n" +
	"     \tBGP.local_pref: 100\n" +
	"1007-     \n" +
	"1007-Table master4:\n" +
	"     10.0.0.0/8           unreachable [static1 2026-11-30] * (200)\n" +
	"1008-\tType: static univ\n"

func TestParseRoutes(t *testing.T) {
	lines, err := ParseReply(routesReply)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseRoutes(lines)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d routes, want 4: %+v", len(rs), rs)
	}
	u32 := func(v uint32) *uint32 { return &v }
	want := []Route{{
		Table: "master4", Net: netip.MustParsePrefix("10.96.0.20/32"), Dest: "unicast", Protocol: "dynbgp1", Primary: true, Preference: 100,
		Info:     "[AS64513i]",
		NextHops: []NextHop{{Gateway: netip.MustParseAddr("192.168.30.11"), Interface: "eth0"}},
		Type:     "BGP univ",
		BGP: &BGPAttrs{Origin: "IGP", ASPath: "64513", NextHop: []netip.Addr{netip.MustParseAddr("192.168.30.11")}, LocalPref: u32(100),
			Communities:      []community.Community{65000<<16 | 100, community.Community(0xFFFFFF01)},
			LargeCommunities: []community.Large{{Global: 64512, Local1: 1, Local2: 2}, {Global: 64512, Local1: 3, Local2: 4}}},
	}, {
		Table: "master4", Net: netip.MustParsePrefix("10.96.0.20/32"), Dest: "unicast", Protocol: "dynbgp2", From: netip.MustParseAddr("192.168.30.2"),
		Preference: 100, Info: "[i]",
		NextHops: []NextHop{{Gateway: netip.MustParseAddr("192.168.30.12"), Interface: "eth0", Weight: 1}, {Gateway: netip.MustParseAddr("192.168.30.13"), Interface: "eth0", Weight: 2}},
		Type:     "BGP univ",
		BGP:      &BGPAttrs{Origin: "IGP", NextHop: []netip.Addr{netip.MustParseAddr("192.168.30.12")}, LocalPref: u32(250), MED: u32(5)},
	}, {
		Table: "master6", Net: netip.MustParsePrefix("fd00:96::10/128"), Dest: "unicast", Protocol: "dynbgp3", Primary: true, Preference: 100,
		Info:     "[AS64513i]",
		NextHops: []NextHop{{Gateway: netip.MustParseAddr("fe80::11"), Interface: "eth0"}},
		Type:     "BGP univ",
		BGP:      &BGPAttrs{Origin: "IGP", ASPath: "64513", NextHop: []netip.Addr{netip.MustParseAddr("fd00:30::11"), netip.MustParseAddr("fe80::11")}, LocalPref: u32(100)},
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
	if rs[0].Attrs["BGP.community"] != "(65000,100) (65535,65281)" {
		t.Errorf("raw attributes %v", rs[0].Attrs)
	}
	if got := rs[0].BGP.Communities[1].String(); got != "no-export" {
		t.Errorf("(65535,65281) = %s, want no-export", got)
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

const bfdReply = "0001 BIRD 2.0.12 ready.\n" +
	"1020-bfd1:\n" +
	"     IP address                Interface  State      Since         Interval  Timeout\n" +
	"     192.168.30.11             eth0       Up         06:32:58.518    0.300    0.900\n" +
	"     fd00:30::12               eth0       Down       2026-11-30      1.000    0.000\n"

func TestParseBFDSessions(t *testing.T) {
	lines, err := ParseReply(bfdReply)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := ParseBFDSessions(lines)
	if err != nil {
		t.Fatal(err)
	}
	want := []BFDSession{
		{Protocol: "bfd1", Address: netip.MustParseAddr("192.168.30.11"), Interface: "eth0", State: "Up", Since: "06:32:58.518", Interval: 300 * time.Millisecond, Timeout: 900 * time.Millisecond},
		{Protocol: "bfd1", Address: netip.MustParseAddr("fd00:30::12"), Interface: "eth0", State: "Down", Since: "2026-11-30", Interval: time.Second},
	}
	if !reflect.DeepEqual(ss, want) {
		t.Errorf("got %+v\nwant %+v", ss, want)
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
