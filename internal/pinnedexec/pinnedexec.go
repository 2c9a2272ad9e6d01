// Package pinnedexec starts child processes that must die with this one
// (Pdeathsig) from OS threads that live as long as the children.
//
// The kernel sends a child its Pdeathsig when the *thread* that forked it
// ends, not when its process does. The Go runtime ends a thread of its pool
// whenever a goroutine that locked it returns still locked — as a lab
// node's namespace thread does when the node stops, or netnsenter when it
// cannot switch back. A child forked from an ordinary pool thread may so be
// killed at any later moment: the lab's API server died when a node lost
// power. Start forks from a thread no other goroutine can use.
package pinnedexec

import (
	"os/exec"
	"runtime"
)

// Start starts cmd from an OS thread of its own, kept (locked to a
// goroutine that does nothing else) until cmd has exited; there it calls
// exited with cmd.Wait's error. It returns cmd.Start's error; exited is not
// called when that is not nil.
func Start(cmd *exec.Cmd, exited func(error)) error {
	started := make(chan error, 1)
	go func() {
		// Never unlocked: no other goroutine runs on this thread, and
		// the runtime ends it, after the child, when this goroutine
		// returns.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited(cmd.Wait())
	}()
	return <-started
}

// Run is Start followed by waiting for the exit: cmd.Run from a pinned
// thread.
func Run(cmd *exec.Cmd) error {
	waited := make(chan error, 1)
	if err := Start(cmd, func(err error) { waited <- err }); err != nil {
		return err
	}
	return <-waited
}
