package heartbeatkey

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Labels are the labels of a Secret that Ensure creates. Deliberately no
// app.kubernetes.io/instance: Argo CD tracks (and prunes) what carries its
// application's instance label, and this Secret is in no Git repository —
// the chart never renders it, so that a GitOps sync cannot change the key.
// For the same reason no Helm ownership annotations: `helm uninstall` does
// not delete it, and a reinstall finds the agents' key where it was.
func Labels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "herald",
		"app.kubernetes.io/component":  "heartbeat-key",
		"app.kubernetes.io/managed-by": "herald-controller",
	}
}

// Ensure creates the heartbeat Secret namespace/name with one new key
// (FirstEntry, from Generate) when it does not exist, and reports whether
// it did. It never updates an existing Secret: keys are rotated by the
// operator (see the chart's README), and a Secret created concurrently by
// another replica (AlreadyExists) is kept as it is, which is success.
//
// It needs get on that Secret and create on secrets in namespace. An
// existing Secret that holds no valid key is logged as a warning (agents
// refuse it) but is no error: the controller has nothing to fix there.
// log may be nil.
func Ensure(ctx context.Context, kube kubernetes.Interface, namespace, name string, log *slog.Logger) (created bool, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secrets := kube.CoreV1().Secrets(namespace)
	existing, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		if keys, perr := Parse(existing.Data); perr != nil {
			log.Warn("the heartbeat key Secret holds no usable key; agents will not start until it is fixed",
				"secret", namespace+"/"+name, "err", perr)
		} else {
			log.Debug("heartbeat key Secret exists", "secret", namespace+"/"+name, "keys", keys)
		}
		return false, nil
	case apierrors.IsForbidden(err):
		return false, fmt.Errorf("get heartbeat key secret %s/%s (the controller's Role must allow get on it): %w", namespace, name, err)
	case !apierrors.IsNotFound(err):
		return false, fmt.Errorf("get heartbeat key secret %s/%s: %w", namespace, name, err)
	}

	key, err := Generate()
	if err != nil {
		return false, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: Labels()},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{FirstEntry: key},
	}
	_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
	switch {
	case err == nil:
		log.Info("created the heartbeat key Secret", "secret", namespace+"/"+name, "entry", FirstEntry, "fingerprint", Fingerprint(key))
		return true, nil
	case apierrors.IsAlreadyExists(err):
		// Another replica won the race: its key is the one agents may
		// already use, so keep it.
		log.Info("heartbeat key Secret created concurrently by another replica; keeping it", "secret", namespace+"/"+name)
		return false, nil
	case apierrors.IsNotFound(err):
		// Creating in a missing namespace is the only NotFound of a create.
		return false, fmt.Errorf("create heartbeat key secret %s/%s: namespace %q does not exist: create it, or pass the namespace the chart was installed into (POD_NAMESPACE): %w", namespace, name, namespace, err)
	case apierrors.IsForbidden(err):
		return false, fmt.Errorf("create heartbeat key secret %s/%s (the chart grants create on secrets unless heartbeat.existingSecret is set; with it, create the Secret yourself and run the controller with --create-heartbeat-secret=false): %w", namespace, name, err)
	default:
		return false, fmt.Errorf("create heartbeat key secret %s/%s: %w", namespace, name, err)
	}
}

// Watch follows the heartbeat Secret namespace/name through the API server
// until ctx is done, and calls onChange with its parsed keys whenever they
// change: when it appears, on each edit that changes them (a rotation
// step), and with an error when it is deleted, when it does not exist once
// the first list is done, when its data holds no valid keys (Parse's error)
// and when the API server refuses the list or watch (RBAC). A state after
// an error is reported even if equal to the one before it. A refusal
// stands until the informer next sees the Secret change, or lists it (or
// its absence, at first) successfully.
//
// The informer lists and watches only that Secret (a field selector on
// metadata.name in its namespace), so the caller needs get, list and watch
// on secrets with resourceNames [name] and nothing else. An edit reaches
// onChange within about a second — unlike a mounted Secret volume, which
// the kubelet refreshes only every minute or so.
//
// Errors never mean that the keys stopped being valid: a deleted Secret or
// a bad edit must not stop heartbeats, so callers keep the keys they have
// and report the error. A missing Secret's error satisfies
// apierrors.IsNotFound, a refused list's apierrors.IsForbidden.
//
// onChange is called from one goroutine at a time, never after Watch has
// returned, and must return promptly (it holds up further events).
func Watch(ctx context.Context, kube kubernetes.Interface, namespace, name string, onChange func(Keys, error)) {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	inf := coreinformers.NewFilteredSecretInformer(kube, namespace, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = selector
	})
	w := &watcher{ctx: ctx, namespace: namespace, name: name, store: inf.GetStore(), onChange: onChange}
	// Only fails once the informer runs.
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		// Only refusals: a lost connection (API server restarting) says
		// nothing about the keys, and the reflector retries.
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			w.report(Keys{}, fmt.Errorf("watch heartbeat key secret %s/%s (needs get, list and watch on it): %w", namespace, name, err))
		}
	})
	// Level-triggered: every event re-reads the Secret from the informer's
	// store, so the order of events and of the check below does not matter.
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.sync() },
		UpdateFunc: func(any, any) { w.sync() },
		DeleteFunc: func(any) { w.sync() },
	})
	if err != nil {
		// Only an informer that already stopped refuses a handler.
		onChange(Keys{}, fmt.Errorf("watch heartbeat key secret %s/%s: %w", namespace, name, err))
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	// A Secret that does not exist produces no event: report it once the
	// first list is done and delivered.
	if cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		w.sync()
	}
	<-ctx.Done()
	// The informer stops its handlers before RunWithContext returns, so no
	// onChange runs after this.
	wg.Wait()
}

// watcher turns the informer's store into onChange calls, once per change.
type watcher struct {
	ctx             context.Context
	namespace, name string
	store           cache.Store
	onChange        func(Keys, error)

	mu       sync.Mutex
	reported bool
	lastKeys Keys
	lastErr  string
}

// sync reports the Secret's current state in the store.
func (w *watcher) sync() {
	obj, exists, err := w.store.GetByKey(w.namespace + "/" + w.name)
	switch {
	case err != nil:
		w.report(Keys{}, fmt.Errorf("heartbeat key secret %s/%s: informer store: %w", w.namespace, w.name, err))
	case !exists:
		w.report(Keys{}, fmt.Errorf("heartbeat key secret %s/%s does not exist: the controller creates it when it is missing "+
			"(--create-heartbeat-secret), unless the chart's heartbeat.existingSecret names a Secret you manage: then create that one, "+
			"with an entry %s of at least %d bytes: %w",
			w.namespace, w.name, FirstEntry, MinLen, apierrors.NewNotFound(corev1.Resource("secrets"), w.name)))
	default:
		secret, ok := obj.(*corev1.Secret)
		if !ok {
			w.report(Keys{}, fmt.Errorf("heartbeat key secret %s/%s: informer holds a %T", w.namespace, w.name, obj))
			return
		}
		keys, err := Parse(secret.Data)
		if err != nil {
			err = fmt.Errorf("secret %s/%s: %w", w.namespace, w.name, err)
		}
		w.report(keys, err)
	}
}

// report calls onChange unless (keys, err) is what it reported last.
func (w *watcher) report(keys Keys, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx.Err() != nil {
		return
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if w.reported && msg == w.lastErr && keys.Equal(w.lastKeys) {
		return
	}
	w.reported, w.lastKeys, w.lastErr = true, keys, msg
	w.onChange(keys, err)
}
