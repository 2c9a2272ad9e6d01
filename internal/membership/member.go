package membership

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
	"time"

	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults and limits of Config.
const (
	// DefaultInterval is the heartbeat interval when Config.Interval is 0.
	DefaultInterval = 50 * time.Millisecond
	// DefaultDeadAfter is the number of consecutive missed heartbeats after
	// which a peer is dead when Config.DeadAfter is 0.
	DefaultDeadAfter = 6
	// MinInterval and MaxInterval bound Config.Interval.
	MinInterval = 10 * time.Millisecond
	// MaxInterval is the largest interval the frame's 16-bit millisecond
	// field holds.
	MaxInterval = maxIntervalMS * time.Millisecond
	// MaxDeadAfter bounds Config.DeadAfter.
	MaxDeadAfter = 100
	// LeaveRepeats is how many leaving heartbeats Leave sends, so that
	// one lost frame does not hide the departure.
	LeaveRepeats = 3
	// StateRepeats is how many heartbeats carry the full state after it
	// changed: the one sent at once and the next StateRepeats-1 periodic
	// ones, so that a lost frame delays a change by one interval, as
	// when every heartbeat carried it, rather than by a request's round
	// trip.
	StateRepeats = 3
	// maxPeers bounds the peer table of one segment (dead peers are kept
	// for replay protection and evicted oldest first when it is full).
	maxPeers = 1024
	// readBufLen exceeds any frame the kernel can hand a raw socket on a
	// jumbo-frame link, so an oversized frame is seen whole (and dropped
	// as malformed) rather than truncated into something else.
	readBufLen = 9216 + ethHeaderLen + 4
	// maxDrain bounds the frames read at one wake-up: 100 peers' beats
	// and a burst of full states fit many times over, and a flood of
	// forged frames cannot hold the heartbeat loop past its next duty.
	maxDrain = 4096
	// logEvery rate-limits repeated warnings of one kind.
	logEvery = 10 * time.Second
	// recvBuffer is the socket receive buffer asked for. A node joining a
	// segment asks every peer for its full state, and the answers come in
	// a burst: 100 peers with 1000 addresses each send 400 frames, which
	// take about 0.9 MB of buffer (the kernel counts ~2.3 KB per frame),
	// four times the usual default. Frames dropped for want of room are
	// counted (herald_membership_socket_drops_total).
	recvBuffer = 4 << 20
)

// Config configures a Member.
type Config struct {
	// Interface is the announcing interface's name (required).
	Interface string
	// Node is this node's name (required; at most MaxNodeNameLen
	// printable ASCII bytes).
	Node string
	// ClusterID identifies the cluster; frames of other clusters are
	// dropped (required).
	ClusterID string
	// Keys are the heartbeat keys from the cluster Secret (required):
	// heartbeats are signed with every one, and a peer's are accepted when
	// signed with any one. Change them at run time with SetKeys.
	Keys *Keyring
	// Interval between heartbeats (default DefaultInterval).
	Interval time.Duration
	// DeadAfter is how many consecutive heartbeats of a peer must be
	// missing before it is dead on this segment (default
	// DefaultDeadAfter).
	DeadAfter int
	// Incarnation identifies this run (default: the current time in Unix
	// nanoseconds). It must grow across restarts: peers remember the
	// newest incarnation of each node and drop older ones as replays, so
	// an agent whose clock went back before its previous start is ignored
	// by peers that saw that start until they restart.
	Incarnation uint64
	// MaxPayload is the largest Ethernet payload a frame may use (default:
	// the interface MTU, capped at MaxPayload).
	MaxPayload int
	// Registerer receives the herald_membership_* metrics (nil: not
	// registered). Several Members may share one.
	Registerer prometheus.Registerer
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

// Snapshot is one consistent view of a segment, as a Member sees it.
type Snapshot struct {
	// Version increases with every change; a later snapshot has a larger
	// one.
	Version uint64
	// Changed is when the Member published this version: when it noticed
	// the latest change the snapshot shows (a peer joined, died, started
	// leaving or changed its lists). Zero before the first change.
	Changed time.Time
	// Interface and Node are the Member's own.
	Interface string
	// Node is this node's name.
	Node string
	// Incarnation is this Member's incarnation.
	Incarnation uint64
	// Settled reports that the Member has listened for DeadAfter intervals
	// plus one (plus slack), so every live peer has been heard and
	// verified, and that it knows the state of every peer it verified (it
	// waits up to as long again for that, asking for the states). Until
	// then the peer list may be incomplete, and the caller should neither
	// start claims nor, ideally, advertise eligibility (so that peers keep
	// serving while this node warms up).
	Settled bool
	// Leaving reports that Leave was called.
	Leaving bool
	// Eligible and Claims are this node's own, as last set (normalised).
	// Like every peer's lists, they are shared by the snapshots that show
	// the same state: read them, never modify them.
	Eligible []netip.Addr
	// Claims are this node's claims, as last set.
	Claims []netip.Addr
	// Peers are the live peers, sorted by node name.
	Peers []Peer
	// Fingerprints are the fingerprints of this Member's keys, in its
	// keyring's order.
	Fingerprints []string
	// Mismatched are the senders heard recently whose heartbeats carry
	// this cluster's hash but fail authentication (most likely Herald
	// agents with another key), sorted by node name. A report only: they
	// are never peers.
	Mismatched []Mismatch
}

// Member is this node's presence on one segment: it sends heartbeats on
// one interface and tracks the peers it hears there. Create it with New,
// run it with Run, and stop it by cancelling Run's context (or Close).
type Member struct {
	cfg Config
	log *slog.Logger
	// codec holds the current keys; SetKeys swaps it while frames are
	// being sent and received.
	codec atomic.Pointer[Codec]
	// wake and sock receive the frames that need this Member at once
	// and the plain heartbeats (see wakeFilter); sock also sends.
	wake *packet.Conn
	sock *frameSocket
	// recvMu serialises reading: frames of the wake socket are handled
	// only after what waits in sock, which arrived before them, so that
	// every peer's frames are handled in the order they were sent.
	recvMu sync.Mutex
	// lastDrain is when sock was last read (guarded by recvMu): frames
	// read later arrived after it.
	lastDrain  time.Time
	hw         net.HardwareAddr
	maxPayload int
	met        *ifaceMetrics
	limiter    *logLimiter
	// trigger asks the sender for an immediate heartbeat (claims changed,
	// a challenge to send or to answer).
	trigger chan struct{}
	// done is closed by Close.
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	updates   chan Snapshot

	// mismatchLog limits mismatch logs across all senders, on top of the
	// per-sender limit, since an evicted sender's name may come back.
	mismatchLog *logLimiter

	// sendMu serialises heartbeats so that sequence numbers leave in order.
	sendMu   sync.Mutex
	seq      uint64
	lastSend time.Time
	// beat is the buffer the heartbeats without the full state are
	// encoded into, beatFrames its one-frame list: reused, so that an
	// idle heartbeat allocates nothing whatever the state's size.
	beat       []byte
	beatFrames [1][]byte

	mu sync.Mutex
	// lastCheck is when expire last ran; a much longer gap means this
	// process stalled.
	lastCheck time.Time
	running   bool
	settleAt  time.Time
	settled   bool
	leaving   bool
	eligible  []netip.Addr
	claims    []netip.Addr
	// digest is StateDigest(eligible, claims).
	digest Digest
	// fullRepeats is how many more heartbeats carry the full state
	// because it changed; fullPending says a peer asked for it (and
	// lastFull is when it last went out).
	fullRepeats int
	fullPending bool
	lastFull    time.Time
	table       *peerTable
	// echoes are the tokens of challenging peers this node echoes.
	echoes *echoTable
	// mismatches are senders failing authentication; mismatchDirty says
	// their set changed since mismatchPublished, when a snapshot was last
	// published for such a change (at most one per interval, since the
	// frames that change it are unauthenticated).
	mismatches        *mismatchTable
	mismatchDirty     bool
	mismatchPublished time.Time
	closed            bool
	version           uint64
	// published is when version was published (Snapshot.Changed).
	published time.Time
}

// New validates cfg and opens a raw AF_PACKET socket on the interface,
// bound to EtherType so the kernel passes only heartbeat frames. The socket
// lives in the network namespace of the calling thread. It needs
// CAP_NET_RAW.
func New(cfg Config) (*Member, error) {
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = uint64(time.Now().UnixNano())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.Interface == "":
		return nil, errors.New("membership: no interface")
	case !validName(cfg.Node):
		return nil, fmt.Errorf("membership: node name %q: want 1..%d printable ASCII bytes", cfg.Node, MaxNodeNameLen)
	case cfg.ClusterID == "":
		return nil, errors.New("membership: no cluster ID")
	case cfg.Interval < MinInterval || cfg.Interval > MaxInterval || cfg.Interval%time.Millisecond != 0:
		return nil, fmt.Errorf("membership: interval %v: want whole milliseconds in %v..%v", cfg.Interval, MinInterval, MaxInterval)
	case cfg.DeadAfter < 1 || cfg.DeadAfter > MaxDeadAfter:
		return nil, fmt.Errorf("membership: DeadAfter %d: want 1..%d", cfg.DeadAfter, MaxDeadAfter)
	case cfg.Keys.Len() == 0:
		return nil, errors.New("membership: no heartbeat keys")
	}
	codec, err := NewCodec(cfg.ClusterID, cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("membership: interface %s: %w", cfg.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("membership: interface %s has no Ethernet address", cfg.Interface)
	}
	maxPayload := cfg.MaxPayload
	if maxPayload == 0 {
		maxPayload = min(ifi.MTU, MaxPayload)
	}
	if maxPayload > MaxPayload || maxPayload > ifi.MTU {
		return nil, fmt.Errorf("membership: payload limit %d exceeds the MTU of %s (%d) or %d", maxPayload, cfg.Interface, ifi.MTU, MaxPayload)
	}
	mets, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	log := cfg.Logger.With("interface", cfg.Interface, "node", cfg.Node)

	m := &Member{
		cfg:         cfg,
		log:         log,
		hw:          slices.Clone(ifi.HardwareAddr),
		maxPayload:  maxPayload,
		met:         mets.forInterface(cfg.Interface),
		limiter:     newLogLimiter(),
		mismatchLog: newLogLimiter(),
		trigger:     make(chan struct{}, 1),
		done:        make(chan struct{}),
		updates:     make(chan Snapshot, 1),
		digest:      emptyDigest,
		table:       newPeerTable(cfg.Node, cfg.Incarnation, cfg.DeadAfter, maxPeers),
		echoes:      newEchoTable(maxPeers),
		mismatches:  newMismatchTable(maxMismatches, time.Duration(cfg.DeadAfter)*cfg.Interval+cfg.Interval/2),
	}
	m.codec.Store(codec)
	// A heartbeat with no addresses must fit, or nothing will.
	if _, err := m.fits(nil, nil); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	// Two sockets, split by wakeFilter: frames that need the receiver
	// at once, read as they come, and plain heartbeats, read when the
	// Member wakes anyway.
	wake, err := listen(ifi, true, log)
	if err != nil {
		return nil, fmt.Errorf("membership: on %s: %w", cfg.Interface, err)
	}
	beat, err := listen(ifi, false, log)
	if err != nil {
		_ = wake.Close()
		return nil, fmt.Errorf("membership: on %s: %w", cfg.Interface, err)
	}
	sock, err := newFrameSocket(beat, ifi.Index, EtherType, GroupAddr())
	if err != nil {
		_ = wake.Close()
		_ = beat.Close()
		return nil, fmt.Errorf("membership: on %s: %w", cfg.Interface, err)
	}
	m.wake, m.sock = wake, sock
	m.met.setKeys(nil, codec.Keys())
	return m, nil
}

// listen opens a heartbeat socket on ifi that keeps the frames of the
// wake or the beat queue (see wakeFilter).
func listen(ifi *net.Interface, wake bool, log *slog.Logger) (*packet.Conn, error) {
	filter, err := wakeFilter(wake)
	if err != nil {
		return nil, err
	}
	// The filter is attached before the socket is bound, so that no
	// frame reaches both queues.
	conn, err := packet.Listen(ifi, packet.Raw, EtherType, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	// Heartbeats go to a group address: a NIC that filters multicast
	// passes them only once the interface has joined it.
	if err := conn.JoinGroup(GroupAddr()); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("join the heartbeat group %s: %w", GroupAddr(), err)
	}
	if got, err := setReceiveBuffer(conn, recvBuffer); err != nil {
		log.Debug("cannot set the socket receive buffer", "want", recvBuffer, "got", got, "err", err)
	}
	if err := ignoreOutgoing(conn); err != nil {
		// Only an optimisation (and older kernels lack it): frames of
		// other sockets on this host are then filtered by name.
		log.Debug("cannot ignore outgoing frames", "err", err)
	}
	return conn, nil
}

// encode fills in this Member's identity and encodes hb with the current
// keys.
func (m *Member) encode(hb Heartbeat) ([][]byte, error) {
	hb.Node, hb.Incarnation, hb.Interval = m.cfg.Node, m.cfg.Incarnation, m.cfg.Interval
	return m.codec.Load().Encode(m.hw, hb, m.maxPayload)
}

// fits checks that a full heartbeat of these lists can be sent whatever
// else it carries: signed with MaxKeys keys (SetKeys may grow the ring),
// echoing MaxEchoes tokens and requesting MaxRequests, within MaxParts
// frames. It returns the lists' entries.
func (m *Member) fits(eligible, claims []netip.Addr) ([]entry, error) {
	es, err := entries(eligible, claims)
	if err != nil {
		return nil, err
	}
	_, err = split(es, MaxKeys, len(m.cfg.Node), MaxEchoes, MaxRequests, m.maxPayload)
	return es, err
}

// HardwareAddr is the interface's Ethernet address.
func (m *Member) HardwareAddr() net.HardwareAddr { return slices.Clone(m.hw) }

// Incarnation is this Member's incarnation.
func (m *Member) Incarnation() uint64 { return m.cfg.Incarnation }

// Updates delivers a Snapshot after every change: a peer joins, dies,
// restarts, starts leaving or changes its eligibility, claims or keys, this
// Member becomes settled or gets new keys (SetKeys), or the set of
// mismatched senders (node and fingerprints) changes — the latter at most
// once per interval, since unauthenticated frames drive it. The channel
// holds only the latest snapshot, so a slow reader skips intermediate ones
// but never misses the current state and never blocks the Member. It is
// never closed.
func (m *Member) Updates() <-chan Snapshot { return m.updates }

// Snapshot returns the current view.
func (m *Member) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshotLocked()
}

func (m *Member) snapshotLocked() Snapshot {
	return Snapshot{
		Version:      m.version,
		Changed:      m.published,
		Interface:    m.cfg.Interface,
		Node:         m.cfg.Node,
		Incarnation:  m.cfg.Incarnation,
		Settled:      m.settled,
		Leaving:      m.leaving,
		Eligible:     m.eligible,
		Claims:       m.claims,
		Peers:        m.table.live(),
		Fingerprints: m.codec.Load().Keys().Fingerprints(),
		Mismatched:   m.mismatches.list(),
	}
}

// publishLocked records a change and offers the new snapshot, replacing
// one the caller has not read yet. It runs under mu, so snapshots are
// offered in Version order.
func (m *Member) publishLocked() {
	// Every snapshot carries the current mismatch set.
	m.mismatchDirty = false
	m.mismatchPublished = time.Now()
	m.published = m.mismatchPublished
	m.version++
	s := m.snapshotLocked()
	m.met.peers.Set(float64(len(s.Peers)))
	select {
	case m.updates <- s:
		return
	default:
	}
	select {
	case <-m.updates:
	default:
	}
	select {
	case m.updates <- s:
	default:
	}
}

// SetState sets the IPs this node is eligible to announce on this segment
// and the IPs it claims; heartbeats carry their digest from now on. When
// they change, a heartbeat carrying them in full goes out at once
// (rate-limited to one per tenth of an interval, or per 10 ms if that is
// shorter), which is what makes hand-overs take one frame's transit rather
// than an interval, and the next StateRepeats-1 heartbeats carry them too.
// Setting the same state again costs nothing. It fails, changing nothing,
// if an address is invalid or the lists need more than MaxParts frames.
func (m *Member) SetState(eligible, claims []netip.Addr) error {
	m.mu.Lock()
	same := slices.Equal(eligible, m.eligible) && slices.Equal(claims, m.claims)
	m.mu.Unlock()
	if same {
		// The lists held are canonical, so equal lists are too: the
		// state did not change (the common case of a periodic re-plan),
		// and nothing is copied, sorted or hashed.
		return nil
	}
	e, err := canonical(eligible)
	if err != nil {
		return fmt.Errorf("set eligible: %w", err)
	}
	c, err := canonical(claims)
	if err != nil {
		return fmt.Errorf("set claims: %w", err)
	}
	m.mu.Lock()
	same = slices.Equal(e, m.eligible) && slices.Equal(c, m.claims)
	m.mu.Unlock()
	if same {
		return nil
	}
	es, err := m.fits(e, c)
	if err != nil {
		return fmt.Errorf("set state: %w", err)
	}
	d := digestEntries(es)
	m.mu.Lock()
	m.eligible, m.claims, m.digest = e, c, d
	m.fullRepeats = StateRepeats
	m.mu.Unlock()
	select {
	case m.trigger <- struct{}{}:
	default:
	}
	return nil
}

// Run sends heartbeats and receives peers' until ctx is done, then closes
// the socket and returns nil. It returns an error at once if the Member is
// closed or already running.
func (m *Member) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("membership: Run called twice")
	}
	select {
	case <-m.done:
		m.mu.Unlock()
		return errors.New("membership: Run after Close")
	default:
	}
	m.running = true
	now := time.Now()
	m.lastCheck = now
	m.settleAt = now.Add(settleAfter(m.cfg.Interval, m.cfg.DeadAfter))
	m.mu.Unlock()

	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		m.receive()
	}()
	defer func() {
		_ = m.Close()
		<-recvDone
	}()

	m.log.Info("membership started", "incarnation", m.cfg.Incarnation, "interval", m.cfg.Interval, "deadAfter", m.cfg.DeadAfter, "mac", m.hw.String(), "keys", m.codec.Load().Keys().Fingerprints())
	_ = m.send()
	beat := time.NewTicker(m.cfg.Interval)
	defer beat.Stop()
	// Peers' plain heartbeats are read when this loop wakes anyway: at
	// each beat and at each death check, just before the verdict; nothing
	// wakes per plain heartbeat (see wakeFilter and frameSocket).
	// Deaths are checked when the earliest one could happen (a peer's
	// deadline, the settle time, a mismatch's expiry), and at least every
	// maxCheckSleep: an idle segment costs a few wake-ups per second, not
	// one every few milliseconds, and a death is still declared on time.
	buf := make([]byte, readBufLen)
	due := time.Now().Add(checkEvery(m.cfg.Interval))
	check := time.NewTimer(time.Until(due))
	defer check.Stop()
	minGap := triggerGap(m.cfg.Interval)
	var deferred <-chan time.Time // pending rate-limited triggered send
	for {
		select {
		case <-ctx.Done():
			m.log.Info("membership stopped")
			return nil
		case <-m.done:
			return nil
		case <-beat.C:
			now := time.Now()
			m.drain(buf, now)
			_ = m.send()
			// A frame read since the last check may have brought an
			// earlier duty (a key mismatch to publish).
			m.mu.Lock()
			next := m.nextCheckLocked(now)
			m.mu.Unlock()
			if next.Before(due) {
				due = next
				check.Reset(max(due.Sub(now), checkEvery(m.cfg.Interval)))
			}
		case <-m.trigger:
			if deferred != nil {
				continue
			}
			m.sendMu.Lock()
			wait := minGap - time.Since(m.lastSend)
			m.sendMu.Unlock()
			if wait > 0 {
				deferred = time.After(wait)
				continue
			}
			_ = m.send()
		case <-deferred:
			deferred = nil
			_ = m.send()
		case <-check.C:
			// The timer's own timestamp is when it fired, not when this
			// goroutine got to run: judge by the clock now.
			now := time.Now()
			if m.drain(buf, now) {
				m.kick()
			}
			m.countSocketDrops(now)
			due = m.expire(now, due)
			check.Reset(max(due.Sub(now), checkEvery(m.cfg.Interval)))
		}
	}
}

// settleAfter is how long a starting Member listens before it is
// settled: DeadAfter intervals plus half an interval, as for a death, so
// that every live peer's heartbeats had DeadAfter chances to arrive, plus
// one interval for the challenge round trip. The Member challenges from
// its first heartbeat and peers echo at once (both frames go through the
// wake socket), so a live peer is verified by the first of its heartbeats
// that arrives after it heard a challenge; the extra interval makes sure
// that the DeadAfter chances all come after that (a round trip takes a few
// milliseconds; an interval also covers a first challenge that was lost).
func settleAfter(interval time.Duration, deadAfter int) time.Duration {
	return time.Duration(deadAfter+1)*interval + interval/2
}

// triggerGap is the least time between two heartbeats sent because claims
// changed: a tenth of an interval, at most 10 ms so that hand-overs stay
// fast with long intervals, at least 1 ms so that flapping claims cannot
// flood the segment.
func triggerGap(interval time.Duration) time.Duration {
	return min(max(interval/10, time.Millisecond), 10*time.Millisecond)
}

// answerGap is the least time between a full state sent and one sent at
// once because a peer asked for it: a quarter of an interval (at least
// triggerGap). Requests within it are answered by the next heartbeat, so
// that a node joining a large segment, or many asking at once, cost each
// peer at most about four full states per interval, however many ask.
func answerGap(interval time.Duration) time.Duration {
	return max(interval/4, triggerGap(interval))
}

// send sends one heartbeat (all its parts). It fails only if no frame
// could be sent.
//
// A heartbeat carries the full state only when it changed (StateRepeats
// heartbeats) or a peer asked for it; any other is one small frame with
// the state's digest, encoded into a reused buffer: its cost does not
// depend on the number of addresses.
func (m *Member) send() error {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	now := time.Now()
	seq := m.seq + 1
	m.mu.Lock()
	hb := Heartbeat{
		Node: m.cfg.Node, Incarnation: m.cfg.Incarnation, Interval: m.cfg.Interval,
		Sequence: seq, Leaving: m.leaving, Digest: m.digest,
		// Until settled we may not have heard every peer yet, and a peer
		// heard but unverified is not live: asking now gets it verified
		// by its next frame.
		Challenge: !m.settled || m.table.challenging(),
		Echoes:    m.echoes.take(seq),
		Requests:  m.table.requests(now),
	}
	reason := fullNone
	switch {
	case m.fullRepeats > 0:
		m.fullRepeats--
		reason = fullChange
	case m.fullPending:
		reason = fullRequest
	}
	if reason != fullNone {
		m.fullPending = false
		m.lastFull = now
		hb.Full, hb.Eligible, hb.Claims = true, m.eligible, m.claims
	}
	stale := m.table.stale()
	m.mu.Unlock()
	m.met.stale.Set(float64(stale))

	codec := m.codec.Load()
	var frames [][]byte
	var err error
	if hb.Full {
		frames, err = codec.Encode(m.hw, hb, m.maxPayload)
	} else {
		m.beat, err = codec.appendBeat(m.beat[:0], m.hw, &hb, m.maxPayload)
		m.beatFrames[0] = m.beat
		frames = m.beatFrames[:]
	}
	if err != nil {
		// SetState validated the lists, so this is a bug, not a condition.
		m.log.Error("cannot encode heartbeat", "err", err)
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	m.seq++
	m.lastSend = now
	if reason != fullNone {
		m.met.fullSent[reason].Inc()
	}
	if len(hb.Requests) > 0 {
		m.met.requestsSent.Add(float64(len(hb.Requests)))
	}
	var lastErr error
	sent := 0
	for _, f := range frames {
		if err := m.sock.send(f); err != nil {
			lastErr = err
			m.met.sendErrors.Inc()
			continue
		}
		sent++
		m.met.sent.Inc()
		m.met.bytesSent.Add(float64(len(f)))
	}
	if sent == 0 {
		if m.limiter.allow("send", time.Now()) {
			m.log.Warn("cannot send heartbeat", "err", lastErr)
		}
		return fmt.Errorf("send heartbeat: %w", lastErr)
	}
	return nil
}

// countSocketDrops counts and reports the frames the kernel dropped for
// want of room in either socket's receive buffer since the last call.
func (m *Member) countSocketDrops(now time.Time) {
	var n uint32
	if d, err := m.sock.drops(); err == nil {
		n += d
	}
	if st, err := m.wake.Stats(); err == nil {
		n += st.Drops
	}
	if n == 0 {
		return
	}
	m.met.socketDrops.Add(float64(n))
	if m.limiter.allow("socket-drops", now) {
		m.log.Warn("heartbeat frames dropped by the kernel: the socket's receive buffer was full", "frames", n)
	}
}

// receive reads the wake socket until it is closed, and handles each
// frame as it arrives, after the plain heartbeats queued before it.
func (m *Member) receive() {
	buf := make([]byte, readBufLen)
	beatBuf := make([]byte, readBufLen)
	for {
		n, _, err := m.wake.ReadFrom(buf)
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// The kernel reports ENETDOWN once when the link goes down;
			// the socket keeps working when it comes back.
			if m.limiter.allow("recv", time.Now()) {
				m.log.Warn("receive failed", "err", err)
			}
			select {
			case <-m.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		m.recvMu.Lock()
		send := m.drainLocked(beatBuf, now)
		if m.handle(buf[:n], now) {
			send = true
		}
		m.recvMu.Unlock()
		if send {
			m.kick()
		}
	}
}

// drain reads and handles every frame queued in the beat socket, each at
// its arrival time, and reports whether one of them asks for a heartbeat
// at once (a challenge to answer, a peer to verify, a request for our
// state: those normally come through the wake socket). now is the time of
// the wake-up that drains.
func (m *Member) drain(buf []byte, now time.Time) (sendNow bool) {
	m.recvMu.Lock()
	defer m.recvMu.Unlock()
	return m.drainLocked(buf, now)
}

// drainLocked is drain with recvMu held.
func (m *Member) drainLocked(buf []byte, now time.Time) (sendNow bool) {
	floor := m.lastDrain
	m.lastDrain = now
	// Bounded: a flood cannot keep the loop here past its next duty;
	// what is left is read at the next wake-up, an interval later.
	for range maxDrain {
		n, stamp, err := m.sock.recv(buf)
		switch {
		case errors.Is(err, errNoFrame):
			return sendNow
		case err != nil:
			// The kernel reports ENETDOWN once when the link goes
			// down; the socket keeps working when it comes back.
			if !errors.Is(err, net.ErrClosed) && m.limiter.allow("recv", now) {
				m.log.Warn("receive failed", "err", err)
			}
			return sendNow
		}
		if m.handle(buf[:n], arrival(now, stamp, floor)) {
			sendNow = true
		}
	}
	return sendNow
}

// arrival is when a frame read at now arrived, by the kernel's timestamp
// stamp (wall clock), as a time on now's monotonic clock. The frame was
// queued after the previous drain began (floor), so the result is kept
// between floor and now: a step of the wall clock can move a frame only
// within that window, never make a live peer look silent. Without a
// timestamp (or a previous drain) the frame counts as arriving now.
func arrival(now, stamp, floor time.Time) time.Time {
	if stamp.IsZero() {
		return now
	}
	age := now.Sub(stamp) // by the wall clock: stamp has no monotonic reading
	if !floor.IsZero() {
		age = min(age, now.Sub(floor))
	}
	return now.Add(-max(age, 0))
}

// handle decodes and applies one frame received at now, and reports
// whether it asks for a heartbeat at once.
func (m *Member) handle(frame []byte, now time.Time) (sendNow bool) {
	f, err := m.codec.Load().Decode(frame)
	if err != nil {
		var ae *AuthError
		switch {
		case errors.As(err, &ae) && ae.Node != "":
			m.mismatch(ae, now)
		case errors.Is(err, ErrAuth):
			m.drop(dropAuth, err, frameSource(frame))
		case errors.Is(err, ErrForeignCluster):
			m.drop(dropCluster, err, frameSource(frame))
		default:
			m.drop(dropMalformed, err, frameSource(frame))
		}
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	obs := m.table.observe(&f, now)
	switch obs.drop {
	case dropNone:
	case dropSelf:
		if obs.selfIncarnation != m.cfg.Incarnation && m.limiter.allow("self", now) {
			m.log.Warn("another agent sends heartbeats with this node's name", "incarnation", obs.selfIncarnation, "mac", f.Source.String())
		}
		return false
	default:
		m.drop(obs.drop, nil, f.Source.String())
		return false
	}
	m.met.received.Inc()
	if obs.unverified {
		m.met.unverified.Inc()
	}
	// A peer that just became heard-but-unverified is challenged at once,
	// and a peer's new challenge is answered at once: a restarted node
	// (either side) is verified within a frame's transit or two.
	send := obs.challenge || obs.request
	if f.Challenge && m.echoes.challenged(f.Node, f.Incarnation) {
		send = true
	}
	// A peer asking for our state (this run's: a request names our
	// incarnation) gets it at once, unless a full state went out less
	// than answerGap ago: then with the next heartbeat.
	if !m.fullPending && slices.Contains(f.Requests, m.table.token) {
		m.fullPending = true
		if now.Sub(m.lastFull) >= answerGap(m.cfg.Interval) {
			send = true
		}
	}
	if obs.badState && m.limiter.allow("bad-state", now) {
		m.log.Error("full state of a peer does not match its digest; asking again", "peer", f.Node, "incarnation", f.Incarnation, "digest", f.Digest.String())
	}
	switch {
	case obs.joined:
		m.log.Info("peer joined", "peer", f.Node, "incarnation", f.Incarnation, "mac", f.Source.String(), "leaving", f.Leaving, "keys", fingerprints(f.KeyIDs))
	case obs.restarted:
		m.log.Info("peer restarted", "peer", f.Node, "incarnation", f.Incarnation)
	}
	if obs.challenge {
		m.log.Debug("peer heard, challenging it before it counts as live", "peer", f.Node, "incarnation", f.Incarnation)
	}
	if obs.changed {
		m.publishLocked()
	}
	return send
}

// kick asks Run for a heartbeat now (rate-limited there by triggerGap).
func (m *Member) kick() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// mismatch records a heartbeat of this cluster that failed
// authentication: it is counted (dropped "auth" and key_mismatch_total
// per claimed name), its sender is listed in Snapshot.Mismatched, and it is
// logged at most once per logEvery per sender. It never touches the peer
// table: nothing in the frame is trusted.
func (m *Member) mismatch(ae *AuthError, now time.Time) {
	m.met.dropped[dropAuth].Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.met.keyMismatch(ae.Node).Inc()
	e, changed := m.mismatches.observe(ae.Node, ae.Source, ae.KeyIDs, now)
	if changed {
		m.mismatchDirty = true
		m.publishMismatchLocked(now)
	}
	if now.Sub(e.logged) >= logEvery && m.mismatchLog.allowN("mismatch", now, maxMismatches) {
		e.logged = now
		msg := "heartbeats of a Herald agent with other keys: check that every agent has loaded the same heartbeat Secret"
		if ae.CommonKey {
			msg = "heartbeat with a bad MAC for a key we hold: a corrupted or forged frame, or a different key with the same fingerprint"
		}
		m.log.Warn(msg, "peer", ae.Node, "mac", ae.Source.String(), "theirKeys", ae.Fingerprints(), "ourKeys", m.codec.Load().Keys().Fingerprints())
	}
}

// publishMismatchLocked publishes a pending change of the mismatch set,
// at most once per interval: the frames that change it are
// unauthenticated, so anyone could otherwise make every frame a new
// snapshot for the agent to re-plan on.
func (m *Member) publishMismatchLocked(now time.Time) {
	if !m.mismatchDirty || now.Sub(m.mismatchPublished) < m.cfg.Interval {
		return
	}
	m.publishLocked()
}

// frameSource renders a frame's Ethernet source for logs, if it has one.
func frameSource(frame []byte) string {
	if len(frame) < 12 {
		return ""
	}
	return net.HardwareAddr(frame[6:12]).String()
}

// drop counts a dropped frame and logs it, rate-limited per reason.
func (m *Member) drop(reason dropReason, err error, source string) {
	if c, ok := m.met.dropped[reason]; ok {
		c.Inc()
	}
	if m.limiter.allow("drop-"+string(reason), time.Now()) {
		attrs := []any{"reason", string(reason), "mac", source}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		if reason == dropCluster {
			m.log.Debug("heartbeat dropped", attrs...)
			return
		}
		m.log.Warn("heartbeat dropped", attrs...)
	}
}

// checkEvery is the shortest time between two death checks: a tenth of an
// interval (what a death may be late by, at most).
func checkEvery(interval time.Duration) time.Duration {
	return max(interval/10, time.Millisecond)
}

// maxCheckSleep is the longest time between two death checks: a stall is
// noticed within it. A peer first heard after a check cannot die before
// the next one (its first deadline is DeadAfter intervals after it was
// heard), so while peers are live the checks follow their deadlines: about
// one per DeadAfter intervals, not one per interval.
func maxCheckSleep(interval time.Duration, deadAfter int) time.Duration {
	return time.Duration(deadAfter) * interval
}

// expire declares silent peers dead and notices when the Member settles.
//
// It guards against two ways a busy host would otherwise see every peer
// die at once (and then claim every IP): Run reads the frames still queued
// in the socket, at their arrival times, just before; and if this
// goroutine ran much later than its period, the process stalled, and the
// stall is credited to every peer (peerTable.pause) in case frames were
// lost meanwhile.
//
// due is when this check was scheduled; it returns when the next one is.
func (m *Member) expire(now, due time.Time) (next time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	period := checkEvery(m.cfg.Interval)
	if late := now.Sub(due); late > max(m.cfg.Interval/2, 3*period) {
		m.table.pause(late)
		m.mismatches.pause(late)
		if m.limiter.allow("stall", now) {
			m.log.Warn("membership stalled; not counting the stall against peers", "stall", late.Round(time.Millisecond))
		}
	}
	m.lastCheck = now
	defer func() { next = m.nextCheckLocked(now) }()
	died := m.table.expire(now)
	for _, d := range died {
		m.met.deaths.Inc()
		m.log.Warn("peer dead on this segment", "peer", d, "deadAfter", m.cfg.DeadAfter)
	}
	// Settled also waits, for at most settleAfter more, for the state of
	// every verified peer: a peer missing from the live peers because its
	// state has not arrived would look absent to the caller, who would
	// claim its addresses.
	settled := false
	if !m.settled && !now.Before(m.settleAt) {
		learning := m.table.learning()
		late := !now.Before(m.settleAt.Add(settleAfter(m.cfg.Interval, m.cfg.DeadAfter)))
		if learning == 0 || late {
			settled = true
			m.settled = true
			if learning > 0 {
				m.log.Warn("membership settled without the state of every verified peer", "peers", len(m.table.live()), "waitingFor", learning)
			} else {
				m.log.Info("membership settled", "peers", len(m.table.live()), "after", now.Sub(m.settleAt.Add(-settleAfter(m.cfg.Interval, m.cfg.DeadAfter))).Round(time.Millisecond))
			}
		}
	}
	if m.mismatches.expire(now) {
		m.mismatchDirty = true
	}
	if len(died) > 0 || settled {
		m.publishLocked()
		return next
	}
	m.publishMismatchLocked(now)
	return next
}

// nextCheckLocked is when the next death check is due: the earliest peer
// deadline or mismatch expiry (just after it), the settle time, a check
// and at most maxCheckSleep from now.
func (m *Member) nextCheckLocked(now time.Time) time.Time {
	next := now.Add(maxCheckSleep(m.cfg.Interval, m.cfg.DeadAfter))
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	const past = time.Millisecond // a deadline is passed when strictly after
	if t := m.table.nextDeadline(); !t.IsZero() {
		earlier(t.Add(past))
	}
	if t := m.mismatches.nextExpiry(); !t.IsZero() {
		earlier(t.Add(past))
	}
	if !m.settled {
		earlier(m.settleAt)
	}
	if m.mismatchDirty {
		earlier(m.mismatchPublished.Add(m.cfg.Interval)) // a rate-limited publish
	}
	return next
}

// SetKeys replaces the heartbeat keys without a restart: the next
// heartbeat is signed with every key of keys, and every frame decoded from
// now on is checked against them. Rotate keys by adding the new key on
// every agent, waiting until every agent has it (Peer.Fingerprints), then
// removing the old one: at no step do two agents fail each other, however
// far apart they load each version. Peers stay verified across key
// changes. SetKeys fails only for an empty keyring.
func (m *Member) SetKeys(keys *Keyring) error {
	codec, err := NewCodec(m.cfg.ClusterID, keys)
	if err != nil {
		return fmt.Errorf("set keys: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.codec.Load().Keys()
	if old.equal(keys) {
		return nil
	}
	m.codec.Store(codec)
	if !m.closed {
		m.met.setKeys(old, keys)
	}
	m.log.Info("heartbeat keys changed", "old", old.Fingerprints(), "new", keys.Fingerprints())
	m.publishLocked()
	return nil
}

// Leave announces that this node is leaving: every heartbeat from now on
// carries the leaving flag, and LeaveRepeats of them go out now, a fraction
// of an interval apart, so peers learn it at once despite a lost frame. The
// Member keeps running (and receiving) until its context is cancelled, so
// the caller can watch its successors' claims during its grace window. It
// fails only if ctx ends first or no leaving heartbeat could be sent.
func (m *Member) Leave(ctx context.Context) error {
	m.mu.Lock()
	first := !m.leaving
	m.leaving = true
	if first {
		m.publishLocked()
	}
	m.mu.Unlock()
	m.log.Info("leaving the segment")
	spacing := min(max(m.cfg.Interval/8, time.Millisecond), 20*time.Millisecond)
	sent := 0
	var lastErr error
	for i := range LeaveRepeats {
		if i > 0 {
			t := time.NewTimer(spacing)
			select {
			case <-ctx.Done():
				t.Stop()
				if sent > 0 {
					return nil
				}
				return fmt.Errorf("leave: %w", ctx.Err())
			case <-t.C:
			}
		}
		if err := m.send(); err != nil {
			lastErr = err
			continue
		}
		sent++
	}
	if sent == 0 {
		return fmt.Errorf("leave: %w", lastErr)
	}
	return nil
}

// Close closes the socket; Run returns. It is idempotent.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		if err := errors.Join(m.wake.Close(), m.sock.close()); err != nil {
			m.closeErr = fmt.Errorf("membership: close: %w", err)
		}
		m.mu.Lock()
		m.closed = true
		m.met.peers.Set(0)
		m.met.stale.Set(0)
		// A closed Member signs nothing: its key series go.
		m.met.setKeys(m.codec.Load().Keys(), nil)
		m.mu.Unlock()
	})
	return m.closeErr
}

func newLogLimiter() *logLimiter {
	return &logLimiter{last: map[string]time.Time{}, count: map[string]int{}}
}

// logLimiter lets one message of each kind through per logEvery.
type logLimiter struct {
	mu sync.Mutex
	// last is when the current window of a kind began; count is how many
	// messages it let through in it.
	last  map[string]time.Time
	count map[string]int
}

func (l *logLimiter) allow(kind string, now time.Time) bool {
	return l.allowN(kind, now, 1)
}

// allowN lets n messages of a kind through per logEvery (a window that
// starts with the first of them).
func (l *logLimiter) allowN(kind string, now time.Time, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[kind]; !ok || now.Sub(t) >= logEvery {
		l.last[kind] = now
		l.count[kind] = 0
	}
	if l.count[kind] >= n {
		return false
	}
	l.count[kind]++
	return true
}
