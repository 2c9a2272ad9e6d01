package bgp

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

func TestNewChecksConfig(t *testing.T) {
	ok := Config{RouterID: addr("192.0.2.1"), ASN: 64512}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "IPv6 router ID", cfg: Config{RouterID: addr("fd00::1"), ASN: 1}, wantErr: "must be an IPv4 address"},
		{name: "no router ID", cfg: Config{ASN: 1}, wantErr: "must be an IPv4 address"},
		{name: "no ASN", cfg: Config{RouterID: addr("192.0.2.1")}, wantErr: "ASN is required"},
		{name: "port", cfg: Config{RouterID: addr("192.0.2.1"), ASN: 1, ListenPort: 70000}, wantErr: "listen port"},
		{name: "negative port", cfg: Config{RouterID: addr("192.0.2.1"), ASN: 1, ListenPort: -2}, wantErr: "listen port"},
		{name: "negative grace", cfg: Config{RouterID: addr("192.0.2.1"), ASN: 1, WithdrawGrace: -1}, wantErr: "negative"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: New() error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("New(%+v): %v", ok, err)
	}
}

// startLocal starts a speaker in this process. Its peers are on the
// loopback interface, on a port where nothing listens, so they never get a
// session and nothing leaves the machine.
func startLocal(t *testing.T) *Speaker {
	t.Helper()
	s, err := New(Config{RouterID: addr("192.0.2.1"), ASN: 64512, WithdrawGrace: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.SetRoutes(ctx, nil); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Errorf("SetRoutes before Start: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func localPeer(a string) Peer {
	return Peer{Address: addr(a), PeerASN: 64513, Port: 1, ConnectRetry: 3 * time.Second}
}

func exportPolicies(t *testing.T, s *Speaker) []string {
	t.Helper()
	var names []string
	err := s.srv.ListPolicyAssignment(context.Background(), &api.ListPolicyAssignmentRequest{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
	}, func(a *api.PolicyAssignment) {
		for _, p := range a.Policies {
			names = append(names, p.Name)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// ribPaths returns the prefixes of the global RIB with their large
// communities.
func ribPaths(t *testing.T, s *Speaker) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: f}, func(n bgppkt.NLRI, ps []*apiutil.Path) {
			var lcs []string
			for _, a := range ps[0].Attrs {
				if l, ok := a.(*bgppkt.PathAttributeLargeCommunities); ok {
					for _, v := range l.Values {
						lcs = append(lcs, v.String())
					}
				}
			}
			out[n.String()] = lcs
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestSpeakerBookkeeping(t *testing.T) {
	s := startLocal(t)
	ctx := context.Background()

	// Invalid input changes nothing.
	if err := s.SetPeers(ctx, []Peer{localPeer("127.0.0.1"), {}}); err == nil {
		t.Fatal("invalid peers accepted")
	}
	if ss, err := s.Sessions(ctx); err != nil || len(ss) != 0 {
		t.Fatalf("sessions after invalid SetPeers: %v, %v", ss, err)
	}

	// Two peers: two export statements before the stripping.
	if err := s.SetPeers(ctx, []Peer{localPeer("127.0.0.2"), localPeer("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if got, want := exportPolicies(t, s), []string{"herald-peer-1", "herald-peer-2", stripName}; !slices.Equal(got, want) {
		t.Errorf("export policies %v, want %v", got, want)
	}
	// Nobody listens on port 1: the connection is refused, and Sessions
	// says so.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ss, err := s.Sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) != 2 || ss[0].Peer != addr("127.0.0.1") {
			t.Fatalf("sessions %+v", ss)
		}
		if strings.Contains(ss[0].LastError, "connection refused") && strings.Contains(ss[1].LastError, "connection refused") {
			if ss[0].State == StateEstablished || ss[0].RoutesAdvertised != 0 || ss[0].BFD != BFDDisabled {
				t.Errorf("session %+v", ss[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection error reported: %+v", ss)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Routes: one for every peer, one for 127.0.0.2 only, one for a
	// peer not configured yet (its mark number is given now).
	drain(s)
	routes := []Route{
		{Prefix: pfx("10.0.0.1/32"), LargeCommunities: []LargeCommunity{{Global: 1, Local1: 2, Local2: 3}}},
		{Prefix: pfx("10.0.0.2/32"), Peers: []netip.Addr{addr("127.0.0.2")}},
		{Prefix: pfx("fd00::3/128"), Peers: []netip.Addr{addr("::1")}},
	}
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Changes():
	default:
		t.Error("SetRoutes did not signal a change")
	}
	got := ribPaths(t, s)
	want := map[string][]string{
		"10.0.0.1/32": {"1:2:3", "4294967295:0:0"},
		"10.0.0.2/32": {"4294967295:1:2"}, // 127.0.0.2 got number 2 (the peers were added in address order)
		"fd00::3/128": {"4294967295:1:3"},
	}
	if !mapsEqual(got, want) {
		t.Errorf("RIB %v, want %v", got, want)
	}

	// Unchanged routes are not touched; invalid routes change nothing.
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Changes():
		t.Error("unchanged routes signalled a change")
	default:
	}
	if err := s.SetRoutes(ctx, []Route{{Prefix: pfx("10.0.0.9/24")}}); err == nil {
		t.Error("invalid route accepted")
	}
	if got := ribPaths(t, s); !mapsEqual(got, want) {
		t.Errorf("RIB after invalid SetRoutes %v, want %v", got, want)
	}

	// Withdraw two, change the peers of the third.
	if err := s.SetRoutes(ctx, []Route{{Prefix: pfx("10.0.0.2/32"), Peers: []netip.Addr{addr("127.0.0.1"), addr("127.0.0.2")}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := ribPaths(t, s), map[string][]string{"10.0.0.2/32": {"4294967295:1:1", "4294967295:1:2"}}; !mapsEqual(got, want) {
		t.Errorf("RIB %v, want %v", got, want)
	}

	// Removing a peer removes its statement.
	if err := s.SetPeers(ctx, []Peer{localPeer("127.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if got, want := exportPolicies(t, s), []string{"herald-peer-2", stripName}; !slices.Equal(got, want) {
		t.Errorf("export policies %v, want %v", got, want)
	}
	ss, err := s.Sessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Peer != addr("127.0.0.2") {
		t.Errorf("sessions %+v, %v", ss, err)
	}

	// Stop withdraws (no session is established, so it does not wait
	// for one) and is final.
	start := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.SetRoutes(ctx, nil); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("SetRoutes after Stop: %v", err)
	}
	if _, err := s.Sessions(ctx); err == nil {
		t.Error("Sessions after Stop succeeded")
	}
}

func drain(s *Speaker) {
	for {
		select {
		case <-s.Changes():
		default:
			return
		}
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			return false
		}
		v, w = slices.Clone(v), slices.Clone(w)
		slices.Sort(v)
		slices.Sort(w)
		if !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// policyActions returns the actions of each attribute set's export
// statement, by policy name, in a short form.
func policyActions(t *testing.T, s *Speaker) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.srv.ListPolicy(context.Background(), &api.ListPolicyRequest{}, func(p *api.Policy) {
		if !strings.HasPrefix(p.Name, attrsName) {
			return
		}
		var parts []string
		for _, st := range p.Statements {
			a := st.Actions
			if a.Community != nil {
				parts = append(parts, "communities "+strings.Join(a.Community.Communities, " "))
			}
			if a.LargeCommunity != nil {
				parts = append(parts, "large "+strings.Join(a.LargeCommunity.Communities, " "))
			}
			if a.LocalPref != nil {
				parts = append(parts, "local-pref "+strconv.FormatUint(uint64(a.LocalPref.Value), 10))
			}
			if a.Nexthop != nil {
				parts = append(parts, "next hop "+a.Nexthop.Address)
			}
			if a.RouteAction != api.RouteAction_ROUTE_ACTION_UNSPECIFIED {
				parts = append(parts, "route action "+a.RouteAction.String())
			}
		}
		out[p.Name] = strings.Join(parts, ", ")
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSpeakerPerPeerAttributes(t *testing.T) {
	s := startLocal(t)
	ctx := context.Background()
	a, b := addr("127.0.0.1"), addr("127.0.0.2")
	if err := s.SetPeers(ctx, []Peer{localPeer("127.0.0.1"), localPeer("127.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	p1, p2, p3 := pfx("10.0.0.1/32"), pfx("10.0.0.2/32"), pfx("10.0.0.3/32")
	ibgp := func(p netip.Prefix) Route {
		return Route{Prefix: p, Communities: []Community{1<<16 | 1}, LocalPref: u32(200), Peers: []netip.Addr{a}}
	}
	routes := []Route{
		// p1: its own attributes for each peer.
		ibgp(p1),
		{Prefix: p1, Communities: []Community{2<<16 | 2}, LargeCommunities: []LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}, Peers: []netip.Addr{b}},
		// p2: the same for both, given per peer (merged into one path
		// with its attributes).
		{Prefix: p2, Communities: []Community{9}, Peers: []netip.Addr{a}},
		{Prefix: p2, Communities: []Community{9}, Peers: []netip.Addr{b}},
		// p3: a's attributes are p1's for a (the same statement), b's
		// have a next hop and local-pref 0.
		ibgp(p3),
		{Prefix: p3, NextHop: addr("192.0.2.7"), LocalPref: u32(0), Peers: []netip.Addr{b}},
	}
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	// Attribute sets numbered from 2 in the order of the prefixes and
	// their routes (by first peer): p1's for a is 2, p1's for b 3, p3's
	// for b 4. Peer a has id 1, b has 2.
	want := map[string][]string{
		"10.0.0.1/32": {"4294967295:2:1", "4294967295:3:2"},
		"10.0.0.2/32": {"4294967295:1:1", "4294967295:1:2"},
		"10.0.0.3/32": {"4294967295:2:1", "4294967295:4:2"},
	}
	if got := ribPaths(t, s); !mapsEqual(got, want) {
		t.Errorf("RIB %v, want %v", got, want)
	}
	wantPolicies := []string{"herald-peer-1", "herald-peer-2", "herald-attrs-2-peer-1", "herald-attrs-3-peer-2", "herald-attrs-4-peer-2", stripName}
	if got := exportPolicies(t, s); !slices.Equal(got, wantPolicies) {
		t.Errorf("export policies %v, want %v", got, wantPolicies)
	}
	wantActions := map[string]string{
		"herald-attrs-2-peer-1": "communities 1:1, local-pref 200",
		"herald-attrs-3-peer-2": "communities 2:2, large 64512:1:2, local-pref 100", // none: GoBGP's default for iBGP, as a path without one
		"herald-attrs-4-peer-2": "next hop 192.0.2.7",                               // local-pref 0: the path's own
	}
	if got := policyActions(t, s); !maps.Equal(got, wantActions) {
		t.Errorf("attribute statements %v, want %v", got, wantActions)
	}

	// Overlapping peers: refused, nothing changes.
	bad := append(slices.Clone(routes), Route{Prefix: p1, Communities: []Community{5}, Peers: []netip.Addr{b}})
	if err := s.SetRoutes(ctx, bad); err == nil || !strings.Contains(err.Error(), "given to peer 127.0.0.2 twice with different attributes") {
		t.Errorf("overlapping peers: %v", err)
	}
	if got := ribPaths(t, s); !mapsEqual(got, want) {
		t.Errorf("RIB after refused routes %v, want %v", got, want)
	}

	// b's attributes of p1 change: a new set (5), the old one's statement
	// goes; p3 is not touched.
	drain(s)
	routes[1].Communities = []Community{3<<16 | 3}
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	want["10.0.0.1/32"] = []string{"4294967295:2:1", "4294967295:5:2"}
	if got := ribPaths(t, s); !mapsEqual(got, want) {
		t.Errorf("RIB %v, want %v", got, want)
	}
	wantPolicies = []string{"herald-peer-1", "herald-peer-2", "herald-attrs-2-peer-1", "herald-attrs-4-peer-2", "herald-attrs-5-peer-2", stripName}
	if got := exportPolicies(t, s); !slices.Equal(got, wantPolicies) {
		t.Errorf("export policies %v, want %v", got, wantPolicies)
	}
	if got := policyActions(t, s); len(got) != 3 || got["herald-attrs-5-peer-2"] != "communities 3:3, large 64512:1:2, local-pref 100" {
		t.Errorf("attribute statements %v", got)
	}

	// p1 becomes one route for both peers, p3 goes: every attribute
	// statement goes, and the numbers are forgotten.
	if err := s.SetRoutes(ctx, []Route{{Prefix: p1, Peers: []netip.Addr{a, b}}, routes[2], routes[3]}); err != nil {
		t.Fatal(err)
	}
	want = map[string][]string{
		"10.0.0.1/32": {"4294967295:1:1", "4294967295:1:2"},
		"10.0.0.2/32": {"4294967295:1:1", "4294967295:1:2"},
	}
	if got := ribPaths(t, s); !mapsEqual(got, want) {
		t.Errorf("RIB %v, want %v", got, want)
	}
	if got, want := exportPolicies(t, s), []string{"herald-peer-1", "herald-peer-2", stripName}; !slices.Equal(got, want) {
		t.Errorf("export policies %v, want %v", got, want)
	}
	if got := policyActions(t, s); len(got) != 0 {
		t.Errorf("attribute statements left: %v", got)
	}
	s.mu.Lock()
	n, m := len(s.attrs), len(s.stmts)
	s.mu.Unlock()
	if n != 0 || m != 0 {
		t.Errorf("%d attribute numbers and %d statements kept", n, m)
	}

	// Removing a peer keeps the statements of routes that name it (they
	// are the routes', not the peers').
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeers(ctx, []Peer{localPeer("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if got, want := exportPolicies(t, s), []string{"herald-peer-1", "herald-attrs-6-peer-1", "herald-attrs-7-peer-2", "herald-attrs-8-peer-2", stripName}; !slices.Equal(got, want) {
		t.Errorf("export policies %v, want %v", got, want)
	}
}
