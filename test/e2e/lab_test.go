// Package e2e runs Herald's tutorial end to end in the lab (internal/lab):
// a real control plane, real nodes in network namespaces (the kubelet,
// containerd, runc), Herald's image pulled from the lab's registry by its
// Helm chart, and a LAN client using the kernel's own ARP and curl.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/netnstest"
	"github.com/herald-lb/herald/internal/testenv"
)

// prefix and the state directory keep this lab apart from a user's.
const prefix = "hle2e-"

// labEnv runs hack/lab.sh's lab (and its tutorial) in a private directory
// and namespace prefix, and tears it down at the end of the test.
type labEnv struct {
	t    *testing.T
	root string
	dir  string
	env  []string
}

// lab runs bin/herald-lab with args in the test's lab.
func (l *labEnv) lab(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(l.root, "bin", "herald-lab"), args...)
	cmd.Env = l.env
	cmd.Dir = l.root
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (l *labEnv) kubectl(args ...string) string {
	l.t.Helper()
	out, err := l.lab(append([]string{"kubectl"}, args...)...)
	if err != nil {
		l.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// herald runs bin/herald with args against the lab's API server; a
// non-zero exit (a problem found) is not an error here, the output says.
func (l *labEnv) herald(args ...string) string {
	l.t.Helper()
	out, _ := l.heraldExit(args...)
	return out
}

// heraldExit is herald with the exit code.
func (l *labEnv) heraldExit(args ...string) (string, int) {
	l.t.Helper()
	s, err := lab.ReadState(l.dir)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(l.root, "bin", "herald"), append(args, "--kubeconfig", s.Kubeconfig)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		l.t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// apply writes manifest to a file and runs kubectl with args and -f it.
func (l *labEnv) apply(manifest string, args ...string) string {
	l.t.Helper()
	f := filepath.Join(l.t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return l.kubectl(append(args, "-f", f)...)
}

func (l *labEnv) client(args ...string) (string, error) {
	return l.lab(append([]string{"client", "--"}, args...)...)
}

// eventually retries cond every 100 ms for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newLab prepares a lab with its own state directory and namespace
// prefix, brought down (and checked gone) when the test ends; the test
// starts it.
func newLab(t *testing.T, prefix string) *labEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("the lab needs root, network namespaces and the control plane")
	}
	netnstest.Require(t, prefix)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	l := &labEnv{t: t, root: root, dir: t.TempDir()}
	l.env = append(os.Environ(), "HERALD_LAB_DIR="+l.dir, "HERALD_LAB_PREFIX="+prefix)
	t.Cleanup(func() {
		if out, err := l.lab("down"); err != nil {
			t.Errorf("herald-lab down: %v\n%s", err, out)
		}
		if out, _ := labnet.IP("netns", "list"); strings.Contains(out, prefix) {
			t.Errorf("namespaces left after herald-lab down:\n%s", out)
		}
	})
	return l
}

// labSh runs hack/lab.sh in the test's lab, its output in the test's log,
// and fails the test if it fails.
func (l *labEnv) labSh() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	script := exec.CommandContext(ctx, filepath.Join(l.root, "hack", "lab.sh"))
	script.Env, script.Dir = l.env, l.root
	pr, pw := io.Pipe()
	script.Stdout, script.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l.t.Log(sc.Text())
		}
	}()
	err := script.Run()
	_ = pw.Close()
	<-done
	if err != nil {
		l.t.Fatalf("hack/lab.sh: %v (daemon log: %s)", err, filepath.Join(l.dir, "lab.log"))
	}
}

func TestTutorial(t *testing.T) {
	outer := t
	l := newLab(t, prefix)
	root := l.root

	// The README's main command: lab up, Herald from its chart, the tutorial
	// with its own checks (EXTERNAL-IP, curl, /clientip, Local).
	l.labSh()

	s, err := lab.ReadState(l.dir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("one MAC answers, the announcing node's", func(t *testing.T) {
		msg := l.kubectl("get", "svc", "nginx", "-o", `jsonpath={.status.conditions[?(@.type=="herald.dev/Announced")].message}`)
		var owner string
		for _, h := range s.Topology.Nodes {
			if strings.Contains(msg, "announced by node "+h.Name+" ") {
				owner = h.Name
			}
		}
		if owner == "" {
			t.Fatalf("no announcing node in %q", msg)
		}
		h, _ := s.Topology.Node(owner)
		mac, err := labnet.IP("-n", h.NetNS, "-br", "link", "show", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		neigh, err := l.client("ip", "neigh", "show", "192.168.10.75")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(mac); len(f) < 3 || !strings.Contains(neigh, f[2]) {
			t.Fatalf("client resolves 192.168.10.75 to %q; the announcing node %s has %q", neigh, owner, mac)
		}
	})

	t.Run("herald explain and status on the real cluster", func(t *testing.T) {
		out := l.herald("explain", "svc/nginx", "-n", "default")
		for _, want := range []string{"Service default/nginx: announced", "Announced True (Announced)", "Herald's nftables table (inet herald) forwards"} {
			if !strings.Contains(out, want) {
				t.Errorf("herald explain lacks %q:\n%s", want, out)
			}
		}
		out = l.herald("status")
		if !strings.Contains(out, "DATAPLANE") || strings.Count(out, " nftables ") != len(s.Topology.Nodes) {
			t.Errorf("herald status does not show Herald's data plane on each of %d nodes:\n%s", len(s.Topology.Nodes), out)
		}
		t.Logf("herald status:\n%s", out)
		for cmd, wants := range map[string][]string{
			"pools":         {"first-pool", "192.168.10.75-192.168.10.78", "IPv4"},
			"services":      {"nginx", "192.168.10.75", "first-pool", "default-policy", "announced"},
			"announcements": {"192.168.10.75", "default/nginx", "eth0"},
		} {
			out, code := l.heraldExit(cmd)
			for _, w := range wants {
				if !strings.Contains(out, w) {
					t.Errorf("herald %s lacks %q (exit %d):\n%s", cmd, w, code, out)
				}
			}
			t.Logf("herald %s (exit %d):\n%s", cmd, code, out)
		}
	})

	t.Run("herald doctor passes, and fails on missing RBAC, a regex matching nothing and Cilium's L2 policies", func(t *testing.T) {
		doctor := func() (string, int) {
			start := time.Now()
			defer func() { t.Logf("herald doctor took %s", time.Since(start).Round(time.Millisecond)) }()
			return l.heraldExit("doctor", "-n", "herald-system")
		}
		out, code := doctor()
		if code != 0 || !strings.Contains(out, " 0 failed") {
			t.Fatalf("herald doctor on the tutorial: exit %d\n%s", code, out)
		}
		t.Logf("herald doctor on the tutorial:\n%s", out)

		// The agent's ClusterRole loses one verb.
		saved := l.kubectl("get", "clusterrole", "herald-agent", "-o", "json")
		var role rbacv1.ClusterRole
		if err := json.Unmarshal([]byte(saved), &role); err != nil {
			t.Fatal(err)
		}
		role.ResourceVersion = ""
		restore, err := json.Marshal(role)
		if err != nil {
			t.Fatal(err)
		}
		broken := role.DeepCopy()
		broken.Rules = slices.DeleteFunc(broken.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "heraldnodes/status") })
		b, err := json.Marshal(broken)
		if err != nil {
			t.Fatal(err)
		}
		l.apply(string(b), "replace")
		t.Cleanup(func() { l.apply(string(restore), "replace") })

		// A policy whose pattern matches no interface (it selects no
		// Service, so nothing moves).
		l.apply(`apiVersion: herald.dev/v1alpha1
kind: L2AnnouncementPolicy
metadata: {name: doctor-bad-regex}
spec:
  interfaces: ["^enp9s9$"]
  serviceSelector: {matchLabels: {doctor: e2e}}
`, "apply")
		// Cilium's L2 announcements, as a cluster migrating from it has them.
		cilium := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ciliuml2announcementpolicies.cilium.io}
spec:
  group: cilium.io
  scope: Cluster
  names: {kind: CiliumL2AnnouncementPolicy, plural: ciliuml2announcementpolicies, singular: ciliuml2announcementpolicy, listKind: CiliumL2AnnouncementPolicyList}
  versions:
  - name: v2alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`
		l.apply(cilium, "apply")
		l.kubectl("wait", "--for=condition=Established", "crd/ciliuml2announcementpolicies.cilium.io", "--timeout=30s")
		l.apply(`apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: l2-all}
spec: {interfaces: ["^eth[0-9]+"], loadBalancerIPs: true}
`, "apply")

		out, code = doctor()
		t.Logf("herald doctor on the broken lab:\n%s", out)
		for _, want := range []string{
			"FAIL  RBAC agent (ServiceAccount herald-system/herald-agent): may not patch heraldnodes/status.herald.dev",
			"FAIL  policies' interfaces: no up interface of node cp1 matches policy doctor-bad-regex (^enp9s9$)",
			"FAIL  other load balancers: another load balancer announces or assigns addresses too: Cilium CiliumL2AnnouncementPolicy l2-all",
			" 3 failed",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("herald doctor on the broken lab lacks %q:\n%s", want, out)
			}
		}
		if code != 1 {
			t.Errorf("herald doctor on the broken lab: exit %d, want 1", code)
		}

		// Fixed again: it passes.
		l.apply(string(restore), "replace")
		l.kubectl("delete", "l2announcementpolicy", "doctor-bad-regex")
		l.kubectl("delete", "crd", "ciliuml2announcementpolicies.cilium.io", "--wait")
		eventually(t, 30*time.Second, "herald doctor passes again", func() (bool, string) {
			out, code := doctor()
			return code == 0, out
		})
	})

	// A real Prometheus on the LAN with the chart's rules; the next
	// subtest breaks the lab and waits for the alerts.
	var prom *promLab
	t.Run("Prometheus scrapes the lab: the chart's alerts are quiet and the dashboard's panels have data", func(t *testing.T) {
		prom = startPrometheus(t, l, s, outer.Cleanup) // runs until the test ends
		// Rates need two scrapes in their window.
		time.Sleep(3 * time.Second)
		prom.waitQuiet(t)
		// Panels that show events the tutorial has not had yet (take-overs,
		// conflicts, deaths, key mismatches) may be empty; the query must
		// still be valid.
		mayBeEmpty := []string{"Take-overs", "Take-over latency", "Peer deaths", "Heartbeat key mismatches", "Address conflicts", "ARP/NDP reply latency",
			"BGP sessions", "BGP routes advertised"} // the tutorial has no BGPPeer
		queries := dashboardQueries(t, root)
		if len(queries) < 10 {
			t.Fatalf("only %d panels with queries in the dashboard", len(queries))
		}
		checked := 0
		defer func() { t.Logf("Prometheus: %d dashboard queries evaluated on the lab", checked) }()
		for title, exprs := range queries {
			for _, q := range exprs {
				checked++
				eventually(t, 30*time.Second, "panel "+title+": "+q, func() (bool, string) {
					n, err := prom.query(q)
					if err != nil {
						return false, err.Error()
					}
					return n > 0 || slices.Contains(mayBeEmpty, title), fmt.Sprintf("%d series", n)
				})
			}
		}
	})
	alert := func(t *testing.T, name string, labels ...string) {
		t.Helper()
		if prom != nil {
			prom.waitAlert(t, name, labels...)
		}
	}

	t.Run("herald explain says why, for each way of breaking the lab, and the lab recovers", func(t *testing.T) {
		explain := func(svc string) string { return l.herald("explain", "svc/"+svc, "-n", "default") }
		until := func(what, svc string, wants ...string) {
			t.Helper()
			eventually(t, 60*time.Second, what, func() (bool, string) {
				out := explain(svc)
				for _, w := range wants {
					if !strings.Contains(out, w) {
						return false, out
					}
				}
				return true, out
			})
		}
		service := func(name, annotations string) {
			t.Helper()
			l.apply(`apiVersion: v1
kind: Service
metadata:
  name: `+name+`
  annotations: {`+annotations+`}
spec:
  type: LoadBalancer
  selector: {app: nginx}
  ports: [{port: 80}]
`, "apply")
		}
		announced := func(svc string) { t.Helper(); until(svc+" announced again", svc, "Service default/"+svc+": announced") }

		// No pool: pinned to a pool that does not exist.
		service("nopool", `herald.dev/pool: missing`)
		until("NoPool", "nopool", "Service default/nopool: pending", "NoPool")
		alert(t, "HeraldServicePending")
		l.kubectl("delete", "svc", "nopool")

		// Out of addresses: the pool has four, nginx and echo hold two.
		for _, n := range []string{"full1", "full2", "full3"} {
			service(n, "")
		}
		eventually(t, 30*time.Second, "one of three new Services is OutOfIPs", func() (bool, string) {
			var pending []string
			for _, n := range []string{"full1", "full2", "full3"} {
				if out := explain(n); strings.Contains(out, "OutOfIPs") {
					pending = append(pending, n)
				}
			}
			return len(pending) == 1, strings.Join(pending, ",")
		})
		alert(t, "HeraldPoolExhausted", "pool=first-pool")
		l.kubectl("delete", "svc", "full1", "full2", "full3")

		// A requested address another Service holds.
		service("taken", `herald.dev/ips: "192.168.10.75"`)
		until("RequestedIPInUse", "taken", "RequestedIPInUse")
		l.kubectl("delete", "svc", "taken")

		// No policy selects the Service.
		l.kubectl("patch", "l2announcementpolicy", "default-policy", "--type=merge", "-p", `{"spec":{"serviceSelector":{"matchLabels":{"tier":"edge"}}}}`)
		until("NoPolicy", "nginx", "Service default/nginx: unannounced", "NoPolicy")
		alert(t, "HeraldServiceNotAnnounced", "reason=NoPolicy")
		l.kubectl("patch", "l2announcementpolicy", "default-policy", "--type=json", "-p", `[{"op":"remove","path":"/spec/serviceSelector"}]`)
		announced("nginx")

		// An interface pattern that matches nothing.
		l.kubectl("patch", "l2announcementpolicy", "default-policy", "--type=merge", "-p", `{"spec":{"interfaces":["^enp9s9$"]}}`)
		until("NoMatchingInterface", "nginx", "NoMatchingInterface", "eth0 (LAN)")
		l.kubectl("patch", "l2announcementpolicy", "default-policy", "--type=merge", "-p", `{"spec":{"interfaces":["^eth[0-9]+","^enp[0-9]+s[0-9]+"]}}`)
		announced("nginx")

		// The exclude label on the node of echo's one endpoint (Local).
		node := l.kubectl("get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[0].spec.nodeName}")
		l.kubectl("label", "node", node, "node.kubernetes.io/exclude-from-external-load-balancers=")
		until("ExcludedByLabel", "echo", "Service default/echo: unannounced", "ExcludedByLabel")
		l.kubectl("label", "node", node, "node.kubernetes.io/exclude-from-external-load-balancers-")
		announced("echo")

		// externalTrafficPolicy Local without a ready endpoint.
		l.kubectl("scale", "deployment/echo", "--replicas=0")
		until("NoLocalEndpoints", "echo", "Service default/echo: unannounced", "NoLocalEndpoints")
		l.kubectl("scale", "deployment/echo", "--replicas=1")
		announced("echo")

		// Another host on the LAN already uses the address asked for.
		if out, err := l.client("ip", "addr", "add", "192.168.10.77/32", "dev", "eth0"); err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		service("conflict", `herald.dev/ips: "192.168.10.77"`)
		until("AddressConflict", "conflict", "AddressConflict")
		alert(t, "HeraldAddressConflict")
		if out, err := l.client("ip", "addr", "del", "192.168.10.77/32", "dev", "eth0"); err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		announced("conflict") // the agents probe again and find it free
		l.kubectl("delete", "svc", "conflict")

		// A node whose agent signs with another heartbeat key (a leftover
		// of another install): the DaemonSet leaves that node, and an
		// agent Pod like the DaemonSet's but with its own fixed key runs
		// there instead.
		stray := l.kubectl("get", "nodes", "-o", "jsonpath={.items[-1:].metadata.name}")
		l.kubectl("-n", "herald-system", "create", "secret", "generic", "herald-stray-key",
			"--from-literal=key=stray-key-of-another-install-0123456789abcdef")
		var ds appsv1.DaemonSet
		if err := json.Unmarshal([]byte(l.kubectl("-n", "herald-system", "get", "daemonset", "herald-agent", "-o", "json")), &ds); err != nil {
			t.Fatal(err)
		}
		pod := corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "herald-agent-stray", Namespace: "herald-system", Labels: map[string]string{"app": "herald-agent-stray"}},
			Spec:       *ds.Spec.Template.Spec.DeepCopy(),
		}
		pod.Spec.NodeName = stray
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "stray-key",
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "herald-stray-key"}}})
		c := &pod.Spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "stray-key", MountPath: "/stray", ReadOnly: true})
		replaced := false
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--heartbeat-secret=") {
				c.Args[i], replaced = "--key-file=/stray/key", true
			}
		}
		if !replaced {
			t.Fatalf("the agent DaemonSet has no --heartbeat-secret argument: %v", c.Args)
		}
		manifest, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		l.kubectl("-n", "herald-system", "patch", "daemonset", "herald-agent", "--type=merge", "-p",
			`{"spec":{"template":{"spec":{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"NotIn","values":["`+stray+`"]}]}]}}}}}}}`)
		l.kubectl("-n", "herald-system", "rollout", "status", "daemonset/herald-agent", "--timeout=180s")
		l.apply(string(manifest), "apply")
		until("KeyMismatch", "nginx", "KeyMismatch", "node "+stray+" on eth0", "with another heartbeat key")
		alert(t, "HeraldHeartbeatKeyMismatch", "peer="+stray)
		out, code := l.heraldExit("doctor")
		if code != 1 || !strings.Contains(out, "FAIL  heartbeat keys") {
			t.Errorf("herald doctor with the stray agent: exit %d, want 1 and a FAIL for the keys:\n%s", code, out)
		}
		l.kubectl("-n", "herald-system", "delete", "pod", "herald-agent-stray", "--wait")
		l.kubectl("-n", "herald-system", "delete", "secret", "herald-stray-key")
		l.kubectl("-n", "herald-system", "patch", "daemonset", "herald-agent", "--type=json", "-p", `[{"op":"remove","path":"/spec/template/spec/affinity"}]`)
		l.kubectl("-n", "herald-system", "rollout", "status", "daemonset/herald-agent", "--timeout=180s")
		announced("nginx")
		eventually(t, 60*time.Second, "no key mismatch left", func() (bool, string) {
			out := explain("nginx")
			return !strings.Contains(out, "KeyMismatch"), out
		})
		// Fixed, the alerts end; the key mismatch counts increases over
		// five minutes, so that alert stays a while.
		if prom != nil {
			prom.waitQuiet(t, "HeraldHeartbeatKeyMismatch")
		}
	})

	t.Run("rules follow endpoints", func(t *testing.T) {
		l.kubectl("scale", "deployment/nginx", "--replicas=0")
		eventually(t, 30*time.Second, "no endpoints: curl fails fast (no announcement or ICMP reject)", func() (bool, string) {
			out, err := l.client("curl", "-sS", "--max-time", "2", "http://192.168.10.75")
			return err != nil, out
		})
		l.kubectl("scale", "deployment/nginx", "--replicas=2")
		eventually(t, 60*time.Second, "two endpoints again: curl works", func() (bool, string) {
			out, err := l.client("curl", "-sS", "--max-time", "2", "http://192.168.10.75")
			return err == nil && strings.Contains(out, "Welcome to nginx!"), out
		})
	})

	t.Run("an image the lab's registry lacks says why in the Pod's status", func(t *testing.T) {
		l.kubectl("create", "deployment", "cache", "--image=redis:7")
		eventually(t, 60*time.Second, "ErrImagePull with the reason", func() (bool, string) {
			out, _ := l.lab("kubectl", "get", "pods", "-l", "app=cache", "-o",
				`jsonpath={.items[0].status.containerStatuses[0].state.waiting.reason}: {.items[0].status.containerStatuses[0].state.waiting.message}`)
			return (strings.HasPrefix(out, "ErrImagePull: ") || strings.HasPrefix(out, "ImagePullBackOff: ")) &&
				strings.Contains(out, "docker.io/library/redis:7") && strings.Contains(out, "not found"), out
		})
		l.kubectl("delete", "deployment", "cache")
	})

	t.Run("real nodes: containerd, the real nginx, kubectl logs, exec and port-forward", func(t *testing.T) {
		bins, err := testenv.NodeBinaries(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		runtimes := l.kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.status.nodeInfo.containerRuntimeVersion}{" "}{end}`)
		if want := strings.Repeat("containerd://"+bins.ContainerdVersion+" ", len(s.Topology.Nodes)); runtimes != strings.TrimSpace(want) {
			t.Errorf("node runtimes %q, want containerd://%s on each of %d nodes", runtimes, bins.ContainerdVersion, len(s.Topology.Nodes))
		}
		if out, err := l.client("curl", "-sS", "-I", "--max-time", "2", "http://192.168.10.75"); err != nil || !strings.Contains(out, "Server: nginx/") {
			t.Errorf("curl -I http://192.168.10.75: %v, want the real nginx's Server header:\n%s", err, out)
		}
		if out := l.kubectl("-n", "herald-system", "logs", "ds/herald-agent"); !strings.Contains(out, `msg="agent started"`) {
			t.Errorf("kubectl logs ds/herald-agent: no \"agent started\" line:\n%s", out)
		}
		// The controller runs as the image's non-root user.
		ctl := strings.Fields(l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=controller",
			"-o", `jsonpath={range .items[*]}{.spec.nodeName}={.status.containerStatuses[0].containerID}{" "}{end}`))
		if len(ctl) == 0 {
			t.Error("no controller Pods")
		}
		for _, c := range ctl {
			node, id, _ := strings.Cut(c, "=")
			pid, err := lab.ContainerPID(context.Background(), s, node, id)
			if err != nil {
				t.Fatal(err)
			}
			status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(status), "\nUid:\t65532\t65532\t65532\t65532\n") {
				t.Errorf("controller pid %d does not run as 65532:\n%s", pid, status)
			}
		}
		if out := l.kubectl("exec", "deploy/echo", "--", "/agnhost", "--help"); !strings.Contains(out, "netexec") {
			t.Errorf("kubectl exec deploy/echo -- /agnhost --help:\n%s", out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pf := exec.CommandContext(ctx, filepath.Join(root, "bin", "herald-lab"), "kubectl", "port-forward", "deploy/nginx", ":80")
		pf.Env = l.env
		stdout, err := pf.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = pf.Wait() }()
		// "Forwarding from 127.0.0.1:40123 -> 80"
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("kubectl port-forward: %v", err)
		}
		addr, _, ok := strings.Cut(strings.TrimPrefix(line, "Forwarding from "), " ")
		if !ok || !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Fatalf("kubectl port-forward printed %q", line)
		}
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("GET through kubectl port-forward: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "Welcome to nginx!") {
			t.Errorf("GET through kubectl port-forward: %s\n%s", resp.Status, body)
		}
	})

	t.Run("agents run with only NET_RAW and NET_ADMIN and their own token", func(t *testing.T) {
		ids := strings.Fields(l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=agent",
			"-o", `jsonpath={range .items[*]}{.status.containerStatuses[0].containerID}{" "}{end}`))
		nodes := strings.Fields(l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=agent",
			"-o", `jsonpath={range .items[*]}{.spec.nodeName}{" "}{end}`))
		if len(ids) != len(s.Topology.Nodes) || len(nodes) != len(ids) {
			t.Fatalf("agent containers %v, want one per node", ids)
		}
		// CAP_NET_ADMIN is bit 12, CAP_NET_RAW bit 13.
		const want = "0000000000003000"
		for i, id := range ids {
			n, err := lab.ContainerPID(context.Background(), s, nodes[i], id)
			if err != nil {
				t.Fatal(err)
			}
			pid := strconv.Itoa(n)
			// The agent is the shipped binary, /herald in Herald's image.
			if exe, err := os.Readlink("/proc/" + pid + "/exe"); err != nil || exe != "/herald" {
				t.Errorf("agent pid %s runs %q (%v), want /herald of Herald's image", pid, exe, err)
			}
			status, err := os.ReadFile("/proc/" + pid + "/status")
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "CapEff:" && f[1] != want {
					t.Errorf("agent pid %s: CapEff %s, want %s (NET_RAW|NET_ADMIN)", pid, f[1], want)
				}
			}
			environ, err := os.ReadFile("/proc/" + pid + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(environ), "KUBERNETES_SERVICE_HOST=localhost\x00") {
				t.Errorf("agent pid %s does not use KubePrism (KUBERNETES_SERVICE_HOST=localhost)", pid)
			}
		}
	})

	t.Run("a GitOps re-render leaves the heartbeat key alone", func(t *testing.T) {
		key := l.kubectl("-n", "herald-system", "get", "secret", "herald-heartbeat-key", "-o", "jsonpath={.data}")
		fps := l.fingerprints()
		chart := filepath.Join(root, "deploy", "helm", "herald")
		render := func() string {
			// The values the lab installed with: any other would roll the agents.
			args := append([]string{"template", "herald", chart, "--namespace", "kube-system"}, lab.InstallValues(chart)...)
			out, err := exec.Command(s.Tools.Helm, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			return string(out)
		}
		first, second := render(), render()
		if first != second {
			t.Fatal("two renders of the chart differ: a GitOps tool would see a change on every sync")
		}
		if strings.Contains(first, "kind: Secret") {
			t.Fatal("the rendered chart holds a Secret")
		}
		manifest := filepath.Join(t.TempDir(), "herald.yaml")
		if err := os.WriteFile(manifest, []byte(first), 0o644); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			l.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "gitops", "-f", manifest)
		}
		if got := l.kubectl("-n", "herald-system", "get", "secret", "herald-heartbeat-key", "-o", "jsonpath={.data}"); got != key {
			t.Fatalf("the heartbeat key changed after applying the rendered chart twice")
		}
		if got := l.fingerprints(); got != fps {
			t.Fatalf("agents' keys changed: %s → %s", fps, got)
		}
	})

	t.Run("key rotation under client traffic: no failed request, one MAC, no restart", func(t *testing.T) {
		pods := l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=agent",
			"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].containerID}/{.status.containerStatuses[0].restartCount} {end}`)
		neigh0, _ := l.client("ip", "neigh", "show", "192.168.10.75")
		stop := make(chan struct{})
		var requests, failures int
		var failed []string
		loop := make(chan struct{})
		go func() {
			defer close(loop)
			for i := 0; i < 2000; i++ { // bounded: ~100 s at most
				select {
				case <-stop:
					return
				default:
				}
				out, err := l.client("curl", "-sS", "--max-time", "1", "http://192.168.10.75")
				requests++
				if err != nil || !strings.Contains(out, "Welcome to nginx!") {
					failures++
					failed = append(failed, out)
				}
			}
		}()
		key2 := "0123456789abcdef0123456789abcdef-rotated-in-the-lab"
		l.kubectl("-n", "herald-system", "patch", "secret", "herald-heartbeat-key", "--type", "merge",
			"-p", `{"stringData":{"key-2":"`+key2+`"}}`)
		eventually(t, 30*time.Second, "every agent signs with both keys", func() (bool, string) {
			fps := l.fingerprints()
			return strings.Count(fps, ",") == len(s.Topology.Nodes) && allEqual(fps), fps
		})
		l.kubectl("-n", "herald-system", "patch", "secret", "herald-heartbeat-key", "--type", "json",
			"-p", `[{"op":"remove","path":"/data/key-1"}]`)
		eventually(t, 30*time.Second, "every agent on the new key only", func() (bool, string) {
			fps := l.fingerprints()
			return !strings.Contains(fps, ",") && allEqual(fps), fps
		})
		time.Sleep(2 * time.Second)
		close(stop)
		<-loop
		t.Logf("%d requests during the rotation, %d failed", requests, failures)
		if failures > 0 || requests < 20 {
			t.Errorf("%d of %d requests failed during the rotation: %v", failures, requests, failed)
		}
		if neigh, _ := l.client("ip", "neigh", "show", "192.168.10.75"); strings.Fields(neigh)[4] != strings.Fields(neigh0)[4] {
			t.Errorf("the client's MAC for 192.168.10.75 changed: %q → %q", neigh0, neigh)
		}
		if got := l.kubectl("-n", "herald-system", "get", "pods", "-l", "app.kubernetes.io/component=agent",
			"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].containerID}/{.status.containerStatuses[0].restartCount} {end}`); got != pods {
			t.Errorf("agents restarted during the rotation: %s → %s", pods, got)
		}
	})

	// Next to last (the last removes the agents): the pool is deleted and
	// created again, so the Services may come back with their addresses
	// swapped.
	t.Run("herald import of the tutorial's Cilium and MetalLB setups, then the tutorial runs on each unchanged", func(t *testing.T) {
		st, err := lab.ReadState(l.dir)
		if err != nil {
			t.Fatal(err)
		}
		// importFile translates a peer's manifest, replaces the pool and
		// policy in place (the policy named drop goes), and checks that
		// nginx is announced by the new policy and served.
		importFile := func(from, file, drop, policy string) {
			t.Helper()
			cmd := exec.Command(filepath.Join(l.root, "bin", "herald"), "import", "--from", from,
				filepath.Join(l.root, "internal", "migrate", "testdata", file), "--kubeconfig", st.Kubeconfig)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			manifests, err := cmd.Output()
			if err != nil || !strings.Contains(stderr.String(), "nothing left out") {
				t.Fatalf("herald import --from %s: %v\n%s\n%s", from, err, manifests, stderr.String())
			}
			l.kubectl("delete", "l2announcementpolicy", drop)
			l.kubectl("delete", "loadbalancerippool", "first-pool")
			l.apply(string(manifests), "apply")
			eventually(t, 60*time.Second, "nginx announced and served through the pool and policy imported from "+from, func() (bool, string) {
				ip := l.kubectl("get", "svc", "nginx", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
				if ip == "" {
					return false, "no address"
				}
				if out := l.herald("explain", "svc/nginx", "-n", "default"); !strings.Contains(out, "Service default/nginx: announced") ||
					!strings.Contains(out, policy) {
					return false, out
				}
				out, err := l.client("curl", "-sS", "--max-time", "2", "http://"+ip)
				return err == nil && strings.Contains(out, "Welcome to nginx!"), ip + ": " + out
			})
		}
		// The tutorial's own pool and policy go; Cilium's come, then
		// MetalLB's replace those.
		importFile("cilium", "cilium-tutorial.yaml", "default-policy", "default-policy")
		importFile("metallb", "metallb-tutorial.yaml", "default-policy", "tutorial")
	})

	t.Run("the data plane's table goes with the agents", func(t *testing.T) {
		for _, h := range s.Topology.Nodes {
			if out, err := labnet.IP("netns", "exec", h.NetNS, "nft", "list", "tables"); err != nil || !strings.Contains(out, "inet herald") {
				t.Fatalf("%s: no inet herald table while the agent runs: %v %s", h.Name, err, out)
			}
		}
		l.kubectl("-n", "herald-system", "delete", "daemonset", "herald-agent", "--wait")
		for _, h := range s.Topology.Nodes {
			eventually(t, 30*time.Second, h.Name+": table removed on clean shutdown", func() (bool, string) {
				out, err := labnet.IP("netns", "exec", h.NetNS, "nft", "list", "tables")
				return err == nil && !strings.Contains(out, "herald"), out
			})
		}
	})

}

// fingerprints lists each agent's key fingerprints from the HeraldNodes,
// one "node=fp[,fp]" per line, sorted by node.
func (l *labEnv) fingerprints() string {
	l.t.Helper()
	return l.kubectl("get", "heraldnodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.keyFingerprints}{"\n"}{end}`)
}

// allEqual reports whether every "node=value" line has the same value.
func allEqual(lines string) bool {
	var first string
	for i, line := range strings.Split(strings.TrimSpace(lines), "\n") {
		_, v, _ := strings.Cut(line, "=")
		if i == 0 {
			first = v
		} else if v != first {
			return false
		}
	}
	return first != ""
}

// TestIPv6Lab runs a dual-stack lab (--ipv6, with the BGP router): a
// Service with addresses of both families from one pool, announced with
// ARP and NDP, and curl over IPv6 from the LAN client reaching an IPv6 Pod
// address; then a dual-stack Service in a routed pool, advertised over an
// IPv4 and an IPv6 session to the router, reached from the far client
// over both.
func TestIPv6Lab(t *testing.T) {
	l := newLab(t, "hle2e6-")
	root := l.root
	if out, err := exec.Command("make", "-C", root, "-s", "build").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	if out, err := l.lab("up", "--ipv6", "--bgp", "--nodes", "2"); err != nil {
		t.Fatalf("herald-lab up --ipv6 --bgp: %v\n%s", err, out)
	}
	pool := filepath.Join(t.TempDir(), "pool.yaml")
	if err := os.WriteFile(pool, []byte(`apiVersion: herald.dev/v1alpha1
kind: LoadBalancerIPPool
metadata:
  name: dual
spec:
  blocks:
    - start: 192.168.10.75
      stop: 192.168.10.78
    - start: fd00:10::75
      stop: fd00:10::78
`), 0o644); err != nil {
		t.Fatal(err)
	}
	l.kubectl("apply", "-f", pool, "-f", filepath.Join(root, "examples", "l2policy.yaml"))
	l.kubectl("create", "deployment", "nginx", "--image=nginx:latest")
	l.kubectl("rollout", "status", "deployment/nginx", "--timeout=2m")
	if ips := l.kubectl("get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[0].status.podIPs[*].ip}"); !strings.Contains(ips, "fd00:10:244:") {
		t.Fatalf("Pod IPs %q: want an IPv4 and an IPv6 address", ips)
	}
	l.kubectl("expose", "deployment", "nginx", "--type=LoadBalancer", "--port=80")
	l.kubectl("patch", "svc", "nginx", "-p", `{"spec":{"ipFamilyPolicy":"PreferDualStack"}}`)
	eventually(t, 30*time.Second, "EXTERNAL-IP of both families", func() (bool, string) {
		out, _ := l.lab("kubectl", "get", "svc", "nginx", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
		return out == "192.168.10.75 fd00:10::75", out
	})
	for _, url := range []string{"http://192.168.10.75/", "http://[fd00:10::75]/"} {
		eventually(t, 30*time.Second, "curl "+url+" from the client", func() (bool, string) {
			out, err := l.client("curl", "-sS", "-g", "--max-time", "2", url)
			return err == nil && strings.Contains(out, "Welcome to nginx!"), out
		})
	}
	if out, err := l.client("ip", "-6", "neigh", "show", "fd00:10::75"); err != nil || !strings.Contains(out, "lladdr") {
		t.Errorf("the client has no NDP entry for fd00:10::75: %v %s", err, out)
	}

	t.Run("BGP over IPv4 and IPv6 sessions: a dual-stack routed Service from the far client", func(t *testing.T) {
		s, err := lab.ReadState(l.dir)
		if err != nil {
			t.Fatal(err)
		}
		l.apply(`apiVersion: herald.dev/v1alpha1
kind: LoadBalancerIPPool
metadata:
  name: routed-pool
  labels: {advertise: bgp}
spec:
  blocks: [{cidr: 192.168.30.0/28}, {cidr: "fd00:30::/124"}]
  serviceSelector: {matchLabels: {network: routed}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {address: 192.168.10.1, peerASN: 64512, localASN: 64513}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor6}
spec: {address: "fd00:10::1", peerASN: 64512, localASN: 64513}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: routed}
spec:
  poolSelector: {matchLabels: {advertise: bgp}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {network: routed}
  annotations: {herald.dev/pool: routed-pool}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  selector: {app: nginx}
  ports: [{port: 80}]
`, "apply")
		var v4, v6 string
		eventually(t, 30*time.Second, "web gets an address of each family from routed-pool", func() (bool, string) {
			out := l.kubectl("get", "svc", "web", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}")
			f := strings.Fields(out)
			if len(f) != 2 {
				return false, out
			}
			v4, v6 = f[0], f[1]
			return strings.HasPrefix(v4, "192.168.30.") && strings.HasPrefix(v6, "fd00:30::"), out
		})
		var want4, want6 []string
		for _, n := range s.Topology.Nodes {
			want4 = append(want4, n.IPv4.String())
			want6 = append(want6, n.IPv6.String())
		}
		hops := func(family, prefix string) []string { return routerNextHops(s.Topology.Router.NetNS, family, prefix) }
		eventually(t, 60*time.Second, "the router routes both addresses to every node", func() (bool, string) {
			h4, h6 := hops("-4", v4+"/32"), hops("-6", v6+"/128")
			return slices.Equal(h4, want4) && slices.Equal(h6, want6), fmt.Sprint(h4, h6)
		})
		for _, url := range []string{"http://" + v4 + "/", "http://[" + v6 + "]/"} {
			out, err := l.lab("node", "far", "--", "curl", "-sS", "-g", "--max-time", "3", url)
			if err != nil || !strings.Contains(out, "Welcome to nginx!") {
				t.Errorf("curl %s from the far client: %v\n%s", url, err, out)
			}
		}
		// (The tutorial's policy selects every Service, so the addresses
		// are also announced on the LAN: the message names both.) The
		// controller words it from the agents' reports, a moment after
		// the router has the routes.
		eventually(t, 30*time.Second, "web's Announced condition names both peers", func() (bool, string) {
			msg := l.kubectl("get", "svc", "web", "-o", `jsonpath={.status.conditions[?(@.type=="herald.dev/Announced")].message}`)
			return strings.Contains(msg, "advertised by BGP by nodes cp1 and node1 to tor (192.168.10.1, AS 64512)") &&
				strings.Contains(msg, "advertised by BGP by nodes cp1 and node1 to tor6 (fd00:10::1, AS 64512)"), msg
		})
	})
}

// TestKubeProxyLab runs the tutorial (hack/lab.sh) on real nodes that also
// run the real kube-proxy, the setup of most clusters, in its nftables and
// its iptables mode: Herald's agents find kube-proxy (--dataplane=auto),
// say so in their logs and only announce, and kube-proxy forwards the
// tutorial's curl.
func TestKubeProxyLab(t *testing.T) {
	for _, mode := range []string{"nftables", "iptables"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t, "hle2ep"+mode[:2]+"-")
			l.env = append(l.env, "HERALD_LAB_PROXY="+mode)
			l.labSh()
			s, err := lab.ReadState(l.dir)
			if err != nil {
				t.Fatal(err)
			}
			if s.Proxy != mode {
				t.Fatalf("the lab's proxy is %q, want %s", s.Proxy, mode)
			}
			for _, h := range s.Topology.Nodes {
				out, err := labnet.IP("netns", "exec", h.NetNS, "nft", "list", "tables")
				if err != nil {
					t.Fatalf("%s: nft list tables: %v", h.Name, err)
				}
				if strings.Contains(out, "inet herald") {
					t.Errorf("%s: Herald programs its table beside kube-proxy's:\n%s", h.Name, out)
				}
				switch mode {
				case "nftables":
					if !strings.Contains(out, "table ip kube-proxy") {
						t.Errorf("%s: no kube-proxy table:\n%s", h.Name, out)
					}
				case "iptables":
					if out, err := labnet.IP("netns", "exec", h.NetNS, "iptables", "-t", "nat", "-S", "KUBE-SERVICES"); err != nil {
						t.Errorf("%s: no KUBE-SERVICES chain: %v\n%s", h.Name, err, out)
					}
				}
			}
			logs := l.kubectl("-n", "herald-system", "logs", "-l", "app.kubernetes.io/component=agent", "--tail=-1", "--prefix")
			if n := strings.Count(logs, "another data plane forwards load-balancer traffic; Herald only announces"); n != len(s.Topology.Nodes) {
				t.Errorf("%d agents say another data plane forwards, want %d:\n%s", n, len(s.Topology.Nodes), logs)
			}
			// Each HeraldNode says so with the evidence, and explain
			// names it for the owner.
			evidence := map[string]string{"nftables": "nftables table ip kube-proxy exists", "iptables": "chain KUBE-SERVICES"}[mode]
			hns := l.kubectl("get", "heraldnodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.dataPlane.mode}:{.status.dataPlane.evidence}{"\n"}{end}`)
			if n := strings.Count(hns, "=none:"); n != len(s.Topology.Nodes) || strings.Count(hns, evidence) != len(s.Topology.Nodes) {
				t.Errorf("HeraldNodes' data planes, want none with %q on each of %d nodes:\n%s", evidence, len(s.Topology.Nodes), hns)
			}
			if out := l.herald("explain", "svc/nginx", "-n", "default"); !strings.Contains(out, "another data plane forwards ("+evidence) {
				t.Errorf("herald explain does not name kube-proxy's data plane:\n%s", out)
			}
		})
	}
}

// TestReleaseDryRun: `make release-dry-run` pushes Herald's image (both
// platforms) and the packaged chart to the lab's registry, and the lab,
// with the Herald it installed from the source tree removed, installs
// Herald again with `helm install oci://…`, its nodes pulling the dry run's
// image as ghcr.io/herald-lb/herald, as a user's cluster pulls a release.
func TestReleaseDryRun(t *testing.T) {
	l := newLab(t, "hle2er-")
	root := l.root
	if out, err := exec.Command("make", "-C", root, "-s", "build").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	if out, err := l.lab("up", "--nodes", "2"); err != nil {
		t.Fatalf("herald-lab up: %v\n%s", err, out)
	}
	s, err := lab.ReadState(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	const suffix = "dryrun.e2e"
	dry := exec.Command("make", "-C", root, "release-dry-run", "DRY_RUN_SUFFIX="+suffix)
	dry.Env = l.env
	out, err := dry.CombinedOutput()
	if err != nil {
		t.Fatalf("make release-dry-run: %v\n%s", err, out)
	}
	// "Pushed 127.0.0.1:PORT/herald-lb/herald:0.1.0-dryrun.e2e@sha256:…"
	var digest string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pushed "+s.Registry+"/herald-lb/herald:"); ok {
			_, digest, _ = strings.Cut(rest, "@")
		}
	}
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("make release-dry-run did not report the pushed index:\n%s", out)
	}
	// The files a release publishes: the chart package and the SBOM, with
	// their checksums.
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = filepath.Join(root, "bin", "release")
	if out, err := check.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != 2 {
		t.Errorf("sha256sum -c bin/release/SHA256SUMS: %v\n%s", err, out)
	}
	sbom, err := os.ReadFile(filepath.Join(root, "bin", "release", "herald.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sbom), `"bomFormat": "CycloneDX"`) || !strings.Contains(string(sbom), "k8s.io/client-go") {
		t.Errorf("bin/release/herald.cdx.json is not a CycloneDX SBOM of herald's modules:\n%.400s", sbom)
	}

	helm := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(s.Tools.Helm, append(args, "--kubeconfig", s.Kubeconfig)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	helm("uninstall", lab.ReleaseName, "--namespace", lab.ReleaseNamespace, "--wait")
	data, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "herald", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		Version string `json:"version"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatal(err)
	}
	chartVersion := chart.Version
	helm("install", lab.ReleaseName, "oci://"+s.Registry+"/herald-lb/charts/herald", "--plain-http",
		"--version", chartVersion+"-"+suffix, "--namespace", lab.ReleaseNamespace,
		"--values", filepath.Join(root, "deploy", "helm", "herald", "values-talos.yaml"), "--wait", "--timeout", "3m")

	images := l.kubectl("-n", "herald-system", "get", "pods", "-o",
		`jsonpath={range .items[*]}{.spec.containers[0].image}={.status.containerStatuses[0].imageID}{"\n"}{end}`)
	lines := strings.Fields(images)
	if len(lines) < len(s.Topology.Nodes)+1 {
		t.Fatalf("Herald's Pods after helm install oci://: %q", images)
	}
	for _, line := range lines {
		img, id, _ := strings.Cut(line, "=")
		if !strings.HasPrefix(img, "ghcr.io/herald-lb/herald:") || !strings.HasSuffix(img, "-"+suffix) {
			t.Errorf("a Pod runs %s, want the dry run's ghcr.io/herald-lb/herald:…-%s", img, suffix)
		}
		if !strings.HasSuffix(id, "@"+digest) {
			t.Errorf("a Pod's image is %s, want the pushed index %s", id, digest)
		}
	}
}
