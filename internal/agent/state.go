package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/dataplane"
	"github.com/herald-lb/herald/internal/kube"
)

// The agent's cost follows what changes, not what exists: an informer
// event names the one Service it concerns (an EndpointSlice names its
// Service), and only that Service's view and the verdicts on its addresses
// are computed again. Only a change of the node (its labels, addresses,
// links) or of a policy re-decides every address, through a new
// announce.Planner.

// sliceServiceIndex is the cache index of EndpointSlices by their
// Service ("namespace/name"), so one Service's slices are found without
// scanning every slice.
const sliceServiceIndex = "herald.dev/service"

// sliceService is the key of the Service an EndpointSlice belongs to.
func sliceService(s *discoveryv1.EndpointSlice) string {
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return ""
	}
	return s.Namespace + "/" + name
}

// changes are the informer events not yet planned: the Services they
// concern, or all of them.
type changes struct {
	mu       sync.Mutex
	services map[string]bool
	all      bool
}

func (c *changes) service(key string) {
	if key == "" {
		return
	}
	c.mu.Lock()
	if c.services == nil {
		c.services = map[string]bool{}
	}
	c.services[key] = true
	c.mu.Unlock()
}

func (c *changes) everything() {
	c.mu.Lock()
	c.all = true
	c.mu.Unlock()
}

// take returns and clears the pending changes.
func (c *changes) take() (services map[string]bool, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	services, all = c.services, c.all
	c.services, c.all = nil, false
	return services, all
}

// objectKey is the "namespace/name" of an informer object, also for a
// deleted one the informer only remembers as a tombstone.
func objectKey(obj any) (key string, slice *discoveryv1.EndpointSlice) {
	if d, ok := obj.(interface{ GetObj() any }); ok { // cache.DeletedFinalStateUnknown
		obj = d.GetObj()
	}
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		return sliceService(o), o
	case client.Object:
		return o.GetNamespace() + "/" + o.GetName(), nil
	}
	return "", nil
}

// planState is what the agent knows of the cluster, kept per Service and
// per address so that a change costs in proportion to itself.
type planState struct {
	planner *announce.Planner
	// views are the Services with something to announce, by key.
	views map[string]announce.Service
	// users are the Services using each address.
	users map[netip.Addr][]string
	// verdicts are this node's verdicts on every address.
	verdicts map[netip.Addr]announce.AddrStatus
	// eligible are the addresses this node may announce, by interface.
	eligible map[string]map[netip.Addr]bool
	// announced counts, per address, the Services that show it as
	// announced once (kube.AnnouncedAnnotation).
	announced map[netip.Addr]int
	// announcedBy are those addresses per Service.
	announcedBy map[string][]netip.Addr
	// dataplane is the data plane's view per Service (with a data
	// plane): what the table was given, so that only a Service whose view
	// changes is passed to it again.
	dataplane map[string][]dataplane.Service
}

func newPlanState() *planState {
	return &planState{
		views: map[string]announce.Service{}, users: map[netip.Addr][]string{},
		verdicts: map[netip.Addr]announce.AddrStatus{}, eligible: map[string]map[netip.Addr]bool{},
		announced: map[netip.Addr]int{}, announcedBy: map[string][]netip.Addr{},
		dataplane: map[string][]dataplane.Service{},
	}
}

// addrsOf lists the distinct addresses a view announces.
func addrsOf(v announce.Service) []netip.Addr {
	out := slices.Concat(v.LoadBalancerIPs, v.ExternalIPs)
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// replan applies the pending changes: every Service when all is set (the
// node, its links or a policy changed), else only the Services named. It
// returns the interfaces whose eligible addresses changed.
func (a *Agent) replan(ctx context.Context, services map[string]bool, all bool) (changed map[string]bool, err error) {
	st := a.state
	if all || st.planner == nil {
		if err := a.rebuildPlanner(ctx); err != nil {
			return nil, err
		}
		if all || len(st.views) == 0 {
			// Every Service, once: at start, and when the node or the
			// policies change (the views themselves depend only on the
			// Service, its slices and this node's name, but reading them
			// all again also catches anything an event missed).
			var svcs corev1.ServiceList
			if err := a.client.List(ctx, &svcs); err != nil {
				return nil, fmt.Errorf("list services: %w", err)
			}
			services = map[string]bool{}
			for k := range st.views {
				services[k] = true
			}
			for i := range svcs.Items {
				services[svcs.Items[i].Namespace+"/"+svcs.Items[i].Name] = true
			}
		}
	}
	scope := "service"
	if all {
		scope = "all"
	}
	a.met.plans.WithLabelValues(scope).Inc()
	a.met.servicesRead.Add(float64(len(services)))
	affected := map[netip.Addr]bool{}
	for key := range services {
		if err := a.refreshService(ctx, key, affected); err != nil {
			return nil, err
		}
	}
	if all {
		for addr := range st.verdicts {
			affected[addr] = true
		}
	}
	return a.redecide(affected), nil
}

// rebuildPlanner reads the node and the policies and makes a new Planner.
func (a *Agent) rebuildPlanner(ctx context.Context) error {
	var node corev1.Node
	nodePtr := &node
	if err := a.client.Get(ctx, client.ObjectKey{Name: a.opts.NodeName}, &node); err != nil {
		nodePtr = nil // nodeSelectors then match nothing
	}
	var pols heraldv1.L2AnnouncementPolicyList
	if err := a.client.List(ctx, &pols); err != nil {
		return fmt.Errorf("list policies: %w", err)
	}
	var policies []announce.Policy
	for i := range pols.Items {
		v, err := kube.PolicyView(&pols.Items[i], nodePtr)
		if err != nil {
			// The controller reports it on the policy; here it selects
			// nothing.
			a.log.Debug("policy cannot be used", "policy", pols.Items[i].Name, "err", err)
			continue
		}
		policies = append(policies, v)
	}
	a.nodeAddrs = nodeAddresses(nodePtr)
	excluded := nodePtr != nil && excludedByLabel(nodePtr) && !a.opts.IgnoreExcludeLabel
	if a.excluded && !excluded {
		a.undrainedAt = a.now()
		a.log.Info("the exclude label is gone; taking part again without moving addresses back")
	}
	a.excluded = excluded
	a.ifaces = withLAN(a.linkList, a.nodeAddrs)
	planner := announce.NewPlanner(announce.Node{Name: a.opts.NodeName, ExcludedByLabel: a.excluded}, a.ifaces, policies)
	planner.Messages = false
	a.state.planner = planner
	return nil
}

// refreshService reads one Service and its EndpointSlices from the cache
// and updates its view, adding the addresses whose verdict may change.
func (a *Agent) refreshService(ctx context.Context, key string, affected map[netip.Addr]bool) error {
	st := a.state
	ns, name, _ := strings.Cut(key, "/")
	old, had := st.views[key]
	if had {
		for _, addr := range addrsOf(old) {
			affected[addr] = true
		}
	}
	var svc corev1.Service
	err := a.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &svc)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get service %s: %w", key, err)
	}
	var view announce.Service
	ok := false
	var dp []dataplane.Service
	if err == nil {
		var slices discoveryv1.EndpointSliceList
		if err := a.client.List(ctx, &slices, client.InNamespace(ns), client.MatchingFields{sliceServiceIndex: key}); err != nil {
			return fmt.Errorf("list endpoint slices of %s: %w", key, err)
		}
		local := localReadyServices(slices.Items, a.opts.NodeName)[key]
		view, ok = kube.AnnounceService(&svc, a.opts.DefaultClass, local)
		if a.table != nil {
			dp = dataplaneServices([]corev1.Service{svc}, slices.Items, a.opts.NodeName, a.opts.DefaultClass)
		}
	}
	// The index of users and of announced addresses.
	var fresh []netip.Addr // addresses no Service used before this one
	if ok {
		for _, addr := range addrsOf(view) {
			if len(st.users[addr]) == 0 {
				fresh = append(fresh, addr)
			}
		}
	}
	for _, addr := range addrsOf(old) {
		st.users[addr] = slices.DeleteFunc(st.users[addr], func(k string) bool { return k == key })
		if len(st.users[addr]) == 0 {
			delete(st.users, addr)
		}
	}
	// An address taken into use afresh may have been free for a while: a
	// foreign host may have taken it since a node last claimed or probed
	// it, so its first claim is probed (RFC 5227) again, not granted on
	// the strength of that old claim or probe.
	for _, addr := range fresh {
		delete(a.seenClaimed, addr)
		if a.probeState[addr] == probePassed {
			delete(a.probeState, addr)
		}
	}
	for _, addr := range st.announcedBy[key] {
		if st.announced[addr]--; st.announced[addr] <= 0 {
			delete(st.announced, addr)
		}
	}
	delete(st.announcedBy, key)
	if ok {
		st.views[key] = view
		for _, addr := range addrsOf(view) {
			st.users[addr] = append(st.users[addr], key)
			affected[addr] = true
		}
		if ann := kube.AnnouncedAddrs(&svc); len(ann) > 0 {
			st.announcedBy[key] = ann
			for _, addr := range ann {
				st.announced[addr]++
			}
		}
	} else {
		delete(st.views, key)
	}
	if a.table != nil && !sameDataplane(st.dataplane[key], dp) {
		if len(dp) > 0 {
			st.dataplane[key] = dp
		} else {
			delete(st.dataplane, key)
		}
		if a.dpDirty == nil {
			a.dpDirty = map[string]bool{}
		}
		a.dpDirty[key] = true
	}
	return nil
}

// redecide computes the verdicts on the affected addresses again and
// returns the interfaces whose eligible set changed.
func (a *Agent) redecide(affected map[netip.Addr]bool) map[string]bool {
	st := a.state
	changed := map[string]bool{}
	for addr := range affected {
		var users []announce.Service
		for _, k := range st.users[addr] {
			users = append(users, st.views[k])
		}
		old, had := st.verdicts[addr]
		var v announce.AddrStatus
		if len(users) > 0 {
			v = st.planner.Decide(addr, users)
			st.verdicts[addr] = v
		} else {
			delete(st.verdicts, addr)
		}
		if had && old.Reason == announce.Eligible && v.Reason == announce.Eligible && slices.Equal(old.Interfaces, v.Interfaces) {
			continue
		}
		if had && old.Reason == announce.Eligible {
			for _, ifc := range old.Interfaces {
				delete(st.eligible[ifc], addr)
				changed[ifc] = true
			}
		}
		if v.Reason == announce.Eligible {
			for _, ifc := range v.Interfaces {
				if st.eligible[ifc] == nil {
					st.eligible[ifc] = map[netip.Addr]bool{}
				}
				st.eligible[ifc][addr] = true
				changed[ifc] = true
			}
		}
	}
	for ifc, set := range st.eligible {
		if len(set) == 0 {
			delete(st.eligible, ifc)
		}
	}
	return changed
}

// eligibleOn lists, sorted, the addresses this node may announce on ifc.
func (st *planState) eligibleOn(ifc string) []netip.Addr {
	out := make([]netip.Addr, 0, len(st.eligible[ifc]))
	for addr := range st.eligible[ifc] {
		out = append(out, addr)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
