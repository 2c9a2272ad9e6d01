package ipam

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// shareView is the part of a Service that the sharing rules look at,
// copied when the Service takes an address so that later edits by the
// caller to its Service value cannot change what the allocator compares.
type shareView struct {
	key       string
	namespace string
	// sharing is nil unless the Service consents to share (non-empty key).
	sharing *Sharing
	// ports are the Service's distinct port numbers, sorted: the rule is
	// about numbers, whatever the protocol, because a node forwarding
	// TCP/80 and UDP/80 for two Services on one IP is easy to get wrong.
	ports    []int32
	local    bool
	selector map[string]string
}

// newShareView copies what the sharing rules need from svc.
func newShareView(svc *Service) shareView {
	v := shareView{key: svc.Key, namespace: svc.Namespace}
	if v.namespace == "" {
		// Key is "namespace/name"; a caller that forgot Namespace still
		// gets the namespace rule right.
		if i := strings.IndexByte(svc.Key, '/'); i > 0 {
			v.namespace = svc.Key[:i]
		}
	}
	if svc.Sharing == nil || svc.Sharing.Key == "" {
		return v
	}
	v.sharing = &Sharing{Key: svc.Sharing.Key, AllowNamespaces: slices.Clone(svc.Sharing.AllowNamespaces)}
	if len(svc.Ports) > 0 {
		v.ports = make([]int32, 0, len(svc.Ports))
		for _, p := range svc.Ports {
			v.ports = append(v.ports, p.Port)
		}
		slices.Sort(v.ports)
		v.ports = slices.Compact(v.ports)
	}
	v.local = svc.TrafficPolicyLocal
	v.selector = maps.Clone(svc.Selector)
	return v
}

// allows reports whether sh lets a Service of namespace ns share.
func allows(sh *Sharing, ns string) bool {
	for _, n := range sh.AllowNamespaces {
		if n == "*" || n == ns {
			return true
		}
	}
	return false
}

// sharingConflict returns why s may not share an address with o (naming
// the rule and o), or "" when it may. Both must have sharing enabled; the
// caller reports a missing consent as RequestedIPInUse, not as a rule.
func sharingConflict(s, o *shareView) string {
	if s.sharing == nil || o.sharing == nil {
		return fmt.Sprintf("%s does not share its address", o.key)
	}
	if s.sharing.Key != o.sharing.Key {
		return fmt.Sprintf("sharing key %q differs from %q of %s", s.sharing.Key, o.sharing.Key, o.key)
	}
	if s.namespace != o.namespace {
		if !allows(o.sharing, s.namespace) {
			return fmt.Sprintf("%s does not allow sharing with namespace %q (sharing-cross-namespace)", o.key, s.namespace)
		}
		if !allows(s.sharing, o.namespace) {
			return fmt.Sprintf("this Service does not allow sharing with namespace %q of %s (sharing-cross-namespace)", o.namespace, o.key)
		}
	}
	// Both port lists are sorted and distinct: a merge walk finds the
	// lowest common number.
	for i, j := 0, 0; i < len(s.ports) && j < len(o.ports); {
		switch {
		case s.ports[i] < o.ports[j]:
			i++
		case s.ports[i] > o.ports[j]:
			j++
		default:
			return fmt.Sprintf("port %d is used by %s", s.ports[i], o.key)
		}
	}
	if s.local != o.local {
		return fmt.Sprintf("externalTrafficPolicy differs: %s is %s", o.key, trafficPolicy(o.local))
	}
	if s.local {
		// With Local, the IP's announcing node must have a local endpoint
		// of every sharer; only identical selectors guarantee that.
		if len(s.selector) == 0 || len(o.selector) == 0 {
			return fmt.Sprintf("externalTrafficPolicy Local needs a non-empty pod selector on every sharer (this Service: {%s}, %s: {%s})",
				formatSelector(s.selector), o.key, formatSelector(o.selector))
		}
		if !maps.Equal(s.selector, o.selector) {
			return fmt.Sprintf("externalTrafficPolicy Local needs identical pod selectors: this Service selects {%s}, %s selects {%s}",
				formatSelector(s.selector), o.key, formatSelector(o.selector))
		}
	}
	return ""
}

// trafficPolicy spells externalTrafficPolicy.
func trafficPolicy(local bool) string {
	if local {
		return "Local"
	}
	return "Cluster"
}

// formatSelector writes a selector as sorted "k=v,k=v".
func formatSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return strings.Join(parts, ",")
}
