// Package netnsenter runs code inside another network namespace. A socket
// belongs to the namespace of the thread that created it and stays there,
// so opening a socket in a namespace needs one OS thread switched into it
// only while the socket is created. This is the repository's one helper for
// that: the agent (its raw sockets in a node's namespace), the lab and the
// tests all use it.
package netnsenter

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a fresh OS thread switched into ns and returns fn's error.
//
// fn runs on its own goroutine, locked to its thread, so the caller's thread
// is never switched. If switching back fails, the goroutine exits still
// locked, and the Go runtime then destroys the thread instead of reusing it
// for other goroutines in the wrong namespace.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return // still locked: the thread is discarded
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			// setns(2) failed, so the thread never left home.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the runtime retires the thread when this
			// goroutine returns.
			errc <- fmt.Errorf("return to the original network namespace: %w (after: %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DoNamed runs fn inside the namespace that `ip netns` manages under name.
func DoNamed(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer h.Close()
	if err := Do(h, fn); err != nil {
		return fmt.Errorf("in network namespace %s: %w", name, err)
	}
	return nil
}

// DoOptional runs fn in ns, or in the caller's own namespace when ns is nil
// (the agent's Options.NetNS: nil outside tests).
func DoOptional(ns *netns.NsHandle, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return Do(*ns, fn)
}
