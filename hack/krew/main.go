// Command krew builds the kubectl plugin's release files: for each
// platform a reproducible archive kubectl-herald_<os>_<arch>.tar.gz (the
// herald binary named kubectl-herald, and the licence), and the krew
// plugin manifest herald.yaml naming each archive's URL and SHA-256, for
// `kubectl krew install --manifest=herald.yaml` or a krew index.
//
//	go -C hack/krew run . -src ../.. -version v0.2.0 -out ../../bin/release
//
// It is a module of its own so that krew's (old) dependencies do not move
// the versions the root module pins. Archives are reproducible: every
// timestamp in them is -source-date-epoch and the binary is built with
// -trimpath, so two builds of one commit have one digest.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/krew/pkg/constants"
	"sigs.k8s.io/krew/pkg/index"
	"sigs.k8s.io/yaml"
)

// defaultPlatforms are the platforms a release builds the plugin for: the
// operator commands run on the user's laptop (macOS, Windows) as well as on
// Linux.
const defaultPlatforms = "linux/amd64,linux/arm64,darwin/amd64,darwin/arm64,windows/amd64"

// Options say what to build.
type Options struct {
	// Src is the repository root (where cmd/herald and LICENSE are).
	Src string
	// Version is the release's tag (v0.2.0); it goes into the binary
	// (herald version) and the manifest.
	Version string
	// Out is where the archives and herald.yaml are written.
	Out string
	// Platforms are os/arch pairs.
	Platforms []string
	// URLBase is the URL the archives are downloaded from, without the
	// file name.
	URLBase string
	// SourceDateEpoch is every timestamp in the archives.
	SourceDateEpoch time.Time
	// Go is the go command.
	Go string
}

func main() {
	var o Options
	var platforms string
	var epoch int64
	flag.StringVar(&o.Src, "src", "../..", "repository root")
	flag.StringVar(&o.Version, "version", "", "release tag, e.g. v0.2.0")
	flag.StringVar(&o.Out, "out", "bin/release", "output directory")
	flag.StringVar(&platforms, "platforms", defaultPlatforms, "comma-separated os/arch pairs")
	flag.StringVar(&o.URLBase, "url-base", "", "download URL of the archives without the file name (default: the GitHub release of -version)")
	flag.Int64Var(&epoch, "source-date-epoch", 0, "timestamp of every archive entry, seconds since 1970")
	flag.StringVar(&o.Go, "go", "go", "go command")
	flag.Parse()
	o.Platforms = strings.Split(platforms, ",")
	o.SourceDateEpoch = time.Unix(epoch, 0).UTC()
	if o.URLBase == "" {
		o.URLBase = "https://github.com/herald-lb/herald/releases/download/" + o.Version
	}
	files, err := Build(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "krew:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println(f)
	}
}

// Build writes the archives and the manifest, and returns their paths.
func Build(ctx context.Context, o Options) ([]string, error) {
	if !strings.HasPrefix(o.Version, "v") {
		return nil, fmt.Errorf("-version %q: want a tag like v0.2.0 (krew needs semantic versions with a leading v)", o.Version)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.Out, err)
	}
	licence, err := os.ReadFile(filepath.Join(o.Src, "LICENSE"))
	if err != nil {
		return nil, fmt.Errorf("read the licence: %w", err)
	}
	plugin := index.Plugin{
		TypeMeta:   metav1.TypeMeta{APIVersion: constants.CurrentAPIVersion, Kind: constants.PluginKind},
		ObjectMeta: metav1.ObjectMeta{Name: "herald"},
		Spec: index.PluginSpec{
			Version:          o.Version,
			Homepage:         "https://github.com/herald-lb/herald",
			ShortDescription: "See and check Herald, the bare-metal LoadBalancer",
			Description: "Shows which node answers ARP/NDP for each LoadBalancer address, the pools and\n" +
				"their use, why a Service is pending or unreachable (explain), and checks an\n" +
				"installation (doctor): CRDs, RBAC, agents, interface patterns, heartbeat\n" +
				"keys, kube-proxy's IPVS strictARP, other load balancers. Reads only the API\n" +
				"server, so it works from a laptop with a kubeconfig.",
		},
	}
	var written []string
	for _, p := range o.Platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos == "" || goarch == "" {
			return nil, fmt.Errorf("platform %q: want os/arch", p)
		}
		bin := "kubectl-herald"
		if goos == "windows" {
			bin += ".exe"
		}
		exe, err := buildBinary(ctx, o, goos, goarch)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("kubectl-herald_%s_%s.tar.gz", goos, goarch)
		archive, err := tarGz(o.SourceDateEpoch, []entry{{bin, exe, 0o755}, {"LICENSE", licence, 0o644}})
		if err != nil {
			return nil, fmt.Errorf("archive %s: %w", name, err)
		}
		path := filepath.Join(o.Out, name)
		if err := os.WriteFile(path, archive, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		written = append(written, path)
		sum := sha256.Sum256(archive)
		plugin.Spec.Platforms = append(plugin.Spec.Platforms, index.Platform{
			URI:      o.URLBase + "/" + name,
			Sha256:   hex.EncodeToString(sum[:]),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"os": goos, "arch": goarch}},
			Files:    []index.FileOperation{{From: bin, To: "."}, {From: "LICENSE", To: "."}},
			Bin:      bin,
		})
	}
	manifest, err := encodeManifest(plugin)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(o.Out, "herald.yaml")
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return append(written, path), nil
}

// buildBinary builds cmd/herald for one platform: static, without paths of
// this machine, with the release's version.
func buildBinary(ctx context.Context, o Options, goos, goarch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "herald-krew-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "herald")
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X github.com/herald-lb/herald/internal/cli.Version="+o.Version, "-o", out, "./cmd/herald")
	cmd.Dir = o.Src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build herald for %s/%s: %w\n%s", goos, goarch, err, stderr.String())
	}
	return os.ReadFile(out)
}

type entry struct {
	name string
	data []byte
	mode int64
}

// tarGz packs entries with fixed owners and times.
func tarGz(mtime time.Time, entries []entry) ([]byte, error) {
	var b bytes.Buffer
	gz, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	gz.ModTime = mtime
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX,
			Uname: "root", Gname: "root"}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, bytes.NewReader(e.data)); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encodeManifest writes p as YAML without the empty creationTimestamp
// that metav1.ObjectMeta always encodes.
func encodeManifest(p index.Plugin) ([]byte, error) {
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if b, err = yaml.Marshal(m); err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	return b, nil
}
