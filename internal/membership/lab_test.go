//go:build linux

package membership

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/netnsenter"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/testrequire"
)

// This file builds a small Ethernet segment out of network namespaces: a
// "switch" namespace holding a Linux bridge, and N node namespaces each
// with an eth0 veth plugged into it. Nothing is created outside these
// namespaces, no IP address is configured anywhere (heartbeats are pure
// layer 2), and names carry the test process's PID so that leftovers of a
// dead run are recognised and removed while a concurrent run's are not.

const nsPrefix = "herald-mb-"

// segment is one test topology.
type segment struct {
	t      *testing.T
	bridge string
	nodes  []string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newSegment builds a bridge namespace and n node namespaces.
func newSegment(t *testing.T, n int) *segment {
	t.Helper()
	netnstest.Require(t, nsPrefix)
	id := fmt.Sprintf("%s%d-%04x", nsPrefix, os.Getpid(), rand.Uint32()&0xffff)
	s := &segment{t: t, bridge: id + "-sw"}
	t.Cleanup(s.teardown)
	ipCmd(t, "netns", "add", s.bridge)
	ipCmd(t, "-n", s.bridge, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", s.bridge, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%s-n%d", id, i+1)
		s.nodes = append(s.nodes, ns)
		ipCmd(t, "netns", "add", ns)
		port := fmt.Sprintf("v%d", i+1)
		ipCmd(t, "-n", s.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", s.bridge, "link", "set", port, "master", "br0", "up")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	}
	return s
}

func (s *segment) teardown() {
	for _, ns := range append(s.nodes, s.bridge) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			s.t.Logf("teardown %s: %v: %s", ns, err, out)
		}
	}
}

// link sets node i's eth0 up or down.
func (s *segment) link(i int, up bool) {
	state := "down"
	if up {
		state = "up"
	}
	ipCmd(s.t, "-n", s.nodes[i], "link", "set", "eth0", state)
}

// inNetns runs fn on a thread switched into the named namespace; sockets
// fn creates stay in that namespace.
func inNetns[T any](t *testing.T, name string, fn func() (T, error)) T {
	t.Helper()
	var v T
	if err := netnsenter.DoNamed(name, func() (err error) {
		v, err = fn()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// testMember is a running Member with its own registry.
type testMember struct {
	*Member
	reg      *prometheus.Registry
	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan error
	t        *testing.T
}

// stop cancels Run and waits for it.
func (m *testMember) stop() {
	m.stopOnce.Do(func() {
		m.cancel()
		select {
		case err := <-m.done:
			if err != nil {
				m.t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			m.t.Error("Run did not return within 5s of cancel")
		}
	})
}

// tlogWriter sends log lines to the test log.
type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a Member in node namespace i, named node<i+1> unless mod
// changes it.
func (s *segment) start(i int, mod func(*Config)) *testMember {
	t := s.t
	t.Helper()
	reg := prometheus.NewRegistry()
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = tlogWriter{t}
	}
	cfg := Config{
		Interface:  "eth0",
		Node:       fmt.Sprintf("node%d", i+1),
		ClusterID:  testCluster,
		Keys:       testRing(t, testKey),
		Interval:   interval,
		DeadAfter:  deadAfter,
		Registerer: reg,
		Logger:     slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if mod != nil {
		mod(&cfg)
	}
	m := inNetns(t, s.nodes[i], func() (*Member, error) { return New(cfg) })
	ctx, cancel := context.WithCancel(context.Background())
	tm := &testMember{Member: m, reg: reg, cancel: cancel, done: make(chan error, 1), t: t}
	go func() { tm.done <- m.Run(ctx) }()
	t.Cleanup(tm.stop)
	return tm
}

// peers returns the names of m's live peers.
func (m *testMember) peers() []string {
	var out []string
	for _, p := range m.Snapshot().Peers {
		out = append(out, p.Node)
	}
	return out
}

func (m *testMember) peer(name string) (Peer, bool) {
	for _, p := range m.Snapshot().Peers {
		if p.Node == name {
			return p, true
		}
	}
	return Peer{}, false
}

func (m *testMember) sees(names ...string) bool {
	got := m.peers()
	if len(got) != len(names) {
		return false
	}
	for i := range names {
		if got[i] != names[i] {
			return false
		}
	}
	return true
}

func (m *testMember) dropped(r dropReason) float64 { return testutil.ToFloat64(m.met.dropped[r]) }

// waitFor polls cond every 2 ms until it holds or timeout passes, and
// returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// addLoss drops 1 in every `every` heartbeat frames at random in the
// bridge's forward path, independently per frame and output port. It
// stands in for `tc qdisc … netem loss`, which this kernel lacks
// (CONFIG_NET_SCH_NETEM is not set); nftables' numgen is in-kernel too.
func addLoss(t *testing.T, bridgeNS string, every uint32) {
	t.Helper()
	h, err := netns.GetFromName(bridgeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: "heraldloss"})
	ch := c.AddChain(&nftables.Chain{
		Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
	})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		// ether type 0x88b5
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x88, 0xb5}},
		// numgen random mod every == 0 (zero reads the same in any byte
		// order, so no byteorder conversion is needed)
		&expr.Numgen{Register: 1, Modulus: every, Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		testrequire.Missing(t, "cannot install the nftables loss rule (nf_tables bridge support missing?): %v", err)
	}
}
