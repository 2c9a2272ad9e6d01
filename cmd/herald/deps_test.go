package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/herald-lb/herald/internal/testrequire"
)

// The herald binary is what Herald's image ships and every node runs: it
// holds only what runs in a cluster or on a laptop. Go's testing package,
// the lab (cmd/herald-lab), the test environment and the image builder are
// not in it.
func TestShippedBinaryDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testrequire.Missing(t, "needs the go command to list the dependencies of ./cmd/herald")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps ./cmd/herald: %v\n%s", err, stderr)
	}
	const module = "github.com/herald-lb/herald/"
	// Each is forbidden with its subpackages.
	forbidden := []struct {
		pkg, why string
	}{
		{"testing", "Go's testing package"},
		{module + "internal/lab", "the lab (cmd/herald-lab)"},
		{module + "internal/labcli", "the lab's commands (cmd/herald-lab)"},
		{module + "internal/testenv", "the test control plane"},
		{module + "internal/testrequire", "a test helper"},
		{module + "internal/netnstest", "a test helper"},
		{module + "internal/image", "the image builder"},
		{module + "hack", "a development command"},
		{"github.com/google/go-containerregistry", "the image builder's library"},
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps ./cmd/herald listed nothing")
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f.pkg || strings.HasPrefix(dep, f.pkg+"/") {
				t.Errorf("./cmd/herald depends on %s (%s)", dep, f.why)
			}
		}
	}
}
