package agent_test

// Agents as real processes, for the faults only a process can have
// (kill -9): `herald agent` runs inside a node's namespace, reaching the API
// server through a KubePrism-style proxy on localhost:7445 in that
// namespace, exactly as on Talos.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/herald-lb/herald/internal/placement"
)

var (
	buildOnce sync.Once
	heraldBin string
	buildErr  error
)

// herald builds the herald binary once per test binary.
func herald(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-agent-test-")
		if err != nil {
			buildErr = err
			return
		}
		heraldBin = filepath.Join(dir, "herald")
		out, err := exec.Command("go", "build", "-o", heraldBin, "../../cmd/herald").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return heraldBin
}

// kubePrism listens on 127.0.0.1:7445 inside role's namespace and forwards
// every connection to the API server, dialled from this (the root)
// namespace.
func (c *cluster) kubePrism(role string) {
	c.t.Helper()
	u, err := url.Parse(c.cfg.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	var ln net.Listener
	if err := c.lan.In(role, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:7445")
		return err
	}); err != nil {
		c.t.Fatalf("proxy listener in %s: %v", role, err)
	}
	c.t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

// agentProcess is `herald agent` running in a node's namespace.
type agentProcess struct {
	cmd  *exec.Cmd
	done chan error
}

// startAgentProcess runs node's agent as a process; the recorded PID is
// herald's own (ip netns exec execs it), so kill -9 kills the agent.
func (c *cluster) startAgentProcess(node, kubeconfig, keyFile string) *agentProcess {
	c.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", c.lan.Namespace(node), herald(c.t), "agent",
		"--node-name", node, "--kubeconfig", kubeconfig, "--key-file", keyFile, "--metrics-addr", "")
	cmd.Stdout = testWriter{c.t}
	cmd.Stderr = testWriter{c.t}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start agent %s: %v", node, err)
	}
	p := &agentProcess{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	c.t.Cleanup(func() { p.kill() })
	return p
}

func (p *agentProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// processSetup writes each node's kubeconfig (server localhost:7445, as on
// Talos) and the heartbeat key, and starts the proxies.
func (c *cluster) processSetup(env string) (kubeconfigs map[string]string, keyFile string) {
	c.t.Helper()
	dir := c.t.TempDir()
	keyFile = filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(env)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, cl := range kc.Clusters {
		cl.Server = "https://127.0.0.1:7445"
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		c.t.Fatal(err)
	}
	kubeconfigs = map[string]string{}
	for _, n := range nodes {
		c.kubePrism(n)
		kubeconfigs[n] = path
	}
	return kubeconfigs, keyFile
}

// kill -9 of the owner's agent process: its heartbeats and answers stop
// with it, and the next node answers.
func TestFailOverAfterKill9(t *testing.T) {
	c := newCluster(t)
	kcs, key := c.processSetup(shared.Env(t).KubeconfigPath)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.82")
	c.createService("web", addr.String())
	procs := map[string]*agentProcess{}
	for _, n := range nodes {
		procs[n] = c.startAgentProcess(n, kcs[n], key)
	}
	rank := placement.Rank(addr, nodes)
	c.waitOwner(addr, rank[0], 30*time.Second)
	start := time.Now()
	if err := procs[rank[0]].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitOwner(addr, rank[1], 10*time.Second)
	t.Logf("kill -9 of %s's agent: %s answers after %s (client-side)", rank[0], rank[1], time.Since(start).Round(time.Millisecond))
	err := <-procs[rank[0]].done
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("agent process ended with %v, want killed by SIGKILL", err)
	}
}

// BenchmarkFailoverKill9: one op = kill -9 of the owner's agent process;
// the time until the client gets an ARP reply from the next owner. The
// agent is restarted and ownership returns before the next trial.
func BenchmarkFailoverKill9(b *testing.B) {
	c := newBenchCluster(b)
	kcs, key := c.processSetup(shared.Env(b).KubeconfigPath)
	c.createPolicy("^eth0$")
	addr := netip.MustParseAddr("192.168.10.75")
	c.createService("web", addr.String())
	procs := map[string]*agentProcess{}
	for _, n := range nodes {
		procs[n] = c.startAgentProcess(n, kcs[n], key)
	}
	rank := placement.Rank(addr, nodes)
	p := startProber(b, c, "client", netip.MustParseAddr("192.168.10.10"), addr, 10*time.Millisecond)
	p.stable(b, c.macs[rank[0]], 300*time.Millisecond, 30*time.Second)
	var gaps []time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := procs[rank[0]].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		r := p.waitFor(b, t0, c.macs[rank[1]], 10*time.Second)
		gaps = append(gaps, r.at.Sub(t0))
		b.StopTimer()
		<-procs[rank[0]].done
		procs[rank[0]] = c.startAgentProcess(rank[0], kcs[rank[0]], key)
		p.stable(b, c.macs[rank[0]], 300*time.Millisecond, 30*time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	distribution(b, "ms", gaps)
}
