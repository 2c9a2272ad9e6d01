package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/kube"
)

func TestTrimForCache(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	lbSpec := func() corev1.ServiceSpec {
		return corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:     ptr.To(kube.Class),
			Selector:              map[string]string{"app": "web"},
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			ExternalIPs:           []string{"192.0.2.1"},
			SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](10)}},
		}
	}
	ingress := corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.168.10.75"}}},
		Conditions: []metav1.Condition{{Type: kube.ConditionAnnounced, Status: metav1.ConditionTrue}}}
	tests := []struct {
		name     string
		in, want any
	}{{
		name: "load-balancer Service keeps what decides announcing and forwarding",
		in: &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", ResourceVersion: "7", ManagedFields: managed,
				Labels: map[string]string{"tier": "front"},
				Annotations: map[string]string{
					"kubectl.kubernetes.io/last-applied-configuration": `{"big":"copy"}`,
					kube.AnnouncedAnnotation:                           "192.168.10.75",
					"herald.dev/pool":                                  "default",
				}},
			Spec:   lbSpec(),
			Status: ingress,
		},
		want: &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", ResourceVersion: "7",
				Labels:      map[string]string{"tier": "front"},
				Annotations: map[string]string{kube.AnnouncedAnnotation: "192.168.10.75", "herald.dev/pool": "default"}},
			Spec: func() corev1.ServiceSpec {
				s := lbSpec()
				s.Selector, s.SessionAffinityConfig = nil, nil
				return s
			}(),
			Status: corev1.ServiceStatus{LoadBalancer: ingress.LoadBalancer},
		},
	}, {
		name: "any other Service keeps only its type",
		in: &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", Labels: map[string]string{"a": "b"},
				Annotations: map[string]string{"x": "y"}, ManagedFields: managed},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", Selector: map[string]string{"app": "db"},
				Ports: []corev1.ServicePort{{Port: 5432}}},
		},
		want: &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP},
		},
	}, {
		name: "EndpointSlice keeps addresses, readiness, nodes and ports",
		in: &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-abc", ManagedFields: managed,
				Labels:      map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
				Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-11-30T00:00:00Z"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{"10.244.1.10"},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
				NodeName:   ptr.To("n1"),
				Hostname:   ptr.To("web-0"),
				Zone:       ptr.To("a"),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "web-0", UID: "u"},
				Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}}},
			}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}},
		},
		want: &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{"10.244.1.10"},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
				NodeName:   ptr.To("n1"),
			}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}},
		},
	}, {
		name: "other objects lose only managedFields",
		in:   &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}, ManagedFields: managed}},
		want: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trimForCache(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("trimmed object (-want +got):\n%s", d)
			}
		})
	}
}
