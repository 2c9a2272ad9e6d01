// Package crd holds Herald's CustomResourceDefinitions as controller-gen
// writes them (make generate), embedded so that a binary knows the CRDs it
// was built with: `herald doctor` compares them with the cluster's.
package crd

import (
	"embed"
	"fmt"
	"io/fs"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// Definitions returns the CRDs, sorted by file name.
func Definitions() ([]apiextensionsv1.CustomResourceDefinition, error) {
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list embedded CRDs: %w", err)
	}
	out := make([]apiextensionsv1.CustomResourceDefinition, 0, len(names))
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read embedded CRD %s: %w", n, err)
		}
		var c apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return nil, fmt.Errorf("decode embedded CRD %s: %w", n, err)
		}
		out = append(out, c)
	}
	return out, nil
}
