package l2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"

	"github.com/herald-lb/herald/internal/netnsenter"
)

// Defaults for Options. The burst is short and repeated because a single
// gratuitous ARP is easily lost (Cilium sends exactly one); the periodic
// refresh re-teaches clients whose entry was learned from an older owner and
// never expired.
const (
	// DefaultGratuitousCount is the default number of announcements sent
	// for a newly owned address.
	DefaultGratuitousCount = 3
	// DefaultGratuitousInterval is the default spacing of those
	// announcements.
	DefaultGratuitousInterval = 500 * time.Millisecond
	// DefaultRefreshInterval is the default period of the announcement
	// repeated while an address stays owned.
	DefaultRefreshInterval = 60 * time.Second
	// DefaultDefendInterval is the least time between two defences of one
	// address: RFC 5227 §2.4 (c) asks a host that keeps its address to
	// defend it at most once per DEFEND_INTERVAL (10 s), so that two hosts
	// configured with one address do not flood the LAN fighting for it.
	DefaultDefendInterval = 10 * time.Second
	// DefaultRefreshRate is the default bound on refreshed addresses per
	// second: 20, so up to 1200 owned addresses keep the 60 s period and
	// 10 000 are refreshed about every 8 minutes.
	DefaultRefreshRate = 20
	// DefaultGratuitousRate is the default bound on announcement frames
	// per second and interface: 2000 frames/s is 1000 IPv4 addresses (two
	// frames each) or 2000 IPv6 addresses a second, about 1.3 Mbit/s of
	// broadcast, so that a mass take-over does not look like a broadcast
	// storm to the LAN's switches and hosts. A fail-over of 3000 IPv4
	// addresses has its first announcements out within 3 s.
	DefaultGratuitousRate = 2000
)

// Conflict kinds reported in Conflict.Kind.
const (
	// ConflictARPReply: another MAC sent an ARP reply for an owned address.
	ConflictARPReply = "arp-reply"
	// ConflictGARP: another MAC sent a gratuitous ARP (request or reply form)
	// for an owned address.
	ConflictGARP = "garp"
	// ConflictARPRequest: another MAC sent an ARP request with an owned
	// address as its sender IP, i.e. it has the address configured.
	ConflictARPRequest = "arp-request"
	// ConflictNA: another MAC sent a Neighbor Advertisement for an owned
	// address.
	ConflictNA = "na"
	// ConflictARPProbe: (Probe only) another host probed for the same address
	// at the same time (RFC 5227 §2.1.1).
	ConflictARPProbe = "arp-probe"
	// ConflictDAD: (Probe only) another host ran Duplicate Address Detection
	// for the same address at the same time (RFC 4862 §5.4.3).
	ConflictDAD = "dad"
)

// conflictReportInterval rate-limits OnConflict and the warning log per
// (address, MAC): a host flooding gratuitous ARPs must not flood the agent.
// The conflicts counter still counts every frame.
const conflictReportInterval = time.Second

// Options configure a Responder. The zero value is usable.
type Options struct {
	// Logger receives the responder's logs; every line carries the
	// interface, and lines about an address carry it as "ip". Nil means
	// slog.Default().
	Logger *slog.Logger
	// GratuitousCount is how many announcements (gratuitous ARP in request
	// and reply form, or an unsolicited NA) are sent for a newly owned
	// address: one at once, the rest GratuitousInterval apart. 0 means
	// DefaultGratuitousCount; a negative value sends none.
	GratuitousCount int
	// GratuitousInterval is the spacing of that burst. 0 means
	// DefaultGratuitousInterval.
	GratuitousInterval time.Duration
	// RefreshInterval is the period of the announcement repeated while an
	// address stays owned, after the burst. 0 means DefaultRefreshInterval;
	// a negative value disables the refresh.
	RefreshInterval time.Duration
	// RefreshRate bounds the addresses refreshed per second: with more
	// than RefreshRate × RefreshInterval owned addresses, each is refreshed
	// less often than every RefreshInterval. 0 means DefaultRefreshRate; a
	// negative value means no bound.
	RefreshRate int
	// GratuitousRate bounds the announcement frames (bursts and refreshes,
	// not Defend) sent on the interface, in frames per second, so that
	// taking over thousands of addresses at once is not one instant storm
	// of broadcasts. Up to GratuitousRate/20 frames (50 ms worth) go out
	// at once, so a few new addresses are announced without delay; beyond
	// that they are spread at the rate, every first announcement before
	// any repeat. 0 means DefaultGratuitousRate; a negative value means no
	// bound.
	GratuitousRate int
	// DefendInterval is the least time between two defences of one address
	// (see Defend). 0 means DefaultDefendInterval; a negative value makes
	// Defend send nothing.
	DefendInterval time.Duration
	// OnConflict is called when another MAC claims an owned address. It is
	// called from the receive goroutine, at most once per second per
	// address and MAC, and must not block.
	OnConflict func(Conflict)
	// OnFirstAnnouncement is called once per newly owned address (one
	// that SetOwned added) when the first announcement of its burst went
	// out, with the time it did: the agent measures hand-overs up to the
	// first frame clients see. Not for refreshes, nor for the bursts sent
	// again after the link came back. Nothing is called when
	// GratuitousCount is negative. It is called from the announce
	// goroutine and must not block.
	OnFirstAnnouncement func(addr netip.Addr, sent time.Time)
	// Metrics records herald_l2_* series; nil records nothing.
	Metrics *Metrics
}

// Conflict says that a host other than this one claims an address.
type Conflict struct {
	// Addr is the claimed address.
	Addr netip.Addr
	// MAC is the other host's hardware address.
	MAC net.HardwareAddr
	// Interface is the interface the claim was seen on.
	Interface string
	// Kind is what gave it away: one of the Conflict* constants.
	Kind string
}

// frameConn is the subset of *packet.Conn the responder uses; tests and
// benchmarks substitute an in-memory one.
type frameConn interface {
	ReadFrom(b []byte) (int, net.Addr, error)
	WriteTo(b []byte, addr net.Addr) (int, error)
	SetBPF(filter []bpf.RawInstruction) error
	JoinGroup(addr net.HardwareAddr) error
	LeaveGroup(addr net.HardwareAddr) error
	Close() error
}

// ownedSet is an immutable snapshot of the owned addresses, swapped
// atomically so the receive path reads it without locks.
type ownedSet struct {
	m      map[netip.Addr]struct{}
	sorted []netip.Addr
}

// KernelFilter describes the classic BPF filter attached to one of a
// Responder's sockets: how exactly the kernel drops frames that are not
// about owned addresses before they reach Go. Whatever it lets through, Go
// checks against the owned set; this is about cost, never correctness.
type KernelFilter struct {
	// Family is "ipv4" (the ARP socket) or "ipv6" (the NDP socket).
	Family string
	// Owned is the number of owned addresses of the family.
	Owned int
	// Instructions is the length of the attached program (at most 4096).
	Instructions int
	// Exact reports that only frames about owned addresses pass.
	Exact bool
	// Coarse reports that the catch-all filter is attached (every ARP
	// request and reply, or every NS and NA, reaches Go) because the
	// kernel refused the compiled one.
	Coarse bool
	// ExtraTargets is how many addresses that are not owned pass as the
	// target of an ARP request or NS/NA (0 when Exact): the filter is a
	// search over ranges and bitmaps, made coarser when the owned set does
	// not fit the kernel's limits. ExtraSenders is the same for the sender
	// of an ARP request or reply (IPv4 only). Both are +Inf when Coarse.
	ExtraTargets, ExtraSenders float64
}

func (s *ownedSet) has(a netip.Addr) bool {
	if s == nil {
		return false
	}
	_, ok := s.m[a]
	return ok
}

type conflictKey struct {
	addr netip.Addr
	mac  [6]byte
}

// Responder answers ARP requests and Neighbor Solicitations for a set of
// owned addresses on one interface, from user space, with the interface's
// MAC, and announces newly owned addresses. It never configures an address
// on the interface, so it works on interfaces without any IPv4 address and
// stops answering the moment it stops running.
type Responder struct {
	ifName string
	ifi    net.Interface
	mac    net.HardwareAddr
	log    *slog.Logger
	opts   Options
	m      *ifaceMetrics

	arpConn frameConn
	ndpConn frameConn
	mld     *mldGroups // nil when the interface or host has no IPv6

	owned atomic.Pointer[ownedSet]
	// netns is the network namespace the sockets were opened in (closed by
	// Close), for the MLD sockets opened later; nil if unknown.
	netns *netns.NsHandle

	// mu serialises SetOwned and guards what follows.
	mu sync.Mutex
	// groups counts the owned addresses in each solicited-node group,
	// joined the groups whose membership is made, groupPending the groups
	// where the two may differ; groupWorker says a goroutine is syncing
	// them (see groups.go).
	groups       map[netip.Addr]int
	joined       map[netip.Addr]bool
	groupPending map[netip.Addr]struct{}
	groupWorker  bool
	// sched has every scheduled address's announcement, queue orders them
	// by due time (see announce.go).
	sched map[netip.Addr]*announcement
	queue announceQueue
	seq   uint64
	wake  chan struct{}
	// filters describe the attached kernel filters, IPv4 then IPv6;
	// attached are their programs; budget is the length of program that
	// the kernel last accepted, 0 before any refusal (then programs are
	// tried up to twice as long), refused whether a refusal was logged.
	filters  [2]KernelFilter
	attached [2][]bpf.RawInstruction
	budget   [2]int
	refused  [2]bool

	conflictMu   sync.Mutex
	lastConflict map[conflictKey]time.Time
	// lastDefence is when each owned address was last defended.
	lastDefence map[netip.Addr]time.Time

	// received counts the frames from other hosts that passed the kernel
	// filters, ARP then NDP (tests).
	received [2]atomic.Uint64

	running   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// NewResponder opens the responder's AF_PACKET sockets (one for ETH_P_ARP,
// one for ETH_P_IPV6) on ifi, in the network namespace of the calling
// goroutine's thread: to serve an interface in another namespace, lock the
// OS thread and switch namespaces around this call; the sockets stay in that
// namespace afterwards. The sockets start with a drop-everything filter;
// nothing is answered until SetOwned names addresses. Call Run to serve.
func NewResponder(ifi *net.Interface, opts Options) (*Responder, error) {
	if ifi == nil {
		return nil, errors.New("l2: NewResponder needs an interface")
	}
	if err := checkMAC(ifi.HardwareAddr); err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifi.Name, err)
	}
	r := newResponder(ifi, opts)
	if h, err := netns.Get(); err == nil {
		r.netns = &h
	}
	arpConn, err := listen(ifi, etherTypeARP)
	if err != nil {
		r.closeNetns()
		return nil, err
	}
	ndpConn, err := listen(ifi, etherTypeIPv6)
	if err != nil {
		_ = arpConn.Close()
		r.closeNetns()
		return nil, err
	}
	r.arpConn, r.ndpConn = arpConn, ndpConn
	// Unsolicited NAs from other hosts go to all-nodes; make sure the NIC
	// passes that group even when the kernel's IPv6 is off on the link.
	if err := ndpConn.JoinGroup(allNodesMAC()); err != nil {
		r.log.Debug("cannot join all-nodes multicast MAC", "err", err)
	}
	if mld, err := openMLD(ifi, r.inNetns(listenICMPv6)); err != nil {
		// No IPv6 on the host: NDP cannot be needed either; ARP still works.
		r.log.Debug("no ICMPv6 socket for MLD joins; relying on link-layer membership only", "err", err)
	} else {
		r.mld = mld
	}
	return r, nil
}

// newResponder builds a Responder without sockets.
func newResponder(ifi *net.Interface, opts Options) *Responder {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.GratuitousCount == 0 {
		opts.GratuitousCount = DefaultGratuitousCount
	}
	if opts.GratuitousCount < 0 {
		opts.GratuitousCount = 0
	}
	if opts.GratuitousInterval <= 0 {
		opts.GratuitousInterval = DefaultGratuitousInterval
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.DefendInterval == 0 {
		opts.DefendInterval = DefaultDefendInterval
	}
	if opts.RefreshRate == 0 {
		opts.RefreshRate = DefaultRefreshRate
	}
	if opts.GratuitousRate == 0 {
		opts.GratuitousRate = DefaultGratuitousRate
	}
	r := &Responder{
		ifName:       ifi.Name,
		ifi:          *ifi,
		mac:          slices.Clone(ifi.HardwareAddr),
		log:          opts.Logger.With("interface", ifi.Name),
		opts:         opts,
		m:            opts.Metrics.forInterface(ifi.Name),
		groups:       make(map[netip.Addr]int),
		joined:       make(map[netip.Addr]bool),
		groupPending: make(map[netip.Addr]struct{}),
		sched:        make(map[netip.Addr]*announcement),
		wake:         make(chan struct{}, 1),
		lastConflict: make(map[conflictKey]time.Time),
		lastDefence:  make(map[netip.Addr]time.Time),
	}
	r.ifi.HardwareAddr = r.mac
	r.owned.Store(&ownedSet{m: map[netip.Addr]struct{}{}})
	// The sockets start with the drop-all filter: exact for an empty set.
	r.filters = [2]KernelFilter{{Family: familyIPv4, Instructions: 1, Exact: true}, {Family: familyIPv6, Instructions: 1, Exact: true}}
	return r
}

// inNetns wraps open so that it runs in the responder's network namespace
// (for sockets opened after NewResponder returned, on any thread).
func (r *Responder) inNetns(open func() (net.PacketConn, error)) func() (net.PacketConn, error) {
	if r.netns == nil {
		return open
	}
	ns := *r.netns
	return func() (net.PacketConn, error) {
		if cur, err := netns.Get(); err == nil {
			same := cur.Equal(ns)
			_ = cur.Close()
			if same {
				// The usual case: the process has one namespace. No
				// setns(2), which needs CAP_SYS_ADMIN.
				return open()
			}
		}
		var c net.PacketConn
		err := netnsenter.Do(ns, func() (err error) {
			c, err = open()
			return err
		})
		return c, err
	}
}

func (r *Responder) closeNetns() {
	if r.netns != nil {
		_ = r.netns.Close()
	}
}

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
)

// listen opens a raw packet socket for one EtherType with the drop-all
// filter attached before bind, so nothing queues before SetOwned.
func listen(ifi *net.Interface, etherType int) (*packet.Conn, error) {
	drop, err := dropAllFilter()
	if err != nil {
		return nil, err
	}
	c, err := packet.Listen(ifi, packet.Raw, etherType, &packet.Config{Filter: drop})
	if err != nil {
		return nil, fmt.Errorf("open packet socket for ethertype %#04x on %s: %w", etherType, ifi.Name, err)
	}
	return c, nil
}

// Run serves until ctx is done, then closes the sockets and returns nil. It
// returns an error if a socket fails for good (the interface was deleted,
// say); a link going down is waited out. Run may be called once.
func (r *Responder) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("l2: Responder.Run called twice")
	}
	if r.closed.Load() {
		return errors.New("l2: Responder is closed")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.log.Info("l2 responder started", "mac", r.mac.String())

	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- r.readLoop(ctx, r.arpConn, familyIPv4) })
	wg.Go(func() { errc <- r.readLoop(ctx, r.ndpConn, familyIPv6) })
	wg.Go(func() { r.announceLoop(ctx) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	closeErr := r.Close()
	wg.Wait()
	r.log.Info("l2 responder stopped")
	if err != nil {
		return err
	}
	if closeErr != nil {
		return fmt.Errorf("close responder on %s: %w", r.ifName, closeErr)
	}
	return nil
}

// Close releases the sockets. Run calls it on the way out; call it directly
// only for a Responder whose Run was never started.
func (r *Responder) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		var errs []error
		for _, c := range []frameConn{r.arpConn, r.ndpConn} {
			if c != nil {
				errs = append(errs, c.Close())
			}
		}
		if r.mld != nil {
			errs = append(errs, r.mld.Close())
		}
		r.closeNetns()
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// readLoop reads frames from one socket until it is closed.
func (r *Responder) readLoop(ctx context.Context, c frameConn, family string) error {
	buf := make([]byte, 1<<16)
	for {
		n, _, err := c.ReadFrom(buf)
		rx := time.Now()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, syscall.ENETDOWN) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				// The kernel reports a link going down once per socket;
				// the socket is re-bound when it comes back up. Announce
				// everything again then.
				r.log.Info("interface went down; waiting for it", "family", family, "err", err)
				if errors.Is(err, syscall.ENETDOWN) {
					r.restartBursts()
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			return fmt.Errorf("read %s frames on %s: %w", family, r.ifName, err)
		}
		r.handleFrame(ctx, c, buf[:n], rx)
	}
}

// handleFrame decodes one frame and answers it, reports a conflict, or
// drops it.
func (r *Responder) handleFrame(ctx context.Context, c frameConn, b []byte, rx time.Time) {
	if len(b) >= ethHeaderLen && !sameMAC(b[6:12], r.mac) {
		if b[12] == etherTypeIPv6>>8 {
			r.received[1].Add(1)
		} else {
			r.received[0].Add(1)
		}
	}
	msg, err := Decode(b)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			r.m.malformedFrame()
			if r.log.Enabled(ctx, slog.LevelDebug) {
				r.log.Debug("dropped malformed frame", "err", err, "len", len(b))
			}
		}
		return
	}
	// Our own frames can come back through a hairpinning bridge or be sent
	// by another process on this host; they are never a request or a
	// conflict.
	if sameMAC(msg.EthSrc, r.mac) || sameMAC(msg.SenderHW, r.mac) {
		return
	}
	owned := r.owned.Load()
	switch msg.Kind {
	case KindARPRequest, KindARPProbe:
		if msg.Kind == KindARPRequest && owned.has(msg.SenderIP) {
			r.conflict(msg.SenderIP, msg.LinkAddr(), ConflictARPRequest)
		}
		if owned.has(msg.TargetIP) {
			r.m.request(false)
			frame, err := ARPReply(r.mac, msg.TargetIP, &msg)
			r.reply(ctx, c, frame, err, msg.SenderHW, msg.TargetIP, rx, false)
		}
	case KindARPAnnouncement, KindARPGratuitousReply:
		if owned.has(msg.SenderIP) {
			r.conflict(msg.SenderIP, msg.LinkAddr(), ConflictGARP)
		}
	case KindARPReply:
		if owned.has(msg.SenderIP) {
			r.conflict(msg.SenderIP, msg.LinkAddr(), ConflictARPReply)
		}
	case KindNeighborSolicitation:
		if owned.has(msg.TargetIP) {
			r.m.request(true)
			dst := msg.LinkAddr()
			frame, err := SolicitedNA(r.mac, msg.TargetIP, dst, msg.SenderIP)
			r.reply(ctx, c, frame, err, dst, msg.TargetIP, rx, true)
		}
	case KindDADSolicitation:
		if owned.has(msg.TargetIP) {
			// Another host wants to configure our address: defend it with
			// an NA to all nodes (RFC 4861 §7.2.4), which fails its DAD.
			r.m.request(true)
			frame, err := UnsolicitedNA(r.mac, msg.TargetIP)
			r.reply(ctx, c, frame, err, allNodesMAC(), msg.TargetIP, rx, true)
		}
	case KindNeighborAdvertisement:
		if owned.has(msg.TargetIP) {
			r.conflict(msg.TargetIP, msg.LinkAddr(), ConflictNA)
		}
	}
}

// reply sends an answer built by the caller and records its latency.
func (r *Responder) reply(ctx context.Context, c frameConn, frame []byte, buildErr error, dst net.HardwareAddr, addr netip.Addr, rx time.Time, v6 bool) {
	if buildErr != nil {
		r.log.Warn("cannot build reply", "ip", addr.String(), "err", buildErr)
		return
	}
	if _, err := c.WriteTo(frame, &packet.Addr{HardwareAddr: dst}); err != nil {
		r.log.Warn("cannot send reply", "ip", addr.String(), "to", dst.String(), "err", err)
		return
	}
	r.m.reply(v6, time.Since(rx))
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("answered", "ip", addr.String(), "to", dst.String())
	}
}

// conflict counts and reports another host claiming an owned address.
func (r *Responder) conflict(addr netip.Addr, mac net.HardwareAddr, kind string) {
	r.m.conflict()
	if len(mac) != 6 {
		return
	}
	now := time.Now()
	key := conflictKey{addr: addr, mac: [6]byte(mac)}
	r.conflictMu.Lock()
	last, seen := r.lastConflict[key]
	report := !seen || now.Sub(last) >= conflictReportInterval
	if report {
		if len(r.lastConflict) >= 4096 {
			// Bound the memory a spoofing host can make us spend.
			clear(r.lastConflict)
		}
		r.lastConflict[key] = now
	}
	r.conflictMu.Unlock()
	if !report {
		return
	}
	r.log.Warn("another host claims an owned address", "ip", addr.String(), "mac", mac.String(), "kind", kind)
	if r.opts.OnConflict != nil {
		r.opts.OnConflict(Conflict{Addr: addr, MAC: slices.Clone(mac), Interface: r.ifName, Kind: kind})
	}
}

// Defend answers another host's claim on an owned address the way RFC 5227
// §2.4 (c) prescribes for an address that must stay put: it keeps the
// address and broadcasts one announcement — an ARP announcement (request
// form, sender and target the address), or an unsolicited Neighbor
// Advertisement with the override flag — so that hosts that took the other
// host's claim learn this MAC again. At most one defence per address goes
// out per DefendInterval; a host that keeps claiming the address is not
// fought frame for frame. It reports whether a frame was sent; an address
// that is not owned is never defended.
//
// The responder does not defend on its own: whether a claim comes from a
// foreign host or from another Herald node taking the address over is the
// caller's to judge.
func (r *Responder) Defend(addr netip.Addr) bool {
	addr = addr.Unmap()
	if r.opts.DefendInterval < 0 || r.closed.Load() || !r.owned.Load().has(addr) {
		return false
	}
	now := time.Now()
	r.conflictMu.Lock()
	last, seen := r.lastDefence[addr]
	if seen && now.Sub(last) < r.opts.DefendInterval {
		r.conflictMu.Unlock()
		return false
	}
	if len(r.lastDefence) >= 4096 {
		// Only owned addresses get here; forget the old entries of
		// addresses owned no more.
		owned := r.owned.Load()
		for a := range r.lastDefence {
			if !owned.has(a) {
				delete(r.lastDefence, a)
			}
		}
	}
	r.lastDefence[addr] = now
	r.conflictMu.Unlock()

	var frame []byte
	var err error
	var conn frameConn
	dst := allNodesMAC()
	if addr.Is4() {
		conn, dst = r.arpConn, broadcastMAC()
		frame, err = GratuitousARPRequest(r.mac, addr)
	} else {
		conn = r.ndpConn
		frame, err = UnsolicitedNA(r.mac, addr)
	}
	if err != nil {
		r.log.Warn("cannot build defence", "ip", addr.String(), "err", err)
		return false
	}
	if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: dst}); err != nil {
		r.log.Warn("cannot send defence", "ip", addr.String(), "err", err)
		return false
	}
	r.m.defence(addr.Is6())
	r.log.Info("defended an owned address another host claims", "ip", addr.String())
	return true
}

// Owned returns the owned addresses, sorted.
func (r *Responder) Owned() []netip.Addr {
	return slices.Clone(r.owned.Load().sorted)
}

// SetOwned replaces the owned set. Removed addresses stop being answered at
// once. The kernel filters of the families whose addresses changed are
// rebuilt and attached (see KernelFilters). For IPv6 addresses the
// solicited-node multicast groups are joined at the link layer
// (PACKET_ADD_MEMBERSHIP) and, when the interface has IPv6, with an MLD
// report so snooping switches forward the solicitations to this port; when
// many groups change at once this happens in the background, after
// SetOwned returns, and the addresses are answered meanwhile. Newly added
// addresses are announced (gratuitous ARP request and reply forms, or an
// unsolicited NA) as soon as Run is serving, GratuitousCount times
// GratuitousInterval apart, then every RefreshInterval while owned, all of
// it at most GratuitousRate frames per second. IPv4-mapped IPv6 addresses
// are treated as IPv4; invalid or zoned ones are ignored with a warning.
//
// The cost is proportional to the change, except for a pass over addrs and
// the filter compile (a few milliseconds at 10 000 addresses).
func (r *Responder) SetOwned(addrs []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()

	sorted := r.normalise(addrs)
	prev := r.owned.Load()
	added, removed := diffSorted(prev.sorted, sorted)
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	next := &ownedSet{sorted: sorted}
	if len(added)+len(removed) < len(sorted)/4 {
		next.m = maps.Clone(prev.m)
		for _, a := range removed {
			delete(next.m, a)
		}
		for _, a := range added {
			next.m[a] = struct{}{}
		}
	} else {
		next.m = make(map[netip.Addr]struct{}, len(sorted))
		for _, a := range sorted {
			next.m[a] = struct{}{}
		}
	}
	r.owned.Store(next)

	// Answer (and stop answering) first; memberships and announcements
	// follow.
	var v4, v6 bool
	for _, list := range [][]netip.Addr{added, removed} {
		for _, a := range list {
			v4, v6 = v4 || a.Is4(), v6 || a.Is6()
		}
	}
	if v4 {
		r.attachFilter(0, sorted)
	}
	if v6 {
		r.attachFilter(1, sorted)
	}
	for _, a := range added {
		if a.Is6() {
			r.wantGroupLocked(a, +1)
		}
	}
	for _, a := range removed {
		if a.Is6() {
			r.wantGroupLocked(a, -1)
		}
		r.unscheduleLocked(a)
	}
	r.kickGroupsLocked()
	now := time.Now()
	for _, a := range added {
		switch {
		case r.opts.GratuitousCount > 0:
			r.scheduleLocked(a, now)
			r.sched[a].fresh = true
		case r.opts.RefreshInterval > 0:
			r.scheduleLocked(a, now.Add(r.refreshPeriodLocked()))
		}
	}
	if len(added) > 0 {
		r.wakeAnnouncer()
	}
	r.logChanges("answering", added)
	r.logChanges("stopped answering", removed)
}

// maxLoggedChanges is the most addresses logged one by one at Info per
// SetOwned; beyond it one line gives the count (the addresses are logged at
// Debug).
const maxLoggedChanges = 16

func (r *Responder) logChanges(msg string, addrs []netip.Addr) {
	if len(addrs) <= maxLoggedChanges {
		for _, a := range addrs {
			r.log.Info(msg, "ip", a.String())
		}
		return
	}
	r.log.Info(msg, "addresses", len(addrs), "first", addrs[0].String(), "last", addrs[len(addrs)-1].String())
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, a := range addrs {
			r.log.Debug(msg, "ip", a.String())
		}
	}
}

// normalise returns the valid addresses of addrs, unmapped, sorted and
// without duplicates.
func (r *Responder) normalise(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			r.log.Warn("ignoring address that cannot be announced", "ip", a.String())
			continue
		}
		out = append(out, a)
	}
	cmp := func(a, b netip.Addr) int { return a.Compare(b) }
	if !slices.IsSortedFunc(out, cmp) {
		slices.SortFunc(out, cmp)
	}
	return slices.Compact(out)
}

// diffSorted returns the addresses of next not in prev and of prev not in
// next; both lists are sorted.
func diffSorted(prev, next []netip.Addr) (added, removed []netip.Addr) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next) || i < len(prev) && prev[i].Less(next[j]):
			removed = append(removed, prev[i])
			i++
		case i == len(prev) || next[j].Less(prev[i]):
			added = append(added, next[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}

// KernelFilters describes the kernel filters attached now, IPv4 (the ARP
// socket) first. The tests use it to check that a large owned set got an
// exact filter and not the coarse fallback; the agent may log or export it.
func (r *Responder) KernelFilters() []KernelFilter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return []KernelFilter{r.filters[0], r.filters[1]}
}

// minFilterBudget is the smallest program tried before the coarse filter.
const minFilterBudget = 256

// attachFilter compiles and attaches one family's filter (0: ARP, 1: NDP)
// for the owned set. If the kernel refuses it for lack of socket memory
// (net.core.optmem_max) a program half as long is tried, down to
// minFilterBudget, then the coarse filter: Go checks ownership of every
// frame anyway, so that only costs CPU. r.mu held.
func (r *Responder) attachFilter(i int, owned []netip.Addr) {
	if r.closed.Load() || r.arpConn == nil || r.ndpConn == nil {
		return
	}
	family, conn, compile, coarse := familyIPv4, r.arpConn, arpFilter, arpCoarseFilter
	if i == 1 {
		family, conn, compile, coarse = familyIPv6, r.ndpConn, ndpFilter, ndpCoarseFilter
	}
	prev := r.filters[i]
	start := maxFilterInstructions
	if r.budget[i] > 0 {
		start = min(start, 2*r.budget[i])
	}
	for budget := start; ; budget /= 2 {
		prog, info := compile(owned, budget)
		raw, err := assemble(prog)
		if err == nil {
			if slices.Equal(raw, r.attached[i]) {
				r.filters[i] = info.public(family)
				return
			}
			err = conn.SetBPF(raw)
		}
		if err == nil {
			r.attached[i] = raw
			r.filters[i] = info.public(family)
			if r.budget[i] > 0 || budget < maxFilterInstructions {
				r.budget[i] = budget
			}
			r.logFilter(prev, r.filters[i])
			return
		}
		if budget/2 >= minFilterBudget && (errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ENOBUFS)) {
			level := slog.LevelDebug
			if !r.refused[i] {
				r.refused[i], level = true, slog.LevelWarn
			}
			r.log.Log(context.Background(), level, "kernel refused the filter for lack of socket memory (net.core.optmem_max); trying a shorter one",
				"family", family, "instructions", len(prog), "err", err)
			continue
		}
		r.log.Warn("cannot attach kernel filter; falling back to the coarse filter", "family", family, "instructions", len(prog), "err", err)
		prog = coarse()
		raw, err = assemble(prog)
		if err == nil {
			err = conn.SetBPF(raw)
		}
		if err != nil {
			r.log.Error("cannot attach kernel filter", "family", family, "err", err)
			return
		}
		r.attached[i] = raw
		r.filters[i] = KernelFilter{Family: family, Owned: info.owned, Instructions: len(prog), Coarse: true,
			ExtraTargets: math.Inf(1), ExtraSenders: math.Inf(1)}
		return
	}
}

// logFilter says when the filter stops or starts being exact.
func (r *Responder) logFilter(prev, cur KernelFilter) {
	switch {
	case !cur.Exact && prev.Exact:
		r.log.Info("kernel filter lets some addresses that are not owned through; Go drops their frames",
			"family", cur.Family, "addresses", cur.Owned, "instructions", cur.Instructions,
			"extra_targets", cur.ExtraTargets, "extra_senders", cur.ExtraSenders)
	case cur.Exact && !prev.Exact:
		r.log.Info("kernel filter is exact again", "family", cur.Family, "addresses", cur.Owned, "instructions", cur.Instructions)
	}
}

func (i filterInfo) public(family string) KernelFilter {
	f := KernelFilter{Family: family, Owned: i.owned, Instructions: i.instructions, Exact: i.exact, Coarse: i.coarse,
		ExtraTargets: i.extraTargets}
	if family == familyIPv4 {
		f.ExtraSenders = i.extraSenders
	}
	return f
}

func setFilter(c frameConn, prog []bpf.Instruction) error {
	raw, err := assemble(prog)
	if err != nil {
		return err
	}
	if err := c.SetBPF(raw); err != nil {
		return fmt.Errorf("attach bpf filter: %w", err)
	}
	return nil
}

// announce sends the gratuitous frames for one address. It returns false
// only when the link is down, so the caller tries again later.
func (r *Responder) announce(addr netip.Addr) bool {
	if !r.owned.Load().has(addr) || r.closed.Load() {
		return true
	}
	var frames [][]byte
	var conn frameConn
	dst := allNodesMAC()
	if addr.Is4() {
		conn, dst = r.arpConn, broadcastMAC()
		req, err := GratuitousARPRequest(r.mac, addr)
		if err != nil {
			r.log.Warn("cannot build gratuitous ARP", "ip", addr.String(), "err", err)
			return true
		}
		rep, err := GratuitousARPReply(r.mac, addr)
		if err != nil {
			r.log.Warn("cannot build gratuitous ARP", "ip", addr.String(), "err", err)
			return true
		}
		frames = [][]byte{req, rep}
	} else {
		conn = r.ndpConn
		na, err := UnsolicitedNA(r.mac, addr)
		if err != nil {
			r.log.Warn("cannot build unsolicited NA", "ip", addr.String(), "err", err)
			return true
		}
		frames = [][]byte{na}
	}
	for _, f := range frames {
		if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: dst}); err != nil {
			if errors.Is(err, syscall.ENETDOWN) {
				r.log.Debug("link down; announcement postponed", "ip", addr.String())
				return false
			}
			r.log.Warn("cannot send announcement", "ip", addr.String(), "err", err)
			return true
		}
		r.m.gratuitous(addr.Is6())
	}
	r.log.Debug("announced", "ip", addr.String())
	return true
}
