package testenv

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(root, toolsModuleDir)
	base := t.TempDir()
	t.Setenv(cacheEnv, base)
	a, err := cacheDir(tools, "-X a=1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := cacheDir(tools, "-X a=2")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(a) != base || filepath.Dir(b) != base || a == b {
		t.Errorf("cacheDir = %s and %s, want two different directories under %s", a, b, base)
	}
	if again, _ := cacheDir(tools, "-X a=1"); again != a {
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
	lines := strings.Split(tailFile(path, 3), "\n")
	if len(lines) != 3 || len(lines[2]) != 99 || len(lines[0]) != 97 {
		t.Errorf("tailFile = %q", lines)
	}
}
