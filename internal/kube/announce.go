package kube

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
)

// PolicyView reduces an L2AnnouncementPolicy to what node (nil: unknown,
// so a nodeSelector matches nothing) decides on. The error names the field
// that cannot be used; such a policy selects nothing.
func PolicyView(p *heraldv1.L2AnnouncementPolicy, node *corev1.Node) (announce.Policy, error) {
	view := announce.Policy{
		Name:            p.Name,
		LoadBalancerIPs: p.Spec.AnnouncesLoadBalancerIPs(),
		ExternalIPs:     p.Spec.ExternalIPs,
	}
	for i, pat := range p.Spec.Interfaces {
		re, err := regexp.Compile(pat)
		if err != nil {
			return announce.Policy{}, fmt.Errorf("spec.interfaces[%d]: %w", i, err)
		}
		view.Interfaces = append(view.Interfaces, re)
	}
	view.SelectsNode = true
	if p.Spec.NodeSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.NodeSelector)
		if err != nil {
			return announce.Policy{}, fmt.Errorf("spec.nodeSelector: %w", err)
		}
		view.SelectsNode = node != nil && sel.Matches(labels.Set(node.Labels))
	}
	if p.Spec.ServiceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.ServiceSelector)
		if err != nil {
			return announce.Policy{}, fmt.Errorf("spec.serviceSelector: %w", err)
		}
		view.Services = LabelSelector{Selector: sel}
	}
	return view, nil
}

// AnnounceService reduces a Service to what announcing needs. ok is false for
// a Service with nothing Herald could announce.
func AnnounceService(svc *corev1.Service, defaultClass bool, localReady bool) (announce.Service, bool) {
	view := announce.Service{
		Key:                svc.Namespace + "/" + svc.Name,
		Labels:             ServiceLabels(svc),
		TrafficPolicyLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		LocalReadyEndpoint: localReady,
	}
	if Serves(svc, defaultClass) {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				view.LoadBalancerIPs = append(view.LoadBalancerIPs, a.Unmap())
			}
		}
	}
	for _, s := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			view.ExternalIPs = append(view.ExternalIPs, a.Unmap())
		}
	}
	return view, len(view.LoadBalancerIPs)+len(view.ExternalIPs) > 0
}

// AnnouncedAddrs are the addresses of svc that the controller recorded as
// announced once (AnnouncedAnnotation) and that svc still holds.
func AnnouncedAddrs(svc *corev1.Service) []netip.Addr {
	v := svc.Annotations[AnnouncedAnnotation]
	if v == "" {
		return nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			continue
		}
		a = a.Unmap()
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if b, err := netip.ParseAddr(in.IP); err == nil && b.Unmap() == a {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// NodeVerdict is node's verdict on addr as its agent decides it: the
// agent's Planner on the interfaces of its HeraldNode report (nil: no
// agent runs there; nothing is known of its interfaces, so it is judged as
// if one LAN interface matched and marked NoAgent), the policies as they
// apply to node, and services, the announce views of the Services using
// addr. excluded is whether the node counts as carrying the exclude label.
// The controller explains an unannounced address with it and `herald
// explain` shows it, so the two and the agents never disagree. An address
// that no service uses gets NoPolicy.
func NodeVerdict(addr netip.Addr, node *corev1.Node, report *heraldv1.HeraldNodeStatus, excluded bool,
	policies []heraldv1.L2AnnouncementPolicy, services []announce.Service) announce.NodeVerdict {
	v := announce.NodeVerdict{Node: node.Name}
	var ifaces []announce.Interface
	if report == nil {
		v.NoAgent = true
		ifaces = []announce.Interface{{Name: "?", Up: true, Broadcast: true, LAN: true}}
	} else {
		v.KeyError = report.KeyError
		ifaces = ReportInterfaces(report)
	}
	used := false
	for _, s := range services {
		used = used || slices.Contains(s.LoadBalancerIPs, addr) || slices.Contains(s.ExternalIPs, addr)
	}
	if used {
		var views []announce.Policy
		for i := range policies {
			if p, err := PolicyView(&policies[i], node); err == nil {
				views = append(views, p)
			}
		}
		v.Status = announce.NewPlanner(announce.Node{Name: node.Name, ExcludedByLabel: excluded}, ifaces, views).Decide(addr, services)
	}
	if v.Status.Reason == "" {
		v.Status = announce.AddrStatus{Addr: addr, Reason: announce.NoPolicy, Message: "no L2AnnouncementPolicy selects it"}
	}
	return v
}

// ReportInterfaces is the announce view of the interfaces an agent
// reports in its HeraldNode.
func ReportInterfaces(report *heraldv1.HeraldNodeStatus) []announce.Interface {
	var ifaces []announce.Interface
	for _, i := range report.Interfaces {
		ifaces = append(ifaces, announce.Interface{Name: i.Name, Up: i.Up, Broadcast: i.Broadcast, Loopback: i.Loopback, Enslaved: i.Enslaved, LAN: i.LAN})
	}
	return ifaces
}

// PolicyProblems are the policies that select node but match none of the
// up interfaces its agent reports, as that agent's Planner finds them
// (policies that cannot be used are left out: their Valid condition says
// why).
func PolicyProblems(node *corev1.Node, report *heraldv1.HeraldNodeStatus, excluded bool, policies []heraldv1.L2AnnouncementPolicy) []announce.PolicyProblem {
	var views []announce.Policy
	for i := range policies {
		if p, err := PolicyView(&policies[i], node); err == nil {
			views = append(views, p)
		}
	}
	return announce.NewPlanner(announce.Node{Name: node.Name, ExcludedByLabel: excluded}, ReportInterfaces(report), views).Problems()
}
