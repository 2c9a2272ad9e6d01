package l2

// Tests on real kernels: each test builds a small LAN of network namespaces
// (a bridge in a "switch" namespace, and a node, a client and sometimes a
// foreign host, each with a veth port on the bridge), runs the Responder in
// the node namespace and checks what the client's own kernel ARP/NDP does.
// Addresses exist only inside these namespaces. The tests need root; they
// skip when network namespaces cannot be created.

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/netnstest"
)

const nsPrefix = "herald-l2-"

var (
	nodeMAC    = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x02, 0x15}
	cliMAC     = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x10}
	foreignMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x99}
	staleMAC   = "02:00:00:00:00:01"

	vip4b = netip.MustParseAddr("192.168.10.76")
	vip6b = netip.MustParseAddr("fd00:10::76")
)

// run runs a command and fails the test with its output if it fails.
func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lan is one test's namespaces: a switch and the hosts on it.
type lan struct {
	t     testing.TB
	id    string
	sw    string
	hosts map[string]string // role → namespace
}

// newLAN builds the bridge and one veth-attached host per role. Every host's
// eth0 is up, with IPv6 DAD off (so addresses are usable at once) unless the
// role is "foreign", which keeps DAD so the DAD test can use its kernel.
// The bridge snoops MLD and acts as querier, so IPv6 multicast reaches a
// port only after an MLD report: the responder's solicited-node joins are
// tested for real.
func newLAN(t testing.TB, roles ...string) *lan {
	t.Helper()
	netnstest.Require(t, nsPrefix)
	b := make([]byte, 3)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	l := &lan{t: t, id: fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b)), hosts: map[string]string{}}
	l.sw = l.nsName("sw")
	t.Cleanup(func() {
		for _, ns := range l.hosts {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
		_ = exec.Command("ip", "netns", "del", l.sw).Run()
	})
	run(t, "ip", "netns", "add", l.sw)
	run(t, "ip", "-n", l.sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", "1")
	run(t, "ip", "-n", l.sw, "link", "set", "br0", "up")
	macs := map[string]net.HardwareAddr{"node": nodeMAC, "client": cliMAC, "foreign": foreignMAC}
	for _, role := range roles {
		ns := l.nsName(role)
		l.hosts[role] = ns
		run(t, "ip", "netns", "add", ns)
		dad := "0"
		if role == "foreign" {
			dad = "1"
		}
		for _, k := range []string{"default", "all"} {
			run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf."+k+".accept_dad="+dad)
		}
		port := "p-" + role
		run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.sw)
		if mac, ok := macs[role]; ok {
			run(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac.String())
		}
		run(t, "ip", "-n", l.sw, "link", "set", port, "master", "br0", "up")
		// Quick neighbour retries so "nobody answers" resolves to FAILED in
		// about a second instead of three.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=200")
		run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.neigh.eth0.retrans_time_ms=200")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
	return l
}

func (l *lan) nsName(role string) string { return nsPrefix + l.id + "-" + role }

// in runs fn on a thread switched into role's namespace. Sockets fn opens
// stay in that namespace after fn returns.
func (l *lan) in(role string, fn func() error) error {
	ns, ok := l.hosts[role]
	if !ok {
		return fmt.Errorf("no host %q", role)
	}
	return labnet.In(ns, fn)
}

// iface looks up eth0 in role's namespace.
func (l *lan) iface(role string) *net.Interface {
	l.t.Helper()
	var ifi *net.Interface
	if err := l.in(role, func() (err error) {
		ifi, err = net.InterfaceByName("eth0")
		return err
	}); err != nil {
		l.t.Fatalf("eth0 in %s: %v", role, err)
	}
	return ifi
}

func (l *lan) ip(role string, args ...string) string {
	l.t.Helper()
	return run(l.t, append([]string{"ip", "-n", l.hosts[role]}, args...)...)
}

type running struct {
	*Responder
	metrics   *Metrics
	conflicts chan Conflict
	logs      *logRecorder
}

// logRecorder is a slog handler that writes to the test log and remembers
// the messages at warning level and above, so a test can assert that, say,
// no kernel filter was refused.
type logRecorder struct {
	slog.Handler
	mu       *sync.Mutex
	problems *[]string
}

func (h logRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.mu.Lock()
		*h.problems = append(*h.problems, r.Message)
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h logRecorder) WithAttrs(a []slog.Attr) slog.Handler {
	return logRecorder{Handler: h.Handler.WithAttrs(a), mu: h.mu, problems: h.problems}
}

func (h logRecorder) WithGroup(name string) slog.Handler {
	return logRecorder{Handler: h.Handler.WithGroup(name), mu: h.mu, problems: h.problems}
}

func (h logRecorder) Problems() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.problems)
}

// startResponder creates the Responder in the node namespace and runs it
// until the test ends.
func (l *lan) startResponder(opts Options) *running {
	l.t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		l.t.Fatal(err)
	}
	rec := &logRecorder{
		Handler:  slog.NewTextHandler(testWriter{l.t}, &slog.HandlerOptions{Level: slog.LevelInfo}),
		mu:       &sync.Mutex{},
		problems: &[]string{},
	}
	rr := &running{metrics: m, conflicts: make(chan Conflict, 64), logs: rec}
	opts.Metrics = m
	opts.Logger = slog.New(rec)
	opts.OnConflict = func(c Conflict) {
		select {
		case rr.conflicts <- c:
		default:
		}
	}
	if err := l.in("node", func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		rr.Responder, err = NewResponder(ifi, opts)
		return err
	}); err != nil {
		l.t.Fatalf("NewResponder: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rr.Run(ctx) }()
	l.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				l.t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			l.t.Error("Run did not return within 5s of cancel")
		}
	})
	return rr
}

// testWriter sends log output to the test log while the test runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// neighbour is one entry of `ip -j neigh show`.
type neighbour struct {
	Dst    string   `json:"dst"`
	LLAddr string   `json:"lladdr"`
	State  []string `json:"state"`
}

func (l *lan) neigh(role string, addr netip.Addr) (neighbour, bool) {
	l.t.Helper()
	out := l.ip(role, "-j", "neigh", "show", "to", addr.String(), "dev", "eth0")
	var ns []neighbour
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		l.t.Fatalf("parse ip -j neigh output %q: %v", out, err)
	}
	for _, n := range ns {
		if n.Dst == addr.String() {
			return n, true
		}
	}
	return neighbour{}, false
}

// poke makes the client's kernel resolve addr by sending it a UDP datagram
// (to the discard port: nothing has to answer).
func (l *lan) poke(role string, addr netip.Addr) {
	l.t.Helper()
	if err := l.in(role, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("herald"))
		return err
	}); err != nil {
		l.t.Fatalf("send to %s from %s: %v", addr, role, err)
	}
}

// eventually polls cond every 50ms for at most timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s; last state: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// resolvesTo checks that the client's kernel resolves addr to mac.
func (l *lan) resolvesTo(addr netip.Addr, mac net.HardwareAddr) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		if i%10 == 0 {
			l.poke("client", addr) // again every 500ms, in case a try failed
		}
		n, _ := l.neigh("client", addr)
		if n.LLAddr == mac.String() && !slices.Contains(n.State, "FAILED") {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("client did not resolve %s to %s; entry: %+v", addr, mac, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unresolved checks that the client's kernel tries to resolve addr and gives
// up: nobody answered.
func (l *lan) unresolved(addr netip.Addr) {
	l.t.Helper()
	l.poke("client", addr)
	eventually(l.t, 5*time.Second, "client neighbour entry for "+addr.String()+" FAILED", func() (bool, string) {
		n, _ := l.neigh("client", addr)
		return slices.Contains(n.State, "FAILED") && n.LLAddr == "", fmt.Sprintf("%+v", n)
	})
}

func TestNetnsIPv4Answered(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("node", "addr", "add", "192.168.10.215/24", "dev", "eth0")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip4})

	l.resolvesTo(vip4, nodeMAC)
	if got := testutil.ToFloat64(r.metrics.replies.WithLabelValues("eth0", "ipv4")); got < 1 {
		t.Errorf("replies{ipv4} = %v after the client resolved", got)
	}
	// The VIP is answered from user space only: it is not on the NIC.
	if out := l.ip("node", "-4", "addr", "show", "dev", "eth0"); strings.Contains(out, vip4.String()) {
		t.Errorf("VIP was added to the node's interface:\n%s", out)
	}
}

func TestNetnsIPv6Answered(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip6})

	l.resolvesTo(vip6, nodeMAC)
	if got := testutil.ToFloat64(r.metrics.replies.WithLabelValues("eth0", "ipv6")); got < 1 {
		t.Errorf("replies{ipv6} = %v after the client resolved", got)
	}
}

func TestNetnsUnownedNotAnswered(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip4, vip6})

	l.unresolved(vip4b)
	l.unresolved(vip6b)
	// The kernel filter dropped the requests: Go never counted them.
	for _, fam := range []string{"ipv4", "ipv6"} {
		if got := testutil.ToFloat64(r.metrics.requests.WithLabelValues("eth0", fam)); got != 0 {
			t.Errorf("requests{%s} = %v for unowned addresses, want 0", fam, got)
		}
	}
	// Owned ones still work on the same segment.
	l.resolvesTo(vip4, nodeMAC)
	l.resolvesTo(vip6, nodeMAC)
}

func TestNetnsRemovalStopsAnswers(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip4, vip6})
	l.resolvesTo(vip4, nodeMAC)
	l.resolvesTo(vip6, nodeMAC)

	r.SetOwned(nil)
	if got := r.Owned(); len(got) != 0 {
		t.Fatalf("Owned() = %v after SetOwned(nil)", got)
	}
	l.ip("client", "neigh", "flush", "dev", "eth0")
	l.unresolved(vip4)
	l.unresolved(vip6)
}

func TestNetnsGratuitousTakeover(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	// The client has learned the VIPs from a previous owner.
	l.ip("client", "neigh", "replace", vip4.String(), "lladdr", staleMAC, "dev", "eth0", "nud", "stale")
	l.ip("client", "neigh", "replace", vip6.String(), "lladdr", staleMAC, "dev", "eth0", "nud", "stale")
	r := l.startResponder(Options{GratuitousInterval: 100 * time.Millisecond})
	// The entries were just written, so Linux's neighbour lock time (1s,
	// during which it keeps the first answer it got) is still running: the
	// gratuitous ARP forms and the NA's Override flag must win anyway.
	r.SetOwned([]netip.Addr{vip4, vip6})

	for _, addr := range []netip.Addr{vip4, vip6} {
		eventually(t, 3*time.Second, "client entry for "+addr.String()+" moved to the node MAC", func() (bool, string) {
			n, _ := l.neigh("client", addr)
			return n.LLAddr == nodeMAC.String(), fmt.Sprintf("%+v", n)
		})
		n, _ := l.neigh("client", addr)
		t.Logf("client entry for %s after the announcement: %+v", addr, n)
	}
	// Nobody asked: the client did not send a request, the announcements
	// alone moved it.
	for _, fam := range []string{"ipv4", "ipv6"} {
		if got := testutil.ToFloat64(r.metrics.requests.WithLabelValues("eth0", fam)); got != 0 {
			t.Errorf("requests{%s} = %v; the entry should move without the client asking", fam, got)
		}
		if got := testutil.ToFloat64(r.metrics.gratuitous.WithLabelValues("eth0", fam)); got < 1 {
			t.Errorf("gratuitous{%s} = %v", fam, got)
		}
	}
}

// TestNetnsUnsolicitedNAWithoutEntry pins down what Linux does with an
// unsolicited NA when it has no entry for the target: with the default
// accept_untracked_na=0 it creates none (RFC 4861 §7.2.5 says to discard
// it), so announcements move only clients that already talk to the address.
func TestNetnsUnsolicitedNAWithoutEntry(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	untracked := strings.TrimSpace(run(t, "ip", "netns", "exec", l.hosts["client"], "sh", "-c",
		"cat /proc/sys/net/ipv6/conf/eth0/accept_untracked_na 2>/dev/null || echo absent"))
	r := l.startResponder(Options{GratuitousInterval: 50 * time.Millisecond})
	r.SetOwned([]netip.Addr{vip6})
	eventually(t, 3*time.Second, "three unsolicited NAs sent", func() (bool, string) {
		got := testutil.ToFloat64(r.metrics.gratuitous.WithLabelValues("eth0", "ipv6"))
		return got >= 3, fmt.Sprint(got)
	})
	time.Sleep(100 * time.Millisecond)
	n, ok := l.neigh("client", vip6)
	t.Logf("accept_untracked_na=%s; entry created: %v %+v", untracked, ok, n)
	if (untracked == "0" || untracked == "absent") && ok {
		t.Errorf("kernel created a neighbour entry from an unsolicited NA with accept_untracked_na=%s: %+v", untracked, n)
	}
}

// TestNetnsLinkFlap takes the node's link down and up under a running
// Responder: Run must ride it out (the kernel reports ENETDOWN on the
// sockets), announce its addresses again once the link is back (a client
// that moved to another MAC meanwhile is moved back without asking), and
// answer again, IPv6 included (the bridge forgets the port's multicast
// memberships when it goes down; the kernel re-reports them).
func TestNetnsLinkFlap(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	r := l.startResponder(Options{GratuitousInterval: 100 * time.Millisecond})
	r.SetOwned([]netip.Addr{vip4, vip6})
	l.resolvesTo(vip4, nodeMAC)
	l.resolvesTo(vip6, nodeMAC)
	requests := func() float64 {
		return testutil.ToFloat64(r.metrics.requests.WithLabelValues("eth0", "ipv4")) +
			testutil.ToFloat64(r.metrics.requests.WithLabelValues("eth0", "ipv6"))
	}

	// Let the initial burst finish, so only a new one can move the client.
	eventually(t, 3*time.Second, "initial burst sent", func() (bool, string) {
		g4 := testutil.ToFloat64(r.metrics.gratuitous.WithLabelValues("eth0", "ipv4"))
		g6 := testutil.ToFloat64(r.metrics.gratuitous.WithLabelValues("eth0", "ipv6"))
		return g4 >= 6 && g6 >= 3, fmt.Sprintf("ipv4 %v ipv6 %v", g4, g6)
	})
	l.ip("node", "link", "set", "eth0", "down")
	// While it is down the client learns another MAC for both VIPs.
	l.ip("client", "neigh", "replace", vip4.String(), "lladdr", staleMAC, "dev", "eth0", "nud", "stale")
	l.ip("client", "neigh", "replace", vip6.String(), "lladdr", staleMAC, "dev", "eth0", "nud", "stale")
	time.Sleep(300 * time.Millisecond) // a few announcement attempts fail meanwhile
	before := requests()
	l.ip("node", "link", "set", "eth0", "up")
	for _, addr := range []netip.Addr{vip4, vip6} {
		eventually(t, 3*time.Second, "client entry for "+addr.String()+" back on the node MAC", func() (bool, string) {
			n, _ := l.neigh("client", addr)
			return n.LLAddr == nodeMAC.String(), fmt.Sprintf("%+v", n)
		})
	}
	if got := requests(); got != before {
		t.Errorf("client sent %v requests; the announcements alone should have moved it", got-before)
	}
	l.ip("client", "neigh", "flush", "dev", "eth0")
	l.resolvesTo(vip4, nodeMAC)
	l.resolvesTo(vip6, nodeMAC)
}

// TestNetnsLargeOwnedSet: with 10 000 IPv4 and 10 000 IPv6 addresses owned
// (one node's random third of a pool), the kernel accepts the compiled
// filters (no coarse fallback, no warning), an ARP request and an NS for an
// owned address are answered, and ones for addresses of the same pool that
// are not owned never reach Go: the kernel filter dropped them. The bridge
// snoops MLD with room for every group, so the IPv6 answers also show that
// all 10 000 solicited-node groups were joined (on several ICMPv6 sockets:
// one holds about 2300).
func TestNetnsLargeOwnedSet(t *testing.T) {
	l := newLAN(t, "node", "client")
	run(t, "ip", "-n", l.sw, "link", "set", "br0", "type", "bridge", "mcast_hash_max", "32768")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	// The pool is on the client's link.
	l.ip("client", "route", "add", "10.64.0.0/16", "dev", "eth0")
	r := l.startResponder(Options{GratuitousCount: -1, RefreshInterval: -1})

	rng := rand.New(rand.NewPCG(12, 10000))
	keys4 := layouts["typical"](10000, rng)
	keys6 := v6Layout("typical", 10000, rng)
	owned := append(v4Addrs(keys4), v6Addrs(keys6)...)
	owned4, owned6 := owned[1234], owned[10000+4321]
	isOwned := map[netip.Addr]bool{}
	for _, a := range owned {
		isOwned[a] = true
	}
	unowned4, unowned6 := owned4.Next(), owned6.Next()
	for isOwned[unowned4] {
		unowned4 = unowned4.Next()
	}
	for isOwned[unowned6] {
		unowned6 = unowned6.Next()
	}

	start := time.Now()
	r.SetOwned(owned)
	took := time.Since(start)
	eventually(t, 60*time.Second, "all solicited-node groups joined", func() (bool, string) {
		return r.groupsSynced(), ""
	})
	t.Logf("SetOwned of 10 000 + 10 000 addresses returned in %v; groups joined after %v on %d ICMPv6 sockets",
		took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), r.mld.sockets())
	filters := r.KernelFilters()
	t.Logf("kernel filters: %+v", filters)
	if f := filters[0]; f.Coarse || f.ExtraTargets != 0 || f.Owned != 10000 || f.Instructions < 2000 {
		t.Fatalf("IPv4 filter: %+v, want an exact target test for 10 000 addresses", f)
	}
	if f := filters[1]; !f.Exact || f.Owned != 10000 || f.Instructions < 1000 {
		t.Fatalf("IPv6 filter: %+v, want exact for 10 000 addresses", f)
	}
	if r.mld.sockets() < 4 {
		t.Errorf("10 000 groups on %d ICMPv6 sockets", r.mld.sockets())
	}

	l.resolvesTo(owned4, nodeMAC)
	l.resolvesTo(owned6, nodeMAC)
	l.unresolved(unowned4)

	// Frames about addresses that are not owned stop in the kernel: send
	// one for each family, then one for an owned address; once Go has
	// answered the owned one it must have seen nothing else.
	mf := mustFrame(t)
	for _, c := range []struct {
		etherType        int
		family           string
		i                int
		unowned, owned   []byte
		unownedS, ownedS string
	}{
		{etherTypeARP, "ipv4", 0, mf(ARPRequest(cliMAC, client4, unowned4)), mf(ARPRequest(cliMAC, client4, owned4)), unowned4.String(), owned4.String()},
		// Unicast NS (unreachability detection): no multicast group in
		// the way, the filter alone decides.
		{etherTypeIPv6, "ipv6", 1, nsTo(t, nodeMAC, unowned6), nsTo(t, nodeMAC, owned6), unowned6.String(), owned6.String()},
	} {
		requests := func() float64 { return testutil.ToFloat64(r.metrics.requests.WithLabelValues("eth0", c.family)) }
		before, seen := requests(), r.received[c.i].Load()
		l.sendRaw("client", c.etherType, c.unowned, c.unowned, c.unowned, c.owned)
		eventually(t, 3*time.Second, "request for "+c.ownedS+" answered", func() (bool, string) {
			return requests() == before+1, fmt.Sprint(requests())
		})
		if got := r.received[c.i].Load() - seen; got != 1 {
			t.Errorf("%s: %d frames reached Go for one request for %s and three for %s, which is not owned", c.family, got, c.ownedS, c.unownedS)
		}
	}
	if p := r.logs.Problems(); len(p) > 0 {
		t.Fatalf("responder reported problems: %q", p)
	}
}

// nsTo is a Neighbor Solicitation for target sent to dst's MAC, from the
// client.
func nsTo(t testing.TB, dst net.HardwareAddr, target netip.Addr) []byte {
	t.Helper()
	f := mustFrame(t)(NeighborSolicitation(cliMAC, client6, target))
	copy(f[0:6], dst)
	return f
}

// TestNetnsKernelAcceptsFilters attaches the compiled filters of every
// layout and size, up to 100 000 addresses, to a real packet socket: the
// kernel's checker (bpf_check_classic) and its memory accounting
// (net.core.optmem_max, charged for the old and the new program while they
// are swapped) accept them all.
func TestNetnsKernelAcceptsFilters(t *testing.T) {
	l := newLAN(t, "node")
	ifi := l.iface("node")
	var arpConn, ndpConn *packet.Conn
	if err := l.in("node", func() (err error) {
		if arpConn, err = listen(ifi, etherTypeARP); err != nil {
			return err
		}
		ndpConn, err = listen(ifi, etherTypeIPv6)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer arpConn.Close()
	defer ndpConn.Close()
	rng := rand.New(rand.NewPCG(13, 14))
	for _, name := range slices.Sorted(maps.Keys(layouts)) {
		for _, n := range []int{10, 1000, 10000, 100000} {
			if n == 100000 && name != "typical" && name != "scattered" {
				continue // the same shapes as at 10 000; compiling costs seconds under -race
			}
			prog, _ := arpFilter(v4Addrs(layouts[name](n, rng)), maxFilterInstructions)
			if err := setFilter(arpConn, prog); err != nil {
				t.Fatalf("arp, %s, %d addresses (%d instructions): %v", name, n, len(prog), err)
			}
		}
	}
	for _, name := range []string{"typical", "alternate", "pools", "random64", "scattered", "edges"} {
		for _, n := range []int{10, 1000, 10000, 100000} {
			if n == 100000 && name != "scattered" {
				continue
			}
			prog, _ := ndpFilter(v6Addrs(v6Layout(name, n, rng)), maxFilterInstructions)
			if err := setFilter(ndpConn, prog); err != nil {
				t.Fatalf("ndp, %s, %d addresses (%d instructions): %v", name, n, len(prog), err)
			}
		}
	}
}

// BenchmarkNetnsSetOwned is BenchmarkSetOwned on real sockets in a network
// namespace: the filters go through the kernel's checker and JIT, and the
// solicited-node groups are joined with real PACKET_ADD_MEMBERSHIP and MLD
// joins. ns/op is the time SetOwned takes (the caller waits that long);
// groups-ms is the time until every membership change was made in the
// background.
func BenchmarkNetnsSetOwned(b *testing.B) {
	l := newLAN(b, "node")
	r := l.startResponder(Options{GratuitousCount: -1, RefreshInterval: -1})
	for _, fam := range []string{"ipv4", "ipv6"} {
		set := func(n int, seed uint64) []netip.Addr {
			rng := rand.New(rand.NewPCG(seed, uint64(n)))
			var a []netip.Addr
			if fam == "ipv4" {
				a = v4Addrs(layouts["typical"](n, rng))
			} else {
				a = v6Addrs(v6Layout("typical", n, rng))
			}
			slices.SortFunc(a, netip.Addr.Compare)
			return a
		}
		big := set(10000, 1)
		// Before the fail-over the node owns a random half of what it
		// owns after.
		base := set(6000, 2)
		half := slices.Clone(base)
		rand.New(rand.NewPCG(3, 3)).Shuffle(len(half), func(i, j int) { half[i], half[j] = half[j], half[i] })
		half = half[:3000]
		slices.SortFunc(half, netip.Addr.Compare)
		changed := slices.Clone(big)
		changed[5000] = changed[5000].Next()
		for slices.Contains(big, changed[5000]) {
			changed[5000] = changed[5000].Next()
		}
		slices.SortFunc(changed, netip.Addr.Compare)
		for _, c := range []struct {
			name     string
			from, to []netip.Addr
		}{
			{"0to10000", nil, big},
			{"failover-3000to6000", half, base},
			{"release-6000to3000", base, half},
			{"one-of-10000", big, changed},
		} {
			b.Run(fam+"/"+c.name, func(b *testing.B) {
				var groups time.Duration
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					r.SetOwned(c.from)
					for !r.groupsSynced() {
						time.Sleep(time.Millisecond)
					}
					b.StartTimer()
					start := time.Now()
					r.SetOwned(c.to)
					b.StopTimer()
					for !r.groupsSynced() {
						time.Sleep(100 * time.Microsecond)
					}
					groups += time.Since(start)
					b.StartTimer()
				}
				b.ReportMetric(float64(groups.Milliseconds())/float64(b.N), "groups-ms")
			})
		}
	}
	r.SetOwned(nil)
}

// sendRaw sends frames from role's eth0 through a raw packet socket, the way
// a foreign host or an attacker would.
func (l *lan) sendRaw(role string, etherType int, frames ...[]byte) {
	l.t.Helper()
	if err := l.in(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifi, packet.Raw, etherType, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, f := range frames {
			if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		l.t.Fatalf("send raw frames from %s: %v", role, err)
	}
}

func TestNetnsProbeFindsForeignHost(t *testing.T) {
	l := newLAN(t, "node", "foreign")
	foreign4 := netip.MustParseAddr("192.168.10.99")
	foreign6 := netip.MustParseAddr("fd00:10::99")
	l.ip("foreign", "addr", "add", "192.168.10.99/24", "dev", "eth0")
	l.ip("foreign", "addr", "add", "fd00:10::99/64", "dev", "eth0", "nodad")
	ifi := l.iface("node")

	probe := func(addr netip.Addr) (*Conflict, error) {
		var c *Conflict
		err := l.in("node", func() (err error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err = Probe(ctx, ifi, addr, ProbeOptions{})
			return err
		})
		return c, err
	}
	for _, addr := range []netip.Addr{foreign4, foreign6} {
		c, err := probe(addr)
		if err != nil {
			t.Fatalf("Probe(%s): %v", addr, err)
		}
		if c == nil {
			t.Fatalf("Probe(%s) found no conflict, but the foreign host has it", addr)
		}
		if !sameMAC(c.MAC, foreignMAC) || c.Addr != addr || c.Interface != "eth0" {
			t.Errorf("Probe(%s) = %+v, want MAC %s", addr, *c, foreignMAC)
		}
		t.Logf("Probe(%s): %+v", addr, *c)
	}
	for _, addr := range []netip.Addr{netip.MustParseAddr("192.168.10.98"), netip.MustParseAddr("fd00:10::98")} {
		start := time.Now()
		c, err := probe(addr)
		if err != nil || c != nil {
			t.Fatalf("Probe(%s) of a free address = %+v, %v", addr, c, err)
		}
		t.Logf("Probe(%s): free, took %s", addr, time.Since(start).Round(time.Millisecond))
	}

	// Cancelling the context ends a probe early.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.in("node", func() error {
		_, err := Probe(ctx, ifi, netip.MustParseAddr("192.168.10.98"), ProbeOptions{})
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Probe with a cancelled context: %v", err)
	}
}

func TestNetnsConflictReported(t *testing.T) {
	l := newLAN(t, "node", "foreign")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip4, vip6})

	mf := mustFrame(t)
	l.sendRaw("foreign", etherTypeARP, mf(GratuitousARPRequest(foreignMAC, vip4)))
	l.sendRaw("foreign", etherTypeIPv6, mf(UnsolicitedNA(foreignMAC, vip6)))
	want := map[netip.Addr]string{vip4: ConflictGARP, vip6: ConflictNA}
	deadline := time.After(3 * time.Second)
	for len(want) > 0 {
		select {
		case c := <-r.conflicts:
			if !sameMAC(c.MAC, foreignMAC) || c.Interface != "eth0" {
				t.Errorf("conflict %+v, want MAC %s on eth0", c, foreignMAC)
			}
			if k, ok := want[c.Addr]; ok && k == c.Kind {
				delete(want, c.Addr)
			}
		case <-deadline:
			t.Fatalf("no OnConflict for %v", want)
		}
	}

	// A foreign host trying to configure an owned IPv6 address with its
	// kernel's DAD is defended against: its address ends up dadfailed.
	l.ip("foreign", "addr", "add", vip6.String()+"/64", "dev", "eth0")
	eventually(t, 5*time.Second, "foreign host's DAD for "+vip6.String()+" failed", func() (bool, string) {
		out := l.ip("foreign", "-6", "addr", "show", "dev", "eth0")
		return strings.Contains(out, "dadfailed"), out
	})
}

func TestNetnsMalformedDroppedAndCounted(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip4, vip6})
	mf := mustFrame(t)

	// Each frame mentions an owned address where the kernel filter looks,
	// so it reaches Go, and breaks a rule Go checks.
	hlen := mf(ARPRequest(cliMAC, client4, vip4))
	hlen[18] = 7
	op := mf(ARPRequest(cliMAC, client4, vip4))
	op[21] = 9
	zeroSHA := mf(ARPRequest(cliMAC, client4, vip4))
	copy(zeroSHA[22:28], make([]byte, 6))
	hop := mf(NeighborSolicitation(cliMAC, client6, vip6))
	hop[21] = 64
	sum := mf(NeighborSolicitation(cliMAC, client6, vip6))
	sum[56] ^= 0x5a
	// A DAD solicitation carrying a source link-layer option, which RFC
	// 4861 §7.1.1 forbids. (A truncated IPv6 payload would be a nicer
	// example, but the Linux bridge's MLD snooping validates IPv6 lengths
	// and drops such frames before they reach the node.)
	group, gmac, _ := SolicitedNodeGroup(vip6)
	dadSLLA, err := ndpFrame(gmac, cliMAC, netip.IPv6Unspecified(), group, &ndp.NeighborSolicitation{
		TargetAddress: vip6,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: cliMAC}},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.sendRaw("client", etherTypeARP, hlen, zeroSHA)
	l.sendRaw("client", etherTypeIPv6, reChecksum(hop), sum, dadSLLA)
	eventually(t, 3*time.Second, "five malformed frames counted", func() (bool, string) {
		got := testutil.ToFloat64(r.metrics.malformed.WithLabelValues("eth0"))
		return got == 5, fmt.Sprint(got)
	})
	// An opcode that is neither request nor reply never leaves the kernel
	// filter: dropped without costing Go anything, so not counted.
	l.sendRaw("client", etherTypeARP, op)
	time.Sleep(200 * time.Millisecond)
	if got := testutil.ToFloat64(r.metrics.malformed.WithLabelValues("eth0")); got != 5 {
		t.Errorf("malformed = %v after a frame the kernel filter drops, want 5", got)
	}
	if got := testutil.ToFloat64(r.metrics.replies.WithLabelValues("eth0", "ipv4")) +
		testutil.ToFloat64(r.metrics.replies.WithLabelValues("eth0", "ipv6")); got != 0 {
		t.Errorf("answered malformed frames: %v replies", got)
	}
	// And it keeps answering.
	l.resolvesTo(vip4, nodeMAC)
	l.resolvesTo(vip6, nodeMAC)
}

func TestNetnsInterfaceWithoutAddresses(t *testing.T) {
	l := newLAN(t, "node", "client")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	// No IPv4 address and no IPv6 at all on the node's interface.
	run(t, "ip", "netns", "exec", l.hosts["node"], "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1")
	if out := l.ip("node", "addr", "show", "dev", "eth0"); strings.Contains(out, "inet") {
		t.Fatalf("node interface has addresses:\n%s", out)
	}
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip4})
	l.resolvesTo(vip4, nodeMAC)
}

// TestNetnsMLDJoin checks that the bridge, which snoops MLD, learned the
// node port as a member of the VIP's solicited-node group.
func TestNetnsMLDJoin(t *testing.T) {
	l := newLAN(t, "node", "client")
	r := l.startResponder(Options{})
	r.SetOwned([]netip.Addr{vip6})
	group, _, _ := SolicitedNodeGroup(vip6)
	eventually(t, 3*time.Second, "bridge has p-node in "+group.String(), func() (bool, string) {
		out := run(t, "ip", "netns", "exec", l.sw, "bridge", "mdb", "show", "dev", "br0")
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "p-node") && strings.Contains(line, group.String()) {
				return true, out
			}
		}
		return false, out
	})
	r.SetOwned(nil)
}

// A foreign host's gratuitous ARP / unsolicited NA moves a client's
// neighbour entry to its MAC; one defence moves it back (the kernel takes a
// gratuitous ARP and an NA with the override flag at once, without waiting
// for its locktime), and the responder keeps answering throughout.
func TestNetnsDefenceReteachesClient(t *testing.T) {
	l := newLAN(t, "node", "client", "foreign")
	l.ip("client", "addr", "add", "192.168.10.10/24", "dev", "eth0")
	l.ip("client", "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
	r := l.startResponder(Options{GratuitousCount: -1, RefreshInterval: -1})
	r.SetOwned([]netip.Addr{vip4, vip6})
	l.resolvesTo(vip4, nodeMAC)
	l.resolvesTo(vip6, nodeMAC)

	mf := mustFrame(t)
	l.sendRaw("foreign", etherTypeARP, mf(GratuitousARPRequest(foreignMAC, vip4)))
	l.sendRaw("foreign", etherTypeIPv6, mf(UnsolicitedNA(foreignMAC, vip6)))
	for _, addr := range []netip.Addr{vip4, vip6} {
		eventually(t, 3*time.Second, "client learned the foreign MAC for "+addr.String(), func() (bool, string) {
			n, _ := l.neigh("client", addr)
			return n.LLAddr == foreignMAC.String(), fmt.Sprintf("%+v", n)
		})
	}
	for _, addr := range []netip.Addr{vip4, vip6} {
		if !r.Defend(addr) {
			t.Fatalf("no defence sent for %s", addr)
		}
		if r.Defend(addr) {
			t.Fatalf("a second defence of %s within the interval", addr)
		}
		eventually(t, 3*time.Second, "client back on the node's MAC for "+addr.String(), func() (bool, string) {
			n, _ := l.neigh("client", addr)
			return n.LLAddr == nodeMAC.String(), fmt.Sprintf("%+v", n)
		})
	}
	if r.Owned()[0] != vip4 {
		t.Fatalf("owned set changed: %v", r.Owned())
	}
}

// One batched probe of many addresses finds exactly the ones another host
// uses, for each family, in about the time of one probe.
func TestNetnsProbeManyFindsForeignHosts(t *testing.T) {
	l := newLAN(t, "node", "foreign")
	l.ip("foreign", "addr", "add", "192.168.10.130/24", "dev", "eth0")
	l.ip("foreign", "addr", "add", "192.168.10.170/24", "dev", "eth0")
	l.ip("foreign", "addr", "add", "fd00:10::130/64", "dev", "eth0", "nodad")
	ifi := l.iface("node")
	var v4, v6 []netip.Addr
	for i := 100; i < 200; i++ {
		v4 = append(v4, netip.AddrFrom4([4]byte{192, 168, 10, byte(i)}))
		v6 = append(v6, netip.MustParseAddr(fmt.Sprintf("fd00:10::%d", i)))
	}
	for _, c := range []struct {
		addrs []netip.Addr
		want  []string
	}{
		{v4, []string{"192.168.10.130", "192.168.10.170"}},
		{v6, []string{"fd00:10::130"}},
	} {
		start := time.Now()
		var got []Conflict
		if err := l.in("node", func() (err error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err = ProbeMany(ctx, ifi, c.addrs, ProbeOptions{})
			return err
		}); err != nil {
			t.Fatalf("ProbeMany: %v", err)
		}
		var addrs []string
		for _, cf := range got {
			addrs = append(addrs, cf.Addr.String())
			if !sameMAC(cf.MAC, foreignMAC) || cf.Interface != "eth0" {
				t.Errorf("conflict %+v, want MAC %s on eth0", cf, foreignMAC)
			}
		}
		if !slices.Equal(addrs, c.want) {
			t.Errorf("ProbeMany of %d addresses found %v, want %v", len(c.addrs), addrs, c.want)
		}
		t.Logf("%d addresses probed in %s", len(c.addrs), time.Since(start).Round(time.Millisecond))
	}
	if _, err := ProbeMany(context.Background(), ifi, append(v4[:1], v6[:1]...), ProbeOptions{}); err == nil {
		t.Error("a probe mixing families was accepted")
	}
}
