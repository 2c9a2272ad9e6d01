package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/krew/pkg/constants"
	"sigs.k8s.io/krew/pkg/index"
	"sigs.k8s.io/yaml"
)

// validate checks a manifest as krew's own validation does (its package
// is internal in the released krew v0.4.3): API version and kind, a safe
// name, a description, a semantic version with a leading v, and per
// platform a URI, a SHA-256, a bin, file operations and an os/arch
// selector.
func validate(t *testing.T, p index.Plugin) {
	t.Helper()
	if p.APIVersion != constants.CurrentAPIVersion || p.Kind != constants.PluginKind {
		t.Errorf("apiVersion %q kind %q", p.APIVersion, p.Kind)
	}
	if !regexp.MustCompile(`^[\w-]+$`).MatchString(p.Name) || p.Spec.ShortDescription == "" {
		t.Errorf("name %q, short description %q", p.Name, p.Spec.ShortDescription)
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(p.Spec.Version) {
		t.Errorf("version %q is not semantic with a leading v", p.Spec.Version)
	}
	if len(p.Spec.Platforms) == 0 {
		t.Fatal("no platforms")
	}
	for _, pl := range p.Spec.Platforms {
		if pl.URI == "" || !regexp.MustCompile(`^[a-f0-9]{64}$`).MatchString(pl.Sha256) || pl.Bin == "" || len(pl.Files) == 0 || pl.Selector == nil {
			t.Errorf("platform %+v is badly constructed", pl)
			continue
		}
		for k := range pl.Selector.MatchLabels {
			if k != "os" && k != "arch" {
				t.Errorf("selector key %q", k)
			}
		}
	}
}

// The plugin for this machine's platform: the archive holds an
// executable kubectl-herald of the release's version and the licence,
// the manifest names it with its SHA-256, and a second build is identical.
func TestBuild(t *testing.T) {
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	build := func() (string, []string) {
		out := t.TempDir()
		files, err := Build(t.Context(), Options{Src: src, Version: "v0.0.0-test.1", Out: out, Platforms: []string{platform},
			URLBase: "https://example.invalid/v0.0.0-test.1", SourceDateEpoch: time.Unix(1764547200, 0).UTC(), Go: "go"})
		if err != nil {
			t.Fatal(err)
		}
		return out, files
	}
	_, files := build()
	name := "kubectl-herald_" + runtime.GOOS + "_" + runtime.GOARCH + ".tar.gz"
	if len(files) != 2 || filepath.Base(files[0]) != name || filepath.Base(files[1]) != "herald.yaml" {
		t.Fatalf("files %v", files)
	}
	archive, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	var p index.Plugin
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		t.Fatalf("manifest: %v\n%s", err, raw)
	}
	validate(t, p)
	if strings.Contains(string(raw), "creationTimestamp") {
		t.Errorf("manifest has a creationTimestamp:\n%s", raw)
	}
	sum := sha256.Sum256(archive)
	pl := p.Spec.Platforms[0]
	if pl.Sha256 != hex.EncodeToString(sum[:]) || pl.URI != "https://example.invalid/v0.0.0-test.1/"+name ||
		pl.Selector.MatchLabels["os"] != runtime.GOOS || pl.Selector.MatchLabels["arch"] != runtime.GOARCH || pl.Bin != "kubectl-herald" {
		t.Errorf("platform %+v does not describe %s (sha256 %x)", pl, name, sum)
	}

	// Unpack as krew does and run the plugin.
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	dir := t.TempDir()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(time.Unix(1764547200, 0)) || h.Uid != 0 {
			t.Errorf("%s: time %s uid %d", h.Name, h.ModTime, h.Uid)
		}
		f, err := os.OpenFile(filepath.Join(dir, h.Name), os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if strings.Join(names, ",") != "kubectl-herald,LICENSE" {
		t.Errorf("archive holds %v", names)
	}
	v, err := exec.Command(filepath.Join(dir, "kubectl-herald"), "version").Output()
	if err != nil || strings.TrimSpace(string(v)) != "v0.0.0-test.1" {
		t.Errorf("kubectl-herald version: %q, %v", v, err)
	}
	help, err := exec.Command(filepath.Join(dir, "kubectl-herald"), "--help").Output()
	if err != nil || !strings.Contains(string(help), "kubectl herald") {
		t.Errorf("kubectl-herald --help does not present itself as kubectl herald: %v\n%s", err, help)
	}

	// Reproducible: a second build is byte for byte the same.
	out2, _ := build()
	again, err := os.ReadFile(filepath.Join(out2, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(archive, again) {
		t.Errorf("two builds differ")
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	for _, o := range []Options{
		{Src: "../..", Version: "0.2.0", Out: t.TempDir(), Platforms: []string{"linux/amd64"}},
		{Src: "../..", Version: "v0.2.0", Out: t.TempDir(), Platforms: []string{"linux"}},
	} {
		if _, err := Build(t.Context(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
