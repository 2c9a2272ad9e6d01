package testenv

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// StartForTest starts an environment for the calling test and stops it in
// t.Cleanup. It fails the test if the environment does not start.
func StartForTest(t testing.TB, opts Options) *Env {
	t.Helper()
	env, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start test environment: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop test environment: %v", err)
		}
	})
	return env
}

// Shared is one environment shared by the tests of a package. It starts on
// the first call to Env, so a run in which no test asks for it (e.g. with
// -short, or -run selecting other tests) starts nothing, and it stops when
// the tests are done. Use it from TestMain:
//
//	var shared = testenv.NewShared(testenv.Options{CRDDirs: []string{"../../config/crd"}})
//
//	func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }
//
//	func TestSomething(t *testing.T) {
//		if testing.Short() {
//			t.Skip("needs kube-apiserver")
//		}
//		env := shared.Env(t)
//		...
//	}
//
// Tests sharing an environment must not depend on a clean cluster; give
// each test its own namespace or object names.
type Shared struct {
	opts Options

	mu      sync.Mutex
	started bool
	stopped bool
	env     *Env
	err     error
}

// NewShared returns a Shared that starts its environment with opts.
func NewShared(opts Options) *Shared { return &Shared{opts: opts} }

// Env returns the shared environment, starting it on the first call with
// that test's context. It fails t if the environment could not start (every
// later caller gets the same error) or Stop was already called.
func (s *Shared) Env(t testing.TB) *Env {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		t.Fatal("shared test environment used after Stop")
	}
	if !s.started {
		s.started = true
		s.env, s.err = Start(t.Context(), s.opts)
		if s.err != nil {
			t.Fatalf("start shared test environment: %v", s.err)
		}
	}
	if s.err != nil {
		t.Fatalf("shared test environment failed to start (see the first test that used it): %v", firstLine(s.err))
	}
	return s.env
}

// Run runs the tests of m, stops the environment if a test started it, and
// returns the exit code for os.Exit. A failure to stop turns a passing run
// into exit code 1.
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stop shared test environment: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Stop stops the environment if it was started. Run calls it; call it
// yourself only when not using Run.
func (s *Shared) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.env == nil {
		return nil
	}
	return s.env.Stop()
}

// firstLine returns the first line of err's message.
func firstLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}
