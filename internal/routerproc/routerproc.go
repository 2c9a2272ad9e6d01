// Package routerproc holds what internal/frr and internal/bird share about
// the processes of a router daemon run in a network namespace for the
// tests and the lab: a state directory per router, named so that a later
// run can tell a crashed run's leftovers from a live run's routers; the
// removal of those leftovers; a daemon started in its own process group
// with its output kept; its graceful stop; and the synchronized buffer
// that keeps the output.
package routerproc

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
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

// NewDir returns a fresh directory name under base (for example
// /run/herald-frr) for the router called name. The name starts with this
// process's id, which is how RemoveLeftovers tells a crashed run's
// directories from those of a run still going; a random part keeps two
// routers of one process apart. The directory is not created.
func NewDir(base, name string) (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random directory name: %w", err)
	}
	return filepath.Join(base, fmt.Sprintf("%d-%s-%s", os.Getpid(), hex.EncodeToString(b), name)), nil
}

// MakeDir creates a router's directory dir (and its parents) and gives it
// to owner, the user its daemons drop root for, so that they can create
// their sockets and pid files in it; with a nil owner it stays root's.
func MakeDir(dir string, owner *user.User) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the router's directory: %w", err)
	}
	if owner == nil {
		return nil
	}
	uid, err := strconv.Atoi(owner.Uid)
	if err != nil {
		return fmt.Errorf("uid of %s: %w", owner.Username, err)
	}
	gid, err := strconv.Atoi(owner.Gid)
	if err != nil {
		return fmt.Errorf("gid of %s: %w", owner.Username, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("give the router's directory to %s: %w", owner.Username, err)
	}
	return nil
}

// RemoveLeftovers removes the directories under base that NewDir named
// for a process that no longer runs, after killing their daemons: the
// processes whose pids the directory's files matching pidFiles (a
// filepath.Match pattern such as "*.pid") hold. A process is killed only
// if its command line names the directory, so a pid reused since by
// another process is left alone. Directories of this process or of a
// live one, and names NewDir does not make, are kept. A missing base is
// no error.
func RemoveLeftovers(base, pidFiles string) error {
	// Checked once here, since killDaemons would take a bad pattern for
	// one that matches nothing and kill nothing.
	if _, err := filepath.Match(pidFiles, ""); err != nil {
		return fmt.Errorf("pid file pattern %q: %w", pidFiles, err)
	}
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list router directories: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !leftover(e.Name()) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		killDaemons(dir, pidFiles)
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove a leftover router directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// leftover reports whether name is a directory NewDir named for another
// process that no longer runs.
func leftover(name string) bool {
	pidStr, _, ok := strings.Cut(name, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid == os.Getpid() {
		return false
	}
	// Signal 0 checks that the process exists without touching it.
	return syscall.Kill(pid, 0) != nil
}

// killDaemons sends SIGKILL to the processes named by dir's files that
// match pattern and whose command lines name dir. Unreadable files and
// pids are skipped: the directory goes anyway, and a daemon that cannot
// be found is one that cannot be killed safely.
func killDaemons(dir, pattern string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if ok, _ := filepath.Match(pattern, e.Name()); !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		// Never 1 (init) or a process group (0 and below), whatever the
		// file says.
		if err != nil || pid <= 1 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// InNamespace returns the command line that runs argv in a network
// namespace (as `ip netns` names it) with `ip netns exec`. That execs
// argv, so the process Start starts from it is the daemon itself: Stop
// signals the daemon, and its pid is the one the daemon writes to its
// pid file, which RemoveLeftovers relies on.
func InNamespace(namespace string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", namespace}, argv...)
}

// Process is a daemon started by Start.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  Buffer
	done chan struct{}
}

// Start starts argv (program and arguments) as the daemon called name,
// with its standard output and error kept for Output. It runs in a
// process group of its own, so that a Ctrl-C of the test run or lab
// reaches it only through Stop, in the order its router stops its
// daemons.
func Start(name string, argv ...string) (*Process, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: no command", name)
	}
	p := &Process{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name returns the name the process was started with.
func (p *Process) Name() string { return p.name }

// Done is closed once the process has exited and its output is read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Output returns what the process wrote to its standard output and error
// so far.
func (p *Process) Output() string { return p.out.String() }

// Stop sends the process SIGTERM, on which a routing daemon withdraws its
// kernel routes and closes its sessions, and SIGKILL if it has not exited
// after grace, so that a hung daemon cannot hang its router's Close. It
// returns once the process has exited, with an error if it had to be
// killed. Stopping a process that already exited does nothing.
func (p *Process) Stop(grace time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s ignored SIGTERM for %v and was killed", p.name, grace)
}

// Buffer is a bytes.Buffer safe for concurrent writers and readers: a
// daemon's output is written by os/exec's copier while the router's Logs
// and error messages read it. The zero Buffer is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
