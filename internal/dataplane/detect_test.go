package dataplane

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/herald-lb/herald/internal/netnstest"
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, lan *netnstest.LAN)
		want   Mode
		reason string
	}{
		{name: "clean namespace", want: ModeNFTables},
		{name: "kube-proxy nftables mode", want: ModeNone, reason: "table ip kube-proxy",
			setup: func(t *testing.T, lan *netnstest.LAN) {
				addTables(t, lan, nftables.TableFamilyIPv4, "kube-proxy", "")
			}},
		{name: "kube-proxy iptables-nft mode", want: ModeNone, reason: "KUBE-SERVICES",
			setup: func(t *testing.T, lan *netnstest.LAN) {
				addTables(t, lan, nftables.TableFamilyIPv4, "nat", "KUBE-SERVICES")
			}},
		{name: "cilium iptables-nft rules", want: ModeNone, reason: "CILIUM_PRE_nat",
			setup: func(t *testing.T, lan *netnstest.LAN) {
				addTables(t, lan, nftables.TableFamilyIPv6, "nat", "CILIUM_PRE_nat")
			}},
		{name: "kubelet chains only", want: ModeNFTables,
			setup: func(t *testing.T, lan *netnstest.LAN) {
				addTables(t, lan, nftables.TableFamilyIPv4, "filter", "KUBE-FIREWALL")
				addTables(t, lan, nftables.TableFamilyINet, "herald", "services")
			}},
		{name: "kube-proxy ipvs mode", want: ModeNone, reason: "kube-ipvs0",
			setup: func(t *testing.T, lan *netnstest.LAN) {
				lan.IP("node", "link", "add", "kube-ipvs0", "type", "bridge") // no dummy module here; any link type will do
			}},
		{name: "cilium agent", want: ModeNone, reason: "cilium_host",
			setup: func(t *testing.T, lan *netnstest.LAN) {
				lan.IP("node", "link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net")
			}},
		{name: "kube-proxy health check listening", want: ModeNone, reason: "10256",
			setup: func(t *testing.T, lan *netnstest.LAN) {
				var ln net.Listener
				if err := lan.In("node", func() (err error) {
					ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", kubeProxyHealthzPort))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = ln.Close() })
			}},
		{name: "other port listening", want: ModeNFTables,
			setup: func(t *testing.T, lan *netnstest.LAN) {
				var ln net.Listener
				if err := lan.In("node", func() (err error) {
					ln, err = net.Listen("tcp", "0.0.0.0:10257")
					return err
				}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = ln.Close() })
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lan := netnstest.New(t, prefix, netnstest.Host{Role: "node"})
			if tc.setup != nil {
				tc.setup(t, lan)
			}
			h := lan.Handle("node")
			mode, reason, err := Detect(&h)
			if err != nil {
				t.Fatal(err)
			}
			if mode != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("Detect = %v %q, want %v with reason containing %q", mode, reason, tc.want, tc.reason)
			}
		})
	}
}

// addTables creates table family/name, with a regular chain if chain is
// set, in the node namespace, the way iptables-nft or kube-proxy would.
func addTables(t *testing.T, lan *netnstest.LAN, family nftables.TableFamily, name, chain string) {
	t.Helper()
	h := lan.Handle("node")
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: family, Name: name})
	if chain != "" {
		c.AddChain(&nftables.Chain{Table: tbl, Name: chain})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
