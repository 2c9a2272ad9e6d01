// Package testrequire decides what a test does when this machine lacks
// something it needs (root, a tool, a kernel feature): on a developer's
// machine it skips, and under CI (CI=true) it fails, so that a CI machine
// that cannot run a test turns red instead of silently green.
//
// Skips for -short are not this package's business: -short is asked for.
package testrequire

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run under CI (the environment variable CI
// is "true", as CI systems set it).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing ends the test because the machine lacks what the message names:
// t.Skip locally, t.Fatal under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true: a test that cannot run here is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

// Root ends the test (see Missing) unless it runs as root.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root: %s", why)
	}
}
