// Package netnstest builds small LANs of network namespaces for tests that
// need real kernels: a bridge in a "switch" namespace and one host per role,
// each with an eth0 veth port on the bridge. Addresses exist only inside
// these namespaces; everything is removed when the test ends, and
// namespaces left by a crashed run are removed by the next one.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testrequire"
)

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var leftovers sync.Map // prefix → *sync.Once

// removeLeftovers deletes namespaces with prefix that earlier runs left
// behind. The creating PID is part of every name, so namespaces of a test
// binary that is still running are kept.
func removeLeftovers(t testing.TB, prefix string) {
	once, _ := leftovers.LoadOrStore(prefix, &sync.Once{})
	once.(*sync.Once).Do(func() {
		entries, err := os.ReadDir("/run/netns")
		if err != nil {
			return
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasPrefix(name, prefix) {
				continue
			}
			pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, prefix), "-")
			pid, err := strconv.Atoi(pidStr)
			if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
				continue
			}
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				t.Logf("remove leftover namespace %s: %v %s", name, err, out)
			}
		}
	})
}

// Require ends the test unless it can create network namespaces (root and
// iproute2): a skip on a developer's machine, a failure under CI=true.
func Require(t testing.TB, prefix string) {
	t.Helper()
	testrequire.Root(t, "creating network namespaces")
	if _, err := exec.LookPath("ip"); err != nil {
		testrequire.Missing(t, "needs iproute2's ip command")
	}
	removeLeftovers(t, prefix)
	probe := fmt.Sprintf("%s%d-check", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		testrequire.Missing(t, "cannot create network namespaces: %v %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
}

// LAN is one test's namespaces: a switch and the hosts on it.
type LAN struct {
	t      testing.TB
	prefix string
	id     string
	sw     string
	hosts  map[string]string // role → namespace
}

// Host describes one host of a LAN.
type Host struct {
	Role string
	// MAC of eth0; empty keeps the kernel's random one.
	MAC string
	// Addrs are CIDRs for eth0 (e.g. "192.168.10.215/24").
	Addrs []string
}

// New builds the bridge and one veth-attached host per entry. Each host's
// eth0 and lo are up, IPv6 DAD is off (addresses are usable at once) and
// neighbour retries are quick (an unanswered address fails in about a
// second).
func New(t testing.TB, prefix string, hosts ...Host) *LAN {
	t.Helper()
	Require(t, prefix)
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	l := &LAN{t: t, prefix: prefix, id: fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b)), hosts: map[string]string{}}
	l.sw = l.nsName("sw")
	t.Cleanup(func() {
		for _, ns := range l.hosts {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
		_ = exec.Command("ip", "netns", "del", l.sw).Run()
	})
	Run(t, "ip", "netns", "add", l.sw)
	Run(t, "ip", "-n", l.sw, "link", "add", "br0", "type", "bridge")
	Run(t, "ip", "-n", l.sw, "link", "set", "br0", "up")
	for _, h := range hosts {
		l.AddHost(h)
	}
	return l
}

// AddHost adds one host to the LAN.
func (l *LAN) AddHost(h Host) {
	l.t.Helper()
	ns := l.nsName(h.Role)
	l.hosts[h.Role] = ns
	Run(l.t, "ip", "netns", "add", ns)
	for _, k := range []string{"default", "all"} {
		Run(l.t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf."+k+".accept_dad=0")
	}
	port := "p-" + h.Role
	Run(l.t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.sw)
	if h.MAC != "" {
		Run(l.t, "ip", "-n", ns, "link", "set", "eth0", "address", h.MAC)
	}
	Run(l.t, "ip", "-n", l.sw, "link", "set", port, "master", "br0", "up")
	Run(l.t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=200")
	Run(l.t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.neigh.eth0.retrans_time_ms=200")
	Run(l.t, "ip", "-n", ns, "link", "set", "lo", "up")
	Run(l.t, "ip", "-n", ns, "link", "set", "eth0", "up")
	for _, a := range h.Addrs {
		Run(l.t, "ip", "-n", ns, "addr", "add", a, "dev", "eth0")
	}
}

func (l *LAN) nsName(role string) string { return l.prefix + l.id + "-" + role }

// Namespace returns the name of role's namespace.
func (l *LAN) Namespace(role string) string { return l.hosts[role] }

// Handle opens role's namespace; the test closes it at cleanup.
func (l *LAN) Handle(role string) netns.NsHandle {
	l.t.Helper()
	h, err := netns.GetFromName(l.hosts[role])
	if err != nil {
		l.t.Fatalf("open namespace of %s: %v", role, err)
	}
	l.t.Cleanup(func() { _ = h.Close() })
	return h
}

// In runs fn on a thread switched into role's namespace. Sockets fn opens
// stay in that namespace after fn returns.
func (l *LAN) In(role string, fn func() error) error {
	ns, ok := l.hosts[role]
	if !ok {
		return fmt.Errorf("no host %q", role)
	}
	return labnet.In(ns, fn)
}

// MAC returns the hardware address of role's eth0.
func (l *LAN) MAC(role string) net.HardwareAddr {
	l.t.Helper()
	var mac net.HardwareAddr
	if err := l.In(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	}); err != nil {
		l.t.Fatalf("eth0 of %s: %v", role, err)
	}
	return mac
}

// IP runs `ip -n <namespace of role> args...`.
func (l *LAN) IP(role string, args ...string) string {
	l.t.Helper()
	return Run(l.t, append([]string{"ip", "-n", l.hosts[role]}, args...)...)
}

// Neighbour is one entry of `ip -j neigh show`.
type Neighbour struct {
	Dst    string   `json:"dst"`
	LLAddr string   `json:"lladdr"`
	State  []string `json:"state"`
}

// Neigh returns role's kernel neighbour entry for addr on eth0.
func (l *LAN) Neigh(role string, addr netip.Addr) (Neighbour, bool) {
	l.t.Helper()
	out := l.IP(role, "-j", "neigh", "show", "to", addr.String(), "dev", "eth0")
	var ns []Neighbour
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		l.t.Fatalf("parse ip -j neigh output %q: %v", out, err)
	}
	for _, n := range ns {
		if n.Dst == addr.String() {
			return n, true
		}
	}
	return Neighbour{}, false
}

// Poke makes role's kernel resolve addr by sending it a UDP datagram to the
// discard port: nothing has to answer it.
func (l *LAN) Poke(role string, addr netip.Addr) {
	l.t.Helper()
	if err := l.In(role, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("herald"))
		return err
	}); err != nil {
		l.t.Fatalf("send to %s from %s: %v", addr, role, err)
	}
}

// Flush forgets role's neighbour entry for addr, so the next Poke resolves
// it afresh.
func (l *LAN) Flush(role string, addr netip.Addr) {
	l.t.Helper()
	_, _ = exec.Command("ip", "-n", l.hosts[role], "neigh", "flush", "to", addr.String(), "dev", "eth0").CombinedOutput()
}

// Resolve makes role's kernel resolve addr afresh and returns the MAC it
// learned, or "" when nobody answered within timeout.
func (l *LAN) Resolve(role string, addr netip.Addr, timeout time.Duration) string {
	l.t.Helper()
	l.Flush(role, addr)
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		if i%10 == 0 {
			l.Poke(role, addr)
		}
		n, _ := l.Neigh(role, addr)
		if n.LLAddr != "" && !slices.Contains(n.State, "FAILED") && !slices.Contains(n.State, "INCOMPLETE") {
			return n.LLAddr
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddLoss makes the switch drop 1 in every `every` frames at random,
// independently per frame and output port. It stands in for `tc qdisc …
// netem loss`, which this kernel lacks (CONFIG_NET_SCH_NETEM is not set):
// an nftables rule in the bridge's forward path, with the in-kernel random
// number generator. The test is skipped if the kernel has no nf_tables
// bridge support.
func (l *LAN) AddLoss(every uint32) {
	l.t.Helper()
	h, err := netns.GetFromName(l.sw)
	if err != nil {
		l.t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		l.t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: "netnstest-loss"})
	ch := c.AddChain(&nftables.Chain{
		Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
	})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		// numgen random mod every == 0 (zero reads the same in any byte
		// order, so no byte-order conversion is needed)
		&expr.Numgen{Register: 1, Modulus: every, Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		testrequire.Missing(l.t, "cannot install the nftables loss rule (nf_tables bridge support missing?): %v", err)
	}
}
