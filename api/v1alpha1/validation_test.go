package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/testenv"
)

// shared is the real etcd + kube-apiserver, with Herald's CRDs, that
// decides what is valid.
var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{filepath.Join("..", "..", "config", "crd")}})

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

func newClient(t *testing.T) client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real API server; run without -short")
	}
	s := runtime.NewScheme()
	if err := heraldv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(shared.Env(t).Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// The API server itself refuses bad pools, naming the field; good pools of
// every accepted shape are stored.
func TestPoolValidation(t *testing.T) {
	cl := newClient(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		blocks []heraldv1.IPBlock
		// wantErr lists substrings of the API server's answer; empty means
		// the pool must be accepted.
		wantErr []string
	}{
		{"tutorial range", []heraldv1.IPBlock{{Start: "192.168.10.75", Stop: "192.168.10.78"}}, nil},
		{"lone start", []heraldv1.IPBlock{{Start: "192.168.10.80"}}, nil},
		{"ipv4 cidr", []heraldv1.IPBlock{{CIDR: "192.168.10.0/24"}}, nil},
		{"ipv6 cidr", []heraldv1.IPBlock{{CIDR: "2001:db8:10::/64"}}, nil},
		{"ipv6 range", []heraldv1.IPBlock{{Start: "2001:db8::1", Stop: "2001:db8::ff"}}, nil},
		{"ipv6 range across ::", []heraldv1.IPBlock{{Start: "2001:db8::ffff", Stop: "2001:db8:0:0:1::"}}, nil},
		{"ipv6 upper case", []heraldv1.IPBlock{{Start: "2001:DB8::A", Stop: "2001:db8::b"}}, nil},
		{"equal start and stop", []heraldv1.IPBlock{{Start: "10.0.0.1", Stop: "10.0.0.1"}}, nil},
		{"octet order not string order", []heraldv1.IPBlock{{Start: "10.0.0.9", Stop: "10.0.0.10"}}, nil},

		{"no blocks", []heraldv1.IPBlock{}, []string{"spec.blocks"}},
		{"empty block", []heraldv1.IPBlock{{}}, []string{"spec.blocks[0]", "exactly one of cidr or start"}},
		{"cidr and start", []heraldv1.IPBlock{{CIDR: "10.0.0.0/24", Start: "10.0.0.1"}}, []string{"spec.blocks[0]", "exactly one of cidr or start"}},
		{"stop without start", []heraldv1.IPBlock{{CIDR: "10.0.0.0/24", Stop: "10.0.0.9"}}, []string{"spec.blocks[0].stop", "stop requires start"}},
		{"bad cidr", []heraldv1.IPBlock{{CIDR: "10.0.0.0/33"}}, []string{"spec.blocks[0].cidr", "must be a CIDR"}},
		{"cidr host bits", []heraldv1.IPBlock{{CIDR: "192.168.10.1/24"}}, []string{"spec.blocks[0].cidr", "must not have bits set after the prefix length"}},
		{"bad start", []heraldv1.IPBlock{{Start: "192.168.10.300"}}, []string{"spec.blocks[0].start", "must be an IPv4 or IPv6 address"}},
		{"bad stop", []heraldv1.IPBlock{{Start: "192.168.10.1", Stop: "nope"}}, []string{"spec.blocks[0].stop", "must be an IPv4 or IPv6 address"}},
		{"mixed families", []heraldv1.IPBlock{{Start: "192.168.10.1", Stop: "2001:db8::1"}}, []string{"spec.blocks[0].stop", "same IP family"}},
		{"start after stop v4", []heraldv1.IPBlock{{Start: "192.168.10.78", Stop: "192.168.10.75"}}, []string{"spec.blocks[0].stop", "start must not be greater than stop"}},
		{"start after stop v4 by octet", []heraldv1.IPBlock{{Start: "10.0.0.10", Stop: "10.0.0.9"}}, []string{"spec.blocks[0].stop", "start must not be greater than stop"}},
		{"start after stop v6", []heraldv1.IPBlock{{Start: "2001:db8::1:0", Stop: "2001:db8::ffff"}}, []string{"spec.blocks[0].stop", "start must not be greater than stop"}},
		{"start after stop v6 leading ::", []heraldv1.IPBlock{{Start: "::2", Stop: "::1"}}, []string{"spec.blocks[0].stop", "start must not be greater than stop"}},
		{"dotted ipv6", []heraldv1.IPBlock{{Start: "::1.2.3.4"}}, []string{"spec.blocks[0].start", "hexadecimal"}},
		{"second block named", []heraldv1.IPBlock{{CIDR: "10.0.0.0/24"}, {Start: "x"}}, []string{"spec.blocks[1].start"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &heraldv1.LoadBalancerIPPool{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("validation-%d", i)},
				Spec:       heraldv1.LoadBalancerIPPoolSpec{Blocks: c.blocks},
			}
			err := cl.Create(ctx, p)
			if err == nil {
				_ = cl.Delete(ctx, p)
			}
			if len(c.wantErr) == 0 {
				if err != nil {
					t.Fatalf("valid pool refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid pool accepted: %+v", c.blocks)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Interface regexes are checked at admission; loadBalancerIPs defaults on.
func TestPolicyValidation(t *testing.T) {
	cl := newClient(t)
	ctx := context.Background()
	good := &heraldv1.L2AnnouncementPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "good"},
		Spec:       heraldv1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth[0-9]+", "^enp0s.*"}},
	}
	if err := cl.Create(ctx, good); err != nil {
		t.Fatalf("valid policy refused: %v", err)
	}
	defer func() { _ = cl.Delete(ctx, good) }()
	if good.Spec.LoadBalancerIPs == nil || !*good.Spec.LoadBalancerIPs {
		t.Errorf("loadBalancerIPs should default to true")
	}
	bad := &heraldv1.L2AnnouncementPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec:       heraldv1.L2AnnouncementPolicySpec{Interfaces: []string{"^eth0$", "^eth[0-9"}},
	}
	err := cl.Create(ctx, bad)
	if err == nil {
		_ = cl.Delete(ctx, bad)
		t.Fatal("policy with an invalid regex accepted")
	}
	if !strings.Contains(err.Error(), "spec.interfaces") {
		t.Errorf("error %q should name spec.interfaces", err)
	}
	t.Logf("refused: %v", err)
}

// expectAdmission creates obj and checks the API server's answer: accepted
// when wantErr is empty, else refused as Invalid with every substring of
// wantErr in the message (the field's path and the rule's message).
func expectAdmission(t *testing.T, cl client.Client, obj client.Object, wantErr []string) {
	t.Helper()
	ctx := context.Background()
	err := cl.Create(ctx, obj)
	if err == nil {
		_ = cl.Delete(ctx, obj)
	}
	if len(wantErr) == 0 {
		if err != nil {
			t.Fatalf("valid %T refused: %v", obj, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("invalid %T accepted", obj)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error, got %v", err)
	}
	for _, w := range wantErr {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	t.Logf("refused: %v", err)
}

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }

// rawPeer is a BGPPeer written as plain JSON, to send durations the Go
// type cannot hold.
func rawPeer(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	return u
}

// A BGPPeer: each invalid field refused with the field named; defaults
// filled in.
func TestBGPPeerValidation(t *testing.T) {
	cl := newClient(t)
	ctx := context.Background()
	base := func() heraldv1.BGPPeerSpec {
		return heraldv1.BGPPeerSpec{Address: "192.168.20.1", PeerASN: 64512, LocalASN: 64513}
	}
	cases := []struct {
		name    string
		mutate  func(s *heraldv1.BGPPeerSpec)
		wantErr []string
	}{
		{"minimal", func(s *heraldv1.BGPPeerSpec) {}, nil},
		{"everything", func(s *heraldv1.BGPPeerSpec) {
			s.Port = 1179
			s.PasswordSecretRef = &heraldv1.SecretKeyRef{Name: "tor-a.passwords", Key: "tor_a-1.key"}
			s.HoldTime, s.KeepaliveTime, s.ConnectRetryTime = dur("9s"), dur("3s"), dur("1m")
			s.EBGPMultihop = i32(255)
			s.GracefulRestart = &heraldv1.BGPGracefulRestart{Enabled: true, RestartTime: dur("4095s")}
			s.BFD = &heraldv1.BGPBFD{MinTransmitInterval: i32(10), MinReceiveInterval: i32(60000), Multiplier: i32(255)}
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"topology.kubernetes.io/zone": "rack-a"}}
		}, nil},
		{"ipv6", func(s *heraldv1.BGPPeerSpec) { s.Address = "2001:db8:20::1" }, nil},
		{"4-byte ASNs, iBGP", func(s *heraldv1.BGPPeerSpec) { s.PeerASN, s.LocalASN = 4294967295, 4294967295 }, nil},
		{"hold 0 without keepalive", func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur("0s") }, nil},
		{"hold 0 keepalive 0", func(s *heraldv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur("0s"), dur("0s") }, nil},
		{"hold 3s", func(s *heraldv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur("3s"), dur("1s") }, nil},
		{"keepalive below default hold", func(s *heraldv1.BGPPeerSpec) { s.KeepaliveTime = dur("89s") }, nil},
		{"hold max", func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur("65535s") }, nil},

		{"no address", func(s *heraldv1.BGPPeerSpec) { s.Address = "" }, []string{"spec.address", "must be an IPv4 or IPv6 address"}},
		{"bad address", func(s *heraldv1.BGPPeerSpec) { s.Address = "192.168.20.300" }, []string{"spec.address", "must be an IPv4 or IPv6 address"}},
		{"cidr address", func(s *heraldv1.BGPPeerSpec) { s.Address = "192.168.20.1/24" }, []string{"spec.address", "must be an IPv4 or IPv6 address"}},
		{"dotted ipv6 address", func(s *heraldv1.BGPPeerSpec) { s.Address = "::ffff:192.168.20.1" }, []string{"spec.address"}},
		{"link-local address", func(s *heraldv1.BGPPeerSpec) { s.Address = "fe80::1" }, []string{"spec.address", "must be a unicast address"}},
		{"loopback address", func(s *heraldv1.BGPPeerSpec) { s.Address = "127.0.0.1" }, []string{"spec.address", "must be a unicast address"}},
		{"multicast address", func(s *heraldv1.BGPPeerSpec) { s.Address = "224.0.0.5" }, []string{"spec.address", "must be a unicast address"}},
		{"unspecified address", func(s *heraldv1.BGPPeerSpec) { s.Address = "::" }, []string{"spec.address", "must be a unicast address"}},
		{"peerASN 0", func(s *heraldv1.BGPPeerSpec) { s.PeerASN = 0 }, []string{"spec.peerASN"}},
		{"peerASN too big", func(s *heraldv1.BGPPeerSpec) { s.PeerASN = 4294967296 }, []string{"spec.peerASN", "4294967295"}},
		{"peerASN AS_TRANS", func(s *heraldv1.BGPPeerSpec) { s.PeerASN = 23456 }, []string{"spec.peerASN", "AS_TRANS"}},
		{"localASN 0", func(s *heraldv1.BGPPeerSpec) { s.LocalASN = -1 }, []string{"spec.localASN"}},
		{"localASN too big", func(s *heraldv1.BGPPeerSpec) { s.LocalASN = 1 << 32 }, []string{"spec.localASN"}},
		{"localASN AS_TRANS", func(s *heraldv1.BGPPeerSpec) { s.LocalASN = 23456 }, []string{"spec.localASN", "AS_TRANS"}},
		{"port 0 is the default", func(s *heraldv1.BGPPeerSpec) { s.Port = 0 }, nil},
		{"port too big", func(s *heraldv1.BGPPeerSpec) { s.Port = 65536 }, []string{"spec.port"}},
		{"port negative", func(s *heraldv1.BGPPeerSpec) { s.Port = -1 }, []string{"spec.port"}},
		{"secret without name", func(s *heraldv1.BGPPeerSpec) { s.PasswordSecretRef = &heraldv1.SecretKeyRef{} }, []string{"spec.passwordSecretRef.name"}},
		{"secret bad name", func(s *heraldv1.BGPPeerSpec) { s.PasswordSecretRef = &heraldv1.SecretKeyRef{Name: "Tor_A"} }, []string{"spec.passwordSecretRef.name", "must be a Secret's name"}},
		{"secret bad key", func(s *heraldv1.BGPPeerSpec) { s.PasswordSecretRef = &heraldv1.SecretKeyRef{Name: "tor", Key: "a/b"} }, []string{"spec.passwordSecretRef.key", "must be a Secret key"}},
		{"hold 1s", func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur("1s") }, []string{"spec.holdTime", "holdTime must be 0 or between 3s and 65535s"}},
		{"hold too long", func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur("65536s") }, []string{"spec.holdTime", "holdTime must be 0 or between 3s and 65535s"}},
		{"hold fraction", func(s *heraldv1.BGPPeerSpec) { s.HoldTime = dur("3.5s") }, []string{"spec.holdTime", "holdTime must be whole seconds"}},
		{"keepalive equal to hold", func(s *heraldv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur("9s"), dur("9s") }, []string{"spec.keepaliveTime", "keepaliveTime must be less than holdTime"}},
		{"keepalive above default hold", func(s *heraldv1.BGPPeerSpec) { s.KeepaliveTime = dur("90s") }, []string{"spec.keepaliveTime", "keepaliveTime must be less than holdTime"}},
		{"keepalive with hold 0", func(s *heraldv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur("0s"), dur("1s") }, []string{"spec.keepaliveTime", "0 when holdTime is 0"}},
		{"keepalive fraction", func(s *heraldv1.BGPPeerSpec) { s.KeepaliveTime = dur("1500ms") }, []string{"spec.keepaliveTime", "keepaliveTime must be whole seconds"}},
		{"connect retry 0", func(s *heraldv1.BGPPeerSpec) { s.ConnectRetryTime = dur("0s") }, []string{"spec.connectRetryTime", "connectRetryTime must be between 1s and 65535s"}},
		{"connect retry fraction", func(s *heraldv1.BGPPeerSpec) { s.ConnectRetryTime = dur("1.5s") }, []string{"spec.connectRetryTime", "connectRetryTime must be whole seconds"}},
		{"multihop 0", func(s *heraldv1.BGPPeerSpec) { s.EBGPMultihop = i32(0) }, []string{"spec.ebgpMultihop"}},
		{"multihop 256", func(s *heraldv1.BGPPeerSpec) { s.EBGPMultihop = i32(256) }, []string{"spec.ebgpMultihop"}},
		{"restart time 0", func(s *heraldv1.BGPPeerSpec) {
			s.GracefulRestart = &heraldv1.BGPGracefulRestart{Enabled: true, RestartTime: dur("0s")}
		}, []string{"spec.gracefulRestart.restartTime", "restartTime must be between 1s and 4095s"}},
		{"restart time too long", func(s *heraldv1.BGPPeerSpec) {
			s.GracefulRestart = &heraldv1.BGPGracefulRestart{Enabled: true, RestartTime: dur("4096s")}
		}, []string{"spec.gracefulRestart.restartTime", "restartTime must be between 1s and 4095s"}},
		{"bfd tx too fast", func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{MinTransmitInterval: i32(9)} }, []string{"spec.bfd.minTransmitInterval"}},
		{"bfd rx too slow", func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{MinReceiveInterval: i32(60001)} }, []string{"spec.bfd.minReceiveInterval"}},
		{"bfd multiplier 0", func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{Multiplier: i32(0)} }, []string{"spec.bfd.multiplier"}},
		{"bfd multiplier 256", func(s *heraldv1.BGPPeerSpec) { s.BFD = &heraldv1.BGPBFD{Multiplier: i32(256)} }, []string{"spec.bfd.multiplier"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := base()
			c.mutate(&spec)
			expectAdmission(t, cl, &heraldv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("peer-%d", i)}, Spec: spec}, c.wantErr)
		})
	}

	// Durations the Go type cannot even hold are refused by the pattern,
	// with no second, obscure CEL evaluation error.
	for i, c := range []struct{ field, value string }{
		{"holdTime", "90"}, {"holdTime", "-3s"}, {"keepaliveTime", "1 day"}, {"connectRetryTime", "1d"},
	} {
		t.Run("malformed "+c.field+" "+c.value, func(t *testing.T) {
			err := cl.Create(ctx, rawPeer(fmt.Sprintf("raw-%d", i), map[string]any{
				"address": "192.168.20.1", "peerASN": 64512, "localASN": 64513, c.field: c.value,
			}))
			if err == nil || !apierrors.IsInvalid(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), "spec."+c.field) || !strings.Contains(err.Error(), "should match") {
				t.Errorf("error %q should name spec.%s and its pattern", err, c.field)
			}
			if strings.Contains(err.Error(), "evaluat") {
				t.Errorf("error %q has a CEL evaluation error", err)
			}
		})
	}

	// Defaults: port 179, password key "password", BFD 300 ms × 3.
	p := &heraldv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: base()}
	p.Spec.PasswordSecretRef = &heraldv1.SecretKeyRef{Name: "tor"}
	p.Spec.BFD = &heraldv1.BGPBFD{}
	if err := cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Delete(ctx, p) }()
	if p.Spec.Port != 179 || p.Spec.PasswordSecretRef.Key != "password" ||
		p.Spec.BFD.MinTransmitInterval == nil || *p.Spec.BFD.MinTransmitInterval != 300 ||
		p.Spec.BFD.MinReceiveInterval == nil || *p.Spec.BFD.MinReceiveInterval != 300 ||
		p.Spec.BFD.Multiplier == nil || *p.Spec.BFD.Multiplier != 3 {
		t.Errorf("defaults not applied: %+v, secret %+v, bfd %+v", p.Spec, p.Spec.PasswordSecretRef, p.Spec.BFD)
	}
}

// A BGPAdvertisement: communities, large communities, local-pref and
// aggregation lengths checked, each refusal naming the item.
func TestBGPAdvertisementValidation(t *testing.T) {
	cl := newClient(t)
	ctx := context.Background()
	cases := []struct {
		name    string
		spec    heraldv1.BGPAdvertisementSpec
		wantErr []string
	}{
		{"empty", heraldv1.BGPAdvertisementSpec{}, nil},
		{"everything", heraldv1.BGPAdvertisementSpec{
			PoolSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"herald.dev/bgp": "true"}},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"io.kubernetes.service.namespace": "web"}},
			PeerSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}},
			NodeSelector:    &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "node-role.kubernetes.io/control-plane", Operator: metav1.LabelSelectorOpDoesNotExist}}},
			Communities: []heraldv1.BGPCommunity{"0:0", "65535:65535", "64512:100", "no-export", "no-advertise",
				"no-export-subconfed", "local-as", "no-peer", "blackhole"},
			LargeCommunities:    []heraldv1.BGPLargeCommunity{"0:0:0", "4294967294:4294967295:4294967295", "0429496729:1:1", "64512:1:100"},
			LocalPref:           i64(4294967295),
			AggregationLength:   i32(0),
			AggregationLengthV6: i32(64),
		}, nil},
		{"localPref 0", heraldv1.BGPAdvertisementSpec{LocalPref: i64(0)}, nil},

		{"community too big", heraldv1.BGPAdvertisementSpec{Communities: []heraldv1.BGPCommunity{"64512:100", "65536:1"}},
			[]string{"spec.communities[1]", "a community is two numbers from 0 to 65535"}},
		{"community one number", heraldv1.BGPAdvertisementSpec{Communities: []heraldv1.BGPCommunity{"100"}},
			[]string{"spec.communities[0]", "a community is two numbers"}},
		{"community three numbers", heraldv1.BGPAdvertisementSpec{Communities: []heraldv1.BGPCommunity{"1:2:3"}},
			[]string{"spec.communities[0]", "a community is two numbers"}},
		{"community unknown name", heraldv1.BGPAdvertisementSpec{Communities: []heraldv1.BGPCommunity{"no-exports"}},
			[]string{"spec.communities[0]", "no-export, no-advertise"}},
		{"community upper case", heraldv1.BGPAdvertisementSpec{Communities: []heraldv1.BGPCommunity{"NO-EXPORT"}},
			[]string{"spec.communities[0]"}},
		{"community empty", heraldv1.BGPAdvertisementSpec{Communities: []heraldv1.BGPCommunity{""}},
			[]string{"spec.communities[0]"}},
		{"large community too big", heraldv1.BGPAdvertisementSpec{LargeCommunities: []heraldv1.BGPLargeCommunity{"4294967296:1:1"}},
			[]string{"spec.largeCommunities[0]", "a large community is three numbers from 0 to 4294967295"}},
		{"large community two numbers", heraldv1.BGPAdvertisementSpec{LargeCommunities: []heraldv1.BGPLargeCommunity{"1:1:1", "64512:100"}},
			[]string{"spec.largeCommunities[1]", "a large community is three numbers"}},
		{"large community reserved administrator", heraldv1.BGPAdvertisementSpec{LargeCommunities: []heraldv1.BGPLargeCommunity{"64512:1:1", "4294967295:0:0"}},
			[]string{"spec.largeCommunities[1]", "the global administrator 4294967295 is reserved"}},
		{"large community signed", heraldv1.BGPAdvertisementSpec{LargeCommunities: []heraldv1.BGPLargeCommunity{"1:-1:1"}},
			[]string{"spec.largeCommunities[0]", "a large community is three numbers"}},
		{"localPref negative", heraldv1.BGPAdvertisementSpec{LocalPref: i64(-1)}, []string{"spec.localPref"}},
		{"localPref too big", heraldv1.BGPAdvertisementSpec{LocalPref: i64(1 << 32)}, []string{"spec.localPref"}},
		{"aggregation 33", heraldv1.BGPAdvertisementSpec{AggregationLength: i32(33)}, []string{"spec.aggregationLength"}},
		{"aggregation negative", heraldv1.BGPAdvertisementSpec{AggregationLength: i32(-1)}, []string{"spec.aggregationLength"}},
		{"aggregation v6 129", heraldv1.BGPAdvertisementSpec{AggregationLengthV6: i32(129)}, []string{"spec.aggregationLengthV6"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectAdmission(t, cl, &heraldv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("adv-%d", i)}, Spec: c.spec}, c.wantErr)
		})
	}

	a := &heraldv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}}
	if err := cl.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Delete(ctx, a) }()
	if a.Spec.AggregationLength == nil || *a.Spec.AggregationLength != 32 || a.Spec.AggregationLengthV6 == nil || *a.Spec.AggregationLengthV6 != 128 {
		t.Errorf("aggregation lengths not defaulted to 32 and 128: %+v", a.Spec)
	}
}

// A BGPNodeOverride: router ID IPv4, local ASN in range, local addresses
// of peers valid and listed once.
func TestBGPNodeOverrideValidation(t *testing.T) {
	cl := newClient(t)
	cases := []struct {
		name    string
		spec    heraldv1.BGPNodeOverrideSpec
		wantErr []string
	}{
		{"empty", heraldv1.BGPNodeOverrideSpec{}, nil},
		{"everything", heraldv1.BGPNodeOverrideSpec{RouterID: "10.255.0.1", LocalASN: i64(4200000001), Peers: []heraldv1.BGPNodePeerOverride{
			{Peer: "tor-a", LocalAddress: "10.255.0.1"}, {Peer: "tor-a-v6", LocalAddress: "2001:db8::1"},
		}}, nil},

		{"router ID ipv6", heraldv1.BGPNodeOverrideSpec{RouterID: "2001:db8::1"}, []string{"spec.routerID", "routerID must be an IPv4 address"}},
		{"router ID junk", heraldv1.BGPNodeOverrideSpec{RouterID: "node1"}, []string{"spec.routerID", "routerID must be an IPv4 address"}},
		{"router ID zero", heraldv1.BGPNodeOverrideSpec{RouterID: "0.0.0.0"}, []string{"spec.routerID", "must not be 0.0.0.0"}},
		{"local ASN 0", heraldv1.BGPNodeOverrideSpec{LocalASN: i64(0)}, []string{"spec.localASN"}},
		{"local ASN too big", heraldv1.BGPNodeOverrideSpec{LocalASN: i64(1 << 32)}, []string{"spec.localASN"}},
		{"local ASN AS_TRANS", heraldv1.BGPNodeOverrideSpec{LocalASN: i64(23456)}, []string{"spec.localASN", "AS_TRANS"}},
		{"peer local address junk", heraldv1.BGPNodeOverrideSpec{Peers: []heraldv1.BGPNodePeerOverride{{Peer: "tor-a", LocalAddress: "eth0"}}},
			[]string{"spec.peers[0].localAddress", "must be an IPv4 or IPv6 address"}},
		{"peer local address loopback", heraldv1.BGPNodeOverrideSpec{Peers: []heraldv1.BGPNodePeerOverride{{Peer: "tor-a", LocalAddress: "::1"}}},
			[]string{"spec.peers[0].localAddress", "must be a unicast address"}},
		{"peer without name", heraldv1.BGPNodeOverrideSpec{Peers: []heraldv1.BGPNodePeerOverride{{LocalAddress: "10.0.0.1"}}},
			[]string{"spec.peers[0].peer"}},
		{"peer twice", heraldv1.BGPNodeOverrideSpec{Peers: []heraldv1.BGPNodePeerOverride{
			{Peer: "tor-a", LocalAddress: "10.0.0.1"}, {Peer: "tor-a", LocalAddress: "10.0.0.2"},
		}}, []string{"spec.peers[1]", "Duplicate value"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectAdmission(t, cl, &heraldv1.BGPNodeOverride{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)}, Spec: c.spec}, c.wantErr)
		})
	}
}

// HeraldNode's BGP sessions: states are enums; a valid report is stored.
func TestHeraldNodeBGPStatus(t *testing.T) {
	cl := newClient(t)
	ctx := context.Background()
	n := &heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: "bgp-node"}}
	if err := cl.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Delete(ctx, n) }()
	n.Status.BGP = &heraldv1.NodeBGP{RouterID: "192.168.20.11", Sessions: []heraldv1.BGPSession{{
		Peer: "tor-a", Address: "192.168.20.1", PeerASN: 64512, LocalASN: 64513, LocalAddress: "192.168.20.11",
		State: heraldv1.BGPSessionEstablished, Since: metav1.Now(), RoutesAdvertised: 3, BFDState: heraldv1.BFDUp,
	}}}
	if err := cl.Status().Update(ctx, n); err != nil {
		t.Fatalf("valid BGP status refused: %v", err)
	}
	n.Status.BGP.Sessions[0].State = "Up"
	err := cl.Status().Update(ctx, n)
	if err == nil || !strings.Contains(err.Error(), "status.bgp.sessions[0].state") {
		t.Errorf("session state Up: want a refusal naming status.bgp.sessions[0].state, got %v", err)
	}
}
