// Package image builds Herald's container image without a container
// runtime: an OCI image index with one image per platform (linux/amd64 and
// linux/arm64), each a single layer holding the static herald binary at
// /herald and nothing else (no shell, no libc), run as /herald by the
// unprivileged user 65532:65532 unless a Pod's securityContext says
// otherwise.
//
// Builds are reproducible: every timestamp in the image (the file's mtime,
// the configs' created time and history) is Metadata.Created, which callers
// take from SOURCE_DATE_EPOCH or the commit's time, and the binaries are
// built with -trimpath and an empty build ID, so two builds of one commit
// with one Go toolchain give one index digest.
//
// Index and NewImage assemble an index from binaries and are pure; GoBuild
// compiles a binary for a platform; CheckBinary verifies that one is a
// static ELF executable for its platform.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// BinaryPath is where the binary is in the image, and the entrypoint.
	BinaryPath = "/herald"
	// User is the image's default user and group: the conventional
	// unprivileged "nonroot" IDs. The chart runs the controller as this user
	// and only the agent as root, with the capabilities it grants.
	User = "65532:65532"

	// LabelPrefix starts the name of every OCI annotation and label the
	// image carries.
	LabelPrefix = "org.opencontainers.image."
)

// Platforms returns the platforms Herald's image is built for, in the
// order the index lists them.
func Platforms() []v1.Platform {
	return []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64"},
	}
}

// Metadata describes a build of the image; it becomes the images' labels
// (org.opencontainers.image.*) and the index's annotations.
type Metadata struct {
	// Title is a short name ("Herald").
	Title string
	// Description says what the image is.
	Description string
	// Source is the URL of the source repository.
	Source string
	// Version is the version of the binary (a tag, or git describe).
	Version string
	// Revision is the source's commit.
	Revision string
	// Licenses is an SPDX expression ("Apache-2.0").
	Licenses string
	// Created is the time of every timestamp in the image: for a
	// reproducible build, the commit's time or SOURCE_DATE_EPOCH, never
	// the time of the build.
	Created time.Time
}

// Labels returns the org.opencontainers.image.* labels of m, without the
// ones whose value is empty. created is RFC 3339 in UTC.
func (m Metadata) Labels() map[string]string {
	labels := map[string]string{}
	for key, value := range map[string]string{
		"title":       m.Title,
		"description": m.Description,
		"source":      m.Source,
		"version":     m.Version,
		"revision":    m.Revision,
		"licenses":    m.Licenses,
	} {
		if value != "" {
			labels[LabelPrefix+key] = value
		}
	}
	if !m.Created.IsZero() {
		labels[LabelPrefix+"created"] = m.Created.UTC().Format(time.RFC3339)
	}
	return labels
}

// Binary is the herald binary built for one platform.
type Binary struct {
	// Platform is the binary's OS and architecture.
	Platform v1.Platform
	// Data is the executable.
	Data []byte
}

// Index returns the image index of one image per binary, in the order
// given, each entry carrying its platform; the index is annotated with
// m.Labels(). Each binary must be a static ELF executable for its
// platform (CheckBinary), and no platform may appear twice.
func Index(bins []Binary, m Metadata) (v1.ImageIndex, error) {
	if len(bins) == 0 {
		return nil, errors.New("image index: no binaries")
	}
	if m.Created.IsZero() {
		return nil, errors.New("image index: no creation time (SOURCE_DATE_EPOCH or the commit's time)")
	}
	seen := map[string]bool{}
	var idx v1.ImageIndex = empty.Index
	for _, bin := range bins {
		p := bin.Platform.String()
		if seen[p] {
			return nil, fmt.Errorf("image index: platform %s twice", p)
		}
		seen[p] = true
		img, err := NewImage(bin, m)
		if err != nil {
			return nil, err
		}
		platform := bin.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &platform},
		})
	}
	annotated, ok := mutate.Annotations(idx, m.Labels()).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("image index: annotating the index did not return an index")
	}
	return annotated, nil
}

// NewImage returns the image of one binary: an OCI manifest, a config
// for bin.Platform with Entrypoint [/herald], User 65532:65532 and the
// labels of m, and one layer holding the binary at /herald (mode 0755,
// owned by root, mtime m.Created).
func NewImage(bin Binary, m Metadata) (v1.Image, error) {
	p := bin.Platform.String()
	if err := CheckBinary(bin.Data, bin.Platform); err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	layer, err := Layer(bin.Data, m.Created)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	created := v1.Time{Time: m.Created.UTC()}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "herald " + m.Version + " at " + BinaryPath,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: add the layer: %w", p, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", p, err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Variant, cfg.OSVersion = bin.Platform.OS, bin.Platform.Architecture, bin.Platform.Variant, bin.Platform.OSVersion
	cfg.Created = created
	cfg.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		User:       User,
		WorkingDir: "/",
		Labels:     maps.Clone(m.Labels()),
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("image %s: set the config: %w", p, err)
	}
	return img, nil
}

// Layer returns a gzipped OCI layer whose only entry is the executable
// data at /herald, owned by root with mode 0755 and modification time
// mtime. The same data and mtime always give the same layer digest.
func Layer(data []byte, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     BinaryPath[1:],
		Mode:     0o755,
		Size:     int64(len(data)),
		ModTime:  mtime.UTC().Truncate(time.Second),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	layer, err := tarballLayer(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}

// tarballLayer wraps an uncompressed tar archive as a gzipped OCI layer,
// compressed once (best compression) and kept in memory.
func tarballLayer(archive []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(archive)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
}
