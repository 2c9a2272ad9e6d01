package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	bin    = "/usr/local/bin/herald"
	labBin = "/usr/local/bin/herald-lab"
)

func TestResolve(t *testing.T) {
	bins := Binaries{Lab: labBin, Herald: bin}
	builtin := func(args ...string) []string { return append([]string{labBin, "builtin"}, args...) }
	tests := []struct {
		image         string
		command, args []string
		want          []string // nil: an error is expected
		unknown       bool     // the error wraps ErrUnknownImage
	}{
		{image: "nginx", want: builtin("nginx")},
		{image: "nginx:latest", want: builtin("nginx")},
		{image: "docker.io/library/nginx:1.27@sha256:0123456789abcdef", want: builtin("nginx")},
		{image: "nginx@sha256:0123456789abcdef", want: builtin("nginx")},
		{image: "nginx", args: []string{"nginx", "-g", "daemon off;"}, want: builtin("nginx")},
		{image: "nginx", command: []string{"/usr/sbin/nginx"}, args: []string{"-g", "daemon off;"}, want: builtin("nginx")},
		{image: "nginx", command: []string{"sh", "-c", "sleep 1"}},
		{image: "nginx", args: []string{"-g", "daemon off;"}},
		{image: "registry.k8s.io/e2e-test-images/agnhost:2.53", args: []string{"netexec", "--http-port=8080"},
			want: builtin("agnhost", "netexec", "--http-port=8080")},
		{image: "agnhost", want: builtin("agnhost", "pause")},
		{image: "agnhost:2.53", command: []string{"/agnhost"}, args: []string{"netexec"}, want: builtin("agnhost", "netexec")},
		{image: "agnhost", command: []string{"agnhost", "netexec"}, args: []string{"--udp-port=-1"},
			want: builtin("agnhost", "netexec", "--udp-port=-1")},
		{image: "agnhost", command: []string{"/agnhost"}, want: builtin("agnhost")},
		{image: "agnhost", command: []string{"/bin/sh"}, args: []string{"-c", "true"}},
		{image: "ghcr.io/herald-lb/herald:0.1.0", args: []string{"agent"}, want: []string{bin, "agent"}},
		{image: "localhost:5000/herald", want: []string{bin}},
		{image: "localhost:5000/herald:dev", command: []string{"/herald", "agent"}, args: []string{"--v=1"},
			want: []string{bin, "agent", "--v=1"}},
		{image: "herald", command: []string{"sh"}},
		{image: "redis:7", unknown: true},
		{image: "localhost:5000/nginx-unprivileged", unknown: true},
		{image: "nginx/redis", unknown: true},
		{image: "", unknown: true},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.image, tt.command, tt.args, bins)
		switch {
		case tt.want != nil && (err != nil || !slices.Equal(got, tt.want)):
			t.Errorf("Resolve(%q, %q, %q) = %q, %v; want %q", tt.image, tt.command, tt.args, got, err, tt.want)
		case tt.want == nil && err == nil:
			t.Errorf("Resolve(%q, %q, %q) = %q; want an error", tt.image, tt.command, tt.args, got)
		case tt.want == nil && errors.Is(err, ErrUnknownImage) != tt.unknown:
			t.Errorf("Resolve(%q, %q, %q): errors.Is(%v, ErrUnknownImage) = %v", tt.image, tt.command, tt.args, err, !tt.unknown)
		}
	}
}

func TestResolveUnknownMessage(t *testing.T) {
	_, err := Resolve("redis:7", nil, nil, Binaries{Lab: labBin, Herald: bin})
	want := `image "redis:7": not a built-in program of the Herald lab (known: nginx, agnhost, herald)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v; want %s", err, want)
	}
}

// start runs a built-in program and returns the address it listens on and a
// function that cancels it and checks that Run returns nil promptly.
func start(t *testing.T, name string, args []string, stdout io.Writer) (net.Addr, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	addrs := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, name, args, stdout, func(a net.Addr) { addrs <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-errc:
		cancel()
		t.Fatalf("Run(%s) = %v before listening", name, err)
	}
	stop := func() {
		t.Helper()
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run(%s) = %v after cancel; want nil", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Run(%s) did not return after cancel", name)
		}
	}
	return addr, stop
}

func get(t *testing.T, c *http.Client, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestNginx(t *testing.T) {
	var log strings.Builder // written by Run's handlers, read after Run returns
	// A root that does not exist: the welcome page whatever this machine
	// has in /usr/share/nginx/html.
	root := filepath.Join(t.TempDir(), "none")
	addr, stop := start(t, "nginx", []string{"--listen", "127.0.0.1:0", "--root", root}, &log)
	base := "http://" + addr.String()
	tests := []struct {
		method, path string
		status       int
		body         string // a substring of the body
	}{
		{"GET", "/", 200, "<title>Welcome to nginx!</title>"},
		{"GET", "/index.html", 200, "Welcome to nginx!"},
		{"HEAD", "/", 200, ""},
		{"GET", "/nope", 404, "<h1>404 Not Found</h1>"},
		{"POST", "/", 405, "405"},
	}
	for _, tt := range tests {
		status, header, body := get(t, http.DefaultClient, tt.method, base+tt.path)
		if status != tt.status || !strings.Contains(body, tt.body) || header.Get("Server") != "nginx" {
			t.Errorf("%s %s = %d, Server %q, body %q; want %d, Server nginx, body containing %q",
				tt.method, tt.path, status, header.Get("Server"), body, tt.status, tt.body)
		}
		if tt.method == "HEAD" && (body != "" || header.Get("Content-Length") != strconv.Itoa(len(welcomePage))) {
			t.Errorf("HEAD / = body %q, Content-Length %s; want no body, %d", body, header.Get("Content-Length"), len(welcomePage))
		}
	}
	stop()
	if want := `"GET /nope HTTP/1.1" 404 `; !strings.Contains(log.String(), want) {
		t.Errorf("access log %q lacks %q", log.String(), want)
	}
}

// With a root directory nginx serves its files, like the official image
// does from /usr/share/nginx/html; "/" stays the welcome page until the root
// has an index.html.
func TestNginxRoot(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(root, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "docs", "index.html"), []byte("<p>docs</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	addr, stop := start(t, "nginx", []string{"--listen", "127.0.0.1:0", "--root", root}, &log)
	base := "http://" + addr.String()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	status, header, body := get(t, noRedirect, "GET", base+"/big.bin")
	if status != 200 || body != string(big) || header.Get("Server") != "nginx" || header.Get("Content-Length") != strconv.Itoa(len(big)) {
		t.Errorf("GET /big.bin = %d, Server %q, Content-Length %s, %d bytes (equal: %v); want 200, nginx, the file's %d bytes",
			status, header.Get("Server"), header.Get("Content-Length"), len(body), body == string(big), len(big))
	}
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/big.bin", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=10-19")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(part) != string(big[10:20]) {
		t.Errorf("GET /big.bin, Range bytes=10-19 = %d %q; want 206 %q", resp.StatusCode, part, big[10:20])
	}
	tests := []struct {
		method, path string
		status       int
		body         string // a substring of the body
		location     string
	}{
		{"GET", "/", 200, "Welcome to nginx!", ""},
		{"GET", "/index.html", 200, "Welcome to nginx!", ""},
		{"HEAD", "/big.bin", 200, "", ""},
		{"GET", "/docs/", 200, "<p>docs</p>", ""},
		{"GET", "/docs", 301, "", "/docs/"},
		{"GET", "/nope.bin", 404, "<h1>404 Not Found</h1>", ""},
		{"GET", "/../../etc/passwd", 404, "404", ""},
		{"GET", "/docs/nope/", 404, "404", ""},
		{"POST", "/big.bin", 405, "405", ""},
	}
	for _, tt := range tests {
		status, header, body := get(t, noRedirect, tt.method, base+tt.path)
		if status != tt.status || !strings.Contains(body, tt.body) || header.Get("Location") != tt.location {
			t.Errorf("%s %s = %d, Location %q, body %.80q; want %d, Location %q, body containing %q",
				tt.method, tt.path, status, header.Get("Location"), body, tt.status, tt.location, tt.body)
		}
	}

	// Once the root has an index.html, "/" is that file.
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<h1>mine</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/index.html"} {
		if status, _, body := get(t, noRedirect, "GET", base+p); status != 200 || body != "<h1>mine</h1>" {
			t.Errorf("GET %s with an index.html in the root = %d %q; want 200 <h1>mine</h1>", p, status, body)
		}
	}
	stop()
	if want := fmt.Sprintf(`"GET /big.bin HTTP/1.1" 200 %d `, len(big)); !strings.Contains(log.String(), want) {
		t.Errorf("access log %q lacks %q", log.String(), want)
	}
}

func TestAgnhostNetexec(t *testing.T) {
	addr, stop := start(t, "agnhost", []string{"netexec", "--http-port=0", "--udp-port=8081"}, io.Discard)
	defer stop()
	base := "http://127.0.0.1:" + strconv.Itoa(addr.(*net.TCPAddr).Port)
	// Record the client side of each connection to compare with /clientip.
	local := make(chan string, 1)
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				local <- c.LocalAddr().String()
			}
			return c, err
		},
	}}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		status int
		want   func(body, local string) bool
	}{
		{"/", 200, func(b, _ string) bool { return strings.HasPrefix(b, "NOW: ") }},
		{"/anything", 200, func(b, _ string) bool { return strings.HasPrefix(b, "NOW: ") }},
		{"/clientip", 200, func(b, l string) bool { return b == l }},
		{"/hostname", 200, func(b, _ string) bool { return b == hostname }},
		{"/echo?msg=hi", 200, func(b, _ string) bool { return b == "hi" }},
		{"/healthz", 200, func(string, string) bool { return true }},
	}
	for _, tt := range tests {
		status, _, body := get(t, client, "GET", base+tt.path)
		l := <-local
		if status != tt.status || !tt.want(body, l) {
			t.Errorf("GET %s = %d %q (client %s); want %d and a matching body", tt.path, status, body, l, tt.status)
		}
	}
}

func TestAgnhostPause(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, "agnhost", []string{"pause"}, io.Discard) }()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run(agnhost pause) = %v; want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run(agnhost pause) did not return after cancel")
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // a substring of the error
	}{
		{"redis", nil, `unknown built-in program "redis"`},
		{"agnhost", nil, "missing subcommand"},
		{"agnhost", []string{"porter"}, `unsupported subcommand "porter"`},
		{"agnhost", []string{"netexec", "--http-port=x"}, "agnhost netexec:"},
		{"nginx", []string{"--bogus"}, "nginx:"},
		{"nginx", []string{"--listen", "256.0.0.1:0"}, "listen:"},
	}
	for _, tt := range tests {
		err := Run(t.Context(), tt.name, tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%s, %q) = %v; want an error containing %q", tt.name, tt.args, err, tt.want)
		}
	}
}
