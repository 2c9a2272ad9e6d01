package dataplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"

	"github.com/herald-lb/herald/internal/netnsenter"
	"github.com/herald-lb/herald/internal/netnstest"
)

// prefix names every namespace of this package's tests; netnstest removes
// namespaces of dead test binaries by it.
const prefix = "herald-dp-"

var (
	vip4    = netip.MustParseAddr("192.168.10.100")
	vip6    = netip.MustParseAddr("fd00:10::100")
	client4 = netip.MustParseAddr("192.168.10.10")
	client6 = netip.MustParseAddr("fd00:10::10")
	node4   = "192.168.10.215"
	node6   = "fd00:10::215"
)

// pod is a backend in its own namespace behind the node.
type pod struct {
	name  string
	addr4 netip.Addr
	addr6 netip.Addr
}

// lab is a client and a node on a bridge, and pods routed behind the node.
type lab struct {
	t    *testing.T
	lan  *netnstest.LAN
	node netns.NsHandle
	pods []pod
}

const podPort = 8080

func newLab(t *testing.T, npods int) *lab {
	t.Helper()
	lan := netnstest.New(t, prefix,
		netnstest.Host{Role: "client", Addrs: []string{client4.String() + "/24", client6.String() + "/64"}},
		netnstest.Host{Role: "node", Addrs: []string{node4 + "/24", node6 + "/64"}},
	)
	l := &lab{t: t, lan: lan}
	nodeNS := lan.Namespace("node")
	netnstest.Run(t, "ip", "netns", "exec", nodeNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	netnstest.Run(t, "ip", "netns", "exec", nodeNS, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
	clientNS := lan.Namespace("client")
	// ARP/NDP for the VIP is another package's job: route it to the node.
	netnstest.Run(t, "ip", "-n", clientNS, "route", "add", vip4.String()+"/32", "via", node4)
	netnstest.Run(t, "ip", "-n", clientNS, "-6", "route", "add", vip6.String()+"/128", "via", node6)

	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b))
	for i := 1; i <= npods; i++ {
		p := pod{
			name:  fmt.Sprintf("pod%d", i),
			addr4: netip.MustParseAddr(fmt.Sprintf("10.244.%d.2", i)),
			addr6: netip.MustParseAddr(fmt.Sprintf("fd00:244:%d::2", i)),
		}
		ns := prefix + id + "-" + p.name
		netnstest.Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		for _, k := range []string{"default", "all"} {
			netnstest.Run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf."+k+".accept_dad=0")
		}
		veth := fmt.Sprintf("v%s", p.name)
		netnstest.Run(t, "ip", "-n", nodeNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		netnstest.Run(t, "ip", "-n", nodeNS, "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", veth)
		netnstest.Run(t, "ip", "-n", nodeNS, "addr", "add", fmt.Sprintf("fd00:244:%d::1/64", i), "dev", veth)
		netnstest.Run(t, "ip", "-n", nodeNS, "link", "set", veth, "up")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		netnstest.Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		netnstest.Run(t, "ip", "-n", ns, "addr", "add", p.addr4.String()+"/24", "dev", "eth0")
		netnstest.Run(t, "ip", "-n", ns, "addr", "add", p.addr6.String()+"/64", "dev", "eth0")
		netnstest.Run(t, "ip", "-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
		netnstest.Run(t, "ip", "-n", ns, "-6", "route", "add", "default", "via", fmt.Sprintf("fd00:244:%d::1", i))
		serve(t, ns, p.name)
		l.pods = append(l.pods, p)
	}
	l.node = lan.Handle("node")
	return l
}

// serve runs an HTTP server on [::]:podPort inside namespace ns that
// answers "<name> <client address it saw>".
func serve(t *testing.T, ns, name string) {
	t.Helper()
	type result struct {
		ln  net.Listener
		pc  net.PacketConn
		err error
	}
	var r result
	r.err = netnsenter.DoNamed(ns, func() error {
		var err error
		if r.ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", podPort)); err != nil {
			return err
		}
		if r.pc, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", podPort)); err != nil {
			_ = r.ln.Close()
		}
		return err
	})
	if r.err != nil {
		t.Fatalf("listen in %s: %v", ns, r.err)
	}
	// UDP: answer every datagram with the pod's name.
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := r.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = r.pc.WriteTo([]byte(name), from)
		}
	}()
	t.Cleanup(func() { _ = r.pc.Close() })
	srv := &http.Server{
		ReadHeaderTimeout: 2 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			host, _, _ := net.SplitHostPort(req.RemoteAddr)
			fmt.Fprintf(w, "%s %s\n", name, host)
		}),
	}
	go func() { _ = srv.Serve(r.ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// get fetches http://addr:port/ from the client namespace once. It
// returns the answering pod, the client address that pod saw, and curl's
// exit code (0 on success, 7 for connection refused, 28 for timeout).
func (l *lab) get(addr netip.Addr, port uint16) (podName, seen string, code int) {
	l.t.Helper()
	url := "http://" + netip.AddrPortFrom(addr, port).String() + "/"
	cmd := exec.Command("ip", "netns", "exec", l.lan.Namespace("client"), "curl", "-g", "-s", "--max-time", "2", url)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "", "", ee.ExitCode()
	}
	if err != nil {
		l.t.Fatalf("curl %s: %v", url, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		l.t.Fatalf("curl %s: unexpected answer %q", url, out)
	}
	return f[0], f[1], 0
}

// tally makes n requests and counts answers per pod and per seen source.
func (l *lab) tally(addr netip.Addr, port uint16, n int) (pods, sources map[string]int) {
	l.t.Helper()
	pods, sources = map[string]int{}, map[string]int{}
	for range n {
		p, seen, code := l.get(addr, port)
		if code != 0 {
			l.t.Fatalf("request to %s:%d failed: curl exit %d", addr, port, code)
		}
		pods[p]++
		sources[seen]++
	}
	return pods, sources
}

func (l *lab) open() *Table {
	l.t.Helper()
	h := l.node
	tbl, err := Open(Options{NetNS: &h, Logger: testLogger(l.t)})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = tbl.Close(true) })
	return tbl
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (l *lab) endpoints(vip netip.Addr, local ...bool) []Endpoint {
	var eps []Endpoint
	for i, p := range l.pods {
		a := p.addr4
		if vip.Is6() {
			a = p.addr6
		}
		eps = append(eps, Endpoint{Addr: a, Port: podPort, Local: i < len(local) && local[i]})
	}
	return eps
}

func mustSync(t *testing.T, tbl *Table, svcs ...Service) {
	t.Helper()
	if err := tbl.Sync(context.Background(), svcs); err != nil {
		t.Fatal(err)
	}
}

func TestClusterSpreadsAndMasquerades(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	svc := Service{Key: "default/web:http/TCP", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	mustSync(t, tbl, svc)
	mustSync(t, tbl, svc) // idempotent
	pods, sources := l.tally(vip4, 80, 40)
	if pods["pod1"] == 0 || pods["pod2"] == 0 {
		t.Errorf("answers per pod %v, want both pods", pods)
	}
	// Masquerade: each backend sees the node's address on its veth
	// (10.244.N.1), never the client's.
	for src := range sources {
		if src == client4.String() || !strings.HasPrefix(src, "10.244.") || !strings.HasSuffix(src, ".1") {
			t.Errorf("backend saw source %s, want the node's 10.244.N.1 (masquerade); all: %v", src, sources)
		}
	}
}

func TestLocalPreservesClientAndUsesLocalOnly(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	svc := Service{Key: "default/web:http/TCP", VIP: vip4, Port: 80, Protocol: "tcp", TrafficPolicyLocal: true,
		Endpoints: l.endpoints(vip4, true, false)}
	mustSync(t, tbl, svc)
	pods, sources := l.tally(vip4, 80, 20)
	if len(pods) != 1 || pods["pod1"] != 20 {
		t.Errorf("answers per pod %v, want only the local pod1", pods)
	}
	if len(sources) != 1 || sources[client4.String()] != 20 {
		t.Errorf("backend saw sources %v, want only the client's %s", sources, client4)
	}
}

func TestEndpointRemovedAndNoEndpoints(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	svc := Service{Key: "default/web:http/TCP", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	mustSync(t, tbl, svc)
	if pods, _ := l.tally(vip4, 80, 40); pods["pod2"] == 0 {
		t.Fatalf("answers per pod %v before removal, want pod2 among them", pods)
	}
	svc.Endpoints = svc.Endpoints[:1]
	mustSync(t, tbl, svc)
	if pods, _ := l.tally(vip4, 80, 20); len(pods) != 1 || pods["pod1"] != 20 {
		t.Errorf("answers per pod %v after removing pod2, want only pod1", pods)
	}
	svc.Endpoints = nil
	mustSync(t, tbl, svc)
	// Rejected with ICMP port unreachable: curl reports "connection
	// refused" (7), not a timeout (28).
	if _, _, code := l.get(vip4, 80); code != 7 {
		t.Errorf("curl exit code %d without endpoints, want 7 (connection refused)", code)
	}
	// A Local service whose endpoints are all remote has none here.
	svc.Endpoints = l.endpoints(vip4, false, false)
	svc.TrafficPolicyLocal = true
	mustSync(t, tbl, svc)
	if _, _, code := l.get(vip4, 80); code != 7 {
		t.Errorf("curl exit code %d for Local without local endpoints, want 7", code)
	}
	// And it comes back.
	svc.TrafficPolicyLocal = false
	mustSync(t, tbl, svc)
	if _, _, code := l.get(vip4, 80); code != 0 {
		t.Errorf("curl exit code %d after endpoints returned, want 0", code)
	}
}

func TestIPv6(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	mustSync(t, tbl,
		Service{Key: "default/web:http/TCP", VIP: vip6, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip6)},
		Service{Key: "default/local:http/TCP", VIP: vip6, Port: 81, Protocol: "TCP", TrafficPolicyLocal: true, Endpoints: l.endpoints(vip6, false, true)},
		Service{Key: "default/none:http/TCP", VIP: vip6, Port: 82, Protocol: "TCP"},
		// an IPv4 service next to them must not disturb IPv6
		Service{Key: "default/web4:http/TCP", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)},
	)
	pods, sources := l.tally(vip6, 80, 40)
	if pods["pod1"] == 0 || pods["pod2"] == 0 {
		t.Errorf("IPv6 Cluster answers per pod %v, want both", pods)
	}
	for src := range sources {
		if !strings.HasPrefix(src, "fd00:244:") || !strings.HasSuffix(src, "::1") {
			t.Errorf("IPv6 Cluster backend saw %s, want the node's fd00:244:N::1; all: %v", src, sources)
		}
	}
	pods, sources = l.tally(vip6, 81, 10)
	if len(pods) != 1 || pods["pod2"] != 10 || len(sources) != 1 || sources[client6.String()] != 10 {
		t.Errorf("IPv6 Local: pods %v sources %v, want only pod2 seeing %s", pods, sources, client6)
	}
	if _, _, code := l.get(vip6, 82); code != 7 {
		t.Errorf("IPv6 without endpoints: curl exit %d, want 7", code)
	}
	if pods, _ := l.tally(vip4, 80, 4); len(pods) == 0 {
		t.Errorf("IPv4 service next to IPv6 ones did not answer")
	}
}

func TestForeignTableSurvivesAndCloseRemoves(t *testing.T) {
	l := newLab(t, 1)
	c, err := nftables.New(nftables.WithNetNSFd(int(l.node)))
	if err != nil {
		t.Fatal(err)
	}
	foreign := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "foreign"})
	ch := c.AddChain(&nftables.Chain{Table: foreign, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: foreign, Chain: ch, Exprs: []expr.Any{&expr.Counter{}}})
	// A foreign nat chain too, to show Herald's hooks coexist with it.
	nat := c.AddChain(&nftables.Chain{Table: foreign, Name: "post", Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: foreign, Chain: nat, Exprs: []expr.Any{&expr.Counter{}}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	checkForeign := func(when string) {
		t.Helper()
		for _, chain := range []*nftables.Chain{ch, nat} {
			rules, err := c.GetRules(foreign, chain)
			if err != nil {
				t.Fatalf("%s: foreign chain %s: %v", when, chain.Name, err)
			}
			if len(rules) != 1 {
				t.Fatalf("%s: foreign chain %s has %d rules, want 1", when, chain.Name, len(rules))
			}
		}
	}
	hasHerald := func() bool {
		tables, err := c.ListTables()
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			if tb.Name == DefaultTableName {
				return true
			}
		}
		return false
	}

	h := l.node
	tbl, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	checkForeign("after Open")
	svc := Service{Key: "a", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	mustSync(t, tbl, svc)
	checkForeign("after Sync")
	if !hasHerald() {
		t.Fatal("no herald table after Sync")
	}
	if _, _, code := l.get(vip4, 80); code != 0 {
		t.Errorf("curl exit %d with a foreign table present, want 0", code)
	}
	mustSync(t, tbl)
	checkForeign("after empty Sync")
	if err := tbl.Close(true); err != nil {
		t.Fatal(err)
	}
	checkForeign("after Close(true)")
	if hasHerald() {
		t.Error("herald table still present after Close(true)")
	}
	if err := tbl.Sync(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v, want ErrClosed", err)
	}

	// Close(false) keeps the rules (agent restart keeps traffic flowing),
	// and Close(true) on a fresh Table still removes them.
	tbl2, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, tbl2, svc)
	if err := tbl2.Close(false); err != nil {
		t.Fatal(err)
	}
	if !hasHerald() {
		t.Error("Close(false) removed the herald table")
	}
	tbl3, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl3.Close(true); err != nil {
		t.Fatal(err)
	}
	if hasHerald() {
		t.Error("herald table present after Close(true)")
	}
	checkForeign("at the end")
}

func TestInvalidServicesReportedOthersProgrammed(t *testing.T) {
	l := newLab(t, 1)
	tbl := l.open()
	err := tbl.Sync(context.Background(), []Service{
		{Key: "good", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)},
		{Key: "dup", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)},
		{Key: "proto", VIP: vip4, Port: 81, Protocol: "ICMP"},
		{Key: "novip", Port: 82, Protocol: "UDP"},
	})
	if !errors.Is(err, ErrInvalidService) {
		t.Fatalf("Sync error %v, want ErrInvalidService", err)
	}
	for _, k := range []string{`"dup"`, `"proto"`, `"novip"`} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
	if _, _, code := l.get(vip4, 80); code != 0 {
		t.Errorf("valid service next to invalid ones: curl exit %d, want 0", code)
	}
}

// TestManyServices programs more services than fit into one netlink
// attribute's 64 KiB (the element lists are chunked) and checks that
// services at both ends of the sorted order answer.
func TestManyServices(t *testing.T) {
	l := newLab(t, 1)
	netnstest.Run(t, "ip", "-n", l.lan.Namespace("client"), "route", "add", "10.96.0.0/16", "via", node4)
	tbl := l.open()
	svcs := make([]Service, 1500)
	for i := range svcs {
		svcs[i] = Service{
			Key: fmt.Sprintf("ns/svc-%04d:http/TCP", i), VIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4, true),
		}
	}
	mustSync(t, tbl, svcs...)
	for _, i := range []int{0, 777, 1499} {
		if _, _, code := l.get(svcs[i].VIP, 80); code != 0 {
			t.Errorf("service %d of %d: curl exit %d, want 0", i, len(svcs), code)
		}
	}
}

// TestUDPRemovedEndpointConntrackCleared checks that a UDP client that keeps
// its source port moves off a removed endpoint at once, instead of staying
// pinned to it by its conntrack entry.
func TestUDPRemovedEndpointConntrackCleared(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	svc := Service{Key: "default/dns:dns/UDP", VIP: vip4, Port: 53, Protocol: "UDP", Endpoints: l.endpoints(vip4)}
	mustSync(t, tbl, svc)
	var conn *net.UDPConn
	if err := l.lan.In("client", func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip4, 53)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func() string {
		t.Helper()
		if _, err := conn.Write([]byte("who")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("UDP answer: %v", err)
		}
		return string(buf[:n])
	}
	first := ask()
	for range 3 {
		if got := ask(); got != first {
			t.Fatalf("same UDP flow answered by %s then %s; conntrack should pin it", first, got)
		}
	}
	var keep []Endpoint
	for i, e := range svc.Endpoints {
		if l.pods[i].name != first {
			keep = append(keep, e)
		}
	}
	svc.Endpoints = keep
	mustSync(t, tbl, svc)
	if got := ask(); got == first {
		t.Errorf("UDP flow still answered by removed endpoint %s after Sync", first)
	}
}

// TestNftPrintsTable checks that nft(8) can print Herald's table, so that
// `nft list ruleset` on a node shows it instead of aborting, including two
// Cluster services on different VIPs sharing endpoints and a port.
func TestNftPrintsTable(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft(8) is needed to check the printed table (apt-get install nftables): %v", err)
	}
	l := newLab(t, 2)
	tbl := l.open()
	other4 := netip.MustParseAddr("192.168.10.101")
	netnstest.Run(t, "ip", "-n", l.lan.Namespace("client"), "route", "add", other4.String()+"/32", "via", node4)
	mustSync(t, tbl,
		Service{Key: "default/web:http/TCP", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)},
		Service{Key: "default/web2:http/TCP", VIP: other4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(other4)},
		Service{Key: "default/local:http/TCP", VIP: vip4, Port: 81, Protocol: "TCP", TrafficPolicyLocal: true, Endpoints: l.endpoints(vip4, true, true)},
		Service{Key: "default/web6:http/TCP", VIP: vip6, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip6)},
		Service{Key: "default/none:http/TCP", VIP: vip4, Port: 82, Protocol: "TCP"},
	)
	out := netnstest.Run(t, "ip", "netns", "exec", l.lan.Namespace("node"), "nft", "list", "table", "inet", "herald")
	for _, want := range []string{"ct original proto-dst", "masquerade", "dnat ip to", "numgen random mod 2 map @endpoints4-2",
		"dnat ip6 to", "reject", `comment "default/web:http/TCP"`, `comment "default/none:http/TCP"`} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list table inet herald lacks %q:\n%s", want, out)
		}
	}
	if pods, _ := l.tally(other4, 80, 4); len(pods) == 0 {
		t.Errorf("the second Cluster service sharing endpoints did not answer")
	}
}

// TestCloseLeavesASuccessorsTable: an agent that shuts down while its
// successor on the same node has already replaced Herald's table (a Pod
// deleted with --grace-period=0 is replaced at once) leaves the
// successor's table, and its forwarding, in place.
func TestCloseLeavesASuccessorsTable(t *testing.T) {
	l := newLab(t, 1)
	h := l.node
	svc := Service{Key: "a", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	old, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, old, svc)
	successor, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = successor.Close(true) })
	mustSync(t, successor, svc)
	if err := old.Close(true); err != nil {
		t.Fatal(err)
	}
	if _, _, code := l.get(vip4, 80); code != 0 {
		t.Fatalf("curl exit %d after the old agent's Close(true): it removed its successor's table", code)
	}
	if err := successor.Close(true); err != nil {
		t.Fatal(err)
	}
	if _, _, code := l.get(vip4, 80); code == 0 {
		t.Fatal("curl still works after the successor's Close(true): the table was not removed")
	}
}
