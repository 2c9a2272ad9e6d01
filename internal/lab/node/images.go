package node

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// SandboxImage is the reference of the lab's sandbox ("pause") image: the
// program in ./pause, built by the lab, since no registry outside is
// reachable.
const SandboxImage = "herald.lab/pause:1"

// File is one file of an image built by BinaryImage.
type File struct {
	// Path is the absolute path in the image.
	Path string
	// Data is the content.
	Data []byte
	// Mode is the permission bits.
	Mode int64
}

// BinaryImage returns a one-layer linux image of the host's architecture
// holding files (owned by root, with modification time created) whose
// entrypoint is entrypoint: the form of the lab's own images (a static
// binary and what it reads).
func BinaryImage(arch string, files []File, entrypoint []string, created time.Time) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("image file %q: not a clean absolute path", f.Path)
		}
		// Parent directories first, as tar readers expect.
		var parents []string
		for d := path.Dir(f.Path); d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755,
				ModTime: created, Format: tar.FormatPAX}); err != nil {
				return nil, fmt.Errorf("image layer: %w", err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.Path[1:], Mode: f.Mode,
			Size: int64(len(f.Data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
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
	img, err := mutate.AppendLayers(base, layer)
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
	cfg.Config = v1.Config{Entrypoint: entrypoint, WorkingDir: "/"}
	return mutate.ConfigFile(img, cfg)
}

// WriteImage writes img, tagged ref, as an image archive that containerd
// imports (Config.Images).
func WriteImage(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write image %s: %w", ref, err)
	}
	return nil
}
