package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/testrequire"
)

// dumpTable lists Herald's table in namespace ns with nft(8) (JSON) and
// returns it in a canonical form, one object per line: handles dropped,
// chains and sets sorted by name, set elements sorted, the rules of each
// chain in their order.
func dumpTable(t *testing.T, ns string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		testrequire.Missing(t, "nft(8) is needed to list the table (apt-get install nftables): %v", err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", DefaultTableName).Output()
	if err != nil {
		t.Fatalf("nft -j list table in %s: %v", ns, err)
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j output: %v\n%s", err, out)
	}
	var lines []string
	rules := map[string][]string{}
	for _, obj := range doc.Nftables {
		for kind, v := range obj {
			if kind == "metainfo" {
				continue
			}
			delete(v, "handle")
			if elems, ok := v["elem"].([]any); ok {
				enc := make([]string, len(elems))
				for i, e := range elems {
					b, _ := json.Marshal(e)
					enc[i] = string(b)
				}
				slices.Sort(enc)
				v["elem"] = enc
			}
			b, err := json.Marshal(v) // map keys sorted
			if err != nil {
				t.Fatal(err)
			}
			if kind == "rule" {
				ch, _ := v["chain"].(string)
				rules[ch] = append(rules[ch], string(b))
				continue
			}
			lines = append(lines, kind+" "+string(b))
		}
	}
	slices.Sort(lines)
	chains := make([]string, 0, len(rules))
	for ch := range rules {
		chains = append(chains, ch)
	}
	slices.Sort(chains)
	for _, ch := range chains {
		for i, r := range rules[ch] {
			lines = append(lines, fmt.Sprintf("rule %s #%d %s", ch, i, r))
		}
	}
	return strings.Join(lines, "\n")
}

// lineDiff describes how two dumps differ, for a failure message.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}

// checkState checks the Table's own bookkeeping against itself: the
// masquerade and endpoint-map counts follow from the records, and with
// nothing pending the records are what the desired set programs.
func checkState(t *testing.T, tbl *Table) {
	t.Helper()
	tbl.mu.Lock()
	defer tbl.mu.Unlock()
	masq := map[masqKey]int32{}
	counts := [2]map[int]int32{{}, {}}
	if len(tbl.st.byID) != len(tbl.st.recs) {
		t.Errorf("%d records, %d in the index by VIP:port/protocol", len(tbl.st.recs), len(tbl.st.byID))
	}
	for k, r := range tbl.st.recs {
		if r.key != k {
			t.Errorf("record %q held under %q", r.key, k)
		}
		if tbl.st.byID[r.id] != r {
			t.Errorf("record %q not indexed by its VIP:port/protocol", r.key)
		}
		if len(r.eps) > 0 {
			counts[r.id.fam()][len(r.eps)]++
		}
		r.masqueraded(func(k masqKey) { masq[k]++ })
	}
	for fi := range families {
		if !maps.Equal(counts[fi], tbl.st.counts[fi]) {
			t.Errorf("state counts endpoint maps %v, records need %v", tbl.st.counts[fi], counts[fi])
		}
	}
	if !maps.Equal(masq, tbl.st.masq) {
		t.Errorf("state counts masquerade elements %v, records need %v", tbl.st.masq, masq)
	}
	if len(tbl.pending) > 0 {
		return
	}
	want := tbl.want.all()
	if len(want) != len(tbl.st.recs) {
		t.Errorf("nothing pending, but %d records held and %d desired", len(tbl.st.recs), len(want))
	}
	for _, r := range want {
		if tbl.st.recs[r.key] != r {
			t.Errorf("nothing pending, but the record of %q is not the desired one", r.key)
		}
	}
}

// fullSyncDump programs svcs into a fresh Table in namespace ns (a first
// Sync, so a full one) and returns the dump and the Sync's error text.
func fullSyncDump(t *testing.T, h netns.NsHandle, ns string, svcs []Service) (string, string) {
	t.Helper()
	ref, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ref.Close(false) }()
	errText := ""
	if err := ref.Sync(context.Background(), svcs); err != nil {
		if !errors.Is(err, ErrInvalidService) {
			t.Fatal(err)
		}
		errText = err.Error()
	}
	if s := ref.Stats(); s.FullSyncs != 1 {
		t.Fatalf("reference Sync: %+v, want one full Sync", s)
	}
	return dumpTable(t, ns), errText
}

// TestIncrementalEqualsFull drives one Table through scripted and random
// changes, and after each Sync compares the kernel's table with what a
// full Sync of the same desired set writes in another namespace.
func TestIncrementalEqualsFull(t *testing.T) {
	lan := netnstest.New(t, prefix, netnstest.Host{Role: "inc"}, netnstest.Host{Role: "ref"})
	incNS, refNS := lan.Namespace("inc"), lan.Namespace("ref")
	hInc, hRef := lan.Handle("inc"), lan.Handle("ref")
	tbl, err := Open(Options{NetNS: &hInc, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tbl.Close(true) })

	want := map[string]Service{}
	syncs := 0
	step := func(what string) {
		t.Helper()
		svcs := make([]Service, 0, len(want))
		for _, s := range want {
			svcs = append(svcs, s)
		}
		// Any order: Sync sorts by Key itself.
		rand.Shuffle(len(svcs), func(i, j int) { svcs[i], svcs[j] = svcs[j], svcs[i] })
		errText := ""
		syncs++
		if err := tbl.Sync(context.Background(), svcs); err != nil {
			if !errors.Is(err, ErrInvalidService) {
				t.Fatalf("%s: %v", what, err)
			}
			errText = err.Error()
		}
		checkState(t, tbl)
		got := dumpTable(t, incNS)
		ref, refErr := fullSyncDump(t, hRef, refNS, svcs)
		if got != ref {
			t.Fatalf("%s: the incrementally synced table differs from a full Sync's:\n%s", what, lineDiff(got, ref))
		}
		if errText != refErr {
			t.Fatalf("%s: Sync error %q, a full Sync's %q", what, errText, refErr)
		}
	}

	// Scripted: every kind of change at least once.
	want["a"] = Service{Key: "a", VIP: v4(0), Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, true), ep4(2, 8080, false)}}
	want["b"] = Service{Key: "b", VIP: v4(1), Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, true), ep4(3, 8080, false)}}
	want["c"] = Service{Key: "c", VIP: v6(0), Port: 53, Protocol: "UDP", Endpoints: []Endpoint{ep6(1, 5353, true)}}
	want["d"] = Service{Key: "d", VIP: v4(0), Port: 81, Protocol: "TCP"}
	step("first Sync")
	want["e"] = Service{Key: "e", VIP: v4(2), Port: 443, Protocol: "SCTP", Endpoints: []Endpoint{ep4(4, 8443, false)}}
	step("add a service")
	s := want["a"]
	s.Endpoints = []Endpoint{ep4(2, 8080, false), ep4(5, 8080, false), ep4(6, 9090, true)}
	want["a"] = s
	step("change endpoints (their number too)")
	s.Endpoints = []Endpoint{ep4(2, 8080, false), ep4(7, 8080, false), ep4(6, 9090, true)}
	want["a"] = s
	step("replace one endpoint (same number)")
	s = want["b"]
	s.TrafficPolicyLocal = true
	want["b"] = s
	step("Cluster to Local (shared masquerade element with a stays)")
	s = want["a"]
	s.TrafficPolicyLocal = true
	want["a"] = s
	step("Cluster to Local, endpoints filtered")
	s.TrafficPolicyLocal = false
	want["a"] = s
	step("Local to Cluster")
	delete(want, "b")
	step("remove a service")
	want["b"] = Service{Key: "b", VIP: v4(1), Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, true)}}
	step("re-add it")
	s = want["d"]
	s.Endpoints = []Endpoint{ep4(7, 8080, false)}
	want["d"] = s
	step("no endpoints to endpoints")
	s.Endpoints = nil
	want["d"] = s
	step("endpoints to no endpoints")
	s = want["c"]
	s.VIP, s.Endpoints = v4(3), []Endpoint{ep4(1, 5353, true), ep6(2, 5353, true)}
	want["c"] = s
	step("same Key, IPv6 VIP to IPv4")
	a, e := want["a"], want["e"]
	a.VIP, a.Port, a.Protocol, e.VIP, e.Port, e.Protocol = e.VIP, e.Port, e.Protocol, a.VIP, a.Port, a.Protocol
	want["a"], want["e"] = a, e
	step("two services swap VIP:port/protocol")
	want["z"] = Service{Key: "z", VIP: a.VIP, Port: a.Port, Protocol: a.Protocol, Endpoints: a.Endpoints}
	step("a duplicate VIP:port is left out")
	delete(want, "a")
	step("the duplicate takes over when the first goes")
	clear(want)
	step("everything removed")
	want["a"] = Service{Key: "a", VIP: v4(0), Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, true)}}
	step("from empty")

	// Random: a few services change per step, drawn from small pools so
	// that VIPs, endpoints and masquerade elements collide often.
	seed := uint64(time.Now().UnixNano())
	t.Logf("random steps: seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	randomService := func(key string) Service { return randomService(rng, key, 6, 0) }
	for n := range 120 {
		for range 1 + rng.IntN(4) {
			key := fmt.Sprintf("ns/svc-%d:http/TCP", rng.IntN(14))
			old, ok := want[key]
			switch r := rng.IntN(10); {
			case ok && r < 2:
				delete(want, key)
			case ok && r < 6:
				// Endpoints only, as in a Deployment scaling.
				s := randomService(key)
				old.Endpoints = s.Endpoints
				if old.VIP.Is4() != s.VIP.Is4() {
					old.Endpoints = nil
				}
				want[key] = old
			case ok && r < 7:
				old.TrafficPolicyLocal = !old.TrafficPolicyLocal
				want[key] = old
			default:
				want[key] = randomService(key)
			}
		}
		step(fmt.Sprintf("random step %d", n))
	}

	st := tbl.Stats()
	t.Logf("stats: %+v", st)
	if st.FullSyncs != 1 || st.Fallbacks != 0 {
		t.Errorf("stats %+v: want exactly one full Sync (the first) and no fall-back to one", st)
	}
	if got := st.FullSyncs + st.IncrementalSyncs + st.UnchangedSyncs; got != uint64(syncs) {
		t.Errorf("stats %+v count %d Syncs, made %d", st, got, syncs)
	}
	if st.IncrementalSyncs < uint64(syncs)/2 {
		t.Errorf("stats %+v: only %d of %d Syncs incremental", st, st.IncrementalSyncs, syncs)
	}
}

// TestUnchangedSyncSendsNothing checks that a Sync of the same desired set,
// however it is written, talks to no one: no batch, no query.
func TestUnchangedSyncSendsNothing(t *testing.T) {
	lan := netnstest.New(t, prefix, netnstest.Host{Role: "node"})
	h := lan.Handle("node")
	tbl, err := Open(Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tbl.Close(true) })
	ep := func(s string, port uint16, local bool) Endpoint {
		return Endpoint{Addr: netip.MustParseAddr(s), Port: port, Local: local}
	}
	svcs := []Service{
		{Key: "b", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep("10.244.1.2", 8080, false), ep("10.244.2.2", 8080, true)}},
		{Key: "a", VIP: vip6, Port: 53, Protocol: "UDP", TrafficPolicyLocal: true, Endpoints: []Endpoint{ep("fd00:244:1::2", 53, true)}},
		{Key: "c", VIP: vip4, Port: 81, Protocol: "TCP"},
	}
	ctx := context.Background()
	if err := tbl.Sync(ctx, svcs); err != nil {
		t.Fatal(err)
	}
	before := tbl.Stats()
	same := []Service{
		{Key: "a", VIP: vip6, Port: 53, Protocol: "udp", TrafficPolicyLocal: true, Endpoints: []Endpoint{
			ep("fd00:244:2::2", 53, false), // not local: not used
			ep("fd00:244:1::2", 53, true),
			ep("10.244.1.2", 53, true), // other family: not used
		}},
		{Key: "c", VIP: netip.AddrFrom16(vip4.As16()), Port: 81, Protocol: "Tcp"},
		{Key: "b", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: []Endpoint{
			ep("10.244.2.2", 8080, true), ep("::ffff:10.244.1.2", 8080, false), ep("10.244.2.2", 8080, true),
		}},
	}
	for range 3 {
		if err := tbl.Sync(ctx, same); err != nil {
			t.Fatal(err)
		}
		if err := tbl.Sync(ctx, svcs); err != nil {
			t.Fatal(err)
		}
	}
	after := tbl.Stats()
	if after.RoundTrips != before.RoundTrips || after.Messages != before.Messages {
		t.Errorf("unchanged Syncs talked to the kernel: before %+v, after %+v", before, after)
	}
	if after.UnchangedSyncs != before.UnchangedSyncs+6 || after.IncrementalSyncs != before.IncrementalSyncs || after.FullSyncs != before.FullSyncs {
		t.Errorf("stats before %+v, after %+v: want 6 more unchanged Syncs and nothing else", before, after)
	}

	// The counters do count: one changed service costs one query and one
	// batch of a handful of messages.
	svcs[2].Endpoints = []Endpoint{ep("10.244.3.2", 8080, false)}
	if err := tbl.Sync(ctx, svcs); err != nil {
		t.Fatal(err)
	}
	changed := tbl.Stats()
	if changed.RoundTrips != after.RoundTrips+2 || changed.IncrementalSyncs != after.IncrementalSyncs+1 {
		t.Errorf("stats before %+v, after one change %+v: want one query and one batch", after, changed)
	}
	if n := changed.Messages - after.Messages; n == 0 || n > 10 {
		t.Errorf("one service gaining its first endpoint took %d messages, want a handful", n)
	}
}

// TestConnectionSurvivesIncrementalChanges holds one TCP connection open
// through the VIP while other services are added, changed and removed and
// while its own service loses the endpoint it does not use: it keeps its
// NAT binding and its backend throughout.
func TestConnectionSurvivesIncrementalChanges(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	a := Service{Key: "default/a:http/TCP", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	b := Service{Key: "default/b:http/TCP", VIP: vip4, Port: 81, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	mustSync(t, tbl, a, b)

	var conn net.Conn
	if err := l.lan.In("client", func() (err error) {
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip4, 80).String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func(when string) string {
		t.Helper()
		if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
			t.Fatalf("%s: the established connection broke: %v", when, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: the established connection broke: %v", when, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || len(strings.Fields(string(body))) != 2 {
			t.Fatalf("%s: answer %q, %v", when, body, err)
		}
		return strings.Fields(string(body))[0]
	}
	first := ask("before any change")
	var other Endpoint
	var kept []Endpoint
	for i, e := range a.Endpoints {
		if l.pods[i].name == first {
			kept = append(kept, e)
		} else {
			other = e
		}
	}
	c := Service{Key: "default/c:http/TCP", VIP: vip4, Port: 82, Protocol: "TCP", Endpoints: []Endpoint{other}}
	before := tbl.Stats()
	for _, st := range []struct {
		what string
		svcs []Service
	}{
		{"another service's endpoints changed", []Service{a, {Key: b.Key, VIP: b.VIP, Port: b.Port, Protocol: b.Protocol, Endpoints: []Endpoint{other}}}},
		{"a service added", []Service{a, b, c}},
		{"a service removed", []Service{a, c}},
		{"another service's traffic policy changed", []Service{a, {Key: c.Key, VIP: c.VIP, Port: c.Port, Protocol: c.Protocol, TrafficPolicyLocal: true, Endpoints: []Endpoint{{Addr: other.Addr, Port: other.Port, Local: true}}}}},
		{"its own service lost the endpoint it does not use", []Service{{Key: a.Key, VIP: a.VIP, Port: a.Port, Protocol: a.Protocol, Endpoints: kept}}},
	} {
		mustSync(t, tbl, st.svcs...)
		if got := ask(st.what); got != first {
			t.Fatalf("%s: the established connection answered from %s, began with %s", st.what, got, first)
		}
	}
	if got := tbl.Stats(); got.IncrementalSyncs != before.IncrementalSyncs+5 || got.FullSyncs != before.FullSyncs {
		t.Errorf("stats before %+v, after %+v: want 5 incremental Syncs", before, got)
	}
	if pods, _ := l.tally(vip4, 80, 6); len(pods) != 1 || pods[first] != 6 {
		t.Errorf("new connections answered by %v, want only %s", pods, first)
	}
}

// TestTableChangedBehindTheBack deletes, re-creates and edits Herald's
// table behind the Table's back and checks that the next Sync with a
// change (or Check) rebuilds all of it, while an unchanged Sync still
// sends nothing.
func TestTableChangedBehindTheBack(t *testing.T) {
	l := newLab(t, 2)
	tbl := l.open()
	nodeNS := l.lan.Namespace("node")
	nft := func(args ...string) {
		t.Helper()
		netnstest.Run(t, append([]string{"ip", "netns", "exec", nodeNS, "nft"}, args...)...)
	}
	a := Service{Key: "default/a:http/TCP", VIP: vip4, Port: 80, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	b := Service{Key: "default/b:http/TCP", VIP: vip4, Port: 81, Protocol: "TCP", Endpoints: l.endpoints(vip4)}
	mustSync(t, tbl, a, b)
	answers := func(when string, ports ...uint16) {
		t.Helper()
		for _, p := range ports {
			if _, _, code := l.get(vip4, p); code != 0 {
				t.Fatalf("%s: port %d: curl exit %d, want 0", when, p, code)
			}
		}
	}
	answers("at first", 80, 81)
	ctx := context.Background()

	// Deleted: an unchanged Sync does not notice (it sends nothing) ...
	nft("delete", "table", "inet", DefaultTableName)
	s0 := tbl.Stats()
	mustSync(t, tbl, a, b)
	if s := tbl.Stats(); s.RoundTrips != s0.RoundTrips {
		t.Errorf("an unchanged Sync talked to the kernel: %+v then %+v", s0, s)
	}
	if _, _, code := l.get(vip4, 80); code == 0 {
		t.Fatal("the VIP answers without Herald's table")
	}
	// ... Check does.
	if rebuilt, err := tbl.Check(ctx); err != nil || !rebuilt {
		t.Fatalf("Check after the table was deleted: rebuilt %v, %v; want true", rebuilt, err)
	}
	answers("after Check", 80, 81)
	if rebuilt, err := tbl.Check(ctx); err != nil || rebuilt {
		t.Fatalf("Check of an intact table: rebuilt %v, %v; want false", rebuilt, err)
	}

	// Deleted, then a Sync that changes one service rebuilds everything.
	nft("delete", "table", "inet", DefaultTableName)
	s1 := tbl.Stats()
	b.Endpoints = b.Endpoints[:1]
	mustSync(t, tbl, a, b)
	if s := tbl.Stats(); s.FullSyncs != s1.FullSyncs+1 || s.Fallbacks != s1.Fallbacks+1 {
		t.Errorf("Sync after the table was deleted: stats %+v then %+v, want one fall-back to a full Sync", s1, s)
	}
	answers("after the table was deleted and one service changed", 80, 81)
	checkEqualsFull(t, tbl, nodeNS, a, b)

	// Deleted and created anew, empty but for a set of the same name.
	nft("delete", "table", "inet", DefaultTableName)
	nft("add", "table", "inet", DefaultTableName)
	nft("add", "set", "inet", DefaultTableName, "services4", "{ type ipv4_addr . inet_proto . inet_service ; }")
	s2 := tbl.Stats()
	b.Endpoints = l.endpoints(vip4)
	mustSync(t, tbl, a, b)
	if s := tbl.Stats(); s.FullSyncs != s2.FullSyncs+1 || s.Fallbacks != s2.Fallbacks+1 {
		t.Errorf("Sync after the table was created anew: stats %+v then %+v, want one fall-back to a full Sync", s2, s)
	}
	answers("after the table was created anew", 80, 81)
	checkEqualsFull(t, tbl, nodeNS, a, b)

	// One service's map element deleted by hand: the batch that removes
	// that service is refused, and the Sync replaces the table instead.
	nft("delete", "element", "inet", DefaultTableName, "services4", "{ "+vip4.String()+" . tcp . 81 }")
	s3 := tbl.Stats()
	mustSync(t, tbl, a)
	if s := tbl.Stats(); s.FullSyncs != s3.FullSyncs+1 || s.Fallbacks != s3.Fallbacks+1 {
		t.Errorf("Sync after an element was deleted by hand: stats %+v then %+v, want one fall-back to a full Sync", s3, s)
	}
	answers("after an element was deleted by hand", 80)
	checkEqualsFull(t, tbl, nodeNS, a)

	// A chain added by hand changes the table's use count.
	nft("add", "chain", "inet", DefaultTableName, "intruder")
	s4 := tbl.Stats()
	a.Endpoints = a.Endpoints[:1]
	mustSync(t, tbl, a)
	if s := tbl.Stats(); s.FullSyncs != s4.FullSyncs+1 || s.Fallbacks != s4.Fallbacks+1 {
		t.Errorf("Sync after a chain was added by hand: stats %+v then %+v, want one fall-back to a full Sync", s4, s)
	}
	checkEqualsFull(t, tbl, nodeNS, a)
}

// checkEqualsFull compares the table in ns with what a full Sync of svcs
// writes in a namespace of its own.
func checkEqualsFull(t *testing.T, tbl *Table, ns string, svcs ...Service) {
	t.Helper()
	checkState(t, tbl)
	lan := netnstest.New(t, prefix, netnstest.Host{Role: "ref"})
	want, _ := fullSyncDump(t, lan.Handle("ref"), lan.Namespace("ref"), svcs)
	if got := dumpTable(t, ns); got != want {
		t.Fatalf("the table differs from a full Sync's:\n%s", lineDiff(got, want))
	}
}

// errSet is the lines of a Sync's or Update's error, without the prefix:
// one per invalid service, sorted.
func errSet(err error) []string {
	if err == nil {
		return nil
	}
	s := err.Error()
	for _, p := range []string{"update dataplane: ", "sync dataplane: "} {
		s = strings.TrimPrefix(s, p)
	}
	lines := strings.Split(s, "\n")
	slices.Sort(lines)
	return lines
}

// TestUpdateEqualsFull drives one Table through Updates of a few groups
// at a time, scripted and random, and after each compares the kernel's
// table with what a full Sync of all groups in one list writes in another
// namespace, and the Update's errors with that Sync's. Updates that fail
// (a cancelled context) lose nothing: the next Update, or Check, programs
// their changes.
func TestUpdateEqualsFull(t *testing.T) {
	lan := netnstest.New(t, prefix, netnstest.Host{Role: "inc"}, netnstest.Host{Role: "ref"})
	incNS, refNS := lan.Namespace("inc"), lan.Namespace("ref")
	hInc, hRef := lan.Handle("inc"), lan.Handle("ref")
	tbl, err := Open(Options{NetNS: &hInc, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tbl.Close(true) })
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	groups := map[string][]Service{}
	// record makes changed part of the desired groups, as Update does.
	record := func(changed map[string][]Service) {
		for g, list := range changed {
			if len(list) == 0 {
				delete(groups, g)
			} else {
				groups[g] = slices.Clone(list)
			}
		}
	}
	// compare checks the kernel's table against a full Sync of all groups
	// and err (an Update's) against that Sync's error.
	compare := func(what string, err error) {
		t.Helper()
		checkState(t, tbl)
		got := dumpTable(t, incNS)
		ref, refErr := fullSyncDump(t, hRef, refNS, flatten(groups))
		if got != ref {
			t.Fatalf("%s: the table after Updates differs from a full Sync's:\n%s", what, lineDiff(got, ref))
		}
		all := errSet(errors.New(refErr))
		if refErr == "" {
			all = nil
		}
		for _, e := range errSet(err) {
			if _, ok := slices.BinarySearch(all, e); !ok {
				t.Fatalf("%s: Update error %q; a full Sync's are\n%s", what, e, strings.Join(all, "\n"))
			}
		}
	}
	update := func(what string, changed map[string][]Service) error {
		t.Helper()
		record(changed)
		err := tbl.Update(ctx, changed)
		if err != nil && !errors.Is(err, ErrInvalidService) {
			t.Fatalf("%s: %v", what, err)
		}
		compare(what, err)
		return err
	}
	mustReport := func(what string, err error, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", k)) {
				t.Errorf("%s: error %v does not name %q", what, err, k)
			}
		}
	}

	// Scripted: every kind of change at least once.
	a := Service{Key: "ns/a:80/TCP", VIP: v4(0), Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, true), ep4(2, 8080, false)}}
	b := Service{Key: "ns/b:53/UDP", VIP: v6(0), Port: 53, Protocol: "UDP", Endpoints: []Endpoint{ep6(1, 5353, true)}}
	c := Service{Key: "ns/c:81/TCP", VIP: v4(0), Port: 81, Protocol: "TCP"}
	update("first Update", map[string][]Service{"ns/a": {a}, "ns/b": {b}, "ns/c": {c}})
	a.Endpoints = []Endpoint{ep4(2, 8080, false), ep4(5, 8080, false), ep4(6, 9090, true)}
	b.Endpoints = []Endpoint{ep6(2, 5353, true)}
	update("endpoints of two groups (one changes their number)", map[string][]Service{"ns/a": {a}, "ns/b": {b}})
	a.TrafficPolicyLocal = true
	update("Cluster to Local", map[string][]Service{"ns/a": {a}})
	web := []Service{
		{Key: "ns/web:80/TCP", VIP: v4(1), Port: 80, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, false)}},
		{Key: "ns/web:443/TCP", VIP: v4(1), Port: 443, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8443, false)}},
	}
	update("a group of two services", map[string][]Service{"ns/web": web})
	update("one of them goes", map[string][]Service{"ns/web": web[:1]})
	c.VIP = v4(2)
	update("a VIP moves", map[string][]Service{"ns/c": {c}})
	c.Endpoints = []Endpoint{ep4(3, 8080, false)}
	update("no endpoints to endpoints", map[string][]Service{"ns/c": {c}})
	z := Service{Key: "ns/z:80/TCP", VIP: a.VIP, Port: a.Port, Protocol: "tcp", Endpoints: []Endpoint{ep4(7, 8080, false)}}
	err = update("another group claims a's VIP:port/protocol (a's Key is smaller)", map[string][]Service{"ns/z": {z}})
	mustReport("the claim", err, z.Key)
	update("the winner's group goes: z takes over", map[string][]Service{"ns/a": nil})
	err = update("a comes back and wins again", map[string][]Service{"ns/a": {a}})
	mustReport("a's return", err, z.Key)
	update("the loser leaves", map[string][]Service{"ns/z": nil})
	bad := []Service{
		{Key: "ns/bad:80/ICMP", VIP: v4(3), Port: 80, Protocol: "ICMP"},
		{Key: "ns/bad:0/TCP", VIP: v4(3), Protocol: "TCP"},
		{Key: "ns/bad:81/TCP", VIP: v4(3), Port: 81, Protocol: "TCP", Endpoints: []Endpoint{ep4(1, 8080, true)}},
	}
	err = update("invalid services next to a valid one", map[string][]Service{"ns/bad": bad})
	mustReport("invalid services", err, bad[0].Key, bad[1].Key)

	// A failed Update keeps its changes: the next Update programs them
	// along with its own.
	d := Service{Key: "ns/d:82/TCP", VIP: v4(4), Port: 82, Protocol: "TCP", Endpoints: []Endpoint{ep4(4, 8080, false)}}
	record(map[string][]Service{"ns/d": {d}, "ns/c": nil})
	if err := tbl.Update(cancelled, map[string][]Service{"ns/d": {d}, "ns/c": nil}); err == nil || errors.Is(err, ErrInvalidService) {
		t.Fatalf("Update with a cancelled context: %v, want the context's error", err)
	}
	e := Service{Key: "ns/e:83/UDP", VIP: v4(4), Port: 83, Protocol: "UDP", Endpoints: []Endpoint{ep4(5, 5353, false)}}
	update("the Update after a failed one", map[string][]Service{"ns/e": {e}})
	// ... and so does Check.
	b.Endpoints = nil
	record(map[string][]Service{"ns/b": {b}})
	if err := tbl.Update(cancelled, map[string][]Service{"ns/b": {b}}); err == nil {
		t.Fatal("Update with a cancelled context succeeded")
	}
	if rebuilt, err := tbl.Check(ctx); err != nil || rebuilt {
		t.Fatalf("Check after a failed Update: rebuilt %v, %v; want false, nil (incremental)", rebuilt, err)
	}
	compare("Check after a failed Update", nil)
	// Nothing to change: nothing sent.
	s0 := tbl.Stats()
	if err := tbl.Update(ctx, map[string][]Service{"ns/a": {a}, "ns/nothing": nil}); err != nil {
		t.Fatal(err)
	}
	if s := tbl.Stats(); s.RoundTrips != s0.RoundTrips || s.UnchangedSyncs != s0.UnchangedSyncs+1 {
		t.Errorf("an Update that changes nothing: stats %+v then %+v, want no round trip", s0, s)
	}

	// Random: a few groups change per step, drawn from small pools so
	// that VIPs, Keys, endpoints and masquerade elements collide often.
	seed := uint64(time.Now().UnixNano())
	t.Logf("random steps: seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	randomService := func(key string) Service { return randomService(rng, key, 4, 40) }
	failed := 0
	for n := range 100 {
		changed := map[string][]Service{}
		for range 1 + rng.IntN(3) {
			g := fmt.Sprintf("ns/svc-%d", rng.IntN(10))
			list := slices.Clone(groups[g])
			switch r := rng.IntN(10); {
			case r < 2:
				list = nil
			case len(list) > 0 && r < 6:
				// Endpoints only, as in a Deployment scaling.
				i := rng.IntN(len(list))
				s := randomService(list[i].Key)
				if list[i].VIP.Is4() == s.VIP.Is4() {
					list[i].Endpoints = s.Endpoints
				}
			case len(list) > 0 && r < 7:
				i := rng.IntN(len(list))
				list[i].VIP = randomService(list[i].Key).VIP // it moves, maybe to another family
			default:
				list = append(list, randomService(fmt.Sprintf("%s:%d/TCP", g, rng.IntN(3))))
			}
			changed[g] = list
		}
		if rng.IntN(8) == 0 {
			// A failed Update first (unless it changes nothing, which
			// succeeds without looking at the context); the next one must
			// program both.
			record(changed)
			if err := tbl.Update(cancelled, changed); err != nil {
				failed++
			}
			changed = map[string][]Service{}
		}
		update(fmt.Sprintf("random step %d", n), changed)
	}
	st := tbl.Stats()
	t.Logf("stats: %+v; %d random Updates failed", st, failed)
	if st.FullSyncs != 1 || st.Fallbacks != 0 {
		t.Errorf("stats %+v: want exactly one full replacement (the first Update) and no fall-back to one", st)
	}
	if failed == 0 {
		t.Error("no random Update failed")
	}

	// A Sync sets the whole desired set: one group "" then, which Updates
	// change like any other.
	all := flatten(groups)
	if err := tbl.Sync(ctx, all); err != nil && !errors.Is(err, ErrInvalidService) {
		t.Fatal(err)
	}
	clear(groups)
	groups[""] = all
	compare("a Sync after Updates", nil)
	update("an Update after a Sync", map[string][]Service{"": all[:len(all)/2], "ns/new": {{Key: "ns/new:80/TCP", VIP: v4(9), Port: 80, Protocol: "TCP"}}})

	// The table deleted behind the Table's back: the next Update that
	// changes something replaces it.
	netnstest.Run(t, "ip", "netns", "exec", incNS, "nft", "delete", "table", "inet", DefaultTableName)
	s1 := tbl.Stats()
	update("an Update after the table was deleted", map[string][]Service{"ns/new": nil})
	if s := tbl.Stats(); s.FullSyncs != s1.FullSyncs+1 || s.Fallbacks != s1.Fallbacks+1 {
		t.Errorf("Update after the table was deleted: stats %+v then %+v, want one fall-back to a full replacement", s1, s)
	}
	// The last replacement failed (forced): an Update that fails too, then
	// one with nothing of its own, replaces the table with everything.
	tbl.forceFull()
	f := Service{Key: "ns/f:84/TCP", VIP: v4(5), Port: 84, Protocol: "TCP", Endpoints: []Endpoint{ep4(6, 8080, false)}}
	record(map[string][]Service{"ns/f": {f}})
	if err := tbl.Update(cancelled, map[string][]Service{"ns/f": {f}}); err == nil {
		t.Fatal("Update with a cancelled context succeeded")
	}
	s2 := tbl.Stats()
	update("an empty Update after failures", nil)
	if s := tbl.Stats(); s.FullSyncs != s2.FullSyncs+1 {
		t.Errorf("an empty Update after a failed replacement: stats %+v then %+v, want a full replacement", s2, s)
	}
}

// randomService draws a service for the random steps: one of vips VIPs
// per family (a quarter IPv6), a few endpoints from a small pool (now and
// then of the other family), and, with invalidEvery > 0, an invalid
// protocol once in invalidEvery draws. The pools are small so that VIPs,
// endpoints and masquerade elements collide often.
func randomService(rng *rand.Rand, key string, vips, invalidEvery int) Service {
	protos := []string{"TCP", "UDP", "tcp", "SCTP"}
	s := Service{Key: key, Port: uint16(80 + rng.IntN(2)), Protocol: protos[rng.IntN(len(protos))], TrafficPolicyLocal: rng.IntN(3) == 0}
	six := rng.IntN(4) == 0
	if six {
		s.VIP = v6(rng.IntN(vips))
	} else {
		s.VIP = v4(rng.IntN(vips))
	}
	if invalidEvery > 0 && rng.IntN(invalidEvery) == 0 {
		s.Protocol = "ICMP"
	}
	for range rng.IntN(5) {
		i, port, local := 1+rng.IntN(5), uint16(8080+rng.IntN(2)), rng.IntN(2) == 0
		if six != (rng.IntN(8) == 0) { // now and then one of the other family
			s.Endpoints = append(s.Endpoints, ep6(i, port, local))
		} else {
			s.Endpoints = append(s.Endpoints, ep4(i, port, local))
		}
	}
	return s
}

// The scripted and random steps' addresses: endpoint i of each family and
// VIP i of each family.
func ep4(i int, port uint16, local bool) Endpoint {
	return Endpoint{Addr: netip.AddrFrom4([4]byte{10, 244, byte(i), 2}), Port: port, Local: local}
}

func ep6(i int, port uint16, local bool) Endpoint {
	return Endpoint{Addr: netip.MustParseAddr(fmt.Sprintf("fd00:244:%d::2", i)), Port: port, Local: local}
}

func v4(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 168, 10, byte(100 + i)}) }

func v6(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("fd00:10::%d", 100+i)) }
