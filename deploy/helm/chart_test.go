// Package helm_test checks the Helm chart in deploy/helm/herald: it lints and
// renders the chart with Helm's own Go module (the same code as `helm lint`
// and `helm template`) and checks what Herald's parts are given: CRDs, least
// privilege for the agent, the Talos preset, and RBAC rules verb by verb —
// against the rendered YAML and against a real API server.
package helm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/kube"
)

const chartDir = "herald"

// kubeVersion is the Kubernetes version the chart is rendered for: the one
// Herald is built and tested against. (Helm's default, without the ldflags
// of a Helm release build, is v1.20, below the chart's kubeVersion.)
var kubeVersion = &common.KubeVersion{Version: "v1.37.1", Major: "1", Minor: "37"}

// objects is a rendered chart: every object by kind and name.
type objects struct {
	all []*unstructured.Unstructured
}

func (o objects) find(kind, name string) *unstructured.Unstructured {
	for _, u := range o.all {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

func (o objects) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range o.all {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// get converts the object kind/name into out, failing t if it is missing.
func get[T any](t *testing.T, o objects, kind, name string) *T {
	t.Helper()
	u := o.find(kind, name)
	if u == nil {
		t.Fatalf("rendered chart has no %s %q", kind, name)
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("convert %s %q: %v", kind, name, err)
	}
	return out
}

// readValues merges the chart's values files named in files (relative to
// the chart, later files win, like helm -f) and then the overrides in set.
func readValues(t *testing.T, files []string, set map[string]any) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := common.ReadValuesFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		vals = util.MergeTables(v.AsMap(), vals)
	}
	return util.MergeTables(set, vals)
}

// render runs `helm template --include-crds` on the chart in namespace ns.
func render(t *testing.T, ns string, vals map[string]any) (objects, error) {
	t.Helper()
	manifest, err := renderManifest(t, ns, vals)
	if err != nil {
		return objects{}, err
	}
	var out objects
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode rendered manifest: %v\n%s", err, manifest)
		}
		if len(m) == 0 {
			continue
		}
		out.all = append(out.all, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// renderManifest is render's text: the manifest `helm template
// --include-crds` prints.
func renderManifest(t *testing.T, ns string, vals map[string]any) (string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "herald"
	install.Namespace = ns
	install.Replace = true
	install.IncludeCRDs = true
	install.KubeVersion = kubeVersion
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		t.Fatalf("install returned a %T", rel)
	}
	return r.Manifest, nil
}

func mustRender(t *testing.T, ns string, files []string, set map[string]any) objects {
	t.Helper()
	o, err := render(t, ns, readValues(t, files, set))
	if err != nil {
		t.Fatalf("render chart with %v %v: %v", files, set, err)
	}
	return o
}

// The CRDs in the chart are the ones `make generate` writes to config/crd,
// byte for byte, so the chart never installs a stale schema.
func TestCRDsMatchConfig(t *testing.T) {
	read := func(dir string) map[string][]byte {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]byte{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(f)] = b
		}
		return out
	}
	want := read(filepath.Join("..", "..", "config", "crd"))
	got := read(filepath.Join(chartDir, "crds"))
	if len(want) == 0 {
		t.Fatal("config/crd holds no CRDs")
	}
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("deploy/helm/herald/crds/%s is missing; copy config/crd/*.yaml into the chart", name)
		case !bytes.Equal(g, w):
			t.Errorf("deploy/helm/herald/crds/%s differs from config/crd/%s; copy config/crd/*.yaml into the chart", name, name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("deploy/helm/herald/crds/%s is not in config/crd; remove it", name)
		}
	}
}

func TestLint(t *testing.T) {
	for _, files := range [][]string{{"values.yaml"}, {"values.yaml", "values-talos.yaml"}} {
		t.Run(strings.Join(files, "+"), func(t *testing.T) {
			lint := action.NewLint()
			lint.Namespace = "herald-system"
			lint.KubeVersion = kubeVersion
			res := lint.Run([]string{chartDir}, readValues(t, files, nil))
			for _, err := range res.Errors {
				t.Errorf("lint error: %v", err)
			}
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				} else {
					t.Logf("lint: %s", m)
				}
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
		})
	}
}

func TestCRDsIncluded(t *testing.T) {
	o := mustRender(t, "herald-system", nil, nil)
	for _, name := range []string{"loadbalancerippools.herald.dev", "l2announcementpolicies.herald.dev", "heraldnodes.herald.dev",
		"bgppeers.herald.dev", "bgpadvertisements.herald.dev", "bgpnodeoverrides.herald.dev"} {
		if o.find("CustomResourceDefinition", name) == nil {
			t.Errorf("rendered chart has no CRD %s", name)
		}
	}
}

func env(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func TestAgentLeastPrivilege(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    []string
		set      map[string]any
		netAdmin bool
	}{
		{"default (auto)", nil, nil, true},
		{"talos", []string{"values-talos.yaml"}, nil, true},
		{"dataplane none", nil, map[string]any{"dataplane": "none"}, false},
		{"dataplane nftables", nil, map[string]any{"dataplane": "nftables"}, true},
		{"dataplane auto", nil, map[string]any{"dataplane": "auto"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := mustRender(t, "herald-system", tc.files, tc.set)
			ds := get[appsv1.DaemonSet](t, o, "DaemonSet", "herald-agent")
			spec := ds.Spec.Template.Spec
			if !spec.HostNetwork {
				t.Error("agent: hostNetwork is not true")
			}
			if spec.HostPID || spec.HostIPC {
				t.Error("agent: hostPID/hostIPC set")
			}
			if spec.ServiceAccountName != "herald-agent" {
				t.Errorf("agent: serviceAccountName %q, want herald-agent", spec.ServiceAccountName)
			}
			if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
				t.Fatalf("agent: %d containers and %d init containers, want 1 and 0", len(spec.Containers), len(spec.InitContainers))
			}
			c := spec.Containers[0]
			sc := c.SecurityContext
			if sc == nil || sc.Capabilities == nil {
				t.Fatal("agent: no securityContext.capabilities")
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Error("agent: privileged")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("agent: allowPrivilegeEscalation is not false")
			}
			if !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("agent: capabilities.drop %v does not drop ALL", sc.Capabilities.Drop)
			}
			want := []corev1.Capability{"NET_RAW"}
			if tc.netAdmin {
				want = append(want, "NET_ADMIN")
			}
			got := slices.Clone(sc.Capabilities.Add)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("agent: capabilities.add %v, want %v", sc.Capabilities.Add, want)
			}
			for _, bad := range []corev1.Capability{"SYS_ADMIN", "SYS_MODULE", "ALL"} {
				if slices.Contains(sc.Capabilities.Add, bad) {
					t.Errorf("agent: capability %s added", bad)
				}
			}
			if e, ok := env(c, "NODE_NAME"); !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("agent: NODE_NAME is not spec.nodeName: %+v", e)
			}
			// The flag is always explicit: the binary's default is auto.
			wantFlag := "--dataplane=auto"
			if v, ok := tc.set["dataplane"]; ok {
				wantFlag = "--dataplane=" + v.(string)
			}
			if !slices.Contains(c.Args, wantFlag) {
				t.Errorf("agent: args %v lack %s", c.Args, wantFlag)
			}
			if !slices.Contains(c.Args, "--metrics-addr=127.0.0.1:9471") {
				t.Errorf("agent: args %v do not keep metrics on loopback", c.Args)
			}
			if c.LivenessProbe != nil || c.ReadinessProbe != nil {
				t.Error("agent: probes are on by default")
			}
			// The heartbeat keys come through the API (a watch), not a
			// volume: no Secret is mounted, nothing from the host either.
			for _, v := range spec.Volumes {
				if v.Secret != nil || v.Projected != nil || v.HostPath != nil {
					t.Errorf("agent: volume %s (%+v)", v.Name, v.VolumeSource)
				}
			}
			if len(c.VolumeMounts) != 0 {
				t.Errorf("agent: volume mounts %+v, want none", c.VolumeMounts)
			}
			if !slices.Contains(c.Args, "--heartbeat-secret=herald-heartbeat-key") {
				t.Errorf("agent: args %v lack --heartbeat-secret=herald-heartbeat-key", c.Args)
			}
			// The exclude label is honoured unless asked otherwise.
			if !slices.Contains(c.Args, "--ignore-exclude-label=false") {
				t.Errorf("agent: args %v lack --ignore-exclude-label=false", c.Args)
			}
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--key-file") {
					t.Errorf("agent: args hold %s", a)
				}
			}
			if e, ok := env(c, "POD_NAMESPACE"); !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
				t.Errorf("agent: POD_NAMESPACE is not metadata.namespace: %+v", e)
			}
		})
	}
}

func TestDataplaneValidated(t *testing.T) {
	_, err := render(t, "herald-system", readValues(t, nil, map[string]any{"dataplane": "ebpf"}))
	if err == nil || !strings.Contains(err.Error(), "dataplane must be none, nftables or auto") {
		t.Errorf("dataplane=ebpf: err = %v, want a refusal naming the allowed values", err)
	}
}

// heartbeatArgs returns the heartbeat flags of the controller and the agent.
func heartbeatArgs(t *testing.T, o objects) (controller, agent []string) {
	t.Helper()
	pick := func(args []string) []string {
		var out []string
		for _, a := range args {
			if strings.Contains(a, "heartbeat-secret") || strings.HasPrefix(a, "--key-file") {
				out = append(out, a)
			}
		}
		return out
	}
	deployments, daemonSets := o.ofKind("Deployment"), o.ofKind("DaemonSet")
	if len(deployments) != 1 || len(daemonSets) != 1 {
		t.Fatalf("%d Deployments and %d DaemonSets rendered, want 1 and 1", len(deployments), len(daemonSets))
	}
	d := get[appsv1.Deployment](t, o, "Deployment", deployments[0].GetName())
	ds := get[appsv1.DaemonSet](t, o, "DaemonSet", daemonSets[0].GetName())
	return pick(d.Spec.Template.Spec.Containers[0].Args), pick(ds.Spec.Template.Spec.Containers[0].Args)
}

// The chart renders no heartbeat key: the controller creates the Secret at
// run time (or the user does, with existingSecret). Both parts are told its
// name; only the controller may create it, and only without existingSecret.
func TestHeartbeatSecret(t *testing.T) {
	for _, tc := range []struct {
		name       string
		files      []string
		set        map[string]any
		controller []string
		agent      []string
	}{
		{"default: chart 0.1.0's name, created by the controller", nil, nil,
			[]string{"--heartbeat-secret=herald-heartbeat-key", "--create-heartbeat-secret=true"},
			[]string{"--heartbeat-secret=herald-heartbeat-key"}},
		{"talos", []string{"values-talos.yaml"}, nil,
			[]string{"--heartbeat-secret=herald-heartbeat-key", "--create-heartbeat-secret=true"},
			[]string{"--heartbeat-secret=herald-heartbeat-key"}},
		{"fullnameOverride", nil, map[string]any{"fullnameOverride": "lb"},
			[]string{"--heartbeat-secret=lb-heartbeat-key", "--create-heartbeat-secret=true"},
			[]string{"--heartbeat-secret=lb-heartbeat-key"}},
		{"secretName", nil, map[string]any{"heartbeat": map[string]any{"secretName": "hb"}},
			[]string{"--heartbeat-secret=hb", "--create-heartbeat-secret=true"},
			[]string{"--heartbeat-secret=hb"}},
		{"existingSecret: the controller creates nothing", nil, map[string]any{"heartbeat": map[string]any{"existingSecret": "my-key"}},
			[]string{"--heartbeat-secret=my-key", "--create-heartbeat-secret=false"},
			[]string{"--heartbeat-secret=my-key"}},
		{"existingSecret equal to secretName", nil, map[string]any{"heartbeat": map[string]any{"existingSecret": "my-key", "secretName": "my-key"}},
			[]string{"--heartbeat-secret=my-key", "--create-heartbeat-secret=false"},
			[]string{"--heartbeat-secret=my-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := mustRender(t, "herald-system", tc.files, tc.set)
			if s := o.ofKind("Secret"); len(s) != 0 {
				t.Errorf("the chart renders Secret %s", s[0].GetName())
			}
			ctl, agent := heartbeatArgs(t, o)
			if !slices.Equal(ctl, tc.controller) {
				t.Errorf("controller heartbeat args %v, want %v", ctl, tc.controller)
			}
			if !slices.Equal(agent, tc.agent) {
				t.Errorf("agent heartbeat args %v, want %v", agent, tc.agent)
			}
		})
	}

	for _, tc := range []struct {
		name string
		set  map[string]any
		want string
	}{
		{"two different names", map[string]any{"existingSecret": "a", "secretName": "b"}, "differ: set one of them"},
		{"invalid name", map[string]any{"secretName": "My_Key"}, "not a valid Secret name"},
		{"invalid existingSecret", map[string]any{"existingSecret": "-key"}, "not a valid Secret name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, "herald-system", readValues(t, nil, map[string]any{"heartbeat": tc.set}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("heartbeat %v: err = %v, want one saying %q", tc.set, err, tc.want)
			}
		})
	}
}

// TestRenderIsReproducible renders the chart twice with the same values:
// the output must be byte for byte the same, or every GitOps sync (Argo
// CD, Flux, `helm template | kubectl apply`) would change something — as
// the random heartbeat key of chart 0.1.0 did, splitting the agents.
func TestRenderIsReproducible(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		set   map[string]any
	}{
		{"default", nil, nil},
		{"talos", []string{"values-talos.yaml"}, nil},
		{"existingSecret", nil, map[string]any{"heartbeat": map[string]any{"existingSecret": "my-key"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals := readValues(t, tc.files, tc.set)
			first, err := renderManifest(t, "herald-system", vals)
			if err != nil {
				t.Fatal(err)
			}
			second, err := renderManifest(t, "herald-system", readValues(t, tc.files, tc.set))
			if err != nil {
				t.Fatal(err)
			}
			if first != second {
				a, b := strings.Split(first, "\n"), strings.Split(second, "\n")
				for i := range min(len(a), len(b)) {
					if a[i] != b[i] {
						t.Fatalf("two renders differ at line %d:\n%s\n%s", i+1, a[i], b[i])
					}
				}
				t.Fatalf("two renders differ in length: %d and %d lines", len(a), len(b))
			}
			if strings.Contains(first, "kind: Secret") {
				t.Error("the rendered chart holds a Secret")
			}
		})
	}
}

// nonReproducible are template functions whose result changes from one
// render to the next, or differs between `helm install` and `helm
// template` (lookup returns nothing without a cluster). A render-twice
// test cannot see lookup; this check can.
var nonReproducible = regexp.MustCompile(`\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|randInt|uuidv4|now|genCA|genCAWithKey|genPrivateKey|genSelfSignedCert|genSelfSignedCertWithKey|genSignedCert|genSignedCertWithKey|htpasswd|bcrypt|derivePassword|shuffle)\b`)

func TestTemplatesAreReproducible(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("templates: %v, %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Only inside actions: comments and YAML may say "lookup".
		for _, action := range regexp.MustCompile(`(?s)\{\{.*?\}\}`).FindAllString(string(b), -1) {
			if strings.HasPrefix(strings.TrimLeft(action, "{- "), "/*") {
				continue
			}
			if m := nonReproducible.FindString(action); m != "" {
				t.Errorf("%s calls %s (%s): the chart must render the same every time", f, m, action)
			}
		}
	}
}

// TestAgentRollout checks the rolling update waits for each new agent to
// settle before the next node's agent goes (see bench/lab's rolling
// restart).
func TestAgentRollout(t *testing.T) {
	ds := get[appsv1.DaemonSet](t, mustRender(t, "herald-system", nil, nil), "DaemonSet", "herald-agent")
	if ds.Spec.MinReadySeconds != 5 {
		t.Errorf("agent minReadySeconds %d, want 5", ds.Spec.MinReadySeconds)
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("agent rolling update %+v, want maxUnavailable 1", ru)
	}
}

func TestController(t *testing.T) {
	o := mustRender(t, "herald-system", nil, nil)
	d := get[appsv1.Deployment](t, o, "Deployment", "herald-controller")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("controller replicas %v, want 2", d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	if spec.HostNetwork {
		t.Error("controller: hostNetwork by default")
	}
	if spec.ServiceAccountName != "herald-controller" {
		t.Errorf("controller: serviceAccountName %q", spec.ServiceAccountName)
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "controller" {
		t.Errorf("controller args %v", c.Args)
	}
	if c.Image != "ghcr.io/herald-lb/herald:0.1.0" {
		t.Errorf("controller image %q, want the chart's appVersion", c.Image)
	}
	if !slices.Contains(c.Args, "--metrics-addr=127.0.0.1:9470") {
		t.Errorf("controller args %v do not keep metrics on loopback", c.Args)
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if e, ok := env(c, name); !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("controller: %s is not the downward API's %s: %+v", name, path, e)
		}
	}
	if c.LivenessProbe != nil || c.ReadinessProbe != nil {
		t.Error("controller: probes are on by default")
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Errorf("controller: securityContext %+v, want every capability dropped", sc)
	}
	if ps := spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Error("controller: not runAsNonRoot")
	}
	if len(o.ofKind("Namespace")) != 0 {
		t.Error("a Namespace is rendered by default")
	}

	// Probes on request, on the port of the metrics address.
	o = mustRender(t, "herald-system", nil, map[string]any{
		"probes":     map[string]any{"enabled": true},
		"controller": map[string]any{"metricsAddr": "0.0.0.0:9470"},
	})
	c = get[appsv1.Deployment](t, o, "Deployment", "herald-controller").Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 9470 {
		t.Errorf("controller readiness probe %+v, want GET /readyz on 9470", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("controller liveness probe %+v, want GET /healthz", c.LivenessProbe)
	}
}

func TestTalosPreset(t *testing.T) {
	o := mustRender(t, "kube-system", []string{"values-talos.yaml"}, nil)
	ns := get[corev1.Namespace](t, o, "Namespace", "herald-system")
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace label pod-security.kubernetes.io/enforce = %q, want privileged", got)
	}
	for _, u := range o.all {
		if u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition" ||
			u.GetKind() == "ClusterRole" || u.GetKind() == "ClusterRoleBinding" {
			continue
		}
		if u.GetNamespace() != "herald-system" {
			t.Errorf("%s %s is in namespace %q, want herald-system", u.GetKind(), u.GetName(), u.GetNamespace())
		}
	}
	for _, crb := range o.ofKind("ClusterRoleBinding") {
		b := get[rbacv1.ClusterRoleBinding](t, o, "ClusterRoleBinding", crb.GetName())
		for _, s := range b.Subjects {
			if s.Namespace != "herald-system" {
				t.Errorf("ClusterRoleBinding %s: subject %s in namespace %q", b.Name, s.Name, s.Namespace)
			}
		}
	}
	ds := get[appsv1.DaemonSet](t, o, "DaemonSet", "herald-agent")
	d := get[appsv1.Deployment](t, o, "Deployment", "herald-controller")
	if !d.Spec.Template.Spec.HostNetwork {
		t.Error("talos: the controller cannot reach KubePrism on the node's loopback without hostNetwork")
	}
	for _, c := range []corev1.Container{ds.Spec.Template.Spec.Containers[0], d.Spec.Template.Spec.Containers[0]} {
		for name, want := range map[string]string{"KUBERNETES_SERVICE_HOST": "localhost", "KUBERNETES_SERVICE_PORT": "7445"} {
			if e, ok := env(c, name); !ok || e.Value != want {
				t.Errorf("talos: %s: %s = %q, want %q", c.Name, name, e.Value, want)
			}
		}
		if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "SYS_MODULE") {
			t.Errorf("talos: %s adds SYS_MODULE", c.Name)
		}
	}
}

// rule is one granted (apiGroup, resource, verb), on the object name only
// when name is set (a rule with resourceNames).
type rule struct{ group, resource, verb, name string }

func (r rule) String() string {
	out := r.verb + " " + r.resource
	if r.group != "" {
		out += "." + r.group
	}
	if r.name != "" {
		out += " " + strconv.Quote(r.name)
	}
	return out
}

// flatten expands policy rules into sorted single grants, one per
// resourceName when a rule has them; non-resource URLs are reported as
// errors (the chart uses none).
func flatten(t *testing.T, what string, rules []rbacv1.PolicyRule) []rule {
	t.Helper()
	var out []rule
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("%s: unexpected nonResourceURLs in %+v", what, r)
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, rule{g, res, v, n})
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// grants are verbs on every object of a resource.
func grants(group, resource string, verbs ...string) []rule {
	return grantsOn(group, resource, "", verbs...)
}

// grantsOn are verbs on the one object name of a resource (resourceNames).
func grantsOn(group, resource, name string, verbs ...string) []rule {
	var out []rule
	for _, v := range verbs {
		out = append(out, rule{group, resource, v, name})
	}
	return out
}

// role is the RBAC one Role or ClusterRole must grant, and to whom.
type role struct {
	kind, name, subject string
	rules               [][]rule
}

// wantRBAC is the RBAC each part gets, rendered with release name herald:
// exactly what it uses (an extra verb fails). secret is the heartbeat key
// Secret's name; create is false with heartbeat.existingSecret.
func wantRBAC(secret string, create bool, passwords ...string) []role {
	controllerSecret := [][]rule{grantsOn("", "secrets", secret, "get")}
	if create {
		// It watches the Secret to create it again when it is deleted;
		// create is not by name: the API server cannot restrict a create
		// by name.
		controllerSecret = [][]rule{
			grantsOn("", "secrets", secret, "get", "list", "watch"),
			grants("", "secrets", "create"),
		}
	}
	roles := []role{
		{"ClusterRole", "herald-controller", "herald-controller", [][]rule{
			grants("", "services", "get", "list", "watch", "patch"),
			grants("", "services/status", "patch"),
			grants("", "nodes", "get", "list", "watch"),
			grants("discovery.k8s.io", "endpointslices", "list"),
			grants("herald.dev", "loadbalancerippools", "get", "list", "watch"),
			grants("herald.dev", "loadbalancerippools/status", "update"),
			grants("herald.dev", "l2announcementpolicies", "get", "list", "watch"),
			grants("herald.dev", "l2announcementpolicies/status", "update"),
			grants("herald.dev", "heraldnodes", "get", "list", "watch"),
			grants("", "events", "create", "patch"),
		}},
		{"Role", "herald-controller-leader-election", "herald-controller", [][]rule{
			grants("coordination.k8s.io", "leases", "get", "create", "update"),
		}},
		{"Role", "herald-controller-heartbeat-key", "herald-controller", controllerSecret},
		{"ClusterRole", "herald-agent", "herald-agent", [][]rule{
			grants("", "services", "get", "list", "watch"),
			grants("discovery.k8s.io", "endpointslices", "get", "list", "watch"),
			grants("", "nodes", "get", "list", "watch"),
			grants("herald.dev", "l2announcementpolicies", "get", "list", "watch"),
			grants("herald.dev", "loadbalancerippools", "get", "list", "watch"),
			grants("herald.dev", "bgppeers", "get", "list", "watch"),
			grants("herald.dev", "bgpadvertisements", "get", "list", "watch"),
			grants("herald.dev", "bgpnodeoverrides", "get", "list", "watch"),
			grants("herald.dev", "heraldnodes", "get", "create"),
			grants("herald.dev", "heraldnodes/status", "patch"),
			grants("", "events", "create", "patch"),
		}},
		// Watching the one Secret: an informer lists and watches with a
		// metadata.name field selector, authorized by resourceNames.
		{"Role", "herald-agent-heartbeat-key", "herald-agent", [][]rule{
			grantsOn("", "secrets", secret, "get", "list", "watch"),
		}},
	}
	// BGPPeers' password Secrets, each by name (chart value
	// bgp.passwordSecrets): only when there are some.
	if len(passwords) > 0 {
		var rules [][]rule
		for _, p := range passwords {
			rules = append(rules, grantsOn("", "secrets", p, "get", "list", "watch"))
		}
		roles = append(roles, role{"Role", "herald-agent-bgp-passwords", "herald-agent", rules})
	}
	return roles
}

// defaultRBAC is wantRBAC for the chart's default values.
func defaultRBAC() []role { return wantRBAC("herald-heartbeat-key", true) }

func TestRBACRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		set   map[string]any
		want  []role
	}{
		{"default", nil, nil, defaultRBAC()},
		{"talos", []string{"values-talos.yaml"}, nil, defaultRBAC()},
		{"secretName", nil, map[string]any{"heartbeat": map[string]any{"secretName": "hb"}}, wantRBAC("hb", true)},
		// A Secret the user manages: no create verb at all.
		{"existingSecret", nil, map[string]any{"heartbeat": map[string]any{"existingSecret": "my-key"}}, wantRBAC("my-key", false)},
		// BGP passwords: the agent may read those Secrets, by name.
		{"bgp passwords", nil, map[string]any{"bgp": map[string]any{"passwordSecrets": []any{"tor-password", "spine-password"}}},
			wantRBAC("herald-heartbeat-key", true, "tor-password", "spine-password")},
	} {
		o := mustRender(t, "herald-system", tc.files, tc.set)
		// Plus the unbound view ClusterRole (TestViewClusterRole).
		if n, want := len(o.ofKind("ClusterRole"))+len(o.ofKind("Role")), len(tc.want)+1; n != want {
			t.Errorf("%s: %d roles rendered, want %d", tc.name, n, want)
		}
		if n, want := len(o.ofKind("ClusterRoleBinding"))+len(o.ofKind("RoleBinding")), len(tc.want); n != want {
			t.Errorf("%s: %d bindings rendered, want %d", tc.name, n, want)
		}
		for _, w := range tc.want {
			t.Run(fmt.Sprintf("%s/%s/%s", tc.name, w.kind, w.name), func(t *testing.T) {
				var got []rule
				if w.kind == "ClusterRole" {
					got = flatten(t, w.name, get[rbacv1.ClusterRole](t, o, w.kind, w.name).Rules)
				} else {
					r := get[rbacv1.Role](t, o, w.kind, w.name)
					if r.Namespace != "herald-system" {
						t.Errorf("Role %s in namespace %q, want herald-system", w.name, r.Namespace)
					}
					got = flatten(t, w.name, r.Rules)
				}
				var want []rule
				for _, r := range w.rules {
					want = append(want, r...)
				}
				sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
				for _, r := range got {
					if !slices.Contains(want, r) {
						t.Errorf("%s %s grants %s, which Herald does not use", w.kind, w.name, r)
					}
				}
				for _, r := range want {
					if !slices.Contains(got, r) {
						t.Errorf("%s %s does not grant %s", w.kind, w.name, r)
					}
				}
				// Bound to the part's ServiceAccount, and nothing else.
				bindingKind := w.kind + "Binding"
				var subjects []rbacv1.Subject
				var ref rbacv1.RoleRef
				if w.kind == "ClusterRole" {
					b := get[rbacv1.ClusterRoleBinding](t, o, bindingKind, w.name)
					subjects, ref = b.Subjects, b.RoleRef
				} else {
					b := get[rbacv1.RoleBinding](t, o, bindingKind, w.name)
					subjects, ref = b.Subjects, b.RoleRef
				}
				if ref.Kind != w.kind || ref.Name != w.name {
					t.Errorf("%s %s refers to %s %s", bindingKind, w.name, ref.Kind, ref.Name)
				}
				if len(subjects) != 1 || subjects[0].Kind != "ServiceAccount" || subjects[0].Name != w.subject || subjects[0].Namespace != "herald-system" {
					t.Errorf("%s %s subjects %+v, want ServiceAccount herald-system/%s", bindingKind, w.name, subjects, w.subject)
				}
			})
		}
		// Whatever else changes, Secrets: only the heartbeat one is
		// readable, by name, and no role may update or delete a Secret.
		for _, u := range append(o.ofKind("ClusterRole"), o.ofKind("Role")...) {
			var rules []rbacv1.PolicyRule
			if u.GetKind() == "ClusterRole" {
				rules = get[rbacv1.ClusterRole](t, o, u.GetKind(), u.GetName()).Rules
			} else {
				rules = get[rbacv1.Role](t, o, u.GetKind(), u.GetName()).Rules
			}
			for _, r := range flatten(t, u.GetName(), rules) {
				if r.resource != "secrets" && r.resource != "*" {
					continue
				}
				if r.verb != "create" && r.name == "" {
					t.Errorf("%s: %s %s grants %s on every Secret", tc.name, u.GetKind(), u.GetName(), r.verb)
				}
				if r.verb != "get" && r.verb != "list" && r.verb != "watch" && r.verb != "create" {
					t.Errorf("%s: %s %s grants %s", tc.name, u.GetKind(), u.GetName(), r)
				}
			}
		}
	}
}

// TestDoctorPermissionsMatchChart: `herald doctor` checks each part's
// ServiceAccount for kube.ControllerPermissions and kube.AgentPermissions;
// they are exactly what the chart grants, so the doctor neither misses a
// grant the chart has nor asks for one it lacks.
func TestDoctorPermissionsMatchChart(t *testing.T) {
	for _, tc := range []struct {
		secret    string
		create    bool
		passwords []string
	}{{"herald-heartbeat-key", true, nil}, {"my-key", false, []string{"tor-password"}}} {
		want := map[string][]rule{}
		for _, r := range wantRBAC(tc.secret, tc.create, tc.passwords...) {
			for _, rs := range r.rules {
				want[r.subject] = append(want[r.subject], rs...)
			}
		}
		for subject, ps := range map[string][]kube.Permission{
			"herald-controller": kube.ControllerPermissions(tc.secret, tc.create),
			"herald-agent":      kube.AgentPermissions(tc.secret, tc.passwords...),
		} {
			var got []rule
			for _, p := range ps {
				res := p.Resource
				if p.Subresource != "" {
					res += "/" + p.Subresource
				}
				got = append(got, rule{p.Group, res, p.Verb, p.Name})
			}
			less := func(a, b rule) int { return strings.Compare(a.String(), b.String()) }
			slices.SortFunc(got, less)
			w := slices.Clone(want[subject])
			slices.SortFunc(w, less)
			if !slices.Equal(got, w) {
				t.Errorf("secret %s create %v: %s: doctor checks\n%v\nthe chart grants\n%v", tc.secret, tc.create, subject, got, w)
			}
		}
	}
	if g := heraldv1.GroupVersion.Group; g != "herald.dev" {
		t.Errorf("API group %s: the chart's roles name herald.dev", g)
	}
}

// TestViewClusterRole: the chart's herald-view ClusterRole grants exactly
// kube.ViewPermissions, is bound to nobody, and can be left out.
func TestViewClusterRole(t *testing.T) {
	o := mustRender(t, "herald-system", nil, nil)
	got := flatten(t, "herald-view", get[rbacv1.ClusterRole](t, o, "ClusterRole", "herald-view").Rules)
	var want []rule
	for _, p := range kube.ViewPermissions() {
		want = append(want, rule{p.Group, p.Resource, p.Verb, p.Name})
	}
	less := func(a, b rule) int { return strings.Compare(a.String(), b.String()) }
	slices.SortFunc(got, less)
	slices.SortFunc(want, less)
	if !slices.Equal(got, want) {
		t.Errorf("herald-view grants\n%v\nthe operator commands read\n%v", got, want)
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, b := range o.ofKind(kind) {
			var rb rbacv1.ClusterRoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &rb); err != nil {
				t.Fatal(err)
			}
			if rb.RoleRef.Name == "herald-view" {
				t.Errorf("%s %s binds herald-view; the chart binds it to nobody", kind, b.GetName())
			}
		}
	}
	off := mustRender(t, "herald-system", nil, map[string]any{"rbac": map[string]any{"viewClusterRole": false}})
	for _, r := range off.ofKind("ClusterRole") {
		if r.GetName() == "herald-view" {
			t.Errorf("rbac.viewClusterRole=false still renders herald-view")
		}
	}
}
