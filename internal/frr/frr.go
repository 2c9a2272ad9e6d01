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
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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
	procs []*daemon
}

type daemon struct {
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// NewDir returns a fresh directory name under base (for example
// /run/herald-frr) that RemoveLeftovers recognises: it starts with this
// process's id. The directory is not created.
func NewDir(base, name string) (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return filepath.Join(base, fmt.Sprintf("%d-%s-%s", os.Getpid(), hex.EncodeToString(b), name)), nil
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
		args := []string{"netns", "exec", opts.Namespace, filepath.Join(Binaries, name),
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	return nil
}

func (r *Router) startDaemon(name string, args []string) error {
	d := &daemon{name: name, log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	// Its own process group, so a Ctrl-C of the test run reaches it only
	// through Close, in order; the pid is the daemon's own (ip netns exec
	// execs it).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("frr: start %s: %w", name, err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.done)
	}()
	r.procs = append(r.procs, d)
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
		case <-d.done:
			return fmt.Errorf("frr: %s exited at start: %s", name, d.log.String())
		case <-ctx.Done():
			return fmt.Errorf("frr: wait for %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("frr: %s did not open %s within %v: %s", name, sock, r.opts.StartTimeout, d.log.String())
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
		fmt.Fprintf(&b, "==== %s ====\n%s\n", d.name, d.log.String())
	}
	return b.String()
}

// Close stops the daemons this router started (SIGTERM, then SIGKILL
// after 5 s) in reverse order and removes the directory. Routes zebra
// installed leave the kernel with it.
func (r *Router) Close() error {
	var errs []error
	for i := len(r.procs) - 1; i >= 0; i-- {
		d := r.procs[i]
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
			errs = append(errs, fmt.Errorf("frr: %s ignored SIGTERM for 5 s and was killed", d.name))
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
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		dir := filepath.Join(base, e.Name())
		pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, pf := range pids {
			b, err := os.ReadFile(pf)
			if err != nil {
				continue
			}
			p, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || p <= 1 {
				continue
			}
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
				continue
			}
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncBuffer is a bytes.Buffer safe for the daemon's output copier and
// readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
