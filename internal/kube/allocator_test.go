package kube

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/ipam"
)

func TestAllocatorService(t *testing.T) {
	v6 := netip.MustParseAddr("fd00:10::75")
	base := func(mod func(*corev1.Service)) *corev1.Service {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"app": "web"},
				Annotations: map[string]string{AnnouncedAnnotation: "192.168.10.75"}},
			Spec: corev1.ServiceSpec{
				Type:                  corev1.ServiceTypeLoadBalancer,
				Selector:              map[string]string{"app": "web"},
				Ports:                 []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			},
			// Announced once and still held: the allocator keeps it.
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.168.10.75"}}}},
		}
		if mod != nil {
			mod(svc)
		}
		return svc
	}
	want := func(mod func(*ipam.Service)) ipam.Service {
		v := ipam.Service{
			Key: "ns/web", Namespace: "ns",
			Labels:             map[string]string{"app": "web", ServiceNamespaceLabel: "ns", ServiceNameLabel: "web"},
			Policy:             ipam.SingleStack,
			Families:           []ipam.Family{ipam.IPv4},
			TrafficPolicyLocal: true,
			Selector:           map[string]string{"app": "web"},
			Announced:          []netip.Addr{netip.MustParseAddr("192.168.10.75")},
			Ports:              []ipam.Port{{Protocol: "TCP", Port: 80}},
		}
		if mod != nil {
			mod(&v)
		}
		return v
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		req  ipam.Request
		want ipam.Service
	}{{
		name: "families from the spec, dual-stack policy",
		svc: base(func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}),
		want: want(func(v *ipam.Service) {
			v.Policy = ipam.FamilyPolicy(corev1.IPFamilyPolicyRequireDualStack)
			v.Families = []ipam.Family{ipam.IPv6, ipam.IPv4}
		}),
	}, {
		name: "no families in the object: from the requested address",
		svc:  base(nil),
		req:  ipam.Request{Requested: []netip.Addr{v6}, Pool: "lan"},
		want: want(func(v *ipam.Service) {
			v.Families = []ipam.Family{ipam.IPv6}
			v.Requested = []netip.Addr{v6}
			v.Pool = "lan"
		}),
	}, {
		name: "no families and nothing requested: IPv4",
		svc:  base(nil),
		want: want(nil),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, AllocatorService(tt.svc, tt.req), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("AllocatorService (-want +got):\n%s", d)
			}
		})
	}
}
