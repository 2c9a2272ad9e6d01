package controller

import (
	"math/big"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herald-lb/herald/internal/ipam"
)

// metrics are the controller's Prometheus series (herald_ipam_*). Each
// Controller has its own registry, so several can live in one process.
type metrics struct {
	registry    *prometheus.Registry
	poolIPs     *prometheus.GaugeVec
	services    *prometheus.GaugeVec
	allocations prometheus.Counter
	releases    prometheus.Counter
	failures    *prometheus.CounterVec
	statusWrite *prometheus.CounterVec
	leader      prometheus.Gauge
}

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
	}
	m.registry.MustRegister(m.poolIPs, m.services, m.allocations, m.releases, m.failures, m.statusWrite, m.leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
