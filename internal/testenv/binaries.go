package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/herald-lb/herald/internal/pinnedexec"
)

const (
	// rootModule is the module path of the repository root.
	rootModule = "github.com/herald-lb/herald"
	// toolsModuleDir is the tools module, relative to the repository root.
	toolsModuleDir = "hack/tools"
	// kubernetesModule is the module whose version names the built binaries.
	kubernetesModule = "k8s.io/kubernetes"
	// helmModule is the Helm module; the helm binary is installed at the
	// version the root go.mod requires, so that tests using the Helm SDK and
	// the helm command line agree.
	helmModule = "helm.sh/helm/v4"
	// helmPackage is the helm command, installed as "helm".
	helmPackage = helmModule + "/cmd/helm"

	// cacheEnv overrides the base directory of the binary cache.
	cacheEnv = "HERALD_TOOLS_CACHE"

	// recipeVersion is part of the cache key; bump it when the way the
	// binaries are built changes in a way the hashed files do not show.
	recipeVersion = "herald-testenv-tools/2"
)

// buildPackages returns the packages built into the cache, in the order
// given to go build. Their binaries are named after the last path element.
func buildPackages() []string {
	return []string{
		"k8s.io/kubernetes/cmd/kube-apiserver",
		"k8s.io/kubernetes/cmd/kube-controller-manager",
		"k8s.io/kubernetes/cmd/kube-scheduler",
		"k8s.io/kubernetes/cmd/kubectl",
		"./cmd/etcd",
	}
}

// hashedFiles returns the tools module files, relative to its directory,
// whose content decides the cache key.
func hashedFiles() []string { return []string{"go.mod", "go.sum", "cmd/etcd/main.go"} }

// recipe is what decides the content of the cache, besides the hashed
// files of the tools module.
type recipe struct {
	// toolsDir is the directory of the tools module.
	toolsDir string
	// ldflags stamp the Kubernetes version (see versionLDFlags).
	ldflags string
	// helmVersion is the version of helmModule that is installed.
	helmVersion string
}

// Paths locates the control-plane binaries built from the pinned modules in
// hack/tools, and the helm command of the Helm version the root go.mod
// requires.
type Paths struct {
	// Dir is the cache directory that holds the binaries.
	Dir string
	// APIServer is the kube-apiserver binary.
	APIServer string
	// ControllerManager is the kube-controller-manager binary.
	ControllerManager string
	// Scheduler is the kube-scheduler binary.
	Scheduler string
	// Etcd is the etcd binary.
	Etcd string
	// Kubectl is the kubectl binary.
	Kubectl string
	// Helm is the helm binary, of the helm.sh/helm/v4 version that the
	// root go.mod requires; `helm version --short` prints that version.
	Helm string
}

func pathsIn(dir string) Paths {
	return Paths{
		Dir:               dir,
		APIServer:         filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "kube-scheduler"),
		Etcd:              filepath.Join(dir, "etcd"),
		Kubectl:           filepath.Join(dir, "kubectl"),
		Helm:              filepath.Join(dir, "helm"),
	}
}

// Binaries returns the kube-apiserver, kube-controller-manager,
// kube-scheduler, etcd and kubectl binaries for the pinned versions in
// hack/tools, and a helm binary of the helm.sh/helm/v4 version the root
// go.mod requires, building them first if the cache does not hold them yet.
//
// The repository root is found by walking up from the working directory to
// the go.mod of module github.com/herald-lb/herald. The cache directory is
// <base>/<key>, where <base> is $HERALD_TOOLS_CACHE if set and otherwise
// herald/tools under the user cache directory (~/.cache/herald/tools), and
// <key> is a short SHA-256 of hack/tools/go.mod, go.sum, cmd/etcd/main.go,
// the build flags and the Helm version, so a version bump builds into a
// fresh directory. The Kubernetes binaries are built in the tools module;
// helm is installed with `go install helm.sh/helm/v4/cmd/helm@<version>`
// outside any module, from its own go.mod, which needs the module proxy (or
// a module cache that already holds its dependencies).
//
// A build takes several minutes the first time (the Go build cache makes
// later ones fast). Concurrent callers, including other test binaries of the
// same `go test ./...`, serialize on a file lock in the cache directory; the
// binaries are built into a temporary directory and renamed into place, so a
// killed build never leaves a partial binary behind. Progress is logged with
// slog.Default, one message per go command.
func Binaries(ctx context.Context) (Paths, error) {
	return binaries(ctx, slog.Default())
}

func binaries(ctx context.Context, log *slog.Logger) (Paths, error) {
	root, err := RepoRoot()
	if err != nil {
		return Paths{}, err
	}
	r := recipe{toolsDir: filepath.Join(root, toolsModuleDir)}
	if r.ldflags, err = versionLDFlags(filepath.Join(r.toolsDir, "go.mod")); err != nil {
		return Paths{}, err
	}
	if r.helmVersion, err = helmVersion(filepath.Join(root, "go.mod")); err != nil {
		return Paths{}, err
	}
	dir, err := ensureTools(ctx, log, r.toolSet())
	if err != nil {
		return Paths{}, err
	}
	return pathsIn(dir), nil
}

// toolSet returns how the control-plane binaries of r are built and cached.
func (r recipe) toolSet() toolSet {
	names := []string{"helm"}
	for _, pkg := range buildPackages() {
		names = append(names, filepath.Base(pkg))
	}
	hashed := make([]hashedFile, 0, len(hashedFiles()))
	for _, name := range hashedFiles() {
		hashed = append(hashed, hashedFile{label: name, path: filepath.Join(r.toolsDir, name)})
	}
	return toolSet{
		what: "control-plane binaries (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kubectl and helm)",
		keyLines: []string{recipeVersion, runtime.GOOS + "/" + runtime.GOARCH, r.ldflags,
			strings.Join(buildPackages(), " "), helmPackage + "@" + r.helmVersion},
		hashed: hashed,
		names:  names,
		steps: []buildStep{{
			// The tools module is built on its own, whatever workspace surrounds it.
			what: "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd",
			dir:  r.toolsDir,
			env:  []string{"GOWORK=off"},
			args: append([]string{"build", "-ldflags", r.ldflags, "-o", buildDirArg}, buildPackages()...),
		}, {
			// helm is installed outside any module (from its own go.mod), so it
			// runs in an empty directory of its own.
			what:    "helm",
			emptDir: true,
			env:     []string{"GOWORK=off", "GOFLAGS=-mod=mod", "GOBIN=" + buildDirArg},
			args:    []string{"install", "-ldflags", helmLDFlags(r.helmVersion), helmPackage + "@" + r.helmVersion},
		}},
	}
}

// RepoRoot walks up from the working directory to the directory whose
// go.mod declares the root module.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("get working directory: %w", err)
	}
	for dir := wd; ; {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		switch {
		case err == nil:
			if modulePath(data) == rootModule {
				return dir, nil
			}
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("read go.mod: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above %s", rootModule, wd)
		}
		dir = parent
	}
}

// modulePath returns the module path declared by a go.mod file, or "".
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := stripComment(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// requiredVersion returns the version of module mod required by a go.mod
// file, in either the single-line or the block form.
func requiredVersion(gomod []byte, mod string) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	inBlock := false
	for sc.Scan() {
		f := strings.Fields(stripComment(sc.Text()))
		switch {
		case len(f) == 0:
			continue
		case inBlock && f[0] == ")":
			inBlock = false
			continue
		case f[0] == "require" && len(f) == 2 && f[1] == "(":
			inBlock = true
			continue
		case f[0] == "require":
			f = f[1:]
		case !inBlock:
			continue
		}
		if len(f) == 2 && f[0] == mod {
			return f[1]
		}
	}
	return ""
}

func stripComment(line string) string {
	if i := strings.Index(line, "//"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// versionLDFlags returns the -ldflags that stamp the Kubernetes version the
// tools module pins into the binaries, so clients see a real version.
func versionLDFlags(gomodPath string) (string, error) {
	data, err := os.ReadFile(gomodPath)
	if err != nil {
		return "", fmt.Errorf("read tools module: %w", err)
	}
	v := requiredVersion(data, kubernetesModule)
	if v == "" {
		return "", fmt.Errorf("%s does not require %s", gomodPath, kubernetesModule)
	}
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 || !strings.HasPrefix(v, "v") {
		return "", fmt.Errorf("%s: unexpected %s version %q", gomodPath, kubernetesModule, v)
	}
	const pkg = "k8s.io/component-base/version"
	return fmt.Sprintf("-X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=%[3]s -X %[1]s.gitMinor=%[4]s",
		pkg, v, parts[0], parts[1]), nil
}

// helmVersion returns the version of the Helm module that the go.mod at
// gomodPath requires.
func helmVersion(gomodPath string) (string, error) {
	data, err := os.ReadFile(gomodPath)
	if err != nil {
		return "", fmt.Errorf("read root module: %w", err)
	}
	v := requiredVersion(data, helmModule)
	if v == "" {
		return "", fmt.Errorf("%s does not require %s", gomodPath, helmModule)
	}
	return v, nil
}

// helmLDFlags returns the -ldflags that stamp version into helm, as Helm's
// own release build does; without them `helm version` prints only the
// major.minor version hard-coded in its source.
func helmLDFlags(version string) string {
	return "-X " + helmModule + "/internal/version.version=" + version
}

// cacheDir computes the cache directory for r.
func cacheDir(r recipe) (string, error) { return r.toolSet().cacheDir() }

// toolSet is a set of binaries built together into one cache directory.
type toolSet struct {
	// what names the binaries in log messages.
	what string
	// prefix starts the name of the cache directory, before the key.
	prefix string
	// keyLines, with the content of the hashed files, decide the key.
	keyLines []string
	// hashed are the files whose content decides the key.
	hashed []hashedFile
	// names are the binaries a complete cache directory holds.
	names []string
	// steps build the binaries into a temporary directory.
	steps []buildStep
}

// hashedFile is a file whose content is part of a cache key.
type hashedFile struct {
	// label names the file in the hash, so that moving the repository
	// keeps the key.
	label string
	// path is where the file is.
	path string
}

// buildDirArg stands, in a buildStep's args and env, for the temporary
// directory the binaries are built into, with a trailing separator.
const buildDirArg = "\x00builddir\x00"

// buildStep is one go command of a build.
type buildStep struct {
	// what names the binaries the step builds, for progress messages.
	what string
	// dir is where the go command runs; emptDir runs it in an empty
	// directory of its own instead (outside any module).
	dir     string
	emptDir bool
	// env is added to the environment.
	env []string
	// args are the go command's arguments.
	args []string
}

// cacheDir computes the cache directory of s: <base>/<prefix><key>.
func (s toolSet) cacheDir() (string, error) {
	h := sha256.New()
	for _, line := range s.keyLines {
		fmt.Fprintf(h, "%s\n", line)
	}
	for _, f := range s.hashed {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return "", fmt.Errorf("hash tools module: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f.label, len(data))
		h.Write(data)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	base, err := CacheBase()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, s.prefix+key), nil
}

// CacheBase returns the directory that holds the built tools:
// $HERALD_TOOLS_CACHE if set, otherwise herald/tools in the user's cache
// directory. The lab keeps what it downloads or builds next to them.
func CacheBase() (string, error) {
	base := os.Getenv(cacheEnv)
	if base == "" {
		userCache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("locate cache directory (set %s): %w", cacheEnv, err)
		}
		base = filepath.Join(userCache, "herald", "tools")
	}
	base, err := filepath.Abs(base)
	if err != nil {
		return "", fmt.Errorf("tools cache: %w", err)
	}
	return base, nil
}

// complete reports whether every binary exists in dir as an executable file.
func (s toolSet) complete(dir string) bool {
	for _, name := range s.names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// ensureTools returns the cache directory of s, building the binaries into
// it first unless it already holds them all. Concurrent callers serialize
// on a file lock in the directory; the binaries are built into a temporary
// directory and renamed into place, so a killed build never leaves a
// partial binary behind.
func ensureTools(ctx context.Context, log *slog.Logger, s toolSet) (string, error) {
	dir, err := s.cacheDir()
	if err != nil {
		return "", err
	}
	if s.complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create tools cache %s: %w", dir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"), s.what, log)
	if err != nil {
		return "", err
	}
	defer unlock()

	// Another process may have built the binaries while we waited.
	if s.complete(dir) {
		return dir, nil
	}
	if err := s.build(ctx, log, dir); err != nil {
		return "", err
	}
	if !s.complete(dir) {
		return "", fmt.Errorf("build into %s finished but binaries are missing", dir)
	}
	return dir, nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait. The returned function releases the lock.
func lockFile(ctx context.Context, path, what string, log *slog.Logger) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				// Closing the file releases the lock.
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !logged {
			log.Info("testenv: waiting for another process building the "+what, "lock", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// build runs the steps of s into a temporary directory inside dir and
// renames the binaries into dir. The caller holds the lock on dir.
func (s toolSet) build(ctx context.Context, log *slog.Logger, dir string) error {
	// Leftovers of killed builds; nobody else builds here while we hold the lock.
	if stale, err := filepath.Glob(filepath.Join(dir, ".build-*")); err == nil {
		for _, st := range stale {
			_ = os.RemoveAll(st)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := tmp + string(filepath.Separator)
	subst := func(in []string) []string {
		res := make([]string, len(in))
		for i, a := range in {
			res[i] = strings.ReplaceAll(a, buildDirArg, out)
		}
		return res
	}

	logPath := filepath.Join(dir, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()

	log.Info("testenv: building "+s.what+" (the first build takes several minutes)", "dir", dir, "log", logPath)
	start := time.Now()
	for i, step := range s.steps {
		stepDir := step.dir
		if step.emptDir {
			stepDir = filepath.Join(tmp, fmt.Sprintf("work-%d", i))
			if err := os.Mkdir(stepDir, 0o755); err != nil {
				return fmt.Errorf("create build directory: %w", err)
			}
		}
		args := subst(step.args)
		log.Info(fmt.Sprintf("testenv: build step %d of %d: %s", i+1, len(s.steps), step.what))
		stepStart := time.Now()
		fmt.Fprintf(logFile, "# go %s (in %s)\n", strings.Join(args, " "), stepDir)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = stepDir
		cmd.Env = append(os.Environ(), subst(step.env)...)
		cmd.Stdout = logFile
		cmd.Stderr = logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := pinnedexec.Run(cmd); err != nil {
			return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), stepDir, err, TailFile(logPath, 40))
		}
		fmt.Fprintf(logFile, "# took %s\n", time.Since(stepStart).Round(time.Second))
	}
	log.Info("testenv: built "+s.what, "dir", dir, "took", time.Since(start).Round(time.Second))

	for _, name := range s.names {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	return nil
}
