package labimages

import (
	"archive/tar"
	"errors"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestFilesImage: entries in path order with their parents first, the
// given modes and time, the config as given, and one digest for the same
// input in any order.
func TestFilesImage(t *testing.T) {
	created := time.Unix(1700000000, 0)
	files := []File{
		{Path: "/usr/sbin/nginx", Data: []byte("binary"), Mode: 0o755},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/etc/nginx/nginx.conf", Data: []byte("conf"), Mode: 0o644},
	}
	cfg := v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, StopSignal: "SIGQUIT"}
	img, err := FilesImage("arm64", files, cfg, created)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name string
		typ  byte
		mode int64
		data string
	}
	want := []entry{
		{"etc", tar.TypeDir, 0o755, ""},
		{"etc/nginx", tar.TypeDir, 0o755, ""},
		{"etc/nginx/nginx.conf", tar.TypeReg, 0o644, "conf"},
		{"tmp", tar.TypeDir, 0o1777, ""},
		{"usr", tar.TypeDir, 0o755, ""},
		{"usr/sbin", tar.TypeDir, 0o755, ""},
		{"usr/sbin/nginx", tar.TypeReg, 0o755, "binary"},
	}
	// Extract names directories without their trailing slash.
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var got []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if !h.ModTime.Equal(created) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, created)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want root", h.Name, h.Uid, h.Gid)
		}
		got = append(got, entry{h.Name, h.Typeflag, h.Mode, string(data)})
	}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.OS != "linux" || cf.Config.StopSignal != "SIGQUIT" ||
		len(cf.Config.Cmd) != 3 || cf.Config.WorkingDir != "/" || !cf.Created.Time.Equal(created) {
		t.Errorf("config %+v", cf)
	}

	reversed := []File{files[2], files[1], files[0]}
	again, err := FilesImage("arm64", reversed, cfg, created)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("digests differ with the files in another order: %v, %v", d1, d2)
	}
}

// TestFilesImageErrors: paths that are not clean and absolute, and a path
// given twice, are refused.
func TestFilesImageErrors(t *testing.T) {
	for _, files := range [][]File{
		{{Path: "relative", Data: nil, Mode: 0o644}},
		{{Path: "/a/../b", Mode: 0o644}},
		{{Path: "/", Dir: true, Mode: 0o755}},
		{{Path: "/a", Mode: 0o644}, {Path: "/a", Mode: 0o644}},
	} {
		if _, err := FilesImage("amd64", files, v1.Config{}, time.Unix(0, 0)); err == nil {
			t.Errorf("FilesImage(%+v) succeeded", files)
		}
	}
}
