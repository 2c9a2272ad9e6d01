package ipam

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// step assigns svc and checks the outcome.
type step struct {
	svc    Service
	reason Reason
	addrs  []string // nil: expect none
	msg    string   // substring of the message; "" skips
}

// scenario is a pool set, optional excluded addresses and Assign steps run
// in order on one allocator.
type scenario struct {
	name     string
	pools    func(t testing.TB) []Pool
	nodes    []NodeAddress
	excluded map[string]string
	steps    []step
}

func ok(svc Service, addrs ...string) step {
	return step{svc: svc, reason: Allocated, addrs: addrs}
}

func bad(svc Service, reason Reason, msg string) step {
	return step{svc: svc, reason: reason, msg: msg}
}

func pools(ps ...func(t testing.TB) Pool) func(t testing.TB) []Pool {
	return func(t testing.TB) []Pool {
		var out []Pool
		for _, p := range ps {
			out = append(out, p(t))
		}
		return out
	}
}

func pl(name string, blocks ...string) func(t testing.TB) Pool {
	return func(t testing.TB) Pool { return mkPool(t, name, blocks...) }
}

func mod(p func(t testing.TB) Pool, f func(Pool) Pool) func(t testing.TB) Pool {
	return func(t testing.TB) Pool { return f(p(t)) }
}

func sel(kv ...string) func(Pool) Pool {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(p Pool) Pool { return withSelector(p, m) }
}

func runScenario(t *testing.T, sc scenario) *Allocator {
	t.Helper()
	a := New()
	var ps []Pool
	if sc.pools != nil {
		ps = sc.pools(t)
	}
	a.SetPools(ps, sc.nodes)
	if sc.excluded != nil {
		ex := map[netip.Addr]string{}
		for k, v := range sc.excluded {
			ex[ip(k)] = v
		}
		a.SetExcluded(ex)
	}
	for i, st := range sc.steps {
		res := a.Assign(st.svc)
		if res.Reason != st.reason || !slices.Equal(addrsOf(res.Assigned), st.addrs) && !(len(st.addrs) == 0 && len(res.Assigned) == 0) {
			t.Fatalf("step %d (%s): got %s; want %s %v", i, st.svc.Key, describe(res), st.reason, st.addrs)
		}
		if st.msg != "" && !strings.Contains(res.Message, st.msg) {
			t.Fatalf("step %d (%s): message %q does not contain %q", i, st.svc.Key, res.Message, st.msg)
		}
		if res.Message == "" {
			t.Fatalf("step %d (%s): empty message", i, st.svc.Key)
		}
		if got := addrsOf(a.Lookup(st.svc.Key)); !slices.Equal(got, addrsOf(res.Assigned)) {
			t.Fatalf("step %d: Lookup = %v; Assigned %v", i, got, addrsOf(res.Assigned))
		}
		checkInvariants(t, a)
	}
	return a
}

func TestAssignScenarios(t *testing.T) {
	tutorial := pl("lb", "192.168.10.75-192.168.10.78")
	a24 := pl("a", "10.0.0.0/24")
	b24 := pl("b", "10.0.1.0/24")
	v6 := pl("v6", "2001:db8::/64")
	tests := []scenario{
		// --- fresh allocation ---
		{name: "tutorial range fills then OutOfIPs", pools: pools(tutorial), steps: []step{
			ok(mkSvc("default/nginx"), "192.168.10.75"),
			ok(mkSvc("default/b"), "192.168.10.76"),
			ok(mkSvc("default/c"), "192.168.10.77"),
			ok(mkSvc("default/d"), "192.168.10.78"),
			bad(mkSvc("default/e"), OutOfIPs, `pool "lb" has no free IPv4 address`),
		}},
		{name: "first pool by name, lowest address", pools: pools(b24, a24), steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.1"),
			ok(mkSvc("ns/s2"), "10.0.0.2"),
		}},
		{name: "message names address and pool", pools: pools(a24), steps: []step{
			{svc: mkSvc("ns/s1"), reason: Allocated, addrs: []string{"10.0.0.1"}, msg: `allocated 10.0.0.1 from pool "a"`},
		}},
		{name: "spill to next pool by name", pools: pools(pl("a", "10.0.0.5"), pl("b", "10.0.1.5-10.0.1.6")), steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.5"),
			ok(mkSvc("ns/s2"), "10.0.1.5"),
			ok(mkSvc("ns/s3"), "10.0.1.6"),
			bad(mkSvc("ns/s4"), OutOfIPs, `pools "a", "b" have no free IPv4 address`),
		}},
		{name: "lowest across blocks, given out of order", pools: pools(pl("a", "10.0.0.20-10.0.0.21", "10.0.0.5")), steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.5"),
			ok(mkSvc("ns/s2"), "10.0.0.20"),
			ok(mkSvc("ns/s3"), "10.0.0.21"),
			bad(mkSvc("ns/s4"), OutOfIPs, "no free IPv4"),
		}},
		{name: "slash 31 and 32 hand out both ends", pools: pools(pl("a", "10.0.0.4/31", "10.0.0.9/32")), steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.4"),
			ok(mkSvc("ns/s2"), "10.0.0.5"),
			ok(mkSvc("ns/s3"), "10.0.0.9"),
		}},
		{name: "ipv6 /64 and /8", pools: pools(v6, pl("w", "3000::/8")), steps: []step{
			ok(mkSvc("ns/s1", fams(IPv6)), "2001:db8::1"),
			ok(mkSvc("ns/s2", fams(IPv6), pin("w")), "3000::1"),
		}},
		{name: "selector", pools: pools(mod(a24, sel("team", "x")), b24), steps: []step{
			ok(mkSvc("ns/plain"), "10.0.1.1"),
			ok(mkSvc("ns/team", label("team", "x")), "10.0.0.1"),
		}},
		{name: "selector on synthetic namespace label", pools: pools(mod(a24, sel("io.kubernetes.service.namespace", "prod"))), steps: []step{
			ok(mkSvc("prod/web"), "10.0.0.1"),
			bad(mkSvc("dev/web"), NoPool, "no LoadBalancerIPPool selects this Service"),
		}},
		{name: "pin", pools: pools(a24, b24), steps: []step{
			ok(mkSvc("ns/s1", pin("b")), "10.0.1.1"),
		}},

		// --- NoPool ---
		{name: "no pools", steps: []step{
			bad(mkSvc("ns/s1"), NoPool, "no LoadBalancerIPPool selects this Service"),
		}},
		{name: "no pool selects", pools: pools(mod(a24, sel("team", "x"))), steps: []step{
			bad(mkSvc("ns/s1"), NoPool, "no LoadBalancerIPPool selects this Service"),
		}},
		{name: "all selecting pools unusable", pools: pools(mod(a24, disabled)), steps: []step{
			bad(mkSvc("ns/s1"), NoPool, `no usable LoadBalancerIPPool selects this Service: pool "a" is disabled`),
		}},
		{name: "pinned pool missing", pools: pools(a24), steps: []step{
			bad(mkSvc("ns/s1", pin("blue")), NoPool, `pool "blue" (herald.dev/pool) does not exist`),
		}},
		{name: "pinned pool disabled", pools: pools(a24, mod(pl("blue", "10.0.9.0/24"), disabled)), steps: []step{
			bad(mkSvc("ns/s1", pin("blue")), NoPool, `pool "blue" is disabled`),
		}},
		{name: "pinned pool does not select", pools: pools(a24, mod(pl("blue", "10.0.9.0/24"), sel("team", "x"))), steps: []step{
			bad(mkSvc("ns/s1", pin("blue")), NoPool, `pool "blue" (herald.dev/pool) does not select this Service`),
		}},
		{name: "pinned pool in conflict", pools: pools(a24, mod(pl("blue", "10.0.0.0/25"), func(p Pool) Pool { return created(p, 10) })), steps: []step{
			bad(mkSvc("ns/s1", pin("blue")), NoPool, `pool "blue" is in conflict (Overlap: overlaps pool "a" (older) at 10.0.0.1-10.0.0.126)`),
		}},

		// --- FamilyUnavailable ---
		{name: "v6 service, v4 pools", pools: pools(a24), steps: []step{
			bad(mkSvc("ns/s1", fams(IPv6)), FamilyUnavailable, `no LoadBalancerIPPool for this Service has IPv6 addresses (candidate pool "a")`),
		}},
		{name: "requested family not in families", pools: pools(a24, v6), steps: []step{
			bad(mkSvc("ns/s1", req("2001:db8::1")), FamilyUnavailable, "requested 2001:db8::1 is IPv6 but the Service's families are [IPv4]"),
		}},
		{name: "single stack ignores second family", pools: pools(a24, v6), steps: []step{
			bad(mkSvc("ns/s1", fams(IPv4, IPv6), req("2001:db8::1")), FamilyUnavailable, "families are [IPv4]"),
			ok(mkSvc("ns/s2", fams(IPv6, IPv4)), "2001:db8::1"),
		}},

		// --- requested ---
		{name: "requested free", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", req("10.0.0.77")), "10.0.0.77"),
			ok(mkSvc("ns/s2"), "10.0.0.1"),
		}},
		{name: "requested in no pool", pools: pools(a24), steps: []step{
			bad(mkSvc("ns/s1", req("10.9.9.9")), RequestedIPNotInPool, "requested 10.9.9.9 cannot be allocated: no LoadBalancerIPPool contains it"),
			bad(mkSvc("ns/s2", req("10.0.0.0")), RequestedIPNotInPool, "no LoadBalancerIPPool contains it"),
		}},
		{name: "requested in pool that does not select", pools: pools(mod(a24, sel("team", "x")), b24), steps: []step{
			bad(mkSvc("ns/s1", req("10.0.0.7")), RequestedIPNotInPool, `pool "a" does not select this Service`),
		}},
		{name: "requested in disabled pool", pools: pools(mod(a24, disabled), b24), steps: []step{
			bad(mkSvc("ns/s1", req("10.0.0.7")), RequestedIPNotInPool, `requested 10.0.0.7 cannot be allocated: pool "a" is disabled`),
		}},
		{name: "requested in conflicting pool", pools: pools(a24, mod(pl("c", "10.0.0.0/25"), func(p Pool) Pool { return created(p, 5) })), steps: []step{
			ok(mkSvc("ns/s1", req("10.0.0.7")), "10.0.0.7"), // in a (older) too: allowed
			bad(mkSvc("ns/s2", pin("c"), req("10.0.0.8")), RequestedIPNotInPool, `pool "c" is in conflict`),
		}},
		{name: "requested outside pinned pool", pools: pools(a24, b24), steps: []step{
			bad(mkSvc("ns/s1", pin("b"), req("10.0.0.7")), RequestedIPNotInPool, `it is in pool "a" but the Service is pinned to pool "b"`),
		}},
		{name: "requested in use", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.1"),
			bad(mkSvc("ns/s2", req("10.0.0.1")), RequestedIPInUse, "requested 10.0.0.1 is in use by ns/s1"),
		}},
		{name: "requested in use by a sharer, requester does not share", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			bad(mkSvc("ns/s2", req("10.0.0.1"), ports(443)), RequestedIPInUse, "in use by ns/s1 (this Service has no sharing key)"),
		}},
		{name: "requested in use by a non-sharer", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", ports(80)), "10.0.0.1"),
			bad(mkSvc("ns/s2", req("10.0.0.1"), share("k"), ports(443)), RequestedIPInUse, "in use by ns/s1, which does not share its address"),
		}},
		{name: "requested dual stack", pools: pools(a24, v6), steps: []step{
			ok(mkSvc("ns/s1", dual(RequireDualStack), req("2001:db8::9", "10.0.0.9")), "10.0.0.9", "2001:db8::9"),
			ok(mkSvc("ns/s2", dual(PreferDualStack), req("10.0.0.10")), "10.0.0.10"),
			bad(mkSvc("ns/s3", dual(RequireDualStack), req("10.0.0.11")), FamilyUnavailable, "RequireDualStack needs an address of each family but only 10.0.0.11 (IPv4) is requested"),
			bad(mkSvc("ns/s4", dual(RequireDualStack), req("10.0.0.12", "2001:db8::9")), RequestedIPInUse, "requested 2001:db8::9 is in use by ns/s1"),
		}},

		// --- excluded (address conflict on the LAN) ---
		{name: "excluded never handed out fresh", pools: pools(a24), excluded: map[string]string{"10.0.0.1": "answered by 02:42:ac:11:00:01 on eth0"}, steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.2"),
			bad(mkSvc("ns/s2", req("10.0.0.1")), AddressConflict, "requested 10.0.0.1 is in use by another host on the LAN (answered by 02:42:ac:11:00:01 on eth0)"),
		}},
		{name: "excluded address of a full pool", pools: pools(pl("a", "10.0.0.1-10.0.0.2")), excluded: map[string]string{"10.0.0.2": ""}, steps: []step{
			ok(mkSvc("ns/s1"), "10.0.0.1"),
			bad(mkSvc("ns/s2"), OutOfIPs, "no free IPv4"),
		}},

		// --- dual stack ---
		{name: "SingleStack v6 primary", pools: pools(a24, v6), steps: []step{
			ok(mkSvc("ns/s1", fams(IPv6, IPv4), policy(SingleStack)), "2001:db8::1"),
		}},
		{name: "PreferDualStack both", pools: pools(a24, v6), steps: []step{
			ok(mkSvc("ns/s1", dual(PreferDualStack)), "10.0.0.1", "2001:db8::1"),
			ok(mkSvc("ns/s2", dual(PreferDualStack), fams(IPv6, IPv4)), "2001:db8::2", "10.0.0.2"),
		}},
		{name: "PreferDualStack only v4 offered", pools: pools(a24), steps: []step{
			{svc: mkSvc("ns/s1", dual(PreferDualStack)), reason: Allocated, addrs: []string{"10.0.0.1"}, msg: "no IPv6 address: no LoadBalancerIPPool for this Service has IPv6 addresses"},
		}},
		{name: "PreferDualStack v4 full, v6 ok", pools: pools(pl("a", "10.0.0.1"), v6), steps: []step{
			ok(mkSvc("ns/s0"), "10.0.0.1"),
			{svc: mkSvc("ns/s1", dual(PreferDualStack)), reason: Allocated, addrs: []string{"2001:db8::1"}, msg: `no IPv4 address: pool "a" has no free IPv4 address`},
		}},
		{name: "PreferDualStack nothing", pools: pools(pl("a", "10.0.0.1")), steps: []step{
			ok(mkSvc("ns/s0"), "10.0.0.1"),
			bad(mkSvc("ns/s1", dual(PreferDualStack)), OutOfIPs, `pool "a" has no free IPv4 address`),
		}},
		{name: "RequireDualStack both", pools: pools(a24, v6), steps: []step{
			ok(mkSvc("ns/s1", dual(RequireDualStack)), "10.0.0.1", "2001:db8::1"),
		}},
		{name: "RequireDualStack v6 not offered", pools: pools(a24), steps: []step{
			bad(mkSvc("ns/s1", dual(RequireDualStack)), FamilyUnavailable, "has IPv6 addresses"),
			ok(mkSvc("ns/s2"), "10.0.0.1"), // nothing was held by s1
		}},
		{name: "RequireDualStack v6 full", pools: pools(a24, pl("v6", "2001:db8::1")), steps: []step{
			ok(mkSvc("ns/s0", fams(IPv6)), "2001:db8::1"),
			bad(mkSvc("ns/s1", dual(RequireDualStack)), OutOfIPs, `pool "v6" has no free IPv6 address`),
			ok(mkSvc("ns/s2"), "10.0.0.1"),
		}},
		{name: "RequireDualStack with one family", pools: pools(a24, v6), steps: []step{
			bad(mkSvc("ns/s1", policy(RequireDualStack)), FamilyUnavailable, "RequireDualStack needs two IP families but the Service's families are [IPv4]"),
		}},

		// --- sharing: join without request ---
		{name: "sharing joins compatible", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			{svc: mkSvc("ns/s2", share("k"), ports(443)), reason: Allocated, addrs: []string{"10.0.0.1"}, msg: "(shared with ns/s1)"},
			ok(mkSvc("ns/s3", share("k"), ports(53)), "10.0.0.1"),
		}},
		{name: "sharing different key gets its own", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			ok(mkSvc("ns/s2", share("other"), ports(443)), "10.0.0.2"),
		}},
		{name: "sharing port clash any protocol", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(53)), "10.0.0.1"),
			ok(mkSvc("ns/s2", share("k"), udp(53)), "10.0.0.2"),
			ok(mkSvc("ns/s3", share("k"), ports(80)), "10.0.0.1"),
			ok(mkSvc("ns/s4", share("k"), ports(80)), "10.0.0.2"), // .1 has 80, .2 has not
		}},
		{name: "sharing cross namespace", pools: pools(a24), steps: []step{
			ok(mkSvc("a/s1", share("k"), ports(80)), "10.0.0.1"),
			ok(mkSvc("b/s2", share("k", "a"), ports(443)), "10.0.0.2"),  // a does not allow b
			ok(mkSvc("a/s3", share("k", "b"), ports(8080)), "10.0.0.1"), // s1 (a) same ns; s2 not on .1
			ok(mkSvc("b/s4", share("k", "a"), ports(8443)), "10.0.0.2"), // .1 has s1 not allowing b
			ok(mkSvc("c/s5", share("k", "*"), ports(9000)), "10.0.0.3"), // nobody allows c
			ok(mkSvc("d/s6", share("k", "*"), ports(9001)), "10.0.0.3"), // both allow all
			ok(mkSvc("e/s7", share("k", "d"), ports(9002)), "10.0.0.4"), // c/s5 allows e, but e does not allow c
			ok(mkSvc("e/s8", share("k", "c", "d"), ports(9003)), "10.0.0.3"),
		}},
		{name: "sharing traffic policy", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			ok(mkSvc("ns/s2", share("k"), ports(443), local(map[string]string{"app": "x"})), "10.0.0.2"),
			ok(mkSvc("ns/s3", share("k"), ports(444), local(map[string]string{"app": "y"})), "10.0.0.3"),
			ok(mkSvc("ns/s4", share("k"), ports(445), local(map[string]string{"app": "x"})), "10.0.0.2"),
			ok(mkSvc("ns/s5", share("k"), ports(446), local(nil)), "10.0.0.4"),
			ok(mkSvc("ns/s6", share("k"), ports(447), local(nil)), "10.0.0.5"), // empty selectors never share under Local
		}},
		{name: "sharing join stays in candidate pools", pools: pools(a24, b24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			ok(mkSvc("ns/s2", share("k"), ports(443), pin("b")), "10.0.1.1"),
			ok(mkSvc("ns/s3", share("k"), ports(444), pin("b")), "10.0.1.1"),
		}},

		// --- sharing: requested ---
		{name: "requested shareable", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80), req("10.0.0.50")), "10.0.0.50"),
			ok(mkSvc("ns/s2", share("k"), ports(443), req("10.0.0.50")), "10.0.0.50"),
		}},
		{name: "requested sharing key differs", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			bad(mkSvc("ns/s2", share("j"), ports(443), req("10.0.0.1")), SharingIncompatible, `requested 10.0.0.1 cannot be shared with ns/s1: sharing key "j" differs from "k" of ns/s1`),
		}},
		{name: "requested port clash", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80, 443)), "10.0.0.1"),
			bad(mkSvc("ns/s2", share("k"), udp(443), req("10.0.0.1")), SharingIncompatible, "port 443 is used by ns/s1"),
		}},
		{name: "requested namespace not allowed", pools: pools(a24), steps: []step{
			ok(mkSvc("a/s1", share("k"), ports(80)), "10.0.0.1"),
			bad(mkSvc("b/s2", share("k", "*"), ports(443), req("10.0.0.1")), SharingIncompatible, `a/s1 does not allow sharing with namespace "b"`),
		}},
		{name: "requested namespace not allowed by requester", pools: pools(a24), steps: []step{
			ok(mkSvc("a/s1", share("k", "b"), ports(80)), "10.0.0.1"),
			bad(mkSvc("b/s2", share("k"), ports(443), req("10.0.0.1")), SharingIncompatible, `this Service does not allow sharing with namespace "a" of a/s1`),
			ok(mkSvc("b/s3", share("k", "a"), ports(443), req("10.0.0.1")), "10.0.0.1"),
		}},
		{name: "requested traffic policy differs", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
			bad(mkSvc("ns/s2", share("k"), ports(443), local(map[string]string{"app": "x"}), req("10.0.0.1")), SharingIncompatible, "externalTrafficPolicy differs: ns/s1 is Cluster"),
		}},
		{name: "requested Local selectors differ", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80), local(map[string]string{"app": "x"})), "10.0.0.1"),
			bad(mkSvc("ns/s2", share("k"), ports(443), local(map[string]string{"app": "y"}), req("10.0.0.1")), SharingIncompatible, "needs identical pod selectors: this Service selects {app=y}, ns/s1 selects {app=x}"),
			bad(mkSvc("ns/s3", share("k"), ports(443), local(nil), req("10.0.0.1")), SharingIncompatible, "needs a non-empty pod selector"),
			ok(mkSvc("ns/s4", share("k"), ports(443), local(map[string]string{"app": "x"}), req("10.0.0.1")), "10.0.0.1"),
		}},
		{name: "requested must be compatible with every holder", pools: pools(a24), steps: []step{
			ok(mkSvc("ns/s1", share("k"), ports(80), req("10.0.0.9")), "10.0.0.9"),
			ok(mkSvc("ns/s2", share("k"), ports(443), req("10.0.0.9")), "10.0.0.9"),
			bad(mkSvc("ns/s3", share("k"), ports(8080, 443), req("10.0.0.9")), SharingIncompatible, "port 443 is used by ns/s2"),
		}},

		// --- invalid views ---
		{name: "invalid requests", pools: pools(a24), steps: []step{
			bad(Service{}, InvalidRequest, "no key"),
			bad(mkSvc("ns/s1", policy("Sometimes")), InvalidRequest, `unknown ipFamilyPolicy "Sometimes"`),
			bad(mkSvc("ns/s2", fams(Family(5))), InvalidRequest, "unknown IP family 5"),
			bad(mkSvc("ns/s3", req("10.0.0.1", "10.0.0.2")), InvalidRequest, "at most one address per family"),
			bad(mkSvc("ns/s4", func(s *Service) { s.Requested = []netip.Addr{{}} }), InvalidRequest, "not a valid IP"),
			bad(mkSvc("ns/s5", req("fe80::1%eth0"), fams(IPv6)), InvalidRequest, "zone"),
		}},
		{name: "lenient defaults", pools: pools(a24, v6), steps: []step{
			ok(mkSvc("ns/s1", fams(), policy("")), "10.0.0.1"),
			ok(mkSvc("ns/s2", fams(), req("2001:db8::5")), "2001:db8::5"),
			ok(mkSvc("ns/s3", req("::ffff:10.0.0.9")), "10.0.0.9"),
		}},
	}
	for _, sc := range tests {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc) })
	}
}

func TestExcludedSharedAddressIsNotJoined(t *testing.T) {
	a := runScenario(t, scenario{pools: pools(pl("a", "10.0.0.0/24")), steps: []step{
		ok(mkSvc("ns/s1", share("k"), ports(80)), "10.0.0.1"),
	}})
	a.SetExcluded(map[netip.Addr]string{ip("10.0.0.1"): "answered by 02:00:00:00:00:01"})
	if r := a.Assign(mkSvc("ns/s2", share("k"), ports(443))); addrsOf(r.Assigned)[0] != "10.0.0.2" {
		t.Fatalf("joined an excluded address: %s", describe(r))
	}
	checkInvariants(t, a)
}
