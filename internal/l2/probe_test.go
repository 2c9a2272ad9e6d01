package l2

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

func TestProbeConflict(t *testing.T) {
	mf := mustFrame(t)
	foreign := net.HardwareAddr{0x02, 0xff, 0, 0, 0, 0x99}
	other4 := netip.MustParseAddr("192.168.10.99")
	other6 := netip.MustParseAddr("fd00:10::99")
	probeReq := mustDecode(t, mf(ARPProbe(testMAC, vip4)))
	req := mustDecode(t, mf(ARPRequest(clientMAC, client4, other4)))

	cases := []struct {
		name  string
		addr  netip.Addr
		frame []byte
		kind  string // "" = no conflict
	}{
		{"reply to our probe", vip4, mf(ARPReply(foreign, vip4, &probeReq)), ConflictARPReply},
		{"garp request", vip4, mf(GratuitousARPRequest(foreign, vip4)), ConflictGARP},
		{"garp reply", vip4, mf(GratuitousARPReply(foreign, vip4)), ConflictGARP},
		{"request from the address", vip4, mf(ARPRequest(foreign, vip4, client4)), ConflictARPRequest},
		{"simultaneous probe", vip4, mf(ARPProbe(foreign, vip4)), ConflictARPProbe},
		{"reply about another address", vip4, mf(ARPReply(foreign, other4, &req)), ""},
		{"someone asking for it", vip4, mf(ARPRequest(foreign, client4, vip4)), ""},
		{"our own probe", vip4, mf(ARPProbe(testMAC, vip4)), ""},
		{"na", vip6, mf(UnsolicitedNA(foreign, vip6)), ConflictNA},
		{"solicited na", vip6, mf(SolicitedNA(foreign, vip6, testMAC, client6)), ConflictNA},
		{"simultaneous dad", vip6, mf(DADSolicitation(foreign, vip6)), ConflictDAD},
		{"na for another address", vip6, mf(UnsolicitedNA(foreign, other6)), ""},
		{"ns resolving it", vip6, mf(NeighborSolicitation(foreign, client6, vip6)), ""},
		{"our own dad", vip6, mf(DADSolicitation(testMAC, vip6)), ""},
	}
	for _, c := range cases {
		m := mustDecode(t, c.frame)
		got := probeConflict(&m, c.addr, testMAC)
		switch {
		case c.kind == "" && got != nil:
			t.Errorf("%s: conflict %+v, want none", c.name, *got)
		case c.kind != "" && got == nil:
			t.Errorf("%s: no conflict, want %s", c.name, c.kind)
		case c.kind != "" && (got.Kind != c.kind || !sameMAC(got.MAC, foreign) || got.Addr != c.addr):
			t.Errorf("%s: conflict %+v, want kind %s MAC %s", c.name, *got, c.kind, foreign)
		}
	}
}

func TestProbeRejectsBadArguments(t *testing.T) {
	ctx := context.Background()
	ifi := &net.Interface{Name: "x", HardwareAddr: testMAC}
	if _, err := Probe(ctx, nil, vip4, ProbeOptions{}); err == nil {
		t.Error("nil interface accepted")
	}
	if _, err := Probe(ctx, &net.Interface{Name: "lo"}, vip4, ProbeOptions{}); err == nil {
		t.Error("interface without MAC accepted")
	}
	for _, a := range []netip.Addr{{}, netip.IPv4Unspecified(), netip.MustParseAddr("ff02::1"), netip.MustParseAddr("fe80::1%x")} {
		if _, err := Probe(ctx, ifi, a, ProbeOptions{}); err == nil {
			t.Errorf("address %v accepted", a)
		}
	}
	if _, err := NewResponder(nil, Options{}); err == nil {
		t.Error("NewResponder(nil) succeeded")
	}
	if _, err := NewResponder(&net.Interface{Name: "lo"}, Options{}); err == nil {
		t.Error("NewResponder on an interface without MAC succeeded")
	}
}
