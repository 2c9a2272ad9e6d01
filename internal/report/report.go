// Package report turns what the API server holds — pools, policies,
// Services with Herald's conditions, the agents' HeraldNode reports, Nodes
// and the controller's leader Lease — into the reports of the operator
// commands (herald pools, services, announcements, status), and decides
// what in them is wrong. It reads no cluster itself: the commands list the
// objects (one LIST per kind) and hand them over in an Input, so every
// decision here is a pure function with table tests.
//
// The report structs are the documented -o json|yaml output: their field
// names are stable, and times are RFC 3339.
package report

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
)

// Input is what the commands read. A command fills only the kinds its
// report needs; the others stay nil.
type Input struct {
	// Now is the time ages are measured against.
	Now time.Time
	// DefaultClass is the controller's --default-class: LoadBalancer
	// Services without a loadBalancerClass are Herald's.
	DefaultClass bool

	Pools    []heraldv1.LoadBalancerIPPool
	Policies []heraldv1.L2AnnouncementPolicy
	Reports  []heraldv1.HeraldNode
	Nodes    []corev1.Node
	Services []corev1.Service
	// EndpointSlices are read by explain only (Local Services' ready
	// endpoints, the endpoints behind a Service).
	EndpointSlices []discoveryv1.EndpointSlice
	Leases         []coordinationv1.Lease
	LeaseNS        string
	LeaseName      string
	// BGPAdvertisements are read by doctor only (a pool they advertise
	// need not lie in the nodes' LAN).
	BGPAdvertisements []heraldv1.BGPAdvertisement
}

// Problem is one thing that is wrong; any problem makes a command exit 1.
type Problem struct {
	// Kind is what is wrong: Service, Pool, Node, Segment, Address or
	// Controller.
	Kind string `json:"kind"`
	// Name names the object (namespace/name for a Service).
	Name string `json:"name"`
	// Reason is a CamelCase reason, usually a condition's.
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// ---- pools ----

// Pool is one row of herald pools.
type Pool struct {
	Name   string   `json:"name"`
	Blocks []string `json:"blocks"`
	// Family is IPv4, IPv6 or IPv4+IPv6.
	Family string `json:"family"`
	// Size, Used and Free are the controller's counts (strings: IPv6 pools
	// exceed every integer type); empty until the controller has counted.
	Size string `json:"size"`
	Used string `json:"used"`
	Free string `json:"free"`
	// UsePercent is Used/Size in percent; absent without counts.
	UsePercent *float64 `json:"usePercent,omitempty"`
	Disabled   bool     `json:"disabled"`
	// Excluded are the pool's addresses another host on the LAN uses
	// (status.excludedAddresses): never handed out while so.
	Excluded []ExcludedAddress `json:"excluded,omitempty"`
	// Conflict is the PoolConflict condition's reason and message when it
	// is True (the pool overlaps another, or holds a node's address): such
	// a pool hands out nothing.
	Conflict string `json:"conflict,omitempty"`
	// Selector is the serviceSelector in label-selector syntax; empty
	// selects every Service.
	Selector string `json:"selector"`
}

// ExcludedAddress is a pool address in use by a foreign host.
type ExcludedAddress struct {
	Address   string    `json:"address"`
	MAC       string    `json:"mac"`
	Node      string    `json:"node"`
	Interface string    `json:"interface"`
	Since     time.Time `json:"since"`
}

// PoolsReport is herald pools.
type PoolsReport struct {
	Pools    []Pool    `json:"pools"`
	Problems []Problem `json:"problems"`
}

// Pools reports every pool, by name.
func Pools(in Input) PoolsReport {
	r := PoolsReport{Pools: []Pool{}, Problems: []Problem{}}
	for i := range in.Pools {
		p := poolRow(&in.Pools[i])
		r.Pools = append(r.Pools, p)
		if p.Conflict != "" {
			r.Problems = append(r.Problems, Problem{Kind: "Pool", Name: p.Name, Reason: heraldv1.PoolConflictCondition, Message: p.Conflict})
		}
		for _, e := range p.Excluded {
			r.Problems = append(r.Problems, Problem{Kind: "Pool", Name: p.Name, Reason: "AddressInUse",
				Message: fmt.Sprintf("%s is used by another host (MAC %s, seen by node %s on %s); it is not handed out", e.Address, e.MAC, e.Node, e.Interface)})
		}
	}
	sort.Slice(r.Pools, func(i, j int) bool { return r.Pools[i].Name < r.Pools[j].Name })
	sortProblems(r.Problems)
	return r
}

func poolRow(p *heraldv1.LoadBalancerIPPool) Pool {
	row := Pool{
		Name: p.Name, Blocks: []string{}, Disabled: p.Spec.Disabled,
		Size: p.Status.IPsTotal, Used: p.Status.IPsUsed, Free: p.Status.IPsAvailable,
	}
	v4, v6 := false, false
	for _, b := range p.Spec.Blocks {
		s := b.CIDR
		switch {
		case s != "":
		case b.Stop != "" && b.Stop != b.Start:
			s = b.Start + "-" + b.Stop
		default:
			s = b.Start
		}
		row.Blocks = append(row.Blocks, s)
		if blk, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, true); err == nil {
			if blk.Family() == ipam.IPv6 {
				v6 = true
			} else {
				v4 = true
			}
		}
	}
	switch {
	case v4 && v6:
		row.Family = "IPv4+IPv6"
	case v6:
		row.Family = "IPv6"
	case v4:
		row.Family = "IPv4"
	}
	row.UsePercent = percent(row.Used, row.Size)
	for _, e := range p.Status.ExcludedAddresses {
		row.Excluded = append(row.Excluded, ExcludedAddress{Address: e.Address, MAC: e.MAC, Node: e.Node, Interface: e.Interface, Since: e.Since.UTC()})
	}
	if c := meta.FindStatusCondition(p.Status.Conditions, heraldv1.PoolConflictCondition); c != nil && c.Status == metav1.ConditionTrue {
		row.Conflict = c.Reason + ": " + c.Message
	}
	if p.Spec.ServiceSelector != nil {
		row.Selector = metav1.FormatLabelSelector(p.Spec.ServiceSelector)
	}
	return row
}

// percent is used/size×100, or nil when either is not a number or size
// is zero.
func percent(used, size string) *float64 {
	u, ok1 := new(big.Rat).SetString(used)
	s, ok2 := new(big.Rat).SetString(size)
	if !ok1 || !ok2 || s.Sign() == 0 {
		return nil
	}
	f, _ := new(big.Rat).Mul(new(big.Rat).Quo(u, s), big.NewRat(100, 1)).Float64()
	return &f
}

// ---- services ----

// Service is one row of herald services.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Class is the loadBalancerClass; empty for none (the default class).
	Class string `json:"class,omitempty"`
	// Addresses are status.loadBalancer.ingress, each with its pool and
	// the nodes whose reports say they answer for it.
	Addresses []ServiceAddress `json:"addresses"`
	// Policies are the L2AnnouncementPolicies that announce the Service's
	// load-balancer addresses (by their serviceSelector).
	Policies []string `json:"policies"`
	// SharingKey is the Service's sharing key, if any.
	SharingKey string `json:"sharingKey,omitempty"`
	// State is "announced" or "pending".
	State string `json:"state"`
	// Reason is the reason of the condition that decides State: the
	// herald.dev/IPAllocated reason while addresses are missing (OutOfIPs,
	// NoPool, …), else the herald.dev/Announced reason (Announced,
	// NoPolicy, NoMatchingInterface, NoEligibleNode, KeyMismatch,
	// AddressConflict, …). NoStatus: the controller wrote neither.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Problem: something is wrong with this Service (pending, or announced
	// with a key mismatch or an address conflict).
	Problem bool `json:"problem"`
}

// ServiceAddress is one address of a Service.
type ServiceAddress struct {
	Address string `json:"address"`
	// Pool is the pool whose blocks hold the address.
	Pool       string      `json:"pool,omitempty"`
	Announcers []Announcer `json:"announcers"`
}

// Announcer is a node answering for an address.
type Announcer struct {
	Node       string   `json:"node"`
	Interfaces []string `json:"interfaces"`
}

// ServicesReport is herald services.
type ServicesReport struct {
	Services []Service `json:"services"`
	Problems []Problem `json:"problems"`
}

// Service states.
const (
	StateAnnounced = "announced"
	StatePending   = "pending"
)

// ReasonNoStatus: the controller has written no herald.dev condition on a
// Service it should serve (it is not running, or has not got there yet).
const ReasonNoStatus = "NoStatus"

// Services reports the Services Herald serves, by namespace and name.
func Services(in Input) ServicesReport {
	r := ServicesReport{Services: []Service{}, Problems: []Problem{}}
	idx := indexReports(in.Reports, in.Nodes)
	pools := poolBlocks(in.Pools)
	for i := range in.Services {
		svc := &in.Services[i]
		if !kube.Serves(svc, in.DefaultClass) {
			continue
		}
		row := serviceRow(svc, in.Policies, pools, idx)
		r.Services = append(r.Services, row)
		if row.Problem {
			r.Problems = append(r.Problems, Problem{Kind: "Service", Name: row.Namespace + "/" + row.Name, Reason: row.Reason, Message: row.Message})
		}
	}
	sort.Slice(r.Services, func(i, j int) bool {
		a, b := r.Services[i], r.Services[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	sortProblems(r.Problems)
	return r
}

type namedBlocks struct {
	name   string
	blocks []ipam.Block
}

func poolBlocks(pools []heraldv1.LoadBalancerIPPool) []namedBlocks {
	var out []namedBlocks
	for _, p := range pools {
		nb := namedBlocks{name: p.Name}
		for _, b := range p.Spec.Blocks {
			if blk, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, true); err == nil {
				nb.blocks = append(nb.blocks, blk)
			}
		}
		out = append(out, nb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// poolOf names the pools holding a (several only when pools overlap).
func poolOf(pools []namedBlocks, a netip.Addr) string {
	var names []string
	for _, p := range pools {
		if slices.ContainsFunc(p.blocks, func(b ipam.Block) bool { return b.Contains(a) }) {
			names = append(names, p.name)
		}
	}
	return strings.Join(names, ",")
}

func serviceRow(svc *corev1.Service, policies []heraldv1.L2AnnouncementPolicy, pools []namedBlocks, idx *reportIndex) Service {
	row := Service{Namespace: svc.Namespace, Name: svc.Name, Addresses: []ServiceAddress{}, Policies: []string{}}
	if svc.Spec.LoadBalancerClass != nil {
		row.Class = *svc.Spec.LoadBalancerClass
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(ing.IP)
		if err != nil {
			continue
		}
		a = a.Unmap()
		sa := ServiceAddress{Address: a.String(), Pool: poolOf(pools, a), Announcers: []Announcer{}}
		for _, ans := range idx.live(a) {
			sa.Announcers = append(sa.Announcers, Announcer{Node: ans.node, Interfaces: ans.interfaces})
		}
		row.Addresses = append(row.Addresses, sa)
	}
	labelSet := labels.Set(kube.ServiceLabels(svc))
	for i := range policies {
		p := &policies[i]
		view, err := kube.PolicyView(p, nil)
		if err != nil || !view.LoadBalancerIPs {
			continue
		}
		if view.Services == nil || view.Services.Matches(labelSet) {
			row.Policies = append(row.Policies, p.Name)
		}
	}
	sort.Strings(row.Policies)
	if req, err := ipam.ParseRequest(svc.Annotations, svc.Spec.LoadBalancerIP); err == nil && req.Sharing != nil {
		row.SharingKey = req.Sharing.Key
	}
	row.State, row.Reason, row.Message, row.Problem = serviceState(svc)
	return row
}

// serviceState reads the controller's conditions: pending while
// IPAllocated is not True or Announced is not True; announced otherwise,
// a problem still when Announced's reason is not Announced (KeyMismatch,
// AddressConflict).
func serviceState(svc *corev1.Service) (state, reason, message string, problem bool) {
	alloc := meta.FindStatusCondition(svc.Status.Conditions, kube.ConditionIPAllocated)
	ann := meta.FindStatusCondition(svc.Status.Conditions, kube.ConditionAnnounced)
	switch {
	case alloc == nil && ann == nil:
		return StatePending, ReasonNoStatus, "the controller has written no herald.dev condition (is it running? see herald status)", true
	case alloc != nil && alloc.Status != metav1.ConditionTrue:
		return StatePending, alloc.Reason, alloc.Message, true
	case ann == nil:
		return StatePending, ReasonNoStatus, "addresses allocated; the controller has not written herald.dev/Announced yet", true
	case ann.Status != metav1.ConditionTrue:
		return StatePending, ann.Reason, ann.Message, true
	default:
		return StateAnnounced, ann.Reason, ann.Message, ann.Reason != "Announced"
	}
}

// ---- the agents' reports ----

type answerer struct {
	node       string
	interfaces []string
	since      time.Time
	// peers and mismatched are heard on the answering interfaces.
	peers, mismatched []string
	notReady          bool
}

// reportIndex is every agent's report by address, as the controller
// indexes them.
type reportIndex struct {
	answerers map[netip.Addr][]answerer
}

func indexReports(reports []heraldv1.HeraldNode, nodes []corev1.Node) *reportIndex {
	idx := &reportIndex{answerers: map[netip.Addr][]answerer{}}
	notReady := notReadyNodes(nodes)
	for _, hn := range reports {
		peers, mismatched := segmentPeers(&hn.Status)
		for _, a := range hn.Status.Announcements {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			ans := answerer{node: hn.Name, interfaces: slices.Clone(a.Interfaces), since: a.Since.Time, notReady: notReady[hn.Name]}
			for _, ifc := range a.Interfaces {
				ans.peers = append(ans.peers, peers[ifc]...)
				ans.mismatched = append(ans.mismatched, mismatched[ifc]...)
			}
			idx.answerers[ip.Unmap()] = append(idx.answerers[ip.Unmap()], ans)
		}
	}
	return idx
}

func notReadyNodes(nodes []corev1.Node) map[string]bool {
	out := map[string]bool{}
	for _, n := range nodes {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				out[n.Name] = true
			}
		}
	}
	return out
}

func segmentPeers(st *heraldv1.HeraldNodeStatus) (peers, mismatched map[string][]string) {
	peers, mismatched = map[string][]string{}, map[string][]string{}
	for _, s := range st.Segments {
		for _, p := range s.Peers {
			peers[s.Interface] = append(peers[s.Interface], p.Node)
		}
		for _, p := range s.KeyMismatches {
			mismatched[s.Interface] = append(mismatched[s.Interface], p.Node)
		}
	}
	return peers, mismatched
}

// live are the answerers of a whose reports are not stale, by node name.
// The rule is the controller's (announce.Summarize): a report is stale
// when its Node is not Ready, or when another node started answering later
// without hearing it on the segment (it died and could not retract its
// report).
func (idx *reportIndex) live(a netip.Addr) []answerer {
	var out []answerer
	for _, x := range idx.answerers[a] {
		if !idx.stale(a, x) {
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node < out[j].node })
	return out
}

func (idx *reportIndex) stale(a netip.Addr, x answerer) bool {
	if x.notReady {
		return true
	}
	for _, y := range idx.answerers[a] {
		if y.node == x.node || y.notReady || !y.since.After(x.since) {
			continue
		}
		if !slices.Contains(y.peers, x.node) && !slices.Contains(y.mismatched, x.node) {
			return true
		}
	}
	return false
}

// ---- announcements ----

// AnnouncementRow is one address a node's report says it answers for.
type AnnouncementRow struct {
	Address    string   `json:"address"`
	Node       string   `json:"node"`
	Interfaces []string `json:"interfaces"`
	// MACs are the answering interfaces' hardware addresses, from the
	// node's report (absent when it lists none).
	MACs  []string  `json:"macs,omitempty"`
	Since time.Time `json:"since"`
	// Peers are the other agents heard, authenticated, on the answering
	// interfaces; KeyMismatches those heard with another heartbeat key.
	Peers         []string `json:"peers"`
	KeyMismatches []string `json:"keyMismatches,omitempty"`
	// Services are the Services holding the address (namespace/name).
	Services []string `json:"services"`
	// Stale: the report is out of date (its Node is not Ready, or another
	// node took the address over without hearing this one); the controller
	// does not count it.
	Stale bool `json:"stale,omitempty"`
	// Conflict describes another host seen using the address.
	Conflict string `json:"conflict,omitempty"`
}

// AdvertisementRow is one address a node advertises by BGP.
type AdvertisementRow struct {
	Address string `json:"address"`
	Node    string `json:"node"`
	// Peers are the BGPPeers whose established sessions carry it, each as
	// "name (address, AS n)".
	Peers []string `json:"peers"`
	// Services are the Services holding the address (namespace/name).
	Services []string `json:"services"`
	// Stale: the node is not Ready, so its report may be out of date.
	Stale bool `json:"stale,omitempty"`
}

// AnnouncementsReport is herald announcements.
type AnnouncementsReport struct {
	Announcements []AnnouncementRow `json:"announcements"`
	// Advertisements are the addresses advertised by BGP, per node.
	Advertisements []AdvertisementRow `json:"advertisements,omitempty"`
	Problems       []Problem          `json:"problems"`
}

// Announcements reports every announced address (one row per answering
// node), by address.
func Announcements(in Input) AnnouncementsReport {
	r := AnnouncementsReport{Announcements: []AnnouncementRow{}, Problems: []Problem{}}
	idx := indexReports(in.Reports, in.Nodes)
	holders := map[netip.Addr][]string{}
	for i := range in.Services {
		svc := &in.Services[i]
		if !kube.Serves(svc, in.DefaultClass) {
			continue
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil {
				holders[a.Unmap()] = append(holders[a.Unmap()], svc.Namespace+"/"+svc.Name)
			}
		}
	}
	conflicts := map[netip.Addr]string{}
	for _, hn := range in.Reports {
		for _, c := range hn.Status.Conflicts {
			if a, err := netip.ParseAddr(c.Address); err == nil {
				if _, dup := conflicts[a.Unmap()]; !dup {
					conflicts[a.Unmap()] = fmt.Sprintf("MAC %s seen by node %s on %s (%s)", c.MAC, hn.Name, c.Interface, c.Phase)
				}
			}
		}
	}
	for _, hn := range in.Reports {
		macs := map[string]string{}
		for _, ifc := range hn.Status.Interfaces {
			macs[ifc.Name] = ifc.MAC
		}
		peers, mismatched := segmentPeers(&hn.Status)
		for _, an := range hn.Status.Announcements {
			a, err := netip.ParseAddr(an.Address)
			if err != nil {
				continue
			}
			a = a.Unmap()
			row := AnnouncementRow{Address: a.String(), Node: hn.Name, Interfaces: slices.Clone(an.Interfaces),
				Since: an.Since.UTC(), Peers: []string{}, Services: []string{}, Conflict: conflicts[a]}
			if row.Interfaces == nil {
				row.Interfaces = []string{}
			}
			for _, ifc := range an.Interfaces {
				if m := macs[ifc]; m != "" {
					row.MACs = append(row.MACs, m)
				}
				row.Peers = appendNew(row.Peers, peers[ifc]...)
				row.KeyMismatches = appendNew(row.KeyMismatches, mismatched[ifc]...)
			}
			row.Services = append(row.Services, holders[a]...)
			sort.Strings(row.Services)
			for _, x := range idx.answerers[a] {
				if x.node == hn.Name && idx.stale(a, x) {
					row.Stale = true
				}
			}
			r.Announcements = append(r.Announcements, row)
		}
	}
	notReady := notReadyNodes(in.Nodes)
	for _, hn := range in.Reports {
		adv := map[netip.Addr][]announce.Advertiser{}
		kube.IndexBGPAdvertisers(adv, hn.Name, hn.Status.BGP, notReady[hn.Name])
		for a, advs := range adv {
			for _, x := range advs {
				row := AdvertisementRow{Address: a.String(), Node: x.Node, Peers: []string{}, Services: slices.Clone(holders[a]), Stale: x.NotReady}
				for _, p := range x.Peers {
					row.Peers = append(row.Peers, p.String())
				}
				if row.Services == nil {
					row.Services = []string{}
				}
				sort.Strings(row.Services)
				r.Advertisements = append(r.Advertisements, row)
			}
		}
	}
	sort.Slice(r.Advertisements, func(i, j int) bool {
		x, y := r.Advertisements[i], r.Advertisements[j]
		if x.Address != y.Address {
			ax, _ := netip.ParseAddr(x.Address)
			ay, _ := netip.ParseAddr(y.Address)
			return ax.Less(ay)
		}
		return x.Node < y.Node
	})
	sort.Slice(r.Announcements, func(i, j int) bool {
		x, y := r.Announcements[i], r.Announcements[j]
		if x.Address != y.Address {
			ax, _ := netip.ParseAddr(x.Address)
			ay, _ := netip.ParseAddr(y.Address)
			return ax.Less(ay)
		}
		return x.Node < y.Node
	})
	// What is wrong: a foreign host, a key mismatch. Two live answerers
	// that hear each other are a hand-over (the next node answers before
	// the drained one stops), as the controller counts it: not a problem.
	seen := map[string]bool{}
	for _, row := range r.Announcements {
		if seen[row.Address] {
			continue
		}
		seen[row.Address] = true
		if row.Conflict != "" {
			r.Problems = append(r.Problems, Problem{Kind: "Address", Name: row.Address, Reason: "AddressConflict",
				Message: "another host uses " + row.Address + ": " + row.Conflict})
		}
	}
	r.Problems = append(r.Problems, segmentProblems(in.Reports)...)
	sortProblems(r.Problems)
	return r
}

// segmentProblems are the key mismatches the agents hear.
func segmentProblems(reports []heraldv1.HeraldNode) []Problem {
	var out []Problem
	for _, hn := range reports {
		for _, s := range hn.Status.Segments {
			for _, p := range s.KeyMismatches {
				out = append(out, Problem{Kind: "Segment", Name: hn.Name + "/" + s.Interface, Reason: "KeyMismatch",
					Message: fmt.Sprintf("node %s hears node %s on %s with another heartbeat key (%s vs %s); make every agent use the same heartbeat Secret",
						hn.Name, p.Node, s.Interface, joinOr(hn.Status.KeyFingerprints, "none"), joinOr(p.KeyFingerprints, "unknown"))})
			}
		}
	}
	return out
}

// ---- status ----

// StatusReport is herald status.
type StatusReport struct {
	Controller Controller `json:"controller"`
	Agents     []Agent    `json:"agents"`
	Pools      []Pool     `json:"pools"`
	// Services are the Services that are pending or announced with a
	// problem; Serving counts all Herald serves, Announced those announced.
	Services  []Service `json:"services"`
	Serving   int       `json:"serving"`
	Announced int       `json:"announced"`
	Problems  []Problem `json:"problems"`
}

// Controller is the controller's leader, from its Lease.
type Controller struct {
	Namespace string `json:"namespace"`
	Lease     string `json:"lease"`
	// Leader is the Lease's holder; empty when none holds it.
	Leader string `json:"leader,omitempty"`
	// Renewed is the Lease's last renewal.
	Renewed *time.Time `json:"renewed,omitempty"`
	// Expired: the holder did not renew within the lease duration.
	Expired bool `json:"expired,omitempty"`
}

// Agent is one node's agent, from its HeraldNode report (or its absence).
type Agent struct {
	Node            string   `json:"node"`
	Version         string   `json:"version,omitempty"`
	KeyFingerprints []string `json:"keyFingerprints"`
	KeyError        string   `json:"keyError,omitempty"`
	ExcludedByLabel bool     `json:"excludedByLabel,omitempty"`
	// Segments are the announcing interfaces with the peers heard there.
	Segments []AgentSegment `json:"segments"`
	// Addresses is the number of addresses the node answers for.
	Addresses int `json:"addresses"`
	// Reported is when the agent last wrote its report (the report
	// changes only when something in it does), from its managed fields.
	Reported *time.Time `json:"reported,omitempty"`
	// Missing: a policy selects the Node but no agent reports from it.
	Missing bool `json:"missing,omitempty"`
	// DataPlane is what forwards load-balancer traffic on the node, as its
	// agent found it (nil from agents older than the field).
	DataPlane *heraldv1.NodeDataPlane `json:"dataPlane,omitempty"`
	// BGP is the node's BGP speaker: its sessions and what it advertises
	// (nil when no BGPPeer selects the node).
	BGP *heraldv1.NodeBGP `json:"bgp,omitempty"`
}

// AgentSegment is one announcing interface of an agent.
type AgentSegment struct {
	Interface     string   `json:"interface"`
	Peers         []string `json:"peers"`
	KeyMismatches []string `json:"keyMismatches,omitempty"`
}

// Status reports the controller's leader, the agents, the pools and the
// Services that are not well.
func Status(in Input) StatusReport {
	r := StatusReport{Agents: []Agent{}, Services: []Service{}, Problems: []Problem{}}
	r.Controller = controllerStatus(in)
	if r.Controller.Leader == "" || r.Controller.Expired {
		msg := fmt.Sprintf("no Lease %s in namespace %s: the controller is not running there (another namespace? use --namespace)", in.LeaseName, in.LeaseNS)
		switch {
		case r.Controller.Expired:
			msg = fmt.Sprintf("the leader %s has not renewed Lease %s/%s since %s: no controller leads", r.Controller.Leader, in.LeaseNS, in.LeaseName, r.Controller.Renewed.Format(time.RFC3339))
		case len(in.Leases) > 0:
			msg = fmt.Sprintf("Lease %s/%s has no holder: no controller leads", in.LeaseNS, in.LeaseName)
		}
		r.Problems = append(r.Problems, Problem{Kind: "Controller", Name: in.LeaseNS + "/" + in.LeaseName, Reason: "NoLeader", Message: msg})
	}

	reported := map[string]bool{}
	for i := range in.Reports {
		hn := &in.Reports[i]
		reported[hn.Name] = true
		ag := Agent{Node: hn.Name, Version: hn.Status.AgentVersion, KeyFingerprints: slices.Clone(hn.Status.KeyFingerprints),
			KeyError: hn.Status.KeyError, ExcludedByLabel: hn.Status.ExcludedByLabel, Segments: []AgentSegment{},
			Addresses: len(hn.Status.Announcements), Reported: reportTime(hn), DataPlane: hn.Status.DataPlane.DeepCopy(),
			BGP: hn.Status.BGP.DeepCopy()}
		if ag.KeyFingerprints == nil {
			ag.KeyFingerprints = []string{}
		}
		for _, s := range hn.Status.Segments {
			seg := AgentSegment{Interface: s.Interface, Peers: []string{}}
			for _, p := range s.Peers {
				seg.Peers = append(seg.Peers, p.Node)
			}
			for _, p := range s.KeyMismatches {
				seg.KeyMismatches = append(seg.KeyMismatches, p.Node)
			}
			ag.Segments = append(ag.Segments, seg)
		}
		if ag.KeyError != "" {
			r.Problems = append(r.Problems, Problem{Kind: "Node", Name: hn.Name, Reason: "NoHeartbeatKey",
				Message: "the agent has no usable heartbeat key and announces nothing: " + ag.KeyError})
		}
		if dp := ag.DataPlane; dp != nil && len(dp.KernelARPInterfaces) > 0 {
			r.Problems = append(r.Problems, Problem{Kind: "Node", Name: hn.Name, Reason: string(announce.KernelARP),
				Message: fmt.Sprintf("kube-proxy runs in IPVS mode without strictARP: the node's kernel answers ARP on %s for every IPv4 "+
					"load-balancer address (they are on kube-ipvs0 and arp_ignore is 0), beside Herald's one owner; "+
					"set ipvs.strictARP: true in kube-proxy's configuration", strings.Join(dp.KernelARPInterfaces, ", "))})
		}
		if b := ag.BGP; b != nil {
			for _, ss := range b.Sessions {
				if ss.State != heraldv1.BGPSessionEstablished {
					msg := fmt.Sprintf("session with BGPPeer %s (%s, AS %d) is %s", ss.Peer, ss.Address, ss.PeerASN, ss.State)
					if ss.LastError != "" {
						msg += ": " + ss.LastError
					}
					r.Problems = append(r.Problems, Problem{Kind: "Node", Name: hn.Name, Reason: "BGPSessionDown", Message: msg})
				}
			}
		}
		r.Agents = append(r.Agents, ag)
	}
	r.Problems = append(r.Problems, segmentProblems(in.Reports)...)
	for i := range in.Nodes {
		n := &in.Nodes[i]
		if reported[n.Name] {
			continue
		}
		if _, excluded := n.Labels[kube.ExcludeFromLBLabel]; excluded {
			continue
		}
		var selecting []string
		for j := range in.Policies {
			if view, err := kube.PolicyView(&in.Policies[j], n); err == nil && view.SelectsNode {
				selecting = append(selecting, in.Policies[j].Name)
			}
		}
		if len(selecting) == 0 {
			continue
		}
		sort.Strings(selecting)
		r.Agents = append(r.Agents, Agent{Node: n.Name, KeyFingerprints: []string{}, Segments: []AgentSegment{}, Missing: true})
		r.Problems = append(r.Problems, Problem{Kind: "Node", Name: n.Name, Reason: "NoAgent",
			Message: fmt.Sprintf("policy %s selects node %s but no Herald agent reports from it (is the DaemonSet scheduled there?)", strings.Join(selecting, ", "), n.Name)})
	}
	sort.Slice(r.Agents, func(i, j int) bool { return r.Agents[i].Node < r.Agents[j].Node })

	pools := Pools(in)
	r.Pools = pools.Pools
	r.Problems = append(r.Problems, pools.Problems...)
	svcs := Services(in)
	r.Serving = len(svcs.Services)
	for _, s := range svcs.Services {
		if s.State == StateAnnounced {
			r.Announced++
		}
		if s.Problem {
			r.Services = append(r.Services, s)
		}
	}
	r.Problems = append(r.Problems, svcs.Problems...)
	sortProblems(r.Problems)
	return r
}

func controllerStatus(in Input) Controller {
	c := Controller{Namespace: in.LeaseNS, Lease: in.LeaseName}
	for _, l := range in.Leases {
		if l.Name != in.LeaseName || l.Namespace != in.LeaseNS {
			continue
		}
		if l.Spec.HolderIdentity != nil {
			c.Leader = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			t := l.Spec.RenewTime.UTC()
			c.Renewed = &t
			if d := l.Spec.LeaseDurationSeconds; d != nil && c.Leader != "" {
				c.Expired = in.Now.After(t.Add(time.Duration(*d) * time.Second))
			}
		}
	}
	return c
}

// reportTime is when the agent last wrote hn's status: the newest managed
// fields entry of the status subresource, else its creation.
func reportTime(hn *heraldv1.HeraldNode) *time.Time {
	var latest time.Time
	for _, mf := range hn.ManagedFields {
		if mf.Subresource == "status" && mf.Time != nil && mf.Time.After(latest) {
			latest = mf.Time.Time
		}
	}
	if latest.IsZero() {
		latest = hn.CreationTimestamp.Time
	}
	if latest.IsZero() {
		return nil
	}
	latest = latest.UTC()
	return &latest
}

// ---- helpers ----

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Kind != ps[j].Kind {
			return ps[i].Kind < ps[j].Kind
		}
		if ps[i].Name != ps[j].Name {
			return ps[i].Name < ps[j].Name
		}
		return ps[i].Reason < ps[j].Reason
	})
}

func appendNew(s []string, vs ...string) []string {
	for _, v := range vs {
		if !slices.Contains(s, v) {
			s = append(s, v)
		}
	}
	return s
}

func joinOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ",")
}
