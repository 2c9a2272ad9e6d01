package testenv

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

var shared = NewShared(Options{})

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

// env returns the shared environment, skipping in -short mode.
func env(t *testing.T) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	return shared.Env(t)
}

// namespace creates a namespace for the test.
func namespace(t *testing.T, e *Env) string {
	t.Helper()
	ns, err := e.Clientset().CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func loadBalancer(name string, policy *corev1.IPFamilyPolicy) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy: policy,
			Selector:       map[string]string{"app": name},
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

func TestServiceDefaults(t *testing.T) {
	e := env(t)
	ns := namespace(t, e)
	services := e.Clientset().CoreV1().Services(ns)

	svc, err := services.Create(t.Context(), loadBalancer("single", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	if got, want := svc.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}; !slices.Equal(got, want) {
		t.Errorf("ipFamilies = %v, want %v", got, want)
	}
	if p := svc.Spec.IPFamilyPolicy; p == nil || *p != corev1.IPFamilyPolicySingleStack {
		t.Errorf("ipFamilyPolicy = %v, want SingleStack", p)
	}
	checkIP(t, svc.Spec.ClusterIP, ServiceCIDRv4)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].NodePort == 0 {
		t.Errorf("ports = %+v, want one with a node port", svc.Spec.Ports)
	}

	policy := corev1.IPFamilyPolicyPreferDualStack
	dual, err := services.Create(t.Context(), loadBalancer("dual", &policy), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create dual-stack service: %v", err)
	}
	if got, want := dual.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}; !slices.Equal(got, want) {
		t.Errorf("dual-stack ipFamilies = %v, want %v", got, want)
	}
	if len(dual.Spec.ClusterIPs) != 2 {
		t.Fatalf("dual-stack clusterIPs = %v, want two", dual.Spec.ClusterIPs)
	}
	checkIP(t, dual.Spec.ClusterIPs[0], ServiceCIDRv4)
	checkIP(t, dual.Spec.ClusterIPs[1], ServiceCIDRv6)
}

func checkIP(t *testing.T, ip, cidr string) {
	t.Helper()
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		t.Errorf("cluster IP %q: %v", ip, err)
		return
	}
	if !netip.MustParsePrefix(cidr).Contains(addr) {
		t.Errorf("cluster IP %s not in %s", addr, cidr)
	}
}

func TestServiceStatus(t *testing.T) {
	e := env(t)
	ns := namespace(t, e)
	services := e.Clientset().CoreV1().Services(ns)
	svc, err := services.Create(t.Context(), loadBalancer("web", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}

	// Status is a subresource: an ordinary update ignores it.
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.10.75"}}
	updated, err := services.Update(t.Context(), svc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update service: %v", err)
	}
	if len(updated.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("Update changed status: %+v", updated.Status.LoadBalancer)
	}

	mode := corev1.LoadBalancerIPModeVIP
	updated.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.10.75", IPMode: &mode}}
	if _, err := services.UpdateStatus(t.Context(), updated, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}
	got, err := services.Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service: %v", err)
	}
	ingress := got.Status.LoadBalancer.Ingress
	if len(ingress) != 1 || ingress[0].IP != "192.168.10.75" {
		t.Errorf("status.loadBalancer.ingress = %+v, want 192.168.10.75", ingress)
	}

	// The API server decides conflicts: a stale resourceVersion is refused.
	_, err = services.UpdateStatus(t.Context(), updated, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		t.Errorf("status update with stale resourceVersion: err = %v, want a conflict", err)
	}
}

func TestBogusTokenRejected(t *testing.T) {
	e := env(t)
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = "bogus"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("list namespaces with a bogus token: err = %v, want 401 Unauthorized", err)
	}
}

func TestServiceAccountRBAC(t *testing.T) {
	e := env(t)
	ctx := t.Context()
	ns := namespace(t, e)
	admin := e.Clientset()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "herald"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create serviceaccount: %v", err)
	}
	cfg, err := e.ServiceAccountConfig(ctx, ns, "herald")
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review: %v", err)
	}
	if got, want := review.Status.UserInfo.Username, "system:serviceaccount:"+ns+":herald"; got != want {
		t.Errorf("authenticated as %q, want %q", got, want)
	}

	if _, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list services without a role: err = %v, want 403 Forbidden", err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "services"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create role: %v", err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "services"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "services"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "herald"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create rolebinding: %v", err)
	}
	// The RBAC authorizer sees the binding through an informer: wait.
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		_, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Errorf("list services with a role: %v", err)
	}
	if _, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list namespaces: err = %v, want 403 Forbidden", err)
	}
}

func TestKubectl(t *testing.T) {
	e := env(t)
	cmd := exec.CommandContext(t.Context(), e.Binaries.Kubectl,
		"--kubeconfig", e.KubeconfigPath, "--cache-dir", t.TempDir(), "get", "namespaces", "-o", "name")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get namespaces: %v\n%s", err, out)
	}
	if !slices.Contains(strings.Fields(string(out)), "namespace/default") {
		t.Errorf("kubectl get namespaces = %q, want namespace/default", out)
	}

	out, err = exec.CommandContext(t.Context(), e.Binaries.Kubectl,
		"--kubeconfig", e.KubeconfigPath, "version", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"serverVersion"`) || strings.Contains(string(out), `"gitVersion": "v0.0.0`) {
		t.Errorf("kubectl version does not show a stamped server version:\n%s", out)
	}
}

const widgetCRD = `# A comment and an empty document first.
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.herald.dev
spec:
  group: test.herald.dev
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
    subresources: {status: {}}
`

func TestInstallCRDs(t *testing.T) {
	e := env(t)
	ctx := t.Context()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"widgets.yaml":       widgetCRD,
		"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [widgets.yaml]\n",
		"README.md":          "not yaml",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dirs := []string{filepath.Join(dir, "missing"), t.TempDir(), dir}
	if err := e.installCRDs(ctx, dirs); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	// Installing again updates in place.
	if err := e.installCRDs(ctx, dirs); err != nil {
		t.Fatalf("reinstall CRDs: %v", err)
	}

	client, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, e)
	widgets := client.Resource(schema.GroupVersionResource{Group: "test.herald.dev", Version: "v1alpha1", Resource: "widgets"}).Namespace(ns)
	widget := func(size int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "test.herald.dev/v1alpha1",
			"kind":       "Widget",
			"metadata":   map[string]any{"generateName": "w-"},
			"spec":       map[string]any{"size": size},
		}}
	}
	if _, err := widgets.Create(ctx, widget(3), metav1.CreateOptions{}); err != nil {
		t.Errorf("create widget: %v", err)
	}
	if _, err := widgets.Create(ctx, widget(0), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("create widget violating the schema: err = %v, want Invalid", err)
	}
}

func TestStopKillsProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	t.Setenv(keepEnv, "")
	e, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	pids := []int{e.apiserver.pid(), e.etcd.pid()}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("process %d not running before Stop: %v", pid, err)
		}
	}
	start := time.Now()
	if err := e.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(start).Round(time.Millisecond))
	for _, pid := range pids {
		// Stop reaps the processes, so their ids are gone.
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d after Stop: kill 0 = %v, want ESRCH", pid, err)
		}
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d after Stop: kill 0 = %v, want ESRCH", pid, err)
		}
	}
	if _, err := os.Stat(e.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("environment directory after Stop: %v, want it removed", err)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := e.Clientset().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err == nil {
		t.Error("API server still answers after Stop")
	}
}

// TestControllers checks that the controller manager and the scheduler of
// a Controllers environment really work.
func TestControllers(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd, kube-apiserver, kube-controller-manager and kube-scheduler")
	}
	t.Setenv(keepEnv, "")
	started := time.Now()
	e := StartForTest(t, Options{Controllers: true})
	t.Logf("Start took %v", time.Since(started).Round(time.Millisecond))
	ctx := t.Context()
	client := e.Clientset()
	if e.ClusterCIDR != DefaultClusterCIDR {
		t.Errorf("ClusterCIDR = %q, want %q", e.ClusterCIDR, DefaultClusterCIDR)
	}

	// A Ready Node with room for Pods gets a Pod CIDR from the node IPAM
	// controller. (Without a kubelet the node lifecycle controller declares
	// it unreachable after 50 seconds; the test is done long before.)
	node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node: %v", err)
	}
	room := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	// The controllers update the new Node too (Pod CIDR, taints): retry on
	// a conflict, as a kubelet would.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		node.Status = corev1.NodeStatus{
			Capacity:    room,
			Allocatable: room,
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}},
		}
		_, err = client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update node status: %v", err)
	}
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		node, err = client.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		return err == nil && node.Spec.PodCIDR != "", err
	})
	if err != nil {
		t.Fatalf("wait for node podCIDR: %v", err)
	}
	podCIDR, err := netip.ParsePrefix(node.Spec.PodCIDR)
	if err != nil || podCIDR.Bits() != 24 || !netip.MustParsePrefix(DefaultClusterCIDR).Contains(podCIDR.Addr()) {
		t.Errorf("node podCIDR = %q, want a /24 in %s", node.Spec.PodCIDR, DefaultClusterCIDR)
	}

	// A new namespace gets its default ServiceAccount and the CA ConfigMap,
	// and that CA verifies the API server, as for an in-cluster client.
	ns := namespace(t, e)
	var cm *corev1.ConfigMap
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, nil
		}
		cm, err = client.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("wait for serviceaccount default and configmap kube-root-ca.crt in %s: %v", ns, err)
	}
	inCluster := rest.CopyConfig(e.Config)
	inCluster.CAData = []byte(cm.Data["ca.crt"])
	if c, err := kubernetes.NewForConfig(inCluster); err != nil {
		t.Error(err)
	} else if _, err := c.Discovery().ServerVersion(); err != nil {
		t.Errorf("API server not trusted with the CA of kube-root-ca.crt: %v", err)
	}

	// A Deployment gets a Pod (deployment and replicaset controllers) that
	// the scheduler binds to the Node.
	replicas := int32(1)
	labels := map[string]string{"app": "web"}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "registry.invalid/web:1",
				}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	var pods *corev1.PodList
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		pods, err = client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Spec.NodeName != "", err
	})
	if err != nil {
		t.Fatalf("wait for a scheduled pod of deployment web: %v (pods: %+v)", err, pods)
	}
	if pod := pods.Items[0]; pod.Spec.NodeName != "node-a" {
		t.Errorf("pod %s bound to %q, want node-a", pod.Name, pod.Spec.NodeName)
	}

	for _, name := range []string{"kube-controller-manager.log", "kube-scheduler.log"} {
		if fi, err := os.Stat(filepath.Join(e.Dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("log %s: %v, want a non-empty file", name, err)
		}
	}

	// helm is the version the root go.mod requires.
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := helmVersion(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, e.Binaries.Helm, "version", "--short").CombinedOutput()
	if err != nil {
		t.Fatalf("helm version: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("helm version --short = %q, want %q", got, want)
	}

	// Stop ends the controller manager and the scheduler too.
	pids := []int{e.scheduler.pid(), e.controllerManager.pid()}
	stopped := time.Now()
	if err := e.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(stopped).Round(time.Millisecond))
	for _, pid := range pids {
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d after Stop: kill 0 = %v, want ESRCH", pid, err)
		}
	}
}

func TestClusterCIDR(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		flags    []string
	}{
		{"10.244.0.0/16", "10.244.0.0/16", []string{"--node-cidr-mask-size=24"}},
		{"fd00:10:244::/48", "fd00:10:244::/48", []string{"--node-cidr-mask-size=64"}},
		{"10.244.0.0/16, fd00:10:244::/48", "10.244.0.0/16,fd00:10:244::/48",
			[]string{"--node-cidr-mask-size-ipv4=24", "--node-cidr-mask-size-ipv6=64"}},
		{"10.244.1.0/24", "10.244.1.0/24", []string{"--node-cidr-mask-size=24"}},
	} {
		got, flags, err := clusterCIDR(tc.in)
		if err != nil || got != tc.want || !slices.Equal(flags, tc.flags) {
			t.Errorf("clusterCIDR(%q) = %q, %q, %v; want %q, %q", tc.in, got, flags, err, tc.want, tc.flags)
		}
	}
	for _, bad := range []string{"", "10.244.0.0", "10.244.0.1/16", "10.244.0.0/25", "10.0.0.0/8,10.244.0.0/16",
		"fd00::/48,fd01::/48", "10.0.0.0/8,fd00::/48,10.1.0.0/16"} {
		if _, _, err := clusterCIDR(bad); err == nil {
			t.Errorf("clusterCIDR(%q) succeeded, want an error", bad)
		}
	}
	if _, err := Start(t.Context(), Options{Controllers: true, ClusterCIDR: "10.244.0.0/33"}); err == nil {
		t.Error("Start with a bad ClusterCIDR succeeded")
	}
}

func TestGoModParsing(t *testing.T) {
	gomod := []byte(`// comment
module   github.com/herald-lb/herald/hack/tools // trailing

go 1.26.0

require k8s.io/kubernetes v1.37.1 // indirect

require (
	go.etcd.io/etcd/server/v3 v3.7.0
	k8s.io/api v0.37.1 // indirect
)

replace k8s.io/api => k8s.io/api v0.37.2
`)
	if got, want := modulePath(gomod), "github.com/herald-lb/herald/hack/tools"; got != want {
		t.Errorf("modulePath = %q, want %q", got, want)
	}
	if got := modulePath([]byte("modulex foo\n")); got != "" {
		t.Errorf("modulePath(modulex) = %q, want empty", got)
	}
	for mod, want := range map[string]string{
		"k8s.io/kubernetes":         "v1.37.1",
		"go.etcd.io/etcd/server/v3": "v3.7.0",
		"k8s.io/api":                "v0.37.1",
		"k8s.io/client-go":          "",
	} {
		if got := requiredVersion(gomod, mod); got != want {
			t.Errorf("requiredVersion(%s) = %q, want %q", mod, got, want)
		}
	}

	path := filepath.Join(t.TempDir(), "go.mod")
	if err := os.WriteFile(path, gomod, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := versionLDFlags(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "-X k8s.io/component-base/version.gitVersion=v1.37.1 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
	if got != want {
		t.Errorf("versionLDFlags = %q, want %q", got, want)
	}
}

func TestCacheDir(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(root, toolsModuleDir)
	base := t.TempDir()
	t.Setenv(cacheEnv, base)
	dir := func(ldflags, helm string) string {
		t.Helper()
		d, err := cacheDir(recipe{toolsDir: tools, ldflags: ldflags, helmVersion: helm})
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(d) != base {
			t.Errorf("cacheDir = %s, want a directory under %s", d, base)
		}
		return d
	}
	a := dir("-X a=1", "v4.3.1")
	if b := dir("-X a=2", "v4.3.1"); a == b {
		t.Errorf("cacheDir = %s for different ldflags", a)
	}
	if b := dir("-X a=1", "v4.3.2"); a == b {
		t.Errorf("cacheDir = %s for different Helm versions", a)
	}
	if again := dir("-X a=1", "v4.3.1"); again != a {
		t.Errorf("cacheDir not stable: %s then %s", a, again)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString(strings.Repeat("x", i) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(TailFile(path, 3), "\n")
	if len(lines) != 3 || len(lines[2]) != 99 || len(lines[0]) != 97 {
		t.Errorf("TailFile = %q", lines)
	}
}

// TestServingCertificateNames checks that clients verifying the API
// server's certificate may call it localhost (a KubePrism-style proxy on
// localhost:7445) or kubernetes.default.svc, not only 127.0.0.1.
func TestServingCertificateNames(t *testing.T) {
	e := env(t)
	u, err := url.Parse(e.APIServerURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "kubernetes.default.svc"} {
		cfg := rest.CopyConfig(e.Config)
		cfg.Host = "https://" + net.JoinHostPort("127.0.0.1", u.Port())
		if name != "127.0.0.1" {
			cfg.TLSClientConfig.ServerName = name
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Discovery().ServerVersion(); err != nil {
			t.Errorf("API server as %q: %v", name, err)
		}
	}
}
