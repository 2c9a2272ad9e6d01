package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BuildOptions says how GoBuild compiles the herald binary.
type BuildOptions struct {
	// Go is the go command; empty means "go" from PATH.
	Go string
	// Dir is the directory the go command runs in: the module's root.
	Dir string
	// Package is the main package to build, e.g. "./cmd/herald".
	Package string
	// VersionVar is the string variable that -ldflags -X sets to Version,
	// e.g. "github.com/herald-lb/herald/internal/cli.Version"; empty sets
	// none.
	VersionVar string
	// Version is the value of VersionVar.
	Version string
}

// Args returns the arguments of the go command that builds o.Package
// into out: reproducible (-trimpath, an empty build ID) and small (no
// symbol table or DWARF).
func (o BuildOptions) Args(out string) ([]string, error) {
	if o.Package == "" {
		return nil, fmt.Errorf("go build: no package")
	}
	ldflags := "-s -w -buildid="
	if o.VersionVar != "" {
		if strings.ContainsAny(o.Version, " \t\n'\"`") || strings.ContainsAny(o.VersionVar, " \t\n'\"`") {
			return nil, fmt.Errorf("go build: version %q (of %s) must not hold spaces or quotes", o.Version, o.VersionVar)
		}
		ldflags += " -X " + o.VersionVar + "=" + o.Version
	}
	return []string{"build", "-trimpath", "-ldflags=" + ldflags, "-o", out, o.Package}, nil
}

// Env returns base with the variables that build a static binary for
// platform p: GOOS, GOARCH (and GOARM for a variant of arm),
// CGO_ENABLED=0, the baseline microarchitecture of amd64 and arm64 (so a
// GOAMD64 of the caller's does not change the image), and no GOFLAGS.
func Env(base []string, p v1.Platform) ([]string, error) {
	if _, _, ok := machine(p.Architecture); !ok || p.OS != "linux" {
		return nil, fmt.Errorf("go build: unsupported platform %s", p.String())
	}
	env := append(base[:len(base):len(base)], "GOOS="+p.OS, "GOARCH="+p.Architecture, "CGO_ENABLED=0", "GOFLAGS=")
	switch p.Architecture {
	case "amd64":
		env = append(env, "GOAMD64=v1")
	case "arm64":
		env = append(env, "GOARM64=v8.0")
	case "arm":
		if v := strings.TrimPrefix(p.Variant, "v"); v != "" {
			env = append(env, "GOARM="+v)
		}
	}
	return env, nil
}

// GoBuild compiles the binary o describes for platform p and returns the
// executable (see Args and Env for how).
func GoBuild(ctx context.Context, o BuildOptions, p v1.Platform) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "herald-image-")
	if err != nil {
		return nil, fmt.Errorf("go build for %s: %w", p.String(), err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "herald")
	args, err := o.Args(out)
	if err != nil {
		return nil, err
	}
	env, err := Env(os.Environ(), p)
	if err != nil {
		return nil, err
	}
	goCmd := o.Go
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir, cmd.Env = o.Dir, env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for %s: %w\n%s", o.Package, p.String(), err, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("go build %s for %s: %w", o.Package, p.String(), err)
	}
	return data, nil
}

// Build compiles the binary for each platform with GoBuild and returns
// the index of their images (Index) with metadata m.
func Build(ctx context.Context, o BuildOptions, m Metadata, platforms []v1.Platform) (v1.ImageIndex, error) {
	bins := make([]Binary, 0, len(platforms))
	for _, p := range platforms {
		data, err := GoBuild(ctx, o, p)
		if err != nil {
			return nil, err
		}
		bins = append(bins, Binary{Platform: p, Data: data})
	}
	return Index(bins, m)
}
