// Command image builds Herald's container image (internal/image): the
// static herald binary for linux/amd64 and linux/arm64, one single-layer
// image each, in one OCI image index. It writes the index as an OCI image
// layout (and, if asked, that layout as a tar archive) and can push it to
// a registry, with the credentials of the Docker config (docker login,
// credential helpers).
//
//	go run ./hack/image -version v0.1.0 -layout bin/image
//	go run ./hack/image -version v0.1.0 -push ghcr.io/herald-lb/herald:0.1.0
//
// `make image` and `make image-push REGISTRY=…` run it. Every timestamp in
// the image is -source-date-epoch ($SOURCE_DATE_EPOCH; the Makefile passes
// the commit's time), so two builds of one commit give one digest.
package main

import (
	"archive/tar"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herald-lb/herald/internal/image"
)

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	module     string
	pkg        string
	versionVar string
	version    string
	revision   string
	source     string
	epoch      string
	platforms  string
	layoutDir  string
	tarball    string
	tag        string
	push       string
	plainHTTP  bool
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&o.module, "module", ".", "the root of Herald's module (the go command runs there)")
	fs.StringVar(&o.pkg, "package", "./cmd/herald", "the main package of the binary")
	fs.StringVar(&o.versionVar, "version-var", "github.com/herald-lb/herald/internal/cli.Version", "the variable -ldflags -X sets to -version")
	fs.StringVar(&o.version, "version", "dev", "Herald's version (the binary's and the image's version label)")
	fs.StringVar(&o.revision, "revision", "", "the source commit (the revision label)")
	fs.StringVar(&o.source, "source", "https://github.com/herald-lb/herald", "the source repository (the source label)")
	fs.StringVar(&o.epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of every timestamp in the image ($SOURCE_DATE_EPOCH; e.g. git log -1 --format=%ct)")
	fs.StringVar(&o.platforms, "platforms", platformList(image.Platforms()), "comma-separated OS/ARCH list")
	fs.StringVar(&o.layoutDir, "layout", "", "write the index as an OCI image layout in this directory (replacing a layout there)")
	fs.StringVar(&o.tarball, "tarball", "", "also write the OCI layout as a tar archive to this file (needs -layout)")
	fs.StringVar(&o.tag, "tag", "", "the name of the index in the layout (default: -version without a leading v)")
	fs.StringVar(&o.push, "push", "", "push the index to this reference, e.g. ghcr.io/herald-lb/herald:0.1.0")
	fs.BoolVar(&o.plainHTTP, "plain-http", false, "push over plain HTTP (a registry on loopback, like the lab's)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.layoutDir == "" && o.push == "" {
		return options{}, errors.New("nothing to do: give -layout DIR, -push REF or both")
	}
	if o.tarball != "" && o.layoutDir == "" {
		return options{}, errors.New("-tarball archives the layout: give -layout too")
	}
	if o.tag == "" {
		o.tag = strings.TrimPrefix(o.version, "v")
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	created, err := parseEpoch(o.epoch)
	if err != nil {
		return err
	}
	platforms, err := parsePlatforms(o.platforms)
	if err != nil {
		return err
	}
	m := image.Metadata{
		Title:       "Herald",
		Description: "Bare-metal LoadBalancer for Kubernetes: LB-IPAM and ARP/NDP announcements with sub-second fail-over",
		Source:      o.source,
		Version:     o.version,
		Revision:    o.revision,
		Licenses:    "Apache-2.0",
		Created:     created,
	}
	build := image.BuildOptions{Dir: o.module, Package: o.pkg, VersionVar: o.versionVar, Version: o.version}
	fmt.Fprintf(stdout, "Building %s %s for %s (created %s)…\n", o.pkg, o.version, o.platforms, created.Format(time.RFC3339))
	idx, err := image.Build(ctx, build, m, platforms)
	if err != nil {
		return err
	}
	if err := describe(idx, stdout); err != nil {
		return err
	}
	if o.layoutDir != "" {
		if err := writeLayout(o.layoutDir, idx, o.tag); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "OCI layout: %s (tag %s)\n", o.layoutDir, o.tag)
		if o.tarball != "" {
			if err := writeArchive(o.layoutDir, o.tarball, created); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "OCI archive: %s\n", o.tarball)
		}
	}
	if o.push != "" {
		opts := []name.Option{name.StrictValidation}
		if o.plainHTTP {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(o.push, opts...)
		if err != nil {
			return fmt.Errorf("-push %q: %w", o.push, err)
		}
		if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return fmt.Errorf("index digest: %w", err)
		}
		fmt.Fprintf(stdout, "Pushed %s@%s\n", ref, d)
	}
	return nil
}

// parseEpoch turns SOURCE_DATE_EPOCH into a time; it is required, since
// the time of the build would make every build's digest different.
func parseEpoch(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("no -source-date-epoch or $SOURCE_DATE_EPOCH: set it to the commit's time (git log -1 --format=%ct) for a reproducible image")
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, fmt.Errorf("-source-date-epoch %q: want seconds since 1970", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// parsePlatforms parses "linux/amd64,linux/arm64".
func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-platforms %q: %w", s, err)
		}
		out = append(out, *p)
	}
	return out, nil
}

// platformList is the -platforms form of ps.
func platformList(ps []v1.Platform) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

// describe prints the index's digest and each platform's image digest.
func describe(idx v1.ImageIndex, out io.Writer) error {
	d, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	fmt.Fprintf(out, "index %s\n", d)
	for _, desc := range im.Manifests {
		p := "?"
		if desc.Platform != nil {
			p = desc.Platform.String()
		}
		fmt.Fprintf(out, "  %-12s %s (%d bytes of manifest)\n", p, desc.Digest, desc.Size)
	}
	return nil
}

// writeLayout writes idx as the one entry, named tag, of a new OCI image
// layout in dir. A layout already there is replaced; any other existing
// directory is an error rather than removed.
func writeLayout(dir string, idx v1.ImageIndex, tag string) error {
	if _, err := os.Stat(dir); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("-layout %s exists and is not an OCI image layout; not replacing it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove the old layout: %w", err)
		}
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return nil
}

// writeArchive writes the layout in dir as a tar archive (an "OCI
// archive", as skopeo, podman and containerd import it): entries in
// lexical order, owned by root, with mtime, so the same layout gives the
// same bytes.
func writeArchive(dir, file string, mtime time.Time) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("OCI archive: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("OCI archive: %w", cerr)
		}
	}()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatUSTAR}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return fmt.Errorf("OCI archive of %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("OCI archive: %w", err)
	}
	return nil
}
