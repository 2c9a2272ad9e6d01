package helm_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/testenv"
)

// helmRelease is Helm's Go API for one release namespace of the shared API
// server.
type helmRelease struct {
	t       *testing.T
	cfg     *action.Configuration
	ns      string
	release string
}

func newHelmRelease(t *testing.T, env *testenv.Env, ns, release string) *helmRelease {
	t.Helper()
	settings := cli.New()
	settings.KubeConfig = env.KubeconfigPath
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(settings.RESTClientGetter(), ns, "secret"); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return &helmRelease{t: t, cfg: cfg, ns: ns, release: release}
}

func (h *helmRelease) install(chrt *chartv2.Chart, vals map[string]any) {
	h.t.Helper()
	install := action.NewInstall(h.cfg)
	install.ReleaseName = h.release
	install.Namespace = h.ns
	install.WaitStrategy = kube.HookOnlyStrategy
	if _, err := install.RunWithContext(h.t.Context(), chrt, vals); err != nil {
		h.t.Fatalf("helm install: %v", err)
	}
}

func (h *helmRelease) upgrade(chrt *chartv2.Chart, vals map[string]any) {
	h.t.Helper()
	upgrade := action.NewUpgrade(h.cfg)
	upgrade.Namespace = h.ns
	upgrade.WaitStrategy = kube.HookOnlyStrategy
	if _, err := upgrade.RunWithContext(h.t.Context(), h.release, chrt, vals); err != nil {
		h.t.Fatalf("helm upgrade: %v", err)
	}
}

func (h *helmRelease) uninstall() error {
	uninstall := action.NewUninstall(h.cfg)
	uninstall.WaitStrategy = kube.HookOnlyStrategy
	_, err := uninstall.Run(h.release)
	return err
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return chrt
}

func createNamespace(t *testing.T, admin kubernetes.Interface, ns string) {
	t.Helper()
	if _, err := admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
}

// TestInstallAndUpgrade installs the chart with Helm into a real API server
// (which validates every object), upgrades it and uninstalls it. The chart
// makes no heartbeat Secret; the controller's Ensure does, and neither the
// upgrade nor the uninstall touches it (agents of both revisions must
// agree on the key, and a reinstall must find it).
func TestInstallAndUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	const ns, release = "herald-install", "herald-install"
	const secretName = release + "-heartbeat-key"
	createNamespace(t, admin, ns)
	h := newHelmRelease(t, env, ns, release)
	chrt := loadChart(t)
	// Names of their own: the chart's cluster-wide objects from the other
	// tests share this API server.
	h.install(chrt, map[string]any{"fullnameOverride": release})
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			if err := h.uninstall(); err != nil {
				t.Errorf("helm uninstall: %v", err)
			}
		}
	})
	for _, get := range []func() error{
		func() error {
			_, err := admin.AppsV1().Deployments(ns).Get(ctx, release+"-controller", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := admin.AppsV1().DaemonSets(ns).Get(ctx, release+"-agent", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().ClusterRoles().Get(ctx, release+"-agent", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().Roles(ns).Get(ctx, release+"-controller-leader-election", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().Roles(ns).Get(ctx, release+"-controller-heartbeat-key", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := admin.RbacV1().RoleBindings(ns).Get(ctx, release+"-agent-heartbeat-key", metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	if _, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after install, heartbeat secret: err = %v, want NotFound (the chart renders none)", err)
	}

	// The controller's first start.
	if created, err := heartbeatkey.Ensure(ctx, admin, ns, secretName, nil); err != nil || !created {
		t.Fatalf("Ensure = %v, %v", created, err)
	}
	before, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(when string) {
		t.Helper()
		after, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s, heartbeat secret: %v", when, err)
		}
		if after.ResourceVersion != before.ResourceVersion || !bytes.Equal(after.Data["key-1"], before.Data["key-1"]) {
			t.Errorf("%s the heartbeat secret changed", when)
		}
	}

	h.upgrade(chrt, map[string]any{"fullnameOverride": release, "logFormat": "json"})
	unchanged("after helm upgrade")
	d, err := admin.AppsV1().DaemonSets(ns).Get(ctx, release+"-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--log-format=json") || !slices.Contains(args, "--heartbeat-secret="+secretName) {
		t.Errorf("after upgrade the agent's args are %v, want --log-format=json and --heartbeat-secret=%s", args, secretName)
	}

	// helm uninstall leaves the Secret (the README says to delete it by
	// hand).
	uninstalled = true
	if err := h.uninstall(); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	unchanged("after helm uninstall")
	if _, err := admin.AppsV1().DaemonSets(ns).Get(ctx, release+"-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after uninstall, agent DaemonSet: err = %v, want NotFound", err)
	}
	if err := admin.CoreV1().Secrets(ns).Delete(ctx, secretName, metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete the heartbeat secret by hand: %v", err)
	}
}

// TestUpgradeFromChart010 upgrades a release of chart 0.1.0 (whose
// templates rendered the heartbeat Secret: testdata/secret-0.1.0.yaml) to
// this chart. Helm deletes an object the new chart no longer renders,
// unless the live object carries helm.sh/resource-policy: keep — hence the
// README's upgrade step. With it the Secret and its legacy "key" entry
// stay, and the agents (which read "key" as generation 0) keep their key.
func TestUpgradeFromChart010(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	admin := env.Clientset()
	oldSecret, err := os.ReadFile(filepath.Join("testdata", "secret-0.1.0.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		annotate bool
	}{
		{"annotated as the README says", true},
		{"not annotated", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			release := "herald-010-keep"
			if !tc.annotate {
				release = "herald-010-drop"
			}
			ns := release
			secretName := release + "-heartbeat-key"
			createNamespace(t, admin, ns)
			h := newHelmRelease(t, env, ns, release)
			old := loadChart(t)
			old.Metadata.Version = "0.1.0"
			old.Templates = append(old.Templates, &common.File{Name: "templates/secret.yaml", Data: oldSecret})
			vals := map[string]any{"fullnameOverride": release}
			h.install(old, vals)
			t.Cleanup(func() {
				if err := h.uninstall(); err != nil {
					t.Errorf("helm uninstall: %v", err)
				}
			})
			s, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("chart 0.1.0's heartbeat secret: %v", err)
			}
			legacy, err := heartbeatkey.Parse(s.Data)
			if err != nil || legacy.Keys[0].Name != "key" {
				t.Fatalf("chart 0.1.0's heartbeat secret: %v, %v", legacy, err)
			}

			if tc.annotate {
				// kubectl -n <ns> annotate secret <name> helm.sh/resource-policy=keep
				if s.Annotations == nil {
					s.Annotations = map[string]string{}
				}
				s.Annotations["helm.sh/resource-policy"] = "keep"
				if _, err := admin.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			h.upgrade(loadChart(t), vals)

			after, err := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
			if !tc.annotate {
				// Why the README's step is needed: without it the Secret
				// goes, and the controller would make a new key.
				if !apierrors.IsNotFound(err) {
					t.Errorf("without the annotation: err = %v, want the Secret deleted by helm upgrade (if Helm now keeps it, simplify the README)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("after the upgrade, heartbeat secret: %v", err)
			}
			keys, err := heartbeatkey.Parse(after.Data)
			if err != nil || !keys.Equal(legacy) {
				t.Errorf("after the upgrade the keys are %v (%v), want %v", keys, err, legacy)
			}
			// The controller of the new chart finds it and leaves it.
			if created, err := heartbeatkey.Ensure(ctx, admin, ns, secretName, nil); err != nil || created {
				t.Errorf("Ensure after the upgrade = %v, %v; want the Secret kept", created, err)
			}
			if again, _ := admin.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{}); again.ResourceVersion != after.ResourceVersion {
				t.Error("Ensure changed the upgraded Secret")
			}
		})
	}
}

// TestInstallTalosPreset installs the chart with values-talos.yaml the way
// its header says (release namespace kube-system): the chart creates
// Herald's namespace, labelled privileged, and puts its objects there —
// but no Secret.
func TestInstallTalosPreset(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	const release, ns = "herald-talos", "herald-talos"
	h := newHelmRelease(t, env, "kube-system", release)
	vals := readValues(t, []string{"values-talos.yaml"}, map[string]any{
		"fullnameOverride": release,
		"namespace":        map[string]any{"name": ns},
	})
	h.install(loadChart(t), vals)
	t.Cleanup(func() {
		if err := h.uninstall(); err != nil {
			t.Errorf("helm uninstall: %v", err)
		}
	})
	n, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace: %v", err)
	}
	if got := n.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace %s: pod-security.kubernetes.io/enforce = %q, want privileged", ns, got)
	}
	d, err := admin.AppsV1().DaemonSets(ns).Get(ctx, release+"-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("agent DaemonSet: %v", err)
	}
	var host string
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "KUBERNETES_SERVICE_HOST" {
			host = e.Value
		}
	}
	if host != "localhost" {
		t.Errorf("agent KUBERNETES_SERVICE_HOST = %q, want localhost", host)
	}
	if r, err := admin.RbacV1().Roles(ns).Get(ctx, release+"-agent-heartbeat-key", metav1.GetOptions{}); err != nil {
		t.Errorf("agent heartbeat key Role: %v", err)
	} else if len(r.Rules) != 1 || !slices.Equal(r.Rules[0].ResourceNames, []string{release + "-heartbeat-key"}) {
		t.Errorf("agent heartbeat key Role rules %+v, want resourceNames [%s-heartbeat-key]", r.Rules, release)
	}
	if s, err := admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list secrets: %v", err)
	} else if len(s.Items) != 0 {
		t.Errorf("%d secrets in %s after install (%s, …), want none: the controller makes the heartbeat Secret", len(s.Items), ns, s.Items[0].Name)
	}
}
