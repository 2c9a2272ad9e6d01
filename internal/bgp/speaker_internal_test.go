package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
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
