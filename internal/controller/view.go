package controller

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
)

// serviceKey is the queue key and allocator key of a Service.
func serviceKey(namespace, name string) string { return namespace + "/" + name }

// serviceView reduces a Service to what the allocator decides on. The error
// names the annotation or field that could not be read.
func serviceView(svc *corev1.Service) (ipam.Service, error) {
	req, err := ipam.ParseRequest(svc.Annotations, svc.Spec.LoadBalancerIP)
	if err != nil {
		return ipam.Service{}, err
	}
	return kube.AllocatorService(svc, req), nil
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
		view.Selector = kube.LabelSelector{Selector: sel}
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
