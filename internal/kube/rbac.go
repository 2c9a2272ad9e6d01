package kube

import (
	"fmt"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// Permission is one thing a part of Herald must be allowed to do: a verb on
// a resource (and subresource) of an API group, on one object by name when
// Name is set, in the part's own namespace when Namespaced.
type Permission struct {
	Group, Resource, Subresource, Verb, Name string
	Namespaced                               bool
}

// String renders p as RBAC would name it: "patch services/status",
// "get secrets herald-heartbeat-key", "create leases.coordination.k8s.io".
func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Subresource != "" {
		r = p.Resource + "/" + p.Subresource
		if p.Group != "" {
			r += "." + p.Group
		}
	}
	s := fmt.Sprintf("%s %s", p.Verb, r)
	if p.Name != "" {
		s += " " + p.Name
	}
	return s
}

// each expands verbs on one resource into Permissions.
func each(group, resource, sub string, verbs ...string) []Permission {
	out := make([]Permission, len(verbs))
	for i, v := range verbs {
		out[i] = Permission{Group: group, Resource: resource, Subresource: sub, Verb: v}
	}
	return out
}

// named makes every permission of ps namespaced and on the object name.
func named(name string, ps []Permission) []Permission {
	for i := range ps {
		ps[i].Name, ps[i].Namespaced = name, true
	}
	return ps
}

// ControllerPermissions are what `herald controller` needs: the
// Services and their status, Nodes, EndpointSlices, Herald's API, Events,
// its leader Lease and the heartbeat key Secret (secret, in its
// namespace), which it creates when createSecret. The chart's roles grant
// exactly these (deploy/helm tests both).
func ControllerPermissions(secret string, createSecret bool) []Permission {
	herald := heraldv1.GroupVersion.Group
	var ps []Permission
	for _, p := range [][]Permission{
		each("", "services", "", "get", "list", "watch", "patch"),
		each("", "services", "status", "patch"),
		each("", "nodes", "", "get", "list", "watch"),
		each("discovery.k8s.io", "endpointslices", "", "list"),
		each(herald, "loadbalancerippools", "", "get", "list", "watch"),
		each(herald, "loadbalancerippools", "status", "update"),
		each(herald, "l2announcementpolicies", "", "get", "list", "watch"),
		each(herald, "l2announcementpolicies", "status", "update"),
		each(herald, "heraldnodes", "", "get", "list", "watch"),
		each("", "events", "", "create", "patch"),
	} {
		ps = append(ps, p...)
	}
	for _, v := range []string{"get", "create", "update"} {
		ps = append(ps, Permission{Group: "coordination.k8s.io", Resource: "leases", Verb: v, Namespaced: true})
	}
	if createSecret {
		ps = append(ps, named(secret, each("", "secrets", "", "get", "list", "watch"))...)
		// A create cannot be restricted by name.
		ps = append(ps, Permission{Resource: "secrets", Verb: "create", Namespaced: true})
	} else {
		ps = append(ps, named(secret, each("", "secrets", "", "get"))...)
	}
	return ps
}

// AgentPermissions are what `herald agent` needs: Services, EndpointSlices,
// Nodes, policies, pools (BGP advertisements select by pool), the BGP
// peers, advertisements and node overrides, its own HeraldNode and its
// status, Events, the heartbeat key Secret (secret, in the controller's
// namespace) and the BGPPeers' password Secrets there (the chart's
// bgp.passwordSecrets), each by name.
func AgentPermissions(secret string, passwordSecrets ...string) []Permission {
	herald := heraldv1.GroupVersion.Group
	var ps []Permission
	for _, p := range [][]Permission{
		each("", "services", "", "get", "list", "watch"),
		each("discovery.k8s.io", "endpointslices", "", "get", "list", "watch"),
		each("", "nodes", "", "get", "list", "watch"),
		each(herald, "l2announcementpolicies", "", "get", "list", "watch"),
		each(herald, "loadbalancerippools", "", "get", "list", "watch"),
		each(herald, "bgppeers", "", "get", "list", "watch"),
		each(herald, "bgpadvertisements", "", "get", "list", "watch"),
		each(herald, "bgpnodeoverrides", "", "get", "list", "watch"),
		each(herald, "heraldnodes", "", "get", "create"),
		each(herald, "heraldnodes", "status", "patch"),
		each("", "events", "", "create", "patch"),
		named(secret, each("", "secrets", "", "get", "list", "watch")),
	} {
		ps = append(ps, p...)
	}
	for _, name := range passwordSecrets {
		ps = append(ps, named(name, each("", "secrets", "", "get", "list", "watch"))...)
	}
	return ps
}

// ViewPermissions are what the read-only operator commands (status, pools,
// services, announcements, explain) read; the chart's <fullname>-view
// ClusterRole grants exactly these.
func ViewPermissions() []Permission {
	herald := heraldv1.GroupVersion.Group
	var ps []Permission
	for _, r := range []struct{ group, resource string }{
		{herald, "loadbalancerippools"}, {herald, "l2announcementpolicies"}, {herald, "heraldnodes"},
		{"", "nodes"}, {"", "services"}, {"discovery.k8s.io", "endpointslices"}, {"coordination.k8s.io", "leases"},
	} {
		ps = append(ps, each(r.group, r.resource, "", "get", "list", "watch")...)
	}
	return ps
}
