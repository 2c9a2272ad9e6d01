package kube

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/herald-lb/herald/internal/ipam"
)

// AllocatorService reduces svc to what the allocator decides on, with an
// already parsed request (ipam.ParseRequest of its annotations; an empty
// one when they cannot be read). The controller allocates with it and
// `herald explain` asks ipam.FitPool with it, so the two never disagree
// on which pools may serve a Service.
func AllocatorService(svc *corev1.Service, req ipam.Request) ipam.Service {
	view := ipam.Service{
		Key:                svc.Namespace + "/" + svc.Name,
		Namespace:          svc.Namespace,
		Labels:             ServiceLabels(svc),
		Policy:             ipam.SingleStack,
		Requested:          req.Requested,
		Pool:               req.Pool,
		Sharing:            req.Sharing,
		TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Selector:           svc.Spec.Selector,
		Announced:          AnnouncedAddrs(svc),
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
