package ipam

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	tests := []struct {
		name   string
		ann    map[string]string
		lbIP   string
		want   Request
		errs   []string // substrings; each must appear
		fields []string // FieldError.Field of each joined error
	}{
		{name: "nothing", want: Request{}},
		{name: "nil and empty annotations", ann: map[string]string{}, want: Request{}},
		{name: "spec.loadBalancerIP", lbIP: "192.168.10.80",
			want: Request{Requested: addrs("192.168.10.80"), IPsFrom: FieldLoadBalancerIP}},
		{name: "herald ips, dual", ann: map[string]string{AnnotationIPs: " 2001:db8::5 , 10.0.0.5"},
			want: Request{Requested: addrs("2001:db8::5", "10.0.0.5"), IPsFrom: AnnotationIPs}},
		{name: "herald ips win over everything", lbIP: "10.0.0.9", ann: map[string]string{
			AnnotationIPs: "10.0.0.1", AnnotationCiliumIPs: "10.0.0.2", AnnotationCiliumLegacyIPs: "10.0.0.3",
			AnnotationMetalLBIPs: "10.0.0.4", AnnotationMetalLBLegacyIPs: "10.0.0.5"},
			want: Request{Requested: addrs("10.0.0.1"), IPsFrom: AnnotationIPs}},
		{name: "cilium", lbIP: "10.0.0.9", ann: map[string]string{
			AnnotationCiliumIPs: "10.0.0.2", AnnotationCiliumLegacyIPs: "10.0.0.3", AnnotationMetalLBIPs: "10.0.0.4"},
			want: Request{Requested: addrs("10.0.0.2"), IPsFrom: AnnotationCiliumIPs}},
		{name: "cilium legacy", ann: map[string]string{AnnotationCiliumLegacyIPs: "10.0.0.3", AnnotationMetalLBIPs: "10.0.0.4"},
			want: Request{Requested: addrs("10.0.0.3"), IPsFrom: AnnotationCiliumLegacyIPs}},
		{name: "metallb", ann: map[string]string{AnnotationMetalLBIPs: "10.0.0.4", AnnotationMetalLBLegacyIPs: "10.0.0.5"},
			want: Request{Requested: addrs("10.0.0.4"), IPsFrom: AnnotationMetalLBIPs}},
		{name: "metallb legacy before spec", lbIP: "10.0.0.9", ann: map[string]string{AnnotationMetalLBLegacyIPs: "10.0.0.5"},
			want: Request{Requested: addrs("10.0.0.5"), IPsFrom: AnnotationMetalLBLegacyIPs}},
		{name: "blank annotation is absent", lbIP: "10.0.0.9", ann: map[string]string{AnnotationIPs: "  "},
			want: Request{Requested: addrs("10.0.0.9"), IPsFrom: FieldLoadBalancerIP}},
		{name: "pool", ann: map[string]string{AnnotationPool: " blue ", AnnotationMetalLBPool: "red"},
			want: Request{Pool: "blue", PoolFrom: AnnotationPool}},
		{name: "metallb pool", ann: map[string]string{AnnotationMetalLBPool: "red", AnnotationMetalLBLegacyPool: "green"},
			want: Request{Pool: "red", PoolFrom: AnnotationMetalLBPool}},
		{name: "metallb legacy pool", ann: map[string]string{AnnotationMetalLBLegacyPool: "green"},
			want: Request{Pool: "green", PoolFrom: AnnotationMetalLBLegacyPool}},
		{name: "sharing key precedence", ann: map[string]string{AnnotationSharingKey: "h", AnnotationCiliumSharingKey: "c", AnnotationMetalLBSharing: "m"},
			want: Request{Sharing: &Sharing{Key: "h"}, SharingFrom: AnnotationSharingKey}},
		{name: "cilium sharing key", ann: map[string]string{AnnotationCiliumSharingKey: "c", AnnotationMetalLBSharing: "m"},
			want: Request{Sharing: &Sharing{Key: "c"}, SharingFrom: AnnotationCiliumSharingKey}},
		{name: "metallb sharing key", ann: map[string]string{AnnotationMetalLBSharing: "m", AnnotationMetalLBLegacySharing: "l"},
			want: Request{Sharing: &Sharing{Key: "m"}, SharingFrom: AnnotationMetalLBSharing}},
		{name: "metallb legacy sharing key", ann: map[string]string{AnnotationMetalLBLegacySharing: "l"},
			want: Request{Sharing: &Sharing{Key: "l"}, SharingFrom: AnnotationMetalLBLegacySharing}},
		{name: "cross namespace", ann: map[string]string{AnnotationSharingKey: "k", AnnotationSharingCrossNamespace: "a, b-2", AnnotationCiliumSharingCrossNamespace: "*"},
			want: Request{Sharing: &Sharing{Key: "k", AllowNamespaces: []string{"a", "b-2"}}, SharingFrom: AnnotationSharingKey}},
		{name: "cilium cross namespace star", ann: map[string]string{AnnotationCiliumSharingKey: "k", AnnotationCiliumSharingCrossNamespace: "*"},
			want: Request{Sharing: &Sharing{Key: "k", AllowNamespaces: []string{"*"}}, SharingFrom: AnnotationCiliumSharingKey}},
		{name: "cross namespace ignored without key, even if bad", ann: map[string]string{AnnotationSharingCrossNamespace: "Not_A_Namespace"},
			want: Request{}},
		{name: "everything", lbIP: "10.0.0.1", ann: map[string]string{AnnotationPool: "p", AnnotationSharingKey: "k", "unrelated": "x"},
			want: Request{Requested: addrs("10.0.0.1"), IPsFrom: FieldLoadBalancerIP, Pool: "p", PoolFrom: AnnotationPool,
				Sharing: &Sharing{Key: "k"}, SharingFrom: AnnotationSharingKey}},

		{name: "bad address", ann: map[string]string{AnnotationIPs: "10.0.0.300"},
			errs: []string{`metadata.annotations[herald.dev/ips]: "10.0.0.300" has "10.0.0.300", which is not a valid IP address`}, fields: []string{"metadata.annotations[herald.dev/ips]"}},
		{name: "bad address does not fall back", lbIP: "10.0.0.1", ann: map[string]string{AnnotationMetalLBIPs: "nope"},
			errs: []string{"metadata.annotations[metallb.io/loadBalancerIPs]", `"nope"`}, fields: []string{"metadata.annotations[metallb.io/loadBalancerIPs]"}},
		{name: "bad spec.loadBalancerIP", lbIP: "10.0.0",
			errs: []string{`spec.loadBalancerIP: "10.0.0" has "10.0.0", which is not a valid IP address`}, fields: []string{FieldLoadBalancerIP}},
		{name: "two of a family", ann: map[string]string{AnnotationCiliumIPs: "10.0.0.1,10.0.0.2"},
			errs: []string{"has two IPv4 addresses (10.0.0.1, 10.0.0.2); at most one per family"}, fields: []string{"metadata.annotations[lbipam.cilium.io/ips]"}},
		{name: "two v6", ann: map[string]string{AnnotationIPs: "2001:db8::1,10.0.0.1,2001:db8::2"},
			errs: []string{"two IPv6 addresses"}, fields: []string{"metadata.annotations[herald.dev/ips]"}},
		{name: "duplicate", ann: map[string]string{AnnotationIPs: "10.0.0.1, 10.0.0.1"},
			errs: []string{"lists 10.0.0.1 twice"}, fields: []string{"metadata.annotations[herald.dev/ips]"}},
		{name: "empty entry", ann: map[string]string{AnnotationIPs: "10.0.0.1,"},
			errs: []string{"has an empty entry"}, fields: []string{"metadata.annotations[herald.dev/ips]"}},
		{name: "zone", ann: map[string]string{AnnotationIPs: "fe80::1%eth0"},
			errs: []string{"zone \"eth0\" is not allowed"}, fields: []string{"metadata.annotations[herald.dev/ips]"}},
		{name: "mapped", lbIP: "::ffff:10.0.0.1",
			errs: []string{"write 10.0.0.1"}, fields: []string{FieldLoadBalancerIP}},
		{name: "cidr is not an address", ann: map[string]string{AnnotationIPs: "10.0.0.0/24"},
			errs: []string{"not a valid IP address"}, fields: []string{"metadata.annotations[herald.dev/ips]"}},
		{name: "bad namespace", ann: map[string]string{AnnotationSharingKey: "k", AnnotationSharingCrossNamespace: "ok,Bad_NS"},
			errs:   []string{`metadata.annotations[herald.dev/sharing-cross-namespace]: "ok,Bad_NS" has "Bad_NS", which is neither a namespace name`},
			fields: []string{"metadata.annotations[herald.dev/sharing-cross-namespace]"}},
		{name: "empty namespace entry", ann: map[string]string{AnnotationCiliumSharingKey: "k", AnnotationCiliumSharingCrossNamespace: "a,,b"},
			errs: []string{"has an empty entry"}, fields: []string{"metadata.annotations[lbipam.cilium.io/sharing-cross-namespace]"}},
		{name: "all errors at once", lbIP: "x", ann: map[string]string{AnnotationSharingKey: "k", AnnotationSharingCrossNamespace: "-a"},
			errs:   []string{"spec.loadBalancerIP", "sharing-cross-namespace"},
			fields: []string{FieldLoadBalancerIP, "metadata.annotations[herald.dev/sharing-cross-namespace]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.ann, tt.lbIP)
			if len(tt.errs) > 0 {
				if err == nil {
					t.Fatalf("ParseRequest = %+v; want an error", got)
				}
				for _, s := range tt.errs {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				var fields []string
				for _, e := range joined(err) {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("%v is not a *FieldError", e)
					}
					fields = append(fields, fe.Field)
				}
				if !reflect.DeepEqual(fields, tt.fields) {
					t.Errorf("fields %v; want %v", fields, tt.fields)
				}
				if !reflect.DeepEqual(got, Request{}) {
					t.Errorf("Request on error = %+v; want empty", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseRequest = %+v; want %+v", got, tt.want)
			}
		})
	}
}

// joined splits an errors.Join error.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestIsDNSLabel(t *testing.T) {
	for s, want := range map[string]bool{
		"a": true, "kube-system": true, "a1": true, "1a": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, "a.b": false, strings.Repeat("a", 64): false,
	} {
		if got := isDNSLabel(s); got != want {
			t.Errorf("isDNSLabel(%q) = %v", s, got)
		}
	}
}
