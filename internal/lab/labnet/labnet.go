// Package labnet is the lab's plumbing for named network namespaces (the
// ones `ip netns` manages under /run/netns): running `ip`, and opening
// sockets inside a namespace from a process that lives outside it.
//
// A socket belongs to the namespace of the thread that created it and stays
// there, so In, Dial and Listen switch one locked OS thread into the
// namespace only for as long as the socket is being created.
package labnet

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/vishvananda/netns"

	"github.com/herald-lb/herald/internal/netnsenter"
)

// IP runs the ip(8) command with args and returns its trimmed output; a
// failure carries the command line and what ip printed.
func IP(args ...string) (string, error) {
	return Run("ip", args...)
}

// Run runs a command, returning its trimmed combined output; a failure
// carries the command line and what the command printed.
func Run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// In runs fn on an OS thread switched into the named namespace. Sockets fn
// creates stay in that namespace after In returns.
func In(name string, fn func() error) error {
	return netnsenter.DoNamed(name, fn)
}

// Listen opens a listener inside the named namespace.
func Listen(name, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := In(name, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in %s: %w", network, address, name, err)
	}
	return ln, nil
}

// Dialer returns a DialContext function whose connections originate in the
// named namespace, for http.Transport and probes.
func Dialer(name string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := In(name, func() (err error) {
			var d net.Dialer
			conn, err = d.DialContext(ctx, network, address)
			return err
		})
		return conn, err
	}
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	h, err := netns.GetFromName(name)
	if err != nil {
		return false
	}
	_ = h.Close()
	return true
}

// Path returns the file that names the namespace, for setns(2).
func Path(name string) string { return "/run/netns/" + name }

// RemoveNamespaces deletes every network namespace whose name starts with
// prefix.
func RemoveNamespaces(prefix string) error {
	out, err := IP("netns", "list")
	if err != nil {
		return err
	}
	var errs []string
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if name == "" || !strings.HasPrefix(name, prefix) {
			continue
		}
		if _, err := IP("netns", "del", name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove namespaces %s*: %s", prefix, strings.Join(errs, "; "))
	}
	return nil
}
