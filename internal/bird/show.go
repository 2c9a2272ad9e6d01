package bird

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/herald-lb/herald/internal/bgp/community"
)

// Line is one line of a reply on BIRD's control socket, as birdc -v
// prints it: a four-digit code (continuation lines carry the code of the
// line they continue) and the text after it.
type Line struct {
	Code int
	Text string
}

// Reply codes of BIRD 2 (doc/reply_codes in BIRD's source) that the
// parsers use.
const (
	codeWelcome         = 1
	codeProtocolList    = 1002
	codeProtocolDetails = 1006
	codeRouteList       = 1007
	codeRouteDetails    = 1008
	codeRouteAttrs      = 1012
	codeBFDSessions     = 1020
	codeNetworkNotFound = 8001
	firstErrorCode      = 8000
)

// ReplyError is a reply with an error code: 8xxx for run-time errors
// (8001 "Network not found", 8002 a configuration file error, 8003 "No
// protocols match"), 9xxx for a command BIRD could not parse.
type ReplyError struct {
	Code int
	Text string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("BIRD replied %04d %s", e.Code, e.Text) }

// ParseReply splits birdc -v output into lines. The greeting (0001) is
// dropped; a line birdc wrote itself (such as "Unable to connect to
// server control socket" or its own "No such command") is an error, and
// so is a reply with an error code (a *ReplyError, returned with the
// lines).
func ParseReply(out string) ([]Line, error) {
	var lines []Line
	code := -1
	var replyErr *ReplyError
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		switch {
		case len(l) >= 5 && isDigits(l[:4]) && (l[4] == '-' || l[4] == ' '):
			code, _ = strconv.Atoi(l[:4])
			if code >= firstErrorCode && replyErr == nil {
				replyErr = &ReplyError{Code: code, Text: l[5:]}
			}
			if code == codeWelcome {
				continue
			}
			lines = append(lines, Line{Code: code, Text: l[5:]})
		case strings.HasPrefix(l, "     ") && code >= 0:
			if replyErr != nil && code == replyErr.Code {
				replyErr.Text += "\n" + l[5:]
			}
			lines = append(lines, Line{Code: code, Text: l[5:]})
		case l == "" && code >= 0:
		default:
			return nil, fmt.Errorf("not a BIRD reply: %q", strings.TrimSpace(out))
		}
	}
	if code < 0 {
		return nil, fmt.Errorf("not a BIRD reply: %q", strings.TrimSpace(out))
	}
	if replyErr != nil {
		return lines, replyErr
	}
	return lines, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Protocol is one protocol of `show protocols all`.
type Protocol struct {
	Name  string
	Proto string // BGP, Kernel, BFD, Device, …
	Table string // "---" for protocols without one
	State string // up, down, start, stop
	Since string // as BIRD prints it
	// Info is the last column: for BGP the session state and, after it,
	// the last error ("Active Socket: Connection refused").
	Info string
	// Attrs are the protocol's "key: value" detail lines outside its
	// channels and capability lists ("BGP state", "Neighbor address",
	// "Last error", "Hold timer", …).
	Attrs    map[string]string
	Channels []Channel
}

// Channel is one channel of a protocol.
type Channel struct {
	Name  string // ipv4, ipv6
	State string // UP, DOWN, …
	Table string
	// Imported, Exported and Preferred count the channel's routes.
	Imported, Exported, Preferred int
	Attrs                         map[string]string
}

// BGPState is what a BGP protocol's details say of its session: for the
// Herald tests, "Established".
func (p Protocol) BGPState() string { return p.Attrs["BGP state"] }

// NeighborAddress is a BGP protocol's neighbor (invalid for a dynamic
// BGP template, which has a range).
func (p Protocol) NeighborAddress() netip.Addr {
	a, _ := netip.ParseAddr(strings.Fields(p.Attrs["Neighbor address"] + " x")[0])
	return a
}

// NeighborAS is a BGP protocol's neighbor AS (0 if not given).
func (p Protocol) NeighborAS() uint32 { return attrUint32(p.Attrs, "Neighbor AS") }

// LocalAS is a BGP protocol's local AS (0 if not given).
func (p Protocol) LocalAS() uint32 { return attrUint32(p.Attrs, "Local AS") }

// LastError is a BGP protocol's last error, as BIRD words it ("Received:
// Bad peer AS", "Socket: Connection refused", "BFD session down"); empty
// without one.
func (p Protocol) LastError() string { return p.Attrs["Last error"] }

// Channel returns the protocol's channel of that name.
func (p Protocol) Channel(name string) (Channel, bool) {
	for _, c := range p.Channels {
		if c.Name == name {
			return c, true
		}
	}
	return Channel{}, false
}

func attrUint32(m map[string]string, k string) uint32 {
	n, _ := strconv.ParseUint(m[k], 10, 32)
	return uint32(n)
}

// ParseProtocols reads the reply to `show protocols [all]`.
func ParseProtocols(lines []Line) ([]Protocol, error) {
	var out []Protocol
	var ch *Channel
	capsIndent := -1
	for _, l := range lines {
		switch l.Code {
		case codeProtocolList:
			f := strings.Fields(l.Text)
			if len(f) < 5 {
				return nil, fmt.Errorf("protocol line %q: want name, protocol, table, state, since", l.Text)
			}
			p := Protocol{Name: f[0], Proto: f[1], Table: f[2], State: f[3], Since: f[4], Attrs: map[string]string{}}
			rest := f[5:]
			// A date and a time (a timeformat with a space).
			if len(rest) > 0 && strings.Count(f[4], "-") == 2 && strings.Contains(rest[0], ":") {
				p.Since += " " + rest[0]
				rest = rest[1:]
			}
			p.Info = strings.Join(rest, " ")
			out = append(out, p)
			ch, capsIndent = nil, -1
		case codeProtocolDetails:
			if len(out) == 0 {
				return nil, fmt.Errorf("protocol details %q before a protocol", l.Text)
			}
			p := &out[len(out)-1]
			text := strings.TrimRight(l.Text, " ")
			trimmed := strings.TrimLeft(text, " ")
			if trimmed == "" {
				continue
			}
			indent := len(text) - len(trimmed)
			if capsIndent >= 0 {
				if indent > capsIndent {
					continue
				}
				capsIndent = -1
			}
			if name, ok := strings.CutPrefix(trimmed, "Channel "); ok && !strings.Contains(name, ":") {
				p.Channels = append(p.Channels, Channel{Name: name, Attrs: map[string]string{}})
				ch = &p.Channels[len(p.Channels)-1]
				continue
			}
			if strings.HasSuffix(trimmed, "capabilities") {
				capsIndent = indent
				continue
			}
			k, v, ok := strings.Cut(trimmed, ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if ch == nil {
				p.Attrs[k] = v
				continue
			}
			ch.Attrs[k] = v
			switch k {
			case "State":
				ch.State = v
			case "Table":
				ch.Table = v
			case "Routes":
				// "0 imported, 2 exported, 0 preferred" (some protocols
				// add "N filtered" or leave out words)
				for _, part := range strings.Split(v, ",") {
					f := strings.Fields(part)
					if len(f) != 2 {
						continue
					}
					n, err := strconv.Atoi(f[0])
					if err != nil {
						return nil, fmt.Errorf("protocol %s channel %s routes %q: %w", p.Name, ch.Name, v, err)
					}
					switch f[1] {
					case "imported":
						ch.Imported = n
					case "exported":
						ch.Exported = n
					case "preferred":
						ch.Preferred = n
					}
				}
			}
		}
	}
	return out, nil
}

// Route is one route of `show route … all`.
type Route struct {
	// Table is the routing table ("master4").
	Table string
	Net   netip.Prefix
	// Dest is BIRD's destination type: unicast, unreachable, blackhole,
	// prohibited.
	Dest     string
	Protocol string // the protocol that brought it (e.g. "dynbgp1")
	// From is the neighbor it came from when that is not its next hop.
	From netip.Addr
	// Primary is the table's best route for the net ("*").
	Primary    bool
	Preference int
	// Info is the rest of the route's line (for BGP "[AS64513i]").
	Info     string
	NextHops []NextHop
	// Type is the "Type:" line ("BGP univ").
	Type string
	// Attrs are the route's attribute lines ("BGP.local_pref": "250").
	Attrs map[string]string
	// BGP holds the BGP attributes, nil for a route without them.
	BGP *BGPAttrs
}

// NextHop is one "via" (or "dev") line of a route.
type NextHop struct {
	Gateway   netip.Addr // invalid for a device route
	Interface string
	Weight    int // 0 unless BIRD printed one (multipath)
}

// BGPAttrs are a route's BGP attributes as BIRD holds them after import
// (an eBGP route gets BIRD's default local preference, 100).
type BGPAttrs struct {
	Origin string
	// ASPath as BIRD prints it: AS numbers separated by spaces, empty
	// for a route of the router's own AS.
	ASPath string
	// NextHop is BGP.next_hop: the global address and, for IPv6, the
	// link-local one if the neighbor sent it.
	NextHop          []netip.Addr
	LocalPref        *uint32
	MED              *uint32
	Communities      []community.Community
	LargeCommunities []community.Large
}

var (
	routeHead = regexp.MustCompile(`^(\S+)?\s+(\S+) \[(\S+) ([^\]]*?)(?: from (\S+))?\]( [*!])? \((\d+)(?:/[^)]*)?\)\s*(.*)$`)
	commRE    = regexp.MustCompile(`^\((\d+),\s*(\d+)\)$`)
	largeRE   = regexp.MustCompile(`^\((\d+),\s*(\d+),\s*(\d+)\)$`)
	pairRE    = regexp.MustCompile(`\([^)]*\)`)
)

// ParseRoutes reads the reply to `show route … all`.
func ParseRoutes(lines []Line) ([]Route, error) {
	var out []Route
	table := ""
	var net netip.Prefix
	for _, l := range lines {
		text := strings.TrimRight(l.Text, " ")
		switch {
		case l.Code != codeRouteList && l.Code != codeRouteDetails && l.Code != codeRouteAttrs:
			continue
		case strings.TrimSpace(text) == "":
			continue
		case l.Code == codeRouteList && strings.HasPrefix(text, "Table ") && strings.HasSuffix(text, ":"):
			table = strings.TrimSuffix(strings.TrimPrefix(text, "Table "), ":")
			continue
		case strings.HasPrefix(text, "\t"):
			if len(out) == 0 {
				return nil, fmt.Errorf("route detail %q before a route", text)
			}
			if err := parseRouteDetail(&out[len(out)-1], strings.TrimSpace(text)); err != nil {
				return nil, err
			}
			continue
		}
		m := routeHead.FindStringSubmatch(text)
		if m == nil {
			return nil, fmt.Errorf("route line %q: not understood", text)
		}
		if m[1] != "" {
			p, err := netip.ParsePrefix(m[1])
			if err != nil {
				return nil, fmt.Errorf("route line %q: %w", text, err)
			}
			net = p
		}
		if !net.IsValid() {
			return nil, fmt.Errorf("route line %q without a net before it", text)
		}
		r := Route{Table: table, Net: net, Dest: m[2], Protocol: m[3], Primary: m[6] != "", Info: m[8], Attrs: map[string]string{}}
		if m[5] != "" {
			a, err := netip.ParseAddr(m[5])
			if err != nil {
				return nil, fmt.Errorf("route line %q: %w", text, err)
			}
			r.From = a
		}
		r.Preference, _ = strconv.Atoi(m[7])
		out = append(out, r)
	}
	for i := range out {
		if err := out[i].parseBGP(); err != nil {
			return nil, fmt.Errorf("route %s from %s: %w", out[i].Net, out[i].Protocol, err)
		}
	}
	return out, nil
}

// parseRouteDetail reads one line under a route: a next hop, its type or
// an attribute.
func parseRouteDetail(r *Route, s string) error {
	f := strings.Fields(s)
	switch {
	case f[0] == "via" && len(f) >= 2:
		gw, err := netip.ParseAddr(f[1])
		if err != nil {
			return fmt.Errorf("route %s: next hop %q: %w", r.Net, s, err)
		}
		nh := NextHop{Gateway: gw}
		for i := 2; i+1 < len(f); i++ {
			switch f[i] {
			case "on":
				nh.Interface = f[i+1]
			case "weight":
				nh.Weight, _ = strconv.Atoi(f[i+1])
			}
		}
		r.NextHops = append(r.NextHops, nh)
	case f[0] == "dev" && len(f) >= 2:
		r.NextHops = append(r.NextHops, NextHop{Interface: f[1]})
	default:
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return fmt.Errorf("route %s: detail %q not understood", r.Net, s)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "Type" {
			r.Type = v
		} else {
			r.Attrs[k] = v
		}
	}
	return nil
}

// parseBGP fills r.BGP from the BGP.* attributes.
func (r *Route) parseBGP() error {
	var b BGPAttrs
	found := false
	for k, v := range r.Attrs {
		name, ok := strings.CutPrefix(k, "BGP.")
		if !ok {
			continue
		}
		found = true
		switch name {
		case "origin":
			b.Origin = v
		case "as_path":
			b.ASPath = v
		case "next_hop":
			for _, s := range strings.Fields(v) {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("BGP.next_hop %q: %w", v, err)
				}
				b.NextHop = append(b.NextHop, a)
			}
		case "local_pref", "med":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fmt.Errorf("BGP.%s %q: %w", name, v, err)
			}
			u := uint32(n)
			if name == "med" {
				b.MED = &u
			} else {
				b.LocalPref = &u
			}
		case "community":
			cs, err := parseCommunities(v)
			if err != nil {
				return err
			}
			b.Communities = cs
		case "large_community":
			ls, err := parseLargeCommunities(v)
			if err != nil {
				return err
			}
			b.LargeCommunities = ls
		}
	}
	if found {
		r.BGP = &b
	}
	return nil
}

// parseCommunities reads "(65000,100) (65535,65281)".
func parseCommunities(v string) ([]community.Community, error) {
	var out []community.Community
	for _, s := range pairRE.FindAllString(v, -1) {
		m := commRE.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("BGP.community %q: %q is not (ASN,VALUE)", v, s)
		}
		hi, err1 := strconv.ParseUint(m[1], 10, 16)
		lo, err2 := strconv.ParseUint(m[2], 10, 16)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("BGP.community %q: %w", v, err)
		}
		out = append(out, community.Community(hi<<16|lo))
	}
	if len(out) == 0 && strings.TrimSpace(v) != "" {
		return nil, fmt.Errorf("BGP.community %q: no communities", v)
	}
	return out, nil
}

// parseLargeCommunities reads "(64512, 1, 2) (64512, 3, 4)".
func parseLargeCommunities(v string) ([]community.Large, error) {
	var out []community.Large
	for _, s := range pairRE.FindAllString(v, -1) {
		m := largeRE.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("BGP.large_community %q: %q is not (GLOBAL, LOCAL1, LOCAL2)", v, s)
		}
		var n [3]uint32
		for i := range n {
			x, err := strconv.ParseUint(m[i+1], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("BGP.large_community %q: %w", v, err)
			}
			n[i] = uint32(x)
		}
		out = append(out, community.Large{Global: n[0], Local1: n[1], Local2: n[2]})
	}
	if len(out) == 0 && strings.TrimSpace(v) != "" {
		return nil, fmt.Errorf("BGP.large_community %q: no large communities", v)
	}
	return out, nil
}

// BFDSession is one line of `show bfd sessions`.
type BFDSession struct {
	Protocol  string // the BFD protocol ("bfd1")
	Address   netip.Addr
	Interface string
	State     string // Up, Down, Init, AdminDown
	Since     string
	// Interval is the transmit interval in use, Timeout the detection
	// time.
	Interval, Timeout time.Duration
}

// ParseBFDSessions reads the reply to `show bfd sessions`.
func ParseBFDSessions(lines []Line) ([]BFDSession, error) {
	var out []BFDSession
	proto := ""
	for _, l := range lines {
		if l.Code != codeBFDSessions {
			continue
		}
		t := strings.TrimSpace(l.Text)
		switch {
		case t == "" || strings.HasPrefix(t, "IP address"):
			continue
		case strings.HasSuffix(t, ":") && !strings.Contains(t, " "):
			proto = strings.TrimSuffix(t, ":")
			continue
		}
		f := strings.Fields(t)
		if len(f) < 6 {
			return nil, fmt.Errorf("BFD session line %q: want address, interface, state, since, interval, timeout", t)
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			return nil, fmt.Errorf("BFD session line %q: %w", t, err)
		}
		s := BFDSession{Protocol: proto, Address: a, Interface: f[1], State: f[2], Since: strings.Join(f[3:len(f)-2], " ")}
		for i, d := range []*time.Duration{&s.Interval, &s.Timeout} {
			x, err := strconv.ParseFloat(f[len(f)-2+i], 64)
			if err != nil {
				return nil, fmt.Errorf("BFD session line %q: %w", t, err)
			}
			*d = time.Duration(x * float64(time.Second)).Round(time.Millisecond)
		}
		out = append(out, s)
	}
	return out, nil
}

// Protocols returns every protocol with its details (`show protocols
// all`).
func (r *Router) Protocols(ctx context.Context) ([]Protocol, error) {
	lines, err := r.Command(ctx, "show", "protocols", "all")
	if err != nil {
		return nil, err
	}
	return ParseProtocols(lines)
}

// Protocol returns one protocol with its details (`show protocols all
// NAME`).
func (r *Router) Protocol(ctx context.Context, name string) (Protocol, error) {
	lines, err := r.Command(ctx, "show", "protocols", "all", name)
	if err != nil {
		return Protocol{}, err
	}
	ps, err := ParseProtocols(lines)
	if err != nil {
		return Protocol{}, err
	}
	if len(ps) != 1 {
		return Protocol{}, fmt.Errorf("bird: show protocols all %s: %d protocols", name, len(ps))
	}
	return ps[0], nil
}

// BGPNeighbor returns the BGP protocol whose neighbor is addr: a
// configured one, or one BIRD spawned for a connection to a `neighbor
// range` (dynamic BGP: named after the range's template, "dynbgp1" or
// the `dynamic name`). Of several, an established one. ok is false
// without one.
func (r *Router) BGPNeighbor(ctx context.Context, addr netip.Addr) (p Protocol, ok bool, err error) {
	ps, err := r.Protocols(ctx)
	if err != nil {
		return Protocol{}, false, err
	}
	return FindBGPNeighbor(ps, addr)
}

// FindBGPNeighbor is BGPNeighbor's choice among protocols.
func FindBGPNeighbor(ps []Protocol, addr netip.Addr) (Protocol, bool, error) {
	var found []Protocol
	for _, p := range ps {
		if p.Proto == "BGP" && p.NeighborAddress() == addr {
			found = append(found, p)
		}
	}
	for _, p := range found {
		if p.BGPState() == "Established" {
			return p, true, nil
		}
	}
	if len(found) > 0 {
		return found[0], true, nil
	}
	return Protocol{}, false, nil
}

// Routes returns the routes for exactly prefix in every table of its
// family (`show route PREFIX all`); none when BIRD has none.
func (r *Router) Routes(ctx context.Context, prefix netip.Prefix) ([]Route, error) {
	lines, err := r.Command(ctx, "show", "route", prefix.String(), "all")
	var re *ReplyError
	if errors.As(err, &re) && re.Code == codeNetworkNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rs, err := ParseRoutes(lines)
	if err != nil {
		return nil, err
	}
	out := rs[:0]
	for _, x := range rs {
		if x.Net == prefix {
			out = append(out, x)
		}
	}
	return out, nil
}

// BFDSessions returns the sessions of every BFD protocol (`show bfd
// sessions`).
func (r *Router) BFDSessions(ctx context.Context) ([]BFDSession, error) {
	lines, err := r.Command(ctx, "show", "bfd", "sessions")
	if err != nil {
		return nil, err
	}
	return ParseBFDSessions(lines)
}
