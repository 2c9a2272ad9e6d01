package l2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
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
	// DefendInterval is the least time between two defences of one address
	// (see Defend). 0 means DefaultDefendInterval; a negative value makes
	// Defend send nothing.
	DefendInterval time.Duration
	// OnConflict is called when another MAC claims an owned address. It is
	// called from the receive goroutine, at most once per second per
	// address and MAC, and must not block.
	OnConflict func(Conflict)
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

func (s *ownedSet) has(a netip.Addr) bool {
	if s == nil {
		return false
	}
	_, ok := s.m[a]
	return ok
}

// announcement is the schedule of gratuitous frames for one owned address.
type announcement struct {
	sent int
	next time.Time
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

	// mu serialises SetOwned and guards groups and sched.
	mu     sync.Mutex
	groups map[netip.Addr]int // solicited-node group → owned addresses in it
	sched  map[netip.Addr]*announcement
	wake   chan struct{}

	conflictMu   sync.Mutex
	lastConflict map[conflictKey]time.Time
	// lastDefence is when each owned address was last defended.
	lastDefence map[netip.Addr]time.Time

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
	arpConn, err := listen(ifi, etherTypeARP)
	if err != nil {
		return nil, err
	}
	ndpConn, err := listen(ifi, etherTypeIPv6)
	if err != nil {
		_ = arpConn.Close()
		return nil, err
	}
	r.arpConn, r.ndpConn = arpConn, ndpConn
	// Unsolicited NAs from other hosts go to all-nodes; make sure the NIC
	// passes that group even when the kernel's IPv6 is off on the link.
	if err := ndpConn.JoinGroup(allNodesMAC()); err != nil {
		r.log.Debug("cannot join all-nodes multicast MAC", "err", err)
	}
	if mld, err := openMLD(ifi); err != nil {
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
	r := &Responder{
		ifName:       ifi.Name,
		ifi:          *ifi,
		mac:          slices.Clone(ifi.HardwareAddr),
		log:          opts.Logger.With("interface", ifi.Name),
		opts:         opts,
		m:            opts.Metrics.forInterface(ifi.Name),
		groups:       make(map[netip.Addr]int),
		sched:        make(map[netip.Addr]*announcement),
		wake:         make(chan struct{}, 1),
		lastConflict: make(map[conflictKey]time.Time),
		lastDefence:  make(map[netip.Addr]time.Time),
	}
	r.ifi.HardwareAddr = r.mac
	r.owned.Store(&ownedSet{m: map[netip.Addr]struct{}{}})
	return r
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
// once. For IPv6 addresses the solicited-node multicast groups are joined at
// the link layer (PACKET_ADD_MEMBERSHIP) and, when the interface has IPv6,
// with an MLD report so snooping switches forward the solicitations to this
// port. The kernel filters are rebuilt for the new set. Newly added
// addresses are announced (gratuitous ARP request and reply forms, or an
// unsolicited NA) as soon as Run is serving, GratuitousCount times
// GratuitousInterval apart, then every RefreshInterval while owned. IPv4-
// mapped IPv6 addresses are treated as IPv4; invalid or zoned ones are
// ignored with a warning.
func (r *Responder) SetOwned(addrs []netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()

	next := &ownedSet{m: make(map[netip.Addr]struct{}, len(addrs))}
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			r.log.Warn("ignoring address that cannot be announced", "ip", a.String())
			continue
		}
		if _, dup := next.m[a]; dup {
			continue
		}
		next.m[a] = struct{}{}
		next.sorted = append(next.sorted, a)
	}
	slices.SortFunc(next.sorted, func(a, b netip.Addr) int { return a.Compare(b) })
	prev := r.owned.Load()
	var added, removed []netip.Addr
	for _, a := range next.sorted {
		if !prev.has(a) {
			added = append(added, a)
		}
	}
	for _, a := range prev.sorted {
		if !next.has(a) {
			removed = append(removed, a)
		}
	}

	// Join before the filter lets solicitations through; leave after the
	// set no longer has the address.
	for _, a := range added {
		if a.Is6() {
			r.joinGroup(a)
		}
	}
	r.owned.Store(next)
	r.attachFilters(next.sorted)
	for _, a := range removed {
		if a.Is6() {
			r.leaveGroup(a)
		}
		delete(r.sched, a)
		r.log.Info("stopped answering", "ip", a.String())
	}
	now := time.Now()
	for _, a := range added {
		r.log.Info("answering", "ip", a.String())
		switch {
		case r.opts.GratuitousCount > 0:
			r.sched[a] = &announcement{next: now}
		case r.opts.RefreshInterval > 0:
			r.sched[a] = &announcement{next: now.Add(r.opts.RefreshInterval)}
		}
	}
	if len(added) > 0 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// attachFilters rebuilds and attaches both kernel filters. If the exact
// filter cannot be attached the coarse one is tried: Go checks ownership of
// every frame anyway, so that only costs CPU.
func (r *Responder) attachFilters(owned []netip.Addr) {
	if r.closed.Load() || r.arpConn == nil || r.ndpConn == nil {
		return
	}
	type target struct {
		family string
		conn   frameConn
		build  func([]netip.Addr) ([]bpf.Instruction, bool)
		coarse func() []bpf.Instruction
	}
	for _, t := range []target{
		{familyIPv4, r.arpConn, arpFilter, arpCoarseFilter},
		{familyIPv6, r.ndpConn, ndpFilter, ndpCoarseFilter},
	} {
		prog, exact := t.build(owned)
		if !exact {
			r.log.Info("owned set too large for an exact kernel filter; using the coarse filter and filtering in Go",
				"family", t.family, "addresses", len(owned))
		}
		err := setFilter(t.conn, prog)
		if err != nil && exact {
			r.log.Warn("cannot attach exact filter; trying coarse filter", "family", t.family, "err", err)
			err = setFilter(t.conn, t.coarse())
		}
		if err != nil {
			r.log.Error("cannot attach kernel filter", "family", t.family, "err", err)
		}
	}
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

// joinGroup joins addr's solicited-node group unless another owned address
// already did (groups are shared by addresses with the same low 24 bits).
func (r *Responder) joinGroup(addr netip.Addr) {
	group, mac, err := SolicitedNodeGroup(addr)
	if err != nil {
		r.log.Warn("no solicited-node group", "ip", addr.String(), "err", err)
		return
	}
	r.groups[group]++
	if r.groups[group] > 1 || r.closed.Load() || r.ndpConn == nil {
		return
	}
	if err := r.ndpConn.JoinGroup(mac); err != nil {
		r.log.Warn("cannot join solicited-node multicast MAC", "ip", addr.String(), "group", mac.String(), "err", err)
	}
	if r.mld != nil {
		if err := r.mld.join(group); err != nil {
			// Expected when the interface has IPv6 disabled; without it a
			// snooping switch may not forward solicitations to us.
			r.log.Debug("cannot send MLD join", "ip", addr.String(), "group", group.String(), "err", err)
		}
	}
}

func (r *Responder) leaveGroup(addr netip.Addr) {
	group, mac, err := SolicitedNodeGroup(addr)
	if err != nil || r.groups[group] == 0 {
		return
	}
	r.groups[group]--
	if r.groups[group] > 0 {
		return
	}
	delete(r.groups, group)
	if r.closed.Load() || r.ndpConn == nil {
		return
	}
	if err := r.ndpConn.LeaveGroup(mac); err != nil {
		r.log.Debug("cannot leave solicited-node multicast MAC", "ip", addr.String(), "err", err)
	}
	if r.mld != nil {
		if err := r.mld.leave(group); err != nil {
			r.log.Debug("cannot send MLD leave", "ip", addr.String(), "err", err)
		}
	}
}

// announceLoop sends the scheduled gratuitous frames until ctx is done.
func (r *Responder) announceLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		for _, a := range r.dueAnnouncements(now) {
			r.advance(a, now, r.announce(a))
		}
		t.Reset(r.nextAnnouncement(time.Now()))
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// dueAnnouncements lists the addresses whose announcement is due.
func (r *Responder) dueAnnouncements(now time.Time) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var due []netip.Addr
	for a, s := range r.sched {
		if !s.next.After(now) {
			due = append(due, a)
		}
	}
	return due
}

// advance moves an address's schedule past an announcement. One that could
// not go out because the link is down is retried at the burst interval
// without counting, so the whole burst is sent once the link is back.
func (r *Responder) advance(a netip.Addr, now time.Time, sent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sched[a]
	if !ok {
		return // removed meanwhile
	}
	if !sent {
		s.next = now.Add(r.opts.GratuitousInterval)
		return
	}
	s.sent++
	switch {
	case s.sent < r.opts.GratuitousCount:
		s.next = now.Add(r.opts.GratuitousInterval)
	case r.opts.RefreshInterval > 0:
		s.next = now.Add(r.opts.RefreshInterval)
	default:
		delete(r.sched, a)
	}
}

// nextAnnouncement is how long to sleep until the next announcement is due.
func (r *Responder) nextAnnouncement(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	wait := time.Hour
	for _, s := range r.sched {
		if d := s.next.Sub(now); d < wait {
			wait = max(d, 0)
		}
	}
	return wait
}

// restartBursts schedules a fresh gratuitous burst for every owned address:
// after the link was down, clients may have moved elsewhere or expired
// their entries, so the node announces again as if it had just taken over.
func (r *Responder) restartBursts() {
	if r.opts.GratuitousCount <= 0 {
		return
	}
	r.mu.Lock()
	now := time.Now()
	for _, a := range r.owned.Load().sorted {
		r.sched[a] = &announcement{next: now}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
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
