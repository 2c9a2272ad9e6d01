// Package dataplane is Herald's optional load-balancing data plane for
// clusters that run no kube-proxy and no Cilium kube-proxy replacement
// (DESIGN §6). It programs one nftables table that Herald owns (family inet,
// default name "herald") over netlink with github.com/google/nftables; it
// never runs the nft binary and never reads, flushes or deletes any other
// table, so kube-proxy, a CNI or a firewall can share the namespace.
//
// The package knows nothing about Kubernetes: the agent turns Services and
// EndpointSlices into [Service] values and calls [Table.Sync] with the
// complete desired set.
//
// # Ruleset
//
// Every Sync replaces the whole table in one netlink batch (add table,
// delete table, add table and its content), so the kernel switches from the
// old ruleset to the new one atomically: a packet sees either all of the
// old rules or all of the new ones. Established connections keep their
// conntrack NAT bindings across a Sync.
//
//   - chain "services" (jumped to from the nat hooks prerouting and output at
//     priority dstnat) looks up "daddr . l4proto . dport" in the verdict maps
//     "services4"/"services6" and jumps to one chain per service.
//   - a service chain ("svc-…") picks one endpoint uniformly at random the
//     way kube-proxy's iptables mode does: rule i of n matches with
//     probability 1/(n-i) ("numgen random mod (n-i) == 0") and DNATs to
//     endpoint i; the last rule matches always. This needs no anonymous maps
//     and is exact for any n.
//   - chain "postrouting" (nat hook postrouting, priority srcnat) masquerades
//     connections that were DNATed ("ct status dnat") to an endpoint of a
//     service with traffic policy Cluster (sets "masquerade4"/"masquerade6",
//     keyed by the translated "daddr . l4proto . dport" and the service port,
//     "ct original proto-dst"). It uses conntrack
//     and the packet, not packet or connection marks, so it cannot collide
//     with mark bits that a CNI or firewall owns; and every expression is
//     one nft(8) can print, so `nft list ruleset` shows the table. (Keying
//     on "ct original daddr" would need the per-family conntrack keys, which
//     google/nftables cannot express; the generic one is 16 bytes in an
//     inet table and nft 1.0.6 aborts while printing it.)
//   - chains "filter-prerouting"/"filter-output" (filter hooks at priority
//     dstnat-10) reject packets to a service without usable endpoints with
//     ICMP(v6) port unreachable (as kube-proxy does), so a TCP client fails
//     at once with "connection refused" instead of waiting for a timeout.
//
// A Local service uses only endpoints with Local set and is not
// masqueraded, so the backend sees the client's own source address. A
// Local service whose ready endpoints are all on other nodes has no usable
// endpoints here and is rejected like one with no endpoints at all.
//
// When a Sync drops an endpoint of a UDP service, the conntrack entries
// that still lead to it are deleted (as kube-proxy does), so a client that
// keeps its source port moves to a live endpoint at once. The Table only
// knows what it programmed itself since Open: endpoints removed while the
// agent was down are left to conntrack's UDP timeout.
//
// Not handled: a pod reaching a Local service's VIP and being balanced to
// itself (hairpin) is not masqueraded, so that one connection fails; an
// endpoint (address and port) behind a Cluster and a Local service with the
// same service port (on different VIPs) is masqueraded for both; and
// --dataplane=nftables does nothing for ClusterIPs or NodePorts.
package dataplane

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultTableName is the name of the nftables table Herald owns when
// [Options.Name] is empty.
const DefaultTableName = "herald"

// ErrInvalidService marks a Service that Sync could not program (bad
// address, protocol or port, or a VIP:port/protocol that another Service
// already uses). Sync programs every other Service anyway.
var ErrInvalidService = errors.New("invalid service")

// ErrClosed is returned by the methods of a Table after Close.
var ErrClosed = errors.New("dataplane table closed")

// Endpoint is one ready backend of a Service.
type Endpoint struct {
	// Addr is the backend address; endpoints whose family differs from
	// the Service VIP's are ignored.
	Addr netip.Addr
	// Port is the backend (target) port.
	Port uint16
	// Local reports that the endpoint runs on this node; only local
	// endpoints serve a Service with TrafficPolicyLocal.
	Local bool
}

// Service is one VIP:port/protocol that this node load-balances.
type Service struct {
	// Key identifies the service in logs and chain names (for example
	// "namespace/name:port/TCP"); it must be unique within one Sync.
	Key string
	// VIP is the load-balancer IP (IPv4 or IPv6).
	VIP netip.Addr
	// Port is the service port on the VIP.
	Port uint16
	// Protocol is "TCP", "UDP" or "SCTP" (case-insensitive).
	Protocol string
	// TrafficPolicyLocal selects externalTrafficPolicy Local: only local
	// endpoints, client source address preserved. Otherwise (Cluster) all
	// endpoints are used and forwarded traffic is masqueraded so that
	// replies return through this node.
	TrafficPolicyLocal bool
	// Endpoints are the ready endpoints.
	Endpoints []Endpoint
}

// Options configures Open.
type Options struct {
	// Name is the nftables table (family inet) Herald owns; empty means
	// DefaultTableName.
	Name string
	// NetNS is the network namespace to program; nil means the namespace
	// of the calling process. Open duplicates the handle, so the caller
	// may close its own copy afterwards.
	NetNS *netns.NsHandle
	// Logger receives debug and info messages; nil discards them.
	Logger *slog.Logger
}

// Table owns Herald's nftables table in one network namespace. Its methods
// are safe for concurrent use; Syncs are serialized.
type Table struct {
	name string
	log  *slog.Logger

	mu     sync.Mutex
	nsFD   int // duplicated namespace fd, or -1 for the current namespace
	closed bool
	udp    udpBackends // what the last successful Sync programmed for UDP
}

// Open prepares a Table. It checks that nftables is usable in the
// namespace but does not change the ruleset: an existing table of the same
// name (left by a previous agent) keeps forwarding until the first Sync.
func Open(opts Options) (*Table, error) {
	name := opts.Name
	if name == "" {
		name = DefaultTableName
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{name: name, log: log.With("table", "inet "+name), nsFD: -1}
	if opts.NetNS != nil {
		if !opts.NetNS.IsOpen() {
			return nil, errors.New("open dataplane: network namespace handle is closed")
		}
		fd, err := unix.FcntlInt(uintptr(*opts.NetNS), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open dataplane: duplicate namespace handle: %w", err)
		}
		t.nsFD = fd
	}
	c, err := t.conn()
	if err != nil {
		t.closeFD()
		return nil, err
	}
	// Listing only Herald's family proves that we may talk to nf_tables
	// here (root/CAP_NET_ADMIN in the namespace, module present).
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		t.closeFD()
		return nil, fmt.Errorf("open dataplane: list nftables tables: %w", err)
	}
	return t, nil
}

// Name returns the name of the inet table this Table owns.
func (t *Table) Name() string { return t.name }

// socketBuffer is the netlink send and receive buffer size. A Sync sends
// the whole ruleset as one batch in one sendmsg, which the kernel refuses
// when it exceeds the send buffer (about 1 MiB for 1000 services with 3
// endpoints each), and the kernel queues one acknowledgement per message
// of the batch before we read any. The buffers are limits, not
// allocations.
const socketBuffer = 64 << 20

// bigBuffers raises the socket's buffers past net.core.{w,r}mem_max with
// the *BUFFORCE options (we hold CAP_NET_ADMIN to program nftables
// anyway), falling back to the capped options.
func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer); e != nil {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer); e != nil {
					serr = e
				}
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("set netlink socket buffers: %w", err)
	}
	return nil
}

func (t *Table) conn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
	if t.nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(t.nsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	return c, nil
}

func (t *Table) closeFD() {
	if t.nsFD >= 0 {
		_ = unix.Close(t.nsFD)
		t.nsFD = -1
	}
}

// Sync makes Herald's table match services exactly, in one atomic netlink
// batch; it is idempotent. Invalid or duplicate services are left out and
// reported in the returned error (wrapping ErrInvalidService) while all
// other services are programmed; any other error means the kernel kept the
// previous ruleset.
func (t *Table) Sync(ctx context.Context, services []Service) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sync dataplane: %w", err)
	}
	plan, invalid := buildPlan(services)
	c, err := t.conn()
	if err != nil {
		return fmt.Errorf("sync dataplane: %w", err)
	}
	if err := t.program(c, plan); err != nil {
		return fmt.Errorf("sync dataplane: build batch: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sync dataplane: %w", err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("sync dataplane: replace table inet %s: %w", t.name, err)
	}
	t.log.Debug("dataplane synced", "services", len(plan), "invalid", len(invalid))
	now := udpBackendsOf(plan)
	if stale := staleSince(t.udp, now); len(stale) > 0 {
		// The rules are in place whatever happens here, so a failure is
		// logged, not returned: a retried Sync would not retry it, and
		// the entries expire on their own (conntrack's UDP timeout).
		n, err := deleteStale(t.nsFD, stale)
		if err != nil {
			t.log.Warn("clearing conntrack entries of removed UDP endpoints failed", "err", err)
		} else {
			t.log.Debug("cleared conntrack entries of removed UDP endpoints", "entries", n)
		}
	}
	t.udp = now
	if len(invalid) > 0 {
		return fmt.Errorf("sync dataplane: %w", errors.Join(invalid...))
	}
	return nil
}

// Close releases the Table. With remove it also deletes Herald's table
// (clean shutdown, or --dataplane switched off); without it the rules stay
// so that traffic keeps flowing while the agent restarts.
func (t *Table) Close(remove bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	defer t.closeFD()
	if !remove {
		return nil
	}
	c, err := t.conn()
	if err != nil {
		return fmt.Errorf("close dataplane: %w", err)
	}
	// Adding before deleting makes the delete succeed whether or not the
	// table exists, without listing first (which would race).
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: t.name}
	c.AddTable(tbl)
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("close dataplane: delete table inet %s: %w", t.name, err)
	}
	t.log.Info("dataplane table removed")
	return nil
}

// planned is one valid service with the endpoints it uses on this node.
type planned struct {
	svc   Service
	proto byte
	eps   []Endpoint
}

// buildPlan validates services, filters endpoints by family and traffic
// policy and orders everything deterministically (by Key, then endpoint),
// so equal inputs produce equal rulesets.
func buildPlan(services []Service) ([]planned, []error) {
	sorted := slices.Clone(services)
	slices.SortStableFunc(sorted, func(a, b Service) int { return cmp.Compare(a.Key, b.Key) })
	var (
		out     []planned
		invalid []error
		seen    = map[string]string{} // VIP/proto/port → Key
	)
	for _, s := range sorted {
		proto, err := protoNumber(s.Protocol)
		if err == nil && !s.VIP.IsValid() {
			err = errors.New("no VIP")
		}
		if err == nil && s.Port == 0 {
			err = errors.New("port 0")
		}
		if err != nil {
			invalid = append(invalid, fmt.Errorf("%w %q: %v", ErrInvalidService, s.Key, err))
			continue
		}
		s.VIP = s.VIP.Unmap()
		id := fmt.Sprintf("%s/%d/%d", s.VIP, proto, s.Port)
		if other, dup := seen[id]; dup {
			invalid = append(invalid, fmt.Errorf("%w %q: %s:%d/%s already used by %q", ErrInvalidService, s.Key, s.VIP, s.Port, s.Protocol, other))
			continue
		}
		seen[id] = s.Key
		var eps []Endpoint
		for _, e := range s.Endpoints {
			e.Addr = e.Addr.Unmap()
			if !e.Addr.IsValid() || e.Port == 0 || e.Addr.Is4() != s.VIP.Is4() {
				continue
			}
			if s.TrafficPolicyLocal && !e.Local {
				continue
			}
			eps = append(eps, e)
		}
		slices.SortFunc(eps, func(a, b Endpoint) int {
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c
			}
			return cmp.Compare(a.Port, b.Port)
		})
		eps = slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.Addr == b.Addr && a.Port == b.Port })
		out = append(out, planned{svc: s, proto: proto, eps: eps})
	}
	return out, invalid
}

func protoNumber(p string) (byte, error) {
	switch strings.ToUpper(p) {
	case "TCP":
		return unix.IPPROTO_TCP, nil
	case "UDP":
		return unix.IPPROTO_UDP, nil
	case "SCTP":
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("unsupported protocol %q", p)
}

// Registers. nf_tables addresses 32-bit registers 8..23 for concatenations;
// register 1 (128 bits) is the same storage as 32-bit registers 8..11.
const (
	reg1    = 1
	reg32v4 = 9  // second field after an IPv4 address
	reg32v6 = 12 // second field after an IPv6 address
)

// ipsDstNAT is conntrack's IPS_DST_NAT status bit: the connection's
// destination was translated.
const ipsDstNAT = 1 << 5

// family bundles what differs between IPv4 and IPv6.
type family struct {
	nfproto  byte
	natFam   uint32
	addrOff  uint32 // offset of the destination address in the network header
	addrLen  uint32
	addrType nftables.SetDatatype
	suffix   string
}

var families = [2]family{
	{nfproto: unix.NFPROTO_IPV4, natFam: unix.NFPROTO_IPV4, addrOff: 16, addrLen: 4, addrType: nftables.TypeIPAddr, suffix: "4"},
	{nfproto: unix.NFPROTO_IPV6, natFam: unix.NFPROTO_IPV6, addrOff: 24, addrLen: 16, addrType: nftables.TypeIP6Addr, suffix: "6"},
}

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return families[0]
	}
	return families[1]
}

// secondReg is the 32-bit register right after an address in a
// concatenation.
func (f family) secondReg() uint32 {
	if f.addrLen == 4 {
		return reg32v4
	}
	return reg32v6
}

// key builds a concatenated "address . l4proto . port" set key; every
// field is padded to a multiple of four bytes as the kernel expects.
func key(addr []byte, proto byte, port uint16) []byte {
	k := make([]byte, 0, len(addr)+8)
	k = append(k, addr...)
	k = append(k, proto, 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

// elemChunk is how many set elements go into one netlink message.
const elemChunk = 128

// program queues the batch that replaces Herald's table with plan.
func (t *Table) program(c *nftables.Conn, plan []planned) error {
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: t.name}
	// add + delete + add: the delete cannot fail for a missing table, and
	// the whole batch is one transaction.
	c.AddTable(tbl)
	c.DelTable(tbl)
	tbl = c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: t.name})

	svcSets := [2]*nftables.Set{}
	masqSets := [2]*nftables.Set{}
	noepSets := [2]*nftables.Set{}
	var svcElems, masqElems, noepElems [2][]nftables.SetElement
	type svcChain struct {
		name string
		p    planned
	}
	var chains []svcChain
	type masqKey struct {
		addr        netip.Addr
		proto       byte
		port, vport uint16
	}
	masqSeen := map[masqKey]bool{}
	for i, p := range plan {
		fi := 0
		if !p.svc.VIP.Is4() {
			fi = 1
		}
		vip := p.svc.VIP.AsSlice()
		k := key(vip, p.proto, p.svc.Port)
		if len(p.eps) == 0 {
			noepElems[fi] = append(noepElems[fi], nftables.SetElement{Key: k})
			continue
		}
		name := chainName(i, p.svc.Key)
		chains = append(chains, svcChain{name: name, p: p})
		svcElems[fi] = append(svcElems[fi], nftables.SetElement{Key: k, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name}})
		if !p.svc.TrafficPolicyLocal {
			for _, e := range p.eps {
				// Services on different VIPs may share an endpoint and a
				// port: one element serves them all.
				mk := masqKey{e.Addr, p.proto, e.Port, p.svc.Port}
				if masqSeen[mk] {
					continue
				}
				masqSeen[mk] = true
				k := binary.BigEndian.AppendUint16(key(e.Addr.AsSlice(), p.proto, e.Port), p.svc.Port)
				masqElems[fi] = append(masqElems[fi], nftables.SetElement{Key: append(k, 0, 0)})
			}
		}
	}
	for fi, f := range families {
		svcSets[fi] = &nftables.Set{
			Table: tbl, Name: "services" + f.suffix, IsMap: true, Concatenation: true,
			KeyType:  nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
			DataType: nftables.TypeVerdict,
		}
		masqSets[fi] = &nftables.Set{
			Table: tbl, Name: "masquerade" + f.suffix, Concatenation: true,
			KeyType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeInetService),
		}
		noepSets[fi] = &nftables.Set{
			Table: tbl, Name: "no-endpoints" + f.suffix, Concatenation: true,
			KeyType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
		}
	}

	// Service chains must exist before the map elements that jump to them.
	for _, sc := range chains {
		ch := c.AddChain(&nftables.Chain{Table: tbl, Name: sc.name})
		f := familyOf(sc.p.svc.VIP)
		n := len(sc.p.eps)
		for i, e := range sc.p.eps {
			var exprs []expr.Any
			if i < n-1 {
				exprs = append(exprs,
					&expr.Numgen{Register: reg1, Modulus: uint32(n - i), Type: unix.NFT_NG_RANDOM},
					// zero reads the same in either byte order
					&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0, 0, 0, 0}},
				)
			}
			exprs = append(exprs,
				&expr.Immediate{Register: reg1, Data: e.Addr.AsSlice()},
				&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, e.Port)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFam, RegAddrMin: reg1, RegProtoMin: 2, Specified: true},
			)
			c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: exprs})
		}
	}
	for fi := range families {
		for _, s := range []struct {
			set   *nftables.Set
			elems []nftables.SetElement
		}{{svcSets[fi], svcElems[fi]}, {masqSets[fi], masqElems[fi]}, {noepSets[fi], noepElems[fi]}} {
			if err := c.AddSet(s.set, nil); err != nil {
				return fmt.Errorf("set %s: %w", s.set.Name, err)
			}
			// An element list is one netlink attribute, whose length
			// field has 16 bits: send elements in chunks well below
			// 64 KiB (a verdict-map element is under 300 bytes).
			for chunk := range slices.Chunk(s.elems, elemChunk) {
				if err := c.SetAddElements(s.set, chunk); err != nil {
					return fmt.Errorf("set %s: %w", s.set.Name, err)
				}
			}
		}
	}

	// services: VIP:port → service chain.
	services := c.AddChain(&nftables.Chain{Table: tbl, Name: "services"})
	for fi, f := range families {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: services, Exprs: append(matchDest(f),
			&expr.Lookup{SourceRegister: reg1, SetName: svcSets[fi].Name, SetID: svcSets[fi].ID, DestRegister: 0, IsDestRegSet: true},
		)})
	}
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"prerouting", nftables.ChainHookPrerouting}, {"output", nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{Table: tbl, Name: h.name, Type: nftables.ChainTypeNAT, Hooknum: h.hook, Priority: nftables.ChainPriorityNATDest})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: services.Name}}})
	}

	// no-endpoints: reject early, in filter chains, so no NAT is set up.
	noep := c.AddChain(&nftables.Chain{Table: tbl, Name: "no-endpoints"})
	for fi, f := range families {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: noep, Exprs: append(matchDest(f),
			&expr.Lookup{SourceRegister: reg1, SetName: noepSets[fi].Name, SetID: noepSets[fi].ID},
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH},
		)})
	}
	filterPrio := nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 10)
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"filter-prerouting", nftables.ChainHookPrerouting}, {"filter-output", nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{Table: tbl, Name: h.name, Type: nftables.ChainTypeFilter, Hooknum: h.hook, Priority: filterPrio})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: noep.Name}}})
	}

	// postrouting: masquerade DNATed connections to Cluster endpoints.
	post := c.AddChain(&nftables.Chain{Table: tbl, Name: "postrouting", Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for fi, f := range families {
		exprs := []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{0, 0, 0, 0}},
		}
		exprs = append(exprs, matchDest(f)...)
		exprs = append(exprs,
			&expr.Ct{Register: f.secondReg() + 2, Key: expr.CtKeyPROTODST, Direction: 0},
			&expr.Lookup{SourceRegister: reg1, SetName: masqSets[fi].Name, SetID: masqSets[fi].ID},
			&expr.Masq{},
		)
		c.AddRule(&nftables.Rule{Table: tbl, Chain: post, Exprs: exprs})
	}
	return nil
}

// matchDest loads "daddr . l4proto . th dport" of family f into the
// registers starting at reg1, after checking the packet is of family f
// (an inet table sees both).
func matchDest(f family) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOff, Len: f.addrLen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.secondReg()},
		&expr.Payload{DestRegister: f.secondReg() + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// chainName names a service chain: index for uniqueness, then a readable,
// sanitized piece of the key for people reading `nft list ruleset`.
func chainName(i int, key string) string {
	var b strings.Builder
	for _, r := range key {
		if b.Len() >= 160 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("svc-%d-%s", i, b.String())
}
