package controller

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
)

func TestServes(t *testing.T) {
	lb := func(class *string) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class}}
	}
	cases := []struct {
		name         string
		svc          *corev1.Service
		defaultClass bool
		want         bool
	}{
		{"no class, default on", lb(nil), true, true},
		{"no class, default off", lb(nil), false, false},
		{"herald class, default off", lb(ptr.To(kube.Class)), false, true},
		{"foreign class", lb(ptr.To("example.com/other")), true, false},
		{"cluster IP", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}, true, false},
		{"node port", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}, true, false},
	}
	for _, c := range cases {
		if got := kube.Serves(c.svc, c.defaultClass); got != c.want {
			t.Errorf("%s: isHerald = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestServiceView(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "web", Name: "nginx", Labels: map[string]string{"tier": "gold"},
			Annotations: map[string]string{
				"herald.dev/ips":         "192.168.10.77, 2001:db8::77",
				"herald.dev/pool":        "blue",
				"herald.dev/sharing-key": "k",
			},
		},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			IPFamilies:            []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              map[string]string{"app": "nginx"},
			Ports:                 []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	v, err := serviceView(svc)
	if err != nil {
		t.Fatal(err)
	}
	want := ipam.Service{
		Key:       "web/nginx",
		Namespace: "web",
		Labels:    map[string]string{"tier": "gold", kube.ServiceNamespaceLabel: "web", kube.ServiceNameLabel: "nginx"},
		Families:  []ipam.Family{ipam.IPv6, ipam.IPv4},
		Policy:    ipam.RequireDualStack,
		Requested: []netip.Addr{netip.MustParseAddr("192.168.10.77"), netip.MustParseAddr("2001:db8::77")},
		Pool:      "blue",
		Sharing:   &ipam.Sharing{Key: "k"},
		Ports:     []ipam.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}},

		TrafficPolicyLocal: true,
		Selector:           map[string]string{"app": "nginx"},
	}
	if v.Sharing != nil {
		v.Sharing.AllowNamespaces = nil // normalised by ipam; not what this test is about
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("view =\n%+v\nwant\n%+v", v, want)
	}
	if svc.Labels[kube.ServiceNameLabel] != "" {
		t.Errorf("serviceView must not modify the Service's labels")
	}

	svc.Annotations["herald.dev/ips"] = "nope"
	if _, err := serviceView(svc); err == nil || !strings.Contains(err.Error(), "herald.dev/ips") {
		t.Errorf("bad annotation: err = %v, want one naming herald.dev/ips", err)
	}

	// Without ipFamilies (an object not defaulted by an API server) the
	// families come from the requested addresses, else IPv4.
	bare := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b"}}
	if v, _ := serviceView(bare); !reflect.DeepEqual(v.Families, []ipam.Family{ipam.IPv4}) || v.Policy != ipam.SingleStack {
		t.Errorf("bare service: families %v policy %v", v.Families, v.Policy)
	}
	bare.Spec.LoadBalancerIP = "2001:db8::1"
	if v, _ := serviceView(bare); !reflect.DeepEqual(v.Families, []ipam.Family{ipam.IPv6}) {
		t.Errorf("bare service asking for IPv6: families %v", v.Families)
	}
}

func TestPoolView(t *testing.T) {
	p := &heraldv1.LoadBalancerIPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{
			Blocks:          []heraldv1.IPBlock{{CIDR: "10.0.0.0/30"}, {Start: "10.1.0.1", Stop: "10.1.0.3"}},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}},
		},
	}
	v, err := poolView(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Blocks) != 2 || v.Blocks[0].First != netip.MustParseAddr("10.0.0.1") || v.Blocks[0].Last != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("blocks = %v (first and last of a CIDR are excluded by default)", v.Blocks)
	}
	if !v.Selector.Matches(map[string]string{"tier": "gold"}) || v.Selector.Matches(map[string]string{"tier": "tin"}) {
		t.Errorf("selector does not follow matchLabels")
	}

	p.Spec.Blocks[1].Stop = "10.1.0.0"
	if _, err := poolView(p); err == nil || !strings.Contains(err.Error(), "spec.blocks[1]") {
		t.Errorf("start > stop: err = %v, want one naming spec.blocks[1]", err)
	}
	p.Spec.Blocks[1].Stop = ""
	p.Spec.ServiceSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}
	if _, err := poolView(p); err == nil || !strings.Contains(err.Error(), "spec.serviceSelector") {
		t.Errorf("bad selector: err = %v, want one naming spec.serviceSelector", err)
	}
}

func TestNodeAddresses(t *testing.T) {
	nodes := []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "node1"},
			{Type: corev1.NodeInternalIP, Address: "192.168.10.216"},
			{Type: corev1.NodeInternalIP, Address: "garbage"},
		}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "cp1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeExternalIP, Address: "2001:db8::215"},
			{Type: corev1.NodeInternalIP, Address: "192.168.10.215"},
		}}},
	}
	got := nodeAddresses(nodes)
	want := []ipam.NodeAddress{
		{Node: "cp1", Addr: netip.MustParseAddr("192.168.10.215")},
		{Node: "cp1", Addr: netip.MustParseAddr("2001:db8::215")},
		{Node: "node1", Addr: netip.MustParseAddr("192.168.10.216")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nodeAddresses = %v, want %v", got, want)
	}
}
