package routerproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestNewDir(t *testing.T) {
	d, err := NewDir("/run/x", "router")
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("/run/x/%d-", os.Getpid())
	if !strings.HasPrefix(d, prefix) || !strings.HasSuffix(d, "-router") {
		t.Errorf("NewDir = %q, want %s…-router", d, prefix)
	}
	if d2, _ := NewDir("/run/x", "router"); d2 == d {
		t.Errorf("two NewDir calls gave %q", d)
	}
	// This process's own directory is never a leftover.
	if leftover(filepath.Base(d)) {
		t.Errorf("%s taken for a leftover", d)
	}
}

func TestMakeDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	tests := []struct {
		name    string
		owner   *user.User
		wantUID string
	}{
		{name: "root's", wantUID: "0"},
		{name: "the daemons' user's", owner: nobody, wantUID: nobody.Uid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "base", "router")
			if err := MakeDir(dir, tc.owner); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if uid := fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid); !fi.IsDir() || uid != tc.wantUID || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s: dir %v, owner %s, mode %v: want a directory of uid %s, 0755", dir, fi.IsDir(), uid, fi.Mode().Perm(), tc.wantUID)
			}
		})
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MakeDir(filepath.Join(file, "router"), nil); err == nil || !strings.Contains(err.Error(), "create the router's directory") {
		t.Errorf("under a file: %v, want an error that says what failed", err)
	}
}

func TestInNamespace(t *testing.T) {
	got := InNamespace("ns1", "/usr/sbin/bird", "-f")
	if want := []string{"ip", "netns", "exec", "ns1", "/usr/sbin/bird", "-f"}; !slices.Equal(got, want) {
		t.Errorf("InNamespace = %q, want %q", got, want)
	}
}

// deadPID returns a pid no process has, or skips the test.
func deadPID(t *testing.T) int {
	t.Helper()
	for p := 4000000; p > 300000; p -= 9973 {
		if syscall.Kill(p, 0) == syscall.ESRCH {
			return p
		}
	}
	t.Skip("no unused pid found")
	return 0
}

// sleeper starts a real sleep through a link named dir/sleep, so that its
// command line names dir as a daemon's names its router's directory. done
// is closed once it has exited (and been reaped: a zombie still answers
// signal 0).
func sleeper(t *testing.T, dir string) (pid int, done <-chan struct{}) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("no sleep: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "sleep")
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(c)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c
	})
	// Start returns once exec has begun, not finished: for a moment the
	// new process's command line reads empty (the kernel sets it up after
	// the close-on-exec that tells Start exec succeeded). A leftover
	// daemon is long past that; the sleeper must be too.
	cmdline := fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if b, err := os.ReadFile(cmdline); err == nil && strings.Contains(string(b), link) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never named %s", cmdline, link)
		}
	}
	return cmd.Process.Pid, c
}

// exited reports whether done is closed or closes within d.
func exited(done <-chan struct{}, d time.Duration) bool {
	// First on its own: select picks at random among ready cases.
	select {
	case <-done:
		return true
	default:
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func TestRemoveLeftovers(t *testing.T) {
	const (
		ownerDead = iota // a crashed run
		ownerSelf        // this process
		ownerLive        // another process that still runs
	)
	tests := []struct {
		name    string
		owner   int
		dirName string // the directory's name when not NewDir's form of owner
		pidFile string // under the directory, holding the daemon's pid
		pattern string
		// namesDir: the daemon's command line names the directory (it
		// is the router's); otherwise it names another directory.
		namesDir   bool
		wantKept   bool
		wantKilled bool
	}{
		{name: "crashed run's daemon", owner: ownerDead, pidFile: "bgpd.pid", pattern: "*.pid", namesDir: true, wantKilled: true},
		{name: "crashed run's daemon, exact pid file", owner: ownerDead, pidFile: "bird.pid", pattern: "bird.pid", namesDir: true, wantKilled: true},
		{name: "pid reused by another process", owner: ownerDead, pidFile: "zebra.pid", pattern: "*.pid"},
		{name: "pid file the pattern does not match", owner: ownerDead, pidFile: "zebra.pid", pattern: "bird.pid", namesDir: true},
		{name: "this process's router", owner: ownerSelf, pidFile: "bgpd.pid", pattern: "*.pid", namesDir: true, wantKept: true},
		{name: "a live process's router", owner: ownerLive, pidFile: "bgpd.pid", pattern: "*.pid", namesDir: true, wantKept: true},
		{name: "not a router directory", dirName: "notes", pidFile: "bgpd.pid", pattern: "*.pid", namesDir: true, wantKept: true},
		{name: "no pid in the name", dirName: "x-abcdef-router", pidFile: "bgpd.pid", pattern: "*.pid", namesDir: true, wantKept: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			name := tc.dirName
			if name == "" {
				pid := os.Getpid()
				switch tc.owner {
				case ownerDead:
					pid = deadPID(t)
				case ownerLive:
					pid, _ = sleeper(t, t.TempDir())
				}
				name = fmt.Sprintf("%d-abcdef-router", pid)
			}
			dir := filepath.Join(base, name)
			daemonDir := t.TempDir()
			if tc.namesDir {
				daemonDir = dir
			}
			pid, done := sleeper(t, daemonDir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, tc.pidFile), []byte(fmt.Sprintf("%d\n", pid)), 0o644); err != nil {
				t.Fatal(err)
			}

			if err := RemoveLeftovers(base, tc.pattern); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); (err == nil) != tc.wantKept {
				t.Errorf("%s kept: %v, want %v", dir, err == nil, tc.wantKept)
			}
			// A kill is seen at once; one that did not happen, after a
			// while.
			wait := 200 * time.Millisecond
			if tc.wantKilled {
				wait = 5 * time.Second
			}
			if got := exited(done, wait); got != tc.wantKilled {
				t.Errorf("daemon killed: %v, want %v", got, tc.wantKilled)
			}
		})
	}
}

func TestRemoveLeftoversErrors(t *testing.T) {
	if err := RemoveLeftovers(filepath.Join(t.TempDir(), "missing"), "*.pid"); err != nil {
		t.Errorf("missing base: %v", err)
	}
	if err := RemoveLeftovers(t.TempDir(), "[*.pid"); !errors.Is(err, filepath.ErrBadPattern) {
		t.Errorf("bad pattern: %v, want %v", err, filepath.ErrBadPattern)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveLeftovers(f, "*.pid"); err == nil || !strings.Contains(err.Error(), "list router directories") {
		t.Errorf("base is a file: %v, want an error that says what failed", err)
	}
}

func TestStartOutput(t *testing.T) {
	p, err := Start("echo", "sh", "-c", "echo out; echo err >&2")
	if err != nil {
		t.Fatal(err)
	}
	if !exited(p.Done(), 5*time.Second) {
		t.Fatal("sh did not exit")
	}
	if out := p.Output(); !strings.Contains(out, "out\n") || !strings.Contains(out, "err\n") {
		t.Errorf("output %q, want both stdout and stderr", out)
	}
	if p.Name() != "echo" {
		t.Errorf("name %q", p.Name())
	}

	if _, err := Start("missing", "herald-no-such-command"); !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "start missing") {
		t.Errorf("missing command: %v, want %v naming the daemon", err, exec.ErrNotFound)
	}
	if _, err := Start("empty"); err == nil {
		t.Error("no command: no error")
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name  string
		argv  []string
		ready string // in the output once the process is set up
		grace time.Duration
		// wantKilled: Stop had to SIGKILL it after the grace and says
		// so; otherwise it returns well within the grace.
		wantKilled bool
	}{
		{name: "exits on SIGTERM", argv: []string{"sh", "-c", "echo ready; exec sleep 60"}, ready: "ready", grace: 10 * time.Second},
		{name: "ignores SIGTERM", argv: []string{"sh", "-c", `trap "" TERM; echo ready; exec sleep 60`}, ready: "ready", grace: 300 * time.Millisecond, wantKilled: true},
		{name: "already exited", argv: []string{"true"}, grace: 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start("daemon", tc.argv...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = p.cmd.Process.Kill()
				<-p.Done()
			})
			// Signalled before its trap is set, sh would die of SIGTERM.
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(p.Output(), tc.ready) {
				if time.Now().After(deadline) {
					t.Fatalf("not ready: %q", p.Output())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if tc.ready == "" {
				<-p.Done()
			}
			start := time.Now()
			err = p.Stop(tc.grace)
			took := time.Since(start)
			if !exited(p.Done(), 0) {
				t.Error("Stop returned before the process exited")
			}
			if tc.wantKilled {
				if err == nil || !strings.Contains(err.Error(), "daemon ignored SIGTERM") {
					t.Errorf("Stop = %v, want an error that the daemon was killed", err)
				}
				if took < tc.grace || took > tc.grace+5*time.Second {
					t.Errorf("killed after %v, want just after the grace of %v", took, tc.grace)
				}
				return
			}
			if err != nil {
				t.Errorf("Stop = %v", err)
			}
			if took > tc.grace/2 {
				t.Errorf("Stop took %v of a %v grace for a process that exits on SIGTERM", took, tc.grace)
			}
		})
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	const writers, lines = 8, 500
	var b Buffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(&b, "writer %d line %d\n", w, i)
			}
		})
	}
	// Readers while the writers run: -race sees any unguarded access.
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.String()
			}
		}
	})
	wg.Wait()
	close(stop)
	rg.Wait()

	// Every write whole, none lost: each writer's lines in its order.
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	for _, l := range got {
		var w, i int
		if _, err := fmt.Sscanf(l, "writer %d line %d", &w, &i); err != nil || w < 0 || w >= writers || i != next[w] {
			t.Fatalf("line %q: want writer's next line %v", l, next)
		}
		next[w]++
	}
	if len(got) != writers*lines {
		t.Errorf("%d lines, want %d", len(got), writers*lines)
	}
}
