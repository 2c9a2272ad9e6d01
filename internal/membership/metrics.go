package membership

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the herald_membership_* series. Every Member registering on
// the same registry shares one set (one label value per interface), so an
// agent with several announcing interfaces registers once per name.
type metrics struct {
	peers      *prometheus.GaugeVec
	stale      *prometheus.GaugeVec
	sent       *prometheus.CounterVec
	bytesSent  *prometheus.CounterVec
	fullSent   *prometheus.CounterVec
	requests   *prometheus.CounterVec
	sockDrops  *prometheus.CounterVec
	received   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	deaths     *prometheus.CounterVec
	sendErrors *prometheus.CounterVec
	unverified *prometheus.CounterVec
	mismatch   *prometheus.CounterVec
	keyInfo    *prometheus.GaugeVec
}

// newMetrics creates the series and registers them on reg (nil: not
// registered). A series already registered on reg by another Member is
// reused rather than reported as a conflict.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_membership_peers",
			Help: "Live peers heard on the interface.",
		}, []string{"interface"}),
		stale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_membership_peers_state_stale",
			Help: "Live peers whose latest heartbeat names a state this member has not received yet (placement sees their previous lists until it arrives), as of this member's latest heartbeat.",
		}, []string{"interface"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_heartbeats_sent_total",
			Help: "Heartbeat frames sent (a heartbeat split in n parts counts n).",
		}, []string{"interface"}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_heartbeat_bytes_sent_total",
			Help: "Bytes of heartbeat frames sent, Ethernet header included.",
		}, []string{"interface"}),
		fullSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_full_states_sent_total",
			Help: "Heartbeats sent carrying the full state (every part counted once), by reason: change (the state changed: the heartbeat sent at once and the repeats) or request (a peer asked for it).",
		}, []string{"interface", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_state_requests_sent_total",
			Help: "Requests for a peer's full state sent (one per peer and heartbeat): peers just heard, restarted, or whose change this member missed.",
		}, []string{"interface"}),
		sockDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_socket_drops_total",
			Help: "Heartbeat frames the kernel dropped because the member's socket receive buffer was full (a burst of full states, or a stalled agent).",
		}, []string{"interface"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_heartbeats_received_total",
			Help: "Heartbeat frames from peers accepted (authenticated, not replayed).",
		}, []string{"interface"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_heartbeats_dropped_total",
			Help: "Heartbeat frames dropped, by reason: auth (bad HMAC), replay, malformed, cluster (another cluster's), capacity (peer table full).",
		}, []string{"interface", "reason"}),
		deaths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_peer_deaths_total",
			Help: "Peers declared dead on the interface after DeadAfter silent intervals.",
		}, []string{"interface"}),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_send_errors_total",
			Help: "Heartbeat frames that could not be sent (for example while the link is down).",
		}, []string{"interface"}),
		unverified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_heartbeats_unverified_total",
			Help: "Accepted heartbeat frames (also counted in received) from a peer run that has not echoed this member's challenge yet: a peer just heard, restarted or back after a silence, or a replay of a dead node's frames. They do not make the peer live.",
		}, []string{"interface"}),
		mismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_key_mismatch_total",
			Help: "Heartbeat frames of this cluster that failed authentication, by the node name they claim (unauthenticated; at most 64 names per member, then \"other\"): most likely agents with another heartbeat key.",
		}, []string{"interface", "peer"}),
		keyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_membership_key_info",
			Help: "1 for each heartbeat key (by fingerprint) the member on the interface signs and verifies with.",
		}, []string{"interface", "fingerprint"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, g := range []**prometheus.GaugeVec{&m.peers, &m.stale, &m.keyInfo} {
		if *g, err = register(reg, *g); err != nil {
			return nil, err
		}
	}
	for _, c := range []**prometheus.CounterVec{&m.sent, &m.bytesSent, &m.fullSent, &m.requests, &m.sockDrops, &m.received, &m.dropped, &m.deaths, &m.sendErrors, &m.unverified, &m.mismatch} {
		if *c, err = register(reg, *c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers c on reg, or returns the identical collector that is
// already registered there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register membership metrics: %w", err)
}

// fullReason says why a heartbeat carries the full state; the values are
// the "reason" label of herald_membership_full_states_sent_total.
type fullReason string

const (
	fullNone    fullReason = ""
	fullChange  fullReason = "change"
	fullRequest fullReason = "request"
)

// ifaceMetrics are the series of one interface (of one Member).
type ifaceMetrics struct {
	iface        string
	peers        prometheus.Gauge
	stale        prometheus.Gauge
	sent         prometheus.Counter
	bytesSent    prometheus.Counter
	fullSent     map[fullReason]prometheus.Counter
	requestsSent prometheus.Counter
	socketDrops  prometheus.Counter
	received     prometheus.Counter
	deaths       prometheus.Counter
	sendErrors   prometheus.Counter
	unverified   prometheus.Counter
	dropped      map[dropReason]prometheus.Counter
	keyInfo      *prometheus.GaugeVec
	mismatch     *prometheus.CounterVec
	// mismatchPeers holds the key_mismatch_total series of the first
	// maxMismatches claimed names; mismatchOther counts the rest.
	mismatchPeers map[string]prometheus.Counter
	mismatchOther prometheus.Counter
}

func (m *metrics) forInterface(name string) *ifaceMetrics {
	im := &ifaceMetrics{
		iface:         name,
		peers:         m.peers.WithLabelValues(name),
		stale:         m.stale.WithLabelValues(name),
		sent:          m.sent.WithLabelValues(name),
		bytesSent:     m.bytesSent.WithLabelValues(name),
		fullSent:      map[fullReason]prometheus.Counter{},
		requestsSent:  m.requests.WithLabelValues(name),
		socketDrops:   m.sockDrops.WithLabelValues(name),
		received:      m.received.WithLabelValues(name),
		deaths:        m.deaths.WithLabelValues(name),
		sendErrors:    m.sendErrors.WithLabelValues(name),
		unverified:    m.unverified.WithLabelValues(name),
		dropped:       map[dropReason]prometheus.Counter{},
		keyInfo:       m.keyInfo,
		mismatch:      m.mismatch,
		mismatchPeers: map[string]prometheus.Counter{},
	}
	// Create every reason up front so that dashboards see zeros, not gaps.
	for _, r := range []dropReason{dropAuth, dropReplay, dropMalformed, dropCluster, dropCapacity} {
		im.dropped[r] = m.dropped.WithLabelValues(name, string(r))
	}
	for _, r := range []fullReason{fullChange, fullRequest} {
		im.fullSent[r] = m.fullSent.WithLabelValues(name, string(r))
	}
	return im
}

// keyMismatch returns the key_mismatch_total series of a claimed peer
// name. The names come from unauthenticated frames, so only the first
// maxMismatches get their own series; the rest share peer="other". The
// caller serialises calls.
func (im *ifaceMetrics) keyMismatch(peer string) prometheus.Counter {
	if c, ok := im.mismatchPeers[peer]; ok {
		return c
	}
	if len(im.mismatchPeers) < maxMismatches {
		c := im.mismatch.WithLabelValues(im.iface, peer)
		im.mismatchPeers[peer] = c
		return c
	}
	if im.mismatchOther == nil {
		im.mismatchOther = im.mismatch.WithLabelValues(im.iface, "other")
	}
	return im.mismatchOther
}

// setKeys moves the key_info series from the keys of old to those of
// current (either may be nil).
func (im *ifaceMetrics) setKeys(old, current *Keyring) {
	keep := map[string]bool{}
	for _, fp := range current.Fingerprints() {
		keep[fp] = true
		im.keyInfo.WithLabelValues(im.iface, fp).Set(1)
	}
	for _, fp := range old.Fingerprints() {
		if !keep[fp] {
			im.keyInfo.DeleteLabelValues(im.iface, fp)
		}
	}
}
