package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Service annotations Herald reads. The herald.dev/ keys are Herald's own;
// the others are Cilium LB-IPAM's and MetalLB's, honoured so that existing
// manifests work unchanged after a migration.
const (
	// AnnotationIPs requests addresses: a comma list, at most one per family.
	AnnotationIPs = "herald.dev/ips"
	// AnnotationCiliumIPs is Cilium's form of AnnotationIPs.
	AnnotationCiliumIPs = "lbipam.cilium.io/ips"
	// AnnotationCiliumLegacyIPs is Cilium's older form of AnnotationIPs.
	AnnotationCiliumLegacyIPs = "io.cilium/lb-ipam-ips"
	// AnnotationMetalLBIPs is MetalLB's form of AnnotationIPs.
	AnnotationMetalLBIPs = "metallb.io/loadBalancerIPs"
	// AnnotationMetalLBLegacyIPs is MetalLB's older form of AnnotationIPs.
	AnnotationMetalLBLegacyIPs = "metallb.universe.tf/loadBalancerIPs"

	// AnnotationPool pins a Service to the named pool.
	AnnotationPool = "herald.dev/pool"
	// AnnotationMetalLBPool is MetalLB's form of AnnotationPool.
	AnnotationMetalLBPool = "metallb.io/address-pool"
	// AnnotationMetalLBLegacyPool is MetalLB's older form of AnnotationPool.
	AnnotationMetalLBLegacyPool = "metallb.universe.tf/address-pool"

	// AnnotationSharingKey lets Services with the same key share an address.
	AnnotationSharingKey = "herald.dev/sharing-key"
	// AnnotationCiliumSharingKey is Cilium's form of AnnotationSharingKey.
	AnnotationCiliumSharingKey = "lbipam.cilium.io/sharing-key"
	// AnnotationMetalLBSharing is MetalLB's form of AnnotationSharingKey.
	AnnotationMetalLBSharing = "metallb.io/allow-shared-ip"
	// AnnotationMetalLBLegacySharing is MetalLB's older form of
	// AnnotationSharingKey.
	AnnotationMetalLBLegacySharing = "metallb.universe.tf/allow-shared-ip"

	// AnnotationSharingCrossNamespace lists the other namespaces (comma list,
	// or "*") whose Services may share this Service's address.
	AnnotationSharingCrossNamespace = "herald.dev/sharing-cross-namespace"
	// AnnotationCiliumSharingCrossNamespace is Cilium's form of
	// AnnotationSharingCrossNamespace.
	AnnotationCiliumSharingCrossNamespace = "lbipam.cilium.io/sharing-cross-namespace"

	// FieldLoadBalancerIP names spec.loadBalancerIP in errors and in
	// Request.IPsFrom.
	FieldLoadBalancerIP = "spec.loadBalancerIP"
)

// Request is what a Service asks for through spec.loadBalancerIP and
// annotations.
type Request struct {
	// Requested are the requested addresses, in the order written, at most
	// one per family; empty means "any".
	Requested []netip.Addr
	// Pool is the pinned pool's name; empty means any pool.
	Pool string
	// Sharing is nil unless a sharing key is set.
	Sharing *Sharing

	// IPsFrom names the annotation key (or FieldLoadBalancerIP) that
	// Requested came from; empty when nothing is requested.
	IPsFrom string
	// PoolFrom names the annotation key that Pool came from.
	PoolFrom string
	// SharingFrom names the annotation key that the sharing key came from.
	SharingFrom string
}

// The annotations of each setting, highest precedence first. Functions, not
// variables, so no package state can be changed by a caller.
func ipSources() []string {
	return []string{AnnotationIPs, AnnotationCiliumIPs, AnnotationCiliumLegacyIPs,
		AnnotationMetalLBIPs, AnnotationMetalLBLegacyIPs}
}

func poolSources() []string {
	return []string{AnnotationPool, AnnotationMetalLBPool, AnnotationMetalLBLegacyPool}
}

func sharingSources() []string {
	return []string{AnnotationSharingKey, AnnotationCiliumSharingKey,
		AnnotationMetalLBSharing, AnnotationMetalLBLegacySharing}
}

func crossNamespaceSources() []string {
	return []string{AnnotationSharingCrossNamespace, AnnotationCiliumSharingCrossNamespace}
}

// annotationField names an annotation in a FieldError.
func annotationField(key string) string { return "metadata.annotations[" + key + "]" }

// first returns the first source with a non-blank value. A blank value is
// treated as absent, so `herald.dev/ips: ""` does not hide a lower source.
func first(annotations map[string]string, keys []string) (key, value string) {
	for _, k := range keys {
		if v, ok := annotations[k]; ok && strings.TrimSpace(v) != "" {
			return k, v
		}
	}
	return "", ""
}

// ParseRequest reads what a Service asks for.
//
// Addresses come from the first present of herald.dev/ips,
// lbipam.cilium.io/ips, io.cilium/lb-ipam-ips, metallb.io/loadBalancerIPs,
// metallb.universe.tf/loadBalancerIPs and spec.loadBalancerIP: a comma
// list, spaces trimmed, at most one address per family, no duplicates. The
// pool pin comes from herald.dev/pool, metallb.io/address-pool,
// metallb.universe.tf/address-pool; the sharing key from
// herald.dev/sharing-key, lbipam.cilium.io/sharing-key,
// metallb.io/allow-shared-ip, metallb.universe.tf/allow-shared-ip; the
// namespaces allowed to share from herald.dev/sharing-cross-namespace, then
// lbipam.cilium.io/sharing-cross-namespace (a comma list of namespaces, or
// "*"; ignored without a sharing key). A blank value counts as absent.
//
// A present but bad value is an error, never skipped in favour of a lower
// source: the user wrote it and must learn that it is wrong. All bad values
// are reported at once (errors.Join of *FieldError naming the annotation
// key and value). On error the Request is empty.
func ParseRequest(annotations map[string]string, loadBalancerIP string) (Request, error) {
	var req Request
	var errs []error

	key, value := first(annotations, ipSources())
	field := annotationField(key)
	if key == "" && strings.TrimSpace(loadBalancerIP) != "" {
		key, value, field = FieldLoadBalancerIP, loadBalancerIP, FieldLoadBalancerIP
	}
	if key != "" {
		addrs, err := parseIPList(field, value)
		if err != nil {
			errs = append(errs, err)
		} else {
			req.Requested, req.IPsFrom = addrs, key
		}
	}

	if key, value := first(annotations, poolSources()); key != "" {
		req.Pool, req.PoolFrom = strings.TrimSpace(value), key
	}

	if key, value := first(annotations, sharingSources()); key != "" {
		req.Sharing = &Sharing{Key: strings.TrimSpace(value)}
		req.SharingFrom = key
		if nsKey, nsValue := first(annotations, crossNamespaceSources()); nsKey != "" {
			ns, err := parseNamespaces(annotationField(nsKey), nsValue)
			if err != nil {
				errs = append(errs, err)
			} else {
				req.Sharing.AllowNamespaces = ns
			}
		}
	}

	if len(errs) > 0 {
		return Request{}, errors.Join(errs...)
	}
	return req, nil
}

// parseIPList parses a comma list of addresses, at most one per family.
func parseIPList(field, value string) ([]netip.Addr, error) {
	parts := strings.Split(value, ",")
	out := make([]netip.Addr, 0, len(parts))
	for _, p := range parts {
		s := strings.TrimSpace(p)
		if s == "" {
			return nil, &FieldError{Field: field, Value: value, Detail: "has an empty entry"}
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, &FieldError{Field: field, Value: value,
				Detail: fmt.Sprintf("has %q, which is not a valid IP address", s), Err: err}
		}
		if err := checkPlainAddr(a); err != nil {
			return nil, &FieldError{Field: field, Value: value, Detail: fmt.Sprintf("has %q", s), Err: err}
		}
		for _, prev := range out {
			switch {
			case prev == a:
				return nil, &FieldError{Field: field, Value: value, Detail: fmt.Sprintf("lists %s twice", a)}
			case FamilyOf(prev) == FamilyOf(a):
				return nil, &FieldError{Field: field, Value: value,
					Detail: fmt.Sprintf("has two %s addresses (%s, %s); at most one per family", FamilyOf(a), prev, a)}
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// parseNamespaces parses a comma list of namespace names or "*".
func parseNamespaces(field, value string) ([]string, error) {
	parts := strings.Split(value, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		s := strings.TrimSpace(p)
		switch {
		case s == "":
			return nil, &FieldError{Field: field, Value: value, Detail: "has an empty entry"}
		case s != "*" && !isDNSLabel(s):
			return nil, &FieldError{Field: field, Value: value,
				Detail: fmt.Sprintf("has %q, which is neither a namespace name (RFC 1123 label) nor \"*\"", s)}
		}
		out = append(out, s)
	}
	return out, nil
}

// isDNSLabel reports whether s is an RFC 1123 label, the form of a
// Kubernetes namespace name.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
