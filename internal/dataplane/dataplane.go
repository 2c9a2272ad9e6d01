// Package dataplane is Herald's optional load-balancing data plane for
// clusters that run no kube-proxy and no Cilium kube-proxy replacement
// (DESIGN §6). It programs one nftables table that Herald owns (family inet,
// default name "herald") over netlink with github.com/google/nftables; it
// never runs the nft binary and never reads, flushes or deletes any other
// table, so kube-proxy, a CNI or a firewall can share the namespace.
//
// The package knows nothing about Kubernetes: the agent turns Services and
// EndpointSlices into [Service] values and calls [Table.Update] with those
// of the Kubernetes Services that changed, one group per Kubernetes
// Service; [Table.Sync] sets the complete desired set at once.
//
// # Ruleset
//
// Every service lives in set and map elements, never in rules of its own,
// so that changing one changes elements only (see Updates):
//
//   - chain "services" (jumped to from the nat hooks prerouting and output at
//     priority dstnat) looks "daddr . l4proto . dport" up in the sets
//     "services4"/"services6" (services with endpoints; each element's
//     comment is the service's Key) and goes on to chain "dnat4"/"dnat6";
//     every other packet returns at once.
//   - chain "dnat4" ("dnat6") has one rule per number n of endpoints that
//     some IPv4 (IPv6) service has, in ascending order: "dnat to daddr .
//     l4proto . dport . numgen random mod n map @endpoints4-n". The map
//     "endpoints4-n" holds, for each service with n endpoints, buckets 0 to
//     n-1, bucket i leading to endpoint i (address and port). A packet of a
//     service with n endpoints misses the maps of the rules before (they
//     hold other services) and picks one of its n buckets uniformly at
//     random in its own, exactly for any n. It passes at most as many rules
//     as the service has endpoints, as with kube-proxy's per-endpoint
//     rules, and only its first packet (NAT chains see new connections).
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
//     inet table and nft 1.0.6 aborts while printing it. The bucket in an
//     endpoint map's key has type mark only so that nft(8) prints it.)
//   - chains "filter-prerouting"/"filter-output" (filter hooks at priority
//     dstnat-10) reject packets to a service without usable endpoints
//     (sets "no-endpoints4"/"no-endpoints6") with ICMP(v6) port
//     unreachable (as kube-proxy does), so a TCP client fails at once with
//     "connection refused" instead of waiting for a timeout.
//
// A Local service uses only endpoints with Local set and is not
// masqueraded, so the backend sees the client's own source address. A
// Local service whose ready endpoints are all on other nodes has no usable
// endpoints here and is rejected like one with no endpoints at all.
//
// Why no chain per service: nf_tables checks the whole table (every chain
// reachable from a base chain, through every element of a verdict map)
// whenever a batch adds a rule with a NAT expression or a verdict-map
// element that jumps; with a chain per service that cost 15 ms of kernel
// time per batch at 10 000 services, however small the change. Elements
// of plain sets and data maps trigger no such check, and the check of the
// few rules above is cheap when a new endpoint count adds one.
//
// # Updates
//
// Every change goes to the kernel as one netlink batch, which nf_tables
// applies as one transaction: it prepares every change of the batch in the
// next generation of the ruleset and switches generations when the batch
// commits, or drops the whole batch on any error. A packet therefore sees
// all of the old rules and elements or all of the new ones, never a mix,
// and established connections keep their conntrack NAT bindings across
// every call.
//
// The Table keeps the desired set by group, as Sync and Update left it,
// and remembers what it programmed: per service its services or
// no-endpoints element and its endpoints (bucket by bucket), the
// masquerade elements it needs (counted, since services on different VIPs
// may share one), how many services use each endpoint map and, for UDP,
// the endpoints whose conntrack entries must go when they leave. Update
// replaces the services of the groups it is given and compares only those
// with what it programmed, plus the services whose place in the table
// their change decides (of several services with one VIP:port/protocol
// the one with the smallest Key is programmed; each VIP:port/protocol
// keeps its claimants in Key order, so the next one is found when the
// first goes): in Go as in the kernel, its cost follows what changed, not
// the size of the desired set. Sync replaces the whole desired set and
// compares all of it, one comparison per service. Either sends one batch
// with only the differences:
//
//   - a service that keeps its number of endpoints has the buckets whose
//     endpoint changed replaced (element deleted and added again with the
//     new endpoint, in the same batch); one whose number changes moves all
//     of its buckets from one endpoint map to the other. The transaction
//     makes either atomic: no packet sees a service with a bucket missing
//     or with a mix of old and new buckets, so no second copy swapped in is
//     needed.
//   - a new service gets its buckets, then its services element, or only
//     its no-endpoints element; a removed one loses them. A service that
//     gains or loses all of its endpoints moves between the two sets.
//   - an endpoint map is created with the first service of its family with
//     its number of endpoints and deleted with the last; then the rules of
//     chain dnat4 (dnat6) are flushed and written again in the same batch.
//   - a masquerade element is added with the first service that needs it
//     and deleted with the last.
//
// A call (Sync or Update) with nothing to change sends nothing, not even
// a query. Any other call first asks the kernel for the table's handle,
// which changes when the table is deleted and created again, and its use
// count (chains and sets): one round trip. The first call after Open, the
// first after a failed one, one that finds the handle or count not as the
// Table left them, and one whose incremental batch the kernel refuses (an
// element deleted behind the Table's back) replace the whole table
// instead, in one batch (add table, delete table, add table and its
// content), within the same call.
//
// A call that fails (with any error but ErrInvalidService) leaves the
// kernel's table as it was, but its changes to the desired set stay: they
// are pending, and the next call (an Update of other groups, or of none)
// or Check programs them.
//
// Since an unchanged call does not look, a table deleted while nothing
// changes stays deleted until the next change or until [Table.Check], which
// makes that one query and rebuilds the table with the desired set: call
// it now and then. Edits by hand inside the table that keep the counts (a
// rule or an element changed) are noticed only when a batch touches what
// they changed.
//
// When a call drops an endpoint of a UDP service, the conntrack entries
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultTableName is the name of the nftables table Herald owns when
// [Options.Name] is empty.
const DefaultTableName = "herald"

// ErrInvalidService marks a Service that Sync or Update could not program
// (bad address, protocol or port, a Key used twice, or a VIP:port/protocol
// that another Service with a smaller Key uses). They program every other
// Service anyway.
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
	// Key identifies the service from one call to the next, in logs and in
	// the comment of its element in the table (for example
	// "namespace/name:port/TCP"); it must be unique within the desired
	// set (all groups).
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

// Stats counts what a Table did since Open. Its "Syncs" are calls of Sync
// and of Update alike.
type Stats struct {
	// FullSyncs counts table replacements: first calls, calls after an
	// error or after the table changed behind the Table's back, and
	// rebuilds by Check.
	FullSyncs uint64
	// IncrementalSyncs counts calls that sent only the differences.
	IncrementalSyncs uint64
	// UnchangedSyncs counts calls that found nothing to change and talked
	// to no one.
	UnchangedSyncs uint64
	// Fallbacks counts incremental updates given up for a full one: the
	// kernel's table was not the one the Table left, or it refused the
	// batch.
	Fallbacks uint64
	// RoundTrips counts netlink exchanges with the kernel: batches, table
	// queries and conntrack clean-ups.
	RoundTrips uint64
	// Messages counts the nftables messages sent in batches.
	Messages uint64
}

// Table owns Herald's nftables table in one network namespace. Its methods
// are safe for concurrent use; calls are serialized.
type Table struct {
	name string
	log  *slog.Logger

	mu     sync.Mutex
	nsFD   int // duplicated namespace fd, or -1 for the current namespace
	closed bool
	nft    *nftables.Conn // lasting connection; nil until needed and after an error
	nl     *netlink.Conn  // nft's socket, for queries

	// What the kernel's table holds, as far as the Table knows: after a
	// failed call, what the last successful one left.
	st state
	// want is the desired set, by group, as Sync and Update left it,
	// whether or not the kernel took it.
	want desired
	// pending are the Keys whose record in the kernel may differ from
	// what want programs: those a call changed and a failed call left.
	pending map[string]struct{}
	// full makes the next call replace the whole table: before the first
	// success and after a replacement failed.
	full bool
	// handle is the kernel's handle of the table the last full replacement
	// created; a table deleted and created again gets a new one.
	handle uint64
	synced bool // some call succeeded since Open

	sc    scratch
	stats Stats
}

// Open prepares a Table. It checks that nftables is usable in the
// namespace but does not change the ruleset: an existing table of the same
// name (left by a previous agent) keeps forwarding until the first Sync or
// Update.
func Open(opts Options) (*Table, error) {
	name := opts.Name
	if name == "" {
		name = DefaultTableName
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{name: name, log: log.With("table", "inet "+name), nsFD: -1, full: true,
		st: newState(), want: newDesired(), pending: map[string]struct{}{}}
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
		return nil, fmt.Errorf("open dataplane: %w", err)
	}
	// Listing only Herald's family proves that we may talk to nf_tables
	// here (root/CAP_NET_ADMIN in the namespace, module present).
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		t.dropConn()
		t.closeFD()
		return nil, fmt.Errorf("open dataplane: list nftables tables: %w", err)
	}
	return t, nil
}

// Name returns the name of the inet table this Table owns.
func (t *Table) Name() string { return t.name }

// Stats returns the Table's counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// socketBuffer is the netlink send and receive buffer size. A full Sync
// sends the whole ruleset as one batch in one sendmsg, which the kernel
// refuses when it exceeds the send buffer (about 1 MiB for 1000 services
// with 3 endpoints each), and the kernel queues one acknowledgement per
// message of the batch before we read any. The buffers are limits, not
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

// conn returns the Table's lasting nftables connection, dialling it when
// there is none. Entering the namespace and raising the buffers costs more
// than a small batch, so the socket is kept; it is dropped after any error,
// since a failed batch can leave unread acknowledgements behind.
func (t *Table) conn() (*nftables.Conn, error) {
	if t.nft != nil {
		return t.nft, nil
	}
	var nl *netlink.Conn
	opts := []nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(bigBuffers, func(c *netlink.Conn) error { nl = c; return nil }),
	}
	if t.nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(t.nsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables connection: %w", err)
	}
	if nl == nil {
		_ = c.CloseLasting()
		return nil, errors.New("nftables connection: no netlink socket")
	}
	t.nft, t.nl = c, nl
	return c, nil
}

func (t *Table) dropConn() {
	if t.nft != nil {
		_ = t.nft.CloseLasting()
		t.nft, t.nl = nil, nil
	}
}

func (t *Table) closeFD() {
	if t.nsFD >= 0 {
		_ = unix.Close(t.nsFD)
		t.nsFD = -1
	}
}

// Sync makes Herald's table match services exactly; it is idempotent.
// Invalid or duplicate services are left out and reported in the returned
// error (wrapping ErrInvalidService) while all other services are
// programmed; any other error means the kernel kept the previous ruleset
// (the next Sync, Update or Check programs services then). It sends only
// what changed since the last call (see the package documentation), and
// nothing at all when nothing did.
//
// Sync sets the whole desired set: the groups of earlier Updates are
// dropped and services become the group named "" (which Update may change
// in turn). Its cost follows len(services); Update's, what changes.
func (t *Table) Sync(ctx context.Context, services []Service) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	invalid := t.stage(map[string][]Service{syncGroup: services}, true)
	if err := t.apply(ctx, false); err != nil {
		return fmt.Errorf("sync dataplane: %w", err)
	}
	if len(invalid) > 0 {
		return fmt.Errorf("sync dataplane: %w", errors.Join(invalid...))
	}
	return nil
}

// Update changes the desired services of some groups only and programs
// the difference: groups maps a group's name (the caller's choice: the
// agent uses the Kubernetes Service's "namespace/name") to the group's
// complete new list of services; a nil or empty list removes the group.
// Groups not named keep theirs. The table then holds exactly what Sync
// would program with every group's services in one list (the groups in
// name order, each in its own order): of services with one Key (which
// should not happen) the first in that list counts, and of two services
// with the same VIP:port/protocol the one with the smaller Key is
// programmed, the other one taking its place when it goes.
//
// The returned error wraps ErrInvalidService for the named groups'
// invalid services and for services of other groups that this Update
// takes out of the table; all other services are programmed. Any other
// error means the kernel kept the previous ruleset; the changes are kept
// all the same, and the next Update (with any groups, or none), Sync or
// Check programs them.
//
// Its cost follows the services of the named groups and what their
// change sets in motion, not the size of the desired set: a few map
// look-ups per service, and one netlink batch with the differences (none
// when nothing changed).
func (t *Table) Update(ctx context.Context, groups map[string][]Service) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	invalid := t.stage(groups, false)
	if err := t.apply(ctx, false); err != nil {
		return fmt.Errorf("update dataplane: %w", err)
	}
	if len(invalid) > 0 {
		return fmt.Errorf("update dataplane: %w", errors.Join(invalid...))
	}
	return nil
}

// Check makes sure that the kernel still holds the table this Table last
// programmed, with one query (the table's handle and its number of chains
// and sets; see the package documentation), and replaces the whole table
// with the desired set when it does not, or when the last call failed. It
// reports whether it replaced the table. The changes of a failed call that
// did not need a replacement are programmed too, incrementally. Before the
// first successful Sync or Update it does nothing.
//
// A call with nothing to change sends nothing, so a table deleted behind
// the Table's back (`nft flush ruleset` by a firewall reload) stays deleted
// until a call has something to change; calling Check periodically bounds
// that time.
func (t *Table) Check(ctx context.Context) (rebuilt bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false, ErrClosed
	}
	if !t.synced {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("check dataplane: %w", err)
	}
	if !t.full {
		why := t.intact()
		if why == "" && len(t.pending) == 0 {
			return false, nil
		}
		if why != "" {
			t.log.Info("nftables table changed behind Herald's back; rebuilding it", "why", why)
			t.full = true
		}
	}
	full := t.stats.FullSyncs
	if err := t.apply(ctx, true); err != nil {
		return false, fmt.Errorf("check dataplane: %w", err)
	}
	return t.stats.FullSyncs > full, nil
}

// apply sends the pending changes to the kernel (incrementally when it
// can) and records them; checked skips the query that tells whether the
// table is still the one the Table left (the caller just made it). On
// failure the state and the pending Keys stay as they were.
func (t *Table) apply(ctx context.Context, checked bool) error {
	defer t.sc.shrink()
	changes := t.pendingChanges()
	if len(changes) == 0 && !t.full {
		t.stats.UnchangedSyncs++
		t.donePending()
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	masq, counts := t.masqDelta(changes), t.countDelta(changes)
	full := t.full
	if !full && !checked {
		if why := t.intact(); why != "" {
			t.log.Info("nftables table changed behind Herald's back; replacing it", "why", why)
			t.stats.Fallbacks++
			full = true
		}
	}
	if !full {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := t.incremental(changes, masq, counts)
		if err == nil {
			t.stats.IncrementalSyncs++
		} else {
			t.log.Info("incremental update of the nftables table refused; replacing the table", "err", err)
			t.stats.Fallbacks++
			full = true
		}
	}
	if full {
		if err := ctx.Err(); err != nil {
			t.full = true
			return err
		}
		// The whole desired set: what the state holds with the changes
		// applied.
		if err := t.replace(t.want.all()); err != nil {
			return err
		}
	}
	t.commit(changes, masq, counts)
	t.donePending()
	t.log.Debug("dataplane synced", "services", len(t.st.recs), "changed", len(changes), "full", full)
	t.clearUDP(changes)
	return nil
}

// replace queues and sends the batch that replaces the whole table with
// recs (in Key order), and learns the new table's handle.
func (t *Table) replace(recs []*record) error {
	t.full = true
	c, err := t.conn()
	if err != nil {
		return err
	}
	b := t.newBatch(c)
	b.replaceAll(recs)
	if err := t.send(b); err != nil {
		return fmt.Errorf("replace table inet %s: %w", t.name, err)
	}
	t.stats.FullSyncs++
	t.full = false
	t.synced = true
	t.handle = 0
	h, _, found, err := t.query()
	switch {
	case err != nil:
		t.log.Warn("reading back the nftables table's handle failed; the next change replaces the table again", "err", err)
	case !found:
		t.log.Warn("the nftables table vanished right after it was written; the next change replaces it again")
	default:
		t.handle = h
	}
	return nil
}

// incremental sends the batch that turns the kernel's table, as the Table
// knows it, into the desired one.
func (t *Table) incremental(changes []change, masq masqChanges, counts countChanges) error {
	c, err := t.conn()
	if err != nil {
		return err
	}
	b := t.newBatch(c)
	b.update(changes, masq, counts)
	return t.send(b)
}

// send flushes b, counting it; after an error the connection is dropped.
func (t *Table) send(b *batch) error {
	if b.err != nil {
		t.dropConn()
		return b.err
	}
	t.stats.RoundTrips++
	t.stats.Messages += b.n
	if err := b.c.Flush(); err != nil {
		t.dropConn()
		return err
	}
	return nil
}

// Close releases the Table. With remove it also deletes Herald's table
// (clean shutdown, or --dataplane switched off) unless another Table has
// replaced it since this one last did (a successor agent on the same
// node); without remove the rules stay so that traffic keeps flowing while
// the agent restarts.
func (t *Table) Close(remove bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	defer t.closeFD()
	defer t.dropConn()
	if !remove {
		return nil
	}
	if t.synced && t.handle != 0 {
		// The table may no longer be ours: an agent started on this node
		// while this one shut down (a Pod deleted with --grace-period=0
		// is replaced at once) replaces it with its own, which has a new
		// handle. Deleting that one would leave the node without rules
		// until the successor's next change. The query and the delete are
		// two round trips, so a successor's first sync landing between
		// them still loses its table, which its next change or Check
		// restores; the window is microseconds where the shutdown's is
		// seconds.
		h, _, found, err := t.query()
		if err != nil {
			return fmt.Errorf("close dataplane: %w", err)
		}
		if !found {
			return nil
		}
		if h != t.handle {
			t.log.Info("dataplane table left in place: another agent has replaced it", "handle", h, "ours", t.handle)
			return nil
		}
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
