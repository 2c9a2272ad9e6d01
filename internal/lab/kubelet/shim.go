package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Shim is what the lab's container "runtime" does between fork and the
// container's program: the process already has a mount and UTS namespace of
// its own (the kubelet starts it with CLONE_NEWNS|CLONE_NEWUTS); the shim
// joins the Pod's network namespace, bind-mounts the Pod's volumes, sets the
// hostname, drops capabilities, and execs the program.
type Shim struct {
	// NetNS is the network namespace file to join (/run/netns/NAME).
	NetNS string
	// Hostname is the hostname the program sees.
	Hostname string
	// Mounts are the volume mounts, as "SRC:DST" or "SRC:DST:ro".
	Mounts []string
	// Capabilities is the set the program keeps (names without CAP_, or
	// "ALL"); every other capability leaves the bounding set.
	Capabilities []string
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS (allowPrivilegeEscalation: false).
	NoNewPrivs bool
	// WorkingDir is the program's working directory; empty means /.
	WorkingDir string
	// Argv is the program and its arguments.
	Argv []string
}

// Args renders s as the command-line arguments of `herald-lab shim`.
func (s Shim) Args() []string {
	args := []string{"shim", "--netns", s.NetNS, "--hostname", s.Hostname}
	for _, m := range s.Mounts {
		args = append(args, "--mount", m)
	}
	if len(s.Capabilities) > 0 {
		args = append(args, "--caps", strings.Join(s.Capabilities, ","))
	} else {
		args = append(args, "--caps", "NONE")
	}
	if s.NoNewPrivs {
		args = append(args, "--no-new-privs")
	}
	if s.WorkingDir != "" {
		args = append(args, "--workdir", s.WorkingDir)
	}
	return append(append(args, "--"), s.Argv...)
}

// Exec prepares the process as s says and replaces it with s.Argv. It
// returns only on failure.
func (s Shim) Exec() error {
	if len(s.Argv) == 0 {
		return fmt.Errorf("shim: no program to run")
	}
	// setns(2) switches only the calling thread; execve(2) from that same
	// thread carries its namespaces into the program.
	runtime.LockOSThread()
	if s.NetNS != "" {
		fd, err := unix.Open(s.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("shim: open network namespace %s: %w", s.NetNS, err)
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("shim: join network namespace %s: %w", s.NetNS, err)
		}
		_ = unix.Close(fd)
		// Like `ip netns exec`: a sysfs of this namespace, so that
		// /sys/class/net lists the Pod's own interfaces.
		if err := unix.Unmount("/sys", unix.MNT_DETACH); err == nil {
			if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
				return fmt.Errorf("shim: mount sysfs: %w", err)
			}
		}
	}
	for _, m := range s.Mounts {
		if err := bindMount(m); err != nil {
			return err
		}
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("shim: set hostname: %w", err)
		}
	}
	if err := dropCapabilities(s.Capabilities); err != nil {
		return err
	}
	if s.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("shim: set no_new_privs: %w", err)
		}
	}
	dir := s.WorkingDir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("shim: working directory: %w", err)
	}
	if err := syscall.Exec(s.Argv[0], s.Argv, os.Environ()); err != nil {
		return fmt.Errorf("shim: exec %s: %w", s.Argv[0], err)
	}
	return nil
}

// bindMount mounts "SRC:DST[:ro]" in this process's private mount
// namespace, creating DST (a directory, or a file for a file SRC) first.
func bindMount(spec string) error {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "ro") {
		return fmt.Errorf("shim: mount %q: want SRC:DST or SRC:DST:ro", spec)
	}
	src, dst := parts[0], parts[1]
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("shim: mount source: %w", err)
	}
	if fi.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("shim: mount point %s: %w", dst, err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("shim: bind %s on %s: %w", src, dst, err)
	}
	if len(parts) == 3 {
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("shim: make %s read-only: %w", dst, err)
		}
	}
	return nil
}

// capabilityNumbers maps capability names (without CAP_) to numbers.
var capabilityNumbers = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
	"SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
	"NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
	"SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
	"SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
	"SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
	"SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
	"BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

// dropCapabilities removes every capability not in keep from the bounding
// set. A root process's permitted set after execve is its bounding set, so
// this is what the program gets.
func dropCapabilities(keep []string) error {
	if slices.Contains(keep, "ALL") {
		return nil
	}
	kept := sets.New[int]()
	for _, name := range keep {
		if name == "NONE" || name == "" {
			continue
		}
		n, ok := capabilityNumbers[strings.TrimPrefix(strings.ToUpper(name), "CAP_")]
		if !ok {
			return fmt.Errorf("shim: unknown capability %q", name)
		}
		kept.Insert(n)
	}
	last := 40
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if kept.Has(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("shim: drop capability %d: %w", c, err)
		}
	}
	return nil
}
