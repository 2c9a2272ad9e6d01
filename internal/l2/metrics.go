package l2

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the herald_l2_* Prometheus series of one or more Responders.
// They are registered on a registry the caller owns (never the global one),
// so tests and several agents can live in one process. A nil *Metrics is
// valid and records nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	replies    *prometheus.CounterVec
	gratuitous *prometheus.CounterVec
	malformed  *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	defences   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// NewMetrics creates the l2 metrics and registers them on reg. Create one
// Metrics per registry and share it between the Responders of all
// interfaces: the interface is a label.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("l2: NewMetrics needs a registry")
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_requests_total",
			Help: "ARP requests and Neighbor Solicitations received for owned addresses, by interface and family (ipv4, ipv6).",
		}, []string{"interface", "family"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_replies_total",
			Help: "ARP replies and Neighbor Advertisements sent in answer to a request, by interface and family.",
		}, []string{"interface", "family"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_gratuitous_total",
			Help: "Gratuitous ARP frames (request and reply forms) and unsolicited Neighbor Advertisements sent, by interface and family.",
		}, []string{"interface", "family"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_malformed_total",
			Help: "ARP/NDP frames that passed the kernel filter but were malformed (bad length, hop limit, checksum, …) and were dropped.",
		}, []string{"interface"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_conflicts_total",
			Help: "Frames in which another MAC claimed an owned address (ARP reply, gratuitous ARP, ARP request from it, Neighbor Advertisement).",
		}, []string{"interface"}),
		defences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_defences_total",
			Help: "Announcements sent to defend an owned address another host claimed (RFC 5227 §2.4 (c): at most one per address per defend interval), by interface and family.",
		}, []string{"interface", "family"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_l2_reply_latency_seconds",
			Help: "Time from reading a request off the socket to the reply being handed to the kernel, by interface and family.",
			// 5µs … ~20ms: the goal is a p99 under 1ms.
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 13),
		}, []string{"interface", "family"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.replies, m.gratuitous, m.malformed, m.conflicts, m.defences, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register l2 metrics: %w", err)
		}
	}
	return m, nil
}

// ifaceMetrics is the per-interface view with label values resolved once,
// so the receive path does no label lookups.
type ifaceMetrics struct {
	requests4, requests6     prometheus.Counter
	replies4, replies6       prometheus.Counter
	gratuitous4, gratuitous6 prometheus.Counter
	malformed                prometheus.Counter
	conflicts                prometheus.Counter
	defences4, defences6     prometheus.Counter
	latency4, latency6       prometheus.Observer
}

func (m *Metrics) forInterface(name string) *ifaceMetrics {
	if m == nil {
		return nil
	}
	return &ifaceMetrics{
		requests4:   m.requests.WithLabelValues(name, familyIPv4),
		requests6:   m.requests.WithLabelValues(name, familyIPv6),
		replies4:    m.replies.WithLabelValues(name, familyIPv4),
		replies6:    m.replies.WithLabelValues(name, familyIPv6),
		gratuitous4: m.gratuitous.WithLabelValues(name, familyIPv4),
		gratuitous6: m.gratuitous.WithLabelValues(name, familyIPv6),
		malformed:   m.malformed.WithLabelValues(name),
		conflicts:   m.conflicts.WithLabelValues(name),
		defences4:   m.defences.WithLabelValues(name, familyIPv4),
		defences6:   m.defences.WithLabelValues(name, familyIPv6),
		latency4:    m.latency.WithLabelValues(name, familyIPv4),
		latency6:    m.latency.WithLabelValues(name, familyIPv6),
	}
}

func (im *ifaceMetrics) request(v6 bool) {
	if im == nil {
		return
	}
	if v6 {
		im.requests6.Inc()
	} else {
		im.requests4.Inc()
	}
}

func (im *ifaceMetrics) reply(v6 bool, took time.Duration) {
	if im == nil {
		return
	}
	if v6 {
		im.replies6.Inc()
		im.latency6.Observe(took.Seconds())
	} else {
		im.replies4.Inc()
		im.latency4.Observe(took.Seconds())
	}
}

func (im *ifaceMetrics) gratuitous(v6 bool) {
	if im == nil {
		return
	}
	if v6 {
		im.gratuitous6.Inc()
	} else {
		im.gratuitous4.Inc()
	}
}

func (im *ifaceMetrics) malformedFrame() {
	if im != nil {
		im.malformed.Inc()
	}
}

func (im *ifaceMetrics) conflict() {
	if im != nil {
		im.conflicts.Inc()
	}
}

func (im *ifaceMetrics) defence(v6 bool) {
	if im == nil {
		return
	}
	if v6 {
		im.defences6.Inc()
	} else {
		im.defences4.Inc()
	}
}
