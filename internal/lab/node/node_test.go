package node_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labimages"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/lab/node"
	"github.com/herald-lb/herald/internal/lab/registry"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/testenv"
	"github.com/herald-lb/herald/internal/testrequire"
)

// probeImage is the test's container: testdata/probe, pulled through the
// lab's registry as a mirror of docker.io.
const probeImage = "docker.io/herald-test/probe:1"

// registryAddr is where the registry listens inside the node's namespace.
const registryAddr = "127.0.0.1:5000"

// TestNode runs one real node (kubelet, containerd, runc, CNI bridge) in a
// network namespace against a real control plane, and checks what the lab
// and Herald rely on: the Node registers as containerd 2.x and turns
// Ready; a Pod whose image (and sandbox image) containerd pulls from the
// lab's registry, as a mirror of docker.io and registry.k8s.io, gets a
// podCIDR address; `kubectl logs`
// and `kubectl exec` reach it through the kubelet; a hostNetwork container
// with capabilities dropped to NET_RAW has exactly that capability set and
// a read-only root; and Stop leaves no process or cgroup behind.
func TestNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and a real node")
	}
	testrequire.Root(t, "a node needs namespaces, mounts and cgroups")
	for _, f := range []string{node.DefaultRunc, filepath.Join(node.DefaultCNIBinDir, "bridge")} {
		if _, err := os.Stat(f); err != nil {
			testrequire.Missing(t, "needs Debian's runc and containernetworking-plugins: %v", err)
		}
	}
	const name = "node1"
	lan := netnstest.New(t, "hnode-", netnstest.Host{Role: name, Addrs: []string{"192.168.77.2/24"}})
	ns := lan.Namespace(name)
	nodeIP := netip.MustParseAddr("192.168.77.2")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bins, err := testenv.NodeBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env, err := testenv.Start(ctx, testenv.Options{
		Controllers:   true,
		NodeNames:     []string{name},
		ClusterDialer: labnet.Dialer(ns),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	// The kubelet reaches the API server as on Talos: KubePrism on
	// localhost:7445 inside the node's namespace.
	prism, err := lab.ListenKubePrism(ns, strings.TrimPrefix(env.APIServerURL, "https://"), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	prismCtx, stopPrism := context.WithCancel(ctx)
	prismDone := make(chan struct{})
	go func() { prism.Serve(prismCtx); close(prismDone) }()
	t.Cleanup(func() { stopPrism(); <-prismDone })
	kubeconfig, err := env.NodeKubeconfig(name, "https://"+lab.KubePrismAddr)
	if err != nil {
		t.Fatal(err)
	}

	// A short directory: containerd's socket lives in it.
	dir, err := os.MkdirTemp("", "hn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	reg, err := registry.New(filepath.Join(dir, "blobs"), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	pushLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg.Serve(pushLn)
	nodeLn, err := labnet.Listen(ns, "tcp", registryAddr)
	if err != nil {
		t.Fatal(err)
	}
	reg.Serve(nodeLn)
	pushImages(t, ctx, pushLn.Addr().String(), bins)

	cfg := node.Config{
		Name: name, NetNS: ns, IP: nodeIP, Dir: filepath.Join(dir, "node"), Kubeconfig: kubeconfig,
		Binaries: bins, SandboxImage: labimages.SandboxImage(bins.AgnhostVersion),
		Registry: registryAddr, Mirrored: labimages.Registries(),
		CgroupName: "herald-test-" + filepath.Base(dir),
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = n.Stop(context.Background())
		}
	})
	logsOnFailure(t, n)

	cs := env.Clientset()
	var nd *corev1.Node
	waitFor(t, ctx, n, 2*time.Minute, "Node Ready", func() (bool, error) {
		nd, err = cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range nd.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if got := nd.Status.NodeInfo.ContainerRuntimeVersion; got != "containerd://"+bins.ContainerdVersion {
		t.Errorf("runtime = %q, want containerd://%s", got, bins.ContainerdVersion)
	}
	if nd.Spec.PodCIDR == "" {
		t.Fatalf("node has no podCIDR")
	}
	podCIDR := netip.MustParsePrefix(nd.Spec.PodCIDR)

	pods := cs.CoreV1().Pods("default")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "probe", Image: probeImage,
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](2),
		},
	}
	hostPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe-host"},
		Spec: corev1.PodSpec{
			HostNetwork: true,
			Containers: []corev1.Container{{
				Name: "probe", Image: probeImage,
				SecurityContext: &corev1.SecurityContext{
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW"}},
					ReadOnlyRootFilesystem:   ptr.To(true),
					AllowPrivilegeEscalation: ptr.To(false),
				},
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](2),
		},
	}
	for _, p := range []*corev1.Pod{pod, hostPod} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{pod, hostPod} {
		waitFor(t, ctx, n, 2*time.Minute, "Pod "+p.Name+" Ready", func() (bool, error) {
			got, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			*p = *got
			for _, c := range got.Status.Conditions {
				if c.Type == corev1.PodReady {
					return c.Status == corev1.ConditionTrue, nil
				}
			}
			return false, nil
		})
	}
	podIP, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil || !podCIDR.Contains(podIP) {
		t.Errorf("Pod IP %q is not in the node's podCIDR %s", pod.Status.PodIP, podCIDR)
	}
	if hostPod.Status.PodIP != nodeIP.String() {
		t.Errorf("hostNetwork Pod IP = %q, want the node's %s", hostPod.Status.PodIP, nodeIP)
	}

	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, env.Binaries.Kubectl, append([]string{"--kubeconfig", env.KubeconfigPath}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := kubectl("logs", "probe"); !strings.Contains(out, "probe started on probe") {
		t.Errorf("kubectl logs probe = %q, want the probe's first line", out)
	}
	if out := kubectl("exec", "probe", "--", "/probe", "addrs"); !strings.Contains(out, podIP.String()+"\n") {
		t.Errorf("kubectl exec probe -- /probe addrs = %q, want %s among them", out, podIP)
	}
	// CapEff/CapPrm/CapBnd exactly NET_RAW (bit 13), and / read-only.
	status := kubectl("exec", "probe-host", "--", "/probe", "status")
	for _, field := range []string{"CapEff", "CapPrm", "CapBnd"} {
		want := field + ":\t0000000000002000"
		if !strings.Contains(status, want+"\n") {
			t.Errorf("hostNetwork container: want %q in\n%s", want, status)
		}
	}
	if !strings.Contains(status, "root: read-only\n") {
		t.Errorf("hostNetwork container: / is not read-only:\n%s", status)
	}

	// Stop leaves nothing: no process in the node's cgroups, no cgroup.
	stopped = true
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if left := nodeCgroups(t, cfg.CgroupName); len(left) > 0 {
		t.Errorf("cgroups left after Stop: %v", left)
	}
	if err := node.Cleanup(ctx, cfg.CgroupName, cfg.Dir); err != nil {
		t.Errorf("Cleanup after Stop: %v", err)
	}
}

// pushImages pushes agnhost (the sandbox image) and the probe
// (testdata/probe, built static here) to the registry at addr.
func pushImages(t *testing.T, ctx context.Context, addr string, bins testenv.NodePaths) {
	t.Helper()
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", probe, ".")
	cmd.Dir = filepath.Join("testdata", "probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, out)
	}
	agnhost, err := labimages.Agnhost(runtime.GOARCH, bins.Agnhost, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	probeImg, err := labimages.FilesImage(runtime.GOARCH, []labimages.File{{Path: "/probe", Data: data, Mode: 0o755}},
		v1.Config{Entrypoint: []string{"/probe"}}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for ref, image := range map[string]v1.Image{labimages.SandboxImage(bins.AgnhostVersion): agnhost, probeImage: probeImg} {
		// The registry holds an image under its path in its home registry.
		_, repo, _ := strings.Cut(ref, "/")
		if err := registry.Push(ctx, addr, repo, image); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond every 200 ms until it holds, failing the test after
// limit, when cond fails, or when one of the node's daemons exits.
func waitFor(t *testing.T, ctx context.Context, n *node.Node, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if err := n.Exited(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not after %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logsOnFailure prints the ends of the node's logs when the test fails.
func logsOnFailure(t *testing.T, n *node.Node) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubelet log:\n%s", testenv.TailFile(n.KubeletLog(), 60))
			t.Logf("containerd log:\n%s", testenv.TailFile(n.ContainerdLog(), 40))
		}
	})
}

// nodeCgroups returns the node's cgroup directories still present in any
// hierarchy under /sys/fs/cgroup.
func nodeCgroups(t *testing.T, name string) []string {
	t.Helper()
	var left []string
	roots, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		t.Fatal(err)
	}
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		dir := filepath.Join(root, name)
		if _, err := os.Stat(dir); err == nil {
			left = append(left, dir)
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return left
}
