package announce

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	addr := netip.MustParseAddr("192.168.10.75")
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Second)
	v := func(node string, r Reason, msg string) NodeVerdict {
		return NodeVerdict{Node: node, Status: AddrStatus{Addr: addr, Reason: r, Message: msg}}
	}
	keys := func(a, b string) string {
		return "node " + a + " signs with key aaaaaaaa and node " + b + " with bbbbbbbb"
	}
	cases := []struct {
		name       string
		answerers  []Answerer
		conflicts  []AddrConflict
		verdicts   []NodeVerdict
		answered   bool
		reason     Reason
		msgHas     []string
		msgHasNone []string
	}{
		{
			name:      "one node answers",
			answerers: []Answerer{{Node: "n1", Interfaces: []string{"eth0"}, Since: t0}},
			answered:  true, reason: Announced,
			msgHas: []string{"192.168.10.75 announced by node n1 on eth0"},
		},
		{
			name:      "LAN first, every interface named",
			answerers: []Answerer{{Node: "n1", Interfaces: []string{"eth0", "eth1"}, Since: t0}},
			answered:  true, reason: Announced,
			msgHas: []string{"node n1 on eth0, eth1"},
		},
		{
			name: "a later answerer that does not hear the earlier one took over from a dead node",
			answerers: []Answerer{
				{Node: "n1", Interfaces: []string{"eth0"}, Since: t0},
				{Node: "n2", Interfaces: []string{"eth0"}, Since: t1, Peers: []string{"n3"}},
			},
			answered: true, reason: Announced,
			msgHas: []string{"announced by node n2 on eth0"}, msgHasNone: []string{"n1"},
		},
		{
			name: "two live answerers (a hand-over in flight) are both named",
			answerers: []Answerer{
				{Node: "n1", Interfaces: []string{"eth0"}, Since: t0, Peers: []string{"n2"}},
				{Node: "n2", Interfaces: []string{"eth0"}, Since: t1, Peers: []string{"n1"}},
			},
			answered: true, reason: Announced,
			msgHas: []string{"node n1 on eth0 and by node n2 on eth0"},
		},
		{
			name: "two answerers with different keys: KeyMismatch, still answered",
			answerers: []Answerer{
				{Node: "n1", Interfaces: []string{"eth0"}, Since: t0, Mismatched: []string{"n2"}},
				{Node: "n2", Interfaces: []string{"eth0"}, Since: t1, Mismatched: []string{"n1"}},
			},
			answered: true, reason: KeyMismatch,
			msgHas: []string{"aaaaaaaa", "bbbbbbbb", "two MACs answer"},
		},
		{
			name:      "an answerer whose Node is not Ready does not count",
			answerers: []Answerer{{Node: "n1", Interfaces: []string{"eth0"}, Since: t0, NotReady: true}},
			verdicts:  []NodeVerdict{v("n1", Eligible, "eligible"), v("n2", NodeNotSelected, "x")},
			answered:  false, reason: Pending,
			msgHas: []string{"node n1 may announce it"},
		},
		{
			name:      "another host claims an announced address: answered, defended, reported",
			answerers: []Answerer{{Node: "n1", Interfaces: []string{"eth0"}, Since: t0}},
			conflicts: []AddrConflict{{Node: "n1", MAC: "02:00:5e:10:00:99", Interface: "eth0"}},
			answered:  true, reason: AddressConflict,
			msgHas: []string{"announced by node n1 on eth0", "02:00:5e:10:00:99", "defends it", "10 s"},
		},
		{
			name:      "a probe found another host before the first announcement",
			conflicts: []AddrConflict{{Node: "n2", MAC: "02:00:5e:10:00:99", Interface: "eth0", BeforeAnnounce: true}},
			verdicts:  []NodeVerdict{v("n1", Eligible, "eligible")},
			answered:  false, reason: AddressConflict,
			msgHas: []string{"in use by another host", "02:00:5e:10:00:99", "node n2 on eth0", "before it was ever announced"},
		},
		{
			name:     "no policy selects the Service",
			verdicts: []NodeVerdict{v("n1", NoPolicy, "no L2AnnouncementPolicy selects ns/web"), v("n2", NoPolicy, "no L2AnnouncementPolicy selects ns/web")},
			reason:   NoPolicy,
			msgHas:   []string{"192.168.10.75: no L2AnnouncementPolicy selects ns/web"},
		},
		{
			name: "no interface matches on any node: each node's interfaces named",
			verdicts: []NodeVerdict{
				v("n1", NoMatchingInterface, "no up interface of node n1 matches policy p (^enp0s1$); it has eth0 (LAN), cni0"),
				v("n2", NoMatchingInterface, "no up interface of node n2 matches policy p (^enp0s1$); it has eth0 (LAN)"),
			},
			reason: NoMatchingInterface,
			msgHas: []string{"node n1 matches policy p (^enp0s1$); it has eth0 (LAN), cni0", "node n2"},
		},
		{
			name: "no ready local endpoint anywhere",
			verdicts: []NodeVerdict{
				v("n1", NoLocalEndpoints, "ns/web has externalTrafficPolicy Local and no ready endpoint on node n1"),
				v("n2", NoLocalEndpoints, "ns/web has externalTrafficPolicy Local and no ready endpoint on node n2"),
			},
			reason: NoLocalEndpoints,
			msgHas: []string{"node n1", "node n2"},
		},
		{
			name: "mixed: why for each node, the exclude label explained",
			verdicts: []NodeVerdict{
				v("cp1", ExcludedByLabel, "long"),
				v("n1", NodeNotSelected, "x"),
				v("n2", NoLocalEndpoints, "y"),
				{Node: "n3", NoAgent: true, Status: AddrStatus{Reason: Eligible}},
			},
			reason: NoEligibleNode,
			msgHas: []string{"node cp1 carries node.kubernetes.io/exclude-from-external-load-balancers", "Talos",
				"node n1 is not selected", "node n3 runs no Herald agent", "node n2 has no ready local endpoint"},
		},
		{
			name: "no policy, an excluded node first",
			verdicts: []NodeVerdict{
				v("cp1", ExcludedByLabel, "long"),
				v("n1", NoPolicy, "no L2AnnouncementPolicy selects ns/web"),
				v("n2", NoPolicy, "no L2AnnouncementPolicy selects ns/web"),
			},
			reason: NoPolicy,
			msgHas: []string{"no L2AnnouncementPolicy selects ns/web"},
		},
		{
			name:     "eligible but not answering yet",
			verdicts: []NodeVerdict{v("n1", Eligible, "e"), v("n2", Eligible, "e")},
			reason:   Pending,
			msgHas:   []string{"nodes n1 and n2 may announce it"},
		},
		{
			name:     "eligible, but the agent has no key",
			verdicts: []NodeVerdict{{Node: "n1", KeyError: `secret herald-system/herald-heartbeat not found`, Status: AddrStatus{Reason: Eligible}}},
			reason:   NoHeartbeatKey,
			msgHas:   []string{"no heartbeat key", "herald-heartbeat not found"},
		},
		{
			name:     "selected, but no agent reports from the node",
			verdicts: []NodeVerdict{{Node: "n1", NoAgent: true, Status: AddrStatus{Reason: NoMatchingInterface}}},
			reason:   NoAgent,
			msgHas:   []string{"node n1 would be selected, but no Herald agent runs there"},
		},
		{
			name:   "no nodes at all",
			reason: NoEligibleNode,
			msgHas: []string{"no nodes"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Summarize(addr, c.answerers, c.conflicts, c.verdicts, keys)
			if s.Answered != c.answered || s.Reason != c.reason {
				t.Fatalf("answered=%v reason=%s (%q), want %v %s", s.Answered, s.Reason, s.Message, c.answered, c.reason)
			}
			for _, w := range c.msgHas {
				if !strings.Contains(s.Message, w) {
					t.Errorf("message %q lacks %q", s.Message, w)
				}
			}
			for _, w := range c.msgHasNone {
				if strings.Contains(s.Message, w) {
					t.Errorf("message %q has %q", s.Message, w)
				}
			}
		})
	}
}

func TestCondition(t *testing.T) {
	a4, a6 := netip.MustParseAddr("192.168.10.75"), netip.MustParseAddr("fd00:10::75")
	ok4 := AddrSummary{Addr: a4, Answered: true, Reason: Announced, Message: "192.168.10.75 announced by node n1 on eth0"}
	no6 := AddrSummary{Addr: a6, Reason: NoMatchingInterface, Message: "fd00:10::75: no up interface"}
	km6 := AddrSummary{Addr: a6, Answered: true, Reason: KeyMismatch, Message: "fd00:10::75 announced by …"}
	cases := []struct {
		sums   []AddrSummary
		status bool
		reason Reason
	}{
		{nil, false, ""},
		{[]AddrSummary{ok4}, true, Announced},
		{[]AddrSummary{ok4, no6}, false, NoMatchingInterface},
		{[]AddrSummary{ok4, km6}, true, KeyMismatch},
	}
	for i, c := range cases {
		st, r, msg := Condition(c.sums)
		if st != c.status || r != c.reason {
			t.Errorf("case %d: %v %s (%q), want %v %s", i, st, r, msg, c.status, c.reason)
		}
		for _, s := range c.sums {
			if !strings.Contains(msg, s.Message) {
				t.Errorf("case %d: message %q lacks %q", i, msg, s.Message)
			}
		}
	}
}

func TestNodeList(t *testing.T) {
	var vs []NodeVerdict
	for _, n := range []string{"j", "a", "b", "c", "d", "e", "f", "g", "h", "i"} {
		vs = append(vs, NodeVerdict{Node: n})
	}
	if got := nodeList(vs[:1]); got != "node j" {
		t.Errorf("one: %q", got)
	}
	if got := nodeList(vs[1:4]); got != "nodes a, b and c" {
		t.Errorf("three: %q", got)
	}
	if got := nodeList(vs); got != "nodes a, b, c, d, e, f, g, h and 2 more" {
		t.Errorf("ten: %q", got)
	}
}

func TestWithKernelARP(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.168.10.75"), netip.MustParseAddr("fd00:10::75")
	announced := AddrSummary{Addr: v4, Answered: true, Reason: Announced, Message: "192.168.10.75 announced by node a on eth0"}
	for _, c := range []struct {
		name       string
		in         AddrSummary
		nodes      []string
		reason     Reason
		msgHas     []string
		msgHasNone []string
	}{
		{name: "no node reports it", in: announced, reason: Announced, msgHasNone: []string{"kernel"}},
		{name: "one node", in: announced, nodes: []string{"b"}, reason: KernelARP,
			msgHas: []string{"announced by node a on eth0; but the kernel of node b also answers ARP for 192.168.10.75", "kube-ipvs0", "ipvs.strictARP: true"}},
		{name: "every node, sorted", in: announced, nodes: []string{"c", "a", "b"}, reason: KernelARP,
			msgHas: []string{"the kernels of nodes a, b and c also answer ARP"}},
		{name: "many nodes are counted", in: announced, nodes: []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10"}, reason: KernelARP,
			msgHas: []string{"and 2 more also answer ARP"}},
		{name: "a key mismatch stays the reason", in: AddrSummary{Addr: v4, Answered: true, Reason: KeyMismatch, Message: "x"}, nodes: []string{"b"},
			reason: KeyMismatch, msgHas: []string{"x; but the kernel of node b"}},
		{name: "an unanswered address keeps its reason", in: AddrSummary{Addr: v4, Reason: NoPolicy, Message: "no policy"}, nodes: []string{"b"},
			reason: NoPolicy, msgHas: []string{"no policy; meanwhile the kernel of node b also answers ARP"}},
		{name: "IPv6 is not affected", in: AddrSummary{Addr: v6, Answered: true, Reason: Announced, Message: "m"}, nodes: []string{"b"},
			reason: Announced, msgHasNone: []string{"kernel"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := WithKernelARP(c.in, c.nodes)
			if s.Reason != c.reason || s.Answered != c.in.Answered {
				t.Fatalf("reason %s answered %v (%q), want %s %v", s.Reason, s.Answered, s.Message, c.reason, c.in.Answered)
			}
			for _, w := range c.msgHas {
				if !strings.Contains(s.Message, w) {
					t.Errorf("message %q lacks %q", s.Message, w)
				}
			}
			for _, w := range c.msgHasNone {
				if strings.Contains(s.Message, w) {
					t.Errorf("message %q has %q", s.Message, w)
				}
			}
		})
	}
	// The condition of a dual-stack Service: True, reason KernelARP.
	ok, reason, _ := Condition([]AddrSummary{WithKernelARP(announced, []string{"b"}), {Addr: v6, Answered: true, Reason: Announced}})
	if !ok || reason != KernelARP {
		t.Fatalf("Condition = %v %s, want true KernelARP", ok, reason)
	}
}
