// Package labbench_test measures Herald in the lab (internal/lab): a
// 3-node cluster in network namespaces with a real control plane, process
// kubelets, Herald installed with its Helm chart (Talos preset, nftables data
// plane) and a LAN client. Everything is measured from the client's network
// namespace, over real TCP connections through the nodes' kernels:
//
//   - BenchmarkVIP: download throughput and small-request latency through
//     the LoadBalancer address against straight to the backend Pod, for
//     externalTrafficPolicy Cluster (backend on the announcing node or on
//     another one) and Local;
//   - BenchmarkHTTPFailover: the longest time without a successful HTTP
//     response after kill -9 of the announcing node's agent, and after its
//     LAN link goes down;
//   - BenchmarkRollingRestart: failed requests while the agent DaemonSet
//     restarts;
//   - BenchmarkBGPFailover, BenchmarkBGPRollingRestart,
//     BenchmarkBGPConvergence (bgp_test.go): the same seen from the far
//     client behind the lab's router (FRR; the lab has it where FRR is
//     installed), and the router's routes for 1000 Services.
//
// One lab serves the whole test binary: it comes up at the first benchmark
// (prefix "hlbench-", state in $TMPDIR/herald-lab-bench, or
// $HERALD_LAB_PREFIX and $HERALD_LAB_DIR) and goes down when the binary
// ends. Without -bench nothing runs; the benchmarks skip in
// -short mode and without root.
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/lab/
package labbench_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/bird"
	"github.com/herald-lb/herald/internal/frr"
	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testrequire"
)

const (
	// prefix keeps this lab's namespaces apart from a user's (hl-) and the
	// end-to-end test's (hle2e-).
	prefix = "hlbench-"
	// ns holds the benchmark's Deployments and its Service.
	ns = "bench"
	// svcName is the LoadBalancer Service every benchmark uses; its Pods
	// are labelled app=svcName.
	svcName = "web"
	// bigFile is the file downloaded for throughput, of bigSize bytes.
	bigFile = "big.bin"
	bigSize = 64 << 20
	// nginxRoot is where nginx (the official image's and the lab's) serves
	// files from.
	nginxRoot = "/usr/share/nginx/html"
	// agentNS and agentDS are Herald's agent DaemonSet (Talos preset).
	agentNS = "herald-system"
	agentDS = "herald-agent"
)

var (
	trials    = flag.Int("trials", 20, "trials per fail-over benchmark (each a kill -9 or a link down)")
	restarts  = flag.Int("restarts", 5, "rolling restarts of the agent DaemonSet in BenchmarkRollingRestart")
	rounds    = flag.Int("rounds", 40, "downloads of the big file per path in BenchmarkVIP")
	requests  = flag.Int("requests", 2000, "small GETs per path in BenchmarkVIP")
	keep      = flag.Bool("keep", false, "leave the lab running after the benchmarks, for inspection (herald-lab --dir $TMPDIR/herald-lab-bench --prefix hlbench- …)")
	reuse     = flag.Bool("reuse", false, "use the benchmark lab that a run with -keep left in the state directory instead of starting a new one")
	heraldBin = flag.String("herald", "", "the herald binary Herald's Pods run (default: build ../../cmd/herald)")
	labBin    = flag.String("herald-lab", "", "the herald-lab binary that runs the lab (default: build ../../cmd/herald-lab)")
)

// env is the lab shared by the benchmarks of this binary.
type env struct {
	opts lab.Options
	dir  string
	st   lab.State
	kube kubernetes.Interface
	www  string // the hostPath directory the nginx Pods serve
	vip  string // the Service's LoadBalancer address
}

var (
	setUpOnce sync.Once
	shared    *env
	setUpErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if shared != nil {
		if err := shared.tearDown(code == 0); err != nil {
			fmt.Fprintln(os.Stderr, "tear down the lab:", err)
			code = max(code, 1)
		}
	} else if setUpErr != nil {
		// Up failed half way: remove what it left.
		_ = lab.Down(labOptions(), io.Discard)
	}
	os.Exit(code)
}

// labOptions: the state directory and prefix are $HERALD_LAB_DIR and
// $HERALD_LAB_PREFIX where set (to keep two benchmark runs apart), else
// $TMPDIR/herald-lab-bench and hlbench-. Where FRR and BIRD are installed
// the lab has its routers and far client (herald-lab up --bgp) for the BGP
// benchmarks; the LAN client's measurements do not go through the router.
func labOptions() lab.Options {
	dir := filepath.Join(os.TempDir(), "herald-lab-bench")
	if d := os.Getenv("HERALD_LAB_DIR"); d != "" {
		dir = d
	}
	pfx := prefix
	if p := os.Getenv("HERALD_LAB_PREFIX"); p != "" {
		pfx = p
	}
	return lab.Options{Dir: dir, Prefix: pfx, Lab: filepath.Join(dir, "herald-lab"), Herald: filepath.Join(dir, "herald"),
		BGP: frr.Available() == nil && bird.Available() == nil}
}

// labEnv returns the lab, bringing it up on first use; it skips the
// benchmark where the lab cannot run.
func labEnv(b *testing.B) *env {
	b.Helper()
	if testing.Short() {
		b.Skip("the lab benchmarks need root, network namespaces and a control plane: not in -short mode")
	}
	testrequire.Root(b, "the lab benchmarks need network namespaces and nftables")
	for _, tool := range []string{"ip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrequire.Missing(b, "the lab benchmarks need %s in PATH", tool)
		}
	}
	setUpOnce.Do(func() { shared, setUpErr = setUp(b) })
	if setUpErr != nil {
		b.Fatalf("lab: %v", setUpErr)
	}
	return shared
}

func setUp(b *testing.B) (*env, error) {
	opts := labOptions()
	e := &env{opts: opts, dir: opts.Dir, www: filepath.Join(opts.Dir, "www")}
	// A crashed run's daemon and namespaces (lab.Up would reuse a running
	// lab in this directory; start from scratch instead, unless -reuse).
	if !*reuse {
		if err := lab.Down(opts, io.Discard); err != nil {
			return nil, fmt.Errorf("remove a previous benchmark lab: %w", err)
		}
		if err := os.RemoveAll(e.dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(e.www, 0o755); err != nil {
		return nil, err
	}
	// The readiness probe's page (nginx has no autoindex).
	if err := os.WriteFile(filepath.Join(e.www, "index.html"), []byte("<title>bench</title>\n"), 0o644); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Join(e.www, bigFile)); err != nil || fi.Size() != bigSize {
		if err := writeBigFile(filepath.Join(e.www, bigFile)); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	var err error
	for _, bin := range []struct {
		flag string
		path *string
		pkg  string
	}{{*heraldBin, &opts.Herald, "../../cmd/herald"}, {*labBin, &opts.Lab, "../../cmd/herald-lab"}} {
		if _, err := os.Stat(*bin.path); err == nil && *reuse && bin.flag == "" {
			continue // the running lab's
		}
		if bin.flag != "" {
			if *bin.path, err = filepath.Abs(bin.flag); err != nil {
				return nil, err
			}
		} else {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", *bin.path, bin.pkg)
			// Static, as Herald's image needs it (and harmless for herald-lab).
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("go build %s: %w\n%s", bin.pkg, err, out)
			}
		}
	}
	e.opts = opts
	upLog, err := os.Create(filepath.Join(e.dir, "up.log"))
	if err != nil {
		return nil, err
	}
	defer upLog.Close()
	if e.st, err = lab.Up(ctx, opts, "", upLog); err != nil {
		return nil, fmt.Errorf("lab up (see %s and %s): %w", upLog.Name(), filepath.Join(e.dir, "lab.log"), err)
	}
	if e.kube, err = e.st.Client(); err != nil {
		return nil, err
	}
	if _, err := e.kubectl(ctx, "apply", "-f", "../../examples/pool.yaml", "-f", "../../examples/l2policy.yaml"); err != nil {
		return nil, err
	}
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svcName, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			Selector:              map[string]string{"app": svcName},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	if _, err := e.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("service: %w", err)
	}
	err = poll(ctx, time.Minute, func() (bool, error) {
		s, err := e.kube.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		e.vip = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the Service got no LoadBalancer address: %w", err)
	}
	b.Logf("lab up in %s (state in %s); Service %s/%s has %s", time.Since(start).Round(time.Second), e.dir, ns, svcName, e.vip)
	return e, nil
}

// tearDown stops the lab; the state directory stays when a benchmark
// failed, for its logs.
func (e *env) tearDown(ok bool) error {
	if *keep {
		fmt.Fprintf(os.Stderr, "the lab keeps running: herald-lab --dir %s --prefix %s status|kubectl|down (or -reuse)\n", e.dir, e.opts.Prefix)
		return nil
	}
	err := lab.Down(e.opts, io.Discard)
	if ok && err == nil {
		return os.RemoveAll(e.dir)
	}
	fmt.Fprintf(os.Stderr, "lab logs kept in %s\n", e.dir)
	return err
}

// writeBigFile writes bigSize bytes of a pattern that no layer can
// compress away (nothing compresses here, but a pattern costs nothing).
func writeBigFile(path string) error {
	buf := make([]byte, 1<<20)
	x := uint32(2463534242)
	for i := range buf {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		buf[i] = byte(x)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for range bigSize / len(buf) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func (e *env) kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.st.Tools.Kubectl, append([]string{"--kubeconfig", e.st.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// poll calls cond every 100 ms until it returns true, an error, or timeout.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// host returns the lab host (node or client) named name.
func (e *env) host(b *testing.B, name string) lab.Host {
	b.Helper()
	h, ok := e.st.Topology.Node(name)
	if !ok {
		b.Fatalf("no host %s in the lab", name)
	}
	return h
}

// nodeNames returns the Kubernetes nodes of the lab.
func (e *env) nodeNames() []string {
	var names []string
	for _, h := range e.st.Topology.Nodes {
		names = append(names, h.Name)
	}
	return names
}

// setTrafficPolicy sets the Service's externalTrafficPolicy.
func (e *env) setTrafficPolicy(b *testing.B, p corev1.ServiceExternalTrafficPolicy) {
	b.Helper()
	patch := fmt.Sprintf(`{"spec":{"externalTrafficPolicy":%q}}`, p)
	if _, err := e.kube.CoreV1().Services(ns).Patch(b.Context(), svcName, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		b.Fatalf("set externalTrafficPolicy %s: %v", p, err)
	}
}

// deployment is one nginx replica pinned to node, serving e.www.
func (e *env) deployment(node string) *appsv1.Deployment {
	labels := map[string]string{"app": svcName, "node": node}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: svcName + "-" + node, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"kubernetes.io/hostname": node},
					Containers: []corev1.Container{{
						Name:  "nginx",
						Image: "nginx:latest",
						Ports: []corev1.ContainerPort{{ContainerPort: 80}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
							PeriodSeconds: 1,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: nginxRoot, ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{
						HostPath: &corev1.HostPathVolumeSource{Path: e.www, Type: ptr.To(corev1.HostPathDirectory)},
					}}},
				},
			},
		},
	}
}

// place runs exactly one nginx backend on each of nodes (and none
// elsewhere), waits until the Service's EndpointSlices list exactly those
// Pods as ready, and returns their addresses by node.
func (e *env) place(b *testing.B, nodes ...string) map[string]string {
	b.Helper()
	ctx := b.Context()
	deps := e.kube.AppsV1().Deployments(ns)
	for _, n := range e.nodeNames() {
		name := svcName + "-" + n
		if slices.Contains(nodes, n) {
			if _, err := deps.Create(ctx, e.deployment(n), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				b.Fatalf("deployment %s: %v", name, err)
			}
		} else if err := deps.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			b.Fatalf("delete deployment %s: %v", name, err)
		}
	}
	var ips map[string]string
	var last string
	err := poll(ctx, 2*time.Minute, func() (bool, error) {
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + svcName})
		if err != nil {
			return false, nil
		}
		ips = map[string]string{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.PodIP != "" && slices.Contains(nodes, p.Spec.NodeName) {
				ips[p.Spec.NodeName] = p.Status.PodIP
			}
		}
		eps, err := e.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svcName})
		if err != nil {
			return false, nil
		}
		var ready, all []string
		for _, s := range eps.Items {
			for _, ep := range s.Endpoints {
				for _, a := range ep.Addresses {
					all = append(all, a)
					if ptr.Deref(ep.Conditions.Ready, true) {
						ready = append(ready, a)
					}
				}
			}
		}
		var want []string
		for _, ip := range ips {
			want = append(want, ip)
		}
		slices.Sort(want)
		slices.Sort(ready)
		slices.Sort(all)
		last = fmt.Sprintf("pods %v, ready endpoints %v, all endpoints %v", ips, ready, all)
		return len(want) == len(nodes) && slices.Equal(want, ready) && slices.Equal(want, all), nil
	})
	if err != nil {
		b.Fatalf("backends on %v: %v (last: %s)", nodes, err, last)
	}
	return ips
}

var announcedRE = regexp.MustCompile(`announced by node (\S+) on`)

// announcer returns the node the Service's herald.dev/Announced condition
// names, or "".
func (e *env) announcer(ctx context.Context) string {
	s, err := e.kube.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	for _, c := range s.Status.Conditions {
		if c.Type == "herald.dev/Announced" && c.Status == metav1.ConditionTrue {
			if m := announcedRE.FindStringSubmatch(c.Message); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

// clientMAC returns the MAC the client's kernel resolved the VIP to, or "".
func (e *env) clientMAC() string {
	out, err := labnet.IP("-n", e.st.Topology.Client.NetNS, "neigh", "show", e.vip)
	if err != nil {
		return ""
	}
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// mac returns the MAC of a node's eth0.
func (e *env) mac(b *testing.B, node string) string {
	b.Helper()
	out, err := labnet.IP("-n", e.host(b, node).NetNS, "-br", "link", "show", "eth0")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) < 3 {
		b.Fatalf("eth0 of %s: %q", node, out)
	}
	return f[2]
}

// waitOwner waits until the Service says node announces it, the client
// reaches the VIP through node's MAC, and want consecutive GETs succeed.
func (e *env) waitOwner(b *testing.B, node string, timeout time.Duration) {
	b.Helper()
	mac := e.mac(b, node)
	var last string
	err := poll(b.Context(), timeout, func() (bool, error) {
		got := e.announcer(b.Context())
		ok := e.getOK(b, 20, time.Second)
		last = fmt.Sprintf("announced by %q, client resolves the VIP to %q (%s is %s), 20 GETs ok: %v", got, e.clientMAC(), node, mac, ok)
		return got == node && e.clientMAC() == mac && ok, nil
	})
	if err != nil {
		b.Fatalf("%s did not become the VIP's owner: %v (last: %s)", node, err, last)
	}
}

// owner waits until some node announces the Service and GETs work, and
// returns the node.
func (e *env) owner(b *testing.B) string {
	b.Helper()
	var node string
	err := poll(b.Context(), time.Minute, func() (bool, error) {
		node = e.announcer(b.Context())
		return node != "" && e.getOK(b, 20, time.Second), nil
	})
	if err != nil {
		b.Fatalf("no node announces %s with working GETs: %v (announced by %q)", e.vip, err, node)
	}
	return node
}

// addRoute routes the client to the podCIDR of node via node's LAN address,
// for straight-to-the-Pod measurements, until the benchmark ends.
func (e *env) addRoute(b *testing.B, node string) {
	b.Helper()
	n, err := e.kube.CoreV1().Nodes().Get(b.Context(), node, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	client := e.st.Topology.Client.NetNS
	via := e.host(b, node).IPv4.String()
	if _, err := labnet.IP("-n", client, "route", "replace", n.Spec.PodCIDR, "via", via); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if _, err := labnet.IP("-n", client, "route", "del", n.Spec.PodCIDR, "via", via); err != nil {
			b.Errorf("remove the client's route to %s: %v", n.Spec.PodCIDR, err)
		}
	})
}

// agentPID returns the PID of the agent container running on node (the
// herald process itself) and the Pod's name.
func (e *env) agentPID(b *testing.B, node string) (int, string) {
	b.Helper()
	pods, err := e.kube.CoreV1().Pods(agentNS).List(b.Context(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/component=agent", FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil || cs.ContainerID == "" {
				continue
			}
			pid, err := lab.ContainerPID(b.Context(), e.st, node, cs.ContainerID)
			if err != nil {
				b.Fatal(err)
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if err != nil || !strings.Contains(string(cmdline), "agent") {
				b.Fatalf("pid %d of %s is not an agent (cmdline %q, %v)", pid, p.Name, cmdline, err)
			}
			return pid, p.Name
		}
	}
	b.Fatalf("no running agent Pod on %s", node)
	return 0, ""
}

// agentsReady waits until the agent DaemonSet runs a ready, up-to-date Pod
// on every node.
func (e *env) agentsReady(b *testing.B, timeout time.Duration) {
	b.Helper()
	var last string
	err := poll(b.Context(), timeout, func() (bool, error) {
		ds, err := e.kube.AppsV1().DaemonSets(agentNS).Get(b.Context(), agentDS, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		st := ds.Status
		last = fmt.Sprintf("%+v", st)
		n := int32(len(e.nodeNames()))
		return st.ObservedGeneration == ds.Generation && st.DesiredNumberScheduled == n && st.NumberReady == n &&
			st.UpdatedNumberScheduled == n && st.NumberAvailable == n, nil
	})
	if err != nil {
		b.Fatalf("agent DaemonSet not ready: %v (%s)", err, last)
	}
}
