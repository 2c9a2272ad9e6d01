package agent

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/kube"
)

// policyView reduces an L2AnnouncementPolicy to what this node decides on.
// The error names the field that cannot be used; such a policy is skipped.
func policyView(p *heraldv1.L2AnnouncementPolicy, node *corev1.Node) (announce.Policy, error) {
	view := announce.Policy{
		Name:            p.Name,
		LoadBalancerIPs: p.Spec.AnnouncesLoadBalancerIPs(),
		ExternalIPs:     p.Spec.ExternalIPs,
	}
	for i, pat := range p.Spec.Interfaces {
		re, err := regexp.Compile(pat)
		if err != nil {
			return announce.Policy{}, fmt.Errorf("spec.interfaces[%d]: %w", i, err)
		}
		view.Interfaces = append(view.Interfaces, re)
	}
	view.SelectsNode = true
	if p.Spec.NodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.NodeSelector)
		if err != nil {
			return announce.Policy{}, fmt.Errorf("spec.nodeSelector: %w", err)
		}
		view.SelectsNode = node != nil && sel.Matches(labels.Set(node.Labels))
	}
	if p.Spec.ServiceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.ServiceSelector)
		if err != nil {
			return announce.Policy{}, fmt.Errorf("spec.serviceSelector: %w", err)
		}
		view.Services = kube.LabelSelector{Selector: sel}
	}
	return view, nil
}

// serviceView reduces a Service to what announcing needs. ok is false for
// a Service with nothing Herald could announce.
func serviceView(svc *corev1.Service, defaultClass bool, localReady bool) (announce.Service, bool) {
	view := announce.Service{
		Key:                svc.Namespace + "/" + svc.Name,
		Labels:             kube.ServiceLabels(svc),
		TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		LocalReadyEndpoint: localReady,
	}
	if kube.Serves(svc, defaultClass) {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				view.LoadBalancerIPs = append(view.LoadBalancerIPs, a.Unmap())
			}
		}
	}
	for _, s := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			view.ExternalIPs = append(view.ExternalIPs, a.Unmap())
		}
	}
	return view, len(view.LoadBalancerIPs)+len(view.ExternalIPs) > 0
}

// localReadyServices returns the keys ("ns/name") of Services with a ready
// endpoint on node, from their EndpointSlices.
func localReadyServices(slices []discoveryv1.EndpointSlice, node string) map[string]bool {
	out := map[string]bool{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName != node {
				continue
			}
			// Ready unset means ready, per the EndpointSlice API.
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				out[s.Namespace+"/"+name] = true
				break
			}
		}
	}
	return out
}

// sortedAddrs returns the keys of set in address order.
func sortedAddrs(set map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(set))
	for a, ok := range set {
		if ok {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
