// Package bird runs BIRD 2 (Debian's bird2 package) as a router inside a
// network namespace, for the BGP speaker's interop tests and, later, the
// lab's second router.
//
// Several routers can run at once: each has a directory of its own for
// its control socket, pid file and configuration, so nothing touches
// /etc/bird or /run/bird. Start checks the configuration with bird -p
// first, so a mistake in it is an error that names the file, line and
// column rather than a daemon that exits; BIRD then runs in the
// foreground (-f) as the bird user, with its log on stderr, kept for
// Logs.
//
// Reads go through birdc -v (the reply codes tell a table from an error:
// 8001 "Network not found" is no route, not a failure) and are parsed
// into the types of show.go.
//
// Routers die with Close. A router left behind by a crashed run is
// removed by RemoveLeftovers: directories are named after the creating
// process, as those of internal/frr and the network namespaces of
// internal/netnstest are.
package bird

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-lb/herald/internal/routerproc"
)

// Where Debian's bird2 package installs the daemon and its client.
const (
	Daemon = "/usr/sbin/bird"
	Client = "/usr/sbin/birdc"
)

// User is the user BIRD runs as when it exists (Debian's package creates
// it); BIRD keeps the capabilities it needs (CAP_NET_ADMIN,
// CAP_NET_BIND_SERVICE, CAP_NET_RAW) when it drops root.
const User = "bird"

// Available reports what is missing to run a router: BIRD 2's daemon and
// client and iproute2's ip.
func Available() error {
	var missing []string
	for _, f := range []string{Daemon, Client} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip")
	}
	if len(missing) > 0 {
		return fmt.Errorf("BIRD 2 is not installed (apt-get install bird2): missing %s", strings.Join(missing, ", "))
	}
	out, err := exec.Command(Daemon, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("bird --version: %w: %s", err, out)
	}
	if !strings.Contains(string(out), "BIRD version 2.") {
		return fmt.Errorf("%s is not BIRD 2: %s", Daemon, strings.TrimSpace(string(out)))
	}
	return nil
}

// Options describe one router.
type Options struct {
	// Namespace is the network namespace (as `ip netns` names it) BIRD
	// runs in; required.
	Namespace string
	// Dir holds the router's control socket, pid file and
	// configuration. Start creates it and gives it to the bird user, so
	// it must not be inside a directory that user cannot enter (such as
	// a test's TempDir, which is mode 0700): use NewDir.
	Dir string
	// Config is the router's configuration in bird.conf syntax, written
	// as it is to Dir/bird.conf. Start adds only `log stderr all;` in
	// front of it (in a file that includes it), for Logs.
	Config string
	// StartTimeout bounds the wait for the control socket; 0 means 10 s.
	StartTimeout time.Duration
}

// Router is a running BIRD.
type Router struct {
	opts Options
	proc *routerproc.Process
}

// stopGrace is how long Close gives BIRD between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// NewDir returns a fresh directory name under base (for example
// /run/herald-bird) that RemoveLeftovers recognises: it starts with this
// process's id. The directory is not created.
func NewDir(base, name string) (string, error) {
	dir, err := routerproc.NewDir(base, name)
	if err != nil {
		return "", fmt.Errorf("bird: %w", err)
	}
	return dir, nil
}

// The files of a router's directory.
const (
	mainFile   = "main.conf" // log stderr, include bird.conf: what bird -c reads
	configFile = "bird.conf" // Options.Config
	socketFile = "bird.ctl"
	pidFile    = "bird.pid"
)

// wrapper is the file bird -c reads: the log on stderr (for Logs), then
// the router's configuration.
func wrapper(config string) string {
	return fmt.Sprintf("log stderr all;\ninclude %q;\n", config)
}

// Check parses a configuration with bird -p, as Start does, without
// running anything; the error names the file, line and column.
func Check(ctx context.Context, config string) error {
	dir, err := os.MkdirTemp("", "herald-bird-check-")
	if err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	defer os.RemoveAll(dir)
	return check(ctx, dir, "check", config)
}

// check writes config to dir/NAME.conf and a wrapper that includes it to
// dir/NAME-main.conf, and parses the wrapper with bird -p.
func check(ctx context.Context, dir, name, config string) error {
	conf := filepath.Join(dir, name+".conf")
	main := filepath.Join(dir, name+"-main.conf")
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	if err := os.WriteFile(main, []byte(wrapper(conf)), 0o644); err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Daemon, "-p", "-c", main).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bird: configuration: %s", bytes.TrimPrefix(bytes.TrimSpace(out), []byte("bird: ")))
	}
	return nil
}

// Start checks the configuration and starts BIRD in the namespace. It
// returns once the control socket answers; the protocols may still be
// starting. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Router, error) {
	if opts.Namespace == "" || opts.Dir == "" {
		return nil, errors.New("bird: Namespace and Dir are required")
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if err := prepareDir(opts.Dir); err != nil {
		return nil, err
	}
	// The check writes next.conf; once it passes the same text is the
	// router's bird.conf.
	if err := check(ctx, opts.Dir, "next", opts.Config); err != nil {
		_ = os.RemoveAll(opts.Dir)
		return nil, err
	}
	r := &Router{opts: opts}
	if err := r.install(); err != nil {
		_ = os.RemoveAll(opts.Dir)
		return nil, err
	}
	args := []string{Daemon, "-f",
		"-c", filepath.Join(opts.Dir, mainFile),
		"-s", r.Socket(),
		"-P", filepath.Join(opts.Dir, pidFile),
	}
	if _, err := user.Lookup(User); err == nil {
		args = append(args, "-u", User, "-g", User)
	}
	p, err := routerproc.Start("bird", routerproc.InNamespace(opts.Namespace, args...)...)
	if err != nil {
		_ = os.RemoveAll(opts.Dir)
		return nil, fmt.Errorf("bird: %w", err)
	}
	r.proc = p
	if err := r.waitReady(ctx); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// install makes the checked next.conf the router's configuration.
func (r *Router) install() error {
	dir := r.opts.Dir
	if err := os.Rename(filepath.Join(dir, "next.conf"), filepath.Join(dir, configFile)); err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	_ = os.Remove(filepath.Join(dir, "next-main.conf"))
	if err := os.WriteFile(filepath.Join(dir, mainFile), []byte(wrapper(filepath.Join(dir, configFile))), 0o644); err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	return nil
}

// prepareDir creates dir for the bird user (root's when it does not
// exist).
func prepareDir(dir string) error {
	owner, err := user.Lookup(User)
	if err != nil {
		owner = nil // no bird user: BIRD runs as root
	}
	if err := routerproc.MakeDir(dir, owner); err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	return nil
}

// waitReady waits until the control socket answers, or BIRD exited.
func (r *Router) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(r.opts.StartTimeout)
	var lastErr error
	for {
		if _, err := os.Stat(r.Socket()); err == nil {
			if _, lastErr = r.Command(ctx, "show", "status"); lastErr == nil {
				return nil
			}
		}
		select {
		case <-r.proc.Done():
			return fmt.Errorf("bird: exited at start: %s", r.proc.Output())
		case <-ctx.Done():
			return fmt.Errorf("bird: wait for the control socket: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bird: control socket %s did not answer within %v (%v): %s", r.Socket(), r.opts.StartTimeout, lastErr, r.proc.Output())
		}
	}
}

// Dir returns the router's directory.
func (r *Router) Dir() string { return r.opts.Dir }

// Namespace returns the router's network namespace.
func (r *Router) Namespace() string { return r.opts.Namespace }

// Socket returns the path of the router's control socket.
func (r *Router) Socket() string { return filepath.Join(r.opts.Dir, socketFile) }

// Reconfigure checks config with bird -p, makes it the router's
// configuration and has BIRD apply it (birdc configure: protocols whose
// settings changed restart, as BIRD decides).
func (r *Router) Reconfigure(ctx context.Context, config string) error {
	if err := check(ctx, r.opts.Dir, "next", config); err != nil {
		return err
	}
	if err := r.install(); err != nil {
		return err
	}
	if _, err := r.Command(ctx, "configure"); err != nil {
		return err
	}
	r.opts.Config = config
	return nil
}

// Command runs one birdc command (its words as birdc takes them, e.g.
// "show", "route", "all") and returns the reply's lines. A reply with an
// error code is a *ReplyError.
func (r *Router) Command(ctx context.Context, words ...string) ([]Line, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := append([]string{"-v", "-s", r.Socket()}, words...)
	out, runErr := exec.CommandContext(ctx, Client, args...).CombinedOutput()
	lines, err := ParseReply(string(out))
	var re *ReplyError
	if errors.As(err, &re) {
		return lines, fmt.Errorf("birdc %s: %w", strings.Join(words, " "), err)
	}
	if err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("birdc %s: %w: %s", strings.Join(words, " "), runErr, bytes.TrimSpace(out))
		}
		return nil, fmt.Errorf("birdc %s: %w", strings.Join(words, " "), err)
	}
	if runErr != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("birdc %s: %w", strings.Join(words, " "), ctx.Err())
	}
	return lines, nil
}

// Logs returns what BIRD wrote to stderr so far.
func (r *Router) Logs() string { return r.proc.Output() }

// Close stops BIRD (SIGTERM, which withdraws its kernel routes and closes
// its sessions; SIGKILL after 5 s) and removes the directory.
func (r *Router) Close() error {
	var errs []error
	// A second Close finds BIRD exited: Stop then does nothing.
	if err := r.proc.Stop(stopGrace); err != nil {
		errs = append(errs, fmt.Errorf("bird: %w", err))
	}
	if err := os.RemoveAll(r.opts.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RemoveLeftovers stops the BIRDs of routers that a process no longer
// running left under base (directories NewDir named) and removes their
// directories. A process is killed only if its command line names the
// directory, so a pid reused since by another process is left alone.
func RemoveLeftovers(base string) error {
	if err := routerproc.RemoveLeftovers(base, pidFile); err != nil {
		return fmt.Errorf("bird: %w", err)
	}
	return nil
}
