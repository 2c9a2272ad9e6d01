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
	"strconv"
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

// runNginx serves what the official nginx image serves out of the box.
// ":80" listens on every IPv4 and IPv6 address, as nginx's default site does.
func runNginx(ctx context.Context, args []string, stdout io.Writer, ready func(net.Addr)) error {
	fs := newFlags("nginx")
	listen := fs.String("listen", ":80", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	// log.Logger serialises writes from concurrent requests.
	access := log.New(stdout, "", 0)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := http.StatusOK, welcomePage
		switch {
		case r.URL.Path != "/" && r.URL.Path != "/index.html":
			status = http.StatusNotFound
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			status = http.StatusMethodNotAllowed
		}
		if status != http.StatusOK {
			text := strconv.Itoa(status) + " " + http.StatusText(status)
			body = "<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n<center><h1>" +
				text + "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
		}
		w.Header().Set("Server", "nginx")
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		// nginx's "combined" log format, which is what `kubectl logs` shows.
		access.Printf("%s - - [%s] %q %d %d %q %q", r.RemoteAddr, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
			r.Method+" "+r.URL.RequestURI()+" "+r.Proto, status, len(body), r.Referer(), r.UserAgent())
	})
	return serve(ctx, *listen, h, ready)
}

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
