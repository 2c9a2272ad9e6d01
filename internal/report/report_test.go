package report

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func pool(name string, mut ...func(*heraldv1.LoadBalancerIPPool)) heraldv1.LoadBalancerIPPool {
	p := heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{Start: "192.168.10.75", Stop: "192.168.10.78"}}}}
	for _, m := range mut {
		m(&p)
	}
	return p
}

func counts(total, used, free string) func(*heraldv1.LoadBalancerIPPool) {
	return func(p *heraldv1.LoadBalancerIPPool) {
		p.Status.IPsTotal, p.Status.IPsUsed, p.Status.IPsAvailable = total, used, free
	}
}

func TestPools(t *testing.T) {
	cases := []struct {
		name      string
		pool      heraldv1.LoadBalancerIPPool
		want      Pool
		wantProbs []string // reasons
	}{
		{
			name: "IPv4 range, counted",
			pool: pool("first", counts("4", "1", "3")),
			want: Pool{Name: "first", Blocks: []string{"192.168.10.75-192.168.10.78"}, Family: "IPv4", Size: "4", Used: "1", Free: "3", UsePercent: ptr(25.0)},
		},
		{
			name: "not counted yet: no percent, no problem",
			pool: pool("new"),
			want: Pool{Name: "new", Blocks: []string{"192.168.10.75-192.168.10.78"}, Family: "IPv4"},
		},
		{
			name: "IPv6 CIDR with a huge size, a single start, selector, disabled",
			pool: pool("six", counts("18446744073709551616", "2", "18446744073709551614"), func(p *heraldv1.LoadBalancerIPPool) {
				p.Spec.Blocks = []heraldv1.IPBlock{{CIDR: "2001:db8:10::/64"}, {Start: "2001:db8:20::1"}}
				p.Spec.Disabled = true
				p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}
			}),
			want: Pool{Name: "six", Blocks: []string{"2001:db8:10::/64", "2001:db8:20::1"}, Family: "IPv6", Size: "18446744073709551616", Used: "2",
				Free: "18446744073709551614", UsePercent: ptr(2.0 / 18446744073709551616 * 100), Disabled: true, Selector: "tier=web"},
		},
		{
			name: "dual-stack",
			pool: pool("dual", func(p *heraldv1.LoadBalancerIPPool) {
				p.Spec.Blocks = append(p.Spec.Blocks, heraldv1.IPBlock{CIDR: "fd00:10::/120"})
			}),
			want: Pool{Name: "dual", Blocks: []string{"192.168.10.75-192.168.10.78", "fd00:10::/120"}, Family: "IPv4+IPv6"},
		},
		{
			name: "an address in use by a foreign host and an overlap",
			pool: pool("busy", counts("4", "0", "3"), func(p *heraldv1.LoadBalancerIPPool) {
				p.Status.ExcludedAddresses = []heraldv1.ExcludedAddress{{Address: "192.168.10.77", MAC: "02:00:00:00:00:77", Node: "node1", Interface: "eth0", Since: metav1.NewTime(t0)}}
				p.Status.Conditions = []metav1.Condition{
					{Type: heraldv1.PoolConflictCondition, Status: metav1.ConditionTrue, Reason: "Overlap", Message: "overlaps pool first"},
					{Type: heraldv1.IPsAvailableCondition, Status: metav1.ConditionTrue, Reason: "FreeAddresses", Message: "3"},
				}
			}),
			want: Pool{Name: "busy", Blocks: []string{"192.168.10.75-192.168.10.78"}, Family: "IPv4", Size: "4", Used: "0", Free: "3", UsePercent: ptr(0.0),
				Excluded: []ExcludedAddress{{Address: "192.168.10.77", MAC: "02:00:00:00:00:77", Node: "node1", Interface: "eth0", Since: t0}},
				Conflict: "Overlap: overlaps pool first"},
			wantProbs: []string{"AddressInUse", "PoolConflict"},
		},
		{
			name: "PoolConflict False is no conflict",
			pool: pool("calm", func(p *heraldv1.LoadBalancerIPPool) {
				p.Status.Conditions = []metav1.Condition{{Type: heraldv1.PoolConflictCondition, Status: metav1.ConditionFalse, Reason: "NoConflict"}}
			}),
			want: Pool{Name: "calm", Blocks: []string{"192.168.10.75-192.168.10.78"}, Family: "IPv4"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Pools(Input{Pools: []heraldv1.LoadBalancerIPPool{c.pool}})
			if diff := cmp.Diff([]Pool{c.want}, r.Pools); diff != "" {
				t.Errorf("pools (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.wantProbs, reasons(r.Problems)); diff != "" {
				t.Errorf("problems (-want +got):\n%s\n%v", diff, r.Problems)
			}
		})
	}
}

func reasons(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Reason)
	}
	return out
}

func TestPoolsSortedByName(t *testing.T) {
	r := Pools(Input{Pools: []heraldv1.LoadBalancerIPPool{pool("b"), pool("a"), pool("c")}})
	var names []string
	for _, p := range r.Pools {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" {
		t.Error(diff)
	}
}

func svc(ns, name string, mut ...func(*corev1.Service)) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	for _, m := range mut {
		m(&s)
	}
	return s
}

func ingress(ips ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func cond(typ string, st metav1.ConditionStatus, reason, msg string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg})
	}
}

func allocated(s *corev1.Service) {
	cond(kube.ConditionIPAllocated, metav1.ConditionTrue, "Allocated", "allocated")(s)
}

func announced(s *corev1.Service) {
	cond(kube.ConditionAnnounced, metav1.ConditionTrue, "Announced", "announced by node1")(s)
}

func policy(name string, mut ...func(*heraldv1.L2AnnouncementPolicy)) heraldv1.L2AnnouncementPolicy {
	p := heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mut {
		m(&p)
	}
	return p
}

// report makes a HeraldNode report announcing addrs on eth0 since t.
func hnode(name string, mut ...func(*heraldv1.HeraldNode)) heraldv1.HeraldNode {
	hn := heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: heraldv1.HeraldNodeStatus{
		AgentVersion: "v0.3.0", KeyFingerprints: []string{"3f2a9c1e"},
		Interfaces: []heraldv1.NodeInterface{{Name: "eth0", MAC: "02:00:00:00:00:0" + name[len(name)-1:], Up: true, Broadcast: true, LAN: true}},
		Segments:   []heraldv1.Segment{{Interface: "eth0"}},
	}}
	for _, m := range mut {
		m(&hn)
	}
	return hn
}

func announces(addr string, since time.Time) func(*heraldv1.HeraldNode) {
	return func(hn *heraldv1.HeraldNode) {
		hn.Status.Announcements = append(hn.Status.Announcements, heraldv1.Announcement{Address: addr, Interfaces: []string{"eth0"}, Since: metav1.NewTime(since)})
	}
}

func hears(nodes ...string) func(*heraldv1.HeraldNode) {
	return func(hn *heraldv1.HeraldNode) {
		for _, n := range nodes {
			hn.Status.Segments[0].Peers = append(hn.Status.Segments[0].Peers, heraldv1.SegmentPeer{Node: n})
		}
	}
}

func node(name string, ready bool, labels map[string]string) corev1.Node {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func TestServices(t *testing.T) {
	pools := []heraldv1.LoadBalancerIPPool{pool("first"), pool("six", func(p *heraldv1.LoadBalancerIPPool) {
		p.Spec.Blocks = []heraldv1.IPBlock{{CIDR: "fd00:10::/120"}}
	})}
	policies := []heraldv1.L2AnnouncementPolicy{
		policy("default"),
		policy("web-only", func(p *heraldv1.L2AnnouncementPolicy) {
			p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}
		}),
		policy("external-only", func(p *heraldv1.L2AnnouncementPolicy) { p.Spec.LoadBalancerIPs = ptr(false) }),
		policy("broken", func(p *heraldv1.L2AnnouncementPolicy) { p.Spec.Interfaces = []string{"("} }),
	}
	reports := []heraldv1.HeraldNode{
		hnode("node1", announces("192.168.10.75", t0), announces("fd00:10::5", t0), hears("node2")),
		hnode("node2", hears("node1")),
	}
	nodes := []corev1.Node{node("node1", true, nil), node("node2", true, nil)}
	cases := []struct {
		name         string
		svc          corev1.Service
		defaultClass *bool // nil: true
		want         *Service
	}{
		{
			name: "announced, dual-stack, labels pick a second policy, sharing key",
			svc: svc("web", "nginx", ingress("192.168.10.75", "fd00:10::5"), allocated, announced, func(s *corev1.Service) {
				s.Labels = map[string]string{"tier": "web"}
				s.Annotations = map[string]string{"herald.dev/sharing-key": "front"}
			}),
			want: &Service{Namespace: "web", Name: "nginx",
				Addresses: []ServiceAddress{
					{Address: "192.168.10.75", Pool: "first", Announcers: []Announcer{{Node: "node1", Interfaces: []string{"eth0"}}}},
					{Address: "fd00:10::5", Pool: "six", Announcers: []Announcer{{Node: "node1", Interfaces: []string{"eth0"}}}},
				},
				Policies: []string{"default", "web-only"}, SharingKey: "front", State: StateAnnounced, Reason: "Announced", Message: "announced by node1"},
		},
		{
			name: "out of IPs",
			svc:  svc("web", "web5", cond(kube.ConditionIPAllocated, metav1.ConditionFalse, "OutOfIPs", `pool "first" has no free IPv4 address`)),
			want: &Service{Namespace: "web", Name: "web5", Addresses: []ServiceAddress{}, Policies: []string{"default"},
				State: StatePending, Reason: "OutOfIPs", Message: `pool "first" has no free IPv4 address`, Problem: true},
		},
		{
			name: "nothing written by the controller",
			svc:  svc("web", "fresh"),
			want: &Service{Namespace: "web", Name: "fresh", Addresses: []ServiceAddress{}, Policies: []string{"default"},
				State: StatePending, Reason: ReasonNoStatus, Message: "the controller has written no herald.dev condition (is it running? see herald status)", Problem: true},
		},
		{
			name: "allocated, Announced not written yet",
			svc:  svc("web", "half", ingress("192.168.10.76"), allocated),
			want: &Service{Namespace: "web", Name: "half", Addresses: []ServiceAddress{{Address: "192.168.10.76", Pool: "first", Announcers: []Announcer{}}},
				Policies: []string{"default"}, State: StatePending, Reason: ReasonNoStatus,
				Message: "addresses allocated; the controller has not written herald.dev/Announced yet", Problem: true},
		},
		{
			name: "unannounced with the condition's reason",
			svc: svc("web", "nopol", ingress("192.168.10.77"), allocated,
				cond(kube.ConditionAnnounced, metav1.ConditionFalse, "NoMatchingInterface", "192.168.10.77: node node1 has no interface matching ^eth9$")),
			want: &Service{Namespace: "web", Name: "nopol", Addresses: []ServiceAddress{{Address: "192.168.10.77", Pool: "first", Announcers: []Announcer{}}},
				Policies: []string{"default"}, State: StatePending, Reason: "NoMatchingInterface",
				Message: "192.168.10.77: node node1 has no interface matching ^eth9$", Problem: true},
		},
		{
			name: "announced with a key mismatch is a problem",
			svc: svc("web", "km", ingress("192.168.10.75"), allocated,
				cond(kube.ConditionAnnounced, metav1.ConditionTrue, "KeyMismatch", "two MACs answer")),
			want: &Service{Namespace: "web", Name: "km", Addresses: []ServiceAddress{{Address: "192.168.10.75", Pool: "first", Announcers: []Announcer{{Node: "node1", Interfaces: []string{"eth0"}}}}},
				Policies: []string{"default"}, State: StateAnnounced, Reason: "KeyMismatch", Message: "two MACs answer", Problem: true},
		},
		{
			name: "an address outside every pool, an unparsable one skipped",
			svc:  svc("web", "out", ingress("10.0.0.1", "not-an-ip"), allocated, announced),
			want: &Service{Namespace: "web", Name: "out", Addresses: []ServiceAddress{{Address: "10.0.0.1", Announcers: []Announcer{}}},
				Policies: []string{"default"}, State: StateAnnounced, Reason: "Announced", Message: "announced by node1"},
		},
		{
			name: "Herald's class",
			svc:  svc("web", "classy", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr(kube.Class) }, allocated, announced),
			want: &Service{Namespace: "web", Name: "classy", Class: kube.Class, Addresses: []ServiceAddress{}, Policies: []string{"default"},
				State: StateAnnounced, Reason: "Announced", Message: "announced by node1"},
		},
		{
			name: "another class is not Herald's",
			svc:  svc("web", "metal", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("metallb.io/l2") }),
		},
		{
			name: "not a LoadBalancer",
			svc:  svc("web", "cip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
		},
		{
			name:         "no class without the default class",
			svc:          svc("web", "plain"),
			defaultClass: ptr(false),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dc := c.defaultClass == nil || *c.defaultClass
			r := Services(Input{DefaultClass: dc, Pools: pools, Policies: policies, Reports: reports, Nodes: nodes, Services: []corev1.Service{c.svc}})
			var want []Service
			var wantProbs []Problem
			if c.want != nil {
				want = []Service{*c.want}
				if c.want.Problem {
					wantProbs = []Problem{{Kind: "Service", Name: c.want.Namespace + "/" + c.want.Name, Reason: c.want.Reason, Message: c.want.Message}}
				}
			}
			if diff := cmp.Diff(want, r.Services, cmpEmpty); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantProbs, r.Problems, cmpEmpty); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpEmpty treats nil and empty slices alike at the top level.
var cmpEmpty = cmp.FilterValues(func(x, y any) bool {
	return isEmptySlice(x) && isEmptySlice(y)
}, cmp.Comparer(func(_, _ any) bool { return true }))

func isEmptySlice(v any) bool {
	switch s := v.(type) {
	case []Service:
		return len(s) == 0
	case []Problem:
		return len(s) == 0
	}
	return false
}

// The announcer column follows the controller's staleness rules.
func TestServiceAnnouncers(t *testing.T) {
	s := svc("web", "nginx", ingress("192.168.10.75"), allocated, announced)
	cases := []struct {
		name    string
		reports []heraldv1.HeraldNode
		nodes   []corev1.Node
		want    []string
	}{
		{"one answerer", []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.75", t0))}, nil, []string{"node1"}},
		{"none", []heraldv1.HeraldNode{hnode("node1")}, nil, nil},
		{
			name: "a later answerer that does not hear the first: the first is gone",
			reports: []heraldv1.HeraldNode{
				hnode("node1", announces("192.168.10.75", t0)),
				hnode("node2", announces("192.168.10.75", t0.Add(time.Second))),
			},
			want: []string{"node2"},
		},
		{
			name: "a later answerer that hears the first: both answer",
			reports: []heraldv1.HeraldNode{
				hnode("node1", announces("192.168.10.75", t0)),
				hnode("node2", announces("192.168.10.75", t0.Add(time.Second)), hears("node1")),
			},
			want: []string{"node1", "node2"},
		},
		{
			name:    "a NotReady node's report does not count",
			reports: []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.75", t0))},
			nodes:   []corev1.Node{node("node1", false, nil)},
			want:    nil,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Services(Input{DefaultClass: true, Reports: c.reports, Nodes: c.nodes, Services: []corev1.Service{s}})
			var got []string
			for _, a := range r.Services[0].Addresses[0].Announcers {
				got = append(got, a.Node)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("announcers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServicesSorted(t *testing.T) {
	r := Services(Input{DefaultClass: true, Services: []corev1.Service{svc("b", "x"), svc("a", "z"), svc("a", "y")}})
	var got []string
	for _, s := range r.Services {
		got = append(got, s.Namespace+"/"+s.Name)
	}
	if diff := cmp.Diff([]string{"a/y", "a/z", "b/x"}, got); diff != "" {
		t.Error(diff)
	}
	var probs []string
	for _, p := range r.Problems {
		probs = append(probs, p.Name)
	}
	if diff := cmp.Diff([]string{"a/y", "a/z", "b/x"}, probs); diff != "" {
		t.Error(diff)
	}
}

func TestAnnouncements(t *testing.T) {
	svcs := []corev1.Service{
		svc("web", "nginx", ingress("192.168.10.75")),
		svc("web", "sharer", ingress("192.168.10.75")),
		svc("other", "metal", ingress("192.168.10.75"), func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("metallb.io/l2") }),
	}
	cases := []struct {
		name      string
		reports   []heraldv1.HeraldNode
		nodes     []corev1.Node
		want      []AnnouncementRow
		wantProbs []string
	}{
		{
			name: "one node, peers heard, MAC from the report, Services holding it",
			reports: []heraldv1.HeraldNode{
				hnode("node1", announces("192.168.10.75", t0), hears("node2", "cp1")),
				hnode("node2", hears("node1")),
			},
			want: []AnnouncementRow{{Address: "192.168.10.75", Node: "node1", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:01"},
				Since: t0, Peers: []string{"node2", "cp1"}, Services: []string{"web/nginx", "web/sharer"}}},
		},
		{
			name: "no MAC in the report, an address no Service holds, sorted by address",
			reports: []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.80", t0), announces("192.168.10.75", t0), func(hn *heraldv1.HeraldNode) {
				hn.Status.Interfaces[0].MAC = ""
			})},
			want: []AnnouncementRow{
				{Address: "192.168.10.75", Node: "node1", Interfaces: []string{"eth0"}, Since: t0, Peers: []string{}, Services: []string{"web/nginx", "web/sharer"}},
				{Address: "192.168.10.80", Node: "node1", Interfaces: []string{"eth0"}, Since: t0, Peers: []string{}, Services: []string{}},
			},
		},
		{
			name: "a stale report is shown and marked, and is no second answerer",
			reports: []heraldv1.HeraldNode{
				hnode("node1", announces("192.168.10.75", t0)),
				hnode("node2", announces("192.168.10.75", t0.Add(time.Minute))),
			},
			want: []AnnouncementRow{
				{Address: "192.168.10.75", Node: "node1", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:01"}, Since: t0, Peers: []string{}, Services: []string{"web/nginx", "web/sharer"}, Stale: true},
				{Address: "192.168.10.75", Node: "node2", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:02"}, Since: t0.Add(time.Minute), Peers: []string{}, Services: []string{"web/nginx", "web/sharer"}},
			},
		},
		{
			name: "two live answerers with a key mismatch",
			reports: []heraldv1.HeraldNode{
				hnode("node1", announces("192.168.10.75", t0), func(hn *heraldv1.HeraldNode) {
					hn.Status.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "node2", KeyFingerprints: []string{"aaaa"}}}
				}),
				hnode("node2", announces("192.168.10.75", t0.Add(time.Minute)), func(hn *heraldv1.HeraldNode) {
					hn.Status.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "node1"}}
				}),
			},
			want: []AnnouncementRow{
				{Address: "192.168.10.75", Node: "node1", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:01"}, Since: t0, Peers: []string{}, KeyMismatches: []string{"node2"}, Services: []string{"web/nginx", "web/sharer"}},
				{Address: "192.168.10.75", Node: "node2", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:02"}, Since: t0.Add(time.Minute), Peers: []string{}, KeyMismatches: []string{"node1"}, Services: []string{"web/nginx", "web/sharer"}},
			},
			wantProbs: []string{"KeyMismatch", "KeyMismatch"},
		},
		{
			name: "two live answerers that hear each other: a hand-over, no problem",
			reports: []heraldv1.HeraldNode{
				hnode("node1", announces("192.168.10.75", t0), hears("node2")),
				hnode("node2", announces("192.168.10.75", t0.Add(time.Minute)), hears("node1")),
			},
			want: []AnnouncementRow{
				{Address: "192.168.10.75", Node: "node1", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:01"}, Since: t0, Peers: []string{"node2"}, Services: []string{"web/nginx", "web/sharer"}},
				{Address: "192.168.10.75", Node: "node2", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:02"}, Since: t0.Add(time.Minute), Peers: []string{"node1"}, Services: []string{"web/nginx", "web/sharer"}},
			},
		},
		{
			name: "a foreign host on an announced address",
			reports: []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.75", t0), func(hn *heraldv1.HeraldNode) {
				hn.Status.Conflicts = []heraldv1.AddressConflict{{Address: "192.168.10.75", MAC: "02:00:00:00:00:99", Interface: "eth0", Phase: heraldv1.ConflictAnnounced, Since: metav1.NewTime(t0)}}
			})},
			want: []AnnouncementRow{{Address: "192.168.10.75", Node: "node1", Interfaces: []string{"eth0"}, MACs: []string{"02:00:00:00:00:01"}, Since: t0,
				Peers: []string{}, Services: []string{"web/nginx", "web/sharer"}, Conflict: "MAC 02:00:00:00:00:99 seen by node node1 on eth0 (Announced)"}},
			wantProbs: []string{"AddressConflict"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Announcements(Input{DefaultClass: true, Reports: c.reports, Nodes: c.nodes, Services: svcs})
			if diff := cmp.Diff(c.want, r.Announcements); diff != "" {
				t.Errorf("announcements (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.wantProbs, reasons(r.Problems)); diff != "" {
				t.Errorf("problems (-want +got):\n%s\n%v", diff, r.Problems)
			}
		})
	}
}

func lease(holder string, renewed time.Time) coordinationv1.Lease {
	return coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: "herald-controller"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr(holder), LeaseDurationSeconds: ptr(int32(15)), RenewTime: &metav1.MicroTime{Time: renewed}}}
}

func TestStatus(t *testing.T) {
	now := t0.Add(time.Hour)
	base := Input{Now: now, DefaultClass: true, LeaseNS: "herald-system", LeaseName: "herald-controller",
		Leases:   []coordinationv1.Lease{lease("herald-controller-7d9f_1234", now.Add(-2*time.Second))},
		Pools:    []heraldv1.LoadBalancerIPPool{pool("first", counts("4", "1", "3"))},
		Policies: []heraldv1.L2AnnouncementPolicy{policy("default")},
		Reports: []heraldv1.HeraldNode{
			hnode("node1", announces("192.168.10.75", t0), hears("node2")),
			hnode("node2", hears("node1")),
		},
		Nodes:    []corev1.Node{node("node1", true, nil), node("node2", true, nil)},
		Services: []corev1.Service{svc("web", "nginx", ingress("192.168.10.75"), allocated, announced)},
	}
	cases := []struct {
		name      string
		mut       func(*Input)
		check     func(*testing.T, StatusReport)
		wantProbs []string
	}{
		{
			name: "all well",
			check: func(t *testing.T, r StatusReport) {
				want := Controller{Namespace: "herald-system", Lease: "herald-controller", Leader: "herald-controller-7d9f_1234", Renewed: ptr(now.Add(-2 * time.Second))}
				if diff := cmp.Diff(want, r.Controller); diff != "" {
					t.Errorf("controller (-want +got):\n%s", diff)
				}
				if len(r.Agents) != 2 || r.Agents[0].Node != "node1" || r.Agents[0].Addresses != 1 || r.Agents[1].Addresses != 0 {
					t.Errorf("agents: %+v", r.Agents)
				}
				wantSeg := []AgentSegment{{Interface: "eth0", Peers: []string{"node2"}}}
				if diff := cmp.Diff(wantSeg, r.Agents[0].Segments); diff != "" {
					t.Errorf("segments (-want +got):\n%s", diff)
				}
				if r.Serving != 1 || r.Announced != 1 || len(r.Services) != 0 || len(r.Pools) != 1 {
					t.Errorf("serving %d, announced %d, services %v, pools %v", r.Serving, r.Announced, r.Services, r.Pools)
				}
			},
		},
		{
			name:      "no Lease",
			mut:       func(in *Input) { in.Leases = nil },
			check:     func(t *testing.T, r StatusReport) { checkLeader(t, r, "", false) },
			wantProbs: []string{"NoLeader"},
		},
		{
			name:      "a Lease without a holder",
			mut:       func(in *Input) { in.Leases[0].Spec.HolderIdentity = ptr("") },
			check:     func(t *testing.T, r StatusReport) { checkLeader(t, r, "", false) },
			wantProbs: []string{"NoLeader"},
		},
		{
			name:      "an expired Lease",
			mut:       func(in *Input) { in.Leases[0].Spec.RenewTime = &metav1.MicroTime{Time: now.Add(-16 * time.Second)} },
			check:     func(t *testing.T, r StatusReport) { checkLeader(t, r, "herald-controller-7d9f_1234", true) },
			wantProbs: []string{"NoLeader"},
		},
		{
			name: "a node a policy selects without an agent; an excluded one and an unselected one are fine",
			mut: func(in *Input) {
				in.Policies[0].Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"lan": "yes"}}
				in.Nodes[0].Labels = map[string]string{"lan": "yes"}
				in.Nodes = append(in.Nodes, node("node3", true, map[string]string{"lan": "yes"}),
					node("cp1", true, map[string]string{"lan": "yes", kube.ExcludeFromLBLabel: ""}), node("node4", true, nil))
			},
			check: func(t *testing.T, r StatusReport) {
				var missing []string
				for _, a := range r.Agents {
					if a.Missing {
						missing = append(missing, a.Node)
					}
				}
				if diff := cmp.Diff([]string{"node3"}, missing); diff != "" {
					t.Errorf("missing agents (-want +got):\n%s", diff)
				}
				if !strings.Contains(r.Problems[0].Message, "policy default selects node node3") {
					t.Errorf("message: %s", r.Problems[0].Message)
				}
			},
			wantProbs: []string{"NoAgent"},
		},
		{
			name: "no heartbeat key, a key mismatch, a pending Service, a pool conflict",
			mut: func(in *Input) {
				in.Reports[1].Status.KeyError = "Secret herald-system/herald-heartbeat-key has no key-N entry"
				in.Reports[0].Status.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "rogue", KeyFingerprints: []string{"ffff"}}}
				in.Services = append(in.Services, svc("web", "web5", cond(kube.ConditionIPAllocated, metav1.ConditionFalse, "OutOfIPs", "no free address")))
				in.Pools[0].Status.ExcludedAddresses = []heraldv1.ExcludedAddress{{Address: "192.168.10.78", MAC: "02:00:00:00:00:78", Node: "node1", Interface: "eth0"}}
			},
			check: func(t *testing.T, r StatusReport) {
				if len(r.Services) != 1 || r.Services[0].Name != "web5" || r.Serving != 2 || r.Announced != 1 {
					t.Errorf("services %+v serving %d announced %d", r.Services, r.Serving, r.Announced)
				}
			},
			wantProbs: []string{"NoHeartbeatKey", "AddressInUse", "KeyMismatch", "OutOfIPs"},
		},
		{
			name: "kube-proxy IPVS without strictARP on one node; with it on the other",
			mut: func(in *Input) {
				in.Reports[0].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "interface kube-ipvs0 exists", KernelARPInterfaces: []string{"eth0"}}
				in.Reports[1].Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "interface kube-ipvs0 exists"}
			},
			check: func(t *testing.T, r StatusReport) {
				if r.Agents[0].DataPlane == nil || r.Agents[1].DataPlane == nil || r.Agents[1].DataPlane.Mode != heraldv1.DataPlaneNone {
					t.Errorf("agents' data planes: %+v, %+v", r.Agents[0].DataPlane, r.Agents[1].DataPlane)
				}
				if p := r.Problems[0]; p.Name != "node1" || !strings.Contains(p.Message, "answers ARP on eth0") || !strings.Contains(p.Message, "strictARP: true") {
					t.Errorf("problem: %+v", p)
				}
			},
			wantProbs: []string{"KernelARP"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base
			in.Leases = append([]coordinationv1.Lease(nil), base.Leases...)
			in.Nodes = append([]corev1.Node(nil), base.Nodes...)
			in.Policies = []heraldv1.L2AnnouncementPolicy{policy("default")}
			in.Pools = []heraldv1.LoadBalancerIPPool{pool("first", counts("4", "1", "3"))}
			in.Reports = []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.75", t0), hears("node2")), hnode("node2", hears("node1"))}
			in.Services = append([]corev1.Service(nil), base.Services...)
			if len(in.Leases) > 0 {
				in.Leases[0] = *in.Leases[0].DeepCopy()
			}
			if c.mut != nil {
				c.mut(&in)
			}
			r := Status(in)
			if c.check != nil {
				c.check(t, r)
			}
			if diff := cmp.Diff(c.wantProbs, reasons(r.Problems)); diff != "" {
				t.Errorf("problems (-want +got):\n%s\n%v", diff, r.Problems)
			}
		})
	}
}

func checkLeader(t *testing.T, r StatusReport, leader string, expired bool) {
	t.Helper()
	if r.Controller.Leader != leader || r.Controller.Expired != expired {
		t.Errorf("controller %+v: want leader %q, expired %v", r.Controller, leader, expired)
	}
}

// The report time is the agent's last status write.
func TestReportTime(t *testing.T) {
	hn := hnode("node1")
	if reportTime(&hn) != nil {
		t.Error("a report without times has a report time")
	}
	hn.CreationTimestamp = metav1.NewTime(t0)
	if got := reportTime(&hn); got == nil || !got.Equal(t0) {
		t.Errorf("creation only: %v", got)
	}
	hn.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "herald-agent", Subresource: "status", Time: ptr(metav1.NewTime(t0.Add(2 * time.Minute)))},
		{Manager: "herald-agent", Subresource: "status", Time: ptr(metav1.NewTime(t0.Add(time.Minute)))},
		{Manager: "kubectl", Time: ptr(metav1.NewTime(t0.Add(time.Hour)))},
	}
	if got := reportTime(&hn); got == nil || !got.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("managed fields: %v", got)
	}
}

func TestPercentFormat(t *testing.T) {
	for _, c := range []struct {
		used, size, want string
	}{
		{"1", "4", "25%"}, {"0", "4", "0%"}, {"4", "4", "100%"}, {"1", "1000", "<1%"}, {"999", "1000", ">99%"},
		{"", "4", "-"}, {"1", "0", "-"}, {"1", "x", "-"},
	} {
		got := usePercent(percent(c.used, c.size))
		if got == "" {
			got = "-"
		}
		if got != c.want {
			t.Errorf("%s/%s: got %s, want %s", c.used, c.size, got, c.want)
		}
	}
}

func TestTables(t *testing.T) {
	now := t0.Add(5 * time.Minute)
	var b bytes.Buffer
	if err := WritePools(&b, Pools(Input{Pools: []heraldv1.LoadBalancerIPPool{pool("first", counts("4", "1", "3"), func(p *heraldv1.LoadBalancerIPPool) {
		p.Status.ExcludedAddresses = []heraldv1.ExcludedAddress{{Address: "192.168.10.78", MAC: "02:00:00:00:00:78"}}
	})}})); err != nil {
		t.Fatal(err)
	}
	want := `POOL    BLOCKS                        FAMILY   SIZE   USED   FREE   USE%   CONFLICT                                    SELECTOR
first   192.168.10.75-192.168.10.78   IPv4     4      1      3      25%    192.168.10.78 in use by 02:00:00:00:00:78   <all>
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("pools table (-want +got):\n%s", diff)
	}

	b.Reset()
	r := Services(Input{DefaultClass: true, Pools: []heraldv1.LoadBalancerIPPool{pool("first")}, Policies: []heraldv1.L2AnnouncementPolicy{policy("default")},
		Reports: []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.75", t0))},
		Services: []corev1.Service{
			svc("web", "nginx", ingress("192.168.10.75"), allocated, announced),
			svc("web", "web5", cond(kube.ConditionIPAllocated, metav1.ConditionFalse, "OutOfIPs", "none left")),
			svc("web", "km", ingress("192.168.10.75"), allocated, cond(kube.ConditionAnnounced, metav1.ConditionTrue, "KeyMismatch", "two")),
		}})
	if err := WriteServices(&b, r); err != nil {
		t.Fatal(err)
	}
	want = `NAMESPACE   SERVICE   IPS             POOL    POLICY    ANNOUNCER   INTERFACE   SHARING   STATE
web         km        192.168.10.75   first   default   node1       eth0        -         announced (KeyMismatch)
web         nginx     192.168.10.75   first   default   node1       eth0        -         announced
web         web5      -               -       default   -           -           -         pending: OutOfIPs
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("services table (-want +got):\n%s", diff)
	}

	// The MAC column is left out when no report has one.
	for _, mac := range []string{"02:00:00:00:00:01", ""} {
		b.Reset()
		hn := hnode("node1", announces("192.168.10.75", t0))
		hn.Status.Interfaces[0].MAC = mac
		if err := WriteAnnouncements(&b, Announcements(Input{Reports: []heraldv1.HeraldNode{hn}}), now); err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(b.String(), "\n")
		if got := strings.Contains(header, "MAC"); got != (mac != "") {
			t.Errorf("MAC %q: header %q", mac, header)
		}
		if !strings.Contains(b.String(), " 5m ") {
			t.Errorf("no age in\n%s", b.String())
		}
	}
}

func TestStatusTable(t *testing.T) {
	now := t0.Add(time.Hour)
	in := Input{Now: now, DefaultClass: true, LeaseNS: "herald-system", LeaseName: "herald-controller",
		Leases:   []coordinationv1.Lease{lease("c1", now.Add(-2*time.Minute))},
		Policies: []heraldv1.L2AnnouncementPolicy{policy("default")},
		Reports: []heraldv1.HeraldNode{hnode("node1", announces("192.168.10.75", t0), hears("node2"), func(hn *heraldv1.HeraldNode) {
			hn.CreationTimestamp = metav1.NewTime(t0)
			hn.Status.KeyError = "no key"
			hn.Status.Segments[0].KeyMismatches = []heraldv1.SegmentPeer{{Node: "rogue"}}
			hn.Status.DataPlane = &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNone, Evidence: "interface kube-ipvs0 exists", KernelARPInterfaces: []string{"eth0"}}
		})},
		Nodes:    []corev1.Node{node("node1", true, nil), node("node2", true, nil)},
		Services: []corev1.Service{svc("web", "web5", cond(kube.ConditionIPAllocated, metav1.ConditionFalse, "OutOfIPs", "none left"))},
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, Status(in), now); err != nil {
		t.Fatal(err)
	}
	want := `Controller: leader c1 EXPIRED, last renewed 2m ago (Lease herald-system/herald-controller)

Agents:
NODE    VERSION   KEYS       SEGMENTS   PEERS   ADDRESSES   DATAPLANE   REPORTED   NOTE
node1   v0.3.0    3f2a9c1e   eth0       node2   1           none        60m        no heartbeat key; key mismatch with rogue on eth0; kernel answers ARP on eth0 (IPVS without strictARP)
node2   -         -          -          -       -           -           -          no agent report

Pools:
POOL   BLOCKS   FAMILY   SIZE   USED   FREE   USE%   CONFLICT   SELECTOR

Services: 1 served, 0 announced, 1 not well
NAMESPACE   SERVICE   IPS   STATE
web         web5      -     pending: OutOfIPs
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("status (-want +got):\n%s\ngot:\n%s", diff, b.String())
	}
	in.Leases = nil
	b.Reset()
	if err := WriteStatus(&b, Status(in), now); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(b.String(), "\n"); first != "Controller: no leader (Lease herald-system/herald-controller)" {
		t.Errorf("without a Lease: %q", first)
	}
}

// TestBGPReports: herald status lists every node's BGP sessions and makes
// a session that is not established a problem; herald announcements lists
// the addresses advertised by BGP, per node, with the peers and Services.
func TestBGPReports(t *testing.T) {
	now := t0.Add(time.Hour)
	bgpStatus := func(state heraldv1.BGPSessionState, lastError string, advertised ...string) func(*heraldv1.HeraldNode) {
		return func(hn *heraldv1.HeraldNode) {
			b := &heraldv1.NodeBGP{RouterID: "192.168.10.215", Sessions: []heraldv1.BGPSession{{
				Peer: "tor", Address: "192.168.10.1", PeerASN: 64512, LocalASN: 64513, LocalAddress: "192.168.10.215",
				State: state, Since: metav1.NewTime(t0), RoutesAdvertised: int32(len(advertised)), BFDState: heraldv1.BFDUp, LastError: lastError,
			}}}
			for _, a := range advertised {
				b.Advertised = append(b.Advertised, heraldv1.BGPAdvertised{Address: a, Peers: []string{"tor"}})
			}
			hn.Status.BGP = b
		}
	}
	in := Input{Now: now, DefaultClass: true, LeaseNS: "herald-system", LeaseName: "herald-controller",
		Leases: []coordinationv1.Lease{lease("c1", now)},
		Reports: []heraldv1.HeraldNode{
			hnode("node1", bgpStatus(heraldv1.BGPSessionEstablished, "", "192.168.30.1")),
			hnode("node2", bgpStatus(heraldv1.BGPSessionActive, "notification-sent code 2(open) subcode 2(bad peer as)")),
			hnode("node3", bgpStatus(heraldv1.BGPSessionEstablished, "", "192.168.30.1")),
		},
		Nodes:    []corev1.Node{node("node1", true, nil), node("node2", true, nil), node("node3", false, nil)},
		Services: []corev1.Service{svc("default", "web", ingress("192.168.30.1"))},
	}
	st := Status(in)
	var down []string
	for _, p := range st.Problems {
		if p.Reason == "BGPSessionDown" {
			down = append(down, p.Name+": "+p.Message)
		}
	}
	if want := []string{"node2: session with BGPPeer tor (192.168.10.1, AS 64512) is Active: notification-sent code 2(open) subcode 2(bad peer as)"}; !slices.Equal(down, want) {
		t.Errorf("BGP problems %q, want %q", down, want)
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"BGP sessions:\nNODE    PEER   ADDRESS        AS      LOCAL                     STATE         SINCE   ROUTES   BFD   LAST ERROR\n",
		"node1   tor    192.168.10.1   64512   192.168.10.215 AS 64513   Established   60m     1        Up    -\n",
		"node2   tor    192.168.10.1   64512   192.168.10.215 AS 64513   Active        60m     0        Up    notification-sent code 2(open) subcode 2(bad peer as)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}

	an := Announcements(in)
	var rows []string
	for _, r := range an.Advertisements {
		rows = append(rows, fmt.Sprintf("%s %s %v %v %v", r.Address, r.Node, r.Peers, r.Services, r.Stale))
	}
	want := []string{
		"192.168.30.1 node1 [tor (192.168.10.1, AS 64512)] [default/web] false",
		"192.168.30.1 node3 [tor (192.168.10.1, AS 64512)] [default/web] true",
	}
	if !slices.Equal(rows, want) {
		t.Errorf("advertisements\n%q\nwant\n%q", rows, want)
	}
	b.Reset()
	if err := WriteAnnouncements(&b, an, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Advertised by BGP:\nADDRESS        NODE    PEERS                          SERVICES      NOTE\n"+
		"192.168.30.1   node1   tor (192.168.10.1, AS 64512)   default/web   -\n"+
		"192.168.30.1   node3   tor (192.168.10.1, AS 64512)   default/web   stale report (node not Ready)\n") {
		t.Errorf("announcements table:\n%s", b.String())
	}
}
