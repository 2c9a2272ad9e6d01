package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// crdGVR is the resource of CustomResourceDefinitions.
func crdGVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
}

// installCRDs creates or updates the CRDs found in dirs and waits until each
// is established and served by discovery.
func (e *Env) installCRDs(ctx context.Context, dirs []string) error {
	var crds []*unstructured.Unstructured
	for _, dir := range dirs {
		found, err := readCRDs(dir)
		if err != nil {
			return err
		}
		crds = append(crds, found...)
	}
	if len(crds) == 0 {
		return nil
	}
	client, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	api := client.Resource(crdGVR())
	for _, crd := range crds {
		if err := applyCRD(ctx, api, crd); err != nil {
			return err
		}
	}
	for _, crd := range crds {
		if err := e.waitCRD(ctx, api, crd); err != nil {
			return err
		}
	}
	e.log.Debug("testenv: installed CRDs", "count", len(crds))
	return nil
}

// readCRDs decodes the CustomResourceDefinitions in the *.yaml and *.yml
// files of dir, in file name order. A missing directory holds none.
func readCRDs(dir string) ([]*unstructured.Unstructured, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read CRD directory: %w", err)
	}
	var crds []*unstructured.Unstructured
	for _, entry := range entries {
		name := entry.Name()
		if entry.IsDir() || (!strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml")) {
			continue
		}
		found, err := decodeCRDs(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		crds = append(crds, found...)
	}
	return crds, nil
}

// decodeCRDs decodes the CustomResourceDefinitions of a (multi-document)
// YAML file, skipping empty documents and other kinds.
func decodeCRDs(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open CRD file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	var crds []*unstructured.Unstructured
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return crds, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GroupVersionKind().GroupKind() != (schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}) {
			continue
		}
		if u.GetName() == "" {
			return nil, fmt.Errorf("%s: CustomResourceDefinition without a name", path)
		}
		crds = append(crds, u)
	}
}

// applyCRD creates crd, or replaces the existing one of the same name.
func applyCRD(ctx context.Context, api dynamic.ResourceInterface, crd *unstructured.Unstructured) error {
	_, err := api.Create(ctx, crd, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create CRD %s: %w", crd.GetName(), err)
	}
	existing, err := api.Get(ctx, crd.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get CRD %s: %w", crd.GetName(), err)
	}
	update := crd.DeepCopy()
	update.SetResourceVersion(existing.GetResourceVersion())
	if _, err := api.Update(ctx, update, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update CRD %s: %w", crd.GetName(), err)
	}
	return nil
}

// waitCRD waits until crd is Established and each served version lists its
// resource in discovery, so that REST mappers find it.
func (e *Env) waitCRD(ctx context.Context, api dynamic.ResourceInterface, crd *unstructured.Unstructured) error {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var served []string
	for _, v := range versions {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		name, _, _ := unstructured.NestedString(m, "name")
		if ok, _, _ := unstructured.NestedBool(m, "served"); ok && name != "" {
			served = append(served, name)
		}
	}

	var last string
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		got, err := api.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if !crdCondition(got, "Established") {
			last = "not Established"
			return false, nil
		}
		for _, v := range served {
			list, err := e.clientset.Discovery().ServerResourcesForGroupVersion(group + "/" + v)
			if err != nil {
				last = fmt.Sprintf("discovery of %s/%s: %v", group, v, err)
				return false, nil
			}
			if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == plural }) {
				last = fmt.Sprintf("%s not yet in discovery of %s/%s", plural, group, v)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s: %w (%s)", crd.GetName(), err, last)
	}
	return nil
}

// crdCondition reports whether the CRD has condition typ with status True.
func crdCondition(crd *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}
