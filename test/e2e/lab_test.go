// Package e2e runs Herald's tutorial end to end in the lab (internal/lab):
// a real control plane, nodes in network namespaces with process kubelets,
// Herald installed with its Helm chart, and a LAN client using the
// kernel's own ARP and curl.
package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/netnstest"
)

// prefix and the state directory keep this lab apart from a user's.
const prefix = "hle2e-"

// labEnv runs hack/lab.sh's lab (and its tutorial) in a private directory
// and namespace prefix, and tears it down at the end of the test.
type labEnv struct {
	t    *testing.T
	root string
	dir  string
	env  []string
}

func (l *labEnv) herald(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(l.root, "bin", "herald"), append([]string{"lab"}, args...)...)
	cmd.Env = l.env
	cmd.Dir = l.root
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (l *labEnv) kubectl(args ...string) string {
	l.t.Helper()
	out, err := l.herald(append([]string{"kubectl"}, args...)...)
	if err != nil {
		l.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (l *labEnv) client(args ...string) (string, error) {
	return l.herald(append([]string{"client", "--"}, args...)...)
}

// eventually retries cond every 100 ms for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("the lab needs root, network namespaces and the control plane")
	}
	netnstest.Require(t, prefix)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	l := &labEnv{t: t, root: root, dir: t.TempDir()}
	l.env = append(os.Environ(), "HERALD_LAB_DIR="+l.dir, "HERALD_LAB_PREFIX="+prefix)
	t.Cleanup(func() {
		if out, err := l.herald("down"); err != nil {
			t.Errorf("herald lab down: %v\n%s", err, out)
		}
		if out, _ := labnet.IP("netns", "list"); strings.Contains(out, prefix) {
			t.Errorf("namespaces left after herald lab down:\n%s", out)
		}
	})

	// The README's main command: lab up, Herald from its chart, the tutorial
	// with its own checks (EXTERNAL-IP, curl, /clientip, Local).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	script := exec.CommandContext(ctx, filepath.Join(root, "hack", "lab.sh"))
	script.Env = l.env
	script.Dir = root
	pr, pw := io.Pipe()
	script.Stdout, script.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Log(sc.Text())
		}
	}()
	err = script.Run()
	_ = pw.Close()
	<-done
	if err != nil {
		t.Fatalf("hack/lab.sh: %v (daemon log: %s)", err, filepath.Join(l.dir, "lab.log"))
	}

	s, err := lab.ReadState(l.dir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("one MAC answers, the announcing node's", func(t *testing.T) {
		msg := l.kubectl("get", "svc", "nginx", "-o", `jsonpath={.status.conditions[?(@.type=="herald.dev/Announced")].message}`)
		var owner string
		for _, h := range s.Topology.Nodes {
			if strings.Contains(msg, "announced by node "+h.Name+" ") {
				owner = h.Name
			}
		}
		if owner == "" {
			t.Fatalf("no announcing node in %q", msg)
		}
		h, _ := s.Topology.Node(owner)
		mac, err := labnet.IP("-n", h.NetNS, "-br", "link", "show", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		neigh, err := l.client("ip", "neigh", "show", "192.168.10.75")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(mac); len(f) < 3 || !strings.Contains(neigh, f[2]) {
			t.Fatalf("client resolves 192.168.10.75 to %q; the announcing node %s has %q", neigh, owner, mac)
		}
	})

	t.Run("rules follow endpoints", func(t *testing.T) {
		l.kubectl("scale", "deployment/nginx", "--replicas=0")
		eventually(t, 30*time.Second, "no endpoints: curl fails fast (no announcement or ICMP reject)", func() (bool, string) {
			out, err := l.client("curl", "-sS", "--max-time", "2", "http://192.168.10.75")
			return err != nil, out
		})
		l.kubectl("scale", "deployment/nginx", "--replicas=2")
		eventually(t, 60*time.Second, "two endpoints again: curl works", func() (bool, string) {
			out, err := l.client("curl", "-sS", "--max-time", "2", "http://192.168.10.75")
			return err == nil && strings.Contains(out, "Welcome to nginx!"), out
		})
	})
}
