package testenv

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestProcessOutlivesRetiredThreads starts a process the way the control
// plane's are started, then has the Go runtime retire one OS thread after
// another (a goroutine that ends while locked to its thread takes the
// thread with it, as a lab node's namespace thread does when the node
// stops). Pdeathsig fires when the thread that forked a child ends, so a
// process forked from an ordinary thread of the pool would be killed by
// one of these retirements.
func TestProcessOutlivesRetiredThreads(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("no sleep: %v", err)
	}
	p, err := startProcess("sleep", sleep, []string{"60"}, filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop(time.Second) })
	for range 200 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		}()
		<-done
		runtime.Gosched()
	}
	select {
	case <-p.done:
		t.Fatalf("the process died when a thread of this process ended: %v", p.waitErr)
	case <-time.After(500 * time.Millisecond):
	}
}
