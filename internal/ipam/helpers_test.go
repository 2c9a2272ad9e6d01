package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// mustBlock parses "cidr", "start-stop" or "start" (first/last of a CIDR
// excluded, as by default).
func mustBlock(t testing.TB, s string) Block {
	t.Helper()
	var (
		b   Block
		err error
	)
	switch {
	case strings.Contains(s, "/"):
		b, err = ParseBlock(s, "", "", false)
	case strings.Contains(s, "-"):
		start, stop, _ := strings.Cut(s, "-")
		b, err = ParseBlock("", start, stop, false)
	default:
		b, err = ParseBlock("", s, "", false)
	}
	if err != nil {
		t.Fatalf("block %q: %v", s, err)
	}
	return b
}

// epoch is the creation time of pools made by mkPool (see created).
func epoch() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

// mkPool builds a pool from block specs.
func mkPool(t testing.TB, name string, blocks ...string) Pool {
	t.Helper()
	p := Pool{Name: name, Created: epoch()}
	for _, s := range blocks {
		p.Blocks = append(p.Blocks, mustBlock(t, s))
	}
	return p
}

// withSelector returns p selecting Services carrying all labels in sel.
func withSelector(p Pool, sel map[string]string) Pool {
	p.Selector = matchLabels(sel)
	return p
}

func disabled(p Pool) Pool {
	p.Disabled = true
	return p
}

func created(p Pool, secs int) Pool {
	p.Created = epoch().Add(time.Duration(secs) * time.Second)
	return p
}

// matchLabels is a Selector matching Services that carry all its labels.
type matchLabels map[string]string

func (m matchLabels) Matches(l map[string]string) bool {
	for k, v := range m {
		if got, ok := l[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// mkSvc builds a single-stack IPv4 Service "ns/name" and applies mods.
func mkSvc(key string, mods ...func(*Service)) Service {
	ns, name, _ := strings.Cut(key, "/")
	s := Service{
		Key:       key,
		Namespace: ns,
		Labels:    map[string]string{"io.kubernetes.service.namespace": ns, "io.kubernetes.service.name": name},
		Families:  []Family{IPv4},
		Policy:    SingleStack,
	}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func fams(f ...Family) func(*Service) { return func(s *Service) { s.Families = f } }
func policy(p FamilyPolicy) func(*Service) {
	return func(s *Service) { s.Policy = p }
}
func dual(p FamilyPolicy) func(*Service) {
	return func(s *Service) { s.Policy, s.Families = p, []Family{IPv4, IPv6} }
}
func req(addrs ...string) func(*Service) {
	return func(s *Service) {
		for _, a := range addrs {
			s.Requested = append(s.Requested, netip.MustParseAddr(a))
		}
	}
}
func announced(addrs ...string) func(*Service) {
	return func(s *Service) {
		for _, a := range addrs {
			s.Announced = append(s.Announced, netip.MustParseAddr(a))
		}
	}
}
func pin(pool string) func(*Service) { return func(s *Service) { s.Pool = pool } }
func label(k, v string) func(*Service) {
	return func(s *Service) { s.Labels[k] = v }
}
func share(key string, allow ...string) func(*Service) {
	return func(s *Service) { s.Sharing = &Sharing{Key: key, AllowNamespaces: allow} }
}
func ports(ps ...int32) func(*Service) {
	return func(s *Service) {
		for _, p := range ps {
			s.Ports = append(s.Ports, Port{Protocol: "TCP", Port: p})
		}
	}
}
func udp(ps ...int32) func(*Service) {
	return func(s *Service) {
		for _, p := range ps {
			s.Ports = append(s.Ports, Port{Protocol: "UDP", Port: p})
		}
	}
}
func local(sel map[string]string) func(*Service) {
	return func(s *Service) { s.TrafficPolicyLocal, s.Selector = true, sel }
}

// addrsOf returns the addresses of assignments as strings.
func addrsOf(as []Assignment) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Addr.String()
	}
	return out
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// checkInvariants verifies that every index of the allocator agrees with
// the holdings, and that holders of one address are pairwise compatible.
func checkInvariants(t testing.TB, a *Allocator) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("invariant: "+format, args...)
	}
	// held set == keys of addrs; taken == held ∪ excluded.
	var members []netip.Addr
	a.held.t.Ascend(func(r run) bool {
		for x := r.lo; ; x = x.Next() {
			members = append(members, x)
			if x == r.hi {
				break
			}
			if len(members) > len(a.addrs)+1 {
				break
			}
		}
		return true
	})
	if len(members) != len(a.addrs) {
		fail("held set has %d addresses, addrs map %d", len(members), len(a.addrs))
	}
	for _, m := range members {
		if a.addrs[m] == nil {
			fail("held set has %s, not in addrs", m)
		}
	}
	prev := run{}
	first := true
	a.held.t.Ascend(func(r run) bool {
		if r.hi.Less(r.lo) {
			fail("run %v reversed", r)
		}
		if !first && (prev.hi.Next() == r.lo || !prev.hi.Less(r.lo)) {
			fail("runs %v and %v not merged/disjoint", prev, r)
		}
		prev, first = r, false
		return true
	})
	for addr := range a.addrs {
		if !a.taken.Contains(addr) {
			fail("held %s not in taken", addr)
		}
	}
	for addr := range a.excluded {
		if !a.taken.Contains(addr) {
			fail("excluded %s not in taken", addr)
		}
	}
	var takenN int
	a.taken.t.Ascend(func(r run) bool {
		takenN += int(span(r.lo, r.hi))
		return true
	})
	union := len(a.addrs)
	for addr := range a.excluded {
		if a.addrs[addr] == nil {
			union++
		}
	}
	if takenN != union {
		fail("taken has %d addresses; held ∪ excluded has %d", takenN, union)
	}
	// Holders and services agree.
	for key, e := range a.svcs {
		if len(e.held) == 0 {
			fail("%s has an entry but holds nothing", key)
		}
		seen := map[Family]bool{}
		for _, as := range e.held {
			h := a.addrs[as.Addr]
			if h == nil || !slices.Contains(h.keys, key) {
				fail("%s holds %s but is not its holder", key, as.Addr)
			}
			if seen[FamilyOf(as.Addr)] {
				fail("%s holds two %s addresses", key, FamilyOf(as.Addr))
			}
			seen[FamilyOf(as.Addr)] = true
		}
	}
	for addr, h := range a.addrs {
		if len(h.keys) == 0 || !slices.IsSorted(h.keys) {
			fail("%s holders %v", addr, h.keys)
		}
		for i, k := range h.keys {
			e := a.svcs[k]
			if e == nil || !slices.ContainsFunc(e.held, func(x Assignment) bool { return x.Addr == addr }) {
				fail("%s lists holder %s that does not hold it", addr, k)
			}
			for _, k2 := range h.keys[i+1:] {
				e2 := a.svcs[k2]
				if why := sharingConflict(&e.view, &e2.view); why != "" {
					fail("%s shared by incompatible %s and %s: %s", addr, k, k2, why)
				}
			}
		}
		wantKey := ""
		if e := a.svcs[h.keys[0]]; e.view.sharing != nil {
			wantKey = e.view.sharing.Key
		}
		if h.shareKey != wantKey {
			fail("%s filed under %q; want %q", addr, h.shareKey, wantKey)
		}
		if wantKey != "" && (a.shared[wantKey] == nil || !a.shared[wantKey].Has(addr)) {
			fail("%s not in sharing index %q", addr, wantKey)
		}
	}
	for key, tr := range a.shared {
		if tr.Len() == 0 {
			fail("empty sharing index %q kept", key)
		}
		tr.Ascend(func(addr netip.Addr) bool {
			if h := a.addrs[addr]; h == nil || h.shareKey != key {
				fail("sharing index %q has stale %s", key, addr)
			}
			return true
		})
	}
	// Pool counters equal a recount.
	for _, p := range a.pools {
		var n uint64
		for addr := range a.addrs {
			if p.contains(addr) {
				n++
			}
		}
		if n != p.used {
			fail("pool %s used %d; recount %d", p.name, p.used, n)
		}
	}
}

// describe formats a Result for failure messages.
func describe(r Result) string {
	return fmt.Sprintf("%s %q assigned=%v released=%v", r.Reason, r.Message, addrsOf(r.Assigned), addrsOf(r.Released))
}
