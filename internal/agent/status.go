package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
)

// Events the agent records.
const (
	// EventNoMatchingInterface is recorded on an L2AnnouncementPolicy that
	// selects a node but matches none of its up interfaces; the message
	// lists the node's interfaces.
	EventNoMatchingInterface = "NoMatchingInterface"
	// EventKeyMismatch is recorded on this node's HeraldNode when an agent
	// heard on a segment signs its heartbeats with other keys; the message
	// names it and both sides' key fingerprints.
	EventKeyMismatch = "KeyMismatch"
	// EventBGPSessionDown is recorded on a BGPPeer when this node's
	// session with it is not established and says why (the NOTIFICATION,
	// the connection error, the password Secret it cannot read).
	EventBGPSessionDown = "BGPSessionDown"
)

// fieldManager owns the HeraldNode status the agent applies.
const fieldManager = "herald-agent"

// statusSnapshot is the HeraldNode status as the agent's state says now.
// Everything in it changes only when the state does (no clocks), so
// equal snapshots are never written twice.
func (a *Agent) statusSnapshot() nodeReport {
	st := heraldv1.HeraldNodeStatus{
		AgentVersion:    a.opts.Version,
		Incarnation:     a.incarnationString(),
		KeyError:        a.keyErr,
		ExcludedByLabel: a.excluded,
	}
	if a.dataPlane.Mode != "" {
		dp := a.dataPlane
		dp.KernelARPInterfaces = slices.Clone(dp.KernelARPInterfaces)
		st.DataPlane = &dp
	}
	if a.keys != nil {
		st.KeyFingerprints = a.keys.Fingerprints()
	}
	st.BGP = a.bgp.snapshot()
	for i, l := range a.linkList {
		ni := heraldv1.NodeInterface{
			Name: l.Name, MAC: l.MAC, Up: l.Up, Broadcast: l.Broadcast, Loopback: l.Loopback, Enslaved: l.Enslaved,
		}
		if i < len(a.ifaces) && a.ifaces[i].Name == l.Name {
			ni.LAN = a.ifaces[i].LAN
		}
		if ni.LAN {
			for _, p := range l.Prefixes {
				if !p.Addr().IsLinkLocalUnicast() {
					ni.Addresses = append(ni.Addresses, p.String())
				}
			}
			for _, g := range l.Gateways {
				ni.Gateways = append(ni.Gateways, g.String())
			}
		}
		st.Interfaces = append(st.Interfaces, ni)
	}
	var mismatches []mismatch
	names := make([]string, 0, len(a.segments))
	for n := range a.segments {
		names = append(names, n)
	}
	sort.Strings(names)
	lan := map[string]bool{}
	for _, i := range a.ifaces {
		lan[i.Name] = i.LAN
	}
	answeredOn := map[netip.Addr][]string{}
	for _, name := range names {
		seg := a.segments[name]
		snap := seg.member.Snapshot()
		s := heraldv1.Segment{Interface: name}
		for _, p := range snap.Peers {
			s.Peers = append(s.Peers, heraldv1.SegmentPeer{Node: p.Node, MAC: p.HardwareAddr.String(), KeyFingerprints: p.Fingerprints})
		}
		for _, m := range snap.Mismatched {
			s.KeyMismatches = append(s.KeyMismatches, heraldv1.SegmentPeer{Node: m.Node, MAC: m.HardwareAddr.String(), KeyFingerprints: m.Fingerprints})
			mismatches = append(mismatches, mismatch{iface: name, node: m.Node, mac: m.HardwareAddr.String(),
				theirs: strings.Join(m.Fingerprints, ","), ours: strings.Join(snap.Fingerprints, ",")})
		}
		st.Segments = append(st.Segments, s)
		for ip := range seg.answering {
			answeredOn[ip] = append(answeredOn[ip], name)
		}
	}
	for _, ip := range sortedKeys(answeredOn) {
		ifs := answeredOn[ip]
		sort.SliceStable(ifs, func(i, j int) bool {
			if lan[ifs[i]] != lan[ifs[j]] {
				return lan[ifs[i]]
			}
			return ifs[i] < ifs[j]
		})
		st.Announcements = append(st.Announcements, heraldv1.Announcement{
			Address: ip.String(), Interfaces: ifs, Since: metav1.NewTime(a.answerSince[ip].Truncate(time.Second)),
		})
	}
	add := func(set map[netip.Addr]*conflictRecord, phase heraldv1.ConflictPhase) {
		for _, ip := range sortedKeys(set) {
			c := set[ip]
			st.Conflicts = append(st.Conflicts, heraldv1.AddressConflict{
				Address: ip.String(), MAC: c.mac, Interface: c.iface, Phase: phase, Since: metav1.NewTime(c.since.Truncate(time.Second)),
			})
		}
	}
	add(a.probeConflicts, heraldv1.ConflictProbe)
	add(a.liveConflicts, heraldv1.ConflictAnnounced)
	var problems []announce.PolicyProblem
	if a.state.planner != nil {
		problems = a.state.planner.Problems()
	}
	return nodeReport{status: st, problems: problems, mismatches: mismatches}
}

// mismatch is an agent heard with another key, for the KeyMismatch Event.
type mismatch struct {
	iface, node, mac, theirs, ours string
}

// nodeReport is what the status writer publishes.
type nodeReport struct {
	status     heraldv1.HeraldNodeStatus
	problems   []announce.PolicyProblem
	mismatches []mismatch
}

func sortedKeys[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// statusWriter keeps this node's HeraldNode in line with the agent's state:
// it creates the object (owned by the Node, so it goes with it) and applies
// the status only when it changed, batched over a short delay — steady
// state costs no API writes, and the announcing path never waits for the
// API server.
type statusWriter struct {
	client   client.Client
	recorder record.EventRecorder
	node     string
	delay    time.Duration
	log      *slog.Logger

	// syncMu serialises sync: the final flush of a stopping agent runs
	// beside the writer's own loop.
	syncMu  sync.Mutex
	mu      sync.Mutex
	want    *nodeReport
	written *heraldv1.HeraldNodeStatus
	kick    chan struct{}
	// problems are per-node policy problems already reported, so each is
	// an Event once, not once per reconcile.
	problems map[string]string
	// mismatches already reported as Events (iface/node/theirs/ours).
	mismatches map[string]bool
	// bgpErrors already reported as Events (peer/state/error).
	bgpErrors map[string]bool
	created   bool
}

func newStatusWriter(cl client.Client, recorder record.EventRecorder, node string, delay time.Duration, log *slog.Logger) *statusWriter {
	return &statusWriter{client: cl, recorder: recorder, node: node, delay: delay, log: log, kick: make(chan struct{}, 1),
		problems: map[string]string{}, mismatches: map[string]bool{}, bgpErrors: map[string]bool{}}
}

// update hands the writer the current report.
func (w *statusWriter) update(r nodeReport) {
	w.mu.Lock()
	changed := w.want == nil || !reflect.DeepEqual(w.want.status, r.status) ||
		!reflect.DeepEqual(w.want.problems, r.problems) || !reflect.DeepEqual(w.want.mismatches, r.mismatches)
	if changed {
		w.want = &r
	}
	w.mu.Unlock()
	if changed {
		signal(w.kick)
	}
}

// flush writes r at once (the agent's last report as it stops), giving up
// after a few seconds.
func (w *statusWriter) flush(ctx context.Context, r nodeReport) {
	w.update(r)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := w.sync(ctx); err != nil {
		w.log.Warn("could not write the final status", "err", err)
	}
}

// run writes the status after each change; failed writes are retried with
// backoff until they succeed or the report changes again.
func (w *statusWriter) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			// Batch: what else changes within the delay goes in the same
			// write.
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.delay):
			}
		case <-retry:
		}
		retry = nil
		if err := w.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("writing the HeraldNode status failed; will retry", "err", err, "in", backoff)
			retry = time.After(backoff)
			// At most 5 s: the report is the truth others act on, and
			// one write per 5 s is nothing for the API server.
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// sync writes the wanted status when it differs from the last written,
// and records the Events that go with it.
func (w *statusWriter) sync(ctx context.Context) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	want := w.want
	written := w.written
	w.mu.Unlock()
	if want == nil {
		return nil
	}
	w.reportProblems(ctx, want.problems)
	if err := w.ensureObject(ctx); err != nil {
		return err
	}
	w.reportMismatches(ctx, want.mismatches)
	w.reportBGP(ctx, want.status.BGP)
	if written != nil && reflect.DeepEqual(*written, want.status) {
		return nil
	}
	if err := w.apply(ctx, want.status); err != nil {
		return err
	}
	w.mu.Lock()
	st := want.status
	w.written = &st
	w.mu.Unlock()
	return nil
}

// ensureObject creates this node's HeraldNode, owned by its Node, if it is
// missing.
func (w *statusWriter) ensureObject(ctx context.Context) error {
	if w.created {
		return nil
	}
	var hn heraldv1.HeraldNode
	err := w.client.Get(ctx, client.ObjectKey{Name: w.node}, &hn)
	if err == nil {
		w.created = true
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read HeraldNode %s: %w", w.node, err)
	}
	var node corev1.Node
	if err := w.client.Get(ctx, client.ObjectKey{Name: w.node}, &node); err != nil {
		return fmt.Errorf("read Node %s to own its HeraldNode: %w", w.node, err)
	}
	hn = heraldv1.HeraldNode{ObjectMeta: metav1.ObjectMeta{
		Name: w.node,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
		}},
	}}
	if err := w.client.Create(ctx, &hn); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create HeraldNode %s: %w", w.node, err)
	}
	w.created = true
	return nil
}

// apply writes the whole status with server-side apply: the agent owns
// every field of it, and fields it no longer sets are removed.
func (w *statusWriter) apply(ctx context.Context, st heraldv1.HeraldNodeStatus) error {
	obj := &heraldv1.HeraldNode{Status: st}
	obj.Name = w.node
	obj.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("HeraldNode"))
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("encode HeraldNode status: %w", err)
	}
	delete(u["metadata"].(map[string]any), "creationTimestamp")
	ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := w.client.Status().Apply(ctx, ac, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			w.created = false // deleted meanwhile: create it again
		}
		return fmt.Errorf("apply HeraldNode %s status: %w", w.node, err)
	}
	w.log.Debug("status written", "announcements", len(st.Announcements), "conflicts", len(st.Conflicts))
	return nil
}

// reportMismatches records a KeyMismatch Event on this node's HeraldNode
// for each new (interface, node, keys) mismatch.
func (w *statusWriter) reportMismatches(ctx context.Context, ms []mismatch) {
	current := map[string]bool{}
	for _, m := range ms {
		k := m.iface + "/" + m.node + "/" + m.theirs + "/" + m.ours
		current[k] = true
		if w.mismatches[k] {
			continue
		}
		msg := fmt.Sprintf("node %s (%s) on %s signs its heartbeats with key %s, this node (%s) with %s: they cannot "+
			"authenticate each other, so both may answer for the same addresses. Make every agent read the same heartbeat "+
			"Secret (a key file or an edited Secret on one side is the usual cause)", m.node, m.mac, m.iface, m.theirs, w.node, m.ours)
		w.log.Warn("key mismatch with an agent on the segment", "peer", m.node, "mac", m.mac, "interface", m.iface, "theirs", m.theirs, "ours", m.ours)
		ref := &heraldv1.HeraldNode{}
		if err := w.client.Get(ctx, client.ObjectKey{Name: w.node}, ref); err != nil {
			continue // reported on the next change
		}
		ref.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("HeraldNode"))
		w.recorder.Eventf(ref, corev1.EventTypeWarning, EventKeyMismatch, "%s", msg)
	}
	w.mismatches = current
}

// reportBGP records a Warning Event on a BGPPeer for each new reason why
// this node's session with it is down (a NOTIFICATION, a connection that
// fails, a password it cannot read), once per distinct reason: `kubectl
// describe bgppeer` then shows what every node says.
func (w *statusWriter) reportBGP(ctx context.Context, st *heraldv1.NodeBGP) {
	current := map[string]bool{}
	if st != nil {
		for _, s := range st.Sessions {
			if s.LastError == "" || s.State == heraldv1.BGPSessionEstablished {
				continue
			}
			k := s.Peer + "/" + s.LastError
			current[k] = true
			if w.bgpErrors[k] {
				continue
			}
			w.log.Warn("BGP session down", "peer", s.Peer, "address", s.Address, "state", s.State, "err", s.LastError)
			ref := &heraldv1.BGPPeer{}
			if err := w.client.Get(ctx, client.ObjectKey{Name: s.Peer}, ref); err != nil {
				delete(current, k) // reported on the next change
				continue
			}
			ref.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("BGPPeer"))
			w.recorder.Eventf(ref, corev1.EventTypeWarning, EventBGPSessionDown, "node %s: session with %s (AS %d) is %s: %s",
				w.node, s.Address, s.PeerASN, s.State, s.LastError)
		}
	}
	w.bgpErrors = current
}

// reportProblems records an Event on each policy that selects this node but
// matches none of its interfaces, once per distinct problem. Events are
// best effort: the recorder retries and drops on its own.
func (w *statusWriter) reportProblems(ctx context.Context, problems []announce.PolicyProblem) {
	current := make(map[string]string, len(problems))
	for _, p := range problems {
		if w.problems[p.Policy] == p.Message {
			current[p.Policy] = p.Message
			continue
		}
		w.log.Warn("policy matches no interface on this node", "policy", p.Policy, "message", p.Message)
		// The cached object carries the UID that kubectl describe matches
		// Events by.
		ref := &heraldv1.L2AnnouncementPolicy{}
		if err := w.client.Get(ctx, client.ObjectKey{Name: p.Policy}, ref); err != nil {
			continue
		}
		ref.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("L2AnnouncementPolicy"))
		w.recorder.Eventf(ref, corev1.EventTypeWarning, EventNoMatchingInterface, "%s", p.Message)
		current[p.Policy] = p.Message
	}
	w.problems = current
}

// isNotFoundOrNoMatch is true for an object or a whole kind that does not
// exist (CRDs not installed yet).
func isNotFoundOrNoMatch(err error) bool {
	return apierrors.IsNotFound(err) || meta.IsNoMatchError(err)
}
