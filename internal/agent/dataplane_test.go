package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/dataplane"
	"github.com/herald-lb/herald/internal/netnstest"
)

func TestDataplaneServices(t *testing.T) {
	lb := func(name string, ips []string, mutate ...func(*corev1.Service)) corev1.Service {
		s := corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{
				Type:  corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			},
		}
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		for _, m := range mutate {
			m(&s)
		}
		return s
	}
	slice := func(svc string, family discoveryv1.AddressType, port int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
		return discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svc + "-" + string(family), Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: family,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   eps,
		}
	}
	ep := func(addr, node string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	}
	a := netip.MustParseAddr
	svcs := []corev1.Service{
		lb("web", []string{"192.168.10.75", "fd00:10::75"}),
		lb("local", []string{"192.168.10.76"}, func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }),
		lb("foreign", []string{"192.168.10.77"}, func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") }),
		lb("pending", nil),
	}
	eps := []discoveryv1.EndpointSlice{
		slice("web", discoveryv1.AddressTypeIPv4, 8080, ep("10.244.1.5", "n1", true), ep("10.244.2.5", "n2", true), ep("10.244.3.5", "n3", false)),
		slice("web", discoveryv1.AddressTypeIPv6, 8080, ep("fd00:244::5", "n2", true)),
		slice("local", discoveryv1.AddressTypeIPv4, 9090, ep("10.244.1.6", "n1", true)),
		slice("foreign", discoveryv1.AddressTypeIPv4, 80, ep("10.244.1.7", "n1", true)),
	}
	got := dataplaneServices(svcs, eps, "n1", true)
	want := []dataplane.Service{
		{Key: "ns/local:192.168.10.76:80/TCP", VIP: a("192.168.10.76"), Port: 80, Protocol: "TCP", TrafficPolicyLocal: true,
			Endpoints: []dataplane.Endpoint{{Addr: a("10.244.1.6"), Port: 9090, Local: true}}},
		{Key: "ns/web:192.168.10.75:80/TCP", VIP: a("192.168.10.75"), Port: 80, Protocol: "TCP",
			Endpoints: []dataplane.Endpoint{{Addr: a("10.244.1.5"), Port: 8080, Local: true}, {Addr: a("10.244.2.5"), Port: 8080}}},
		{Key: "ns/web:fd00:10::75:80/TCP", VIP: a("fd00:10::75"), Port: 80, Protocol: "TCP",
			Endpoints: []dataplane.Endpoint{{Addr: a("fd00:244::5"), Port: 8080}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dataplaneServices =\n%+v\nwant\n%+v", got, want)
	}
	if !sameDataplane(got, want) {
		t.Error("sameDataplane(x, x) = false")
	}
	changed := dataplaneServices(svcs, eps[1:], "n1", true)
	if sameDataplane(got, changed) {
		t.Error("sameDataplane missed an endpoint change")
	}
}

func TestParseDataplaneMode(t *testing.T) {
	for in, want := range map[string]DataplaneMode{"": DataplaneNone, "none": DataplaneNone, "nftables": DataplaneNFTables, "auto": DataplaneAuto} {
		if got, err := ParseDataplaneMode(in); err != nil || got != want {
			t.Errorf("ParseDataplaneMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseDataplaneMode("iptables"); err == nil {
		t.Error("ParseDataplaneMode(iptables) should fail")
	}
}

// TestSyncDataplaneUpdatesChangedServices checks that the agent passes the
// table only the Services whose view changed, one group each (an empty
// view removes the group), and that a failed Update keeps them pending
// until a later one succeeds.
func TestSyncDataplaneUpdatesChangedServices(t *testing.T) {
	lan := netnstest.New(t, "herald-ag-", netnstest.Host{Role: "node"})
	h := lan.Handle("node")
	tbl, err := dataplane.Open(dataplane.Options{NetNS: &h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tbl.Close(true) })
	a := &Agent{log: slog.New(slog.DiscardHandler), state: newPlanState(), table: tbl}
	// view sets a Service's view as refreshService does when it changed.
	view := func(key string, dp ...dataplane.Service) {
		if len(dp) > 0 {
			a.state.dataplane[key] = dp
		} else {
			delete(a.state.dataplane, key)
		}
		if a.dpDirty == nil {
			a.dpDirty = map[string]bool{}
		}
		a.dpDirty[key] = true
	}
	svc := func(key, vip string, ports ...uint16) dataplane.Service {
		s := dataplane.Service{Key: key, VIP: netip.MustParseAddr(vip), Port: 80, Protocol: "TCP"}
		for _, p := range ports {
			s.Endpoints = append(s.Endpoints, dataplane.Endpoint{Addr: netip.MustParseAddr("10.244.1.5"), Port: p})
		}
		return s
	}
	listed := func() string {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", lan.Namespace("node"), "nft", "list", "table", "inet", dataplane.DefaultTableName).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table: %v %s", err, out)
		}
		return string(out)
	}
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	view("ns/a", svc("ns/a:192.168.10.75:80/TCP", "192.168.10.75", 8080))
	view("ns/b", svc("ns/b:192.168.10.76:80/TCP", "192.168.10.76", 8080), svc("ns/b:192.168.10.77:80/TCP", "192.168.10.77"))
	a.syncDataplane(ctx)
	if len(a.dpDirty) != 0 || !a.dpFailed.IsZero() {
		t.Fatalf("after a successful Update: pending %v, failed at %v", a.dpDirty, a.dpFailed)
	}
	if s := tbl.Stats(); s.FullSyncs != 1 {
		t.Fatalf("stats %+v after the first Update, want one full replacement", s)
	}

	// A failed Update keeps its Services pending; the retry programs them.
	view("ns/a", svc("ns/a:192.168.10.75:80/TCP", "192.168.10.75", 8080, 8081))
	view("ns/b")
	a.syncDataplane(cancelled)
	if !a.dpDirty["ns/a"] || !a.dpDirty["ns/b"] || a.dpFailed.IsZero() {
		t.Fatalf("after a failed Update: pending %v, failed at %v; want ns/a and ns/b pending and a failure time", a.dpDirty, a.dpFailed)
	}
	if out := listed(); !strings.Contains(out, "ns/b:") {
		t.Fatalf("a failed Update changed the table:\n%s", out)
	}
	before := tbl.Stats()
	a.syncDataplane(ctx)
	if len(a.dpDirty) != 0 || !a.dpFailed.IsZero() {
		t.Fatalf("after the retry: pending %v, failed at %v", a.dpDirty, a.dpFailed)
	}
	if s := tbl.Stats(); s.IncrementalSyncs != before.IncrementalSyncs+1 || s.FullSyncs != before.FullSyncs {
		t.Errorf("stats %+v then %+v: want one incremental Update", before, s)
	}
	out := listed()
	if strings.Contains(out, "ns/b:") || !strings.Contains(out, "ns/a:") || !strings.Contains(out, "10.244.1.5 . 8081") {
		t.Errorf("after the retry the table does not hold ns/a with two endpoints and no ns/b:\n%s", out)
	}

	// Nothing pending: nothing to do, not even a call.
	before = tbl.Stats()
	a.syncDataplane(ctx)
	if s := tbl.Stats(); s != before {
		t.Errorf("nothing pending, yet the table was called: %+v then %+v", before, s)
	}
}
