package frr

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
}

func TestRemoveLeftovers(t *testing.T) {
	base := t.TempDir()
	// A process that is gone: find a pid nobody uses.
	dead := 0
	for p := 4000000; p > 300000; p -= 9973 {
		if syscall.Kill(p, 0) == syscall.ESRCH {
			dead = p
			break
		}
	}
	if dead == 0 {
		t.Skip("no unused pid found")
	}
	// A live "daemon" of the dead run's router: its command line names
	// the directory, so it is killed.
	deadDir := filepath.Join(base, fmt.Sprintf("%d-abcdef-router", dead))
	if err := os.MkdirAll(deadDir, 0o755); err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command("sh", "-c", "sleep 60", deadDir)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Wait() }()
	t.Cleanup(func() { _ = daemon.Process.Kill() })
	// A pid file pointing at a process that is not the router's (this
	// test): left alone.
	write := func(dir, name string, pid int) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("%d\n", pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(deadDir, "bgpd.pid", daemon.Process.Pid)
	write(deadDir, "zebra.pid", os.Getpid())
	// This process's own router: kept.
	ownDir := filepath.Join(base, fmt.Sprintf("%d-123456-router", os.Getpid()))
	if err := os.MkdirAll(ownDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Not a router directory: kept.
	other := filepath.Join(base, "notes")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}

	if err := RemoveLeftovers(base); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the dead run's daemon was not killed")
	}
	for dir, want := range map[string]bool{deadDir: false, ownDir: true, other: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", dir, err == nil, want)
		}
	}
	if err := RemoveLeftovers(filepath.Join(base, "missing")); err != nil {
		t.Errorf("missing base: %v", err)
	}
}
