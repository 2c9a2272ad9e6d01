package helm_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/kube"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestInstallAndUpgrade installs the chart with Helm into a real API server
// (which validates every object) and upgrades it: the heartbeat key, made
// by the chart on install, stays the same (agents of both revisions must
// agree on it).
func TestInstallAndUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	const ns, release = "herald-install", "herald-install"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	settings := cli.New()
	settings.KubeConfig = env.KubeconfigPath
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(settings.RESTClientGetter(), ns, "secret"); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	// Names of their own: the chart's cluster-wide objects from the other
	// tests share this API server.
	vals := map[string]any{"fullnameOverride": release}

	install := action.NewInstall(cfg)
	install.ReleaseName = release
	install.Namespace = ns
	install.WaitStrategy = kube.HookOnlyStrategy
	if _, err := install.RunWithContext(ctx, chrt, vals); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Cleanup(func() {
		uninstall := action.NewUninstall(cfg)
		uninstall.WaitStrategy = kube.HookOnlyStrategy
		if _, err := uninstall.Run(release); err != nil {
			t.Errorf("helm uninstall: %v", err)
		}
	})
	key := func() []byte {
		t.Helper()
		s, err := admin.CoreV1().Secrets(ns).Get(context.Background(), release+"-heartbeat-key", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("heartbeat secret: %v", err)
		}
		if len(s.Data["key"]) < 16 {
			t.Errorf("heartbeat key has %d bytes, want at least 16", len(s.Data["key"]))
		}
		return s.Data["key"]
	}
	before := key()
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
	} {
		if err := get(); err != nil {
			t.Errorf("after install: %v", err)
		}
	}

	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	upgrade.WaitStrategy = kube.HookOnlyStrategy
	if _, err := upgrade.RunWithContext(ctx, release, chrt, map[string]any{"fullnameOverride": release, "logFormat": "json"}); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if after := key(); !bytes.Equal(before, after) {
		t.Error("helm upgrade changed the heartbeat key")
	}
	d, err := admin.AppsV1().DaemonSets(ns).Get(ctx, release+"-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--log-format=json") {
		t.Errorf("after upgrade the agent's args are %v, want --log-format=json", args)
	}
}

// TestInstallTalosPreset installs the chart with values-talos.yaml the way
// its header says (release namespace kube-system): the chart creates
// Herald's namespace, labelled privileged, and puts its objects there.
func TestInstallTalosPreset(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	const release, ns = "herald-talos", "herald-talos"
	settings := cli.New()
	settings.KubeConfig = env.KubeconfigPath
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(settings.RESTClientGetter(), "kube-system", "secret"); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = release
	install.Namespace = "kube-system"
	install.WaitStrategy = kube.HookOnlyStrategy
	vals := readValues(t, []string{"values-talos.yaml"}, map[string]any{
		"fullnameOverride": release,
		"namespace":        map[string]any{"name": ns},
	})
	if _, err := install.RunWithContext(ctx, chrt, vals); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Cleanup(func() {
		uninstall := action.NewUninstall(cfg)
		uninstall.WaitStrategy = kube.HookOnlyStrategy
		if _, err := uninstall.Run(release); err != nil {
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
	if _, err := admin.CoreV1().Secrets(ns).Get(ctx, release+"-heartbeat-key", metav1.GetOptions{}); err != nil {
		t.Errorf("heartbeat secret: %v", err)
	}
}
