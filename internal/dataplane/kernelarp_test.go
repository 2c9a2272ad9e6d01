package dataplane

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/herald-lb/herald/internal/netnstest"
)

func TestAnswersARPForAnyLocalAddress(t *testing.T) {
	// Every value the kernel knows for either sysctl (0–8), in both
	// places: the larger one decides.
	restricts := map[int]bool{1: true, 2: true, 8: true}
	for all := range 9 {
		for dev := range 9 {
			want := !restricts[max(all, dev)]
			if got := AnswersARPForAnyLocalAddress(all, dev); got != want {
				t.Errorf("all=%d dev=%d: answers = %v, want %v", all, dev, got, want)
			}
		}
	}
	for _, tc := range []struct {
		all, dev int
		want     bool
	}{
		{0, 0, true},  // the kernel's default: kube-proxy IPVS without strictARP
		{1, 0, false}, // kube-proxy's strictARP sets all to 1
		{0, 1, false}, // set per interface
		{3, 0, true},  // 3 only refuses scope-host addresses
		{2, 3, true},  // the larger value wins, even when it is the weaker one
		{8, 0, false},
	} {
		if got := AnswersARPForAnyLocalAddress(tc.all, tc.dev); got != tc.want {
			t.Errorf("all=%d dev=%d: answers = %v, want %v", tc.all, tc.dev, got, tc.want)
		}
	}
}

// kube-proxy's IPVS mode puts a load-balancer address on kube-ipvs0 (here
// a bridge: this kernel has no dummy module, and any link type holds
// addresses alike). With the default arp_ignore the node's kernel answers
// ARP for it on eth0 — the node claims an address Herald gave to another
// one — and KernelARPInterfaces says so; with strictARP's settings it does
// not answer and nothing is reported.
func TestKernelARPInterfaces(t *testing.T) {
	lan := netnstest.New(t, prefix,
		netnstest.Host{Role: "node", Addrs: []string{"192.168.10.2/24"}},
		netnstest.Host{Role: "client", Addrs: []string{"192.168.10.10/24"}})
	h := lan.Handle("node")
	vip := netip.MustParseAddr("192.168.10.75")

	got, err := KernelARPInterfaces(&h, []string{"eth0"})
	if err != nil || got != nil {
		t.Fatalf("without kube-ipvs0: %v, %v; want nothing", got, err)
	}

	lan.IP("node", "link", "add", "kube-ipvs0", "type", "bridge")
	lan.IP("node", "addr", "add", vip.String()+"/32", "dev", "kube-ipvs0")
	sysctl := func(name string, v int) {
		t.Helper()
		if err := lan.In("node", func() error {
			return os.WriteFile("/proc/sys/net/ipv4/conf/"+name, []byte(strconv.Itoa(v)), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	sysctl("all/arp_ignore", 0)
	sysctl("eth0/arp_ignore", 0)

	got, err = KernelARPInterfaces(&h, []string{"eth0", "lo", "gone0"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "eth0") || slices.Contains(got, "gone0") {
		t.Fatalf("arp_ignore 0: interfaces = %v, want eth0 (and no missing interface)", got)
	}
	if mac := lan.Resolve("client", vip, 3*time.Second); mac != lan.MAC("node").String() {
		t.Fatalf("arp_ignore 0: the client resolves %s to %q, want the node's kernel (%s)", vip, mac, lan.MAC("node"))
	}

	// kube-proxy's strictARP: all/arp_ignore=1, all/arp_announce=2.
	sysctl("all/arp_ignore", 1)
	sysctl("all/arp_announce", 2)
	got, err = KernelARPInterfaces(&h, []string{"eth0"})
	if err != nil || len(got) != 0 {
		t.Fatalf("strictARP: interfaces = %v, %v; want none", got, err)
	}
	if mac := lan.Resolve("client", vip, 2*time.Second); mac != "" {
		t.Fatalf("strictARP: the client resolves %s to %s; the node's kernel must not answer", vip, mac)
	}

	// One interface raised alone is enough for that interface.
	sysctl("all/arp_ignore", 0)
	sysctl("eth0/arp_ignore", 2)
	got, err = KernelARPInterfaces(&h, []string{"eth0", "lo"})
	if err != nil || slices.Contains(got, "eth0") || !slices.Contains(got, "lo") {
		t.Fatalf("eth0.arp_ignore=2: interfaces = %v, %v; want lo only", got, err)
	}
}
