// Package kube is the Kubernetes vocabulary the controller and the agent
// share: the scheme, which Services Herald serves, the labels selectors see,
// and the names of the conditions, reasons and annotations both read or
// write. It holds no logic of either part, so neither imports the other.
package kube

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
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

// ExcludeFromLBLabel is the Kubernetes convention for nodes that must not
// carry load-balancer traffic. Herald's agents honour it unless told not to;
// Talos ≥ 1.8 sets it on every control-plane node.
const ExcludeFromLBLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Service conditions. The controller is their only writer: it owns
// IPAllocated (from the allocator) and Announced (from the agents'
// HeraldNode statuses).
const (
	// ConditionIPAllocated is True when the Service has its addresses.
	ConditionIPAllocated = "herald.dev/IPAllocated"
	// ConditionAnnounced is True when some node answers ARP/NDP for the
	// Service's addresses; when False its reason says why none does.
	ConditionAnnounced = "herald.dev/Announced"
)

// AnnouncedAnnotation lists (comma-separated) the Service's addresses that
// some node has announced at least once. The controller writes it (and only
// adds to it while the Service keeps the address); it is what makes an
// announced address permanent: a probe that later finds another host on it
// never moves the Service (the owner defends it instead), and agents do not
// probe such an address before answering.
const AnnouncedAnnotation = "herald.dev/announced-ips"

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

// LabelSelector adapts a Kubernetes label selector to the Matches method
// of ipam.Selector and announce.Selector.
type LabelSelector struct{ Selector labels.Selector }

// Matches reports whether the selector matches the given labels.
func (s LabelSelector) Matches(l map[string]string) bool { return s.Selector.Matches(labels.Set(l)) }

// Scheme returns a runtime.Scheme with the Kubernetes built-in types and
// Herald's API.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register Kubernetes types: %w", err)
	}
	if err := heraldv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register Herald types: %w", err)
	}
	return s, nil
}
