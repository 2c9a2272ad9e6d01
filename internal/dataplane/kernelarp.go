package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herald-lb/herald/internal/netnsenter"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// kubeIPVSInterface is where kube-proxy's IPVS mode puts every Service
// address (cluster IPs and load-balancer addresses alike) so that the
// kernel accepts their packets for IPVS.
const kubeIPVSInterface = "kube-ipvs0"

// KernelARPInterfaces reports on which of ifaces the kernel of ns (nil:
// the caller's) itself answers ARP requests for the addresses kube-proxy's
// IPVS mode holds on kube-ipvs0. It returns nil when ns has no kube-ipvs0.
//
// An IPv4 address on any interface is local to the whole host, and with
// net.ipv4.conf.{all,IFACE}.arp_ignore at 0 — the kernel's default — the
// kernel answers ARP for it on every interface. kube-proxy's IPVS mode
// therefore makes every node answer for every load-balancer address unless
// its strictARP setting raises arp_ignore to 1 (and arp_announce to 2);
// Herald's one owner per address is then one of several MACs. IPv6 is not
// affected: the kernel answers Neighbor Solicitations only for addresses on
// the receiving interface.
func KernelARPInterfaces(ns *netns.NsHandle, ifaces []string) ([]string, error) {
	var h *vnl.Handle
	var err error
	if ns != nil {
		h, err = vnl.NewHandleAt(*ns)
	} else {
		h, err = vnl.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("check kernel ARP: netlink handle: %w", err)
	}
	defer h.Close()
	if _, err := h.LinkByName(kubeIPVSInterface); err != nil {
		var nf vnl.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("check kernel ARP: look up interface %s: %w", kubeIPVSInterface, err)
	}
	var out []string
	err = netnsenter.DoOptional(ns, func() error {
		// /proc/sys/net shows the network namespace of the reading
		// thread, which DoOptional has switched into ns.
		all, err := readARPIgnore("all")
		if err != nil {
			return err
		}
		for _, name := range ifaces {
			dev, err := readARPIgnore(name)
			if errors.Is(err, os.ErrNotExist) {
				continue // gone since the caller listed it
			}
			if err != nil {
				return err
			}
			if AnswersARPForAnyLocalAddress(all, dev) {
				out = append(out, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check kernel ARP: %w", err)
	}
	return out, nil
}

// readARPIgnore reads net.ipv4.conf.<conf>.arp_ignore.
func readARPIgnore(conf string) (int, error) {
	// Interface names may contain dots (VLANs: eth0.10), and the sysctl
	// tree keeps them; a name that would leave the directory is refused.
	if conf == "" || conf == "." || conf == ".." || strings.Contains(conf, "/") {
		return 0, fmt.Errorf("read arp_ignore: bad interface name %q", conf)
	}
	b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", conf, "arp_ignore"))
	if err != nil {
		return 0, fmt.Errorf("read arp_ignore of %s: %w", conf, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read arp_ignore of %s: %w", conf, err)
	}
	return v, nil
}

// AnswersARPForAnyLocalAddress reports whether an interface whose
// arp_ignore is dev, on a host whose net.ipv4.conf.all.arp_ignore is all,
// answers ARP requests for local addresses held by other interfaces
// (kube-ipvs0's). The kernel uses the larger of the two values; 1 and 2
// answer only for addresses on the receiving interface and 8 never
// answers, while 3 (which only refuses scope-host addresses, and
// kube-proxy's are global) and the reserved 4–7 answer as 0 does.
func AnswersARPForAnyLocalAddress(all, dev int) bool {
	switch max(all, dev) {
	case 1, 2, 8:
		return false
	}
	return true
}
