package agent

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

// secretSet watches, in Herald's namespace, exactly the Secrets that
// BGPPeers name for their TCP MD5 passwords: each by its name alone (a
// field selector), so the agent needs get, list and watch on those names
// only (the chart's bgp.passwordSecrets). A change of any of them signals
// changed.
type secretSet struct {
	kube      kubernetes.Interface
	namespace string
	changed   chan struct{}
	log       *slog.Logger

	mu      sync.Mutex
	watches map[string]*secretWatch
}

// secretWatch is one Secret's informer.
type secretWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	store  cache.Store
	synced func() bool

	mu  sync.Mutex
	err error // the last refusal of the API server, until an event clears it
}

func newSecretSet(kc kubernetes.Interface, namespace string, changed chan struct{}, log *slog.Logger) *secretSet {
	return &secretSet{kube: kc, namespace: namespace, changed: changed, log: log, watches: map[string]*secretWatch{}}
}

// want watches exactly the named Secrets: new names start a watch, names
// no longer wanted stop theirs.
func (s *secretSet) want(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
		if _, ok := s.watches[n]; !ok {
			s.watches[n] = s.start(n)
		}
	}
	for n, w := range s.watches {
		if !keep[n] {
			w.cancel()
			<-w.done
			delete(s.watches, n)
		}
	}
}

func (s *secretSet) start(name string) *secretWatch {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	inf := coreinformers.NewFilteredSecretInformer(s.kube, s.namespace, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = selector
	})
	ctx, cancel := context.WithCancel(context.Background())
	w := &secretWatch{cancel: cancel, done: make(chan struct{}), store: inf.GetStore(), synced: inf.HasSynced}
	notify := func() {
		w.mu.Lock()
		w.err = nil
		w.mu.Unlock()
		signal(s.changed)
	}
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			signal(s.changed)
		}
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	})
	go func() {
		defer close(w.done)
		inf.RunWithContext(ctx)
	}()
	go func() {
		// A Secret that does not exist gives no event: plan again once
		// the first list is in.
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			signal(s.changed)
		}
	}()
	return w
}

// value returns the entry key of the named Secret, or why it cannot.
func (s *secretSet) value(name, key string) (string, error) {
	s.mu.Lock()
	w := s.watches[name]
	s.mu.Unlock()
	ref := s.namespace + "/" + name
	if w == nil {
		return "", fmt.Errorf("password Secret %s is not watched", ref)
	}
	w.mu.Lock()
	werr := w.err
	w.mu.Unlock()
	if werr != nil {
		return "", fmt.Errorf("cannot read password Secret %s (add it to the chart's bgp.passwordSecrets, which lets the agent read it): %w", ref, werr)
	}
	if !w.synced() {
		return "", fmt.Errorf("password Secret %s not read yet", ref)
	}
	obj, exists, err := w.store.GetByKey(ref)
	if err != nil {
		return "", fmt.Errorf("password Secret %s: %w", ref, err)
	}
	if !exists {
		return "", fmt.Errorf("password Secret %s does not exist", ref)
	}
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return "", fmt.Errorf("password Secret %s: informer holds a %T", ref, obj)
	}
	v, ok := secret.Data[key]
	if !ok || len(v) == 0 {
		return "", fmt.Errorf("password Secret %s has no entry %q", ref, key)
	}
	return string(v), nil
}

// stop ends every watch.
func (s *secretSet) stop() { s.want(nil) }
