package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
