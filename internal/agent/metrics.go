package agent

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's own herald_agent_* series: how much work its
// main loop does, so that "cost follows change" can be watched in a
// cluster and is checked by tests; which addresses this node answers for
// and may announce; and how long hand-overs take.
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
	// owned is 1 for every address this node answers ARP/NDP for, by
	// address and interface; a series is deleted when the node stops
	// answering (set where a segment's answers change, never in a scan).
	owned *prometheus.GaugeVec
	// eligible counts the addresses this node may announce, by interface:
	// the node's LAN interfaces always have a series (0 when nothing is
	// eligible there), other interfaces while something is eligible.
	eligible *prometheus.GaugeVec
	// eligibleShown are the interfaces eligible has a series for. Owned by
	// the Run goroutine.
	eligibleShown map[string]bool
	// takeover is the hand-over latency: from this node noticing that a
	// peer died or started leaving to this node's first gratuitous ARP or
	// unsolicited NA for an address that peer claimed. The time to notice
	// a death (DeadAfter heartbeat intervals of silence) comes before it
	// and is not included.
	takeover *prometheus.HistogramVec
}

// takeoverBuckets span hand-overs from the sub-millisecond reaction to a
// death already noticed, through a leaving peer's release (about one
// heartbeat's transit), to several seconds (a mass fail-over paced by the
// announcement rate, or announcements postponed while the link is down).
var takeoverBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// takeoverWindow is how long after a peer's departure an address it
// claimed that this node starts answering still counts as taken over from
// it (anything later is a new placement, not a hand-over).
const takeoverWindow = 30 * time.Second

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
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_agent_address_owned",
			Help: "1 for each address this node answers ARP/NDP for, by address and interface (no series for addresses it does not answer).",
		}, []string{"address", "interface"}),
		eligible: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_agent_addresses_eligible",
			Help: "Addresses this node may announce, by interface (policies, interfaces, endpoints and the exclude label allowing): always present for the node's LAN interfaces, so 0 shows a node that may announce nothing.",
		}, []string{"interface"}),
		eligibleShown: map[string]bool{},
		takeover: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_agent_takeover_seconds",
			Help:    "Hand-over latency, by interface: from this node noticing that a peer died (silent for DeadAfter intervals) or started leaving, to this node's first gratuitous ARP or unsolicited NA for an address that peer claimed.",
			Buckets: takeoverBuckets,
		}, []string{"interface"}),
	}
	for _, c := range []prometheus.Collector{m.plans, m.servicesRead, m.decides, m.addressesDecided, m.owned, m.eligible, m.takeover} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}

// handovers times one segment's take-overs up to their first
// announcement: the main loop says which newly answered addresses were
// taken over and since when (expect), and the responder's announce
// goroutine reports each first announcement (announced).
type handovers struct {
	mu      sync.Mutex
	pending map[netip.Addr]time.Time
	hist    prometheus.Observer
}

func newHandovers(hist prometheus.Observer) *handovers {
	return &handovers{pending: map[netip.Addr]time.Time{}, hist: hist}
}

// expect records that the node starts answering addr, taken over from a
// peer whose departure it noticed at since.
func (h *handovers) expect(addr netip.Addr, since time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending[addr] = since
}

// forget drops addr: the node stopped answering it before announcing it.
func (h *handovers) forget(addr netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pending, addr)
}

// announced is the responder's l2.Options.OnFirstAnnouncement: it
// observes the hand-over of addr if one was expected.
func (h *handovers) announced(addr netip.Addr, sent time.Time) {
	h.mu.Lock()
	since, ok := h.pending[addr]
	delete(h.pending, addr)
	h.mu.Unlock()
	if ok {
		h.hist.Observe(sent.Sub(since).Seconds())
	}
}

// publishEligible updates herald_agent_addresses_eligible for the
// interfaces whose eligible addresses changed, or, with all (the node, its
// links or a policy changed), for every interface that has or had a series
// and every LAN interface. The cost follows the interfaces concerned, not
// the addresses.
func (a *Agent) publishEligible(changed map[string]bool, all bool) {
	lan := map[string]bool{}
	for _, ifc := range a.ifaces {
		if ifc.LAN {
			lan[ifc.Name] = true
		}
	}
	show := changed
	if all {
		show = map[string]bool{}
		for _, set := range []map[string]bool{a.met.eligibleShown, lan, changed} {
			for ifc := range set {
				show[ifc] = true
			}
		}
		for ifc := range a.state.eligible {
			show[ifc] = true
		}
	}
	for ifc := range show {
		n := len(a.state.eligible[ifc])
		if n == 0 && !lan[ifc] {
			if a.met.eligibleShown[ifc] {
				a.met.eligible.DeleteLabelValues(ifc)
				delete(a.met.eligibleShown, ifc)
			}
			continue
		}
		a.met.eligible.WithLabelValues(ifc).Set(float64(n))
		a.met.eligibleShown[ifc] = true
	}
}
