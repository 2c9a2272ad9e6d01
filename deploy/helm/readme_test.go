package helm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/testenv"
	"github.com/herald-lb/herald/internal/testrequire"
)

// readmeBlock returns the first ```sh block after the heading in the
// chart's README, without its helm commands (the tests install with Helm's
// Go API).
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, after, ok = strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("README.md: no sh block after %q", heading)
	}
	block, _, _ := strings.Cut(after, "\n```")
	var keep []string
	for line := range strings.Lines(block) {
		if !strings.HasPrefix(line, "helm ") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// shell runs script with bash (-eu, pipefail) as the README's reader
// would, with the real kubectl on PATH pointed at the test API server.
func shell(t *testing.T, env *testenv.Env, script string, extraEnv ...string) string {
	t.Helper()
	bin := t.TempDir()
	if err := os.Symlink(env.Binaries.Kubectl, filepath.Join(bin, "kubectl")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+env.KubeconfigPath)
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n--- script:\n%s\n--- output:\n%s", err, script, out)
	}
	return string(out)
}

// TestREADMECommands runs the shell commands of the README's heartbeat key
// sections with the real kubectl: a rotation (seen by an agent's Watch at
// each step, with the fingerprint the README computes), bringing your own
// Secret, the annotation before an upgrade from 0.1.0, and the cleanup.
func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd and kube-apiserver")
	}
	for _, tool := range []string{"bash", "openssl", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			testrequire.Missing(t, "the README's commands need %s: %v", tool, err)
		}
	}
	env := shared.Env(t)
	ctx := t.Context()
	admin := env.Clientset()
	ns := applyRBAC(t, env) // herald-system, the README's namespace
	const secret = "herald-heartbeat-key"
	for _, name := range []string{secret, "my-heartbeat-key"} {
		_ = admin.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{}) // from other tests
	}
	if _, err := heartbeatkey.Ensure(ctx, admin, ns, secret, nil); err != nil {
		t.Fatal(err)
	}

	// An agent following the Secret.
	type report struct {
		keys heartbeatkey.Keys
		err  error
	}
	reports := make(chan report, 20)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		heartbeatkey.Watch(wctx, admin, ns, secret, func(k heartbeatkey.Keys, err error) { reports <- report{k, err} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	expect := func(what string, names ...string) heartbeatkey.Keys {
		t.Helper()
		select {
		case r := <-reports:
			var got []string
			for _, k := range r.keys.Keys {
				got = append(got, k.Name)
			}
			if r.err != nil || strings.Join(got, ",") != strings.Join(names, ",") {
				t.Fatalf("%s: the agent has %v (%v), want %v", what, got, r.err, names)
			}
			return r.keys
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the agent saw nothing within 10s", what)
			return heartbeatkey.Keys{}
		}
	}
	expect("created by the controller", "key-1")

	// Rotating: the block in two runs, stopping after step 1 to look.
	rotation := readmeBlock(t, "### Rotating")
	preamble, rest, ok := strings.Cut(rotation, "# 1.")
	step1, steps23, ok2 := strings.Cut(rest, "# 2.")
	if !ok || !ok2 || !strings.Contains(steps23, "# 3.") {
		t.Fatalf("the README's rotation block is not steps 1, 2, 3:\n%s", rotation)
	}
	out := shell(t, env, preamble+"# 1."+step1+"\necho \"FP=$FP\"\n")
	fp := regexp.MustCompile(`(?m)^FP=([0-9a-f]{8})$`).FindStringSubmatch(out)
	if fp == nil {
		t.Fatalf("step 1 printed no fingerprint:\n%s", out)
	}
	keys := expect("step 1 (add key-2)", "key-2", "key-1")
	if got := keys.Keys[0].Fingerprint(); got != fp[1] {
		t.Errorf("the README computes fingerprint %s, the agent's key-2 has %s", fp[1], got)
	}
	shell(t, env, preamble+"# 2."+steps23, "FP="+fp[1])
	expect("step 3 (remove key-1)", "key-2")

	// Upgrading from 0.1.0: the annotations Helm, Argo CD and Flux honour.
	shell(t, env, readmeBlock(t, "### Upgrading from chart 0.1.0"))
	s, err := admin.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"helm.sh/resource-policy":           "keep",
		"argocd.argoproj.io/sync-options":   "Prune=false",
		"kustomize.toolkit.fluxcd.io/prune": "disabled",
	} {
		if s.Annotations[k] != v {
			t.Errorf("after the upgrade step, annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}

	// Bringing your own Secret.
	shell(t, env, readmeBlock(t, "### Bringing your own Secret"))
	mine, err := admin.CoreV1().Secrets(ns).Get(ctx, "my-heartbeat-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := heartbeatkey.Parse(mine.Data); err != nil || k.Keys[0].Name != "key-1" || len(k.Keys[0].Value) != 64 {
		t.Errorf("the README's own Secret: %v, %v", k, err)
	}

	// Uninstalling: the Secret goes by hand.
	shell(t, env, readmeBlock(t, "### Uninstalling"))
	if _, err := admin.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after the README's delete: err = %v, want NotFound", err)
	}
	select {
	case r := <-reports:
		if !apierrors.IsNotFound(r.err) {
			t.Errorf("the agent after the delete: %v, %v; want NotFound", r.keys, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the agent did not see the delete within 10s")
	}
	_ = admin.CoreV1().Secrets(ns).Delete(ctx, "my-heartbeat-key", metav1.DeleteOptions{})
}
