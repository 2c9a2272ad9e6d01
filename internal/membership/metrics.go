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
	sent       *prometheus.CounterVec
	received   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	deaths     *prometheus.CounterVec
	sendErrors *prometheus.CounterVec
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
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_membership_heartbeats_sent_total",
			Help: "Heartbeat frames sent (a heartbeat split in n parts counts n).",
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
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.peers, err = register(reg, m.peers); err != nil {
		return nil, err
	}
	for _, c := range []**prometheus.CounterVec{&m.sent, &m.received, &m.dropped, &m.deaths, &m.sendErrors} {
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

// ifaceMetrics are the series of one interface.
type ifaceMetrics struct {
	peers      prometheus.Gauge
	sent       prometheus.Counter
	received   prometheus.Counter
	deaths     prometheus.Counter
	sendErrors prometheus.Counter
	dropped    map[dropReason]prometheus.Counter
}

func (m *metrics) forInterface(name string) *ifaceMetrics {
	im := &ifaceMetrics{
		peers:      m.peers.WithLabelValues(name),
		sent:       m.sent.WithLabelValues(name),
		received:   m.received.WithLabelValues(name),
		deaths:     m.deaths.WithLabelValues(name),
		sendErrors: m.sendErrors.WithLabelValues(name),
		dropped:    map[dropReason]prometheus.Counter{},
	}
	// Create every reason up front so that dashboards see zeros, not gaps.
	for _, r := range []dropReason{dropAuth, dropReplay, dropMalformed, dropCluster, dropCapacity} {
		im.dropped[r] = m.dropped.WithLabelValues(name, string(r))
	}
	return im
}
