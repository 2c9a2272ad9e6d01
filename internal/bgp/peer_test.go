package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPeerNormalize(t *testing.T) {
	base := Peer{Address: addr("192.0.2.1"), PeerASN: 64512}
	with := func(f func(*Peer)) Peer {
		p := base
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name    string
		in      Peer
		want    Peer
		wantErr string
	}{
		{name: "defaults", in: base, want: with(func(p *Peer) { p.ConnectRetry = DefaultConnectRetry })},
		{name: "IPv6", in: Peer{Address: addr("fd00::1"), PeerASN: 1}, want: Peer{Address: addr("fd00::1"), PeerASN: 1, ConnectRetry: DefaultConnectRetry}},
		{
			name: "everything set",
			in: with(func(p *Peer) {
				p.Port, p.LocalASN, p.Password, p.LocalAddress = 1179, 65000, "pw", addr("192.0.2.9")
				p.HoldTime, p.KeepaliveTime, p.ConnectRetry = 9*time.Second, 3*time.Second, 5*time.Second
				p.EBGPMultihopTTL = 2
				p.GracefulRestart = GracefulRestart{Enabled: true, RestartTime: 120 * time.Second}
				p.BFD = &BFD{MinTx: 300 * time.Millisecond, MinRx: 250 * time.Millisecond, Multiplier: 3}
			}),
			want: with(func(p *Peer) {
				p.Port, p.LocalASN, p.Password, p.LocalAddress = 1179, 65000, "pw", addr("192.0.2.9")
				p.HoldTime, p.KeepaliveTime, p.ConnectRetry = 9*time.Second, 3*time.Second, 5*time.Second
				p.EBGPMultihopTTL = 2
				p.GracefulRestart = GracefulRestart{Enabled: true, RestartTime: 120 * time.Second}
				p.BFD = &BFD{MinTx: 300 * time.Millisecond, MinRx: 250 * time.Millisecond, Multiplier: 3}
			}),
		},
		{name: "no address", in: Peer{PeerASN: 1}, wantErr: "without a valid address"},
		{name: "unspecified", in: Peer{Address: addr("0.0.0.0"), PeerASN: 1}, wantErr: "not a usable unicast address"},
		{name: "multicast", in: Peer{Address: addr("ff02::1"), PeerASN: 1}, wantErr: "not a usable unicast address"},
		{name: "zone", in: Peer{Address: addr("fe80::1%eth0"), PeerASN: 1}, wantErr: "with a zone are not supported"},
		{name: "mapped", in: Peer{Address: addr("::ffff:192.0.2.1"), PeerASN: 1}, wantErr: "not a usable unicast address"},
		{name: "no peer ASN", in: Peer{Address: addr("192.0.2.1")}, wantErr: "peer ASN is required"},
		{name: "long password", in: with(func(p *Peer) { p.Password = strings.Repeat("x", 81) }), wantErr: "TCP MD5 keys are at most 80"},
		{name: "80-byte password", in: with(func(p *Peer) { p.Password = strings.Repeat("x", 80) }),
			want: with(func(p *Peer) { p.Password = strings.Repeat("x", 80); p.ConnectRetry = DefaultConnectRetry })},
		{name: "local address family", in: with(func(p *Peer) { p.LocalAddress = addr("fd00::1") }), wantErr: "not of the peer's address family"},
		{name: "fractional hold time", in: with(func(p *Peer) { p.HoldTime = 1500 * time.Millisecond }), wantErr: "whole seconds"},
		{name: "negative keepalive", in: with(func(p *Peer) { p.KeepaliveTime = -time.Second }), wantErr: "whole seconds"},
		{name: "huge connect retry", in: with(func(p *Peer) { p.ConnectRetry = 70000 * time.Second }), wantErr: "whole seconds"},
		{name: "hold time below 3 s", in: with(func(p *Peer) { p.HoldTime = 2 * time.Second }), wantErr: "below 3 s"},
		{name: "keepalive above hold time", in: with(func(p *Peer) { p.HoldTime, p.KeepaliveTime = 9*time.Second, 10*time.Second }), wantErr: "exceeds the hold time"},
		{name: "keepalive above default hold time", in: with(func(p *Peer) { p.KeepaliveTime = 91 * time.Second }), wantErr: "exceeds the hold time 1m30s"},
		{name: "restart time too long", in: with(func(p *Peer) { p.GracefulRestart.RestartTime = 4096 * time.Second }), wantErr: "graceful restart time"},
		{name: "BFD sub-microsecond", in: with(func(p *Peer) { p.BFD = &BFD{MinTx: 1500 * time.Nanosecond} }), wantErr: "whole microseconds"},
		{name: "BFD negative", in: with(func(p *Peer) { p.BFD = &BFD{MinRx: -time.Millisecond} }), wantErr: "whole microseconds"},
		{name: "BFD too long", in: with(func(p *Peer) { p.BFD = &BFD{MinRx: 2 * time.Hour} }), wantErr: "whole microseconds"},
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
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("normalize() (-want +got):\n%s", diff)
			}
			if tc.in.BFD != nil && got.BFD == tc.in.BFD {
				t.Error("the normalized peer shares the caller's BFD")
			}
		})
	}
}

func TestPeerTable(t *testing.T) {
	a := Peer{Address: addr("192.0.2.1"), PeerASN: 1}
	if _, err := peerTable([]Peer{a, a}); err != nil {
		t.Errorf("the same peer twice: %v", err)
	}
	b := a
	b.PeerASN = 2
	if _, err := peerTable([]Peer{a, b}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("conflicting peers: %v", err)
	}
	if _, err := peerTable([]Peer{a, {}}); err == nil {
		t.Error("an invalid peer was accepted")
	}
}

func TestDiffPeers(t *testing.T) {
	mk := func(a string, f func(*Peer)) Peer {
		p := Peer{Address: addr(a), PeerASN: 64512, ConnectRetry: DefaultConnectRetry}
		if f != nil {
			f(&p)
		}
		return p
	}
	p1, p2, p3 := mk("192.0.2.1", nil), mk("192.0.2.2", nil), mk("fd00::3", nil)
	p2asn := mk("192.0.2.2", func(p *Peer) { p.PeerASN = 65000 })
	p2pw := mk("192.0.2.2", func(p *Peer) { p.Password = "x" })
	p2hold := mk("192.0.2.2", func(p *Peer) { p.HoldTime = 9 * time.Second })
	p2bfd := mk("192.0.2.2", func(p *Peer) { p.BFD = &BFD{Multiplier: 3} })
	p2bfd5 := mk("192.0.2.2", func(p *Peer) { p.BFD = &BFD{Multiplier: 5} })
	p2bfdAndASN := mk("192.0.2.2", func(p *Peer) { p.BFD = &BFD{Multiplier: 3}; p.PeerASN = 65000 })
	table := func(ps ...Peer) map[netip.Addr]Peer {
		m := map[netip.Addr]Peer{}
		for _, p := range ps {
			m[p.Address] = p
		}
		return m
	}
	for _, tc := range []struct {
		name         string
		cur, desired map[netip.Addr]Peer
		want         peerDiff
	}{
		{name: "nothing", cur: table(), desired: table()},
		{name: "unchanged", cur: table(p1, p2), desired: table(p1, p2)},
		{name: "unchanged BFD, other pointer", cur: table(p2bfd), desired: table(mk("192.0.2.2", func(p *Peer) { p.BFD = &BFD{Multiplier: 3} }))},
		{name: "add", cur: table(p1), desired: table(p3, p1, p2), want: peerDiff{Add: []Peer{p2, p3}}},
		{name: "remove", cur: table(p1, p2, p3), desired: table(p2), want: peerDiff{Remove: []netip.Addr{p1.Address, p3.Address}}},
		{name: "ASN changed", cur: table(p2), desired: table(p2asn), want: peerDiff{Reset: []Peer{p2asn}}},
		{name: "password changed", cur: table(p2), desired: table(p2pw), want: peerDiff{Reset: []Peer{p2pw}}},
		{name: "timers changed", cur: table(p2), desired: table(p2hold), want: peerDiff{Reset: []Peer{p2hold}}},
		{name: "BFD on", cur: table(p2), desired: table(p2bfd), want: peerDiff{UpdateBFD: []Peer{p2bfd}}},
		{name: "BFD changed", cur: table(p2bfd), desired: table(p2bfd5), want: peerDiff{UpdateBFD: []Peer{p2bfd5}}},
		{name: "BFD off", cur: table(p2bfd), desired: table(p2), want: peerDiff{UpdateBFD: []Peer{p2}}},
		{name: "BFD and ASN: reset", cur: table(p2), desired: table(p2bfdAndASN), want: peerDiff{Reset: []Peer{p2bfdAndASN}}},
		{name: "everything", cur: table(p1, p2), desired: table(p2bfd, p3), want: peerDiff{Add: []Peer{p3}, UpdateBFD: []Peer{p2bfd}, Remove: []netip.Addr{p1.Address}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diffPeers(tc.cur, tc.desired)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("diffPeers() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPeerToAPI(t *testing.T) {
	p, err := Peer{
		Address: addr("fd00::1"), PeerASN: 64512, LocalASN: 65000, Port: 1179, Password: "pw",
		LocalAddress: addr("fd00::2"), HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
		EBGPMultihopTTL: 3, GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 60 * time.Second},
		BFD: &BFD{MinTx: 300 * time.Millisecond, MinRx: 200 * time.Millisecond, Multiplier: 4},
	}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	ap := peerToAPI(p, true)
	if ap.Conf.NeighborAddress != "fd00::1" || ap.Conf.PeerAsn != 64512 || ap.Conf.LocalAsn != 65000 || ap.Conf.AuthPassword != "pw" {
		t.Errorf("conf %v", ap.Conf)
	}
	if ap.Transport.RemotePort != 1179 || ap.Transport.LocalAddress != "fd00::2" {
		t.Errorf("transport %v", ap.Transport)
	}
	if c := ap.Timers.Config; c.HoldTime != 9 || c.KeepaliveInterval != 3 || c.ConnectRetry != 10 {
		t.Errorf("timers %v", c)
	}
	if !ap.EbgpMultihop.Enabled || ap.EbgpMultihop.MultihopTtl != 3 {
		t.Errorf("multihop %v", ap.EbgpMultihop)
	}
	if !ap.GracefulRestart.Enabled || ap.GracefulRestart.RestartTime != 60 || !ap.AfiSafis[0].MpGracefulRestart.Config.Enabled {
		t.Errorf("graceful restart %v %v", ap.GracefulRestart, ap.AfiSafis[0].MpGracefulRestart)
	}
	if len(ap.AfiSafis) != 1 || ap.AfiSafis[0].Config.Family.Afi.String() != "AFI_IP6" {
		t.Errorf("families %v", ap.AfiSafis)
	}
	if b := ap.Bfd; !b.Enabled || b.DesiredMinimumTxInterval != 300000 || b.RequiredMinimumReceive != 200000 || b.DetectionMultiplier != 4 {
		t.Errorf("BFD %v", b)
	}
	if ap.RouteReflector == nil {
		t.Error("RouteReflector is nil: GoBGP's AddPeer dereferences it")
	}
	if b := peerToAPI(p, false).Bfd; b.Enabled {
		t.Errorf("BFD not armed but enabled: %v", b)
	}
}
