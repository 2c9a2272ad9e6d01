package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/herald-lb/herald/internal/bird"
	"github.com/herald-lb/herald/internal/frr"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testenv"
)

const (
	// upTimeout bounds the wait for the daemon to report the lab up (the
	// binaries are built before, in the foreground).
	upTimeout = 5 * time.Minute
	// downGrace is how long Down waits for the daemon to stop its Pods and
	// the control plane before killing it.
	downGrace = 60 * time.Second
	// ReleaseName and ReleaseNamespace are Herald's Helm release in the lab:
	// kube-system, as the Talos tutorial installs it.
	ReleaseName      = "herald"
	ReleaseNamespace = "kube-system"
)

// Up brings the lab up, or checks that it is, and installs (or upgrades)
// Herald with its Helm chart and the Talos preset. Progress goes to out.
func Up(ctx context.Context, opts Options, chart string, out io.Writer) (State, error) {
	opts = opts.withDefaults()
	if err := checkProxy(opts.Proxy); err != nil {
		return State{}, err
	}
	if _, ok := daemonPID(opts.Dir); ok {
		if s, err := ReadState(opts.Dir); err == nil {
			fmt.Fprintf(out, "The lab in %s is already up (daemon pid %d).\n", opts.Dir, s.PID)
			if len(s.Topology.Nodes) != opts.Nodes || s.Topology.Client.IPv6.IsValid() != opts.IPv6 || s.Proxy != opts.Proxy ||
				(s.Topology.Router != nil) != opts.BGP {
				fmt.Fprintf(out, "It has %d nodes (IPv6: %v, proxy: %s, BGP: %v), not what was asked; `herald-lab down` first to change that.\n",
					len(s.Topology.Nodes), s.Topology.Client.IPv6.IsValid(), s.Proxy, s.Topology.Router != nil)
			}
			return s, installHerald(ctx, s, chart, out)
		}
		// A daemon that is not up yet, or stuck: start over.
	}
	self, herald, err := opts.binaries()
	if err != nil {
		return State{}, err
	}
	if err := Down(opts, out); err != nil {
		return State{}, err
	}
	fmt.Fprintln(out, "Building (or finding in the cache) etcd, the Kubernetes control plane, kubectl and helm…")
	if _, err := testenv.Binaries(ctx); err != nil {
		return State{}, err
	}
	{
		fmt.Fprintln(out, "Building (or finding in the cache) the kubelet, kube-proxy, agnhost and containerd…")
		if _, err := testenv.NodeBinaries(ctx); err != nil {
			return State{}, err
		}
		if chart == "" {
			if chart, err = FindChart(); err != nil {
				return State{}, err
			}
		}
		if opts.HeraldTag, err = chartAppVersion(chart); err != nil {
			return State{}, err
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return State{}, fmt.Errorf("lab directory: %w", err)
	}
	logPath := filepath.Join(opts.Dir, logFile)
	logf, err := os.Create(logPath)
	if err != nil {
		return State{}, fmt.Errorf("lab log: %w", err)
	}
	defer logf.Close()
	args := []string{"daemon", "--dir", opts.Dir, "--prefix", opts.Prefix, "--nodes", strconv.Itoa(opts.Nodes), "--herald", herald}
	if opts.BGP {
		args = append(args, "--bgp")
	}
	if opts.IPv6 {
		args = append(args, "--ipv6")
	}
	args = append(args, "--herald-tag", opts.HeraldTag, "--proxy", opts.Proxy)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: the lab outlives this command and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return State{}, fmt.Errorf("start the lab daemon: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	fmt.Fprintf(out, "Starting the lab: %d nodes in network namespaces %s*, control plane on loopback (log: %s)…\n",
		opts.Nodes, opts.Prefix, logPath)

	deadline := time.After(upTimeout)
	for {
		s, err := ReadState(opts.Dir)
		if err == nil {
			fmt.Fprintf(out, "Control plane and %d nodes are up.\n", len(s.Topology.Nodes))
			return s, installHerald(ctx, s, chart, out)
		}
		select {
		case <-exited:
			return State{}, fmt.Errorf("the lab daemon exited while starting; the end of %s:\n%s", logPath, testenv.TailFile(logPath, 30))
		case <-deadline:
			return State{}, fmt.Errorf("the lab did not come up within %s; see %s", upTimeout, logPath)
		case <-ctx.Done():
			return State{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// InstallValues are helm's value arguments of the lab's install of the
// chart in directory chart: the Talos preset, and the metrics on the
// nodes' LAN addresses (the chart's default is loopback; the lab's LAN is
// its own, and its end-to-end test scrapes them with Prometheus from the
// client, as the chart's monitors would). A render with other values
// rolls the agents.
func InstallValues(chart string) []string {
	return []string{
		"--values", filepath.Join(chart, "values-talos.yaml"),
		"--set", "controller.metricsAddr=0.0.0.0:9470",
		"--set", "agent.metricsAddr=0.0.0.0:9471",
	}
}

// installHerald installs Herald with helm, the Talos preset, the metrics
// on the LAN and the lab's image (the local herald binary, see
// Options.Herald), and waits for its Pods.
func installHerald(ctx context.Context, s State, chart string, out io.Writer) error {
	if chart == "" {
		var err error
		if chart, err = FindChart(); err != nil {
			return err
		}
	}
	args := append([]string{"upgrade", "--install", ReleaseName, chart, "--namespace", ReleaseNamespace}, InstallValues(chart)...)
	args = append(args, "--wait", "--timeout", "5m", "--kubeconfig", s.Kubeconfig)
	fmt.Fprintf(out, "$ helm %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, s.Tools.Helm, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("helm install of Herald: %w", err)
	}
	return nil
}

// FindChart returns deploy/helm/herald in the Herald repository that holds
// the working directory.
func FindChart() (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("find Herald's Helm chart (run from Herald's repository or pass --chart): %w", err)
	}
	return filepath.Join(root, "deploy", "helm", "herald"), nil
}

// chartAppVersion returns the appVersion of the chart in dir: the tag its
// default image has.
func chartAppVersion(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return "", fmt.Errorf("read the chart: %w", err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return "", fmt.Errorf("read %s: %w", filepath.Join(dir, "Chart.yaml"), err)
	}
	if chart.AppVersion == "" {
		return "", fmt.Errorf("%s has no appVersion", filepath.Join(dir, "Chart.yaml"))
	}
	return chart.AppVersion, nil
}

// Down stops the lab's daemon (SIGTERM: Pods, then the control plane) and
// removes every namespace with the lab's prefix, also after a crash.
func Down(opts Options, out io.Writer) error {
	opts = opts.withDefaults()
	if pid, ok := daemonPID(opts.Dir); ok {
		fmt.Fprintf(out, "Stopping the lab daemon (pid %d)…\n", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(downGrace)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			fmt.Fprintf(out, "The daemon did not stop within %s; killing it.\n", downGrace)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for alive(pid) {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	var errs []error
	// Containers of real nodes and their shims outlive a killed daemon.
	if err := removeRealNodes(opts.Prefix); err != nil {
		errs = append(errs, err)
	}
	// A killed daemon's routers (FRR, BIRD) outlive it too; routers of labs
	// whose daemons still run are left alone.
	if err := frr.RemoveLeftovers(frrBase); err != nil {
		errs = append(errs, err)
	}
	if err := bird.RemoveLeftovers(birdBase); err != nil {
		errs = append(errs, err)
	}
	if err := labnet.RemoveNamespaces(opts.Prefix); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []string{stateFile, pidFile, "kubeconfig"} {
		if err := os.Remove(filepath.Join(opts.Dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(opts.Dir, "nodes")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ExecIn replaces this process with argv running in the named host's
// network namespace (`ip netns exec`), so a terminal passes through.
func ExecIn(s State, host string, argv []string) error {
	h, ok := s.Topology.Node(host)
	if !ok {
		var names []string
		for _, h := range s.Topology.Hosts() {
			names = append(names, h.Name)
		}
		return fmt.Errorf("no host %q in the lab (hosts: %s)", host, strings.Join(names, ", "))
	}
	if len(argv) == 0 {
		argv = []string{"sh"}
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	return syscall.Exec(ip, append([]string{"ip", "netns", "exec", h.NetNS}, argv...), os.Environ())
}

// Kubectl replaces this process with the lab's kubectl and kubeconfig.
func Kubectl(s State, args []string) error {
	env := append(os.Environ(), "KUBECONFIG="+s.Kubeconfig)
	return syscall.Exec(s.Tools.Kubectl, append([]string{"kubectl"}, args...), env)
}
