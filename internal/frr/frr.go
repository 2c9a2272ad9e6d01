// Package frr runs FRR (Debian's frr package: zebra, bgpd, bfdd) as a
// router inside a network namespace, for the BGP tests and the lab's
// top-of-rack router.
//
// Several routers can run at once: each has a directory of its own for
// its sockets (vty, zserv, bfdd control), pid files and configuration,
// passed to every daemon, so nothing touches /etc/frr or /run/frr. The
// daemons start with an empty configuration; Start then applies the
// router's configuration with vtysh -f, so a mistake in it is an error
// that names the line rather than a warning in a log.
//
// Routers die with Close. A router left behind by a crashed run is
// removed by RemoveLeftovers: directories are named after the creating
// process, as the network namespaces of internal/netnstest are.
package frr

import (
	"context"
	"encoding/json"
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

// Binaries is where Debian installs FRR's daemons.
const Binaries = "/usr/lib/frr"

// Available reports what is missing to run a router: FRR's daemons,
// vtysh, iproute2's ip, and the frr user the daemons run as.
func Available() error {
	var missing []string
	for _, d := range []string{"zebra", "bgpd", "bfdd"} {
		if _, err := os.Stat(filepath.Join(Binaries, d)); err != nil {
			missing = append(missing, filepath.Join(Binaries, d))
		}
	}
	for _, c := range []string{"vtysh", "ip"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if _, err := user.Lookup("frr"); err != nil {
		missing = append(missing, "user frr")
	}
	if len(missing) > 0 {
		return fmt.Errorf("FRR is not installed (apt-get install frr): missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Options describe one router.
type Options struct {
	// Namespace is the network namespace (as `ip netns` names it) the
	// daemons run in; required.
	Namespace string
	// Dir holds the router's sockets, pid files, configuration and logs.
	// Start creates it and gives it to the frr user, so it must not be
	// inside a directory that user cannot enter (such as a test's
	// TempDir, which is mode 0700): use NewDir.
	Dir string
	// Config is the router's configuration in frr.conf syntax (zebra,
	// bgpd and bfdd commands), applied with vtysh -f after the daemons
	// started.
	Config string
	// BFD also starts bfdd.
	BFD bool
	// StartTimeout bounds the wait for the daemons' vty sockets; 0 means
	// 10 s.
	StartTimeout time.Duration
}

// Router is a running FRR instance.
type Router struct {
	opts  Options
	procs []*routerproc.Process // in the order they started
}

// stopGrace is how long Close gives a daemon between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// NewDir returns a fresh directory name under base (for example
// /run/herald-frr) that RemoveLeftovers recognises: it starts with this
// process's id. The directory is not created.
func NewDir(base, name string) (string, error) {
	dir, err := routerproc.NewDir(base, name)
	if err != nil {
		return "", fmt.Errorf("frr: %w", err)
	}
	return dir, nil
}

// Start starts zebra, bgpd and (with Options.BFD) bfdd in the namespace
// and applies the configuration. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Router, error) {
	if opts.Namespace == "" || opts.Dir == "" {
		return nil, errors.New("frr: Namespace and Dir are required")
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
	r := &Router{opts: opts}
	empty := filepath.Join(opts.Dir, "empty.conf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return nil, fmt.Errorf("frr: %w", err)
	}
	names := []string{"zebra", "bgpd"}
	if opts.BFD {
		names = append(names, "bfdd")
	}
	for _, name := range names {
		args := []string{filepath.Join(Binaries, name),
			"--vty_socket", opts.Dir,
			"-z", filepath.Join(opts.Dir, "zserv.api"),
			"-i", filepath.Join(opts.Dir, name+".pid"),
			"-f", empty,
			"-P", "0", // no vty TCP port: vtysh uses the socket
			"--log", "stdout",
		}
		if name == "bfdd" {
			args = append(args, "--bfdctl", filepath.Join(opts.Dir, "bfdd.sock"))
		}
		if err := r.startDaemon(name, args); err != nil {
			r.Close()
			return nil, err
		}
		// zebra first: the others connect to its zserv socket.
		if err := r.waitSocket(ctx, name); err != nil {
			r.Close()
			return nil, err
		}
	}
	if opts.Config != "" {
		conf := filepath.Join(opts.Dir, "frr.conf")
		if err := os.WriteFile(conf, []byte(opts.Config), 0o644); err != nil {
			r.Close()
			return nil, fmt.Errorf("frr: %w", err)
		}
		out, err := r.vtysh(ctx, "-f", conf)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("frr: apply configuration: %w\n%s", err, out)
		}
	}
	return r, nil
}

// prepareDir creates dir for the frr user.
func prepareDir(dir string) error {
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	if err := routerproc.MakeDir(dir, u); err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	return nil
}

// startDaemon starts argv (a daemon and its arguments) in the router's
// namespace; Close stops it.
func (r *Router) startDaemon(name string, argv []string) error {
	p, err := routerproc.Start(name, routerproc.InNamespace(r.opts.Namespace, argv...)...)
	if err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	r.procs = append(r.procs, p)
	return nil
}

// waitSocket waits until a daemon's vty socket exists, or it exited.
func (r *Router) waitSocket(ctx context.Context, name string) error {
	d := r.procs[len(r.procs)-1]
	sock := filepath.Join(r.opts.Dir, name+".vty")
	deadline := time.Now().Add(r.opts.StartTimeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case <-d.Done():
			return fmt.Errorf("frr: %s exited at start: %s", name, d.Output())
		case <-ctx.Done():
			return fmt.Errorf("frr: wait for %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("frr: %s did not open %s within %v: %s", name, sock, r.opts.StartTimeout, d.Output())
		}
	}
}

// Dir returns the router's directory.
func (r *Router) Dir() string { return r.opts.Dir }

// Namespace returns the router's network namespace.
func (r *Router) Namespace() string { return r.opts.Namespace }

// VTY runs vtysh commands (each as a -c) and returns their output.
func (r *Router) VTY(ctx context.Context, cmds ...string) (string, error) {
	args := make([]string, 0, 2*len(cmds))
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return r.vtysh(ctx, args...)
}

// VTYJSON runs one vtysh command that prints JSON and decodes it into v.
func (r *Router) VTYJSON(ctx context.Context, cmd string, v any) error {
	out, err := r.VTY(ctx, cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("frr: %s: decode %q: %w", cmd, out, err)
	}
	return nil
}

func (r *Router) vtysh(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "vtysh", append([]string{"--vty_socket", r.opts.Dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Logs returns what the daemons wrote so far, one section per daemon.
func (r *Router) Logs() string {
	var b strings.Builder
	for _, d := range r.procs {
		fmt.Fprintf(&b, "==== %s ====\n%s\n", d.Name(), d.Output())
	}
	return b.String()
}

// Close stops the daemons this router started (SIGTERM, then SIGKILL
// after 5 s) in reverse order and removes the directory. Routes zebra
// installed leave the kernel with it.
func (r *Router) Close() error {
	var errs []error
	// Reverse order: zebra last, after the daemons that are its clients.
	for i := len(r.procs) - 1; i >= 0; i-- {
		if err := r.procs[i].Stop(stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("frr: %w", err))
		}
	}
	r.procs = nil
	if err := os.RemoveAll(r.opts.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RemoveLeftovers stops the daemons of routers that a process no longer
// running left under base (directories NewDir named) and removes their
// directories. A daemon is killed only if its command line names the
// directory, so a pid reused since by another process is left alone.
func RemoveLeftovers(base string) error {
	// Every daemon writes its pid to NAME.pid (Start's -i).
	if err := routerproc.RemoveLeftovers(base, "*.pid"); err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	return nil
}
