// Package bgp is Herald's BGP speaker: a thin wrapper around GoBGP
// (github.com/osrg/gobgp/v4) used as a library, that announces a node's
// service addresses to its routers.
//
// The speaker only announces. It dials out to its peers (it does not listen
// unless Config.ListenPort asks for it), rejects every route a peer sends,
// and originates the routes SetRoutes gives it. The caller describes the
// whole desired state each time (SetPeers, SetRoutes) and the speaker
// applies only the difference, so an unchanged route is never re-sent and
// an unchanged session never reset.
//
// Sessions reports each peer's state; Changes signals when it may have
// changed, so that a caller can write its status only on change. Stop
// withdraws every route and waits until the withdrawals are sent (plus a
// short grace for the routers to act on them) before it closes the
// sessions.
//
// The speaker uses the network namespace of the threads GoBGP's goroutines
// run on, that is of the whole process: GoBGP dials from goroutines of its
// own, so one process cannot pin a speaker to another namespace.
package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Config is the speaker's global configuration.
type Config struct {
	// RouterID is the BGP identifier, an IPv4 address (RFC 4271), usually
	// the node's IPv4 address; required, also on IPv6-only nodes.
	RouterID netip.Addr
	// ASN is the local AS number; Peer.LocalASN may override it per peer.
	ASN uint32
	// ListenPort, when positive, makes the speaker accept connections on
	// that TCP port too. 0 (the default) and -1 mean it only dials out:
	// Herald's agent runs on the node's network and must not take port
	// 179 from anything else there.
	ListenPort int32
	// Logger receives GoBGP's logs; nil discards them.
	Logger *slog.Logger
	// WithdrawGrace is how long Stop waits after the withdrawals have
	// been written to every session before it closes them, for the
	// routers to process them first (a closed session makes a router
	// drop the routes too, but only after it noticed; with graceful
	// restart it would keep them). 0 means DefaultWithdrawGrace.
	WithdrawGrace time.Duration
}

// DefaultWithdrawGrace is Config.WithdrawGrace's default.
const DefaultWithdrawGrace = 500 * time.Millisecond

// bfdPollInterval is how often the speaker reads the BFD sessions' states,
// only while some peer has BFD: GoBGP raises no event when a BFD session
// comes up (only when it goes down, through the BGP session's reset).
const bfdPollInterval = time.Second

// Speaker is one BGP speaker. Its methods may be called from any
// goroutine.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv *server.BgpServer

	// mu serializes the calls that change GoBGP's configuration and
	// guards the fields below.
	mu      sync.Mutex
	started bool
	stopped bool
	peers   map[netip.Addr]Peer
	routes  map[netip.Prefix][]Route // as routeTable gives them
	ids     map[netip.Addr]uint32    // export mark of each peer address, see export.go
	nextID  uint32
	// attrs numbers the attribute sets of the prefixes given in several
	// routes, nextAttrs is the next number (export.go).
	attrs     map[string]uint32
	nextAttrs uint32
	// stmts are the attribute sets' export statements installed, with
	// the attributes each sets.
	stmts map[attrsPair]Route
	armed map[netip.Addr]bool // peers whose BFD runs in GoBGP, see armBFD

	// track holds what the speaker learnt about the sessions from GoBGP's
	// events and logs; it has its own lock because GoBGP's goroutines
	// write it while a SetPeers call may hold mu.
	track   tracker
	changes chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks cfg and returns a speaker that is not started yet.
func New(cfg Config) (*Speaker, error) {
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("router ID %v: must be an IPv4 address", cfg.RouterID)
	}
	if cfg.ASN == 0 {
		return nil, errors.New("local ASN is required")
	}
	if cfg.ListenPort < -1 || cfg.ListenPort > 65535 {
		return nil, fmt.Errorf("listen port %d: want 1-65535, or 0 or -1 for none", cfg.ListenPort)
	}
	if cfg.WithdrawGrace < 0 {
		return nil, fmt.Errorf("withdraw grace %v is negative", cfg.WithdrawGrace)
	}
	if cfg.WithdrawGrace == 0 {
		cfg.WithdrawGrace = DefaultWithdrawGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{
		cfg:       cfg,
		log:       log,
		peers:     map[netip.Addr]Peer{},
		routes:    map[netip.Prefix][]Route{},
		ids:       map[netip.Addr]uint32{},
		nextID:    1,
		attrs:     map[string]uint32{},
		stmts:     map[attrsPair]Route{},
		nextAttrs: firstAttrsTag,
		armed:     map[netip.Addr]bool{},
		changes:   make(chan struct{}, 1),
	}
	s.track.init(s.signal)
	hook := &logHook{inner: log.Handler(), note: s.track.failed}
	s.srv = server.NewBgpServer(server.LoggerOption(slog.New(hook), nil))
	return s, nil
}

// Start starts the BGP server: no session yet (SetPeers adds them). The
// speaker runs until Stop, whatever happens to ctx, which bounds only the
// start itself.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("speaker already started")
	}
	go s.srv.Serve()
	port := s.cfg.ListenPort
	if port == 0 {
		port = -1 // GoBGP reads 0 as 179
	}
	err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        s.cfg.ASN,
		RouterId:   s.cfg.RouterID.String(),
		ListenPort: port,
	}})
	if err == nil {
		err = s.setupPolicies(ctx)
	}
	var watchCtx context.Context
	if err == nil {
		watchCtx, s.cancel = context.WithCancel(context.Background())
		err = s.srv.WatchEvent(watchCtx, server.WatchEventMessageCallbacks{
			OnPeerUpdate: s.track.peerEvent,
		}, server.WatchPeer())
	}
	if err != nil {
		if s.cancel != nil {
			s.cancel()
		}
		s.srv.Stop()
		s.stopped = true
		return fmt.Errorf("start BGP: %w", err)
	}
	s.started = true
	s.wg.Add(1)
	go s.pollBFD(watchCtx)
	s.log.Info("BGP speaker started", "routerID", s.cfg.RouterID, "asn", s.cfg.ASN, "listenPort", s.cfg.ListenPort)
	return nil
}

// setupPolicies installs the import and export policies (export.go).
func (s *Speaker) setupPolicies(ctx context.Context) error {
	for _, p := range []*api.Policy{stripPolicy(), importPolicy()} {
		if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p}); err != nil {
			return fmt.Errorf("add policy %s: %w", p.Name, err)
		}
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: exportAssignment(nil, nil)}); err != nil {
		return fmt.Errorf("assign export policy: %w", err)
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: importAssignment()}); err != nil {
		return fmt.Errorf("assign import policy: %w", err)
	}
	return nil
}

// running is checked under mu by every call that needs the server.
func (s *Speaker) running() error {
	switch {
	case !s.started && !s.stopped:
		return errors.New("speaker not started")
	case s.stopped:
		return errors.New("speaker stopped")
	}
	return nil
}

// peerID returns the export mark number of a peer address (export.go),
// assigning one on first use.
func (s *Speaker) peerID(a netip.Addr) uint32 {
	id, ok := s.ids[a]
	if !ok {
		id = s.nextID
		s.nextID++
		s.ids[a] = id
	}
	return id
}

// SetPeers makes the configured peers exactly peers: it adds the new ones,
// removes the missing ones (closing their sessions), sets up again the
// sessions whose settings changed and updates BFD in place when only BFD
// changed. Invalid input changes nothing. If GoBGP refuses a change, the
// others are still made and the error names what failed; calling again
// with the same peers retries only that.
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	desired, err := peerTable(peers)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.running(); err != nil {
		return err
	}
	d := diffPeers(s.peers, desired)
	var errs []error

	for _, a := range d.Remove {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", a, err))
			continue
		}
		delete(s.peers, a)
		delete(s.armed, a)
		s.track.remove(a)
		s.log.Info("BGP peer removed", "peer", a)
	}
	// The export statements of new peers exist before their sessions
	// can come up, so a new peer never sees a route that is not its own.
	var added []Peer
	for _, p := range d.Add {
		if err := s.addExport(ctx, p.Address); err != nil {
			errs = append(errs, err)
			continue
		}
		added = append(added, p)
	}
	if err := s.assignExport(ctx, added, s.stmtList(nil)); err != nil {
		errs = append(errs, err)
		added = nil
	}
	for _, a := range d.Remove {
		if _, still := s.peers[a]; !still {
			s.deleteExport(ctx, a)
		}
	}
	for _, p := range added {
		s.track.add(p.Address, p.BFD != nil)
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerToAPI(p, false)}); err != nil {
			s.track.remove(p.Address)
			errs = append(errs, fmt.Errorf("add peer %s: %w", p.Address, err))
			continue
		}
		s.peers[p.Address] = p
		s.log.Info("BGP peer added", "peer", p.Address, "peerASN", p.PeerASN)
	}
	for _, p := range d.Reset {
		// Deleting first sends the old session a Cease, as GoBGP's
		// UpdatePeer does for a changed ASN or address.
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("reconfigure peer %s: %w", p.Address, err))
			continue
		}
		delete(s.peers, p.Address)
		delete(s.armed, p.Address)
		s.track.add(p.Address, p.BFD != nil)
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerToAPI(p, false)}); err != nil {
			s.track.remove(p.Address)
			errs = append(errs, fmt.Errorf("reconfigure peer %s: %w", p.Address, err))
			continue
		}
		s.peers[p.Address] = p
		s.log.Info("BGP peer reconfigured", "peer", p.Address)
	}
	for _, p := range d.UpdateBFD {
		// A running BFD session is changed or stopped at once; a new
		// one waits for armBFD like any other.
		if s.armed[p.Address] {
			if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: peerToAPI(p, p.BFD != nil)}); err != nil {
				errs = append(errs, fmt.Errorf("update BFD of peer %s: %w", p.Address, err))
				continue
			}
			s.armed[p.Address] = p.BFD != nil
		}
		s.peers[p.Address] = p
		s.track.setBFD(p.Address, p.BFD != nil)
		s.log.Info("BGP peer's BFD updated", "peer", p.Address, "bfd", p.BFD != nil)
	}
	s.signal()
	return errors.Join(errs...)
}

// addExport creates a new peer's export statement (export.go).
func (s *Speaker) addExport(ctx context.Context, a netip.Addr) error {
	id := s.peerID(a)
	neighbors, marks := peerExportSets(a, id)
	for _, set := range []*api.DefinedSet{neighbors, marks} {
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set, Replace: true}); err != nil {
			return fmt.Errorf("add export policy of peer %s: %w", a, err)
		}
	}
	// A policy left by an earlier failed attempt is replaced.
	_ = s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: peerPolicyName(id)}, All: true})
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: peerExportPolicy(id)}); err != nil {
		return fmt.Errorf("add export policy of peer %s: %w", a, err)
	}
	return nil
}

// assignExport sets the global export policy list to the statements of
// the configured peers plus extra, then the attribute sets' statements
// stmts, then the stripping of the marks.
func (s *Speaker) assignExport(ctx context.Context, extra []Peer, stmts []attrsPair) error {
	var addrs []netip.Addr
	for a := range s.peers {
		addrs = append(addrs, a)
	}
	for _, p := range extra {
		addrs = append(addrs, p.Address)
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	ids := make([]uint32, len(addrs))
	for i, a := range addrs {
		ids[i] = s.peerID(a)
	}
	names := make([]string, len(stmts))
	for i, st := range stmts {
		names[i] = attrsPolicyName(st.attrs, s.peerID(st.peer))
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: exportAssignment(ids, names)}); err != nil {
		return fmt.Errorf("assign export policies: %w", err)
	}
	return nil
}

// stmtList returns the installed attribute statements plus extra, less
// those in drop, in a stable order.
func (s *Speaker) stmtList(extra []attrsPair, drop ...map[attrsPair]bool) []attrsPair {
	out := slices.Collect(maps.Keys(s.stmts))
	out = append(out, extra...)
	if len(drop) > 0 {
		out = slices.DeleteFunc(out, func(st attrsPair) bool { return drop[0][st] })
	}
	slices.SortFunc(out, func(a, b attrsPair) int {
		return cmp.Or(cmp.Compare(a.attrs, b.attrs), a.peer.Compare(b.peer))
	})
	return slices.Compact(out)
}

// deleteExport removes a removed peer's statement and sets. Failures only
// leave an unused policy behind, so they are logged, not returned.
func (s *Speaker) deleteExport(ctx context.Context, a netip.Addr) {
	id := s.peerID(a)
	name := peerPolicyName(id)
	if err := s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true}); err != nil {
		s.log.Debug("delete export policy", "peer", a, "err", err)
	}
	neighbors, marks := peerExportSets(a, id)
	for _, set := range []*api.DefinedSet{neighbors, marks} {
		if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set, All: true}); err != nil {
			s.log.Debug("delete export set", "peer", a, "err", err)
		}
	}
}

// SetRoutes makes the advertised routes exactly routes: new and changed
// prefixes are (re-)advertised, missing ones withdrawn, unchanged ones left
// alone. A prefix may be given several times with different attributes for
// disjoint peers (see Route). Invalid input changes nothing. If GoBGP
// refuses some, the others are still applied and the error names what
// failed.
func (s *Speaker) SetRoutes(ctx context.Context, routes []Route) error {
	desired, err := routeTable(routes)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.running(); err != nil {
		return err
	}
	d := diffRoutes(s.routes, desired)
	var errs []error
	if len(d.Put) > 0 {
		// The statements of the new paths' attribute sets first.
		need := map[attrsPair]Route{}
		for _, pfx := range d.Put {
			s.stmtsOf(desired[pfx], need)
		}
		failed, err := s.addStatements(ctx, need)
		if err != nil {
			errs = append(errs, err)
		}
		paths := make([]*apiutil.Path, 0, len(d.Put))
		put := make([]netip.Prefix, 0, len(d.Put))
		for _, pfx := range d.Put {
			rs := desired[pfx]
			if s.missesStatement(rs, failed) {
				errs = append(errs, fmt.Errorf("advertise %s: the export statements of its attributes are missing", pfx))
				continue
			}
			p, err := s.pathOf(rs)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			paths = append(paths, p)
			put = append(put, pfx)
		}
		if len(paths) > 0 {
			resps, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: paths})
			if err != nil && len(resps) != len(put) {
				errs = append(errs, fmt.Errorf("advertise %d routes: %w", len(put), err))
			} else {
				for i, pfx := range put {
					if resps[i].Error != nil {
						errs = append(errs, fmt.Errorf("advertise %s: %w", pfx, resps[i].Error))
						continue
					}
					s.routes[pfx] = desired[pfx]
				}
			}
		}
	}
	if len(d.Withdraw) > 0 {
		paths := make([]*apiutil.Path, 0, len(d.Withdraw))
		for _, pfx := range d.Withdraw {
			p, err := s.pathOf(s.routes[pfx])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.Withdrawal = true
			paths = append(paths, p)
		}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d routes: %w", len(paths), err))
		} else {
			for _, pfx := range d.Withdraw {
				delete(s.routes, pfx)
			}
		}
	}
	s.pruneStatements(ctx)
	if len(d.Put) > 0 || len(d.Withdraw) > 0 {
		s.log.Debug("BGP routes updated", "advertised", len(d.Put), "withdrawn", len(d.Withdraw), "total", len(s.routes), "attributeStatements", len(s.stmts))
		s.signal() // the peers' advertised counts changed
	}
	return errors.Join(errs...)
}

// pathOf builds the path of a prefix's routes (export.go): the route's
// attributes when there is one, none (LOCAL_PREF 0) when there are
// several, and the marks.
func (s *Speaker) pathOf(rs []Route) (*apiutil.Path, error) {
	marks := routeMarks(rs, s.peerID, s.attrsID)
	if len(rs) == 1 {
		return routeToPath(rs[0], marks)
	}
	zero := uint32(0)
	return routeToPath(Route{Prefix: rs[0].Prefix, LocalPref: &zero}, marks)
}

// attrsID returns the number of a route's attribute set, assigning one on
// first use.
func (s *Speaker) attrsID(r Route) uint32 {
	k := attrsKey(r)
	id, ok := s.attrs[k]
	if !ok {
		id = s.nextAttrs
		s.nextAttrs++
		s.attrs[k] = id
	}
	return id
}

// stmtsOf adds to out the attribute statements a prefix's routes need:
// none for one route, one per route and peer for several.
func (s *Speaker) stmtsOf(rs []Route, out map[attrsPair]Route) {
	if len(rs) < 2 {
		return
	}
	for _, r := range rs {
		a := s.attrsID(r)
		for _, p := range r.Peers {
			out[attrsPair{attrs: a, peer: p}] = r
		}
	}
}

// missesStatement reports whether a statement a prefix's routes need is
// among failed.
func (s *Speaker) missesStatement(rs []Route, failed map[attrsPair]bool) bool {
	if len(failed) == 0 {
		return false
	}
	need := map[attrsPair]Route{}
	s.stmtsOf(rs, need)
	for st := range need {
		if failed[st] {
			return true
		}
	}
	return false
}

// addStatements installs the attribute statements of need that are not
// installed yet, and returns those it could not install.
func (s *Speaker) addStatements(ctx context.Context, need map[attrsPair]Route) (map[attrsPair]bool, error) {
	failed := map[attrsPair]bool{}
	var errs []error
	var added []attrsPair
	for st, r := range need {
		if _, ok := s.stmts[st]; ok {
			continue
		}
		if err := s.addAttrsExport(ctx, st, r); err != nil {
			errs = append(errs, err)
			failed[st] = true
			continue
		}
		added = append(added, st)
	}
	if len(added) == 0 {
		return failed, errors.Join(errs...)
	}
	if err := s.assignExport(ctx, nil, s.stmtList(added)); err != nil {
		for _, st := range added {
			failed[st] = true
		}
		return failed, errors.Join(append(errs, err)...)
	}
	for _, st := range added {
		s.stmts[st] = need[st]
	}
	return failed, errors.Join(errs...)
}

// addAttrsExport creates one attribute set's statement towards one peer.
func (s *Speaker) addAttrsExport(ctx context.Context, st attrsPair, r Route) error {
	id := s.peerID(st.peer)
	neighbors, marks := attrsExportSets(st.peer, st.attrs, id)
	for _, set := range []*api.DefinedSet{neighbors, marks} {
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set, Replace: true}); err != nil {
			return fmt.Errorf("add export statement of attributes %s for peer %s: %w", r.describeAttributes(), st.peer, err)
		}
	}
	// A policy left by an earlier failed attempt is replaced.
	_ = s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: attrsPolicyName(st.attrs, id)}, All: true})
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: attrsExportPolicy(r, st.attrs, id)}); err != nil {
		return fmt.Errorf("add export statement of attributes %s for peer %s: %w", r.describeAttributes(), st.peer, err)
	}
	return nil
}

// pruneStatements removes the attribute statements no advertised path
// needs any more, and forgets the numbers of attribute sets no statement
// uses. Failures only leave unused statements behind (removed on a later
// call), so they are logged, not returned.
func (s *Speaker) pruneStatements(ctx context.Context) {
	need := map[attrsPair]Route{}
	for _, rs := range s.routes {
		s.stmtsOf(rs, need)
	}
	unused := map[attrsPair]bool{}
	for st := range s.stmts {
		if _, ok := need[st]; !ok {
			unused[st] = true
		}
	}
	if len(unused) > 0 {
		if err := s.assignExport(ctx, nil, s.stmtList(nil, unused)); err != nil {
			s.log.Warn("unused export statements not removed", "statements", len(unused), "err", err)
		} else {
			for st := range unused {
				delete(s.stmts, st)
				s.deleteAttrsExport(ctx, st)
			}
		}
	}
	used := map[uint32]bool{}
	for st := range s.stmts {
		used[st.attrs] = true
	}
	for st := range need {
		used[st.attrs] = true
	}
	maps.DeleteFunc(s.attrs, func(_ string, id uint32) bool { return !used[id] })
}

// deleteAttrsExport removes one attribute statement and its sets.
func (s *Speaker) deleteAttrsExport(ctx context.Context, st attrsPair) {
	id := s.peerID(st.peer)
	if err := s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: attrsPolicyName(st.attrs, id)}, All: true}); err != nil {
		s.log.Debug("delete export statement", "peer", st.peer, "attrs", st.attrs, "err", err)
	}
	neighbors, marks := attrsExportSets(st.peer, st.attrs, id)
	for _, set := range []*api.DefinedSet{neighbors, marks} {
		if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set, All: true}); err != nil {
			s.log.Debug("delete export set", "peer", st.peer, "attrs", st.attrs, "err", err)
		}
	}
}

// Sessions returns the state of every configured peer's session, sorted by
// peer address.
func (s *Speaker) Sessions(ctx context.Context) ([]Session, error) {
	s.mu.Lock()
	err := s.running()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var out []Session
	err = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil {
			return
		}
		addr, err := netip.ParseAddr(p.Conf.NeighborAddress)
		if err != nil {
			return
		}
		ses := Session{
			Peer:     addr,
			PeerASN:  p.Conf.PeerAsn,
			LocalASN: p.Conf.LocalAsn,
			State:    apiSessionState(p.State.SessionState),
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				ses.RoutesAdvertised += int(af.State.Advertised)
			}
		}
		if t, ok := s.track.get(addr); ok {
			ses.Since, ses.LastError, ses.BFD = t.since, t.lastError, t.bfd
			if t.state != ses.State {
				// An event not yet delivered: the state is newer
				// than the time we have for it.
				ses.Since = time.Time{}
			}
		}
		if ses.State == StateEstablished && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			ses.Since = p.Timers.State.Uptime.AsTime()
		}
		out = append(out, ses)
	})
	if err != nil {
		return nil, fmt.Errorf("list BGP peers: %w", err)
	}
	slices.SortFunc(out, func(a, b Session) int { return a.Peer.Compare(b.Peer) })
	return out, nil
}

// Changes returns a channel that receives a value when a session's state,
// last error or BFD state changes, or the advertised routes change. It
// holds at most one pending value (changes in a burst are merged), so a
// reader calls Sessions after each value and writes its status when that
// differs from what it wrote last.
func (s *Speaker) Changes() <-chan struct{} { return s.changes }

func (s *Speaker) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// pollBFD reads the BFD states while some peer has BFD.
func (s *Speaker) pollBFD(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(bfdPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.track.anyBFD() {
			continue
		}
		s.armBFD(ctx)
		states := map[netip.Addr]BFDState{}
		s.srv.ListBfdPeer(ctx, func(addr string, st *api.BfdPeerState) {
			if a, err := netip.ParseAddr(addr); err == nil && st != nil {
				states[a] = bfdState(st.SessionState)
			}
		})
		s.track.bfdStates(states)
	}
}

// bfdArmDelay is how long a BGP session must have been established before
// the speaker starts its BFD session.
//
// GoBGP v4.8.0 starts BFD with the peer and, when a BFD session that never
// came up expires, resets the BGP session all the same (RFC 5882 §3.2 only
// asks that for sessions that were up). FRR's bgpd creates its BFD session
// without a local address and, once the BGP session is established,
// replaces it with one bound to the session's addresses and a new
// discriminator; GoBGP, bound to the old discriminator by then, drops the
// new session's packets, expires after the detection time and resets a
// healthy BGP session. Starting BFD only once BGP is established avoids
// both: FRR's session is final by then. BFD guards established sessions
// only anyway: it makes their failure fast.
const bfdArmDelay = time.Second

// armBFD starts GoBGP's BFD session of each BFD peer whose BGP session has
// been established for bfdArmDelay, and stops it for those whose session
// went down (it starts again with the next session, as FRR's may be
// replaced again). GoBGP changes BFD in place, without touching the BGP
// session.
func (s *Speaker) armBFD(ctx context.Context) {
	up := s.track.established(bfdArmDelay)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	for a, p := range s.peers {
		want := p.BFD != nil && up[a]
		if want == s.armed[a] {
			continue
		}
		if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: peerToAPI(p, want)}); err != nil {
			s.log.Warn("BFD not updated", "peer", a, "start", want, "err", err)
			continue
		}
		s.armed[a] = want
		s.log.Debug("BFD session", "peer", a, "running", want)
	}
}

// Stop withdraws every route, waits until the withdrawals have been
// written to each established session that had routes (bounded by ctx),
// waits Config.WithdrawGrace more (also bounded by ctx) for the routers to
// act on them, then closes every session and stops GoBGP. The speaker
// cannot be started again. Stop of a speaker never started, or stopped, does
// nothing.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	var errs []error
	if len(s.routes) > 0 {
		if err := s.withdrawAll(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() {
		// StopBgp sends every peer a Cease NOTIFICATION (also with
		// graceful restart: the routes are gone already, so the routers
		// need not keep anything).
		s.srv.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop BGP server: %w", ctx.Err()))
	}
	s.cancel()
	s.mu.Unlock()
	// Outside mu: pollBFD may be waiting for it, to find the speaker
	// stopped.
	s.wg.Wait()
	s.log.Info("BGP speaker stopped")
	return errors.Join(errs...)
}

// withdrawAll is Stop's first part.
func (s *Speaker) withdrawAll(ctx context.Context) error {
	// The UPDATE counters of the sessions that carry routes, before.
	before := map[string]uint64{}
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil || p.State.SessionState != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		adv := uint64(0)
		for _, af := range p.AfiSafis {
			if af.State != nil {
				adv += af.State.Advertised
			}
		}
		if adv > 0 {
			before[p.Conf.NeighborAddress] = sentUpdates(p)
		}
	})
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{DeleteAll: true}); err != nil {
		return fmt.Errorf("withdraw routes: %w", err)
	}
	n := len(s.routes)
	clear(s.routes)
	s.log.Info("BGP routes withdrawn before stopping", "routes", n, "sessions", len(before))
	// Wait until each of those sessions sent an UPDATE more (the
	// withdrawal), or is no longer established.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(before) > 0 {
		err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.Conf == nil || p.State == nil {
				return
			}
			b, ok := before[p.Conf.NeighborAddress]
			if !ok {
				return
			}
			if p.State.SessionState != api.PeerState_SESSION_STATE_ESTABLISHED || sentUpdates(p) > b {
				delete(before, p.Conf.NeighborAddress)
			}
		})
		if err != nil || len(before) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the withdrawals to be sent to %d peers: %w", len(before), ctx.Err())
		case <-tick.C:
		}
	}
	t := time.NewTimer(s.cfg.WithdrawGrace)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return nil
}

func sentUpdates(p *api.Peer) uint64 {
	if p.State.Messages == nil || p.State.Messages.Sent == nil {
		return 0
	}
	return p.State.Messages.Sent.Update
}
