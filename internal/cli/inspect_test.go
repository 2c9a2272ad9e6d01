package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/report"
	"github.com/herald-lb/herald/internal/testenv"
)

// shared is the real etcd + kube-apiserver of this package's tests.
var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{filepath.Join("..", "..", "config", "crd")}})

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

// requestLog records the requests a command makes.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) RoundTrip(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, req.Method+" "+req.URL.Path)
		l.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	slices.Sort(out)
	return out
}

// run runs one command in-process as the herald binary would.
type run struct {
	stdout, stderr string
	err            error
	requests       []string
}

func (r run) exitCode() int {
	if r.err != nil {
		return 1
	}
	return 0
}

type cliHarness struct {
	t    *testing.T
	env  *testenv.Env
	kube kubernetes.Interface
	cl   client.Client
	log  requestLog
	// wrap, if set, further changes the client configuration.
	wrap func(*rest.Config)
}

func (h *cliHarness) run(args ...string) run {
	h.t.Helper()
	hooks := inspectHooks{wrap: func(cfg *rest.Config) {
		if h.wrap != nil {
			h.wrap(cfg)
		}
		cfg.Wrap(h.log.RoundTrip)
	}}
	root := newRoot("herald", hooks)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(h.t.Context())
	return run{stdout: out.String(), stderr: errOut.String(), err: err, requests: h.log.take()}
}

// The requests of each command: one LIST per kind.
const (
	listPools     = "GET /apis/herald.dev/v1alpha1/loadbalancerippools"
	listPolicies  = "GET /apis/herald.dev/v1alpha1/l2announcementpolicies"
	listReports   = "GET /apis/herald.dev/v1alpha1/heraldnodes"
	listNodes     = "GET /api/v1/nodes"
	listServices  = "GET /api/v1/services"
	listLease     = "GET /apis/coordination.k8s.io/v1/namespaces/herald-system/leases"
	listSlicesWeb = "GET /apis/discovery.k8s.io/v1/namespaces/web/endpointslices"
)

func sorted(s ...string) []string { slices.Sort(s); return s }

// seconds normalizes ages in seconds (the Lease's renewal, the reports'
// writes), which depend on how long the test took.
var seconds = regexp.MustCompile(`\b\d+s\b`)

func normalize(s string) string { return seconds.ReplaceAllString(s, "Ns") }

func newCLIHarness(t *testing.T) *cliHarness {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real API server; run without -short")
	}
	env := shared.Env(t)
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", env.KubeconfigPath)
	return &cliHarness{t: t, env: env, kube: kubernetes.NewForConfigOrDie(env.Config), cl: cl}
}

func (h *cliHarness) must(err error) {
	h.t.Helper()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		h.t.Fatal(err)
	}
}

// The tutorial's cluster as the controller and the agents leave it:
// nodes cp1 (a Talos control plane: excluded), node1 and node2; a pool and
// a policy; two Services announced by node1 and node2.
func (h *cliHarness) tutorial(now time.Time) {
	ctx := h.t.Context()
	for _, ns := range []string{"herald-system", "web"} {
		_, err := h.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		h.must(err)
	}
	holder, dur := "herald-controller-6f7c9d-x2x7q_7c1de0b1", int32(15)
	_, err := h.kube.CoordinationV1().Leases("herald-system").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "herald-controller"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur,
			AcquireTime: &metav1.MicroTime{Time: now.Add(-3 * time.Hour)}, RenewTime: &metav1.MicroTime{Time: now}},
	}, metav1.CreateOptions{})
	h.must(err)

	for i, name := range []string{"cp1", "node1", "node2"} {
		labels := map[string]string{"kubernetes.io/os": "linux"}
		if name == "cp1" {
			labels[kube.ExcludeFromLBLabel] = ""
		}
		h.node(name, labels)
		mac := "02:42:c0:a8:0a:" + []string{"d7", "d8", "d9"}[i]
		hn := &heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
		h.must(h.cl.Create(ctx, hn))
		hn.Status = heraldv1.HeraldNodeStatus{
			AgentVersion: "v0.3.0", Incarnation: "1", KeyFingerprints: []string{"3f2a9c1e"},
			ExcludedByLabel: name == "cp1",
			DataPlane:       &heraldv1.NodeDataPlane{Mode: heraldv1.DataPlaneNFTables},
			Interfaces: []heraldv1.NodeInterface{
				{Name: "lo", Up: true, Loopback: true},
				{Name: "eth0", MAC: mac, Up: true, Broadcast: true, LAN: true},
			},
		}
		if name != "cp1" {
			other := map[string]string{"node1": "node2", "node2": "node1"}[name]
			hn.Status.Segments = []heraldv1.Segment{{Interface: "eth0", Peers: []heraldv1.SegmentPeer{{Node: other, KeyFingerprints: []string{"3f2a9c1e"}}}}}
			addr := map[string]string{"node1": "192.168.10.75", "node2": "192.168.10.76"}[name]
			hn.Status.Announcements = []heraldv1.Announcement{{Address: addr, Interfaces: []string{"eth0"}, Since: metav1.NewTime(now.Add(-3 * time.Hour))}}
		}
		h.must(h.cl.Status().Update(ctx, hn))
	}

	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "first-pool"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{Start: "192.168.10.75", Stop: "192.168.10.78"}}}}
	h.must(h.cl.Create(ctx, p))
	p.Status = heraldv1.LoadBalancerIPPoolStatus{IPsTotal: "4", IPsUsed: "2", IPsAvailable: "2", Conditions: []metav1.Condition{
		{Type: heraldv1.PoolConflictCondition, Status: metav1.ConditionFalse, Reason: "NoConflict", Message: "the pool overlaps no other pool and no node address", LastTransitionTime: metav1.NewTime(now)},
		{Type: heraldv1.IPsAvailableCondition, Status: metav1.ConditionTrue, Reason: "FreeAddresses", Message: "2", LastTransitionTime: metav1.NewTime(now)},
	}}
	h.must(h.cl.Status().Update(ctx, p))

	pol := &heraldv1.L2AnnouncementPolicy{ObjectMeta: metav1.ObjectMeta{Name: "default-policy"}, Spec: heraldv1.L2AnnouncementPolicySpec{
		Interfaces:   []string{"^eth[0-9]+"},
		NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/os": "linux"}},
	}}
	h.must(h.cl.Create(ctx, pol))

	h.service("web", "nginx", nil, []string{"192.168.10.75"}, now,
		metav1.Condition{Type: kube.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: "Allocated", Message: "192.168.10.75 from pool first-pool"},
		metav1.Condition{Type: kube.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced", Message: "192.168.10.75 announced by node node1 on eth0"})
	h.service("web", "echo", map[string]string{"herald.dev/sharing-key": "web"}, []string{"192.168.10.76"}, now,
		metav1.Condition{Type: kube.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: "Allocated", Message: "192.168.10.76 from pool first-pool"},
		metav1.Condition{Type: kube.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced", Message: "192.168.10.76 announced by node node2 on eth0"})
	// Not Herald's: another class, and a ClusterIP Service.
	metal := "metallb.io/l2"
	_, err = h.kube.CoreV1().Services("web").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "metal"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &metal, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	h.must(err)
	_, err = h.kube.CoreV1().Services("web").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "internal"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	h.must(err)
}

func (h *cliHarness) node(name string, labels map[string]string) {
	ctx := h.t.Context()
	n, err := h.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	h.must(err)
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
	_, err = h.kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	h.must(err)
}

func (h *cliHarness) service(ns, name string, annotations map[string]string, ips []string, now time.Time, conds ...metav1.Condition) {
	ctx := h.t.Context()
	s, err := h.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	h.must(err)
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	for _, c := range conds {
		c.LastTransitionTime = metav1.NewTime(now)
		s.Status.Conditions = append(s.Status.Conditions, c)
	}
	_, err = h.kube.CoreV1().Services(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{})
	h.must(err)
}

// The commands against a real API server: their output on the tutorial,
// one LIST per kind, exit code 0; then the cluster broken on purpose
// (a Service out of addresses, a foreign host on a pool address, a node
// without its agent): exit code 1 and each problem named.
func TestInspectCommands(t *testing.T) {
	h := newCLIHarness(t)
	now := time.Now().Truncate(time.Second)
	h.tutorial(now)

	r := h.run("pools")
	h.expect(r, 0, []string{listPools}, `POOL         BLOCKS                        FAMILY   SIZE   USED   FREE   USE%   CONFLICT   SELECTOR
first-pool   192.168.10.75-192.168.10.78   IPv4     4      2      2      50%    -          <all>
`)

	r = h.run("services", "-A")
	h.expect(r, 0, sorted(listPools, listPolicies, listReports, listNodes, listServices), `NAMESPACE   SERVICE   IPS             POOL         POLICY           ANNOUNCER   INTERFACE   SHARING   STATE
web         echo      192.168.10.76   first-pool   default-policy   node2       eth0        web       announced
web         nginx     192.168.10.75   first-pool   default-policy   node1       eth0        -         announced
`)
	// The kubeconfig context's namespace is "default": no Services there.
	r = h.run("services")
	h.expect(r, 0, sorted(listPools, listPolicies, listReports, listNodes, "GET /api/v1/namespaces/default/services"),
		"NAMESPACE   SERVICE   IPS   POOL   POLICY   ANNOUNCER   INTERFACE   SHARING   STATE\n")
	r = h.run("services", "-n", "web", "-o", "json")
	h.expect(r, 0, sorted(listPools, listPolicies, listReports, listNodes, "GET /api/v1/namespaces/web/services"), "")
	var sr report.ServicesReport
	if err := json.Unmarshal([]byte(r.stdout), &sr); err != nil {
		t.Fatalf("services -o json: %v\n%s", err, r.stdout)
	}
	if len(sr.Services) != 2 || sr.Services[1].Name != "nginx" || sr.Services[1].Addresses[0].Announcers[0].Node != "node1" || len(sr.Problems) != 0 {
		t.Errorf("services -o json: %+v", sr)
	}

	r = h.run("announcements")
	h.expect(r, 0, sorted(listReports, listNodes, listServices), `ADDRESS         NODE    INTERFACE   MAC                 SINCE   PEERS   SERVICES    NOTE
192.168.10.75   node1   eth0        02:42:c0:a8:0a:d8   3h      node2   web/nginx   -
192.168.10.76   node2   eth0        02:42:c0:a8:0a:d9   3h      node1   web/echo    -
`)

	r = h.run("status")
	h.expect(r, 0, sorted(listLease, listReports, listNodes, listPolicies, listPools, listServices), `Controller: leader herald-controller-6f7c9d-x2x7q_7c1de0b1 (Lease herald-system/herald-controller, renewed Ns ago)

Agents:
NODE    VERSION   KEYS       SEGMENTS   PEERS   ADDRESSES   DATAPLANE   REPORTED   NOTE
cp1     v0.3.0    3f2a9c1e   -          -       0           nftables    Ns         excluded by label
node1   v0.3.0    3f2a9c1e   eth0       node2   1           nftables    Ns         -
node2   v0.3.0    3f2a9c1e   eth0       node1   1           nftables    Ns         -

Pools:
POOL         BLOCKS                        FAMILY   SIZE   USED   FREE   USE%   CONFLICT   SELECTOR
first-pool   192.168.10.75-192.168.10.78   IPv4     4      2      2      50%    -          <all>

Services: 2 served, 2 announced, 0 not well
`)
	r = h.run("status", "-o", "yaml")
	h.expect(r, 0, sorted(listLease, listReports, listNodes, listPolicies, listPools, listServices), "")
	var st report.StatusReport
	if err := yaml.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o yaml: %v\n%s", err, r.stdout)
	}
	if st.Controller.Leader == "" || len(st.Agents) != 3 || st.Agents[1].Reported == nil || st.Serving != 2 {
		t.Errorf("status -o yaml: %+v", st)
	}

	h.explainTutorial(now)

	// Break it: web5 finds no address, a foreign host uses 192.168.10.78,
	// and node3 joins without an agent.
	ctx := t.Context()
	h.service("web", "web5", nil, nil, now, metav1.Condition{Type: kube.ConditionIPAllocated, Status: metav1.ConditionFalse,
		Reason: "OutOfIPs", Message: `pool "first-pool" has no free IPv4 address`})
	var p heraldv1.LoadBalancerIPPool
	h.must(h.cl.Get(ctx, client.ObjectKey{Name: "first-pool"}, &p))
	p.Status.IPsUsed, p.Status.IPsAvailable = "3", "0"
	p.Status.ExcludedAddresses = []heraldv1.ExcludedAddress{{Address: "192.168.10.78", MAC: "02:42:c0:a8:0a:99", Node: "node1", Interface: "eth0", Since: metav1.NewTime(now.Add(-time.Hour))}}
	h.must(h.cl.Status().Update(ctx, &p))
	h.node("node3", map[string]string{"kubernetes.io/os": "linux"})

	r = h.run("services", "-A")
	h.expect(r, 1, sorted(listPools, listPolicies, listReports, listNodes, listServices), `NAMESPACE   SERVICE   IPS             POOL         POLICY           ANNOUNCER   INTERFACE   SHARING   STATE
web         echo      192.168.10.76   first-pool   default-policy   node2       eth0        web       announced
web         nginx     192.168.10.75   first-pool   default-policy   node1       eth0        -         announced
web         web5      -               -            default-policy   -           -           -         pending: OutOfIPs

Problems (1):
  Service web/web5: OutOfIPs: pool "first-pool" has no free IPv4 address
`)
	r = h.run("pools", "-o", "json")
	h.expect(r, 1, []string{listPools}, "")
	if !strings.Contains(r.stdout, `"address": "192.168.10.78"`) {
		t.Errorf("pools -o json: no excluded address in\n%s", r.stdout)
	}
	r = h.run("status")
	h.expect(r, 1, sorted(listLease, listReports, listNodes, listPolicies, listPools, listServices), `Controller: leader herald-controller-6f7c9d-x2x7q_7c1de0b1 (Lease herald-system/herald-controller, renewed Ns ago)

Agents:
NODE    VERSION   KEYS       SEGMENTS   PEERS   ADDRESSES   DATAPLANE   REPORTED   NOTE
cp1     v0.3.0    3f2a9c1e   -          -       0           nftables    Ns         excluded by label
node1   v0.3.0    3f2a9c1e   eth0       node2   1           nftables    Ns         -
node2   v0.3.0    3f2a9c1e   eth0       node1   1           nftables    Ns         -
node3   -         -          -          -       -           -           -          no agent report

Pools:
POOL         BLOCKS                        FAMILY   SIZE   USED   FREE   USE%   CONFLICT                                    SELECTOR
first-pool   192.168.10.75-192.168.10.78   IPv4     4      3      0      75%    192.168.10.78 in use by 02:42:c0:a8:0a:99   <all>

Services: 3 served, 2 announced, 1 not well
NAMESPACE   SERVICE   IPS   STATE
web         web5      -     pending: OutOfIPs

Problems (3):
  Node node3: NoAgent: policy default-policy selects node node3 but no Herald agent reports from it (is the DaemonSet scheduled there?)
  Pool first-pool: AddressInUse: 192.168.10.78 is used by another host (MAC 02:42:c0:a8:0a:99, seen by node node1 on eth0); it is not handed out
  Service web/web5: OutOfIPs: pool "first-pool" has no free IPv4 address
`)
	if !strings.Contains(r.err.Error(), "3") {
		t.Errorf("status error %q does not count the problems", r.err)
	}

	// The controller's namespace is a flag; without a Lease there, no leader.
	r = h.run("status", "--namespace", "kube-system", "-o", "json")
	if r.exitCode() != 1 || !strings.Contains(r.stdout, `"reason": "NoLeader"`) {
		t.Errorf("status in kube-system: exit %d, %v\n%s", r.exitCode(), r.err, r.stdout)
	}

	h.explainBroken(now)
}

// expect checks a command's exit code, requests and (normalized) output;
// an empty want skips the output.
func (h *cliHarness) expect(r run, code int, requests []string, want string) {
	h.t.Helper()
	if r.exitCode() != code {
		h.t.Errorf("exit code %d (%v), want %d\n%s", r.exitCode(), r.err, code, r.stdout)
	}
	if code == 1 && r.err != nil && !errors.Is(r.err, ErrProblems) {
		h.t.Errorf("error %v is not ErrProblems", r.err)
	}
	if diff := cmp.Diff(requests, r.requests); diff != "" {
		h.t.Errorf("requests (-want +got): one LIST per kind, nothing else:\n%s", diff)
	}
	if want != "" {
		if diff := cmp.Diff(want, normalize(r.stdout)); diff != "" {
			h.t.Errorf("output (-want +got):\n%s\ngot:\n%s", diff, r.stdout)
		}
	}
	if testing.Verbose() {
		h.t.Logf("output:\n%s", r.stdout)
	}
}

// Missing CRDs and RBAC that forbids a list give errors that say so.
func TestInspectErrors(t *testing.T) {
	h := newCLIHarness(t)

	// Herald's API group at a version the server does not serve is what
	// a cluster without the CRDs answers: 404 on the list.
	h.wrap = func(cfg *rest.Config) {
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(req *http.Request) (*http.Response, error) {
				req = req.Clone(req.Context())
				req.URL.Path = strings.Replace(req.URL.Path, "/herald.dev/v1alpha1/", "/herald.dev/v0missing/", 1)
				return rt.RoundTrip(req)
			})
		})
	}
	r := h.run("pools")
	if r.err == nil || errors.Is(r.err, ErrProblems) || !strings.Contains(r.err.Error(), "Herald's CRDs are not installed") {
		t.Errorf("without CRDs: %v", r.err)
	}
	t.Logf("without CRDs: %v", r.err)

	// A ServiceAccount without any role.
	ctx := context.Background()
	_, err := h.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{})
	h.must(err)
	_, err = h.kube.CoreV1().ServiceAccounts("nobody").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{})
	h.must(err)
	sa, err := h.env.ServiceAccountConfig(ctx, "nobody", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	h.wrap = func(cfg *rest.Config) {
		cfg.BearerToken, cfg.BearerTokenFile = sa.BearerToken, sa.BearerTokenFile
		cfg.Username, cfg.Password = "", ""
		cfg.CertData, cfg.KeyData, cfg.CertFile, cfg.KeyFile = nil, nil, "", ""
	}
	for _, args := range [][]string{{"pools"}, {"services", "-A"}, {"status"}} {
		r = h.run(args...)
		if r.err == nil || !strings.Contains(r.err.Error(), "forbidden by RBAC") {
			t.Errorf("%v as a ServiceAccount without roles: %v", args, r.err)
		}
		t.Logf("%v without RBAC: %v", args, r.err)
	}

	// Flags: a context the kubeconfig lacks, an unknown format.
	h.wrap = nil
	if r = h.run("pools", "--context", "nope"); r.err == nil || !strings.Contains(r.err.Error(), "nope") {
		t.Errorf("--context nope: %v", r.err)
	}
	if r = h.run("pools", "-o", "xml"); r.err == nil || !strings.Contains(r.err.Error(), "want table, json or yaml") {
		t.Errorf("-o xml: %v", r.err)
	}
	if len(r.requests) != 0 {
		t.Errorf("-o xml made requests: %v", r.requests)
	}
	// --kubeconfig wins over $KUBECONFIG.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	if r = h.run("pools", "--kubeconfig", h.env.KubeconfigPath); r.err != nil && !errors.Is(r.err, ErrProblems) {
		t.Errorf("--kubeconfig: %v", r.err)
	}
}

// explainRequests are explain's: one LIST per kind, Services of every
// namespace, EndpointSlices of the Service's.
var explainRequests = sorted(listPools, listPolicies, listReports, listNodes, listServices, listSlicesWeb)

// explainTutorial: herald explain on the tutorial, an announced Service.
func (h *cliHarness) explainTutorial(now time.Time) {
	since := now.Add(-3 * time.Hour).UTC().Format(time.RFC3339)
	want := `Service web/nginx: announced
1. Class: LoadBalancer without a loadBalancerClass: Herald's (the default class)
2. Pools:
  + first-pool: Serves: pool "first-pool" may serve the Service
  address: 192.168.10.75 from pool first-pool
3. Policies:
  + default-policy: Selects: selects the Service (no serviceSelector)
4. Nodes:
  - cp1: ExcludedByLabel: node cp1 carries node.kubernetes.io/exclude-from-external-load-balancers (Talos 1.8 and later set it on every control-plane node); remove the label, or run the agents with --ignore-exclude-label (chart value agent.ignoreExcludeLabel) to announce from it anyway
  + node1: eligible on node node1 on eth0
  + node2: eligible on node node2 on eth0
5. Owner:
  192.168.10.75: node node1 on eth0, MAC 02:42:c0:a8:0a:d8, since ` + since + ` (3h ago)
  Announced True (Announced): 192.168.10.75 announced by node node1 on eth0
6. Endpoints:
  none
  data plane: node node1: Herald's nftables table (inet herald) forwards to the endpoints below
`
	for _, arg := range []string{"svc/nginx", "service/nginx", "nginx"} {
		r := h.run("explain", arg, "-n", "web")
		h.expect(r, 0, explainRequests, want)
	}
	r := h.run("explain", "svc/nginx", "-n", "web", "-o", "json")
	h.expect(r, 0, explainRequests, "")
	var e report.Explanation
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
		h.t.Fatalf("explain -o json: %v\n%s", err, r.stdout)
	}
	if e.State != report.StateAnnounced || len(e.Addresses) != 1 || e.Addresses[0].Owners[0].Node != "node1" || len(e.Nodes) != 3 {
		h.t.Errorf("explain -o json: %+v", e)
	}
	if r = h.run("explain", "deploy/nginx", "-n", "web"); r.err == nil || errors.Is(r.err, ErrProblems) || len(r.requests) != 0 {
		h.t.Errorf("explain deploy/nginx: %v, requests %v", r.err, r.requests)
	}
	// Not Herald's, and not there: exit 1, and why.
	r = h.run("explain", "svc/metal", "-n", "web")
	h.expect(r, 1, explainRequests, `Service web/metal: notServed
1. Class: loadBalancerClass metallb.io/l2 is another load balancer's (Herald's is herald.dev/l2)

Problems (1):
  Service web/metal: NotServed: loadBalancerClass metallb.io/l2 is another load balancer's (Herald's is herald.dev/l2)
`)
	r = h.run("explain", "svc/nope", "-n", "web")
	h.expect(r, 1, explainRequests, "")
}

// explainBroken: herald explain on the cluster broken on purpose.
func (h *cliHarness) explainBroken(now time.Time) {
	ctx := h.t.Context()
	// web5 is pending (OutOfIPs): the pool is full; node3 has no agent.
	r := h.run("explain", "svc/web5", "-n", "web")
	h.expect(r, 1, explainRequests, "")
	for _, line := range []string{
		"Service web/web5: pending",
		`  - first-pool: Full: pool "first-pool" may serve the Service but has no free address (3 of 4 used)`,
		`  address: none: IPAllocated False (OutOfIPs): pool "first-pool" has no free IPv4 address`,
		"  - node3: NoAgent: no Herald agent reports from node node3 (no HeraldNode node3: is the DaemonSet scheduled there?)",
		`  Service web/web5: OutOfIPs: pool "first-pool" has no free IPv4 address`,
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			h.t.Errorf("explain web5: no line %q in\n%s", line, r.stdout)
		}
	}

	// A Service no policy selects: the policy now leaves out app=private.
	var pol heraldv1.L2AnnouncementPolicy
	h.must(h.cl.Get(ctx, client.ObjectKey{Name: "default-policy"}, &pol))
	pol.Spec.ServiceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"private"}}}}
	h.must(h.cl.Update(ctx, &pol))
	h.service("web", "private", nil, []string{"192.168.10.77"}, now,
		metav1.Condition{Type: kube.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: "Allocated", Message: "192.168.10.77 from pool first-pool"},
		metav1.Condition{Type: kube.ConditionAnnounced, Status: metav1.ConditionFalse, Reason: "NoPolicy", Message: "192.168.10.77: no L2AnnouncementPolicy selects web/private"})
	svc, err := h.kube.CoreV1().Services("web").Get(ctx, "private", metav1.GetOptions{})
	h.must(err)
	svc.Labels = map[string]string{"app": "private"}
	_, err = h.kube.CoreV1().Services("web").Update(ctx, svc, metav1.UpdateOptions{})
	h.must(err)
	// node4's agent reports ens3 only: the policy's ^eth[0-9]+ matches nothing.
	h.node("node4", map[string]string{"kubernetes.io/os": "linux"})
	hn := &heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{Name: "node4"}}
	h.must(h.cl.Create(ctx, hn))
	hn.Status = heraldv1.HeraldNodeStatus{AgentVersion: "v0.3.0", KeyFingerprints: []string{"3f2a9c1e"},
		Interfaces: []heraldv1.NodeInterface{{Name: "lo", Up: true, Loopback: true}, {Name: "ens3", MAC: "02:42:c0:a8:0a:da", Up: true, Broadcast: true, LAN: true}}}
	h.must(h.cl.Status().Update(ctx, hn))

	r = h.run("explain", "svc/private", "-n", "web")
	h.expect(r, 1, explainRequests, "")
	for _, line := range []string{
		"Service web/private: unannounced",
		"  - default-policy: NotSelected: serviceSelector app notin (private) does not select the Service",
		"  - node1: NoPolicy: no L2AnnouncementPolicy selects web/private",
		"  192.168.10.77: nobody answers: NoPolicy: 192.168.10.77: no L2AnnouncementPolicy selects web/private",
		"  Announced False (NoPolicy): 192.168.10.77: no L2AnnouncementPolicy selects web/private",
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			h.t.Errorf("explain private: no line %q in\n%s", line, r.stdout)
		}
	}

	// externalTrafficPolicy Local with its one ready endpoint on node1,
	// which answers: node2 may not. It takes private's address.
	h.must(h.kube.CoreV1().Services("web").Delete(ctx, "private", metav1.DeleteOptions{}))
	h.service("web", "local", nil, []string{"192.168.10.77"}, now,
		metav1.Condition{Type: kube.ConditionIPAllocated, Status: metav1.ConditionTrue, Reason: "Allocated", Message: "192.168.10.77 from pool first-pool"},
		metav1.Condition{Type: kube.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: "Announced", Message: "192.168.10.77 announced by node node1 on eth0"})
	svc, err = h.kube.CoreV1().Services("web").Get(ctx, "local", metav1.GetOptions{})
	h.must(err)
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	_, err = h.kube.CoreV1().Services("web").Update(ctx, svc, metav1.UpdateOptions{})
	h.must(err)
	ready := true
	_, err = h.kube.DiscoveryV1().EndpointSlices("web").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-x7k2p", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, NodeName: ptrTo("node1"), Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}, metav1.CreateOptions{})
	h.must(err)
	var n1 heraldv1.HeraldNode
	h.must(h.cl.Get(ctx, client.ObjectKey{Name: "node1"}, &n1))
	n1.Status.Announcements = append(n1.Status.Announcements, heraldv1.Announcement{Address: "192.168.10.77", Interfaces: []string{"eth0"}, Since: metav1.NewTime(now.Add(-time.Hour))})
	h.must(h.cl.Status().Update(ctx, &n1))

	r = h.run("explain", "svc/local", "-n", "web")
	h.expect(r, 0, explainRequests, "")
	for _, line := range []string{
		"Service web/local: announced",
		"  - cp1: ExcludedByLabel: node cp1 carries node.kubernetes.io/exclude-from-external-load-balancers (Talos 1.8 and later set it on every control-plane node); remove the label, or run the agents with --ignore-exclude-label (chart value agent.ignoreExcludeLabel) to announce from it anyway",
		"  + node1: eligible on node node1 on eth0",
		"  - node2: NoLocalEndpoints: web/local has externalTrafficPolicy Local and no ready endpoint on node node2",
		"  - node3: NoLocalEndpoints: web/local has externalTrafficPolicy Local and no ready endpoint on node node3",
		"  - node4: NoLocalEndpoints: web/local has externalTrafficPolicy Local and no ready endpoint on node node4",
		"  + first-pool: Serves: pool \"first-pool\" may serve the Service",
		"  address: 192.168.10.77 from pool first-pool",
		"  10.244.1.5 on node node1 (ready)",
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			h.t.Errorf("explain local: no line %q in\n%s", line, r.stdout)
		}
	}
	// And on nginx (cluster policy, no Local): node4's interfaces named.
	r = h.run("explain", "svc/nginx", "-n", "web")
	h.expect(r, 0, explainRequests, "")
	line := "  - node4: NoMatchingInterface: no up interface of node node4 matches policy default-policy (^eth[0-9]+); it has ens3 (LAN), lo (loopback)\n"
	if !strings.Contains(r.stdout, line) {
		h.t.Errorf("explain nginx: no line %q in\n%s", line, r.stdout)
	}
}

func ptrTo[T any](v T) *T { return &v }
