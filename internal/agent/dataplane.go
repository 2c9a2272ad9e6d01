package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/dataplane"
	"github.com/herald-lb/herald/internal/kube"
)

// DataplaneMode chooses who forwards traffic for load-balancer addresses.
type DataplaneMode string

// The data plane modes of --dataplane.
const (
	// DataplaneNone: kube-proxy or Cilium forwards; Herald only announces.
	DataplaneNone DataplaneMode = "none"
	// DataplaneNFTables: Herald programs its own nftables table.
	DataplaneNFTables DataplaneMode = "nftables"
	// DataplaneAuto: nftables unless kube-proxy's or Cilium's rules exist.
	DataplaneAuto DataplaneMode = "auto"
)

// ParseDataplaneMode validates a --dataplane value.
func ParseDataplaneMode(s string) (DataplaneMode, error) {
	switch m := DataplaneMode(s); m {
	case DataplaneNone, DataplaneNFTables, DataplaneAuto:
		return m, nil
	case "":
		return DataplaneNone, nil
	default:
		return "", fmt.Errorf("--dataplane %q: want auto, nftables or none", s)
	}
}

// dataplaneServices turns the Services Herald serves and their
// EndpointSlices into the data plane's view: one entry per load-balancer
// address and port, with the ready endpoints (marked local when on node).
// Every node programs every Service, so whichever node announces an address
// forwards it at once.
func dataplaneServices(svcs []corev1.Service, slices []discoveryv1.EndpointSlice, node string, defaultClass bool) []dataplane.Service {
	bySvc := map[string][]discoveryv1.EndpointSlice{}
	for _, s := range slices {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := s.Namespace + "/" + name
			bySvc[k] = append(bySvc[k], s)
		}
	}
	var out []dataplane.Service
	for i := range svcs {
		svc := &svcs[i]
		if !kube.Serves(svc, defaultClass) {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		for _, in := range svc.Status.LoadBalancer.Ingress {
			vip, err := netip.ParseAddr(in.IP)
			if err != nil {
				continue
			}
			vip = vip.Unmap()
			for _, sp := range svc.Spec.Ports {
				proto := string(sp.Protocol)
				if proto == "" {
					proto = string(corev1.ProtocolTCP)
				}
				out = append(out, dataplane.Service{
					Key:                fmt.Sprintf("%s:%s:%d/%s", key, vip, sp.Port, proto),
					VIP:                vip,
					Port:               uint16(sp.Port),
					Protocol:           proto,
					TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
					Endpoints:          endpointsFor(bySvc[key], sp, vip.Is4(), node),
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// endpointsFor lists the ready endpoints of one service port, of the VIP's
// family, from the Service's EndpointSlices.
func endpointsFor(eps []discoveryv1.EndpointSlice, sp corev1.ServicePort, v4 bool, node string) []dataplane.Endpoint {
	var out []dataplane.Endpoint
	for _, s := range eps {
		if (s.AddressType == discoveryv1.AddressTypeIPv4) != v4 || s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		var port int32
		for _, p := range s.Ports {
			// A slice port matches the service port by name ("" for a
			// single unnamed port) and protocol.
			if p.Port == nil || ptr.Deref(p.Name, "") != sp.Name || ptr.Deref(p.Protocol, corev1.ProtocolTCP) != orTCP(sp.Protocol) {
				continue
			}
			port = *p.Port
		}
		if port == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				e := dataplane.Endpoint{Addr: addr.Unmap(), Port: uint16(port), Local: ep.NodeName != nil && *ep.NodeName == node}
				if !slices.Contains(out, e) {
					out = append(out, e)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr.Compare(out[j].Addr); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

func orTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// sameDataplane reports whether two data plane views are equal, so an
// unchanged view costs no netlink batch.
func sameDataplane(a, b []dataplane.Service) bool {
	return slices.EqualFunc(a, b, func(x, y dataplane.Service) bool {
		return x.Key == y.Key && x.TrafficPolicyLocal == y.TrafficPolicyLocal && slices.Equal(x.Endpoints, y.Endpoints) &&
			strings.EqualFold(x.Protocol, y.Protocol)
	})
}
