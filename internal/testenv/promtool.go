package testenv

import (
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
)

const (
	// promtoolModuleDir is the module that pins Prometheus, relative to
	// the repository root.
	promtoolModuleDir = "hack/promtool"
	// promtoolPackage is Prometheus's rule checker and tester.
	promtoolPackage = "github.com/prometheus/prometheus/cmd/promtool"
	// prometheusPackage is the Prometheus server (the lab's end-to-end
	// test scrapes the lab with it).
	prometheusPackage = "github.com/prometheus/prometheus/cmd/prometheus"
	// promqlNamesPackage is the module's own PromQL name lister.
	promqlNamesPackage = "./cmd/promqlnames"
	// promRecipeVersion is part of the cache key; bump it when the way
	// the binaries are built changes in a way the hashed files do not
	// show.
	promRecipeVersion = "herald-testenv-promtool/2"
	// promCachePrefix starts the name of the cache directory, next to the
	// control plane's.
	promCachePrefix = "promtool-"
)

// PromPaths locates the Prometheus tools built from hack/promtool.
type PromPaths struct {
	// Dir is the cache directory that holds the binaries.
	Dir string
	// Promtool is Prometheus's promtool (check rules, test rules).
	Promtool string
	// Prometheus is the Prometheus server of the same version.
	Prometheus string
	// PromQLNames parses PromQL expressions with the same Prometheus
	// module's parser and lists the metric names each selects (see
	// hack/promtool/cmd/promqlnames).
	PromQLNames string
}

// PromTools returns promtool, the Prometheus server and promqlnames for the
// Prometheus version pinned in hack/promtool, building them first if the cache does not hold
// them yet.
//
// They are built in hack/promtool, a module of its own so that
// Prometheus's dependencies move no version the root module or hack/tools
// pins, into <base>/promtool-<key> next to the control plane's binaries
// (see Binaries for <base>), where <key> hashes the module's go.mod,
// go.sum, tools.go and promqlnames' source and the build recipe.
// Concurrent callers serialize on a file lock and a killed build leaves no
// partial binary (see Binaries). A cold build takes a few minutes (about
// six on two cores); the three share most packages, so they are built by
// one `go build`.
func PromTools(ctx context.Context) (PromPaths, error) {
	root, err := RepoRoot()
	if err != nil {
		return PromPaths{}, err
	}
	dir, err := ensureTools(ctx, slog.Default(), promToolSet(root))
	if err != nil {
		return PromPaths{}, err
	}
	return PromPaths{
		Dir:         dir,
		Promtool:    filepath.Join(dir, "promtool"),
		Prometheus:  filepath.Join(dir, "prometheus"),
		PromQLNames: filepath.Join(dir, "promqlnames"),
	}, nil
}

// promToolSet returns how the Prometheus tools are built and cached.
func promToolSet(root string) toolSet {
	modDir := filepath.Join(root, promtoolModuleDir)
	pkgs := []string{promtoolPackage, prometheusPackage, promqlNamesPackage}
	var hashed []hashedFile
	for _, name := range []string{"go.mod", "go.sum", "tools.go", "cmd/promqlnames/main.go"} {
		hashed = append(hashed, hashedFile{label: "promtool/" + name, path: filepath.Join(modDir, name)})
	}
	return toolSet{
		what:     "Prometheus tools (promtool, prometheus and promqlnames)",
		prefix:   promCachePrefix,
		keyLines: []string{promRecipeVersion, runtime.GOOS + "/" + runtime.GOARCH, strings.Join(pkgs, " ")},
		hashed:   hashed,
		names:    []string{"promtool", "prometheus", "promqlnames"},
		steps: []buildStep{{
			what: "promtool, prometheus and promqlnames",
			dir:  modDir,
			env:  []string{"GOWORK=off"},
			args: append([]string{"build", "-o", buildDirArg}, pkgs...),
		}},
	}
}
