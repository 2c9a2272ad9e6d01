// Package lab runs Herald's lab: a Kubernetes cluster on one Linux machine,
// without Docker or VMs, for the tutorial, the end-to-end tests and the
// benchmarks.
//
// The control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, built from pinned modules by internal/testenv) runs in
// the root network namespace on loopback ports. Each node is a network
// namespace on a LAN bridge (192.168.10.0/24, nodes from .215, a client at
// .10) with a KubePrism-style proxy on localhost:7445 and a real node in
// it (package node: the kubelet, containerd, runc and the CNI bridge). The
// nodes pull every image from a registry the lab runs (package registry,
// on 127.0.0.1:5000 in each node), which holds Herald's image built from
// the local herald binary, agnhost and Debian's nginx (package labimages)
// under their usual names; Herald is installed with its own Helm chart and
// the Talos preset, pulling its image as on a user's cluster.
//
// The lab is not part of the herald binary that runs in clusters: it is the
// herald-lab command (cmd/herald-lab), which finds the herald binary next to
// itself unless told otherwise (Options.Herald).
//
// The lab outlives the command that starts it: Up starts a daemon
// (`herald-lab daemon`, detached, logging to <dir>/lab.log) that owns every process
// and namespace, and waits until the cluster works. Down stops the daemon
// and removes whatever a crashed one left; Up does the same first, so both
// are idempotent.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/herald-lb/herald/internal/lab/node"
	"github.com/herald-lb/herald/internal/testenv"
)

const (
	// DefaultDir is the lab's state directory.
	DefaultDir = "/var/lib/herald-lab"
	// DefaultPrefix starts the name of every network namespace of the lab.
	DefaultPrefix = "hl-"

	stateFile = "state.json"
	pidFile   = "daemon.pid"
	logFile   = "lab.log"
)

// Options configures a lab.
type Options struct {
	// Dir is the state directory (kubeconfig, logs, Pod volumes).
	Dir string
	// Prefix starts the names of the lab's network namespaces; two labs
	// with different prefixes and directories can run side by side.
	Prefix string
	// Nodes is the number of nodes: cp1, node1, ….
	Nodes int
	// IPv6 adds IPv6 addresses (fd00:10::/64) to the LAN and makes Pods
	// dual-stack.
	IPv6 bool
	// BGP adds a router to the LAN (the nodes' default gateway, running
	// FRR as every node's BGP peer) and a client behind it in another
	// subnet (Topology.Router, Topology.Far).
	BGP bool
	// Lab is the herald-lab binary that runs the daemon; empty means this
	// executable, which is right for the herald-lab command and wrong for a
	// test binary.
	Lab string
	// Herald is the static herald binary that Herald's image is built
	// from; empty means "herald" in the directory of Lab.
	Herald string
	// Proxy is what forwards Service traffic on the nodes: "none" (the
	// default, Talos without kube-proxy: Herald's nftables data plane
	// forwards load-balancer traffic) or the real kube-proxy in "nftables"
	// or "iptables" mode on every node (Herald then only announces).
	Proxy string
	// HeraldTag is the tag Herald's image is pushed under: the chart's
	// appVersion, so that the chart pulls it as it would on a
	// user's cluster.
	HeraldTag string
}

// ProxyNone is Options.Proxy without kube-proxy.
const ProxyNone = "none"

// checkProxy returns an error unless proxy is a mode the lab runs.
func checkProxy(proxy string) error {
	switch proxy {
	case ProxyNone, "nftables", "iptables":
		return nil
	case "ipvs":
		// Not offered rather than offered untested: the kernels this lab
		// is developed on have no IPVS.
		return fmt.Errorf("--proxy ipvs: the lab does not run kube-proxy's ipvs mode (it has never been tested: the " +
			"kernels Herald is developed on have no IPVS); want none, nftables or iptables")
	}
	return fmt.Errorf("--proxy %q: want none, nftables or iptables", proxy)
}

// HeraldName is the file name of the herald binary that Options.Herald
// defaults to, next to the herald-lab binary.
const HeraldName = "herald"

// binaries returns the absolute paths of the herald-lab and herald
// binaries o names (see Options), and an error that says what to do when
// the herald binary is missing.
func (o Options) binaries() (lab, herald string, err error) {
	lab = o.Lab
	if lab == "" {
		if lab, err = os.Executable(); err != nil {
			return "", "", fmt.Errorf("locate the herald-lab binary: %w", err)
		}
	}
	if lab, err = filepath.Abs(lab); err != nil {
		return "", "", fmt.Errorf("locate the herald-lab binary: %w", err)
	}
	herald = o.Herald
	if herald == "" {
		herald = filepath.Join(filepath.Dir(lab), HeraldName)
	}
	if herald, err = filepath.Abs(herald); err != nil {
		return "", "", fmt.Errorf("locate the herald binary: %w", err)
	}
	info, err := os.Stat(herald)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", "", fmt.Errorf("the lab runs Herald's image from the herald binary, and there is none at %s: "+
			"build it next to herald-lab (`make build` writes bin/herald and bin/herald-lab) or name it with --herald or $HERALD_LAB_HERALD", herald)
	case err != nil:
		return "", "", fmt.Errorf("the herald binary for Herald's image: %w", err)
	case info.IsDir() || info.Mode().Perm()&0o111 == 0:
		return "", "", fmt.Errorf("the herald binary for Herald's image, %s, is not an executable file", herald)
	}
	return lab, herald, nil
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Proxy == "" {
		o.Proxy = ProxyNone
	}
	return o
}

// State is what a running lab publishes in <dir>/state.json once it works.
type State struct {
	// PID is the daemon's process ID.
	PID int `json:"pid"`
	// Kubeconfig is an admin kubeconfig for the lab's API server.
	Kubeconfig string `json:"kubeconfig"`
	// APIServer is the API server's URL (root namespace, loopback).
	APIServer string `json:"apiServer"`
	// Tools are the control-plane binaries (kubectl, helm, …).
	Tools testenv.Paths `json:"tools"`
	// Topology is the lab's network.
	Topology Topology `json:"topology"`
	// Proxy is Options.Proxy.
	Proxy string `json:"proxy"`
	// Registry is the host:port of the lab's registry on loopback (plain
	// HTTP), for pushes from this machine and `helm install oci://`; the
	// nodes reach it on 127.0.0.1:5000.
	Registry string `json:"registry"`
	// Containerd is each node's containerd socket, by node name.
	Containerd map[string]string `json:"containerd"`
	// RouterDir is the FRR directory of the lab's router (--bgp): vtysh
	// --vty_socket RouterDir talks to it (herald-lab vtysh).
	RouterDir string `json:"routerDir,omitempty"`
	// CoreSocket is the control socket of the lab's core router (BIRD,
	// --bgp): birdc -s CoreSocket talks to it (herald-lab birdc).
	CoreSocket string `json:"coreSocket,omitempty"`
	// Control is the daemon's control socket (herald-lab node crash,
	// node boot).
	Control string `json:"control,omitempty"`
	// Ctr is containerd's client.
	Ctr string `json:"ctr"`
}

// ContainerPID returns the host PID of the main process of a running
// container on a node, from the containerID of its Pod's status
// ("containerd://ID"), as the node's containerd reports it.
func ContainerPID(ctx context.Context, s State, nodeName, containerID string) (int, error) {
	id, ok := strings.CutPrefix(containerID, "containerd://")
	if !ok || id == "" {
		return 0, fmt.Errorf("container %q: not one of the lab's", containerID)
	}
	sock, ok := s.Containerd[nodeName]
	if !ok || s.Ctr == "" {
		return 0, fmt.Errorf("container %q: node %q is not one of the lab's", containerID, nodeName)
	}
	out, err := exec.CommandContext(ctx, s.Ctr, "--address", sock, "--namespace", node.ContainerdNamespace,
		"task", "ls").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ctr task ls on %s: %w: %s", nodeName, err, out)
	}
	// TASK PID STATUS
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("container %s: no task on %s", id, nodeName)
}

// ReadState returns the state of the lab in dir, or an error if no lab is
// running there.
func ReadState(dir string) (State, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return State{}, fmt.Errorf("no lab is running in %s (start one with `herald-lab up`)", dir)
		}
		return State{}, fmt.Errorf("read lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("lab state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if !alive(s.PID) {
		return State{}, fmt.Errorf("the lab in %s has stopped (its daemon, pid %d, is gone; see %s; `herald-lab up` starts it again)",
			dir, s.PID, filepath.Join(dir, logFile))
	}
	return s, nil
}

func writeState(dir string, s State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

// alive reports whether pid is a running lab daemon (not a recycled PID of
// something else): `herald-lab daemon`, or `herald lab daemon` as binaries
// before herald-lab started it, so that Down still stops such a lab.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	daemon := len(args) > 1 && args[1] == "daemon" || len(args) > 2 && args[1] == "lab" && args[2] == "daemon"
	return daemon && syscall.Kill(pid, 0) == nil
}

// daemonPID returns the PID recorded in dir, if that daemon still runs.
func daemonPID(dir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid, err == nil && alive(pid)
}
