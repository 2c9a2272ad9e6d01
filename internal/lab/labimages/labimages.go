// Package labimages builds the images the lab's real nodes pull: Herald's
// own (the herald binary in the image `make image` builds), Kubernetes'
// agnhost (built from the pinned Kubernetes module; also the Pods' sandbox,
// as `agnhost pause`) and nginx (the real nginx of Debian's package, with
// the libraries it links from this machine, which is the same Debian
// release). Each is pushed under the repository path it has in its home
// registry, so that a node whose containerd mirrors docker.io,
// registry.k8s.io and ghcr.io to the lab's registry pulls
// `nginx:latest`, `registry.k8s.io/e2e-test-images/agnhost:2.66.1` and
// `ghcr.io/herald-lb/herald:0.1.0` exactly as written in a tutorial.
package labimages

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/herald-lb/herald/internal/image"
)

// Registries are the registry hosts whose images the lab serves; a node
// pulls every image of theirs from the lab's registry.
func Registries() []string { return []string{"docker.io", "registry.k8s.io", "ghcr.io"} }

// AgnhostRepository is agnhost's repository in registry.k8s.io.
const AgnhostRepository = "registry.k8s.io/e2e-test-images/agnhost"

// HeraldRepository is Herald's repository, as the chart names it.
const HeraldRepository = "ghcr.io/herald-lb/herald"

// Image is one image and the references it is pushed under.
type Image struct {
	// Refs are full references ("docker.io/library/nginx:latest").
	Refs []string
	// Image is the image.
	Image v1.Image
}

// Sources are what the images are made of.
type Sources struct {
	// Herald is a static herald binary for this machine's architecture.
	Herald string
	// HeraldTag is its tag (the chart's appVersion).
	HeraldTag string
	// HeraldVersion is the version the binary reports (its image label).
	HeraldVersion string
	// Agnhost is a static agnhost binary; AgnhostVersion its version.
	Agnhost        string
	AgnhostVersion string
	// Cache keeps the downloaded Debian packages between runs.
	Cache string
}

// SandboxImage is the reference of the Pods' sandbox image for
// agnhostVersion: agnhost, whose default command is `pause`.
func SandboxImage(agnhostVersion string) string { return AgnhostRepository + ":" + agnhostVersion }

// Build builds every image of the lab.
func Build(ctx context.Context, src Sources) ([]Image, error) {
	created := time.Unix(0, 0)
	arch := runtime.GOARCH

	heraldData, err := os.ReadFile(src.Herald)
	if err != nil {
		return nil, fmt.Errorf("the binary of Herald's image: %w", err)
	}
	herald, err := image.NewImage(image.Binary{Platform: v1.Platform{OS: "linux", Architecture: arch}, Data: heraldData},
		image.Metadata{Title: "Herald", Description: "Herald, built for the lab", Version: src.HeraldVersion,
			Licenses: "Apache-2.0", Created: created})
	if err != nil {
		return nil, fmt.Errorf("the image of %s (the lab needs a static herald binary: CGO_ENABLED=0, as `make build` does): %w",
			src.Herald, err)
	}

	agnhost, err := Agnhost(arch, src.Agnhost, created)
	if err != nil {
		return nil, err
	}

	nginx, nginxVersion, err := Nginx(ctx, arch, filepath.Join(src.Cache, "debs"), created)
	if err != nil {
		return nil, err
	}
	nginxRefs := []string{"docker.io/library/nginx:latest"}
	for v := nginxVersion; strings.Contains(v, "."); v = v[:strings.LastIndex(v, ".")] {
		nginxRefs = append(nginxRefs, "docker.io/library/nginx:"+v)
	}
	return []Image{
		{Refs: []string{HeraldRepository + ":" + src.HeraldTag}, Image: herald},
		{Refs: []string{AgnhostRepository + ":" + src.AgnhostVersion}, Image: agnhost},
		{Refs: nginxRefs, Image: nginx},
	}, nil
}

// Agnhost returns the image of the agnhost binary at path, laid out as
// Kubernetes' own: /agnhost as the entrypoint, `pause` as the default
// command (so it also serves as the Pods' sandbox image).
func Agnhost(arch, path string, created time.Time) (v1.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agnhost image: %w", err)
	}
	img, err := FilesImage(arch, []File{{Path: "/agnhost", Data: data, Mode: 0o755}},
		v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}, created)
	if err != nil {
		return nil, fmt.Errorf("agnhost image: %w", err)
	}
	return img, nil
}

// nginxConfig serves /usr/share/nginx/html on port 80 of every address,
// as the official image does, logging to the container's output.
const nginxConfig = `worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;

events {
    worker_connections 256;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;

    server {
        listen 80;
        listen [::]:80;
        root /usr/share/nginx/html;
        index index.html;
    }
}
`

// Nginx returns an image of Debian's nginx for arch (this machine's): the
// binary and its welcome page from the nginx and nginx-common packages
// (downloaded with apt-get into cache, once), the shared libraries it
// links from this machine, a configuration like the official image's and
// its default command (`nginx -g "daemon off;"`). It also returns the
// nginx version ("1.22.1").
func Nginx(ctx context.Context, arch string, cache string, created time.Time) (v1.Image, string, error) {
	root, err := debianPackages(ctx, cache, "nginx", "nginx-common")
	if err != nil {
		return nil, "", fmt.Errorf("nginx image: %w", err)
	}
	bin := filepath.Join(root, "usr", "sbin", "nginx")
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return nil, "", fmt.Errorf("nginx image: %s -v: %w: %s", bin, err, out)
	}
	m := regexp.MustCompile(`nginx/([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return nil, "", fmt.Errorf("nginx image: no version in %q", out)
	}
	version := string(m[1])
	libs, err := sharedLibraries(ctx, bin)
	if err != nil {
		return nil, "", fmt.Errorf("nginx image: %w", err)
	}
	files := []File{
		{Path: "/etc/nginx/nginx.conf", Data: []byte(nginxConfig), Mode: 0o644},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"), Mode: 0o644},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n"), Mode: 0o644},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/var/log/nginx", Dir: true, Mode: 0o755},
		{Path: "/var/lib/nginx", Dir: true, Mode: 0o755},
	}
	for _, c := range []struct {
		from, to string
		mode     int64
	}{
		{bin, "/usr/sbin/nginx", 0o755},
		{filepath.Join(root, "etc", "nginx", "mime.types"), "/etc/nginx/mime.types", 0o644},
		{filepath.Join(root, "usr", "share", "nginx", "html", "index.html"), "/usr/share/nginx/html/index.html", 0o644},
	} {
		data, err := os.ReadFile(c.from)
		if err != nil {
			return nil, "", fmt.Errorf("nginx image: %w", err)
		}
		files = append(files, File{Path: c.to, Data: data, Mode: c.mode})
	}
	for _, lib := range libs {
		data, err := os.ReadFile(lib)
		if err != nil {
			return nil, "", fmt.Errorf("nginx image: %w", err)
		}
		files = append(files, File{Path: lib, Data: data, Mode: 0o755})
	}
	img, err := FilesImage(arch, files, v1.Config{
		Cmd:        []string{"nginx", "-g", "daemon off;"},
		Env:        []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		StopSignal: "SIGQUIT",
		ExposedPorts: map[string]struct{}{
			"80/tcp": {},
		},
	}, created)
	if err != nil {
		return nil, "", fmt.Errorf("nginx image: %w", err)
	}
	return img, version, nil
}

// debianPackages downloads packages with apt-get into cache (unless they
// are there) and returns a directory they are extracted into.
func debianPackages(ctx context.Context, cache string, packages ...string) (string, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	var debs []string
	for _, p := range packages {
		found, _ := filepath.Glob(filepath.Join(cache, p+"_*.deb"))
		if len(found) == 0 {
			download := func() ([]byte, error) {
				cmd := exec.CommandContext(ctx, "apt-get", "download", p)
				cmd.Dir = cache
				return cmd.CombinedOutput()
			}
			if out, err := download(); err != nil {
				// A fresh machine may have no package lists yet.
				if uout, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
					return "", fmt.Errorf("apt-get download %s: %v: %s; apt-get update: %v: %s", p, err, out, uerr, uout)
				}
				if out, err := download(); err != nil {
					return "", fmt.Errorf("apt-get download %s: %w: %s", p, err, out)
				}
			}
			if found, _ = filepath.Glob(filepath.Join(cache, p+"_*.deb")); len(found) == 0 {
				return "", fmt.Errorf("apt-get download %s left no package in %s", p, cache)
			}
		}
		debs = append(debs, found[len(found)-1])
	}
	root := filepath.Join(cache, "root")
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	for _, deb := range debs {
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, out)
		}
	}
	return root, nil
}

// sharedLibraries returns the absolute paths of the shared libraries bin
// needs (its dynamic loader included), as ldd resolves them here.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 3 && f[1] == "=>":
			return nil, fmt.Errorf("%s needs %s, which this machine lacks", bin, f[0])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // the dynamic loader
		}
	}
	if len(libs) == 0 {
		return nil, errors.New("ldd found no libraries: is nginx not dynamically linked?")
	}
	return libs, nil
}
