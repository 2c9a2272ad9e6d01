package registry_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/herald-lb/herald/internal/lab/labimages"
	"github.com/herald-lb/herald/internal/lab/registry"
)

// TestPushPull pushes an image over HTTP on loopback and pulls it back by
// tag from a second listener of the same registry: same digest, same
// files. A tag that was never pushed is not found.
func TestPushPull(t *testing.T) {
	reg, err := registry.New(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		reg.Serve(ln)
		addrs = append(addrs, ln.Addr().String())
	}
	img, err := labimages.FilesImage("amd64", []labimages.File{{Path: "/hello", Data: []byte("hi\n"), Mode: 0o644}},
		v1.Config{Cmd: []string{"/hello"}}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := registry.Push(ctx, addrs[0], "library/hello:1", img); err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(addrs[1]+"/library/hello:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	want, _ := img.Digest()
	if d, err := got.Digest(); err != nil || d != want {
		t.Errorf("pulled digest %v (%v), pushed %v", d, err, want)
	}
	missing, _ := name.NewTag(addrs[1]+"/library/hello:2", name.Insecure)
	if _, err := remote.Image(missing, remote.WithContext(ctx)); err == nil {
		t.Error("pulling a tag never pushed succeeded")
	}
	if err := registry.Push(ctx, addrs[0], "Not A Reference", img); err == nil {
		t.Error("pushing to an invalid reference succeeded")
	}
}
