// Package node runs a real Kubernetes node inside a network namespace: the
// real kubelet and containerd 2.x (built from pinned modules by
// testenv.NodeBinaries), with runc and the CNI plugins from the machine.
//
// It is made for machines like the lab's: a cgroup v1 hybrid host, and root
// without CAP_SYS_RESOURCE. Each node gets
//
//   - its network namespace (created by the caller, with the node's
//     address on it);
//   - a mount namespace of its own, held by one OS thread that starts
//     containerd and the kubelet (they must share it): a sysfs of the
//     node's network namespace with the host's cgroup tree on it, the
//     node's own /var/log, /var/lib and /run, and the kernel tunables the
//     kubelet checks shown with the values it expects, the host's left
//     unchanged;
//   - a cgroup subtree of its own in every hierarchy (the kubelet's
//     cgroupRoot), so that Stop, or the next Start after a crash, finds and
//     kills everything the node ran, container shims included;
//   - containerd configured to restrict OOM score adjustments (root here
//     cannot lower them), and the CNI bridge plugin for the Node's podCIDR.
//
// The kubelet registers the Node with the credentials the caller's
// kubeconfig carries, and serves logs, exec and port-forward on the node's
// address, port 10250, inside the namespace: the API server needs a way in
// (testenv.Options.ClusterDialer).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herald-lb/herald/internal/testenv"
)

const (
	// DefaultRunc is Debian's runc.
	DefaultRunc = "/usr/sbin/runc"
	// DefaultCNIBinDir is where Debian's containernetworking-plugins
	// package puts the CNI plugins.
	DefaultCNIBinDir = "/usr/lib/cni"
	// KubeletPort is where the kubelet serves logs, exec and port-forward.
	KubeletPort = 10250
	// ContainerdNamespace is the containerd namespace of the CRI plugin,
	// where images must be for the kubelet to see them.
	ContainerdNamespace = "k8s.io"

	// stopGrace is how long a process gets between SIGTERM and SIGKILL.
	stopGrace = 10 * time.Second
)

// Config describes one node.
type Config struct {
	// Name is the Node's name.
	Name string
	// NetNS is the network namespace (as `ip netns` names it) the node
	// runs in; it exists and holds IP.
	NetNS string
	// IP is the node's address: the kubelet's --node-ip and where it
	// listens.
	IP netip.Addr
	// IPv6 is the node's IPv6 address on a dual-stack LAN, or the zero
	// Addr; it is the Node's second address.
	IPv6 netip.Addr
	// Dir is the node's directory (configurations, logs, containerd's
	// root and state, the node's /var). It holds containerd's socket, so
	// its path must be short (a Unix socket path has at most 107 bytes).
	Dir string
	// Kubeconfig is the kubelet's kubeconfig (testenv.Env.NodeKubeconfig),
	// pointing at an address reachable from inside NetNS.
	Kubeconfig string
	// Binaries are the kubelet, containerd and its shim.
	Binaries testenv.NodePaths
	// Runc is the runc binary; empty means DefaultRunc.
	Runc string
	// CNIBinDir holds the CNI plugins; empty means DefaultCNIBinDir.
	CNIBinDir string
	// SandboxImage is the reference of the Pods' sandbox ("pause")
	// image, pulled like any other (see Registry).
	SandboxImage string
	// Registry is the host:port, reachable from inside NetNS, of the
	// registry every pull goes to; empty leaves containerd's defaults.
	Registry string
	// Mirrored are the registry hosts ("docker.io", "registry.k8s.io",
	// "ghcr.io", …) whose images are pulled from Registry instead, under
	// the same repository path (docker.io/library/nginx:latest is
	// library/nginx:latest there).
	Mirrored []string
	// KubeProxy runs the real kube-proxy on the node when its Mode is set.
	KubeProxy KubeProxy
	// CgroupName names the node's cgroup subtree in every hierarchy;
	// empty means "herald-" + NetNS. Two nodes must never share it.
	CgroupName string
	// Log receives progress messages; nil means slog.Default().
	Log *slog.Logger
}

// KubeProxy configures the node's kube-proxy.
type KubeProxy struct {
	// Mode is kube-proxy's mode ("nftables", "iptables"); empty runs no
	// kube-proxy.
	Mode string
	// Kubeconfig is kube-proxy's kubeconfig (testenv.Env.KubeProxyKubeconfig),
	// pointing at an address reachable from inside the node's namespace.
	Kubeconfig string
	// ClusterCIDR is the Pods' range (kube-proxy masquerades traffic from
	// outside it).
	ClusterCIDR string
}

// cgroupName is the node's cgroup subtree (without a leading slash).
func (c Config) cgroupName() string {
	if c.CgroupName != "" {
		return c.CgroupName
	}
	return "herald-" + c.NetNS
}

func (c Config) withDefaults() (Config, error) {
	if c.Runc == "" {
		c.Runc = DefaultRunc
	}
	if c.CNIBinDir == "" {
		c.CNIBinDir = DefaultCNIBinDir
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	switch {
	case c.Name == "":
		return c, errors.New("node: no name")
	case c.NetNS == "":
		return c, fmt.Errorf("node %s: no network namespace", c.Name)
	case !c.IP.IsValid():
		return c, fmt.Errorf("node %s: no address", c.Name)
	case !filepath.IsAbs(c.Dir):
		return c, fmt.Errorf("node %s: directory %q is not absolute", c.Name, c.Dir)
	case c.Kubeconfig == "":
		return c, fmt.Errorf("node %s: no kubeconfig", c.Name)
	case c.SandboxImage == "":
		return c, fmt.Errorf("node %s: no sandbox image", c.Name)
	case strings.ContainsAny(c.cgroupName(), "/\x00") || c.cgroupName() == "." || c.cgroupName() == "..":
		return c, fmt.Errorf("node %s: cgroup name %q", c.Name, c.cgroupName())
	}
	for _, f := range []string{c.Runc, c.Binaries.Kubelet, c.Binaries.Containerd, c.Binaries.Shim} {
		if _, err := os.Stat(f); err != nil {
			return c, fmt.Errorf("node %s: %w", c.Name, err)
		}
	}
	switch c.KubeProxy.Mode {
	case "":
	case "nftables", "iptables":
		if c.KubeProxy.Kubeconfig == "" {
			return c, fmt.Errorf("node %s: kube-proxy without a kubeconfig", c.Name)
		}
		if _, err := os.Stat(c.Binaries.KubeProxy); err != nil {
			return c, fmt.Errorf("node %s: %w", c.Name, err)
		}
	default:
		return c, fmt.Errorf("node %s: kube-proxy mode %q (the lab runs nftables or iptables)", c.Name, c.KubeProxy.Mode)
	}
	if _, err := os.Stat(filepath.Join(c.CNIBinDir, "bridge")); err != nil {
		return c, fmt.Errorf("node %s: CNI plugins (Debian's containernetworking-plugins): %w", c.Name, err)
	}
	if n := len(filepath.Join(c.Dir, socketName)); n > 100 {
		return c, fmt.Errorf("node %s: directory %s is too long for containerd's socket (%d bytes)", c.Name, c.Dir, n)
	}
	return c, nil
}

// socketName is containerd's socket in the node's directory.
const socketName = "containerd.sock"

// paths are the files and directories of a node, all under its directory.
type paths struct {
	dir              string
	containerdConfig string
	containerdRoot   string
	containerdState  string
	containerdLog    string
	socket           string
	opt              string
	cniConfDir       string
	cniTemplate      string
	registryHosts    string
	kubeletConfig    string
	kubeletLog       string
	kubeProxyConfig  string
	kubeProxyLog     string
}

func pathsIn(dir string) paths {
	return paths{
		dir:              dir,
		containerdConfig: filepath.Join(dir, "etc", "containerd.toml"),
		containerdRoot:   filepath.Join(dir, "containerd", "root"),
		containerdState:  filepath.Join(dir, "containerd", "state"),
		containerdLog:    filepath.Join(dir, "containerd.log"),
		socket:           filepath.Join(dir, socketName),
		opt:              filepath.Join(dir, "containerd", "opt"),
		cniConfDir:       filepath.Join(dir, "etc", "cni"),
		cniTemplate:      filepath.Join(dir, "etc", "cni-template.json"),
		registryHosts:    filepath.Join(dir, "etc", "registry"),
		kubeletConfig:    filepath.Join(dir, "etc", "kubelet.yaml"),
		kubeletLog:       filepath.Join(dir, "kubelet.log"),
		kubeProxyConfig:  filepath.Join(dir, "etc", "kube-proxy.yaml"),
		kubeProxyLog:     filepath.Join(dir, "kube-proxy.log"),
	}
}

// Node is a running node. Stop it with Stop.
type Node struct {
	cfg        Config
	paths      paths
	thread     *nodeThread
	containerd *process
	kubelet    *process
	kubeProxy  *process
}

// process is one of the node's daemons.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// Start cleans up whatever an earlier node of the same cgroup name left
// (see Cleanup), then starts containerd, the kubelet and, if asked,
// kube-proxy. It returns once they run; the Node registers and becomes
// Ready shortly after (the caller watches the API). The directory should
// be empty or a stopped node's: containerd restores what its root holds.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Cleanup(ctx, cfg.cgroupName(), ""); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, paths: pathsIn(cfg.Dir)}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*stopGrace)
			defer cancel()
			_ = n.Stop(stopCtx)
		}
	}()
	runtimeCgroup, err := createCgroups(cfg.cgroupName())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	if err := n.writeConfigs(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	n.thread, err = startNodeThread(cfg.NetNS, mountPlan{dir: cfg.Dir, sysctls: kernelTunables()})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}

	if err := n.enableForwarding(); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "PATH="+cfg.Binaries.Dir+":"+filepath.Dir(cfg.Runc)+":/usr/sbin:/usr/bin:/sbin:/bin")
	n.containerd, err = n.start("containerd", cfg.Binaries.Containerd,
		[]string{"--config", n.paths.containerdConfig}, env, n.paths.containerdLog, runtimeCgroup)
	if err != nil {
		return nil, err
	}
	if err := n.waitContainerd(ctx); err != nil {
		return nil, err
	}
	nodeIPs := cfg.IP.String()
	if cfg.IPv6.IsValid() {
		nodeIPs += "," + cfg.IPv6.String()
	}
	n.kubelet, err = n.start("kubelet", cfg.Binaries.Kubelet, []string{
		"--config=" + n.paths.kubeletConfig,
		"--kubeconfig=" + cfg.Kubeconfig,
		"--hostname-override=" + cfg.Name,
		"--node-ip=" + nodeIPs,
		"--v=1",
	}, env, n.paths.kubeletLog, runtimeCgroup)
	if err != nil {
		return nil, err
	}
	if cfg.KubeProxy.Mode != "" {
		n.kubeProxy, err = n.start("kube-proxy", cfg.Binaries.KubeProxy, []string{
			"--config=" + n.paths.kubeProxyConfig, "--v=1",
		}, env, n.paths.kubeProxyLog, runtimeCgroup)
		if err != nil {
			return nil, err
		}
	}
	cfg.Log.Info("node: started containerd and the kubelet", "kube-proxy", cfg.KubeProxy.Mode, "node", cfg.Name, "netns", cfg.NetNS,
		"containerd", n.containerd.cmd.Process.Pid, "kubelet", n.kubelet.cmd.Process.Pid)
	return n, nil
}

// enableForwarding turns on IP forwarding in the node's network namespace,
// as every Kubernetes node has it (kubeadm checks it): Services forward to
// Pods on other nodes, and the CNI bridge plugin only turns it on once a
// Pod of the node's own network is set up.
func (n *Node) enableForwarding() error {
	var err error
	if derr := n.thread.do(func() {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if werr := os.WriteFile(f, []byte("1\n"), 0o644); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}); derr != nil {
		return fmt.Errorf("node %s: %w", n.cfg.Name, derr)
	}
	if err != nil {
		return fmt.Errorf("node %s: enable IP forwarding: %w", n.cfg.Name, err)
	}
	return nil
}

// Name returns the Node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Socket returns the path of containerd's socket.
func (n *Node) Socket() string { return n.paths.socket }

// KubeProxyLog returns the path of kube-proxy's log file.
func (n *Node) KubeProxyLog() string { return n.paths.kubeProxyLog }

// KubeletLog returns the path of the kubelet's log file.
func (n *Node) KubeletLog() string { return n.paths.kubeletLog }

// ContainerdLog returns the path of containerd's log file.
func (n *Node) ContainerdLog() string { return n.paths.containerdLog }

// Exited reports the first of the node's daemons that has exited, with its
// exit status, or nil while both run.
func (n *Node) Exited() error {
	for _, p := range []*process{n.containerd, n.kubelet, n.kubeProxy} {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			return fmt.Errorf("node %s: %s exited: %v\n%s", n.cfg.Name, p.name, p.err, testenv.TailFile(p.log.Name(), 20))
		default:
		}
	}
	return nil
}

// start runs a daemon from the node's thread (so in its namespaces), with
// its output in logPath, and moves it into the node's cgroup.
func (n *Node) start(name, bin string, args, env []string, logPath, cgroup string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s log: %w", n.cfg.Name, name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The node's thread is the parent: the daemons die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var startErr error
	if err := n.thread.do(func() { startErr = cmd.Start() }); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("node %s: start %s: %w", n.cfg.Name, name, err)
	}
	if startErr != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("node %s: start %s: %w", n.cfg.Name, name, startErr)
	}
	p := &process{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	if err := joinCgroup(cgroup, cmd.Process.Pid); err != nil {
		return p, fmt.Errorf("node %s: %w", n.cfg.Name, err)
	}
	return p, nil
}

// waitContainerd waits until containerd answers on its socket.
func (n *Node) waitContainerd(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		if err := n.Exited(); err != nil {
			return err
		}
		if _, err := os.Stat(n.paths.socket); err == nil {
			if _, last = n.Ctr(ctx, "version"); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: containerd does not answer: %v (%w)\n%s", n.cfg.Name, last, ctx.Err(),
				testenv.TailFile(n.paths.containerdLog, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ctr runs containerd's ctr client against the node's containerd in the
// CRI plugin's namespace and returns its combined output.
func (n *Node) Ctr(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", n.paths.socket, "--namespace", ContainerdNamespace}, args...)
	out, err := exec.CommandContext(ctx, n.cfg.Binaries.Ctr, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Stop stops the kubelet, then containerd, then kills whatever else the
// node ran (Pods' containers and shims, found by the node's cgroups) and
// removes its cgroups. The node's mount namespace goes with its last
// process. The directory stays (logs); Pods' data in it is the caller's to
// remove.
func (n *Node) Stop(ctx context.Context) error {
	var errs []error
	for _, p := range []*process{n.kubeProxy, n.kubelet, n.containerd} {
		if p != nil {
			if err := p.stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", n.cfg.Name, err))
			}
		}
	}
	if err := removeCgroups(ctx, n.cfg.cgroupName()); err != nil {
		errs = append(errs, err)
	}
	if n.thread != nil {
		n.thread.stop()
		n.thread = nil
	}
	return errors.Join(errs...)
}

// Kill ends the node as a power cut would: every process it runs (the
// kubelet, containerd, kube-proxy, the Pods' shims and containers) gets
// SIGKILL at once, none is asked to stop first; then its cgroups go. The
// directory stays as it was, so Start with the same Config boots the node
// again, as a machine boots after a power cut: containerd restores what
// its root holds, the kubelet starts the Pods bound to it again.
func (n *Node) Kill(ctx context.Context) error {
	err := removeCgroups(ctx, n.cfg.cgroupName())
	if err != nil {
		// Whatever is left goes with the node's thread (Pdeathsig).
		err = fmt.Errorf("node %s: %w", n.cfg.Name, err)
	}
	for _, p := range []*process{n.kubeProxy, n.kubelet, n.containerd} {
		if p == nil {
			continue
		}
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			err = errors.Join(err, fmt.Errorf("node %s: %s did not exit after SIGKILL: %w", n.cfg.Name, p.name, ctx.Err()))
		}
	}
	if n.thread != nil {
		n.thread.stop()
		n.thread = nil
	}
	return err
}

// stop sends SIGTERM, and SIGKILL after stopGrace or when ctx ends.
func (p *process) stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// CleanupAll runs Cleanup (without a directory) for every node whose
// cgroup name starts with prefix.
func CleanupAll(ctx context.Context, prefix string) error {
	names, err := cgroupNames(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if err := Cleanup(ctx, name, ""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes what a node left after a crash of the process that ran
// it: it kills every process in the node's cgroups (kubelet, containerd,
// shims, containers), removes the cgroups, and, when dir is not empty,
// removes the node's directory. Its mount namespace is gone with its
// processes. It succeeds when there is nothing to clean up.
func Cleanup(ctx context.Context, cgroupName, dir string) error {
	if err := removeCgroups(ctx, cgroupName); err != nil {
		return err
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove node directory: %w", err)
		}
	}
	return nil
}
