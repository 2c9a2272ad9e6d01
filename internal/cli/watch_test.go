package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
)

// syncBuffer is a bytes.Buffer safe for one writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// herald pools --watch prints the table, prints it again only when a pool
// is added, and ends cleanly when interrupted.
func TestWatchPools(t *testing.T) {
	h := newCLIHarness(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	root := newRoot("herald", inspectHooks{})
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"pools", "--watch", "--interval", "50ms"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	waitFor(t, "the first table", func() bool { return strings.Contains(out.String(), "POOL ") })
	p := &heraldv1.LoadBalancerIPPool{ObjectMeta: metav1.ObjectMeta{Name: "watch-pool"},
		Spec: heraldv1.LoadBalancerIPPoolSpec{Blocks: []heraldv1.IPBlock{{CIDR: "10.99.0.0/30"}}}}
	h.must(h.cl.Create(ctx, p))
	t.Cleanup(func() { _ = h.cl.Delete(context.Background(), p) })
	waitFor(t, "the new pool", func() bool { return strings.Contains(out.String(), "watch-pool") })
	time.Sleep(300 * time.Millisecond) // six more reads: nothing changed, nothing printed
	if n := strings.Count(out.String(), "--- "); n != 2 {
		t.Errorf("%d reports printed, want 2 (the first, and one after the change):\n%s", n, out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("interrupted watch: %v", err)
	}
}

func TestWatchLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var w bytes.Buffer
	n := 0
	err := watchLoop(ctx, &w, time.Millisecond, true, func(_ context.Context, out io.Writer) error {
		n++
		switch {
		case n <= 2:
			fmt.Fprintln(out, "same")
		case n == 3:
			return fmt.Errorf("%w: 1 (exit code 1)", ErrProblems)
		default:
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const clear = "\x1b[H\x1b[2J"
	if want := clear + "same\n" + clear + "problems found: 1 (exit code 1)\n"; w.String() != want {
		t.Errorf("printed %q, want %q", w.String(), want)
	}
}

func TestWatchNeedsAnInterval(t *testing.T) {
	root := newRoot("herald", inspectHooks{})
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"pools", "--watch", "--interval", "0s", "--kubeconfig", "/nonexistent"})
	if err := root.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "--interval 0s: want a positive duration") {
		t.Fatalf("err = %v", err)
	}
}
