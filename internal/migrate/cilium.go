package migrate

import (
	"fmt"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// ciliumGroup is the API group of Cilium's objects.
const ciliumGroup = "cilium.io"

// ciliumPool is the part of a CiliumLoadBalancerIPPool's spec this package
// reads (cilium.io/v2alpha1 and v2).
type ciliumPool struct {
	Blocks []ciliumBlock `json:"blocks,omitempty"`
	// Cidrs is the older name of Blocks.
	Cidrs             []ciliumBlock         `json:"cidrs,omitempty"`
	ServiceSelector   *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	Disabled          bool                  `json:"disabled,omitempty"`
	AllowFirstLastIPs string                `json:"allowFirstLastIPs,omitempty"`
}

type ciliumBlock struct {
	CIDR  string `json:"cidr,omitempty"`
	Start string `json:"start,omitempty"`
	Stop  string `json:"stop,omitempty"`
}

// ciliumL2Policy is the part of a CiliumL2AnnouncementPolicy's spec this
// package reads.
type ciliumL2Policy struct {
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	NodeSelector    *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	Interfaces      []string              `json:"interfaces,omitempty"`
	ExternalIPs     bool                  `json:"externalIPs,omitempty"`
	LoadBalancerIPs bool                  `json:"loadBalancerIPs,omitempty"`
}

func fromCilium(objs []Object, n *notes) (Result, error) {
	var res Result
	for _, o := range objs {
		if o.group() != ciliumGroup {
			n.changed(o, "", "not Cilium configuration (%s); skipped", o.APIVersion)
			continue
		}
		switch {
		case o.Kind == "CiliumLoadBalancerIPPool":
			p, err := ciliumPoolOf(o, n)
			if err != nil {
				return Result{}, err
			}
			if p != nil {
				res.Pools = append(res.Pools, *p)
			}
		case o.Kind == "CiliumL2AnnouncementPolicy":
			p, err := ciliumPolicyOf(o, n)
			if err != nil {
				return Result{}, err
			}
			if p != nil {
				res.Policies = append(res.Policies, *p)
			}
		case strings.HasPrefix(o.Kind, "CiliumBGP"):
			n.lost(o, "", "Herald does not speak BGP yet; not translated")
		default:
			n.changed(o, "", "not LB-IPAM or L2 announcement configuration; skipped")
		}
	}
	return res, nil
}

// ciliumPoolOf translates one CiliumLoadBalancerIPPool; nil when it cannot
// be written.
func ciliumPoolOf(o Object, n *notes) (*heraldv1.LoadBalancerIPPool, error) {
	var spec ciliumPool
	if err := decodeSpec(o, &spec, n); err != nil {
		return nil, err
	}
	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: o.Name}}
	blocks, field := spec.Blocks, "spec.blocks"
	if len(blocks) == 0 {
		blocks, field = spec.Cidrs, "spec.cidrs"
	} else if len(spec.Cidrs) > 0 {
		n.changed(o, "spec.cidrs", "both blocks and the older cidrs are set; both translated")
		blocks = append(append([]ciliumBlock(nil), spec.Blocks...), spec.Cidrs...)
	}
	for i, cb := range blocks {
		f := fmt.Sprintf("%s[%d]", field, i)
		var b block
		var err error
		switch {
		case cb.CIDR != "" && cb.Start == "" && cb.Stop == "":
			var masked bool
			b, masked, err = parseCIDR(cb.CIDR)
			if err == nil && masked {
				n.changed(o, f, "%q has host bits set; written as %s", cb.CIDR, b.prefix)
			}
		case cb.CIDR == "" && cb.Start != "":
			b, err = parseRange(cb.Start, cb.Stop)
		default:
			err = fmt.Errorf("want a cidr, or a start and an optional stop")
		}
		if err != nil {
			n.lost(o, f, "%v; pool not written", err)
			return nil, nil
		}
		p.Spec.Blocks = append(p.Spec.Blocks, b.herald())
	}
	if len(p.Spec.Blocks) == 0 {
		n.lost(o, "spec.blocks", "no blocks; pool not written")
		return nil, nil
	}
	if len(p.Spec.Blocks) > 128 {
		n.lost(o, "spec.blocks", "%d blocks, more than a Herald pool holds (128); pool not written", len(p.Spec.Blocks))
		return nil, nil
	}
	// Cilium hands out a CIDR's first and last addresses unless
	// allowFirstLastIPs is "No"; Herald reserves them unless it is true.
	switch strings.ToLower(spec.AllowFirstLastIPs) {
	case "", "yes":
		p.Spec.AllowFirstLastIPs = true
	case "no":
	default:
		n.lost(o, "spec.allowFirstLastIPs", "%q is neither Yes nor No; pool not written", spec.AllowFirstLastIPs)
		return nil, nil
	}
	if spec.ServiceSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(spec.ServiceSelector); err != nil {
			n.lost(o, "spec.serviceSelector", "invalid selector (%v); pool not written", err)
			return nil, nil
		}
		p.Spec.ServiceSelector = spec.ServiceSelector.DeepCopy()
	}
	p.Spec.Disabled = spec.Disabled
	return p, nil
}

// ciliumPolicyOf translates one CiliumL2AnnouncementPolicy; nil when it
// cannot be written.
func ciliumPolicyOf(o Object, n *notes) (*heraldv1.L2AnnouncementPolicy, error) {
	var spec ciliumL2Policy
	if err := decodeSpec(o, &spec, n); err != nil {
		return nil, err
	}
	p := &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: o.Name}}
	for i, re := range spec.Interfaces {
		// Cilium's interfaces are Go regular expressions too.
		if _, err := regexp.Compile(re); err != nil {
			n.lost(o, fmt.Sprintf("spec.interfaces[%d]", i), "invalid regular expression (%v); policy not written", err)
			return nil, nil
		}
		p.Spec.Interfaces = append(p.Spec.Interfaces, re)
	}
	for _, s := range []struct {
		field string
		sel   *metav1.LabelSelector
	}{{"spec.serviceSelector", spec.ServiceSelector}, {"spec.nodeSelector", spec.NodeSelector}} {
		if s.sel == nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(s.sel); err != nil {
			n.lost(o, s.field, "invalid selector (%v); policy not written", err)
			return nil, nil
		}
	}
	if spec.ServiceSelector != nil {
		p.Spec.ServiceSelector = spec.ServiceSelector.DeepCopy()
	}
	if spec.NodeSelector != nil {
		p.Spec.NodeSelector = spec.NodeSelector.DeepCopy()
	}
	p.Spec.ExternalIPs = spec.ExternalIPs
	lb := spec.LoadBalancerIPs
	p.Spec.LoadBalancerIPs = &lb
	if !lb {
		n.changed(o, "spec.loadBalancerIPs", "false (Cilium's default): written as false, so this policy announces no load-balancer address, as in Cilium; Herald's default is true")
	}
	return p, nil
}
