package kube

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
)

// PolicyView reduces an L2AnnouncementPolicy to what node (nil: unknown,
// so a nodeSelector matches nothing) decides on. The error names the field
// that cannot be used; such a policy selects nothing.
func PolicyView(p *heraldv1.L2AnnouncementPolicy, node *corev1.Node) (announce.Policy, error) {
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
		view.Services = LabelSelector{Selector: sel}
	}
	return view, nil
}

// AnnounceService reduces a Service to what announcing needs. ok is false for
// a Service with nothing Herald could announce.
func AnnounceService(svc *corev1.Service, defaultClass bool, localReady bool) (announce.Service, bool) {
	view := announce.Service{
		Key:                svc.Namespace + "/" + svc.Name,
		Labels:             ServiceLabels(svc),
		TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		LocalReadyEndpoint: localReady,
	}
	if Serves(svc, defaultClass) {
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

// AnnouncedAddrs are the addresses of svc that the controller recorded as
// announced once (AnnouncedAnnotation) and that svc still holds.
func AnnouncedAddrs(svc *corev1.Service) []netip.Addr {
	v := svc.Annotations[AnnouncedAnnotation]
	if v == "" {
		return nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			continue
		}
		a = a.Unmap()
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if b, err := netip.ParseAddr(in.IP); err == nil && b.Unmap() == a {
				out = append(out, a)
				break
			}
		}
	}
	return out
}
