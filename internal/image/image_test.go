package image

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
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/herald-lb/herald/internal/testrequire"
)

// linux returns the Linux platform of a GOARCH.
func linux(arch string) v1.Platform { return v1.Platform{OS: "linux", Architecture: arch} }

// testMetadata is the metadata of the tests' images.
func testMetadata() Metadata {
	return Metadata{
		Title:       "Herald",
		Description: "bare-metal LoadBalancer",
		Source:      "https://github.com/herald-lb/herald",
		Version:     "v1.2.3",
		Revision:    "0123456789abcdef0123456789abcdef01234567",
		Licenses:    "Apache-2.0",
		Created:     time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC),
	}
}

// helloBuild returns the options that build testdata/hello from a copy in
// a directory of its own (outside any repository, so the build stamps no
// VCS state), the version in main.version.
func helloBuild(t *testing.T) BuildOptions {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		testrequire.Missing(t, "needs the go command to build test binaries")
	}
	dir := t.TempDir()
	for _, name := range []string{"go.mod", "main.go"} {
		data, err := os.ReadFile(filepath.Join("testdata", "hello", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return BuildOptions{Dir: dir, Package: ".", VersionVar: "main.version", Version: "v1.2.3"}
}

// helloBinaries builds testdata/hello for both platforms.
func helloBinaries(t *testing.T) []Binary {
	t.Helper()
	o := helloBuild(t)
	var bins []Binary
	for _, p := range Platforms() {
		data, err := GoBuild(context.Background(), o, p)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, Binary{Platform: p, Data: data})
	}
	return bins
}

func TestLabels(t *testing.T) {
	got := testMetadata().Labels()
	want := map[string]string{
		"org.opencontainers.image.title":       "Herald",
		"org.opencontainers.image.description": "bare-metal LoadBalancer",
		"org.opencontainers.image.source":      "https://github.com/herald-lb/herald",
		"org.opencontainers.image.version":     "v1.2.3",
		"org.opencontainers.image.revision":    "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     "2026-05-04T03:02:01Z",
	}
	if len(got) != len(want) {
		t.Errorf("Labels() = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	// Empty values are left out; created is always UTC.
	m := Metadata{Version: "dev", Created: time.Date(2026, 1, 1, 2, 0, 0, 0, time.FixedZone("CET", 3600))}
	got = m.Labels()
	if len(got) != 2 || got[LabelPrefix+"version"] != "dev" || got[LabelPrefix+"created"] != "2026-01-01T01:00:00Z" {
		t.Errorf("Labels() of %+v = %v", m, got)
	}
}

func TestBuildArgs(t *testing.T) {
	tests := []struct {
		name string
		o    BuildOptions
		want []string // nil: an error
	}{
		{
			name: "herald",
			o:    BuildOptions{Package: "./cmd/herald", VersionVar: "github.com/herald-lb/herald/internal/cli.Version", Version: "v0.1.0-3-gabcdef0-dirty"},
			want: []string{"build", "-trimpath", "-ldflags=-s -w -buildid= -X github.com/herald-lb/herald/internal/cli.Version=v0.1.0-3-gabcdef0-dirty",
				"-o", "/out/herald", "./cmd/herald"},
		},
		{
			name: "no version variable",
			o:    BuildOptions{Package: "."},
			want: []string{"build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", "/out/herald", "."},
		},
		{name: "no package", o: BuildOptions{}},
		{name: "a space in the version", o: BuildOptions{Package: ".", VersionVar: "main.v", Version: "1 2"}},
		{name: "a quote in the version", o: BuildOptions{Package: ".", VersionVar: "main.v", Version: `1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.o.Args("/out/herald")
			switch {
			case tt.want == nil && err == nil:
				t.Errorf("Args() = %q, want an error", got)
			case tt.want != nil && (err != nil || !slices.Equal(got, tt.want)):
				t.Errorf("Args() = %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	base := []string{"PATH=/bin", "GOAMD64=v3", "CGO_ENABLED=1", "GOFLAGS=-race"}
	tests := []struct {
		p    v1.Platform
		want map[string]string // nil: an error
	}{
		{p: linux("amd64"), want: map[string]string{"PATH": "/bin", "GOOS": "linux", "GOARCH": "amd64", "GOAMD64": "v1", "CGO_ENABLED": "0", "GOFLAGS": ""}},
		{p: linux("arm64"), want: map[string]string{"PATH": "/bin", "GOOS": "linux", "GOARCH": "arm64", "GOARM64": "v8.0", "CGO_ENABLED": "0", "GOFLAGS": ""}},
		{p: v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, want: map[string]string{"GOARCH": "arm", "GOARM": "7"}},
		{p: v1.Platform{OS: "darwin", Architecture: "arm64"}},
		{p: v1.Platform{OS: "linux", Architecture: "mips"}},
	}
	for _, tt := range tests {
		got, err := Env(base, tt.p)
		if tt.want == nil {
			if err == nil {
				t.Errorf("Env(%s) = %q, want an error", tt.p.String(), got)
			}
			continue
		}
		if err != nil {
			t.Errorf("Env(%s): %v", tt.p.String(), err)
			continue
		}
		// As for exec.Cmd, the last value of a variable wins.
		last := map[string]string{}
		for _, kv := range got {
			k, v, _ := strings.Cut(kv, "=")
			last[k] = v
		}
		for k, v := range tt.want {
			if last[k] != v {
				t.Errorf("Env(%s): %s=%q, want %q (env %q)", tt.p.String(), k, last[k], v, got)
			}
		}
	}
	if base[1] != "GOAMD64=v3" || len(base) != 4 {
		t.Errorf("Env changed its argument: %q", base)
	}
}

func TestCheckBinary(t *testing.T) {
	bins := helloBinaries(t)
	static := map[string][]byte{}
	for _, b := range bins {
		static[b.Platform.Architecture] = b.Data
	}
	dynamic, err := os.ReadFile("/bin/true")
	if err != nil {
		testrequire.Missing(t, "needs /bin/true, a dynamically linked executable: %v", err)
	}
	if f, err := elf.NewFile(bytes.NewReader(dynamic)); err != nil || f.Machine != elf.EM_X86_64 {
		testrequire.Missing(t, "/bin/true is not an x86-64 ELF file on this machine")
	}
	tests := []struct {
		name    string
		data    []byte
		p       v1.Platform
		wantErr string // empty: no error
	}{
		{name: "static amd64", data: static["amd64"], p: linux("amd64")},
		{name: "static arm64", data: static["arm64"], p: linux("arm64")},
		{name: "amd64 binary for arm64", data: static["amd64"], p: linux("arm64"), wantErr: "is for EM_X86_64"},
		{name: "arm64 binary for amd64", data: static["arm64"], p: linux("amd64"), wantErr: "is for EM_AARCH64"},
		{name: "dynamically linked", data: dynamic, p: linux("amd64"), wantErr: "dynamically linked"},
		{name: "not ELF", data: []byte("#!/bin/sh\necho hello\n"), p: linux("amd64"), wantErr: "not an ELF file"},
		{name: "not linux", data: static["arm64"], p: v1.Platform{OS: "darwin", Architecture: "arm64"}, wantErr: "only linux"},
		{name: "unknown architecture", data: static["amd64"], p: v1.Platform{OS: "linux", Architecture: "mips"}, wantErr: "unknown architecture"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckBinary(tt.data, tt.p)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckBinary: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckBinary = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestIndex checks the index and each image: the platforms, the OCI media
// types, the config (user, entrypoint, labels, created) and the single
// layer holding /herald as a static ELF executable for the platform.
func TestIndex(t *testing.T) {
	bins := helloBinaries(t)
	m := testMetadata()
	idx, err := Index(bins, m)
	if err != nil {
		t.Fatal(err)
	}
	if mt, err := idx.MediaType(); err != nil || mt != types.OCIImageIndex {
		t.Errorf("index media type %q, %v; want %q", mt, err, types.OCIImageIndex)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2 (linux/amd64, linux/arm64)", len(im.Manifests))
	}
	for k, v := range m.Labels() {
		if im.Annotations[k] != v {
			t.Errorf("index annotation %s = %q, want %q", k, im.Annotations[k], v)
		}
	}
	for i, desc := range im.Manifests {
		want := bins[i]
		if desc.Platform == nil || desc.Platform.String() != want.Platform.String() {
			t.Fatalf("manifest %d has platform %v, want %s", i, desc.Platform, want.Platform.String())
		}
		if desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %q", want.Platform.String(), desc.MediaType)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, img, want, m)
	}
}

// checkImage checks one image of the index against the binary it holds.
func checkImage(t *testing.T, img v1.Image, bin Binary, m Metadata) {
	t.Helper()
	p := bin.Platform.String()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != bin.Platform.OS || cfg.Architecture != bin.Platform.Architecture {
		t.Errorf("%s: config platform %s/%s", p, cfg.OS, cfg.Architecture)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("%s: user %q, want 65532:65532", p, cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/herald"}) || len(cfg.Config.Cmd) != 0 {
		t.Errorf("%s: entrypoint %q cmd %q, want [/herald] and none", p, cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	if !cfg.Created.Equal(m.Created) {
		t.Errorf("%s: created %s, want %s", p, cfg.Created, m.Created)
	}
	for _, key := range []string{"source", "version", "revision", "licenses", "title", "description", "created"} {
		if got, want := cfg.Config.Labels[LabelPrefix+key], m.Labels()[LabelPrefix+key]; got != want || got == "" {
			t.Errorf("%s: label %s%s = %q, want %q", p, LabelPrefix, key, got, want)
		}
	}
	if cfg.Config.Labels[LabelPrefix+"licenses"] != "Apache-2.0" {
		t.Errorf("%s: licenses %q", p, cfg.Config.Labels[LabelPrefix+"licenses"])
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("%s: %d layers, %d diff IDs; want 1", p, len(layers), len(cfg.RootFS.DiffIDs))
	}
	if mt, err := layers[0].MediaType(); err != nil || mt != types.OCILayer {
		t.Errorf("%s: layer media type %q, %v", p, mt, err)
	}
	files := layerFiles(t, layers[0])
	if len(files) != 1 || files[0].hdr.Name != "herald" {
		var names []string
		for _, f := range files {
			names = append(names, f.hdr.Name)
		}
		t.Fatalf("%s: layer holds %q, want only herald", p, names)
	}
	f := files[0]
	if f.hdr.Typeflag != tar.TypeReg || f.hdr.Mode != 0o755 || f.hdr.Uid != 0 || f.hdr.Gid != 0 || !f.hdr.ModTime.Equal(m.Created) {
		t.Errorf("%s: /herald is type %c mode %o owner %d:%d mtime %s; want a regular file, 0755, 0:0, %s",
			p, f.hdr.Typeflag, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, f.hdr.ModTime, m.Created)
	}
	if !bytes.Equal(f.data, bin.Data) {
		t.Errorf("%s: /herald is not the binary", p)
	}
	checkELF(t, f.data, bin.Platform)
}

// checkELF checks with debug/elf alone that data is a static executable
// for p: the right e_machine and no PT_INTERP.
func checkELF(t *testing.T, data []byte, p v1.Platform) {
	t.Helper()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: /herald is not ELF: %v", p.String(), err)
	}
	defer f.Close()
	if f.Machine != want {
		t.Errorf("%s: /herald has e_machine %s, want %s", p.String(), f.Machine, want)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s: /herald has a PT_INTERP: not static", p.String())
		}
	}
}

// tarFile is one entry of a layer.
type tarFile struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles returns the entries of an image layer.
func layerFiles(t *testing.T, l v1.Layer) []tarFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var files []tarFile
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, tarFile{hdr: hdr, data: data})
	}
}

// TestReproducible builds the index twice from copies of the program in
// two directories, the second time with an empty build cache, so that
// everything (the standard library included) is compiled again: one
// digest. A different creation time gives another digest, so the
// comparison can fail.
func TestReproducible(t *testing.T) {
	ctx := context.Background()
	m := testMetadata()
	first, err := Build(ctx, helloBuild(t), m, Platforms())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOCACHE", t.TempDir())
	second, err := Build(ctx, helloBuild(t), m, Platforms())
	if err != nil {
		t.Fatal(err)
	}
	d1, err := first.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := second.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("two builds of one source: index digests %s and %s", d1, d2)
	}
	t.Logf("index digest %s, twice", d1)

	m.Created = m.Created.Add(time.Second)
	later, err := Build(ctx, helloBuild(t), m, Platforms())
	if err != nil {
		t.Fatal(err)
	}
	if d3, err := later.Digest(); err != nil || d3 == d1 {
		t.Errorf("another creation time gave digest %s (%v), the same as %s", d3, err, d1)
	}
}

func TestIndexErrors(t *testing.T) {
	bins := helloBinaries(t)
	m := testMetadata()
	noTime := m
	noTime.Created = time.Time{}
	tests := []struct {
		name    string
		bins    []Binary
		m       Metadata
		wantErr string
	}{
		{name: "no binaries", m: m, wantErr: "no binaries"},
		{name: "no creation time", bins: bins, m: noTime, wantErr: "no creation time"},
		{name: "a platform twice", bins: []Binary{bins[0], bins[0]}, m: m, wantErr: "platform linux/amd64 twice"},
		{name: "wrong machine", bins: []Binary{{Platform: linux("arm64"), Data: bins[0].Data}}, m: m, wantErr: "is for EM_X86_64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Index(tt.bins, tt.m)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Index = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestGoBuildError(t *testing.T) {
	o := helloBuild(t)
	o.Package = "./does-not-exist"
	_, err := GoBuild(context.Background(), o, linux("amd64"))
	if err == nil || !strings.Contains(err.Error(), "go build ./does-not-exist for linux/amd64") {
		t.Errorf("GoBuild of a missing package = %v, want an error naming it and the platform", err)
	}
}
