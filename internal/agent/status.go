package agent

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/announce"
	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/kube"
)

// Service condition and event written by the announcing node.
const (
	// ConditionAnnounced is True when a node answers ARP/NDP for the
	// Service's primary address; the message names the node and the
	// interface.
	ConditionAnnounced = kube.ConditionAnnounced
	// ReasonAnnounced is the reason of a True ConditionAnnounced.
	ReasonAnnounced = "Announced"
	// ReasonAddressConflict: a foreign host on the LAN uses the address.
	// The controller reads it and moves the Service to another address;
	// the message must start with the address.
	ReasonAddressConflict = controller.ReasonAddressConflict
	// EventAnnouncerChanged is recorded when another node (or interface)
	// starts announcing a Service's address.
	EventAnnouncerChanged = "AnnouncerChanged"
	// EventNoMatchingInterface is recorded on an L2AnnouncementPolicy that
	// selects a node but matches none of its up interfaces; the message
	// lists the node's interfaces.
	EventNoMatchingInterface = "NoMatchingInterface"
)

// statusWriter writes herald.dev/Announced on the Services whose primary
// address this node answers for — only when it changes, so steady state
// costs no API writes, and never on the announcing path: announcing goes on
// when the API server is unreachable.
type statusWriter struct {
	client   client.Client
	recorder record.EventRecorder
	node     string
	log      *slog.Logger

	mu    sync.Mutex
	owned map[netip.Addr]ownership
	kick  chan struct{}
	// problems are per-node policy problems already reported, so each is
	// an Event once, not once per reconcile.
	problems map[string]string
}

func newStatusWriter(cl client.Client, recorder record.EventRecorder, node string, log *slog.Logger) *statusWriter {
	return &statusWriter{client: cl, recorder: recorder, node: node, log: log, kick: make(chan struct{}, 1)}
}

// update hands the writer the current ownership and plan.
func (w *statusWriter) update(owned map[netip.Addr]ownership, plan announce.Plan) {
	w.reportProblems(plan.Problems)
	w.mu.Lock()
	changed := !maps.Equal(owned, w.owned)
	if changed {
		w.owned = owned
	}
	w.mu.Unlock()
	if changed {
		signal(w.kick)
	}
}

// run writes conditions after each ownership change; failed writes are
// retried with backoff until they succeed or ownership changes again.
func (w *statusWriter) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-retry:
		}
		retry = nil
		if err := w.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("writing Service status failed; will retry", "err", err, "in", backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// sync writes the condition on every Service whose primary address this
// node owns, when it differs.
func (w *statusWriter) sync(ctx context.Context) error {
	w.mu.Lock()
	owned := w.owned
	w.mu.Unlock()
	if len(owned) == 0 {
		return nil
	}
	var svcs corev1.ServiceList
	if err := w.client.List(ctx, &svcs); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var firstErr error
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		primary, err := netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
		if err != nil {
			continue
		}
		own, ok := owned[primary.Unmap()]
		if !ok {
			continue
		}
		cond := metav1.Condition{Type: ConditionAnnounced, ObservedGeneration: svc.Generation}
		if own.ConflictWith != "" {
			cond.Status, cond.Reason = metav1.ConditionFalse, ReasonAddressConflict
			// No node name: every node that sees the conflict writes the
			// same message, so they do not overwrite each other.
			cond.Message = fmt.Sprintf("%s is in use by another host on the LAN (%s); not announced",
				primary, own.ConflictWith)
		} else {
			cond.Status, cond.Reason = metav1.ConditionTrue, ReasonAnnounced
			cond.Message = w.announcedMessage(svc, owned)
		}
		prev := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced)
		if prev != nil && prev.Status == cond.Status && prev.Reason == cond.Reason && prev.Message == cond.Message {
			continue
		}
		updated := svc.DeepCopy()
		meta.SetStatusCondition(&updated.Status.Conditions, cond)
		if err := w.client.Status().Update(ctx, updated); err != nil {
			if !apierrors.IsNotFound(err) && firstErr == nil {
				firstErr = fmt.Errorf("update status of %s/%s: %w", svc.Namespace, svc.Name, err)
			}
			continue
		}
		w.log.Info("status written", "service", svc.Namespace+"/"+svc.Name, "reason", cond.Reason, "message", cond.Message)
		if cond.Status == metav1.ConditionTrue {
			w.recorder.Eventf(svc, corev1.EventTypeNormal, EventAnnouncerChanged, "%s", cond.Message)
		} else {
			w.recorder.Eventf(svc, corev1.EventTypeWarning, ReasonAddressConflict, "%s", cond.Message)
		}
	}
	return firstErr
}

// announcedMessage lists the Service's addresses this node answers for:
// "192.168.10.75 announced by node node1 on eth0".
func (w *statusWriter) announcedMessage(svc *corev1.Service, owned map[netip.Addr]ownership) string {
	var parts []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(in.IP)
		if err != nil {
			continue
		}
		if own, ok := owned[a.Unmap()]; ok && own.ConflictWith == "" {
			parts = append(parts, fmt.Sprintf("%s announced by node %s on %s", a, w.node, own.Interface))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// reportProblems records an Event on each policy that selects this node but
// matches none of its interfaces, once per distinct problem. Events are
// best effort: the recorder retries and drops on its own.
func (w *statusWriter) reportProblems(problems []announce.PolicyProblem) {
	w.mu.Lock()
	defer w.mu.Unlock()
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
		if err := w.client.Get(context.Background(), client.ObjectKey{Name: p.Policy}, ref); err != nil {
			continue
		}
		ref.SetGroupVersionKind(heraldv1.GroupVersion.WithKind("L2AnnouncementPolicy"))
		w.recorder.Eventf(ref, corev1.EventTypeWarning, EventNoMatchingInterface, "%s", p.Message)
		current[p.Policy] = p.Message
	}
	w.problems = current
}
