package migrate

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// metallbGroup is the API group of MetalLB's objects.
const metallbGroup = "metallb.io"

// metallbPool is the part of a MetalLB IPAddressPool's spec this package
// reads (metallb.io/v1beta1).
type metallbPool struct {
	Addresses         []string                  `json:"addresses,omitempty"`
	AutoAssign        *bool                     `json:"autoAssign,omitempty"`
	AvoidBuggyIPs     bool                      `json:"avoidBuggyIPs,omitempty"`
	ServiceAllocation *metallbServiceAllocation `json:"serviceAllocation,omitempty"`
}

type metallbServiceAllocation struct {
	Priority           int                    `json:"priority,omitempty"`
	Namespaces         []string               `json:"namespaces,omitempty"`
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

// metallbL2Advertisement is the part of an L2Advertisement's spec this
// package reads.
type metallbL2Advertisement struct {
	IPAddressPools         []string               `json:"ipAddressPools,omitempty"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors,omitempty"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	Interfaces             []string               `json:"interfaces,omitempty"`
}

// metallbBGPKinds have no Herald counterpart yet.
var metallbBGPKinds = []string{"BGPPeer", "BGPAdvertisement", "BFDProfile", "Community"}

// translatedPool is a MetalLB pool as translated (or not: pool nil).
type translatedPool struct {
	src  Object
	pool *heraldv1.LoadBalancerIPPool
}

func fromMetalLB(objs []Object, n *notes) (Result, error) {
	var res Result
	var pools []translatedPool
	var advs []Object
	names := map[string]int{} // Herald pool names taken
	for _, o := range objs {
		if o.group() != metallbGroup {
			n.changed(o, "", "not MetalLB configuration (%s); skipped", o.APIVersion)
			continue
		}
		switch {
		case o.Kind == "IPAddressPool":
			p, err := metallbPoolOf(o, n)
			if err != nil {
				return Result{}, err
			}
			if p != nil {
				// Herald's pools are cluster-scoped; MetalLB's live in a
				// namespace, so equal names from two namespaces collide.
				if names[p.Name]++; names[p.Name] > 1 {
					old := p.Name
					p.Name = o.Namespace + "-" + p.Name
					n.changed(o, "metadata.name", "a pool %q exists in another namespace; written as %q (Herald's pools are cluster-scoped)", old, p.Name)
				}
			}
			pools = append(pools, translatedPool{src: o, pool: p})
		case o.Kind == "L2Advertisement":
			advs = append(advs, o)
		case slices.Contains(metallbBGPKinds, o.Kind):
			n.lost(o, "", "Herald does not speak BGP yet; not translated")
		default:
			n.lost(o, "", "a MetalLB kind this importer does not know; not translated")
		}
	}
	for _, tp := range pools {
		if tp.pool != nil {
			res.Pools = append(res.Pools, *tp.pool)
		}
	}
	for _, o := range advs {
		pols, err := metallbPoliciesOf(o, pools, n)
		if err != nil {
			return Result{}, err
		}
		res.Policies = append(res.Policies, pols...)
	}
	return res, nil
}

// metallbPoolOf translates one IPAddressPool; nil when it cannot be
// written without handing its addresses to more Services.
func metallbPoolOf(o Object, n *notes) (*heraldv1.LoadBalancerIPPool, error) {
	var spec metallbPool
	if err := decodeSpec(o, &spec, n); err != nil {
		return nil, err
	}
	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: o.Name}}
	firstLast := false
	for i, a := range spec.Addresses {
		field := fmt.Sprintf("spec.addresses[%d]", i)
		b, masked, err := parseMetalLBAddress(a)
		if err != nil {
			n.lost(o, field, "%v; pool not written", err)
			return nil, nil
		}
		if masked {
			n.changed(o, field, "%q has host bits set; written as %s, the network MetalLB used", a, b.prefix)
		}
		if spec.AvoidBuggyIPs && b.buggyInside() {
			n.changed(o, field, "avoidBuggyIPs: Herald skips only the first and last address of a CIDR block, so %s may hand out addresses ending in .0 or .255 inside it; split the block if that matters", a)
		}
		firstLast = firstLast || b.hasFirstLast()
		p.Spec.Blocks = append(p.Spec.Blocks, b.herald())
	}
	if len(p.Spec.Blocks) == 0 {
		n.lost(o, "spec.addresses", "no addresses; pool not written")
		return nil, nil
	}
	if len(p.Spec.Blocks) > 128 {
		n.lost(o, "spec.addresses", "%d ranges, more than a Herald pool holds (128); pool not written", len(p.Spec.Blocks))
		return nil, nil
	}
	// MetalLB hands out every address of a CIDR, network and broadcast
	// included, unless avoidBuggyIPs; Herald reserves them unless
	// allowFirstLastIPs. Services holding one must keep it.
	if firstLast && !spec.AvoidBuggyIPs {
		p.Spec.AllowFirstLastIPs = true
	}
	if spec.AutoAssign != nil && !*spec.AutoAssign {
		n.lost(o, "spec.autoAssign", "false: Herald has no pool kept for Services that ask for it by name, and would hand these addresses to any Service; pool not written (write it with a serviceSelector that only those Services match, and pin them with the herald.dev/pool annotation)")
		return nil, nil
	}
	if sa := spec.ServiceAllocation; sa != nil {
		if len(sa.NamespaceSelectors) > 0 {
			n.lost(o, "spec.serviceAllocation.namespaceSelectors", "Herald selects Services by their own labels and namespace name, not by the namespace's labels; pool not written (list the namespaces instead)")
			return nil, nil
		}
		if len(sa.ServiceSelectors) > 1 {
			n.lost(o, "spec.serviceAllocation.serviceSelectors", "%d selectors OR-ed; a Herald pool has one serviceSelector; pool not written (merge them into one, e.g. with an In expression)", len(sa.ServiceSelectors))
			return nil, nil
		}
		sel := &metav1.LabelSelector{}
		if len(sa.ServiceSelectors) == 1 {
			sel = sa.ServiceSelectors[0].DeepCopy()
		}
		if len(sa.Namespaces) > 0 {
			sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
				Key: "io.kubernetes.service.namespace", Operator: metav1.LabelSelectorOpIn, Values: slices.Clone(sa.Namespaces)})
		}
		if len(sel.MatchLabels) > 0 || len(sel.MatchExpressions) > 0 {
			if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
				n.lost(o, "spec.serviceAllocation", "invalid selector (%v); pool not written", err)
				return nil, nil
			}
			p.Spec.ServiceSelector = sel
		}
		if sa.Priority != 0 {
			n.lost(o, "spec.serviceAllocation.priority", "Herald takes the first matching pool by name, not by priority; name the pools in the order you want them tried")
		}
	}
	return p, nil
}

// metallbPoliciesOf translates one L2Advertisement: one policy, or one per
// node selector (MetalLB ORs them) and per advertised pool when it names
// only some pools. None when its meaning cannot be kept.
func metallbPoliciesOf(o Object, pools []translatedPool, n *notes) ([]heraldv1.L2AnnouncementPolicy, error) {
	var spec metallbL2Advertisement
	if err := decodeSpec(o, &spec, n); err != nil {
		return nil, err
	}
	base := heraldv1.L2AnnouncementPolicySpec{}
	for _, ifc := range spec.Interfaces {
		base.Interfaces = append(base.Interfaces, "^"+regexp.QuoteMeta(ifc)+"$")
	}

	// Which pools: all of the namespace's unless named or selected.
	var inNS []translatedPool
	for _, tp := range pools {
		if tp.src.Namespace == o.Namespace {
			inNS = append(inNS, tp)
		}
	}
	chosen := inNS
	if len(spec.IPAddressPools) > 0 || len(spec.IPAddressPoolSelectors) > 0 {
		chosen = nil
		var sels []labels.Selector
		for i := range spec.IPAddressPoolSelectors {
			s, err := metav1.LabelSelectorAsSelector(&spec.IPAddressPoolSelectors[i])
			if err != nil {
				n.lost(o, fmt.Sprintf("spec.ipAddressPoolSelectors[%d]", i), "invalid selector (%v); not written", err)
				return nil, nil
			}
			sels = append(sels, s)
		}
		for _, tp := range inNS {
			if slices.Contains(spec.IPAddressPools, tp.src.Name) || slices.ContainsFunc(sels, func(s labels.Selector) bool { return s.Matches(labels.Set(tp.src.Labels)) }) {
				chosen = append(chosen, tp)
			}
		}
		for _, name := range spec.IPAddressPools {
			if !slices.ContainsFunc(inNS, func(tp translatedPool) bool { return tp.src.Name == name }) {
				n.changed(o, "spec.ipAddressPools", "pool %q is not among the objects read; ignored", name)
			}
		}
	}
	// Herald's policies select Services, not pools. Naming every pool is
	// the same as naming none; naming some is kept only through the
	// pools' own serviceSelectors.
	var serviceSelectors []*metav1.LabelSelector // nil entry: every Service
	suffixes := []string{""}
	if len(chosen) < len(inNS) {
		serviceSelectors, suffixes = nil, nil
		for _, tp := range chosen {
			if tp.pool == nil {
				continue // not written: Herald hands out none of its addresses
			}
			if tp.pool.Spec.ServiceSelector == nil {
				n.lost(o, "spec.ipAddressPools", "advertises only some pools, and pool %q serves every Service: Herald's policies select Services, not pools, so this one would announce the other pools' addresses too; not written (give the pools serviceSelectors, then select the same Services here)", tp.src.Name)
				return nil, nil
			}
			serviceSelectors = append(serviceSelectors, tp.pool.Spec.ServiceSelector)
			suffixes = append(suffixes, "-"+tp.pool.Name)
			n.changed(o, "spec.ipAddressPools", "written as a policy for the Services that pool %q's serviceSelector matches: the same Services unless one of them got its address from another pool", tp.src.Name)
		}
		if len(serviceSelectors) == 0 {
			n.lost(o, "spec.ipAddressPools", "advertises no pool that was translated; not written")
			return nil, nil
		}
	} else {
		serviceSelectors = []*metav1.LabelSelector{nil}
	}
	nodeSelectors := []*metav1.LabelSelector{nil}
	nodeSuffixes := []string{""}
	if len(spec.NodeSelectors) > 0 {
		nodeSelectors, nodeSuffixes = nil, nil
		for i := range spec.NodeSelectors {
			if _, err := metav1.LabelSelectorAsSelector(&spec.NodeSelectors[i]); err != nil {
				n.lost(o, fmt.Sprintf("spec.nodeSelectors[%d]", i), "invalid selector (%v); not written", err)
				return nil, nil
			}
			nodeSelectors = append(nodeSelectors, spec.NodeSelectors[i].DeepCopy())
			if len(spec.NodeSelectors) > 1 {
				nodeSuffixes = append(nodeSuffixes, fmt.Sprintf("-nodes%d", i))
			} else {
				nodeSuffixes = append(nodeSuffixes, "")
			}
		}
		if len(spec.NodeSelectors) > 1 {
			n.changed(o, "spec.nodeSelectors", "%d node selectors OR-ed: written as one policy per selector (Herald ORs policies)", len(spec.NodeSelectors))
		}
	}
	var out []heraldv1.L2AnnouncementPolicy
	for i, ss := range serviceSelectors {
		for j, ns := range nodeSelectors {
			p := heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName(o.Name + suffixes[i] + nodeSuffixes[j])}}
			p.Spec = *base.DeepCopy()
			if ss != nil {
				p.Spec.ServiceSelector = ss.DeepCopy()
			}
			if ns != nil {
				p.Spec.NodeSelector = ns.DeepCopy()
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// policyName keeps a generated name within the 253 characters of an
// object name.
func policyName(s string) string {
	s = strings.ToLower(s)
	if len(s) > 253 {
		s = s[:253]
	}
	return strings.TrimRight(s, "-.")
}
