package announce

import (
	"net/netip"
	"testing"
)

func TestWithBGP(t *testing.T) {
	addr := netip.MustParseAddr("192.168.30.5")
	tor := BGPPeerRef{Name: "tor", Addr: netip.MustParseAddr("192.168.10.1"), ASN: 64512}
	tor2 := BGPPeerRef{Name: "tor2", Addr: netip.MustParseAddr("192.168.11.1"), ASN: 64512}
	unanswered := AddrSummary{Addr: addr, Reason: NoPolicy, Message: "192.168.30.5: no L2AnnouncementPolicy selects the Service"}
	answered := AddrSummary{Addr: addr, Answered: true, Reason: Announced, Message: "192.168.30.5 announced by node a on eth0"}
	for _, tc := range []struct {
		name        string
		in          AddrSummary
		advertisers []Advertiser
		answered    bool
		reason      Reason
		message     string
	}{
		{"nobody advertises", unanswered, nil, false, NoPolicy, unanswered.Message},
		{"only a node that is not Ready", unanswered, []Advertiser{{Node: "a", Peers: []BGPPeerRef{tor}, NotReady: true}}, false, NoPolicy, unanswered.Message},
		{"a node without established peers", unanswered, []Advertiser{{Node: "a"}}, false, NoPolicy, unanswered.Message},
		{"three nodes to one router", unanswered, []Advertiser{
			{Node: "c", Peers: []BGPPeerRef{tor}}, {Node: "a", Peers: []BGPPeerRef{tor}}, {Node: "b", Peers: []BGPPeerRef{tor}},
		}, true, Announced, "192.168.30.5 advertised by BGP by nodes a, b and c to tor (192.168.10.1, AS 64512)"},
		{"per-rack peers", unanswered, []Advertiser{
			{Node: "a", Peers: []BGPPeerRef{tor}}, {Node: "b", Peers: []BGPPeerRef{tor}}, {Node: "c", Peers: []BGPPeerRef{tor2}},
		}, true, Announced, "192.168.30.5 advertised by BGP by nodes a and b to tor (192.168.10.1, AS 64512); by node c to tor2 (192.168.11.1, AS 64512)"},
		{"two routers hearing the same nodes", unanswered, []Advertiser{
			{Node: "a", Peers: []BGPPeerRef{tor2, tor}},
		}, true, Announced, "192.168.30.5 advertised by BGP by node a to tor (192.168.10.1, AS 64512), tor2 (192.168.11.1, AS 64512)"},
		{"announced on the LAN too", answered, []Advertiser{{Node: "b", Peers: []BGPPeerRef{tor}}}, true, Announced,
			"192.168.30.5 announced by node a on eth0; advertised by BGP by node b to tor (192.168.10.1, AS 64512)"},
		{"an answered address keeps its reason", AddrSummary{Addr: addr, Answered: true, Reason: AddressConflict, Message: "conflict"},
			[]Advertiser{{Node: "b", Peers: []BGPPeerRef{tor}}}, true, AddressConflict, "conflict; advertised by BGP by node b to tor (192.168.10.1, AS 64512)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := WithBGP(tc.in, tc.advertisers)
			if got.Answered != tc.answered || got.Reason != tc.reason || got.Message != tc.message {
				t.Errorf("got %v %s %q\nwant %v %s %q", got.Answered, got.Reason, got.Message, tc.answered, tc.reason, tc.message)
			}
		})
	}
}
