package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/herald-lb/herald/internal/netnsenter"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Mode is the data plane Herald runs on a node.
type Mode int

const (
	// ModeNone programs nothing: kube-proxy or Cilium forwards traffic for
	// load-balancer IPs already.
	ModeNone Mode = iota
	// ModeNFTables programs Herald's own nftables table (see Table).
	ModeNFTables
)

// String returns the --dataplane flag value of m.
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeNFTables:
		return "nftables"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// kubeProxyHealthzPort is kube-proxy's default --healthz-bind-address
// port; it listens there in every proxy mode (iptables legacy or nft,
// ipvs, nftables).
const kubeProxyHealthzPort = 10256

// Detect decides --dataplane=auto for the network namespace ns (nil means
// the caller's). It returns ModeNone and the evidence when any of these
// exist, and ModeNFTables with an empty reason otherwise:
//
//   - an nftables table named "kube-proxy" (kube-proxy's nftables mode) or
//     "cilium", in any family;
//   - a chain named KUBE-SERVICES (kube-proxy's iptables and ipvs modes)
//     or starting with CILIUM_ (Cilium's iptables rules) in any nftables
//     table, which is where iptables-nft puts iptables rules;
//   - a network interface kube-ipvs0 (kube-proxy's ipvs mode) or
//     cilium_host (a Cilium agent, whose BPF data plane is assumed to
//     handle services: two data planes fighting is worse than none);
//   - a TCP socket listening on port 10256, kube-proxy's health check port,
//     which also covers kube-proxy on legacy (x_tables) iptables, whose
//     rules nf_tables cannot see.
//
// Detect only reads; it never creates tables or loads modules.
func Detect(ns *netns.NsHandle) (Mode, string, error) {
	var opts []nftables.ConnOption
	if ns != nil {
		opts = append(opts, nftables.WithNetNSFd(int(*ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return ModeNone, "", fmt.Errorf("detect dataplane: nftables connection: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return ModeNone, "", fmt.Errorf("detect dataplane: list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == "kube-proxy" || t.Name == "cilium" {
			return ModeNone, fmt.Sprintf("nftables table %s %s exists", familyName(t.Family), t.Name), nil
		}
	}
	chains, err := c.ListChains()
	if err != nil {
		return ModeNone, "", fmt.Errorf("detect dataplane: list nftables chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Name == "KUBE-SERVICES" || strings.HasPrefix(ch.Name, "CILIUM_") {
			return ModeNone, fmt.Sprintf("chain %s in nftables table %s %s exists (iptables-nft)", ch.Name, familyName(ch.Table.Family), ch.Table.Name), nil
		}
	}

	var h *vnl.Handle
	if ns != nil {
		h, err = vnl.NewHandleAt(*ns)
	} else {
		h, err = vnl.NewHandle()
	}
	if err != nil {
		return ModeNone, "", fmt.Errorf("detect dataplane: netlink handle: %w", err)
	}
	defer h.Close()
	for _, name := range []string{"kube-ipvs0", "cilium_host"} {
		_, err := h.LinkByName(name)
		if err == nil {
			return ModeNone, "interface " + name + " exists", nil
		}
		var nf vnl.LinkNotFoundError
		if !errors.As(err, &nf) {
			return ModeNone, "", fmt.Errorf("detect dataplane: look up interface %s: %w", name, err)
		}
	}

	listening, err := listensTCP(ns, kubeProxyHealthzPort)
	if err != nil {
		return ModeNone, "", fmt.Errorf("detect dataplane: %w", err)
	}
	if listening {
		return ModeNone, fmt.Sprintf("a socket listens on TCP port %d (kube-proxy health check)", kubeProxyHealthzPort), nil
	}
	return ModeNFTables, "", nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family(%d)", f)
}

// listensTCP reports whether a TCP socket in ns listens on port, from
// /proc/thread-self/net/tcp{,6} read on a thread switched into ns
// (/proc/self/net would show the namespace of the process's main thread).
func listensTCP(ns *netns.NsHandle, port uint16) (bool, error) {
	var out struct{ ok bool }
	err := netnsenter.DoOptional(ns, func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			ok, err := procListens(f, port)
			if err != nil || ok {
				out.ok = ok
				return err
			}
		}
		return nil
	})
	return out.ok, err
}

// procListens scans one /proc/net/tcp-format file for a socket in state
// LISTEN (0A) whose local port is port.
func procListens(path string, port uint16) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // no IPv6 in this kernel
	}
	if err != nil {
		return false, fmt.Errorf("read listening sockets: %w", err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		// sl local_address rem_address st ...
		if len(fields) > 3 && fields[3] == "0A" && strings.HasSuffix(fields[1], want) {
			return true, nil
		}
	}
	if err := s.Err(); err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return false, nil
}
