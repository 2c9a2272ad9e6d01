package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"sigs.k8s.io/yaml"

	"github.com/herald-lb/herald/internal/testrequire"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantTag string
		wantErr string
	}{
		{args: []string{"-layout", "bin/image", "-version", "v0.1.0"}, wantTag: "0.1.0"},
		{args: []string{"-push", "ghcr.io/herald-lb/herald:x", "-version", "v0.1.0", "-tag", "edge"}, wantTag: "edge"},
		{args: []string{"-layout", "bin/image", "-version", "1658719-dirty"}, wantTag: "1658719-dirty"},
		{args: []string{"-version", "v0.1.0"}, wantErr: "nothing to do"},
		{args: []string{"-tarball", "x.tar", "-push", "r/x:y"}, wantErr: "give -layout too"},
		{args: []string{"-layout", "x", "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		o, err := parseFlags(tt.args)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || o.tag != tt.wantTag):
			t.Errorf("parseFlags(%q) = tag %q, %v; want tag %q", tt.args, o.tag, err, tt.wantTag)
		}
	}
}

func TestParseEpoch(t *testing.T) {
	if got, err := parseEpoch("1767225600"); err != nil || !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("parseEpoch(1767225600) = %s, %v", got, err)
	}
	for _, bad := range []string{"", "yesterday", "-5", "0"} {
		if _, err := parseEpoch(bad); err == nil {
			t.Errorf("parseEpoch(%q): no error", bad)
		}
	}
}

func TestParsePlatforms(t *testing.T) {
	got, err := parsePlatforms("linux/amd64, linux/arm64")
	if err != nil || len(got) != 2 || got[0].String() != "linux/amd64" || got[1].String() != "linux/arm64" {
		t.Errorf("parsePlatforms = %v, %v", got, err)
	}
	if platformList(got) != "linux/amd64,linux/arm64" {
		t.Errorf("platformList = %q", platformList(got))
	}
}

func TestWriteLayoutRefusesOtherDirectories(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeLayout(dir, nil, "x"); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Fatalf("writeLayout over a directory that is no layout = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Fatalf("the directory's file is gone: %v", err)
	}
}

// TestHeraldImage is `make image` twice, on Herald's real binary: two OCI
// layouts (and archives) from two builds hold one index digest (and are
// the same bytes); the index has linux/amd64 and linux/arm64; each image's
// /herald is a static ELF for its machine, and the amd64 one runs and
// prints the version it was built with.
func TestHeraldImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald for two platforms, twice")
	}
	if _, err := exec.LookPath("go"); err != nil {
		testrequire.Missing(t, "needs the go command to build herald")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	const version = "v9.8.7-test"
	const epoch = "1767225600"
	tmp := t.TempDir()
	var digests []v1.Hash
	var archives [][]byte
	for i := range 2 {
		dir := filepath.Join(tmp, "layout"+string(rune('a'+i)))
		archive := filepath.Join(tmp, "image"+string(rune('a'+i))+".tar")
		var out bytes.Buffer
		args := []string{"-module", "../..", "-version", version, "-revision", "0123456789abcdef0123456789abcdef01234567",
			"-source-date-epoch", epoch, "-layout", dir, "-tarball", archive}
		start := time.Now()
		if err := run(ctx, args, &out); err != nil {
			t.Fatalf("build %d: %v\n%s", i+1, err, out.String())
		}
		t.Logf("build %d in %s:\n%s", i+1, time.Since(start).Round(time.Second), out.String())
		idx := readLayout(t, dir, "9.8.7-test")
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, data)
		if i == 0 {
			checkHeraldIndex(t, idx, version)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds: index digests %s and %s", digests[0], digests[1])
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Errorf("two builds: the OCI archives differ")
	}
}

// readLayout returns the index named tag in the OCI layout in dir.
func readLayout(t *testing.T, dir, tag string) v1.ImageIndex {
	t.Helper()
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[refNameAnnotation] != tag {
		t.Fatalf("layout index.json lists %+v, want one index named %s", im.Manifests, tag)
	}
	idx, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// checkHeraldIndex checks the platforms, the config and the binary of
// each image of Herald's index.
func checkHeraldIndex(t *testing.T, idx v1.ImageIndex, version string) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	if len(im.Manifests) != len(want) {
		t.Fatalf("index has %d images, want %d", len(im.Manifests), len(want))
	}
	for _, desc := range im.Manifests {
		p := desc.Platform.String()
		machine, ok := want[p]
		if !ok {
			t.Fatalf("index has platform %s", p)
		}
		delete(want, p)
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/herald" ||
			cfg.Config.Labels["org.opencontainers.image.version"] != version ||
			cfg.Config.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" ||
			cfg.Config.Labels["org.opencontainers.image.source"] != "https://github.com/herald-lb/herald" {
			t.Errorf("%s: config %+v", p, cfg.Config)
		}
		bin := heraldFromImage(t, img)
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: /herald: %v", p, err)
		}
		if f.Machine != machine {
			t.Errorf("%s: /herald is for %s, want %s", p, f.Machine, machine)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s: /herald has a program interpreter", p)
			}
		}
		if p == "linux/"+runtime.GOARCH {
			exe := filepath.Join(t.TempDir(), "herald")
			if err := os.WriteFile(exe, bin, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(exe, "version").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != version {
				t.Errorf("%s: herald version = %q, %v; want %s", p, out, err, version)
			}
		}
	}
}

// heraldFromImage returns /herald from the image's only layer.
func heraldFromImage(t *testing.T, img v1.Image) []byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var bin []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name != "herald" {
			t.Errorf("the layer holds %s besides herald", hdr.Name)
			continue
		}
		if bin, err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	if bin == nil {
		t.Fatal("no herald in the layer")
	}
	return bin
}

// TestReleaseMatchesChart: the chart's default image is what the release
// pushes. The chart installs image.repository:<appVersion> (image.tag
// empty); the release workflow runs `make image-push` with its REGISTRY,
// which pushes $(REGISTRY)/herald:<tag without v>, and checks that the tag
// is the appVersion. The Makefile's default REGISTRY is the same.
func TestReleaseMatchesChart(t *testing.T) {
	root := "../.."
	read := func(path string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	if err := yaml.Unmarshal(read("deploy/helm/herald/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if values.Image.Tag != "" {
		t.Errorf("values.yaml image.tag = %q: the chart must default to its appVersion, the tag the release pushes", values.Image.Tag)
	}
	var workflow struct {
		Jobs map[string]struct {
			Env   map[string]string `json:"env"`
			Steps []struct {
				Run string `json:"run"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal(read(".github/workflows/release.yml"), &workflow); err != nil {
		t.Fatal(err)
	}
	job, ok := workflow.Jobs["release"]
	if !ok {
		t.Fatal("release.yml has no job release")
	}
	pushes := false
	for _, s := range job.Steps {
		if strings.Contains(s.Run, `make image-push REGISTRY="$REGISTRY"`) {
			pushes = true
		}
	}
	if !pushes {
		t.Error(`release.yml runs no make image-push REGISTRY="$REGISTRY"`)
	}
	if got := job.Env["REGISTRY"] + "/herald"; got != values.Image.Repository {
		t.Errorf("release.yml pushes %s, the chart installs %s", got, values.Image.Repository)
	}
	makefile := string(read("Makefile"))
	m := regexp.MustCompile(`(?m)^REGISTRY\s*\?=\s*(\S+)$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatal("the Makefile sets no default REGISTRY")
	}
	if got := m[1] + "/herald"; got != values.Image.Repository {
		t.Errorf("make image-push pushes %s by default, the chart installs %s", got, values.Image.Repository)
	}
	if !strings.Contains(makefile, "-push $(REGISTRY)/herald:$(IMAGE_TAG)") || !strings.Contains(makefile, "IMAGE_TAG         ?= $(patsubst v%,%,$(VERSION))") {
		t.Error("make image-push no longer pushes $(REGISTRY)/herald:<VERSION without v>")
	}
}
