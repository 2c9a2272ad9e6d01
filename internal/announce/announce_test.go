package announce

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// labelsEq selects Services whose labels contain every pair.
type labelsEq map[string]string

func (l labelsEq) Matches(labels map[string]string) bool {
	for k, v := range l {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func res(pats ...string) []*regexp.Regexp {
	out := make([]*regexp.Regexp, len(pats))
	for i, p := range pats {
		out[i] = regexp.MustCompile(p)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

var nodeIfaces = []Interface{
	{Name: "lo", Up: true, Loopback: true},
	{Name: "eth0", Up: true, Broadcast: true, LAN: true},
	{Name: "eth1", Up: false, Broadcast: true},
	{Name: "veth12ab", Up: true, Broadcast: true, Enslaved: true},
	{Name: "wg0", Up: true},
}

func lbPolicy(name string, mutate ...func(*Policy)) Policy {
	p := Policy{Name: name, SelectsNode: true, LoadBalancerIPs: true}
	for _, m := range mutate {
		m(&p)
	}
	return p
}

func svc(key, ip string, mutate ...func(*Service)) Service {
	s := Service{Key: key, Labels: map[string]string{"name": key}, LoadBalancerIPs: addrs(ip)}
	for _, m := range mutate {
		m(&s)
	}
	return s
}

func TestCompute(t *testing.T) {
	cases := []struct {
		name     string
		ifaces   []Interface
		policies []Policy
		services []Service
		// want is the reason per address and, when eligible, the
		// interfaces joined by ",".
		want     map[string]string
		problems []string // policy names with a per-node problem
		msgHas   map[string]string
		excluded bool
	}{
		{
			name:     "default interfaces: up, broadcast, not enslaved, not loopback",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("all")},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "Eligible eth0"},
		},
		{
			name: "default interfaces: never a Pod bridge, a Pod veth or a tunnel",
			ifaces: []Interface{
				{Name: "cni0", Up: true, Broadcast: true},
				{Name: "cilium_host", Up: true, Broadcast: true},
				{Name: "lxc1234", Up: true, Broadcast: true},
				{Name: "eth0", Up: true, Broadcast: true, LAN: true},
				{Name: "flannel.1", Up: true, Broadcast: true},
			},
			policies: []Policy{lbPolicy("all")},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "Eligible eth0"},
		},
		{
			name:     "default interfaces: the node's addresses on a bridge make the bridge the LAN",
			ifaces:   []Interface{{Name: "br0", Up: true, Broadcast: true, LAN: true}, {Name: "eth0", Up: true, Broadcast: true, Enslaved: true}},
			policies: []Policy{lbPolicy("all")},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "Eligible br0"},
		},
		{
			name:     "default interfaces: no interface carries a node address",
			ifaces:   []Interface{{Name: "cni0", Up: true, Broadcast: true}, {Name: "eth0", Up: true, Broadcast: true}},
			policies: []Policy{lbPolicy("all")},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NoMatchingInterface"},
			problems: []string{"all"},
			msgHas:   map[string]string{"192.168.10.75": "InternalIP/ExternalIP"},
		},
		{
			name:     "default interfaces: a LAN interface that is down",
			ifaces:   []Interface{{Name: "eth0", Up: false, Broadcast: true, LAN: true}},
			policies: []Policy{lbPolicy("all")},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NoMatchingInterface"},
			problems: []string{"all"},
			msgHas:   map[string]string{"192.168.10.75": "eth0 (LAN, down)"},
		},
		{
			name:     "a regex may ask for a non-LAN interface; LAN interfaces are listed first",
			ifaces:   []Interface{{Name: "cni0", Up: true, Broadcast: true}, {Name: "eth0", Up: true, Broadcast: true, LAN: true}},
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.Interfaces = res("^cni0$", "^eth0$") })},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "Eligible eth0,cni0"},
		},
		{
			name:     "excluded by the node label: nothing is eligible, whatever the policies",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("all")},
			services: []Service{svc("ns/a", "192.168.10.75"), svc("ns/b", "192.168.10.76", func(s *Service) { s.ExternalIPs = addrs("192.168.10.90") })},
			excluded: true,
			want:     map[string]string{"192.168.10.75": "ExcludedByLabel", "192.168.10.76": "ExcludedByLabel", "192.168.10.90": "ExcludedByLabel"},
			msgHas:   map[string]string{"192.168.10.75": "Talos"},
		},
		{
			name:     "regexes are OR-ed and only up interfaces count",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.Interfaces = res("^eth1$", "^wg") })},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "Eligible wg0"},
		},
		{
			name:     "no interface matches: reason, message with the node's interfaces, policy problem",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.Interfaces = res("^enp0s1$") })},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NoMatchingInterface"},
			problems: []string{"p"},
			msgHas:   map[string]string{"192.168.10.75": "eth1 (down)"},
		},
		{
			name:     "no policy at all",
			ifaces:   nodeIfaces,
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NoPolicy"},
			msgHas:   map[string]string{"192.168.10.75": "no L2AnnouncementPolicy selects ns/a"},
		},
		{
			name:     "service selector does not match",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.Services = labelsEq{"name": "other"} })},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NoPolicy"},
		},
		{
			name:     "policy selects the service but not this node",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.SelectsNode = false })},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NodeNotSelected"},
		},
		{
			name:     "policy not selecting this node raises no per-node problem",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.SelectsNode = false; p.Interfaces = res("^nope$") })},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NodeNotSelected"},
		},
		{
			name:     "loadBalancerIPs off: LB addresses not announced",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p", func(p *Policy) { p.LoadBalancerIPs = false; p.ExternalIPs = true })},
			services: []Service{svc("ns/a", "192.168.10.75", func(s *Service) { s.ExternalIPs = addrs("192.168.10.90") })},
			want:     map[string]string{"192.168.10.75": "NoPolicy", "192.168.10.90": "Eligible eth0"},
		},
		{
			name:     "external IPs need externalIPs: true",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p")},
			services: []Service{svc("ns/a", "192.168.10.75", func(s *Service) { s.ExternalIPs = addrs("192.168.10.90") })},
			want:     map[string]string{"192.168.10.75": "Eligible eth0", "192.168.10.90": "NoPolicy"},
		},
		{
			name:     "Local without a local endpoint",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p")},
			services: []Service{svc("ns/a", "192.168.10.75", func(s *Service) { s.TrafficPolicyLocal = true })},
			want:     map[string]string{"192.168.10.75": "NoLocalEndpoints"},
		},
		{
			name:     "Local with a local endpoint",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p")},
			services: []Service{svc("ns/a", "192.168.10.75", func(s *Service) { s.TrafficPolicyLocal = true; s.LocalReadyEndpoint = true })},
			want:     map[string]string{"192.168.10.75": "Eligible eth0"},
		},
		{
			name:   "shared address: one policy must select every sharer",
			ifaces: nodeIfaces,
			policies: []Policy{
				lbPolicy("only-a", func(p *Policy) { p.Services = labelsEq{"name": "ns/a"} }),
				lbPolicy("only-b", func(p *Policy) { p.Services = labelsEq{"name": "ns/b"} }),
			},
			services: []Service{svc("ns/a", "192.168.10.75"), svc("ns/b", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "SharedNotCovered"},
		},
		{
			name:   "shared address covered by one policy; interfaces of all covering policies",
			ifaces: nodeIfaces,
			policies: []Policy{
				lbPolicy("both-eth", func(p *Policy) { p.Interfaces = res("^eth") }),
				lbPolicy("both-wg", func(p *Policy) { p.Interfaces = res("^wg") }),
				lbPolicy("only-a", func(p *Policy) { p.Services = labelsEq{"name": "ns/a"}; p.Interfaces = res("^lo$") }),
			},
			services: []Service{svc("ns/a", "192.168.10.75"), svc("ns/b", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "Eligible eth0,wg0"},
			problems: []string{"only-a"}, // a loopback never announces
		},
		{
			name:     "shared address with one Local sharer lacking endpoints",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p")},
			services: []Service{
				svc("ns/a", "192.168.10.75", func(s *Service) { s.TrafficPolicyLocal = true; s.LocalReadyEndpoint = true }),
				svc("ns/b", "192.168.10.75", func(s *Service) { s.TrafficPolicyLocal = true }),
			},
			want: map[string]string{"192.168.10.75": "NoLocalEndpoints"},
		},
		{
			name:     "IPv6 and dual stack",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p")},
			services: []Service{{Key: "ns/a", LoadBalancerIPs: addrs("192.168.10.75", "fd00:10::75")}},
			want:     map[string]string{"192.168.10.75": "Eligible eth0", "fd00:10::75": "Eligible eth0"},
		},
		{
			name:     "no interfaces at all",
			policies: []Policy{lbPolicy("p")},
			services: []Service{svc("ns/a", "192.168.10.75")},
			want:     map[string]string{"192.168.10.75": "NoMatchingInterface"},
			problems: []string{"p"},
			msgHas:   map[string]string{"192.168.10.75": "it has no interfaces"},
		},
		{
			name:     "invalid and repeated addresses are ignored",
			ifaces:   nodeIfaces,
			policies: []Policy{lbPolicy("p")},
			services: []Service{{Key: "ns/a", LoadBalancerIPs: []netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.1")}}},
			want:     map[string]string{"10.0.0.1": "Eligible eth0"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := Compute(Node{Name: "cp1", ExcludedByLabel: c.excluded}, c.ifaces, c.policies, c.services)
			got := map[string]string{}
			for _, st := range plan.Addrs {
				v := string(st.Reason)
				if st.Reason == Eligible {
					v += " " + strings.Join(st.Interfaces, ",")
				}
				got[st.Addr.String()] = v
				if want, ok := c.msgHas[st.Addr.String()]; ok && !strings.Contains(st.Message, want) {
					t.Errorf("%s message %q does not contain %q", st.Addr, st.Message, want)
				}
				if st.Message == "" {
					t.Errorf("%s has no message", st.Addr)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("verdicts = %v, want %v", got, c.want)
			}
			var problems []string
			for _, p := range plan.Problems {
				problems = append(problems, p.Policy)
				if !strings.Contains(p.Message, "cp1") {
					t.Errorf("problem %q should name the node", p.Message)
				}
			}
			if !reflect.DeepEqual(problems, c.problems) {
				t.Errorf("problems = %v, want %v", problems, c.problems)
			}
			// Eligible is exactly the eligible verdicts, by interface.
			for name, as := range plan.Eligible {
				for _, a := range as {
					if !strings.Contains(got[a.String()], name) {
						t.Errorf("Eligible[%s] has %s but its verdict is %q", name, a, got[a.String()])
					}
				}
			}
		})
	}
}

// The plan does not depend on the order of its inputs.
func TestComputeIsOrderIndependent(t *testing.T) {
	policies := []Policy{lbPolicy("a", func(p *Policy) { p.Interfaces = res("^eth") }), lbPolicy("b", func(p *Policy) { p.Interfaces = res("^wg") })}
	services := []Service{svc("ns/a", "10.0.0.2"), svc("ns/b", "10.0.0.1"), svc("ns/c", "10.0.0.1")}
	p1 := Compute(Node{Name: "n"}, nodeIfaces, policies, services)
	rev := func(s []Service) []Service {
		out := append([]Service(nil), s...)
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out
	}
	p2 := Compute(Node{Name: "n"}, []Interface{nodeIfaces[4], nodeIfaces[3], nodeIfaces[2], nodeIfaces[1], nodeIfaces[0]},
		[]Policy{policies[1], policies[0]}, rev(services))
	if !reflect.DeepEqual(p1.Eligible, p2.Eligible) || !reflect.DeepEqual(p1.Addrs, p2.Addrs) {
		t.Errorf("plans differ:\n%+v\n%+v", p1, p2)
	}
}

// Messages list at most a dozen interfaces, LAN first, and count the rest:
// a node with a hundred Pod veths still gets a readable condition.
func TestDescribeInterfacesBounded(t *testing.T) {
	ifaces := []Interface{{Name: "zz-lan", Up: true, Broadcast: true, LAN: true}}
	for i := range 40 {
		ifaces = append(ifaces, Interface{Name: fmt.Sprintf("veth%02d", i), Up: true, Broadcast: true, Enslaved: true})
	}
	got := DescribeInterfaces(ifaces)
	if !strings.HasPrefix(got, "zz-lan (LAN)") {
		t.Errorf("LAN interface not first: %q", got)
	}
	if !strings.HasSuffix(got, "and 29 more") {
		t.Errorf("rest not counted: %q", got)
	}
	if n := strings.Count(got, "veth"); n != 11 {
		t.Errorf("%d veths listed, want 11: %q", n, got)
	}
}

// Deciding one address at a time with a Planner gives Compute's verdicts;
// without messages, no message is formatted.
func TestPlannerMatchesCompute(t *testing.T) {
	policies := []Policy{
		lbPolicy("eth", func(p *Policy) { p.Interfaces = res("^eth") }),
		lbPolicy("wg", func(p *Policy) { p.Interfaces = res("^wg"); p.Services = labelsEq{"name": "ns/b"} }),
		lbPolicy("other-nodes", func(p *Policy) { p.SelectsNode = false }),
	}
	services := []Service{
		svc("ns/a", "10.0.0.1"),
		svc("ns/b", "10.0.0.2", func(s *Service) { s.ExternalIPs = addrs("10.0.0.9") }),
		svc("ns/c", "10.0.0.2"),
		svc("ns/d", "10.0.0.3", func(s *Service) { s.TrafficPolicyLocal = true }),
		svc("ns/e", "10.0.0.4", func(s *Service) { s.TrafficPolicyLocal = true; s.LocalReadyEndpoint = true }),
	}
	for _, excluded := range []bool{false, true} {
		node := Node{Name: "cp1", ExcludedByLabel: excluded}
		plan := Compute(node, nodeIfaces, policies, services)
		p := NewPlanner(node, nodeIfaces, policies)
		quiet := NewPlanner(node, nodeIfaces, policies)
		quiet.Messages = false
		for _, want := range plan.Addrs {
			var users []Service
			for _, s := range services {
				if slices.Contains(s.LoadBalancerIPs, want.Addr) || slices.Contains(s.ExternalIPs, want.Addr) {
					users = append(users, s)
				}
			}
			if got := p.Decide(want.Addr, users); !reflect.DeepEqual(got, want) {
				t.Errorf("excluded=%v %s: Planner %+v, Compute %+v", excluded, want.Addr, got, want)
			}
			got := quiet.Decide(want.Addr, users)
			if got.Message != "" || got.Reason != want.Reason || !slices.Equal(got.Interfaces, want.Interfaces) {
				t.Errorf("excluded=%v %s: quiet Planner %+v, want reason %s on %v and no message", excluded, want.Addr, got, want.Reason, want.Interfaces)
			}
		}
		if !reflect.DeepEqual(p.Problems(), plan.Problems) {
			t.Errorf("problems %v, want %v", p.Problems(), plan.Problems)
		}
	}
}
