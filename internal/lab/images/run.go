package images

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// shutdownTimeout bounds how long a stopping server waits for in-flight
// requests: the kubelet's grace period is longer, and lab programs only
// serve short requests.
const shutdownTimeout = 3 * time.Second

// Run runs the built-in program name ("nginx" or "agnhost") with args until
// ctx is done, writing its logs to stdout. Cancelling ctx (the caller does on
// SIGTERM) shuts the program down gracefully and Run returns nil.
func Run(ctx context.Context, name string, args []string, stdout io.Writer) error {
	return run(ctx, name, args, stdout, nil)
}

// run is Run with a hook called with the address of each listener once it
// is bound, so that tests can listen on port 0 and learn the port.
func run(ctx context.Context, name string, args []string, stdout io.Writer, ready func(net.Addr)) error {
	if ready == nil {
		ready = func(net.Addr) {}
	}
	switch name {
	case "nginx":
		return runNginx(ctx, args, stdout, ready)
	case "agnhost":
		return runAgnhost(ctx, args, stdout, ready)
	}
	return fmt.Errorf("unknown built-in program %q (known: nginx, agnhost)", name)
}

// newFlags returns a flag set that reports errors to the caller instead of
// printing usage and exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// serve serves h on addr until ctx is done, then shuts down gracefully.
func serve(ctx context.Context, addr string, h http.Handler, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ready(ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		// Requests outlived the timeout: drop them, stopping is what was asked.
		_ = srv.Close()
	}
	<-done
	return nil
}

// welcomePage is nginx's default index.html.
const welcomePage = `<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
`

// defaultRoot is the official image's document root.
const defaultRoot = "/usr/share/nginx/html"

// runNginx serves what the official nginx image serves out of the box: the
// files under --root (GET and HEAD, with ranges), "/" being its index.html.
// Without a root directory, or without an index.html in it, "/" and
// "/index.html" are the default welcome page, so a Pod that mounts a volume
// of files at /usr/share/nginx/html keeps the welcome page unless it brings
// its own. ":80" listens on every IPv4 and IPv6 address, as nginx's default
// site does.
func runNginx(ctx context.Context, args []string, stdout io.Writer, ready func(net.Addr)) error {
	fs := newFlags("nginx")
	listen := fs.String("listen", ":80", "address to listen on")
	root := fs.String("root", defaultRoot, "directory of the files to serve")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	// log.Logger serialises writes from concurrent requests.
	access := log.New(stdout, "", 0)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lw := &loggingWriter{ResponseWriter: w}
		lw.Header().Set("Server", "nginx")
		serveNginx(lw, r, *root)
		// nginx's "combined" log format, which is what `kubectl logs` shows.
		access.Printf("%s - - [%s] %q %d %d %q %q", r.RemoteAddr, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
			r.Method+" "+r.URL.RequestURI()+" "+r.Proto, lw.status, lw.bytes, r.Referer(), r.UserAgent())
	})
	return serve(ctx, *listen, h, ready)
}

// serveNginx answers one request: a file under root, the welcome page, or
// one of nginx's error pages.
func serveNginx(w http.ResponseWriter, r *http.Request, root string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		nginxError(w, http.StatusMethodNotAllowed)
		return
	}
	name := path.Clean("/" + r.URL.Path)
	if strings.HasSuffix(r.URL.Path, "/") {
		name = path.Join(name, "index.html")
	}
	f, err := os.Open(filepath.Join(root, filepath.FromSlash(name)))
	var fi os.FileInfo
	if err == nil {
		defer f.Close()
		fi, err = f.Stat()
	}
	switch {
	case err == nil && fi.IsDir():
		// nginx redirects a directory without its slash.
		http.Redirect(w, r, name+"/", http.StatusMovedPermanently)
	case err == nil:
		http.ServeContent(w, r, name, fi.ModTime(), f)
	case name == "/index.html":
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", strconv.Itoa(len(welcomePage)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, welcomePage)
		}
	case errors.Is(err, os.ErrPermission):
		nginxError(w, http.StatusForbidden)
	default:
		nginxError(w, http.StatusNotFound)
	}
}

// nginxError writes nginx's built-in error page for status.
func nginxError(w http.ResponseWriter, status int) {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	body := "<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n<center><h1>" +
		text + "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// loggingWriter records the status and the body bytes of a response for
// the access log. It keeps the underlying writer's ReadFrom, so a file is
// still sent with sendfile(2).
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *loggingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *loggingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *loggingWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(w.ResponseWriter, src)
	}
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// runAgnhost runs a subcommand of Kubernetes' e2e test image agnhost.
func runAgnhost(ctx context.Context, args []string, stdout io.Writer, ready func(net.Addr)) error {
	if len(args) == 0 {
		return errors.New("agnhost: missing subcommand (supported: netexec, pause)")
	}
	switch args[0] {
	case "pause":
		<-ctx.Done()
		return nil
	case "netexec":
		return netexec(ctx, args[1:], stdout, ready)
	}
	return fmt.Errorf("agnhost: unsupported subcommand %q (supported: netexec, pause)", args[0])
}

// netexec serves the HTTP endpoints of agnhost netexec that Service tests
// use. UDP is not served: --udp-port is accepted so that upstream Pod specs
// run unchanged.
func netexec(ctx context.Context, args []string, stdout io.Writer, ready func(net.Addr)) error {
	fs := newFlags("netexec")
	httpPort := fs.Int("http-port", 8080, "HTTP port to listen on")
	fs.Int("udp-port", 8081, "ignored: UDP is not served")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("agnhost netexec: %w", err)
	}
	mux := http.NewServeMux()
	// Like upstream, "/" also answers every path no other endpoint matches.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "NOW: %v", time.Now())
	})
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) {
		name, err := os.Hostname()
		if err != nil {
			http.Error(w, fmt.Sprintf("hostname: %v", err), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, name)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.FormValue("msg"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	return serve(ctx, net.JoinHostPort("", strconv.Itoa(*httpPort)), mux, func(a net.Addr) {
		fmt.Fprintf(stdout, "Started HTTP server on %s\n", a)
		ready(a)
	})
}
