package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/migrate"
)

// peerExamples are the peers' documented configurations, written for
// internal/migrate's tests.
func peerExample(name string) string { return filepath.Join("..", "migrate", "testdata", name) }

// decodeManifests reads import's output into Herald objects.
func decodeManifests(t *testing.T, out string) []client.Object {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var objs []client.Object
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, out)
		}
		if u.Object == nil {
			continue
		}
		var obj client.Object
		switch u.GetKind() {
		case "LoadBalancerIPPool":
			obj = &heraldv1.LoadBalancerIPPool{}
		case "L2AnnouncementPolicy":
			obj = &heraldv1.L2AnnouncementPolicy{}
		default:
			t.Fatalf("output holds a %s", u.GetKind())
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
			t.Fatalf("decode %s: %v", u.GetKind(), err)
		}
		objs = append(objs, obj)
	}
}

// TestImportFiles: herald import translates the peers' documented
// configurations into objects the real API server admits (every CEL and
// OpenAPI rule of Herald's CRDs, server-side dry run), lists what it could
// not translate, exits 1 only then, and reads no API for files.
func TestImportFiles(t *testing.T) {
	h := newCLIHarness(t)
	cases := []struct {
		from, file string
		pools      int
		policies   int
		lost       bool
	}{
		{"metallb", "metallb-l2.yaml", 1, 1, false},
		{"metallb", "metallb-advanced.yaml", 2, 2, true},
		{"cilium", "cilium-l2.yaml", 2, 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			r := h.run("import", "--from", tc.from, peerExample(tc.file))
			if tc.lost != errors.Is(r.err, ErrNotTranslated) || (!tc.lost && r.err != nil) {
				t.Fatalf("err %v, want not-translated %v\nstderr:\n%s", r.err, tc.lost, r.stderr)
			}
			if len(r.requests) != 0 {
				t.Errorf("reading files made API requests: %v", r.requests)
			}
			objs := decodeManifests(t, r.stdout)
			pools, policies := 0, 0
			for _, o := range objs {
				if _, ok := o.(*heraldv1.LoadBalancerIPPool); ok {
					pools++
				} else {
					policies++
				}
				if err := h.cl.Create(t.Context(), o, client.DryRunAll); err != nil {
					t.Errorf("the API server refuses %s %s: %v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
				}
			}
			if pools != tc.pools || policies != tc.policies {
				t.Errorf("%d pools and %d policies, want %d and %d\n%s", pools, policies, tc.pools, tc.policies, r.stdout)
			}
			if tc.lost && !strings.Contains(r.stderr, "NOT TRANSLATED") {
				t.Errorf("stderr does not list what was not translated:\n%s", r.stderr)
			}
			if !tc.lost && !strings.Contains(r.stderr, "nothing left out") {
				t.Errorf("stderr:\n%s", r.stderr)
			}
			t.Logf("stderr:\n%s", r.stderr)
		})
	}

	// Standard input, and errors a user makes.
	in, err := os.ReadFile(peerExample("metallb-l2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	root := newRoot("herald", inspectHooks{})
	var out, errOut bytes.Buffer
	root.SetIn(bytes.NewReader(in))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"import", "--from", "metallb", "-"})
	if err := root.ExecuteContext(t.Context()); err != nil || len(decodeManifests(t, out.String())) != 2 {
		t.Errorf("import from standard input: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, args := range [][]string{
		{"import", peerExample("metallb-l2.yaml")},
		{"import", "--from", "kube-vip", peerExample("metallb-l2.yaml")},
		{"import", "--from", "metallb"},
		{"import", "--from", "metallb", "--cluster", peerExample("metallb-l2.yaml")},
		{"import", "--from", "metallb", "no-such-file.yaml"},
	} {
		if r := h.run(args...); r.err == nil || errors.Is(r.err, ErrNotTranslated) {
			t.Errorf("%v: err %v, want a usage error", args, r.err)
		}
	}
}

// TestImportCluster: --cluster lists the peer's objects from the API
// server (one LIST per resource it serves) and translates them exactly as
// the same objects read from files.
func TestImportCluster(t *testing.T) {
	h := newCLIHarness(t)
	env := shared.Env(t)
	dc, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := []string{"--kubeconfig", env.KubeconfigPath}

	// Before the peer's CRDs exist, --cluster says so.
	if r := h.run(append([]string{"import", "--from", "cilium", "--cluster"}, kubeconfig...)...); r.err == nil || !strings.Contains(r.err.Error(), "installed") {
		t.Fatalf("--cluster without Cilium's CRDs: err %v", r.err)
	}

	crds := readUnstructured(t, filepath.Join("testdata", "peer-crds.yaml"))
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		if _, err := dc.Resource(crdGVR).Create(t.Context(), c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range crds {
		waitEstablished(t, dc, crdGVR, c.GetName())
	}
	if _, err := h.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "metallb-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	resources := map[string]string{
		"IPAddressPool": "ipaddresspools", "L2Advertisement": "l2advertisements",
		"CiliumLoadBalancerIPPool": "ciliumloadbalancerippools", "CiliumL2AnnouncementPolicy": "ciliuml2announcementpolicies",
	}
	for _, tc := range []struct{ from, file string }{{"metallb", "metallb-advanced.yaml"}, {"cilium", "cilium-l2.yaml"}} {
		t.Run(tc.from, func(t *testing.T) {
			// What the stand-in CRDs serve: every object of the example but
			// BGP, at the version they serve.
			var served []*unstructured.Unstructured
			for _, o := range readUnstructured(t, peerExample(tc.file)) {
				res, ok := resources[o.GetKind()]
				if !ok {
					continue
				}
				gv, _ := schema.ParseGroupVersion(o.GetAPIVersion())
				version := map[string]string{"metallb.io": "v1beta1", "cilium.io": "v2alpha1"}[gv.Group]
				o.SetAPIVersion(gv.Group + "/" + version)
				gvr := schema.GroupVersionResource{Group: gv.Group, Version: version, Resource: res}
				var ri dynamic.ResourceInterface = dc.Resource(gvr)
				if ns := o.GetNamespace(); ns != "" {
					ri = dc.Resource(gvr).Namespace(ns)
				}
				if _, err := ri.Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				served = append(served, o)
			}
			var file bytes.Buffer
			for _, o := range served {
				data, err := o.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				file.Write(data)
				file.WriteString("\n")
			}
			path := filepath.Join(t.TempDir(), "served.json")
			if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			fromFile := h.run("import", "--from", tc.from, path)
			fromCluster := h.run(append([]string{"import", "--from", tc.from, "--cluster"}, kubeconfig...)...)
			if !errors.Is(fromFile.err, ErrNotTranslated) && fromFile.err != nil {
				t.Fatal(fromFile.err)
			}
			if fromCluster.stdout == "" || fromCluster.stdout != fromFile.stdout || fromCluster.stderr != fromFile.stderr {
				t.Errorf("--cluster and files differ:\n--cluster:\n%s%s\nfiles:\n%s%s", fromCluster.stdout, fromCluster.stderr, fromFile.stdout, fromFile.stderr)
			}
			// One LIST per resource and version tried; nothing else.
			src, err := migrate.ParseSource(tc.from)
			if err != nil {
				t.Fatal(err)
			}
			tries := 0
			for _, r := range peerResources[src] {
				tries += len(r.versions)
			}
			for _, req := range fromCluster.requests {
				if !strings.HasPrefix(req, "GET /apis/"+string(map[string]string{"metallb": "metallb.io", "cilium": "cilium.io"}[tc.from])+"/") {
					t.Errorf("request %s", req)
				}
			}
			if n := len(fromCluster.requests); n == 0 || n > tries {
				t.Errorf("%d requests, want one LIST per resource (at most %d tries): %v", n, tries, fromCluster.requests)
			}
			t.Logf("--cluster requests: %v", fromCluster.requests)
		})
	}
}

func readUnstructured(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if u.Object != nil {
			out = append(out, u)
		}
	}
}

func waitEstablished(t *testing.T, dc dynamic.Interface, gvr schema.GroupVersionResource, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u, err := dc.Resource(gvr).Get(t.Context(), name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			if slices.ContainsFunc(conds, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Established" && m["status"] == "True"
			}) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("CRD %s not established after 30 s", name)
}
