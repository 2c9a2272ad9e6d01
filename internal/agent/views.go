package agent

import (
	"net/netip"
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// localReadyServices returns the keys ("ns/name") of Services with a ready
// endpoint on node, from their EndpointSlices.
func localReadyServices(slices []discoveryv1.EndpointSlice, node string) map[string]bool {
	out := map[string]bool{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName != node {
				continue
			}
			// Ready unset means ready, per the EndpointSlice API.
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				out[s.Namespace+"/"+name] = true
				break
			}
		}
	}
	return out
}

// sortedAddrs returns the keys of set in address order.
func sortedAddrs(set map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(set))
	for a, ok := range set {
		if ok {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
