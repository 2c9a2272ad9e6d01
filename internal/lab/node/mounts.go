package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nodeThread is the OS thread that holds the node's namespaces: switched
// into the node's network namespace, with a mount namespace of its own set
// up like a node's root (see setupMounts). Everything the node runs is
// started from it, so containerd and the kubelet share one mount namespace
// and live in the node's network namespace; they get SIGKILL when the
// thread ends (Pdeathsig), which is when the Node stops.
type nodeThread struct {
	reqs chan func()
	done chan struct{}
}

// startNodeThread locks a new goroutine to its thread, moves the thread
// into the namespaces and returns once they are ready. The thread is never
// unlocked: the Go runtime ends it when stop returns from the goroutine.
func startNodeThread(netnsName string, m mountPlan) (*nodeThread, error) {
	t := &nodeThread{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(t.done)
		runtime.LockOSThread()
		if err := enterNamespaces(netnsName, m); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range t.reqs {
			f()
		}
	}()
	if err := <-ready; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// do runs f on the node thread, or returns errNoThread when the thread
// has ended.
func (t *nodeThread) do(f func()) error {
	done := make(chan struct{})
	select {
	case t.reqs <- func() { f(); close(done) }:
	case <-t.done:
		return errNoThread
	}
	<-done
	return nil
}

// stop ends the thread (and so the mount namespace, once no process is
// left in it) and waits for it.
func (t *nodeThread) stop() {
	close(t.reqs)
	<-t.done
}

// enterNamespaces switches the calling (locked) thread into the named
// network namespace and a new mount namespace set up by m.
func enterNamespaces(netnsName string, m mountPlan) error {
	h, err := netns.GetFromName(netnsName)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", netnsName, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", netnsName, err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := m.apply(); err != nil {
		return fmt.Errorf("set up the node's mount namespace: %w", err)
	}
	return nil
}

// mountPlan is what a node's mount namespace changes, all under dir.
type mountPlan struct {
	// dir is the node's directory; its subdirectories back the mounts.
	dir string
	// sysctls are /proc/sys entries (e.g. "vm/overcommit_memory") to show
	// with these values.
	sysctls map[string]int
}

// apply sets up the calling thread's new mount namespace:
//
//   - every mount becomes a slave of the host's, so nothing done here
//     reaches the host;
//   - a fresh sysfs on /sys, so that /sys/class/net shows the node's
//     network namespace (`ip netns exec` does the same), with the host's
//     /sys/fs/cgroup tree moved back onto it (runc and the kubelet find
//     the cgroup mounts there);
//   - files with the kubelet's expected values over the /proc/sys entries
//     that differ on the host (protectKernelDefaults only reads them);
//   - the node's own /var/log, /var/lib and a private tmpfs on /run, for
//     the paths the kubelet, containerd and the CNI plugins hard-code;
//   - the node's directory put back where it was if those covered it;
//   - then every mount shared again, within this namespace, as a node's
//     root is.
func (m mountPlan) apply() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / rslave: %w", err)
	}
	// The node's directory may lie under what is covered below (the lab's
	// is in /var/lib): hold it open to put it back afterwards.
	dirFD, err := unix.Open(m.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the node's directory: %w", err)
	}
	defer unix.Close(dirFD)
	saved := filepath.Join(m.dir, "mnt", "cgroup")
	if err := os.MkdirAll(saved, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/sys/fs/cgroup", saved, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("keep /sys/fs/cgroup: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount sysfs of the node's network namespace: %w", err)
	}
	if err := unix.Mount(saved, "/sys/fs/cgroup", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the cgroup tree back onto /sys/fs/cgroup: %w", err)
	}

	sysctlDir := filepath.Join(m.dir, "sysctl")
	if err := os.MkdirAll(sysctlDir, 0o755); err != nil {
		return err
	}
	for key, want := range m.sysctls {
		target := filepath.Join("/proc/sys", key)
		cur, err := os.ReadFile(target)
		if err != nil {
			return fmt.Errorf("read %s: %w", target, err)
		}
		if strings.TrimSpace(string(cur)) == strconv.Itoa(want) {
			continue
		}
		file := filepath.Join(sysctlDir, strings.ReplaceAll(key, "/", "."))
		if err := os.WriteFile(file, []byte(strconv.Itoa(want)+"\n"), 0o444); err != nil {
			return err
		}
		if err := unix.Mount(file, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("show %s as %d: %w", target, want, err)
		}
	}

	for _, b := range []struct{ src, target string }{
		{filepath.Join(m.dir, "var", "log"), "/var/log"},
		{filepath.Join(m.dir, "var", "lib"), "/var/lib"},
	} {
		if err := os.MkdirAll(b.src, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(b.src, b.target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.src, b.target, err)
		}
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount a tmpfs on /run: %w", err)
	}
	if err := keepVisible(m.dir, dirFD); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make / rshared: %w", err)
	}
	return nil
}

// keepVisible bind-mounts the directory open as fd back onto its path
// when the mounts above have covered it.
func keepVisible(path string, fd int) error {
	var want, got unix.Stat_t
	if err := unix.Fstat(fd, &want); err != nil {
		return fmt.Errorf("stat the node's directory: %w", err)
	}
	if err := unix.Stat(path, &got); err == nil && got.Dev == want.Dev && got.Ino == want.Ino {
		return nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("put the node's directory back: %w", err)
	}
	// The magic link of an open file is a valid source of a bind mount.
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("put the node's directory back on %s: %w", path, err)
	}
	return nil
}

// errNoThread is returned when the node thread has already stopped.
var errNoThread = errors.New("the node's namespaces are gone (node stopped)")
