package labimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of an image built by FilesImage.
type File struct {
	// Path is the absolute path in the image.
	Path string
	// Data is a regular file's content.
	Data []byte
	// Mode is the permission bits (and os.ModeSticky is not used: 0o1777
	// is written as it is).
	Mode int64
	// Dir makes the entry a directory (Data is ignored).
	Dir bool
}

// FilesImage returns a one-layer linux image for arch holding files (owned
// by root, every timestamp created, parents created as 0755 directories)
// with the process settings of config (entrypoint, cmd, user, …). The same
// files, config and time always give the same digest.
func FilesImage(arch string, files []File, config v1.Config, created time.Time) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	written := map[string]bool{}
	entries := append([]File(nil), files...)
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	header := func(h *tar.Header) error {
		h.ModTime, h.Format = created, tar.FormatPAX
		return tw.WriteHeader(h)
	}
	for _, f := range entries {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("image file %q: not a clean absolute path", f.Path)
		}
		if written[f.Path] {
			return nil, fmt.Errorf("image file %q: twice", f.Path)
		}
		// Parent directories first, as tar readers expect.
		var parents []string
		for d := path.Dir(f.Path); d != "/" && !written[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			written[d] = true
		}
		for _, d := range parents {
			if err := header(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755}); err != nil {
				return nil, fmt.Errorf("image layer: %w", err)
			}
		}
		written[f.Path] = true
		if f.Dir {
			if err := header(&tar.Header{Typeflag: tar.TypeDir, Name: f.Path[1:] + "/", Mode: f.Mode}); err != nil {
				return nil, fmt.Errorf("image layer: %w", err)
			}
			continue
		}
		if err := header(&tar.Header{Typeflag: tar.TypeReg, Name: f.Path[1:], Mode: f.Mode, Size: int64(len(f.Data))}); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: created.UTC()}, CreatedBy: "herald-lab"}})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: created.UTC()}
	if config.WorkingDir == "" {
		config.WorkingDir = "/"
	}
	cfg.Config = config
	return mutate.ConfigFile(img, cfg)
}

// WriteArchive writes img, tagged ref, as an image archive that `ctr
// images import` reads (node.Config.Images).
func WriteArchive(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write image %s: %w", ref, err)
	}
	return nil
}
