package controller

import (
	"math/big"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/ipam"
)

// metrics are the controller's Prometheus series (herald_ipam_*,
// herald_controller_*). Each Controller has its own registry, so several
// can live in one process.
type metrics struct {
	registry    *prometheus.Registry
	poolIPs     *prometheus.GaugeVec
	services    *prometheus.GaugeVec
	allocations prometheus.Counter
	releases    prometheus.Counter
	failures    *prometheus.CounterVec
	statusWrite *prometheus.CounterVec
	leader      prometheus.Gauge
	// announced counts the served Services by their herald.dev/Announced
	// condition (status and reason), as the leader last computed it; a
	// Service with no address has no condition and is not counted.
	announced *prometheus.GaugeVec
	// conflicts counts the addresses some agent reports another host on,
	// by phase: probe (found before the first announcement: not
	// announced) or announced (defended).
	conflicts *prometheus.GaugeVec
}

// Conflict phases, the "phase" label of herald_controller_address_conflicts.
const (
	phaseProbe     = "probe"
	phaseAnnounced = "announced"
)

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		poolIPs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_ipam_pool_ips",
			Help: "Addresses of a LoadBalancerIPPool by state (total, used, available). IPv6 pools are approximated by float64.",
		}, []string{"pool", "state"}),
		services: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_ipam_services",
			Help: "LoadBalancer Services served by Herald, by state (allocated, pending).",
		}, []string{"state"}),
		allocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ipam_allocations_total",
			Help: "Addresses handed to Services.",
		}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ipam_releases_total",
			Help: "Addresses taken back from Services.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ipam_allocation_failures_total",
			Help: "Times a Service was left pending, by reason.",
		}, []string{"reason"}),
		statusWrite: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ipam_status_writes_total",
			Help: "Status writes to the API server, by kind (service, pool) and result (ok, conflict, error).",
		}, []string{"kind", "result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_controller_leader",
			Help: "1 while this controller replica holds the leader lease.",
		}),
		announced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_controller_services_announced",
			Help: "Served Services with addresses, by their herald.dev/Announced condition: status (True, False) and reason (Announced, Pending, NoEligibleNode, NoAgent, NoHeartbeatKey, AddressConflict, KeyMismatch, KernelARP, ...). Only the leader counts; standbys show 0.",
		}, []string{"status", "reason"}),
		conflicts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_controller_address_conflicts",
			Help: "Load-balancer addresses that agents report another host on the LAN uses, by phase: probe (found before the address was ever announced: not announced, kept out of allocation) or announced (announced and defended).",
		}, []string{"phase"}),
	}
	m.registry.MustRegister(m.poolIPs, m.services, m.allocations, m.releases, m.failures, m.statusWrite, m.leader,
		m.announced, m.conflicts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Zeros rather than gaps for the series alerts and dashboards read.
	m.announced.WithLabelValues(string(metav1.ConditionTrue), string(announce.Announced))
	for _, p := range []string{phaseProbe, phaseAnnounced} {
		m.conflicts.WithLabelValues(p)
	}
	return m
}

// announcedState is a Service's herald.dev/Announced condition as the
// metrics count it: status and reason ("" when it has none).
type announcedState struct {
	status, reason string
}

// setAnnounced moves one Service in herald_controller_services_announced
// from its previous state to cur (either may be empty). The caller
// serialises calls (the controller's mu).
func (m *metrics) setAnnounced(prev, cur announcedState) {
	if prev == cur {
		return
	}
	if prev.reason != "" {
		m.announced.WithLabelValues(prev.status, prev.reason).Dec()
	}
	if cur.reason != "" {
		m.announced.WithLabelValues(cur.status, cur.reason).Inc()
	}
}

// setConflicts publishes the number of addresses with a conflict, by phase.
func (m *metrics) setConflicts(conflicts map[netip.Addr][]announce.AddrConflict) {
	var probe, announced int
	for _, cs := range conflicts {
		before, after := false, false
		for _, c := range cs {
			if c.BeforeAnnounce {
				before = true
			} else {
				after = true
			}
		}
		if before {
			probe++
		}
		if after {
			announced++
		}
	}
	m.conflicts.WithLabelValues(phaseProbe).Set(float64(probe))
	m.conflicts.WithLabelValues(phaseAnnounced).Set(float64(announced))
}

// setPools publishes the pool counters and drops series of deleted pools.
func (m *metrics) setPools(statuses []ipam.PoolStatus) {
	m.poolIPs.Reset()
	for _, s := range statuses {
		m.poolIPs.WithLabelValues(s.Name, "total").Set(bigFloat(s.Total))
		m.poolIPs.WithLabelValues(s.Name, "used").Set(float64(s.Used))
		m.poolIPs.WithLabelValues(s.Name, "available").Set(bigFloat(s.Available))
	}
}

func bigFloat(n *big.Int) float64 {
	if n == nil {
		return 0
	}
	f, _ := new(big.Float).SetInt(n).Float64()
	return f
}
