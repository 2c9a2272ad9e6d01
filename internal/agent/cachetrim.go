package agent

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trimForCache drops what the agent never reads from an object before its
// informer stores it. Every node caches every Service and EndpointSlice of
// the cluster, so at thousands of Services these fields are most of the
// agent's memory: managedFields, kubectl's last-applied-configuration
// annotation (a second copy of the object), the endpoints' targetRef,
// hostname, zone and hints. A Service that is not of type LoadBalancer
// keeps only what tells that it is not one.
//
// The agent never writes a cached object back, so nothing is lost: the
// controller, which does write Services, has its own cache.
func trimForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	switch o := obj.(type) {
	case *corev1.Service:
		trimService(o)
	case *discoveryv1.EndpointSlice:
		trimEndpointSlice(o)
	}
	return obj, nil
}

// trimService keeps of a Service its identity, labels (policies select on
// them), Herald's annotations, and the spec and status fields that decide
// announcing and forwarding.
func trimService(svc *corev1.Service) {
	svc.Annotations = heraldAnnotations(svc.Annotations)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		svc.Spec = corev1.ServiceSpec{Type: svc.Spec.Type}
		svc.Status = corev1.ServiceStatus{}
		svc.Labels = nil
		return
	}
	svc.Spec.Selector = nil
	svc.Spec.SessionAffinityConfig = nil
	svc.Status.Conditions = nil
}

// heraldAnnotations returns the herald.dev/ annotations of m, nil if none.
func heraldAnnotations(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, "herald.dev/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// trimEndpointSlice keeps of each endpoint its addresses, readiness and
// node, and of the slice its service-name label, address type and ports.
func trimEndpointSlice(s *discoveryv1.EndpointSlice) {
	s.Annotations = nil
	if name, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		s.Labels = map[string]string{discoveryv1.LabelServiceName: name}
	} else {
		s.Labels = nil
	}
	for i := range s.Endpoints {
		ep := &s.Endpoints[i]
		ep.TargetRef = nil
		ep.Hostname = nil
		ep.Zone = nil
		ep.Hints = nil
		ep.DeprecatedTopology = nil
	}
}
