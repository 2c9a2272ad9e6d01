package controller

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/kube"
)

// The controller is the one writer of herald.dev/Announced. It combines the
// agents' HeraldNode reports — which node answers which address, which
// addresses another host uses, each node's interfaces and peers — into the
// truth per address (announce.Summarize). An owner that died cannot retract
// its report, and a node that is not eligible never writes anything, so
// only a view over every node can say "nobody answers, and here is why".

// announceIndex is every agent's report, indexed by address. It is rebuilt
// whenever a report, a Node or a policy changes, and read by the workers.
type announceIndex struct {
	reports   map[string]*heraldv1.HeraldNodeStatus
	answerers map[netip.Addr][]announce.Answerer
	conflicts map[netip.Addr][]announce.AddrConflict
	// excluded are the addresses probes found in use before their first
	// announcement, with a description, for the allocator.
	excluded map[netip.Addr]string
	// exclusions are the same, for the pools' status.
	exclusions []heraldv1.ExcludedAddress
	// kernelARP are the Ready nodes whose own kernels answer ARP for
	// every IPv4 load-balancer address (kube-proxy IPVS without
	// strictARP).
	kernelARP []string
	// advertisers are the nodes that advertise each address by BGP.
	advertisers map[netip.Addr][]announce.Advertiser
}

// buildIndex indexes the reports of the agents on nodes.
func buildIndex(reports []heraldv1.HeraldNode, nodes []corev1.Node) *announceIndex {
	idx := &announceIndex{
		reports:   map[string]*heraldv1.HeraldNodeStatus{},
		answerers: map[netip.Addr][]announce.Answerer{},
		conflicts: map[netip.Addr][]announce.AddrConflict{},
		excluded:  map[netip.Addr]string{},

		advertisers: map[netip.Addr][]announce.Advertiser{},
	}
	notReady := map[string]bool{}
	for _, n := range nodes {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				notReady[n.Name] = true
			}
		}
	}
	sort.Slice(reports, func(i, j int) bool { return reports[i].Name < reports[j].Name })
	for i := range reports {
		hn := &reports[i]
		st := &hn.Status
		idx.reports[hn.Name] = st
		if st.DataPlane != nil && len(st.DataPlane.KernelARPInterfaces) > 0 && !notReady[hn.Name] {
			idx.kernelARP = append(idx.kernelARP, hn.Name)
		}
		peers, mismatched := map[string][]string{}, map[string][]string{}
		for _, s := range st.Segments {
			for _, p := range s.Peers {
				peers[s.Interface] = append(peers[s.Interface], p.Node)
			}
			for _, p := range s.KeyMismatches {
				mismatched[s.Interface] = append(mismatched[s.Interface], p.Node)
			}
		}
		for _, a := range st.Announcements {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			ans := announce.Answerer{Node: hn.Name, Interfaces: a.Interfaces, Since: a.Since.Time, NotReady: notReady[hn.Name]}
			for _, ifc := range a.Interfaces {
				ans.Peers = append(ans.Peers, peers[ifc]...)
				ans.Mismatched = append(ans.Mismatched, mismatched[ifc]...)
			}
			idx.answerers[ip.Unmap()] = append(idx.answerers[ip.Unmap()], ans)
		}
		kube.IndexBGPAdvertisers(idx.advertisers, hn.Name, st.BGP, notReady[hn.Name])
		for _, c := range st.Conflicts {
			ip, err := netip.ParseAddr(c.Address)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			before := c.Phase == heraldv1.ConflictProbe
			idx.conflicts[ip] = append(idx.conflicts[ip], announce.AddrConflict{Node: hn.Name, MAC: c.MAC, Interface: c.Interface, BeforeAnnounce: before})
			if before {
				if _, dup := idx.excluded[ip]; !dup {
					idx.excluded[ip] = fmt.Sprintf("MAC %s, seen by node %s on %s before it was announced", c.MAC, hn.Name, c.Interface)
					idx.exclusions = append(idx.exclusions, heraldv1.ExcludedAddress{
						Address: ip.String(), MAC: c.MAC, Node: hn.Name, Interface: c.Interface, Since: c.Since,
					})
				}
			}
		}
	}
	sort.Slice(idx.exclusions, func(i, j int) bool { return idx.exclusions[i].Address < idx.exclusions[j].Address })
	return idx
}

// keys names the heartbeat keys two nodes sign with, for a KeyMismatch.
func (idx *announceIndex) keys(a, b string) string {
	fp := func(n string) string {
		if st := idx.reports[n]; st != nil && len(st.KeyFingerprints) > 0 {
			return strings.Join(st.KeyFingerprints, ",")
		}
		return "unknown"
	}
	return fmt.Sprintf("node %s signs its heartbeats with key %s and node %s with key %s", a, fp(a), b, fp(b))
}

// summarize says who answers for each of addrs (the Service svc holds), or
// why nobody does. The per-node verdicts it needs only when nobody answers
// are computed then, with the same pure function the agents use, from the
// Nodes, the policies, the Services sharing the address, the agents'
// interfaces and — for externalTrafficPolicy Local — the EndpointSlices.
func (r *reconciler) summarize(ctx context.Context, svc *corev1.Service, addrs []netip.Addr) ([]announce.AddrSummary, error) {
	idx := r.index.Load()
	if idx == nil {
		idx = buildIndex(nil, nil)
	}
	var out []announce.AddrSummary
	var input *verdictInput
	for _, addr := range addrs {
		var verdicts []announce.NodeVerdict
		if len(idx.answerers[addr]) == 0 && len(idx.advertisers[addr]) == 0 {
			if input == nil {
				in, err := r.verdictInput(ctx, svc)
				if err != nil {
					return nil, err
				}
				input = in
			}
			verdicts = input.verdicts(idx, addr)
		}
		sum := announce.Summarize(addr, idx.answerers[addr], idx.conflicts[addr], verdicts, idx.keys)
		out = append(out, announce.WithBGP(announce.WithKernelARP(sum, idx.kernelARP), idx.advertisers[addr]))
	}
	return out, nil
}

// verdictInput is what the per-node verdicts of one Service need.
type verdictInput struct {
	defaultClass bool
	nodes        []corev1.Node
	policies     []heraldv1.L2AnnouncementPolicy
	// sharers are the Services using the same addresses (svc included),
	// with the nodes where each has a ready endpoint (Local only).
	sharers []sharer
}

type sharer struct {
	svc        *corev1.Service
	readyNodes map[string]bool
}

// verdictInput reads the cache (and, for Local Services, the API server's
// EndpointSlices) for svc's verdicts.
func (r *reconciler) verdictInput(ctx context.Context, svc *corev1.Service) (*verdictInput, error) {
	in := &verdictInput{defaultClass: r.opts.DefaultClass}
	var nodes corev1.NodeList
	if err := r.client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	in.nodes = nodes.Items
	var pols heraldv1.L2AnnouncementPolicyList
	if err := r.client.List(ctx, &pols); err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	in.policies = pols.Items
	// The Services sharing svc's addresses, from the allocator's holders:
	// never a scan of every Service.
	keys := map[string]bool{serviceKey(svc.Namespace, svc.Name): true}
	r.mu.Lock()
	for _, addr := range ingressAddrs(svc) {
		for _, k := range r.alloc.Holders(addr) {
			keys[k] = true
		}
	}
	r.mu.Unlock()
	for k := range keys {
		s := svc
		if k != serviceKey(svc.Namespace, svc.Name) {
			ns, name, _ := strings.Cut(k, "/")
			var other corev1.Service
			if err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &other); err != nil {
				continue // gone meanwhile
			}
			s = &other
		}
		sh := sharer{svc: s}
		if s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			ready, err := r.readyNodes(ctx, s)
			if err != nil {
				return nil, err
			}
			sh.readyNodes = ready
		}
		in.sharers = append(in.sharers, sh)
	}
	return in, nil
}

// readyNodes lists the nodes with a ready endpoint of svc. It reads the
// API server, not a cache: the controller needs EndpointSlices only to
// explain an unannounced Local Service, which is rare, while a cache of
// every slice costs memory all the time.
func (r *reconciler) readyNodes(ctx context.Context, svc *corev1.Service) (map[string]bool, error) {
	var slices discoveryv1.EndpointSliceList
	if err := r.apiReader.List(ctx, &slices, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return nil, fmt.Errorf("list endpoint slices of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	out := map[string]bool{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				out[*ep.NodeName] = true
			}
		}
	}
	return out, nil
}

// verdicts computes every node's verdict on addr.
func (in *verdictInput) verdicts(idx *announceIndex, addr netip.Addr) []announce.NodeVerdict {
	out := make([]announce.NodeVerdict, 0, len(in.nodes))
	for i := range in.nodes {
		node := &in.nodes[i]
		report := idx.reports[node.Name]
		var services []announce.Service
		for _, sh := range in.sharers {
			if s, ok := kube.AnnounceService(sh.svc, in.defaultClass, sh.readyNodes[node.Name]); ok {
				services = append(services, s)
			}
		}
		// Without the agent's report, nothing says the node is excluded.
		excluded := report != nil && report.ExcludedByLabel
		v := kube.NodeVerdict(addr, node, report, excluded, in.policies, services)
		out = append(out, v)
	}
	return out
}
