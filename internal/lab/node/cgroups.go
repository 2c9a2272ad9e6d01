package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	// mount is where it is mounted, e.g. /sys/fs/cgroup/memory.
	mount string
	// unified marks the cgroup2 hierarchy.
	unified bool
}

// hierarchies returns the cgroup hierarchies mounted in this mount
// namespace whose root is the hierarchy's root, from /proc/self/mountinfo.
func hierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var hs []hierarchy
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(postFields) < 1 || fields[3] != "/" {
			continue
		}
		mount := unescapeMount(fields[4])
		switch postFields[0] {
		case "cgroup", "cgroup2":
			if !seen[mount] {
				seen[mount] = true
				hs = append(hs, hierarchy{mount: mount, unified: postFields[0] == "cgroup2"})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return hs, nil
}

// unescapeMount undoes the octal escapes of mountinfo (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// createCgroups creates the node's cgroup root in every v1 hierarchy (the
// kubelet's cgroupRoot, with cpuset.cpus and cpuset.mems copied from the
// parent so that tasks may join it) and, in the unified hierarchy, the
// node's root and its "runtime" child that containerd and the kubelet are
// moved into, so that everything they start stays in the node's subtree.
// It returns the runtime cgroup's directory, or "" without a unified
// hierarchy.
func createCgroups(name string) (string, error) {
	hs, err := hierarchies()
	if err != nil {
		return "", err
	}
	if len(hs) == 0 {
		return "", errors.New("no cgroup hierarchy is mounted")
	}
	runtimeDir := ""
	for _, h := range hs {
		dir := filepath.Join(h.mount, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if h.unified {
			runtimeDir = filepath.Join(dir, "runtime")
			if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
				return "", fmt.Errorf("create cgroup %s: %w", runtimeDir, err)
			}
			continue
		}
		for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent := filepath.Join(h.mount, file)
			data, err := os.ReadFile(parent)
			if errors.Is(err, fs.ErrNotExist) {
				continue // not the cpuset hierarchy
			}
			if err != nil {
				return "", fmt.Errorf("read %s: %w", parent, err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
				return "", fmt.Errorf("copy %s into cgroup %s: %w", file, dir, err)
			}
		}
	}
	return runtimeDir, nil
}

// cgroupNames returns the names of the top-level cgroups, in any
// hierarchy, that start with prefix.
func cgroupNames(prefix string) ([]string, error) {
	if prefix == "" {
		return nil, errors.New("no cgroup name prefix")
	}
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range hs {
		entries, err := os.ReadDir(h.mount)
		if err != nil {
			return nil, fmt.Errorf("list cgroups in %s: %w", h.mount, err)
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) && !slices.Contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	return names, nil
}

// joinCgroup moves process pid into the cgroup directory dir.
func joinCgroup(dir string, pid int) error {
	if dir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("move process %d into cgroup %s: %w", pid, dir, err)
	}
	return nil
}

// cgroupDirs returns every directory of the node's cgroup subtrees, in all
// hierarchies, deepest first.
func cgroupDirs(name string) ([]string, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, h := range hs {
		root := filepath.Join(h.mount, name)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // not there, or removed meanwhile
				}
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list cgroup %s: %w", root, err)
		}
	}
	slices.SortStableFunc(dirs, func(a, b string) int {
		return strings.Count(b, string(filepath.Separator)) - strings.Count(a, string(filepath.Separator))
	})
	return dirs, nil
}

// cgroupProcs returns the processes in the cgroup directories dirs.
func cgroupProcs(dirs []string) []int {
	var pids []int
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups kills every process in the node's cgroup subtrees (of any
// hierarchy), waits until they are gone and removes the directories,
// deepest first. It succeeds when there is nothing to remove.
func removeCgroups(ctx context.Context, name string) error {
	for {
		dirs, err := cgroupDirs(name)
		if err != nil {
			return err
		}
		if len(dirs) == 0 {
			return nil
		}
		pids := cgroupProcs(dirs)
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill process %d of node cgroup %s: %w", pid, name, err)
			}
		}
		var busy []string
		if len(pids) == 0 {
			for _, dir := range dirs {
				if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
					busy = append(busy, fmt.Sprintf("%s: %v", dir, err))
				}
			}
			if len(busy) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove node cgroup %s: processes %v left, %s: %w", name, pids, strings.Join(busy, "; "), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
