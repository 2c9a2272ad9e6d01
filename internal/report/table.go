package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// The tables are what the commands print by default: kubectl's layout
// (upper-case headers, columns three spaces apart, "-" for nothing), ages
// instead of times. -o json|yaml prints the report structs instead.

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0) }

func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return duration.HumanDuration(now.Sub(t))
}

func list(s []string) string { return strings.Join(s, ",") }

// WritePools prints herald pools as a table.
func WritePools(w io.Writer, r PoolsReport) error {
	tw := newTable(w)
	row(tw, "POOL", "BLOCKS", "FAMILY", "SIZE", "USED", "FREE", "USE%", "CONFLICT", "SELECTOR")
	for _, p := range r.Pools {
		name := p.Name
		if p.Disabled {
			name += " (disabled)"
		}
		sel := p.Selector
		if sel == "" {
			sel = "<all>"
		}
		row(tw, name, list(p.Blocks), p.Family, p.Size, p.Used, p.Free, usePercent(p.UsePercent), poolConflict(p), sel)
	}
	return tw.Flush()
}

func usePercent(p *float64) string {
	switch {
	case p == nil:
		return ""
	case *p > 0 && *p < 1:
		return "<1%"
	case *p > 99 && *p < 100:
		return ">99%"
	default:
		return fmt.Sprintf("%.0f%%", *p)
	}
}

// poolConflict lists the excluded addresses, and the PoolConflict reason.
func poolConflict(p Pool) string {
	var parts []string
	if p.Conflict != "" {
		reason, _, _ := strings.Cut(p.Conflict, ":")
		parts = append(parts, reason)
	}
	for _, e := range p.Excluded {
		parts = append(parts, e.Address+" in use by "+e.MAC)
	}
	return strings.Join(parts, "; ")
}

// WriteServices prints herald services as a table.
func WriteServices(w io.Writer, r ServicesReport) error {
	tw := newTable(w)
	row(tw, "NAMESPACE", "SERVICE", "IPS", "POOL", "POLICY", "ANNOUNCER", "INTERFACE", "SHARING", "STATE")
	for _, s := range r.Services {
		var ips, pools, nodes, ifaces []string
		for _, a := range s.Addresses {
			ips = append(ips, a.Address)
			pools = appendNew(pools, a.Pool)
			for _, an := range a.Announcers {
				nodes = appendNew(nodes, an.Node)
				ifaces = appendNew(ifaces, an.Interfaces...)
			}
		}
		row(tw, s.Namespace, s.Name, list(ips), list(pools), list(s.Policies), list(nodes), list(ifaces), s.SharingKey, state(s))
	}
	return tw.Flush()
}

func state(s Service) string {
	switch {
	case s.State == StateAnnounced && s.Reason != "Announced":
		return s.State + " (" + s.Reason + ")"
	case s.State == StateAnnounced:
		return s.State
	default:
		return s.State + ": " + s.Reason
	}
}

// WriteAnnouncements prints herald announcements as a table. The MAC
// column is there only when some report names one.
func WriteAnnouncements(w io.Writer, r AnnouncementsReport, now time.Time) error {
	tw := newTable(w)
	withMAC := false
	for _, a := range r.Announcements {
		withMAC = withMAC || len(a.MACs) > 0
	}
	header := []string{"ADDRESS", "NODE", "INTERFACE"}
	if withMAC {
		header = append(header, "MAC")
	}
	row(tw, append(header, "SINCE", "PEERS", "SERVICES", "NOTE")...)
	for _, a := range r.Announcements {
		cells := []string{a.Address, a.Node, list(a.Interfaces)}
		if withMAC {
			cells = append(cells, list(a.MACs))
		}
		var notes []string
		if a.Stale {
			notes = append(notes, "stale report")
		}
		if len(a.KeyMismatches) > 0 {
			notes = append(notes, "key mismatch with "+list(a.KeyMismatches))
		}
		if a.Conflict != "" {
			notes = append(notes, "conflict: "+a.Conflict)
		}
		row(tw, append(cells, age(now, a.Since), list(a.Peers), list(a.Services), strings.Join(notes, "; "))...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Advertisements) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nAdvertised by BGP:\n")
	tw = newTable(w)
	row(tw, "ADDRESS", "NODE", "PEERS", "SERVICES", "NOTE")
	for _, a := range r.Advertisements {
		note := ""
		if a.Stale {
			note = "stale report (node not Ready)"
		}
		row(tw, a.Address, a.Node, list(a.Peers), list(a.Services), note)
	}
	return tw.Flush()
}

// WriteStatus prints herald status: the controller, the agents, the
// pools and the Services that are not well, each under a heading.
func WriteStatus(w io.Writer, r StatusReport, now time.Time) error {
	c := r.Controller
	switch {
	case c.Leader == "":
		fmt.Fprintf(w, "Controller: no leader (Lease %s/%s)\n", c.Namespace, c.Lease)
	case c.Expired:
		fmt.Fprintf(w, "Controller: leader %s EXPIRED, last renewed %s ago (Lease %s/%s)\n", c.Leader, age(now, *c.Renewed), c.Namespace, c.Lease)
	default:
		renewed := ""
		if c.Renewed != nil {
			renewed = ", renewed " + age(now, *c.Renewed) + " ago"
		}
		fmt.Fprintf(w, "Controller: leader %s (Lease %s/%s%s)\n", c.Leader, c.Namespace, c.Lease, renewed)
	}

	fmt.Fprintf(w, "\nAgents:\n")
	tw := newTable(w)
	row(tw, "NODE", "VERSION", "KEYS", "SEGMENTS", "PEERS", "ADDRESSES", "DATAPLANE", "REPORTED", "NOTE")
	for _, a := range r.Agents {
		var segs, peers []string
		for _, s := range a.Segments {
			segs = append(segs, s.Interface)
			peers = appendNew(peers, s.Peers...)
		}
		var notes []string
		if a.Missing {
			notes = append(notes, "no agent report")
		}
		if a.ExcludedByLabel {
			notes = append(notes, "excluded by label")
		}
		if a.KeyError != "" {
			notes = append(notes, "no heartbeat key")
		}
		for _, s := range a.Segments {
			if len(s.KeyMismatches) > 0 {
				notes = append(notes, "key mismatch with "+list(s.KeyMismatches)+" on "+s.Interface)
			}
		}
		dataPlane := ""
		if dp := a.DataPlane; dp != nil {
			dataPlane = string(dp.Mode)
			if len(dp.KernelARPInterfaces) > 0 {
				notes = append(notes, "kernel answers ARP on "+list(dp.KernelARPInterfaces)+" (IPVS without strictARP)")
			}
		}
		reported, addrs := "", ""
		if a.Reported != nil {
			reported = age(now, *a.Reported)
		}
		if !a.Missing {
			addrs = fmt.Sprint(a.Addresses)
		}
		row(tw, a.Node, a.Version, list(a.KeyFingerprints), list(segs), list(peers), addrs, dataPlane, reported, strings.Join(notes, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if err := writeBGPSessions(w, r.Agents, now); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nPools:\n")
	if err := WritePools(w, PoolsReport{Pools: r.Pools}); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nServices: %d served, %d announced, %d not well\n", r.Serving, r.Announced, len(r.Services))
	if len(r.Services) > 0 {
		tw = newTable(w)
		row(tw, "NAMESPACE", "SERVICE", "IPS", "STATE")
		for _, s := range r.Services {
			var ips []string
			for _, a := range s.Addresses {
				ips = append(ips, a.Address)
			}
			row(tw, s.Namespace, s.Name, list(ips), state(s))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// WriteProblems prints the problems after a table, if any.
func WriteProblems(w io.Writer, ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\nProblems (%d):\n", len(ps)); err != nil {
		return err
	}
	for _, p := range ps {
		if _, err := fmt.Fprintf(w, "  %s %s: %s: %s\n", p.Kind, p.Name, p.Reason, p.Message); err != nil {
			return err
		}
	}
	return nil
}

// writeBGPSessions prints every node's BGP sessions, if any node has one.
func writeBGPSessions(w io.Writer, agents []Agent, now time.Time) error {
	has := false
	for _, a := range agents {
		has = has || (a.BGP != nil && len(a.BGP.Sessions) > 0)
	}
	if !has {
		return nil
	}
	fmt.Fprintf(w, "\nBGP sessions:\n")
	tw := newTable(w)
	row(tw, "NODE", "PEER", "ADDRESS", "AS", "LOCAL", "STATE", "SINCE", "ROUTES", "BFD", "LAST ERROR")
	for _, a := range agents {
		if a.BGP == nil {
			continue
		}
		for _, s := range a.BGP.Sessions {
			local := fmt.Sprintf("%s AS %d", s.LocalAddress, s.LocalASN)
			if s.LocalAddress == "" {
				local = ""
			}
			row(tw, a.Node, s.Peer, s.Address, fmt.Sprint(s.PeerASN), local, string(s.State), age(now, s.Since.Time),
				fmt.Sprint(s.RoutesAdvertised), string(s.BFDState), s.LastError)
		}
	}
	return tw.Flush()
}
