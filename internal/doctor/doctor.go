// Package doctor checks a Herald installation, before and after it is
// installed, for the mistakes that make Services unreachable without an
// error anywhere: missing or stale CRDs, an API server too old for them,
// RBAC a part lacks, nodes a policy selects without an agent, interface
// patterns that match nothing, disagreeing heartbeat keys, kube-proxy's
// IPVS mode without strictARP, another load balancer announcing the same
// addresses, and KubePrism not reachable under the Talos preset.
//
// It is pure: the command gathers what the API server says (objects,
// access reviews, the server version) into an Input, and Run turns it into
// checks, each PASS, WARN or FAIL with the fix. Nothing here talks to a
// cluster, so every check has a table test.
package doctor

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"

	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/report"
)

// Result is a check's outcome.
type Result string

// The outcomes of a check. Only Fail makes `herald doctor` exit non-zero.
const (
	Pass Result = "PASS"
	Warn Result = "WARN"
	Fail Result = "FAIL"
)

// Check is one verdict with what to do about it.
type Check struct {
	// Name says what was checked ("CRDs", "RBAC herald-agent", …).
	Name   string `json:"name"`
	Result Result `json:"result"`
	// Message says what was found.
	Message string `json:"message"`
	// Fix says what to do, for WARN and FAIL.
	Fix string `json:"fix,omitempty"`
}

// Report is every check, in a fixed order.
type Report struct {
	Checks []Check `json:"checks"`
	// Failed and Warned count the FAIL and WARN checks.
	Failed int `json:"failed"`
	Warned int `json:"warned"`
}

// Component is one deployed part of Herald, as its workload shows it.
type Component struct {
	// Name is "controller" or "agent".
	Name string
	// Found: its Deployment (controller) or DaemonSet (agent) exists.
	Found bool
	// Workload is "Deployment NS/NAME" or "DaemonSet NS/NAME".
	Workload string
	// ServiceAccount is its Pods' ServiceAccount, in Namespace.
	Namespace, ServiceAccount string
	// HeartbeatSecret and CreatesSecret are its --heartbeat-secret and
	// (controller) --create-heartbeat-secret.
	HeartbeatSecret string
	CreatesSecret   bool
	// Desired and Ready are its Pods (replicas, or scheduled nodes).
	Desired, Ready int32
	// KubePrism: its Pods reach the API server at localhost:7445 (the
	// Talos preset's KUBERNETES_SERVICE_HOST/PORT).
	KubePrism bool
	// Elsewhere are other namespaces where the part was found, when it
	// was not found in Namespace.
	Elsewhere []string
}

// Access is the API server's answer to "may this ServiceAccount do this?".
type Access struct {
	// Component is "controller" or "agent".
	Component  string
	Permission kube.Permission
	Allowed    bool
	// Error is set when the review itself failed (the answer is unknown).
	Error string
}

// PeerObjects are another load balancer's objects found in the cluster.
type PeerObjects struct {
	// Product is "Cilium" or "MetalLB".
	Product string
	// Kind is the object kind (CiliumL2AnnouncementPolicy, …).
	Kind string
	// Names are the objects (namespace/name for namespaced kinds).
	Names []string
}

// Version is the API server's version.
type Version struct {
	Major, Minor int
	// GitVersion is its full version ("v1.37.1").
	GitVersion string
}

// minMinor is the oldest Kubernetes 1.x the CRDs work on: their CEL rules
// use two-variable comprehensions (Kubernetes 1.33).
const minMinor = 33

// Input is what the command gathered.
type Input struct {
	// Cluster is Herald's objects, the Nodes, the Services and the
	// controller's Lease, as the other operator commands read them.
	Cluster report.Input
	// Version is the API server's version.
	Version Version
	// CRDs are the herald.dev CustomResourceDefinitions the cluster has,
	// Want the ones this binary was built with.
	CRDs, Want []apiextensionsv1.CustomResourceDefinition
	// CRDsUnreadable says why the CRDs could not be listed (RBAC), if so.
	CRDsUnreadable string
	// Components are the controller and the agent.
	Components []Component
	// Access are the access reviews of each component's ServiceAccount.
	Access []Access
	// Peers are other load balancers' objects found.
	Peers []PeerObjects
}

// Run makes every check.
func Run(in Input) Report {
	var r Report
	add := func(cs ...Check) {
		for _, c := range cs {
			switch c.Result {
			case Fail:
				r.Failed++
			case Warn:
				r.Warned++
			}
			r.Checks = append(r.Checks, c)
		}
	}
	add(checkVersion(in.Version))
	add(checkCRDs(in))
	for _, c := range in.Components {
		add(checkComponent(c))
	}
	add(checkAccess(in)...)
	status := report.Status(in.Cluster)
	add(checkLeader(status))
	add(checkAgents(in, status))
	add(checkInterfaces(in.Cluster))
	add(checkExcluded(in.Cluster))
	add(checkKeys(in.Cluster))
	add(checkDataPlane(in.Cluster))
	add(checkPools(in.Cluster))
	add(checkSubnets(in.Cluster))
	add(checkGateways(in.Cluster))
	if c, ok := checkBGP(in.Cluster); ok {
		add(c)
	}
	add(checkPeers(in.Peers))
	if c, ok := checkKubePrism(in); ok {
		add(c)
	}
	return r
}

func checkVersion(v Version) Check {
	c := Check{Name: "API server version"}
	if v.Major < 1 || v.Major == 1 && v.Minor < minMinor {
		c.Result = Fail
		c.Message = fmt.Sprintf("Kubernetes %s: Herald's CRDs need 1.%d or later (their CEL validation rules use two-variable comprehensions)", v.GitVersion, minMinor)
		c.Fix = "upgrade the cluster to Kubernetes 1.33 or later"
		return c
	}
	c.Result = Pass
	c.Message = fmt.Sprintf("Kubernetes %s (1.%d or later is needed)", v.GitVersion, minMinor)
	return c
}

func checkCRDs(in Input) Check {
	c := Check{Name: "CRDs"}
	if in.CRDsUnreadable != "" {
		c.Result = Warn
		c.Message = "cannot read the CustomResourceDefinitions: " + in.CRDsUnreadable
		c.Fix = "run herald doctor as a user allowed to list customresourcedefinitions.apiextensions.k8s.io"
		return c
	}
	have := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for i := range in.CRDs {
		have[in.CRDs[i].Name] = &in.CRDs[i]
	}
	var missing, stale, ok []string
	for _, want := range in.Want {
		got := have[want.Name]
		switch {
		case got == nil:
			missing = append(missing, want.Name)
		case !sameVersions(got.Spec.Versions, want.Spec.Versions):
			stale = append(stale, want.Name)
		default:
			ok = append(ok, want.Name)
		}
	}
	switch {
	case len(missing) > 0:
		c.Result = Fail
		c.Message = "missing: " + strings.Join(missing, ", ")
		c.Fix = "install the chart (its crds/ directory), or kubectl apply --server-side -f deploy/helm/herald/crds/"
	case len(stale) > 0:
		c.Result = Warn
		c.Message = "not the ones this herald was built with (older or newer): " + strings.Join(stale, ", ")
		c.Fix = "Helm installs CRDs but never upgrades them: kubectl apply --server-side -f deploy/helm/herald/crds/ of the chart version you run"
	default:
		c.Result = Pass
		c.Message = fmt.Sprintf("%d present and current", len(ok))
	}
	return c
}

// sameVersions compares what matters of two CRDs' versions: names,
// served/storage and the schema (not the fields the API server defaults).
func sameVersions(a, b []apiextensionsv1.CustomResourceDefinitionVersion) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Served != y.Served || x.Storage != y.Storage {
			return false
		}
		if (x.Schema == nil) != (y.Schema == nil) || x.Schema != nil && !reflect.DeepEqual(x.Schema.OpenAPIV3Schema, y.Schema.OpenAPIV3Schema) {
			return false
		}
	}
	return true
}

func checkComponent(c Component) Check {
	ch := Check{Name: "Herald " + c.Name}
	switch {
	case !c.Found:
		ch.Result = Fail
		ch.Message = fmt.Sprintf("no %s in namespace %s", map[string]string{"controller": "Deployment", "agent": "DaemonSet"}[c.Name], c.Namespace)
		ch.Fix = "install the chart into that namespace, or name the right one with --namespace"
		if len(c.Elsewhere) > 0 {
			ch.Message += fmt.Sprintf(" (Herald's %s runs in namespace %s)", c.Name, strings.Join(c.Elsewhere, ", "))
			ch.Fix = "herald doctor --namespace " + c.Elsewhere[0]
		}
	case c.Desired == 0:
		ch.Result = Fail
		ch.Message = fmt.Sprintf("%s runs no Pod", c.Workload)
		ch.Fix = "check its nodeSelector, tolerations and replicas (kubectl describe)"
	case c.Ready < c.Desired:
		ch.Result = Fail
		ch.Message = fmt.Sprintf("%s: %d of %d Pods ready", c.Workload, c.Ready, c.Desired)
		ch.Fix = "kubectl -n " + c.Namespace + " describe pods and logs of the ones not ready"
	default:
		ch.Result = Pass
		ch.Message = fmt.Sprintf("%s: %d of %d Pods ready", c.Workload, c.Ready, c.Desired)
	}
	return ch
}

func checkAccess(in Input) []Check {
	var out []Check
	for _, comp := range in.Components {
		if !comp.Found {
			continue
		}
		c := Check{Name: fmt.Sprintf("RBAC %s (ServiceAccount %s/%s)", comp.Name, comp.Namespace, comp.ServiceAccount)}
		var denied, unknown []string
		n := 0
		for _, a := range in.Access {
			if a.Component != comp.Name {
				continue
			}
			n++
			switch {
			case a.Error != "":
				unknown = append(unknown, a.Permission.String()+" ("+a.Error+")")
			case !a.Allowed:
				denied = append(denied, a.Permission.String())
			}
		}
		switch {
		case len(denied) > 0:
			c.Result = Fail
			c.Message = "may not " + strings.Join(denied, "; ")
			c.Fix = "helm upgrade restores the chart's roles; if you manage RBAC yourself, grant these verbs to the ServiceAccount"
		case len(unknown) > 0:
			c.Result = Warn
			c.Message = "could not check: " + strings.Join(unknown, "; ")
			c.Fix = "run herald doctor as a user allowed to create subjectaccessreviews.authorization.k8s.io"
		default:
			c.Result = Pass
			c.Message = fmt.Sprintf("all %d permissions it needs are granted", n)
		}
		out = append(out, c)
	}
	return out
}

func checkLeader(s report.StatusReport) Check {
	c := Check{Name: "controller leader"}
	for _, p := range s.Problems {
		if p.Reason == "NoLeader" {
			c.Result = Fail
			c.Message = p.Message
			c.Fix = "check the controller's Pods and logs; without a leader no Service gets an address"
			return c
		}
	}
	c.Result = Pass
	c.Message = "held by " + s.Controller.Leader
	return c
}

func checkAgents(in Input, s report.StatusReport) Check {
	c := Check{Name: "an agent on every node a policy selects"}
	var missing []string
	for _, p := range s.Problems {
		if p.Reason == "NoAgent" {
			missing = append(missing, p.Message)
		}
	}
	if len(missing) > 0 {
		c.Result = Fail
		c.Message = strings.Join(missing, "; ")
		c.Fix = "the agent DaemonSet must run on every node a policy selects: check its nodeSelector and tolerations (taints on those nodes)"
		return c
	}
	c.Result = Pass
	c.Message = plural(len(in.Cluster.Reports), "agent reports", "agents report")
	return c
}

func checkInterfaces(in report.Input) Check {
	c := Check{Name: "policies' interfaces"}
	reports := map[string]int{}
	for i := range in.Reports {
		reports[in.Reports[i].Name] = i
	}
	var problems []string
	for i := range in.Nodes {
		n := &in.Nodes[i]
		j, ok := reports[n.Name]
		if !ok {
			continue // no agent: checkAgents says so
		}
		st := &in.Reports[j].Status
		for _, p := range kube.PolicyProblems(n, st, st.ExcludedByLabel, in.Policies) {
			problems = append(problems, p.Message)
		}
	}
	if len(problems) > 0 {
		c.Result = Fail
		c.Message = strings.Join(problems, "; ")
		c.Fix = "fix the policy's spec.interfaces regexes (they are anchored only if you anchor them: ^eth0$), or leave them out to announce on the nodes' LAN"
		return c
	}
	c.Result = Pass
	c.Message = fmt.Sprintf("every policy matches an up interface on each node it selects (%s)", plural(len(in.Policies), "policy", "policies"))
	return c
}

func checkExcluded(in report.Input) Check {
	c := Check{Name: "exclude-from-external-load-balancers label"}
	var excluded []string
	for i := range in.Nodes {
		if _, ok := in.Nodes[i].Labels[kube.ExcludeFromLBLabel]; ok {
			excluded = append(excluded, in.Nodes[i].Name)
		}
	}
	ignored := false
	for _, r := range in.Reports {
		if slices.Contains(excluded, r.Name) && !r.Status.ExcludedByLabel {
			ignored = true // the agents run with --ignore-exclude-label
		}
	}
	switch {
	case len(excluded) == 0:
		c.Result = Pass
		c.Message = "no node carries it"
	case ignored:
		c.Result = Pass
		c.Message = fmt.Sprintf("%s carry it; the agents ignore it (--ignore-exclude-label)", strings.Join(excluded, ", "))
	case len(excluded) == len(in.Nodes):
		c.Result = Fail
		c.Message = "every node carries it, so no node announces anything"
		c.Fix = "remove node.kubernetes.io/exclude-from-external-load-balancers from the nodes that should announce, or set the chart's agent.ignoreExcludeLabel"
	default:
		c.Result = Warn
		c.Message = fmt.Sprintf("%s carry it and announce nothing (Talos 1.8 and later label every control-plane node)", strings.Join(excluded, ", "))
		c.Fix = "fine if intended; else remove the label or set the chart's agent.ignoreExcludeLabel"
	}
	return c
}

func checkKeys(in report.Input) Check {
	c := Check{Name: "heartbeat keys"}
	var problems []string
	sets := map[string][]string{}
	for _, r := range in.Reports {
		if r.Status.KeyError != "" {
			problems = append(problems, fmt.Sprintf("node %s has no key: %s", r.Name, r.Status.KeyError))
			continue
		}
		k := strings.Join(r.Status.KeyFingerprints, ",")
		sets[k] = append(sets[k], r.Name)
		for _, s := range r.Status.Segments {
			for _, m := range s.KeyMismatches {
				problems = append(problems, fmt.Sprintf("node %s hears %s on %s with another key", r.Name, m.Node, s.Interface))
			}
		}
	}
	if len(sets) > 1 {
		keys := make([]string, 0, len(sets))
		for k := range sets {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s sign with %s", strings.Join(sets[k], ", "), k))
		}
		problems = append(problems, "the agents use different keys: "+strings.Join(parts, "; "))
	}
	if len(problems) > 0 {
		c.Result = Fail
		c.Message = strings.Join(problems, "; ")
		c.Fix = "every agent must read the same heartbeat Secret (chart value heartbeat.secretName / existingSecret); two keys mean two MACs answer"
		return c
	}
	c.Result = Pass
	if len(sets) == 1 {
		for k := range sets {
			c.Message = "every agent signs with " + k
		}
	} else {
		c.Message = "no agent reports yet"
	}
	return c
}

func checkDataPlane(in report.Input) Check {
	c := Check{Name: "data plane"}
	byMode := map[string][]string{}
	var kernelARP []string
	for _, r := range in.Reports {
		dp := r.Status.DataPlane
		if dp == nil {
			byMode["not reported (an older agent)"] = append(byMode["not reported (an older agent)"], r.Name)
			continue
		}
		mode := "Herald's nftables table"
		if dp.Mode != "nftables" {
			mode = "another data plane"
			if dp.Evidence != "" {
				mode += " (" + dp.Evidence + ")"
			} else {
				mode = "none (--dataplane=none)"
			}
		}
		byMode[mode] = append(byMode[mode], r.Name)
		if len(dp.KernelARPInterfaces) > 0 {
			kernelARP = append(kernelARP, fmt.Sprintf("%s on %s", r.Name, strings.Join(dp.KernelARPInterfaces, ",")))
		}
	}
	modes := make([]string, 0, len(byMode))
	for m := range byMode {
		modes = append(modes, m)
	}
	// By the first node of each mode, so the message reads as a node list.
	sort.Slice(modes, func(i, j int) bool { return byMode[modes[i]][0] < byMode[modes[j]][0] })
	var parts []string
	for _, m := range modes {
		parts = append(parts, fmt.Sprintf("%s: %s", strings.Join(byMode[m], ", "), m))
	}
	c.Message = strings.Join(parts, "; ")
	switch {
	case len(kernelARP) > 0:
		c.Result = Fail
		c.Message = "kube-proxy runs in IPVS mode without strictARP: the kernels of " + strings.Join(kernelARP, "; ") +
			" answer ARP for every IPv4 load-balancer address, beside Herald's owner"
		c.Fix = "set ipvs.strictARP: true in kube-proxy's configuration (kubectl -n kube-system edit configmap kube-proxy) and restart kube-proxy"
	case len(in.Reports) == 0:
		c.Result = Warn
		c.Message = "no agent reports"
		c.Fix = "see the agent checks above"
	case len(byMode) > 1:
		c.Result = Warn
		c.Fix = "nodes differ in who forwards load-balancer traffic; fine during a kube-proxy roll-out, else check --dataplane (chart value dataplane)"
	default:
		c.Result = Pass
	}
	return c
}

func checkPools(in report.Input) Check {
	c := Check{Name: "pools"}
	if len(in.Pools) == 0 {
		c.Result = Warn
		c.Message = "no LoadBalancerIPPool: no Service can get an address"
		c.Fix = "create a pool (see the README's tutorial), or herald import --from metallb|cilium"
		return c
	}
	r := report.Pools(in)
	var msgs []string
	for _, p := range r.Problems {
		msgs = append(msgs, fmt.Sprintf("%s %s: %s", p.Kind, p.Name, p.Message))
	}
	if len(msgs) > 0 {
		c.Result = Fail
		c.Message = strings.Join(msgs, "; ")
		c.Fix = "a pool overlapping another pool or a node address is not used; an address another host uses is not handed out: fix the blocks or find that host"
		return c
	}
	c.Result = Pass
	c.Message = plural(len(in.Pools), "pool", "pools") + ", no conflict"
	return c
}

func checkPeers(peers []PeerObjects) Check {
	c := Check{Name: "other load balancers"}
	var fails, warns []string
	for _, p := range peers {
		if len(p.Names) == 0 {
			continue
		}
		what := fmt.Sprintf("%s %s %s", p.Product, p.Kind, strings.Join(p.Names, ", "))
		switch p.Kind {
		case "CiliumL2AnnouncementPolicy", "L2Advertisement", "IPAddressPool", "BGPAdvertisement":
			fails = append(fails, what)
		default:
			warns = append(warns, what)
		}
	}
	switch {
	case len(fails) > 0:
		c.Result = Fail
		c.Message = "another load balancer announces or assigns addresses too: " + strings.Join(append(fails, warns...), "; ") +
			"; two announcers for one address make clients flap between MACs"
		c.Fix = "herald import --from metallb|cilium --cluster translates them; then delete them (or give the other load balancer its own loadBalancerClass)"
	case len(warns) > 0:
		c.Result = Warn
		c.Message = "found: " + strings.Join(warns, "; ") + "; Cilium's LB-IPAM assigns addresses to LoadBalancer Services as Herald does"
		c.Fix = "disable Cilium's LB-IPAM for Herald's Services (a serviceSelector on its pools, or a loadBalancerClass), or delete those pools"
	default:
		c.Result = Pass
		c.Message = "no MetalLB or Cilium LB-IPAM / L2 announcement objects"
	}
	return c
}

// checkKubePrism applies only when a part runs with the Talos preset.
func checkKubePrism(in Input) (Check, bool) {
	var prism []Component
	for _, c := range in.Components {
		if c.Found && c.KubePrism {
			prism = append(prism, c)
		}
	}
	if len(prism) == 0 {
		return Check{}, false
	}
	c := Check{Name: "KubePrism (Talos preset)"}
	var down []string
	for _, p := range prism {
		if p.Ready < p.Desired {
			down = append(down, fmt.Sprintf("%s: %d of %d Pods ready", p.Workload, p.Ready, p.Desired))
		}
	}
	if len(down) > 0 {
		c.Result = Fail
		c.Message = "parts that reach the API server through KubePrism (localhost:7445) are not ready: " + strings.Join(down, "; ")
		c.Fix = "enable KubePrism in the Talos machine config (machine.features.kubePrism.enabled: true, port 7445), or install without values-talos.yaml"
		return c, true
	}
	c.Result = Pass
	c.Message = "every part using localhost:7445 is ready"
	return c, true
}

// plural counts things: "1 pool", "3 pools".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checkSubnets: each pool's blocks must lie inside a subnet of some node's
// LAN, as its agent reports it. Clients on the LAN ARP only for addresses
// of their own subnet; anything else they send to their router, which
// announcing by ARP/NDP cannot reach.
func checkSubnets(in report.Input) Check {
	c := Check{Name: "pools inside the nodes' LAN subnets"}
	var lans []netip.Prefix
	for _, r := range in.Reports {
		for _, i := range r.Status.Interfaces {
			if !i.LAN {
				continue
			}
			for _, a := range i.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil {
					lans = append(lans, p.Masked())
				}
			}
		}
	}
	if len(lans) == 0 {
		c.Result = Pass
		c.Message = "not checked: no agent reports its LAN subnets (agents older than this check)"
		return c
	}
	inside := func(first, last netip.Addr) bool {
		for _, l := range lans {
			if l.Contains(first) && l.Contains(last) {
				return true
			}
		}
		return false
	}
	var outside, routed []string
	for _, p := range in.Pools {
		if ad := advertisedBy(in.BGPAdvertisements, p); ad != "" {
			// Routers learn its addresses by BGP: no need for the LAN.
			routed = append(routed, fmt.Sprintf("%s (BGPAdvertisement %s)", p.Name, ad))
			continue
		}
		for _, b := range p.Spec.Blocks {
			// Every address of the block counts, network and broadcast too.
			blk, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, true)
			if err != nil {
				continue // the pool's own conditions say what is wrong with it
			}
			if !inside(blk.First, blk.Last) {
				what := b.CIDR
				if what == "" {
					what = b.Start + "-" + b.Stop
				}
				outside = append(outside, fmt.Sprintf("pool %s: %s", p.Name, what))
			}
		}
	}
	slices.SortFunc(lans, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	lans = slices.Compact(lans)
	names := make([]string, len(lans))
	for i, l := range lans {
		names[i] = l.String()
	}
	if len(outside) > 0 {
		c.Result = Fail
		c.Message = fmt.Sprintf("outside every subnet of the nodes' LAN (%s): %s; clients do not ARP for such addresses, they send them to their router",
			strings.Join(names, ", "), strings.Join(outside, "; "))
		c.Fix = "take the pool's addresses from the nodes' LAN subnet (outside its DHCP range), or route them to the nodes"
		return c
	}
	c.Result = Pass
	c.Message = "every block lies in a subnet of the nodes' LAN (" + strings.Join(names, ", ") + ")"
	if len(routed) > 0 {
		c.Message = "every block of the pools announced on the LAN lies in a subnet of the nodes' LAN (" + strings.Join(names, ", ") +
			"); advertised by BGP instead: " + strings.Join(routed, ", ")
	}
	return c
}

// advertisedBy names the first BGPAdvertisement (by name) whose
// poolSelector selects pool p, or "".
func advertisedBy(ads []heraldv1.BGPAdvertisement, p heraldv1.LoadBalancerIPPool) string {
	var names []string
	for _, a := range ads {
		sel := labels.Everything()
		if a.Spec.PoolSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(a.Spec.PoolSelector)
			if err != nil {
				continue
			}
			sel = s
		}
		if sel.Matches(labels.Set(p.Labels)) {
			names = append(names, a.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return names[0]
}

// checkGateways: no pool may hold the address of a router of the nodes'
// LAN (the next hop of a node's default route, as its agent reports it).
// Herald would hand it to a Service and answer ARP for it, taking the
// LAN's way out from every host on it.
func checkGateways(in report.Input) Check {
	c := Check{Name: "pools clear of the LAN's gateways"}
	type gateway struct {
		addr  netip.Addr
		nodes []string
	}
	var gws []gateway
	for _, r := range in.Reports {
		for _, i := range r.Status.Interfaces {
			if !i.LAN {
				continue
			}
			for _, g := range i.Gateways {
				a, err := netip.ParseAddr(g)
				if err != nil {
					continue
				}
				k := slices.IndexFunc(gws, func(x gateway) bool { return x.addr == a })
				if k < 0 {
					gws = append(gws, gateway{addr: a})
					k = len(gws) - 1
				}
				if !slices.Contains(gws[k].nodes, r.Name) {
					gws[k].nodes = append(gws[k].nodes, r.Name)
				}
			}
		}
	}
	if len(gws) == 0 {
		c.Result = Pass
		c.Message = "not checked: no agent reports a default gateway on its LAN"
		return c
	}
	slices.SortFunc(gws, func(a, b gateway) int { return a.addr.Compare(b.addr) })
	var inside []string
	for _, p := range in.Pools {
		for _, b := range p.Spec.Blocks {
			blk, err := ipam.ParseBlock(b.CIDR, b.Start, b.Stop, true)
			if err != nil {
				continue // the pool's own conditions say what is wrong with it
			}
			for _, g := range gws {
				if blk.First.BitLen() == g.addr.BitLen() && blk.First.Compare(g.addr) <= 0 && g.addr.Compare(blk.Last) <= 0 {
					inside = append(inside, fmt.Sprintf("pool %s holds %s (the default gateway of %s)", p.Name, g.addr, strings.Join(g.nodes, ", ")))
				}
			}
		}
	}
	if len(inside) > 0 {
		c.Result = Fail
		c.Message = strings.Join(inside, "; ")
		c.Fix = "take the gateway's address out of the pool (split the block around it, or use a range): Herald would give it to a Service and answer ARP for the LAN's router"
		return c
	}
	names := make([]string, len(gws))
	for i, g := range gws {
		names[i] = g.addr.String()
	}
	c.Result = Pass
	c.Message = "no pool holds a default gateway of the nodes (" + strings.Join(names, ", ") + ")"
	return c
}

// checkBGP: every BGP session the agents report is established; not
// shown when no agent has a BGP session.
func checkBGP(in report.Input) (Check, bool) {
	c := Check{Name: "BGP sessions"}
	var total int
	var down []string
	for _, r := range in.Reports {
		if r.Status.BGP == nil {
			continue
		}
		for _, s := range r.Status.BGP.Sessions {
			total++
			if s.State == heraldv1.BGPSessionEstablished {
				continue
			}
			msg := fmt.Sprintf("node %s with %s (%s, AS %d) is %s", r.Name, s.Peer, s.Address, s.PeerASN, s.State)
			if s.LastError != "" {
				msg += ": " + s.LastError
			}
			down = append(down, msg)
		}
	}
	if total == 0 {
		return c, false
	}
	if len(down) > 0 {
		c.Result = Fail
		c.Message = strings.Join(down, "; ")
		c.Fix = "the error names the cause: a NOTIFICATION (bad peer as: the BGPPeer's peerASN or the router's remote-as), a connection that times out " +
			"(the router's address, a filter, or a TCP MD5 password that differs), a password Secret the agents may not read (the chart's bgp.passwordSecrets)"
		return c, true
	}
	c.Result = Pass
	c.Message = plural(total, "session", "sessions") + " established"
	return c, true
}
