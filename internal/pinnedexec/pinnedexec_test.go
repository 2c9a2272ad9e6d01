package pinnedexec

import (
	"errors"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// retireThreads makes the Go runtime end n of its OS threads: a goroutine
// that returns while locked to its thread takes the thread with it.
func retireThreads(n int) {
	for range n {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked
		}()
		<-done
		runtime.Gosched()
	}
}

func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("no sleep: %v", err)
	}
	cmd := exec.Command(sleep, "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// TestChildOutlivesRetiredThreads: a Pdeathsig child started by Start
// survives the runtime retiring thread after thread, and exited gets its
// end once it is killed.
func TestChildOutlivesRetiredThreads(t *testing.T) {
	cmd := sleeper(t)
	exited := make(chan error, 1)
	if err := Start(cmd, func(err error) { exited <- err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	retireThreads(200)
	select {
	case err := <-exited:
		t.Fatalf("the child died when a thread of this process ended: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("exited got %v, want the SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exited not called after the child was killed")
	}
}

func TestStartError(t *testing.T) {
	called := false
	err := Start(exec.Command("/nonexistent/binary"), func(error) { called = true })
	if err == nil {
		t.Fatal("Start of a missing binary: no error")
	}
	if called {
		t.Error("exited called although the start failed")
	}
}

func TestRun(t *testing.T) {
	if err := Run(exec.Command("true")); err != nil {
		t.Errorf("Run(true): %v", err)
	}
	if err := Run(exec.Command("false")); err == nil {
		t.Error("Run(false): no error")
	}
}
