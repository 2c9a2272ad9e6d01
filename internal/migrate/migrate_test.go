package migrate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

func translateFile(t *testing.T, src Source, name string) Result {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Translate(src, objs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// noteKey is what a test checks of a note: the reason is prose.
type noteKey struct {
	Object, Field string
	Lost          bool
}

func noteKeys(t *testing.T, ns []Note) []noteKey {
	t.Helper()
	var out []noteKey
	for _, n := range ns {
		if n.Reason == "" {
			t.Errorf("note on %s %s without a reason", n.Object, n.Field)
		}
		out = append(out, noteKey{n.Object, n.Field, n.Lost})
	}
	return out
}

func pool(name string, allowFirstLast bool, sel *metav1.LabelSelector, blocks ...heraldv1.IPBlock) heraldv1.LoadBalancerIPPool {
	return heraldv1.LoadBalancerIPPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "herald.dev/v1alpha1", Kind: "LoadBalancerIPPool"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       heraldv1.LoadBalancerIPPoolSpec{Blocks: blocks, ServiceSelector: sel, AllowFirstLastIPs: allowFirstLast},
	}
}

func policy(name string, spec heraldv1.L2AnnouncementPolicySpec) heraldv1.L2AnnouncementPolicy {
	return heraldv1.L2AnnouncementPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "herald.dev/v1alpha1", Kind: "L2AnnouncementPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       spec,
	}
}

func ptr[T any](v T) *T { return &v }

// TestMetalLBLayer2: the documented L2 setup translates whole: every
// address MetalLB hands out (a CIDR's network and broadcast included)
// stays in the pool, and an advertisement of every pool selects every
// Service.
func TestMetalLBLayer2(t *testing.T) {
	res := translateFile(t, MetalLB, "metallb-l2.yaml")
	want := Result{
		Pools: []heraldv1.LoadBalancerIPPool{pool("first-pool", true, nil,
			heraldv1.IPBlock{CIDR: "192.168.10.0/24"},
			heraldv1.IPBlock{Start: "192.168.9.1", Stop: "192.168.9.5"},
			heraldv1.IPBlock{CIDR: "fc00:f853:ccd:e799::/124"})},
		Policies: []heraldv1.L2AnnouncementPolicy{policy("example", heraldv1.L2AnnouncementPolicySpec{})},
	}
	if d := cmp.Diff(want, res); d != "" {
		t.Errorf("translation (-want +got):\n%s", d)
	}
	if res.Lost() {
		t.Error("Lost() for a complete translation")
	}
}

// TestMetalLBTutorial: the tutorial's pool and interface, as a MetalLB
// user writes them, translate whole (the lab's e2e test runs the
// tutorial on the result).
func TestMetalLBTutorial(t *testing.T) {
	res := translateFile(t, MetalLB, "metallb-tutorial.yaml")
	want := Result{
		Pools:    []heraldv1.LoadBalancerIPPool{pool("first-pool", false, nil, heraldv1.IPBlock{Start: "192.168.10.75", Stop: "192.168.10.78"})},
		Policies: []heraldv1.L2AnnouncementPolicy{policy("tutorial", heraldv1.L2AnnouncementPolicySpec{Interfaces: []string{`^eth0$`}})},
	}
	if d := cmp.Diff(want, res); d != "" {
		t.Errorf("translation (-want +got):\n%s", d)
	}
	if res.Lost() {
		t.Error("Lost() for a complete translation")
	}
}

// TestMetalLBAdvanced: what has no equivalent is listed, field by field,
// and objects that would widen (a pool kept for Services that ask, a pool
// scoped by namespace labels, an advertisement of one pool that serves
// every Service) are not written.
func TestMetalLBAdvanced(t *testing.T) {
	res := translateFile(t, MetalLB, "metallb-advanced.yaml")
	teamA := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"web", "api"}},
		{Key: "io.kubernetes.service.namespace", Operator: metav1.LabelSelectorOpIn, Values: []string{"team-a", "team-a-staging"}},
	}}
	ifaces := []string{`^eth0$`, `^enp0s1\.10$`}
	node := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": name}}
	}
	want := Result{
		Pools: []heraldv1.LoadBalancerIPPool{
			pool("cheap", true, nil, heraldv1.IPBlock{CIDR: "192.168.10.0/24"}),
			pool("team-a", false, teamA, heraldv1.IPBlock{CIDR: "192.168.20.0/23"}),
		},
		Policies: []heraldv1.L2AnnouncementPolicy{
			policy("web-team-a-nodes0", heraldv1.L2AnnouncementPolicySpec{Interfaces: ifaces, NodeSelector: node("node1"), ServiceSelector: teamA}),
			policy("web-team-a-nodes1", heraldv1.L2AnnouncementPolicySpec{Interfaces: ifaces, NodeSelector: node("node2"), ServiceSelector: teamA}),
		},
	}
	if d := cmp.Diff(want, res, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Notes" }, cmp.Ignore())); d != "" {
		t.Errorf("translation (-want +got):\n%s", d)
	}
	wantNotes := []noteKey{
		{"BGPPeer metallb-system/tor", "", true},
		{"IPAddressPool metallb-system/by-namespace-label", "spec.serviceAllocation.namespaceSelectors", true},
		{"IPAddressPool metallb-system/expensive", "spec.autoAssign", true},
		{"IPAddressPool metallb-system/team-a", "spec.addresses[0]", false},
		{"IPAddressPool metallb-system/team-a", "spec.serviceAllocation.priority", true},
		{"L2Advertisement metallb-system/cheap-only", "spec.ipAddressPools", true},
		{"L2Advertisement metallb-system/web", "spec.ipAddressPools", false},
		{"L2Advertisement metallb-system/web", "spec.nodeSelectors", false},
	}
	if d := cmp.Diff(wantNotes, noteKeys(t, res.Notes)); d != "" {
		t.Errorf("notes (-want +got):\n%s", d)
		for _, n := range res.Notes {
			t.Logf("%s %s: %s", n.Object, n.Field, n.Reason)
		}
	}
	if !res.Lost() {
		t.Error("Lost() false with untranslated fields")
	}
}

// TestCilium: Cilium's pools and policies map field for field; the
// defaults that differ (first and last addresses, loadBalancerIPs) are
// written out so that the same addresses are handed out and announced.
func TestCilium(t *testing.T) {
	res := translateFile(t, Cilium, "cilium-l2.yaml")
	blue := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "color", Operator: metav1.LabelSelectorOpIn, Values: []string{"blue", "cyan"}}}}
	red := pool("red-pool", false, &metav1.LabelSelector{MatchLabels: map[string]string{"io.kubernetes.service.namespace": "tenant-a"}},
		heraldv1.IPBlock{CIDR: "10.0.20.0/24"})
	red.Spec.Disabled = true
	want := Result{
		Pools: []heraldv1.LoadBalancerIPPool{
			pool("blue-pool", true, blue,
				heraldv1.IPBlock{CIDR: "10.0.10.0/24"}, heraldv1.IPBlock{CIDR: "2004::/64"},
				heraldv1.IPBlock{Start: "20.0.20.100", Stop: "20.0.20.200"}, heraldv1.IPBlock{Start: "1.2.3.4"}),
			red,
		},
		Policies: []heraldv1.L2AnnouncementPolicy{
			policy("external-only", heraldv1.L2AnnouncementPolicySpec{ExternalIPs: true, LoadBalancerIPs: ptr(false)}),
			policy("policy1", heraldv1.L2AnnouncementPolicySpec{
				Interfaces:      []string{"^eth[0-9]+"},
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"color": "blue"}},
				NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "node-role.kubernetes.io/control-plane", Operator: metav1.LabelSelectorOpDoesNotExist}}},
				ExternalIPs: true, LoadBalancerIPs: ptr(true)}),
		},
	}
	if d := cmp.Diff(want, res, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Notes" }, cmp.Ignore())); d != "" {
		t.Errorf("translation (-want +got):\n%s", d)
	}
	wantNotes := []noteKey{
		{"CiliumBGPClusterConfig bgp", "", true},
		{"CiliumL2AnnouncementPolicy external-only", "spec.loadBalancerIPs", false},
	}
	if d := cmp.Diff(wantNotes, noteKeys(t, res.Notes)); d != "" {
		t.Errorf("notes (-want +got):\n%s", d)
	}
}

// TestOtherSourceAndUnknownFields: objects of the other load balancer are
// skipped with a note, and a spec field the importer does not know is
// listed rather than dropped in silence.
func TestOtherSourceAndUnknownFields(t *testing.T) {
	objs, err := Parse(strings.NewReader(`
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: p}
spec:
  blocks: [{cidr: 10.1.0.0/24}]
  futureField: {x: 1}
  emptyField: ""
---
apiVersion: v1
kind: Namespace
metadata: {name: metallb-system}
`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Translate(Cilium, objs)
	if err != nil {
		t.Fatal(err)
	}
	want := []noteKey{
		{"CiliumLoadBalancerIPPool p", "spec.futureField", true},
		{"Namespace metallb-system", "", false},
	}
	if d := cmp.Diff(want, noteKeys(t, res.Notes)); d != "" {
		t.Errorf("notes (-want +got):\n%s", d)
	}
	if len(res.Pools) != 1 {
		t.Errorf("%d pools, want the pool written with what is known", len(res.Pools))
	}
	res, err = Translate(MetalLB, objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pools) != 0 || len(res.Notes) != 2 || res.Lost() {
		t.Errorf("MetalLB import of Cilium objects: %d pools, notes %+v; want both skipped, nothing lost", len(res.Pools), res.Notes)
	}
}

// TestBadObjects: what a pool cannot be written with is said per field.
func TestBadObjects(t *testing.T) {
	cases := []struct {
		name, src, doc string
		field          string
	}{
		{"metallb garbage address", "metallb", `{apiVersion: metallb.io/v1beta1, kind: IPAddressPool, metadata: {name: p, namespace: m}, spec: {addresses: [nonsense]}}`, "spec.addresses[0]"},
		{"metallb reversed range", "metallb", `{apiVersion: metallb.io/v1beta1, kind: IPAddressPool, metadata: {name: p, namespace: m}, spec: {addresses: [10.0.0.9-10.0.0.1]}}`, "spec.addresses[0]"},
		{"metallb no addresses", "metallb", `{apiVersion: metallb.io/v1beta1, kind: IPAddressPool, metadata: {name: p, namespace: m}, spec: {}}`, "spec.addresses"},
		{"metallb two service selectors", "metallb", `{apiVersion: metallb.io/v1beta1, kind: IPAddressPool, metadata: {name: p, namespace: m}, spec: {addresses: [10.0.0.0/24], serviceAllocation: {serviceSelectors: [{matchLabels: {a: b}}, {matchLabels: {c: d}}]}}}`, "spec.serviceAllocation.serviceSelectors"},
		{"metallb unknown kind", "metallb", `{apiVersion: metallb.io/v1beta1, kind: Frobnicator, metadata: {name: p, namespace: m}}`, ""},
		{"cilium mixed block", "cilium", `{apiVersion: cilium.io/v2alpha1, kind: CiliumLoadBalancerIPPool, metadata: {name: p}, spec: {blocks: [{cidr: 10.0.0.0/24, start: 10.0.0.1}]}}`, "spec.blocks[0]"},
		{"cilium mixed families", "cilium", `{apiVersion: cilium.io/v2alpha1, kind: CiliumLoadBalancerIPPool, metadata: {name: p}, spec: {blocks: [{start: 10.0.0.1, stop: "2001:db8::1"}]}}`, "spec.blocks[0]"},
		{"cilium bad allowFirstLastIPs", "cilium", `{apiVersion: cilium.io/v2alpha1, kind: CiliumLoadBalancerIPPool, metadata: {name: p}, spec: {blocks: [{cidr: 10.0.0.0/24}], allowFirstLastIPs: maybe}}`, "spec.allowFirstLastIPs"},
		{"cilium bad regex", "cilium", `{apiVersion: cilium.io/v2alpha1, kind: CiliumL2AnnouncementPolicy, metadata: {name: p}, spec: {interfaces: ["eth("]}}`, "spec.interfaces[0]"},
		{"cilium bad selector", "cilium", `{apiVersion: cilium.io/v2alpha1, kind: CiliumL2AnnouncementPolicy, metadata: {name: p}, spec: {nodeSelector: {matchExpressions: [{key: a, operator: Sometimes}]}}}`, "spec.nodeSelector"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Parse(strings.NewReader(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			src, err := ParseSource(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Translate(src, objs)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Pools)+len(res.Policies) != 0 {
				t.Errorf("wrote %d pools and %d policies, want none", len(res.Pools), len(res.Policies))
			}
			if len(res.Notes) != 1 || res.Notes[0].Field != tc.field || !res.Notes[0].Lost {
				t.Errorf("notes %+v, want one lost note on %q", res.Notes, tc.field)
			}
		})
	}
}

// TestParse: documents, JSON, Lists and errors.
func TestParse(t *testing.T) {
	objs, err := Parse(strings.NewReader(`
---
# nothing
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "a", "namespace": "m", "labels": {"x": "y"}}, "spec": {"addresses": ["10.0.0.0/24"]}},
  {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "b", "namespace": "m"}}
]}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata:
  name: c
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.ref()+" "+string(o.Spec))
	}
	want := []string{
		`IPAddressPool m/a {"addresses":["10.0.0.0/24"]}`,
		`L2Advertisement m/b `,
		`CiliumLoadBalancerIPPool c `,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("objects (-want +got):\n%s", d)
	}
	if objs[0].Labels["x"] != "y" {
		t.Errorf("labels %v", objs[0].Labels)
	}
	for _, bad := range []string{"kind: X\nmetadata: {name: a}", "apiVersion: v1\nkind: X\nmetadata: {}", "{"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if _, err := ParseSource("kube-vip"); err == nil {
		t.Error("ParseSource accepted kube-vip")
	}
}

// TestBlocks: the address forms of both peers and what Herald reserves.
func TestBlocks(t *testing.T) {
	cases := []struct {
		in                      string
		want                    heraldv1.IPBlock
		masked, firstLast, bugs bool
		err                     bool
	}{
		{in: "192.168.10.0/24", want: heraldv1.IPBlock{CIDR: "192.168.10.0/24"}, firstLast: true},
		{in: "192.168.10.5/24", want: heraldv1.IPBlock{CIDR: "192.168.10.0/24"}, masked: true, firstLast: true},
		{in: "192.168.20.0/23", want: heraldv1.IPBlock{CIDR: "192.168.20.0/23"}, firstLast: true, bugs: true},
		{in: "42.176.25.64/32", want: heraldv1.IPBlock{CIDR: "42.176.25.64/32"}},
		{in: "10.0.0.0/31", want: heraldv1.IPBlock{CIDR: "10.0.0.0/31"}},
		{in: "fc00::/124", want: heraldv1.IPBlock{CIDR: "fc00::/124"}, firstLast: true},
		{in: "fc00::/127", want: heraldv1.IPBlock{CIDR: "fc00::/127"}},
		{in: "192.168.9.1-192.168.9.5", want: heraldv1.IPBlock{Start: "192.168.9.1", Stop: "192.168.9.5"}},
		{in: "192.168.9.1 - 192.168.9.5", want: heraldv1.IPBlock{Start: "192.168.9.1", Stop: "192.168.9.5"}},
		{in: "192.168.9.0-192.168.9.5", want: heraldv1.IPBlock{Start: "192.168.9.0", Stop: "192.168.9.5"}, bugs: true},
		{in: "192.168.9.250-192.168.10.5", want: heraldv1.IPBlock{Start: "192.168.9.250", Stop: "192.168.10.5"}, bugs: true},
		{in: "192.168.9.7", want: heraldv1.IPBlock{Start: "192.168.9.7"}},
		{in: "fc00::1-fc00::ff", want: heraldv1.IPBlock{Start: "fc00::1", Stop: "fc00::ff"}},
		{in: "10.0.0.5-10.0.0.1", err: true},
		{in: "10.0.0.1-fc00::1", err: true},
		{in: "::ffff:10.0.0.1/128", err: true},
		{in: "10.0.0.0/33", err: true},
		{in: "pool", err: true},
	}
	for _, tc := range cases {
		b, masked, err := parseMetalLBAddress(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if got := b.herald(); got != tc.want || masked != tc.masked || b.hasFirstLast() != tc.firstLast || b.buggyInside() != tc.bugs {
			t.Errorf("%q: %+v masked %v firstLast %v buggy %v; want %+v, %v, %v, %v",
				tc.in, got, masked, b.hasFirstLast(), b.buggyInside(), tc.want, tc.masked, tc.firstLast, tc.bugs)
		}
	}
}
