package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's own herald_agent_* series: how much work its
// main loop does, so that "cost follows change" can be watched in a
// cluster and is checked by tests.
type metrics struct {
	// plans counts the re-plans by scope: "service" (only the Services
	// events named) or "all" (the node, a link or a policy changed).
	plans *prometheus.CounterVec
	// servicesRead counts the Services read back from the cache to plan.
	servicesRead prometheus.Counter
	// decides counts the passes of placement over a segment.
	decides prometheus.Counter
	// addressesDecided counts the addresses those passes decided.
	addressesDecided prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_agent_plans_total",
			Help: "Re-plans of what this node may announce, by scope: service (the Services an event named) or all (the node, a link or a policy changed).",
		}, []string{"scope"}),
		servicesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_agent_services_planned_total",
			Help: "Services whose view was computed again by a re-plan.",
		}),
		decides: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_agent_decides_total",
			Help: "Placement passes over a segment's addresses (only when something they depend on changed).",
		}),
		addressesDecided: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_agent_addresses_decided_total",
			Help: "Addresses decided by those placement passes.",
		}),
	}
	for _, c := range []prometheus.Collector{m.plans, m.servicesRead, m.decides, m.addressesDecided} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}
