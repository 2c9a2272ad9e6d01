package bird

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/testrequire"
)

func requireBIRD(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		testrequire.Missing(t, "%v", err)
	}
}

func TestCheck(t *testing.T) {
	requireBIRD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Check(ctx, "router id 10.0.0.1;\nprotocol device {}\n"); err != nil {
		t.Errorf("a good configuration: %v", err)
	}
	// The error names the file, line and column.
	err := Check(ctx, "router id 10.0.0.1;\nprotocol device {}\nprotocol bgp x { local as 1; neighbor 10.0.0.2 as ; }\n")
	if err == nil || !strings.Contains(err.Error(), "check.conf:3:") {
		t.Errorf("a bad configuration: %v, want an error at check.conf:3", err)
	}
}

// The router's own lifecycle in a namespace: start, read, a refused and
// an accepted reconfiguration, close.
func TestStartReconfigureClose(t *testing.T) {
	if testing.Short() {
		t.Skip("real BIRD: not in -short")
	}
	requireBIRD(t)
	lan := netnstest.New(t, "hbirdpkg", netnstest.Host{Role: "router", Addrs: []string{"192.168.40.1/24"}})
	base := "/run/herald-birdpkgtest"
	if err := RemoveLeftovers(base); err != nil {
		t.Logf("leftovers: %v", err)
	}
	dir, err := NewDir(base, "router")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A configuration BIRD refuses: Start says where, and leaves nothing.
	_, err = Start(ctx, Options{Namespace: lan.Namespace("router"), Dir: dir, Config: "router id 1.2.3;\n"})
	if err == nil || !strings.Contains(err.Error(), "next.conf:1:") {
		t.Errorf("bad configuration: %v, want an error at next.conf:1", err)
	}
	t.Logf("bad configuration: %v", err)
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s left after a failed start", dir)
	}

	conf := `router id 192.168.40.1;
protocol device {}
protocol kernel k4 { ipv4 { export all; }; }
protocol static s4 { ipv4; route 10.50.0.0/24 via 192.168.40.2; }
`
	r, err := Start(ctx, Options{Namespace: lan.Namespace("router"), Dir: dir, Config: conf})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = r.Close()
		}
	})
	ps, err := r.Protocols(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps[2].Name != "s4" || ps[2].Proto != "Static" {
		t.Errorf("protocols %+v", ps)
	}
	// The static route, in BIRD and (exported by k4) in the namespace's
	// kernel.
	var rs []Route
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, err = r.Routes(ctx, netip.MustParsePrefix("10.50.0.0/24"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(rs) != 1 || len(rs[0].NextHops) != 1 || rs[0].NextHops[0].Gateway.String() != "192.168.40.2" || rs[0].Protocol != "s4" || !rs[0].Primary {
		t.Errorf("routes %+v", rs)
	}
	if out := lan.IP("router", "route", "show", "10.50.0.0/24"); !strings.Contains(out, "via 192.168.40.2") || !strings.Contains(out, "proto bird") {
		t.Errorf("kernel route %q", out)
	}
	// No route: none, not an error.
	if rs, err := r.Routes(ctx, netip.MustParsePrefix("10.51.0.0/24")); err != nil || len(rs) != 0 {
		t.Errorf("missing route: %+v, %v", rs, err)
	}
	// A command BIRD cannot parse is an error.
	if _, err := r.Protocol(ctx, "nosuch"); err == nil {
		t.Error("show protocols all nosuch: no error")
	}

	// A bad reconfiguration is refused and changes nothing; a good one
	// is applied.
	err = r.Reconfigure(ctx, conf+"protocol static s5 { ipv4; route 10.52.0.0/24 via ; }\n")
	if err == nil || !strings.Contains(err.Error(), "next.conf:5:") {
		t.Errorf("bad reconfiguration: %v, want an error at next.conf:5", err)
	}
	t.Logf("bad reconfiguration: %v", err)
	if b, _ := os.ReadFile(filepath.Join(dir, configFile)); string(b) != conf {
		t.Errorf("bird.conf after a refused reconfiguration:\n%s", b)
	}
	if err := r.Reconfigure(ctx, strings.Replace(conf, "10.50.0.0/24", "10.52.0.0/24", 1)); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		rs, err = r.Routes(ctx, netip.MustParsePrefix("10.52.0.0/24"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reconfigured route not in BIRD: %+v\n%s", rs, r.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(r.Logs(), "Reconfigured") {
		t.Errorf("log without the reconfiguration:\n%s", r.Logs())
	}

	// Close: BIRD stops, its kernel routes and its directory go.
	closed = true
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s left after Close", dir)
	}
	if out := lan.IP("router", "route", "show", "proto", "bird"); strings.TrimSpace(out) != "" {
		t.Errorf("BIRD's kernel routes stayed: %q", out)
	}
}
