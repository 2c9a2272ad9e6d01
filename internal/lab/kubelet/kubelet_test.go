package kubelet

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		sc   *corev1.SecurityContext
		want []string
	}{
		{"runtime defaults", nil, slices.Sorted(slices.Values(defaultCapabilities()))},
		{"privileged", &corev1.SecurityContext{Privileged: ptr.To(true)}, []string{"ALL"}},
		{"drop ALL add NET_RAW NET_ADMIN (the agent)", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW", "CAP_NET_ADMIN"}}}, []string{"NET_ADMIN", "NET_RAW"}},
		{"drop one", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}},
			slices.Sorted(slices.Values(slices.DeleteFunc(defaultCapabilities(), func(c string) bool { return c == "NET_RAW" })))},
		{"add ALL", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"ALL"}}}, []string{"ALL"}},
		{"drop ALL only", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := capabilities(tc.sc); !slices.Equal(got, tc.want) {
				t.Errorf("capabilities = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"NODE_NAME": "cp1", "PORT": "8080"}
	for in, want := range map[string]string{
		"plain":                       "plain",
		"--node=$(NODE_NAME)":         "--node=cp1",
		"$(NODE_NAME):$(PORT)":        "cp1:8080",
		"$(MISSING)":                  "$(MISSING)",
		"$$(NODE_NAME)":               "$(NODE_NAME)",
		"cost $5":                     "cost $5",
		"trailing $":                  "trailing $",
		"$(unterminated":              "$(unterminated",
		"$(NODE_NAME)$(NODE_NAME)end": "cp1cp1end",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1",
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
		Spec:   corev1.PodSpec{NodeName: "node1", ServiceAccountName: "sa"},
		Status: corev1.PodStatus{PodIP: "10.244.1.2", HostIP: "192.168.10.216"},
	}
	for path, want := range map[string]string{
		"metadata.name": "web-1", "metadata.namespace": "shop", "metadata.uid": "u-1",
		"spec.nodeName": "node1", "spec.serviceAccountName": "sa", "status.podIP": "10.244.1.2",
		"status.hostIP": "192.168.10.216", "metadata.labels['app']": "web", "metadata.annotations['a']": "b",
		"metadata.labels['none']": "",
	} {
		got, err := fieldValue(pod, path)
		if err != nil || got != want {
			t.Errorf("fieldValue(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(pod, "spec.hostname"); err == nil {
		t.Error("an unsupported field path gave no error")
	}
}

func TestKeyFilesAndWriteFiles(t *testing.T) {
	data := map[string][]byte{"key": []byte("secret"), "other": []byte("x")}
	files, err := keyFiles(data, nil, ptr.To(int32(0o400)), "secret s")
	if err != nil || len(files) != 2 || files["key"].mode != 0o400 {
		t.Fatalf("all keys: %v %v", files, err)
	}
	files, err = keyFiles(data, []corev1.KeyToPath{{Key: "key", Path: "dir/k", Mode: ptr.To(int32(0o600))}}, nil, "secret s")
	if err != nil || len(files) != 1 || files["dir/k"].mode != 0o600 {
		t.Fatalf("items: %v %v", files, err)
	}
	if _, err := keyFiles(data, []corev1.KeyToPath{{Key: "nope", Path: "n"}}, nil, "secret s"); err == nil {
		t.Error("a missing key gave no error")
	}

	dir := t.TempDir()
	if err := writeFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "dir", "k"))
	if err != nil || string(got) != "secret" {
		t.Fatalf("written file: %q %v", got, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "dir", "k")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// A rewrite replaces the content (token renewal).
	if err := writeFiles(dir, map[string]file{"dir/k": {[]byte("new"), 0o600}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "dir", "k")); string(got) != "new" {
		t.Errorf("after rewrite: %q", got)
	}
	// Paths are confined to the volume: ".." cannot climb out of it.
	for _, p := range []string{"../escape", "/../../escape2"} {
		if err := writeFiles(dir, map[string]file{p: {[]byte("x"), 0o644}}); err != nil {
			t.Errorf("path %q: %v", p, err)
		}
	}
	for _, name := range []string{"escape", "escape2"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), name)); err == nil {
			t.Errorf("%s escaped the volume directory", name)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s is not inside the volume: %v", name, err)
		}
	}
	if err := writeFiles(dir, map[string]file{"": {[]byte("x"), 0o644}}); err == nil {
		t.Error("an empty path was accepted")
	}
}

func TestResolvePort(t *testing.T) {
	c := &corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	if p, err := resolvePort(intstr.FromInt32(80), c); err != nil || p != 80 {
		t.Errorf("numeric port: %d %v", p, err)
	}
	if p, err := resolvePort(intstr.FromString("http"), c); err != nil || p != 8080 {
		t.Errorf("named port: %d %v", p, err)
	}
	if _, err := resolvePort(intstr.FromString("metrics"), c); err == nil {
		t.Error("an unknown named port gave no error")
	}
}

func TestShimArgs(t *testing.T) {
	s := Shim{NetNS: "/run/netns/x", Hostname: "web-1", Mounts: []string{"/a:/b:ro"}, Capabilities: []string{"NET_RAW"},
		NoNewPrivs: true, WorkingDir: "/w", Argv: []string{"/bin/herald", "agent", "--flag"}}
	want := []string{"shim", "--netns", "/run/netns/x", "--hostname", "web-1", "--mount", "/a:/b:ro",
		"--caps", "NET_RAW", "--no-new-privs", "--workdir", "/w", "--", "/bin/herald", "agent", "--flag"}
	if got := s.Args(); !slices.Equal(got, want) {
		t.Errorf("Args = %v\nwant %v", got, want)
	}
	if got := (Shim{Argv: []string{"x"}}).Args(); !slices.Contains(got, "NONE") {
		t.Errorf("no capabilities must say NONE: %v", got)
	}
}

func TestEnvironment(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Port: 443}}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "shop"}, Data: map[string][]byte{"key": []byte("k3y")}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "shop"}, Data: map[string]string{"MODE": "fast", "PORT": "80"}},
	)
	k := &Kubelet{cfg: Config{Client: client}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"}, Spec: corev1.PodSpec{NodeName: "node1"}}
	c := &corev1.Container{
		EnvFrom: []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
		Env: []corev1.EnvVar{
			{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "key"}}},
			{Name: "WHERE", Value: "$(NODE_NAME):$(CM_PORT)"},
			{Name: "KUBERNETES_SERVICE_HOST", Value: "localhost"},
		},
	}
	env, vars, err := k.environment(t.Context(), pod, c, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME=web-1",
		"KUBERNETES_SERVICE_HOST=localhost", // the Talos preset overrides the Service's
		"KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_PORT=tcp://10.96.0.1:443",
		"CM_MODE=fast", "CM_PORT=80",
		"NODE_NAME=node1", "KEY=k3y", "WHERE=node1:80",
	}
	if !slices.Equal(slices.Sorted(slices.Values(env)), slices.Sorted(slices.Values(want))) {
		t.Errorf("environment\n got %v\nwant %v", env, want)
	}
	if vars["WHERE"] != "node1:80" || vars["PATH"] == "" {
		t.Errorf("vars %v", vars)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "MISSING", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k"}}})
	if _, _, err := k.environment(t.Context(), pod, c, "web-1"); err == nil {
		t.Error("a missing Secret gave no error")
	}
}
