package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

const (
	// nodeToolsModuleDir is the module of the kubelet and kube-proxy,
	// relative to the repository root.
	nodeToolsModuleDir = "hack/nodetools"
	// containerdModuleDir is the module of containerd, relative to the
	// repository root.
	containerdModuleDir = "hack/nodetools/containerd"
	// containerdModule is the module whose version names containerd.
	containerdModule = "github.com/containerd/containerd/v2"
	// containerdTags leave out the snapshotters that need cgo or
	// libraries the machine may lack.
	containerdTags = "no_btrfs,no_zfs,no_devmapper"

	// nodeRecipeVersion is part of the node tools' cache key; bump it when
	// the way they are built changes in a way the hashed files do not show.
	nodeRecipeVersion = "herald-testenv-nodetools/1"
	// nodeCachePrefix starts the name of the node tools' cache directory,
	// next to the control plane's.
	nodeCachePrefix = "node-"
)

// nodePackages are the node binaries of the Kubernetes module, built
// together in hack/nodetools.
func nodePackages() []string {
	return []string{"k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"}
}

// agnhostPackage is Kubernetes' e2e test image program, built static for
// the lab's agnhost image.
const agnhostPackage = "k8s.io/kubernetes/test/images/agnhost"

// containerdPackages are the containerd binaries, built together in
// hack/nodetools/containerd.
func containerdPackages() []string {
	return []string{
		containerdModule + "/cmd/containerd",
		containerdModule + "/cmd/ctr",
		containerdModule + "/cmd/containerd-shim-runc-v2",
	}
}

// NodePaths locates the binaries of a real Kubernetes node built from the
// pinned modules in hack/nodetools: the kubelet and kube-proxy of the
// control plane's Kubernetes version, and containerd with its ctr client
// and runc shim. runc and the CNI plugins come from the machine (Debian's
// runc and containernetworking-plugins packages).
type NodePaths struct {
	// Dir is the cache directory that holds the binaries; containerd finds
	// its shim here when Dir is on its PATH.
	Dir string
	// Kubelet is the kubelet binary.
	Kubelet string
	// KubeProxy is the kube-proxy binary.
	KubeProxy string
	// Containerd is the containerd binary.
	Containerd string
	// Ctr is containerd's command-line client.
	Ctr string
	// Shim is containerd-shim-runc-v2, the runc shim containerd starts per
	// Pod.
	Shim string
	// Agnhost is Kubernetes' e2e test program (static, for an image).
	Agnhost string
	// AgnhostVersion is agnhost's version ("2.66.1"), from the pinned
	// Kubernetes module's test/images/agnhost/VERSION.
	AgnhostVersion string
	// ContainerdVersion is the containerd version the binaries report,
	// without a leading v ("2.3.7").
	ContainerdVersion string
}

func nodePathsIn(dir, containerdVersion string) NodePaths {
	return NodePaths{
		Dir:               dir,
		Kubelet:           filepath.Join(dir, "kubelet"),
		KubeProxy:         filepath.Join(dir, "kube-proxy"),
		Containerd:        filepath.Join(dir, "containerd"),
		Ctr:               filepath.Join(dir, "ctr"),
		Shim:              filepath.Join(dir, "containerd-shim-runc-v2"),
		Agnhost:           filepath.Join(dir, "agnhost"),
		ContainerdVersion: containerdVersion,
	}
}

// NodeBinaries returns the kubelet, kube-proxy, agnhost, containerd, ctr and
// containerd-shim-runc-v2 binaries for the versions pinned in
// hack/nodetools, building them first if the cache does not hold them yet.
//
// The kubelet and kube-proxy are built in hack/nodetools, whose go.mod pins
// the same k8s.io/kubernetes version and staging replacements as
// hack/tools, with the same version stamp as the control plane (see
// Binaries); containerd, ctr and the shim are built in
// hack/nodetools/containerd with CGO_ENABLED=0 and the tags no_btrfs,
// no_zfs and no_devmapper, stamped with containerd's module version. The
// cache directory is <base>/node-<key> next to the control plane's (see
// Binaries for <base>), where <key> hashes both modules' go.mod and go.sum
// and the build flags. Concurrent callers serialize on a file lock, and a
// killed build leaves no partial binary (see Binaries). A cold build takes
// many minutes; progress is logged with slog.Default, one message per go
// command.
func NodeBinaries(ctx context.Context) (NodePaths, error) {
	return nodeBinaries(ctx, slog.Default())
}

func nodeBinaries(ctx context.Context, log *slog.Logger) (NodePaths, error) {
	root, err := RepoRoot()
	if err != nil {
		return NodePaths{}, err
	}
	s, version, err := nodeToolSet(root)
	if err != nil {
		return NodePaths{}, err
	}
	dir, err := ensureTools(ctx, log, s)
	if err != nil {
		return NodePaths{}, err
	}
	paths := nodePathsIn(dir, version)
	if paths.AgnhostVersion, err = agnhostVersion(ctx, filepath.Join(root, nodeToolsModuleDir)); err != nil {
		return NodePaths{}, err
	}
	return paths, nil
}

// agnhostVersion reads agnhost's VERSION file from the Kubernetes module
// that the module in dir requires.
func agnhostVersion(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate the Kubernetes module for agnhost's version: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "test", "images", "agnhost", "VERSION"))
	if err != nil {
		return "", fmt.Errorf("agnhost's version: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// nodeToolSet returns how the node binaries are built and cached, and the
// containerd version they report.
func nodeToolSet(root string) (toolSet, string, error) {
	kubeDir := filepath.Join(root, nodeToolsModuleDir)
	ctrdDir := filepath.Join(root, containerdModuleDir)
	kubeFlags, err := versionLDFlags(filepath.Join(kubeDir, "go.mod"))
	if err != nil {
		return toolSet{}, "", err
	}
	gomod, err := os.ReadFile(filepath.Join(ctrdDir, "go.mod"))
	if err != nil {
		return toolSet{}, "", fmt.Errorf("read containerd module: %w", err)
	}
	v := requiredVersion(gomod, containerdModule)
	if !strings.HasPrefix(v, "v") {
		return toolSet{}, "", fmt.Errorf("%s/go.mod does not require %s", ctrdDir, containerdModule)
	}
	version := strings.TrimPrefix(v, "v")
	ctrdFlags := fmt.Sprintf("-X %[1]s/version.Version=%[2]s -X %[1]s/version.Revision=%[3]s",
		containerdModule, version, v)

	var hashed []hashedFile
	for _, m := range []struct{ label, dir string }{{"nodetools", kubeDir}, {"containerd", ctrdDir}} {
		for _, name := range []string{"go.mod", "go.sum"} {
			hashed = append(hashed, hashedFile{label: m.label + "/" + name, path: filepath.Join(m.dir, name)})
		}
	}
	var names []string
	for _, pkg := range append(append(nodePackages(), agnhostPackage), containerdPackages()...) {
		names = append(names, filepath.Base(pkg))
	}
	s := toolSet{
		what:   "node binaries (kubelet, kube-proxy, agnhost, containerd, ctr and containerd-shim-runc-v2)",
		prefix: nodeCachePrefix,
		keyLines: []string{nodeRecipeVersion, runtime.GOOS + "/" + runtime.GOARCH,
			kubeFlags, strings.Join(nodePackages(), " "), agnhostPackage,
			ctrdFlags, containerdTags, strings.Join(containerdPackages(), " ")},
		hashed: hashed,
		names:  names,
		steps: []buildStep{{
			// Built like the control plane (same flags, cgo as the
			// machine has it), so its compiled packages are shared.
			what: "kubelet and kube-proxy",
			dir:  kubeDir,
			env:  []string{"GOWORK=off"},
			args: append([]string{"build", "-ldflags", kubeFlags, "-o", buildDirArg}, nodePackages()...),
		}, {
			// Static: it runs in an image with nothing else in it.
			what: "agnhost",
			dir:  kubeDir,
			env:  []string{"GOWORK=off", "CGO_ENABLED=0"},
			args: []string{"build", "-trimpath", "-o", buildDirArg, agnhostPackage},
		}, {
			what: "containerd, ctr and containerd-shim-runc-v2",
			dir:  ctrdDir,
			env:  []string{"GOWORK=off", "CGO_ENABLED=0"},
			args: append([]string{"build", "-tags", containerdTags, "-ldflags", ctrdFlags, "-o", buildDirArg},
				containerdPackages()...),
		}},
	}
	return s, version, nil
}
