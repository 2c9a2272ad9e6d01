package agent_test

// Field safety on real kernels: foreign frames, key changes, key
// mismatches, replayed heartbeats, default interfaces, drains and honest
// status, each against three agents, the real API server and Herald's
// controller.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/l2"
	"github.com/herald-lb/herald/internal/membership"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/placement"
)

// A LAN host floods gratuitous ARPs, ARP replies and unsolicited NAs for
// the addresses a node announces, every 100 ms for 30 s. The Service keeps
// its addresses throughout and after, the owner keeps answering, the
// conflict is reported naming the host, and the owner defends each address
// at most once per 10 s.
func TestForeignClaimsAreDefendedNotObeyed(t *testing.T) {
	c := newCluster(t)
	regs := c.withRegistries()
	foreignMAC := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x99}
	c.lan.AddHost(netnstest.Host{Role: "foreign", MAC: foreignMAC.String()})
	c.createPolicy("^eth0$")
	v4, v6 := netip.MustParseAddr("192.168.10.75"), netip.MustParseAddr("fd00:10::75")
	c.createService("web", v4.String(), v6.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	owner4, owner6 := placement.Rank(v4, nodes)[0], placement.Rank(v6, nodes)[0]
	p := c.probe(v4, owner4)
	c.waitAnnounced("web", "True", "192.168.10.75 announced by node "+owner4)
	time.Sleep(2 * time.Second) // past the first announcements' burst

	garp, err := l2.GratuitousARPRequest(foreignMAC, v4)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := l2.GratuitousARPReply(foreignMAC, v4)
	if err != nil {
		t.Fatal(err)
	}
	na, err := l2.UnsolicitedNA(foreignMAC, v6)
	if err != nil {
		t.Fatal(err)
	}
	defences0 := defences(regs[owner4], "ipv4") + defences(regs[owner6], "ipv6")
	start := time.Now()
	const floodFor = 30 * time.Second
	stopFlood := c.sendEvery("foreign", 100*time.Millisecond, floodFor, garp, reply, na)
	for time.Since(start) < floodFor {
		c.waitIngress("web", v4.String(), v6.String())
		time.Sleep(500 * time.Millisecond)
	}
	sent := stopFlood()
	if sent < 250 {
		t.Fatalf("the flood sent only %d rounds in %s", sent, floodFor)
	}
	// Reported while it lasted, naming the host; never withdrawn.
	c.waitAnnounced("web", "True", "02:00:5e:10:00:99")
	c.waitEventMessage("web", "AddressConflict", "02:00:5e:10:00:99")
	// Defended, at most once per 10 s per address: ≤ 4 each in 30 s.
	d4 := defences(regs[owner4], "ipv4")
	d6 := defences(regs[owner6], "ipv6")
	t.Logf("defences during %s of a 10/s flood: IPv4 %v, IPv6 %v", floodFor, d4, d6)
	if d4 < 2 || d4 > 4 || d6 < 2 || d6 > 4 {
		t.Errorf("defences IPv4 %v, IPv6 %v in 30 s; want 2..4 each (one per 10 s)", d4, d6)
	}
	_ = defences0
	// The owner answered throughout: no second of the flood without its
	// replies, and no other node answered.
	rs := p.since(start)
	var last time.Time = start
	for _, r := range rs {
		if r.mac != c.macs[owner4] {
			t.Fatalf("%s answered for %s during the flood; only %s may", r.mac, v4, owner4)
		}
		if gap := r.at.Sub(last); gap > time.Second {
			t.Fatalf("the owner was silent for %s during the flood", gap)
		}
		last = r.at
	}
	// After: the same addresses, still announced by the same node.
	time.Sleep(time.Second)
	c.waitIngress("web", v4.String(), v6.String())
	c.waitAnnounced("web", "True", "192.168.10.75 announced by node "+owner4)
	if rs := p.since(time.Now().Add(-500 * time.Millisecond)); len(rs) == 0 || rs[len(rs)-1].mac != c.macs[owner4] {
		t.Fatalf("the owner stopped answering after the flood")
	}
}

// defences reads herald_l2_defences_total of one agent and family.
func defences(reg *prometheus.Registry, family string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "herald_l2_defences_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "family" && l.GetValue() == family {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// withRegistries gives every agent started from now on its own metrics
// registry, and returns them by node.
func (c *cluster) withRegistries() map[string]*prometheus.Registry {
	regs := map[string]*prometheus.Registry{}
	var mu sync.Mutex
	c.agentOpts = append(c.agentOpts, func(o *agent.Options) {
		mu.Lock()
		defer mu.Unlock()
		regs[o.NodeName] = prometheus.NewRegistry()
		o.Registerer = regs[o.NodeName]
	})
	return regs
}

// sendEvery sends frames from role's eth0 every interval for at most d (a
// bounded loop); stop ends it early and returns the rounds sent.
func (c *cluster) sendEvery(role string, every, d time.Duration, frames ...[]byte) (stop func() int) {
	c.t.Helper()
	var conn *packet.Conn
	if err := c.lan.In(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, 0x0806, nil)
		return err
	}); err != nil {
		c.t.Fatalf("raw socket in %s: %v", role, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	rounds := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, f := range frames {
				_, _ = conn.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])})
			}
			rounds++
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() {
			cancel()
			<-done
			_ = conn.Close()
		})
		return rounds
	}
	c.t.Cleanup(func() { stop() })
	return stop
}

// Rotation the documented way — add a key, wait until every agent shows
// it, remove the old one — under a client probing every 10 ms: no probe
// goes unanswered, one MAC answers throughout, and no agent restarts.
func TestKeyRotationNoSplit(t *testing.T) {
	c := newCluster(t)
	k1 := c.useKeySecret(map[string][]byte{"key-1": randomKey(t)})
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.76")
	c.createService("web", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	owner := placement.Rank(addr, nodes)[0]
	p := c.probe(addr, owner)
	inc0 := c.incarnations()
	c.waitFingerprints(heartbeatkey.Fingerprint(k1))

	start := time.Now()
	k2 := randomKey(t)
	c.editSecret(func(s *corev1.Secret) { s.Data["key-2"] = k2 })
	c.waitFingerprints(heartbeatkey.Fingerprint(k1), heartbeatkey.Fingerprint(k2))
	c.editSecret(func(s *corev1.Secret) { delete(s.Data, "key-1") })
	c.waitFingerprints(heartbeatkey.Fingerprint(k2))
	time.Sleep(500 * time.Millisecond)
	c.assertOneAnswerer(p, start, owner, 50*time.Millisecond)
	if got := c.incarnations(); !mapsEqual(got, inc0) {
		t.Fatalf("agents restarted during the rotation: %v → %v", inc0, got)
	}
	t.Logf("rotation took %s", time.Since(start).Round(time.Millisecond))
}

// A careless re-render replaces the key in place and one agent restarts
// with it: no Service loses or changes its address, every address keeps
// answering, and within seconds every agent uses the new key and one MAC
// answers each address.
func TestKeyReplacedInPlace(t *testing.T) {
	c := newCluster(t)
	c.useKeySecret(map[string][]byte{"key": randomKey(t)})
	c.createPolicy("^eth0$")
	addrs := []netip.Addr{netip.MustParseAddr("192.168.10.77"), netip.MustParseAddr("192.168.10.78"), netip.MustParseAddr("192.168.10.79")}
	for i, a := range addrs {
		c.createService(fmt.Sprintf("s%d", i), a.String())
	}
	for _, n := range nodes {
		c.startAgent(n)
	}
	probes := map[netip.Addr]*prober{}
	for _, a := range addrs {
		probes[a] = c.probe(a, placement.Rank(a, nodes)[0])
	}
	start := time.Now()
	k := randomKey(t)
	c.editSecret(func(s *corev1.Secret) { s.Data["key"] = k })
	// The agent of the owner of the first address restarts at once (a
	// re-rendered DaemonSet rolls it).
	restarted := placement.Rank(addrs[0], nodes)[0]
	c.stops[restarted]()
	c.startAgent(restarted)
	c.waitFingerprints(heartbeatkey.Fingerprint(k))
	settled := time.Now()
	time.Sleep(time.Second)
	for i, a := range addrs {
		c.waitIngress(fmt.Sprintf("s%d", i), a.String())
		p := probes[a]
		// Never unanswered (two MACs are allowed while the keys differ).
		rs := p.since(start)
		last := start
		for _, r := range rs {
			if gap := r.at.Sub(last); gap > 500*time.Millisecond {
				t.Errorf("%s went unanswered for %s", a, gap)
			}
			last = r.at
		}
		// One MAC once every agent has the new key.
		owner := placement.Rank(a, nodes)[0]
		p.stable(t, c.macs[owner], 500*time.Millisecond, 10*time.Second)
		for _, r := range p.since(settled.Add(500 * time.Millisecond)) {
			if r.mac != c.macs[owner] {
				t.Errorf("%s answered by %s after the keys agreed; only %s may", a, r.mac, owner)
				break
			}
		}
	}
	t.Logf("all agents on the new key %s after the edit", settled.Sub(start).Round(time.Millisecond))
}

// Two agents with one key and one with another (an old key file): the
// mismatch is reported within 2 s on both sides, naming both fingerprints,
// the Service's condition says KeyMismatch, and no address goes unanswered
// or moves.
func TestKeyMismatchReported(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.80")
	c.createService("web", addr.String())
	rank := placement.Rank(addr, nodes)
	for _, n := range rank[:2] {
		c.startAgent(n)
	}
	p := c.probe(addr, rank[0])
	old := []byte("an old key from a file, long enough")
	c.keys = [][]byte{old}
	start := time.Now()
	c.startAgent(rank[2])
	fpOld, fpCur := membership.Fingerprint(old), membership.Fingerprint(testKey)
	// Each side names the other node and both keys, within 2 s.
	c.waitEventOn(rank[0], "KeyMismatch", start, 2*time.Second, rank[2], fpOld, fpCur)
	c.waitEventOn(rank[2], "KeyMismatch", start, 2*time.Second, rank[0], fpOld, fpCur)
	t.Logf("mismatch reported on both sides within %s", time.Since(start).Round(time.Millisecond))
	c.waitAnnounced("web", "True", fpOld)
	cond := c.announcedCondition("web")
	if cond.Reason != "KeyMismatch" {
		t.Errorf("Announced reason %s (%q), want KeyMismatch", cond.Reason, cond.Message)
	}
	time.Sleep(time.Second)
	c.waitIngress("web", addr.String())
	last := start
	for _, r := range p.since(start) {
		if gap := r.at.Sub(last); gap > 200*time.Millisecond {
			t.Errorf("%s went unanswered for %s", addr, gap)
		}
		last = r.at
	}
}

// A captured heartbeat replayed after its sender died, to receivers that
// restarted since, does not bring the sender back: the addresses it would
// own stay answered by the others.
func TestReplayedHeartbeatsDoNotResurrect(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	// An address the victim node ranks first for.
	victim := nodes[2]
	var addr netip.Addr
	for i := 75; i < 99; i++ {
		a := netip.AddrFrom4([4]byte{192, 168, 10, byte(i)})
		if placement.Rank(a, nodes)[0] == victim {
			addr = a
			break
		}
	}
	c.createService("web", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	p := c.probe(addr, victim)
	frames := c.capture("client", c.macs[victim], 2*time.Second)
	if len(frames) < 20 {
		t.Fatalf("captured %d heartbeats of %s", len(frames), victim)
	}
	// The victim dies; the others take over, then restart.
	c.stops[victim]()
	rank := placement.Rank(addr, nodes)
	p.stable(t, c.macs[rank[1]], 300*time.Millisecond, 10*time.Second)
	for _, n := range nodes[:2] {
		c.stops[n]()
		c.startAgent(n)
	}
	p.stable(t, c.macs[rank[1]], 300*time.Millisecond, 10*time.Second)
	start := time.Now()
	// Replay the capture three times at 50 ms pace.
	for range 3 {
		for _, f := range frames {
			c.sendRaw("client", membership.EtherType, f)
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, r := range p.since(start) {
		if r.mac != c.macs[rank[1]] {
			t.Fatalf("%s answered for %s during the replay; the dead %s must stay dead", r.mac, addr, victim)
		}
	}
	if rs := p.since(start); len(rs) < int(time.Since(start)/(20*time.Millisecond)) {
		t.Fatalf("%s was answered %d times in %s of replay", addr, len(rs), time.Since(start))
	}
	for _, n := range nodes[:2] {
		for _, seg := range c.report(n).Segments {
			for _, peer := range seg.Peers {
				if peer.Node == victim {
					t.Fatalf("%s lists the dead %s as a peer", n, victim)
				}
			}
		}
	}
}

// capture records the heartbeat frames from mac that role hears for d.
func (c *cluster) capture(role, mac string, d time.Duration) [][]byte {
	c.t.Helper()
	var conn *packet.Conn
	if err := c.lan.In(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, membership.EtherType, nil)
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	var out [][]byte
	deadline := time.Now().Add(d)
	buf := make([]byte, 9000)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		if net.HardwareAddr(buf[6:12]).String() == mac {
			out = append(out, slices.Clone(buf[:n]))
		}
	}
	return out
}

// sendRaw sends one frame as is from role's eth0.
func (c *cluster) sendRaw(role string, etherType int, frame []byte) {
	c.t.Helper()
	if err := c.lan.In(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, etherType, nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])})
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
}

// A policy without interfaces announces on the node's LAN only: not on a
// Pod bridge with Pod veths, which is up and broadcast-capable but carries
// no node address. Heartbeats do not go there, requests there get no
// answer, and the status names only eth0.
func TestDefaultInterfacesAreTheLAN(t *testing.T) {
	c := newCluster(t)
	for i, n := range nodes {
		ns := c.lan.Namespace(n)
		for _, args := range [][]string{
			{"-n", ns, "link", "add", "cni0", "type", "bridge"},
			{"-n", ns, "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "cni0"},
			{"-n", ns, "link", "add", "veth0pod", "type", "veth", "peer", "name", "podeth0"},
			{"-n", ns, "link", "set", "veth0pod", "master", "cni0"},
			{"-n", ns, "link", "set", "cni0", "up"},
			{"-n", ns, "link", "set", "veth0pod", "up"},
			{"-n", ns, "link", "set", "podeth0", "up"},
		} {
			c.lan.IP(n, args[2:]...)
		}
	}
	// No interfaces: the node's LAN.
	p := &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default-lan"}}
	if err := c.cl.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("192.168.10.81")
	c.createService("web", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	owner := placement.Rank(addr, nodes)[0]
	c.waitOwner(addr, owner, 15*time.Second)
	c.waitAnnounced("web", "True", "192.168.10.81 announced by node "+owner+" on eth0")
	if cond := c.announcedCondition("web"); strings.Contains(cond.Message, "cni0") {
		t.Errorf("announced on the Pod bridge: %q", cond.Message)
	}
	for _, n := range nodes {
		for _, seg := range c.report(n).Segments {
			if seg.Interface != "eth0" {
				t.Errorf("%s has a segment on %s", n, seg.Interface)
			}
		}
	}
	// Nothing Herald sends reaches the Pod side: no heartbeat, and no
	// answer to a request for the address.
	var conn *packet.Conn
	if err := c.lan.In(owner, func() error {
		ifi, err := net.InterfaceByName("podeth0")
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, 0x0003, nil) // ETH_P_ALL
		if err != nil {
			return err
		}
		req, err := l2.ARPRequest(ifi.HardwareAddr, netip.MustParseAddr("10.244.0.10"), addr)
		if err != nil {
			return err
		}
		_, err = conn.WriteTo(req, &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(time.Second)
	buf := make([]byte, 9000)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		if n >= 14 && (buf[12] == 0x88 && buf[13] == 0xb5) {
			t.Fatalf("a heartbeat reached the Pod side of cni0")
		}
		if m, err := l2.Decode(buf[:n]); err == nil && m.Kind == l2.KindARPReply && m.SenderIP == addr {
			t.Fatalf("%s was answered on the Pod bridge", addr)
		}
	}
}

// The four ways nobody answers, each with its exact reason within 2 s of
// the cause, and back to Announced=True within 2 s of the fix.
func TestHonestStatus(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.82")
	c.createService("web", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	owner := placement.Rank(addr, nodes)[0]
	c.waitOwner(addr, owner, 15*time.Second)
	c.waitAnnounced("web", "True", "announced by node "+owner)
	truth := func(what string, change func(), status, reason, contains string) {
		t.Helper()
		start := time.Now()
		change()
		c.waitCondition("web", status, reason, contains, 2*time.Second)
		t.Logf("%s: %s %s within %s", what, status, reason, time.Since(start).Round(time.Millisecond))
	}
	policy := func(mutate func(*heraldv1.L2AnnouncementPolicy)) func() {
		return func() {
			for { // the controller writes the policy's status: retry on a conflict
				var p heraldv1.L2AnnouncementPolicy
				if err := c.cl.Get(context.Background(), client.ObjectKey{Name: c.policy}, &p); err != nil {
					t.Fatal(err)
				}
				mutate(&p)
				err := c.cl.Update(context.Background(), &p)
				if err == nil {
					return
				}
				if !apierrors.IsConflict(err) {
					t.Fatal(err)
				}
			}
		}
	}
	back := func(what string, change func()) {
		t.Helper()
		truth(what, change, "True", "Announced", "announced by node")
	}

	truth("policy matches no interface", policy(func(p *heraldv1.L2AnnouncementPolicy) { p.Spec.Interfaces = []string{"^enp0s1$"} }),
		"False", "NoMatchingInterface", "it has eth0 (LAN)")
	back("policy fixed", policy(func(p *heraldv1.L2AnnouncementPolicy) { p.Spec.Interfaces = []string{"^eth0$"} }))

	truth("policy deleted", func() {
		if err := c.cl.Delete(context.Background(), &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: c.policy}}); err != nil {
			t.Fatal(err)
		}
	}, "False", "NoPolicy", "no L2AnnouncementPolicy selects")
	back("policy back", func() { c.createPolicy("^eth0$") })

	truth("every node excluded by label", func() {
		for _, n := range nodes {
			c.labelNode(n, kube.ExcludeFromLBLabel, "")
		}
	}, "False", "NoEligibleNode", "Talos")
	back("labels removed", func() {
		for _, n := range nodes {
			c.labelNode(n, kube.ExcludeFromLBLabel, "-")
		}
	})

	// The fourth, KeyMismatch: an agent with another key.
	truth("an agent with another key", func() {
		c.stops[nodes[0]]()
		c.keys = [][]byte{[]byte("another key, not the cluster's one")}
		c.startAgent(nodes[0])
	}, "True", "KeyMismatch", "two MACs answer")
	back("the agent gets the right key", func() {
		c.stops[nodes[0]]()
		c.keys = [][]byte{testKey}
		c.startAgent(nodes[0])
	})
}

// The exclude label on the owner drains it: its address moves with no
// probe of a 10 ms client loop left unanswered. Removing the label moves
// nothing back.
func TestExcludeLabelDrains(t *testing.T) {
	c := newCluster(t)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.83")
	c.createService("web", addr.String())
	for _, n := range nodes {
		c.startAgent(n)
	}
	rank := placement.Rank(addr, nodes)
	p := c.probe(addr, rank[0])
	start := time.Now()
	c.labelNode(rank[0], kube.ExcludeFromLBLabel, "")
	p.stable(t, c.macs[rank[1]], 300*time.Millisecond, 10*time.Second)
	c.waitAnnounced("web", "True", "announced by node "+rank[1])
	c.assertAnswered(p, start, 50*time.Millisecond)

	start = time.Now()
	c.labelNode(rank[0], kube.ExcludeFromLBLabel, "-")
	c.waitReport(rank[0], func(st heraldv1.HeraldNodeStatus) bool { return !st.ExcludedByLabel && len(st.Segments) > 0 })
	time.Sleep(2 * time.Second)
	c.assertOneAnswerer(p, start, rank[1], 50*time.Millisecond)
}

// --- helpers ---

// useKeySecret creates the heartbeat Secret with data and makes agents
// read it; it returns the newest key's value.
func (c *cluster) useKeySecret(data map[string][]byte) []byte {
	c.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: "hb-" + c.ns}, Data: data}
	if _, err := c.kube.CoreV1().Secrets("herald-system").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	c.keySecret = s.Name
	keys, err := heartbeatkey.Parse(data)
	if err != nil {
		c.t.Fatal(err)
	}
	newest, _ := keys.Newest()
	return newest.Value
}

// editSecret changes the heartbeat Secret.
func (c *cluster) editSecret(mutate func(*corev1.Secret)) {
	c.t.Helper()
	for {
		s, err := c.kube.CoreV1().Secrets("herald-system").Get(context.Background(), c.keySecret, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		mutate(s)
		_, err = c.kube.CoreV1().Secrets("herald-system").Update(context.Background(), s, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			c.t.Fatal(err)
		}
	}
}

func randomKey(t testing.TB) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(hex.EncodeToString(b))
}

// report reads node's HeraldNode status.
func (c *cluster) report(node string) heraldv1.HeraldNodeStatus {
	c.t.Helper()
	var hn heraldv1.HeraldNode
	if err := c.cl.Get(context.Background(), client.ObjectKey{Name: node}, &hn); err != nil {
		c.t.Fatalf("HeraldNode %s: %v", node, err)
	}
	return hn.Status
}

// waitReport waits until node's report satisfies ok.
func (c *cluster) waitReport(node string, ok func(heraldv1.HeraldNodeStatus) bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var hn heraldv1.HeraldNode
		if err := c.cl.Get(context.Background(), client.ObjectKey{Name: node}, &hn); err == nil && ok(hn.Status) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("HeraldNode %s: %+v", node, c.report(node))
}

// waitFingerprints waits until every agent reports exactly fps.
func (c *cluster) waitFingerprints(fps ...string) {
	c.t.Helper()
	want := slices.Clone(fps)
	slices.Sort(want)
	for _, n := range nodes {
		c.waitReport(n, func(st heraldv1.HeraldNodeStatus) bool {
			got := slices.Clone(st.KeyFingerprints)
			slices.Sort(got)
			return slices.Equal(got, want)
		})
	}
}

// incarnations are the agents' incarnations, by node.
func (c *cluster) incarnations() map[string]string {
	out := map[string]string{}
	for _, n := range nodes {
		out[n] = c.report(n).Incarnation
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// assertOneAnswerer checks that, since start, only owner answered and no
// probe interval went without a reply for longer than maxGap.
func (c *cluster) assertOneAnswerer(p *prober, start time.Time, owner string, maxGap time.Duration) {
	c.t.Helper()
	for _, r := range p.since(start) {
		if r.mac != c.macs[owner] {
			c.t.Fatalf("%s answered; only %s may", r.mac, owner)
		}
	}
	c.assertAnswered(p, start, maxGap)
}

// assertAnswered checks that since start no stretch longer than maxGap
// went without a reply (the prober asks every 10 ms).
func (c *cluster) assertAnswered(p *prober, start time.Time, maxGap time.Duration) {
	c.t.Helper()
	rs := p.since(start)
	if len(rs) == 0 {
		c.t.Fatalf("no replies since %s", start)
	}
	last := start
	for _, r := range rs {
		if gap := r.at.Sub(last); gap > maxGap {
			c.t.Fatalf("no reply for %s (until %s)", gap.Round(time.Millisecond), r.at.Format("15:04:05.000"))
		}
		last = r.at
	}
	if gap := time.Since(last); gap > maxGap {
		c.t.Fatalf("no reply for the last %s", gap.Round(time.Millisecond))
	}
}

// labelNode sets (or, with value "-", removes) a label on node.
func (c *cluster) labelNode(node, key, value string) {
	c.t.Helper()
	for {
		n, err := c.kube.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		if value == "-" {
			delete(n.Labels, key)
		} else {
			n.Labels[key] = value
		}
		_, err = c.kube.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			c.t.Fatal(err)
		}
	}
}

// announcedCondition returns the Service's Announced condition.
func (c *cluster) announcedCondition(name string) metav1.Condition {
	c.t.Helper()
	s, err := c.kube.CoreV1().Services(c.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(s.Status.Conditions, kube.ConditionAnnounced); cond != nil {
		return *cond
	}
	return metav1.Condition{}
}

// waitCondition waits at most within for the Announced condition to have
// status and reason with a message containing want.
func (c *cluster) waitCondition(name, status, reason, want string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		cond := c.announcedCondition(name)
		if string(cond.Status) == status && cond.Reason == reason && strings.Contains(cond.Message, want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: Announced %s %s %q after %s, want %s %s containing %q", name, cond.Status, cond.Reason, cond.Message, within, status, reason, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEventOn waits for an Event with reason on node's HeraldNode, recorded
// after since, whose message contains every want.
func (c *cluster) waitEventOn(node, reason string, since time.Time, within time.Duration, wants ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs, err := c.kube.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
	next:
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind != "HeraldNode" || e.InvolvedObject.Name != node || e.Reason != reason ||
				e.LastTimestamp.Time.Before(since.Truncate(time.Second)) {
				continue
			}
			for _, w := range wants {
				if !strings.Contains(e.Message, w) {
					continue next
				}
			}
			return e.Message
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no %s event on HeraldNode %s naming %v within %s", reason, node, wants, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEventMessage waits for an Event with reason on the Service whose
// message contains want.
func (c *cluster) waitEventMessage(name, reason, want string) string {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs, err := c.kube.CoreV1().Events(c.ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason && strings.Contains(e.Message, want) {
				return e.Message
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no %s event on %s containing %q", reason, name, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createPool creates a pool with one range.
func (c *cluster) createPool(name, start, stop string) {
	c.t.Helper()
	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{Start: start, Stop: stop}}}}
	if err := c.cl.Create(context.Background(), p); err != nil {
		c.t.Fatal(err)
	}
}

// waitPoolExcluded waits until the pool's status lists exactly addrs as
// excluded.
func (c *cluster) waitPoolExcluded(pool string, addrs ...string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var p heraldv1.LoadBalancerIPPool
		if err := c.cl.Get(context.Background(), client.ObjectKey{Name: pool}, &p); err != nil {
			c.t.Fatal(err)
		}
		var got []string
		for _, e := range p.Status.ExcludedAddresses {
			got = append(got, e.Address)
		}
		if slices.Equal(got, addrs) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pool %s excludes %v, want %v", pool, got, addrs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reporterOf names the node whose report holds a probe conflict on addr.
func (c *cluster) reporterOf(addr string) string {
	c.t.Helper()
	for _, n := range nodes {
		for _, cf := range c.report(n).Conflicts {
			if cf.Address == addr && cf.Phase == heraldv1.ConflictProbe {
				return n
			}
		}
	}
	c.t.Fatalf("no node reports a probe conflict on %s", addr)
	return ""
}

// An address Herald announced and then released is probed again when a
// Service takes it into use afresh: a foreign host that took it meanwhile
// keeps it, and the next Service gets another address. (The agents once
// remembered every address they had seen claimed or probed, and announced
// a released one again without a probe, over the host now using it; the
// lab e2e test found it.)
func TestReleasedAddressIsProbedAgain(t *testing.T) {
	c := newCluster(t)
	c.createPool("fresh", "192.168.10.100", "192.168.10.109")
	c.createPolicy("^eth0$")
	for _, n := range nodes {
		c.startAgent(n)
	}
	pinned := map[string]string{"herald.dev/pool": "fresh"}
	c.createServiceWith("first", pinned, "192.168.10.100")
	c.waitAnnounced("first", "True", "192.168.10.100 announced by node")
	if err := c.kube.CoreV1().Services(c.ns).Delete(context.Background(), "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Nobody answers for it any more; then a host on the LAN takes it.
	deadline := time.Now().Add(10 * time.Second)
	for c.lan.Resolve("client", netip.MustParseAddr("192.168.10.100"), time.Second) != "" {
		if time.Now().After(deadline) {
			t.Fatal("192.168.10.100 still answered 10 s after its Service went")
		}
	}
	foreignMAC := "02:00:5e:10:00:98"
	c.lan.AddHost(netnstest.Host{Role: "foreign", MAC: foreignMAC, Addrs: []string{"192.168.10.100/24"}})

	// The next Service is offered .100 first: the probe finds the host,
	// and the Service moves on to .101.
	c.createServiceWith("second", pinned, "192.168.10.101")
	c.waitAnnounced("second", "True", "192.168.10.101 announced by node")
	c.waitEventMessage("second", "IPReleased", foreignMAC)
	if mac := c.lan.Resolve("client", netip.MustParseAddr("192.168.10.100"), 2*time.Second); mac != foreignMAC {
		t.Fatalf("192.168.10.100 resolves to %q; only the foreign host %s may answer it", mac, foreignMAC)
	}
}
