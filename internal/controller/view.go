package controller

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/ipam"
)

// Label keys that pool and policy selectors can use to match a Service's
// namespace and name (the same keys Cilium uses, so selectors carry over).
const (
	ServiceNamespaceLabel = "io.kubernetes.service.namespace"
	ServiceNameLabel      = "io.kubernetes.service.name"
)

// Class is the loadBalancerClass Herald serves. Services without a class are
// served too unless the controller runs with --default-class=false.
const Class = "herald.dev/l2"

// Serves reports whether svc is a LoadBalancer Service that Herald serves:
// of class herald.dev/l2, or of no class when defaultClass is set.
func Serves(svc *corev1.Service, defaultClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return defaultClass
	}
	return *svc.Spec.LoadBalancerClass == Class
}

// serviceKey is the queue key and allocator key of a Service.
func serviceKey(namespace, name string) string { return namespace + "/" + name }

// ServiceLabels returns svc's labels plus the synthetic namespace and name
// keys that selectors match against.
func ServiceLabels(svc *corev1.Service) map[string]string {
	out := make(map[string]string, len(svc.Labels)+2)
	for k, v := range svc.Labels {
		out[k] = v
	}
	out[ServiceNamespaceLabel] = svc.Namespace
	out[ServiceNameLabel] = svc.Name
	return out
}

// serviceView reduces a Service to what the allocator decides on. The error
// names the annotation or field that could not be read.
func serviceView(svc *corev1.Service) (ipam.Service, error) {
	req, err := ipam.ParseRequest(svc.Annotations, svc.Spec.LoadBalancerIP)
	if err != nil {
		return ipam.Service{}, err
	}
	return viewWithRequest(svc, req), nil
}

// viewWithRequest builds the view of svc with an already parsed request (an
// empty one when the Service's annotations cannot be read).
func viewWithRequest(svc *corev1.Service, req ipam.Request) ipam.Service {
	view := ipam.Service{
		Key:                serviceKey(svc.Namespace, svc.Name),
		Namespace:          svc.Namespace,
		Labels:             ServiceLabels(svc),
		Policy:             ipam.SingleStack,
		Requested:          req.Requested,
		Pool:               req.Pool,
		Sharing:            req.Sharing,
		TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Selector:           svc.Spec.Selector,
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		view.Policy = ipam.FamilyPolicy(*p)
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			view.Families = append(view.Families, ipam.IPv4)
		case corev1.IPv6Protocol:
			view.Families = append(view.Families, ipam.IPv6)
		}
	}
	if len(view.Families) == 0 {
		// The API server always fills ipFamilies; an object from elsewhere
		// may not have them. Derive them from the requested addresses, else
		// default to IPv4 like a single-stack IPv4 cluster would.
		for _, a := range req.Requested {
			view.Families = append(view.Families, ipam.FamilyOf(a))
		}
		if len(view.Families) == 0 {
			view.Families = []ipam.Family{ipam.IPv4}
		}
	}
	for _, p := range svc.Spec.Ports {
		view.Ports = append(view.Ports, ipam.Port{Protocol: string(p.Protocol), Port: p.Port})
	}
	return view
}

// ingressAddrs returns the addresses in svc's status.loadBalancer.ingress.
func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// LabelSelector adapts a Kubernetes label selector to the Matches method
// of ipam.Selector and announce.Selector.
type LabelSelector struct{ Selector labels.Selector }

// Matches reports whether the selector matches the given labels.
func (s LabelSelector) Matches(l map[string]string) bool { return s.Selector.Matches(labels.Set(l)) }

// poolView reduces a LoadBalancerIPPool to the allocator's view. The error
// names the block or field that cannot be used.
func poolView(p *heraldv1.LoadBalancerIPPool) (ipam.Pool, error) {
	view := ipam.Pool{
		Name:     p.Name,
		Disabled: p.Spec.Disabled,
		Created:  p.CreationTimestamp.Time,
	}
	for i, b := range p.Spec.Blocks {
		block, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, p.Spec.AllowFirstLastIPs)
		if err != nil {
			return ipam.Pool{}, fmt.Errorf("spec.blocks[%d]: %w", i, err)
		}
		view.Blocks = append(view.Blocks, block)
	}
	if p.Spec.ServiceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.ServiceSelector)
		if err != nil {
			return ipam.Pool{}, fmt.Errorf("spec.serviceSelector: %w", err)
		}
		view.Selector = LabelSelector{Selector: sel}
	}
	return view, nil
}

// nodeAddresses lists the InternalIP and ExternalIP addresses of nodes, in a
// stable order.
func nodeAddresses(nodes []corev1.Node) []ipam.NodeAddress {
	var out []ipam.NodeAddress
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			addr, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			out = append(out, ipam.NodeAddress{Node: n.Name, Addr: addr.Unmap()})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	return out
}
