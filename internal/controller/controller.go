// Package controller is the Kubernetes side of Herald's LB-IPAM: it watches
// Services, LoadBalancerIPPools and Nodes, asks the pure allocator in
// internal/ipam what each Service gets, and writes the answers back as
// status.loadBalancer.ingress, the herald.dev/IPAllocated condition, Events
// and pool status. One replica is active at a time (a client-go Lease); the
// others keep warm caches and take over when the lease is free.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-lb/herald/api/v1alpha1"
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/ipam"
	"github.com/herald-lb/herald/internal/kube"
	"github.com/herald-lb/herald/internal/metricsserver"
)

// Options configure a Controller. The zero value of each field has a
// sensible default (see withDefaults).
type Options struct {
	// Identity names this replica in the leader Lease (default: hostname).
	Identity string
	// LeaseNamespace and LeaseName locate the leader Lease
	// (default: herald-system / herald-controller).
	LeaseNamespace string
	LeaseName      string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election
	// (defaults 15 s, 10 s, 2 s, as client-go recommends).
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// DefaultClass makes Herald serve LoadBalancer Services without a
	// loadBalancerClass. Services of class herald.dev/l2 are always served.
	DefaultClass bool
	// Workers is the number of Services reconciled (status written) at once.
	Workers int
	// HeartbeatSecret is the Secret holding the agents' heartbeat keys.
	HeartbeatSecret types.NamespacedName
	// CreateHeartbeatSecret makes the leader create HeartbeatSecret, with
	// a fresh random key, whenever it is missing. Off for a Secret the
	// user manages (the chart's heartbeat.existingSecret).
	CreateHeartbeatSecret bool
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables it.
	MetricsAddr string
	// Logger receives structured logs (default: slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.LeaseNamespace == "" {
		o.LeaseNamespace = "herald-system"
	}
	if o.LeaseName == "" {
		o.LeaseName = "herald-controller"
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Queue keys other than Service keys ("namespace/name" always has a slash).
const (
	poolsKey      = "@pools"       // re-read pools and nodes, revalidate every Service
	poolStatusKey = "@pool-status" // write pool status from the allocator's counters
	announceKey   = "@announce"    // re-index the agents' reports, revisit every Service
	policiesKey   = "@policies"    // write the policies' Valid condition
)

// Controller is Herald's LB-IPAM controller.
type Controller struct {
	opts    Options
	log     *slog.Logger
	kube    kubernetes.Interface
	cache   cache.Cache
	client  client.Client
	metrics *metrics
	alloc   *ipam.Allocator

	// mu guards the allocator's state and the bookkeeping below; Kubernetes
	// writes happen outside it.
	mu        sync.Mutex
	pending   map[string]bool // Services waiting for an address
	allocated map[string]bool // Services that have their addresses
	// announced is each served Service's herald.dev/Announced condition
	// as last computed, for herald_controller_services_announced.
	announced map[string]announcedState
	// poolErrors holds pools that could not be read (kept out of the
	// allocator), with the reason, for their status.
	poolErrors map[string]string
	// index is the agents' reports by address (see announced.go).
	index atomic.Pointer[announceIndex]
	// apiReader reads the API server directly, for what is not worth a
	// cache (EndpointSlices).
	apiReader client.Reader

	queueMu sync.Mutex
	queue   workqueue.TypedRateLimitingInterface[string] // nil while not leading

	ready chan struct{} // closed once this replica leads and has adopted
}

// New builds a Controller for the cluster cfg points at.
func New(cfg *rest.Config, opts Options) (*Controller, error) {
	opts = opts.withDefaults()
	if opts.Identity == "" {
		return nil, errors.New("controller identity is empty: set Options.Identity")
	}
	if !(opts.LeaseDuration > opts.RenewDeadline && opts.RenewDeadline > opts.RetryPeriod) {
		return nil, fmt.Errorf("leader election needs lease duration (%s) > renew deadline (%s) > retry period (%s)",
			opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod)
	}
	scheme, err := kube.Scheme()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	// Nothing reads managedFields; with thousands of Services they would
	// be most of the cache.
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return nil, fmt.Errorf("create informer cache: %w", err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme, Cache: &client.CacheOptions{Reader: c}})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	return &Controller{
		opts:       opts,
		log:        opts.Logger.With("component", "controller", "identity", opts.Identity),
		kube:       kube,
		cache:      c,
		client:     cl,
		apiReader:  direct,
		metrics:    newMetrics(),
		alloc:      ipam.New(),
		pending:    map[string]bool{},
		allocated:  map[string]bool{},
		announced:  map[string]announcedState{},
		poolErrors: map[string]string{},
		ready:      make(chan struct{}),
	}, nil
}

// Gatherer returns the controller's metrics registry: what its /metrics
// endpoint serves (herald_ipam_*, herald_controller_*, and the Go and
// process collectors).
func (c *Controller) Gatherer() prometheus.Gatherer { return c.metrics.registry }

// Ready is closed once this replica leads and has adopted the addresses
// already in the cluster.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Run serves until ctx is done. Standby replicas keep their caches warm so a
// take-over starts from synced informers. Run returns an error when this
// replica loses the lease without being asked to stop, so that the process
// exits and restarts clean, as client-go recommends.
func (c *Controller) Run(ctx context.Context) error {
	if c.opts.MetricsAddr != "" {
		stop, err := metricsserver.Serve(ctx, metricsserver.Options{
			Addr:     c.opts.MetricsAddr,
			Registry: c.metrics.registry,
			// A standby is ready too: it serves by taking over.
			Ready: func(ctx context.Context) error {
				if !c.cache.WaitForCacheSync(ctx) {
					return errors.New("caches not synced")
				}
				return nil
			},
			Logger: c.log,
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	for _, obj := range []client.Object{&corev1.Service{}, &corev1.Node{}, &heraldv1.LoadBalancerIPPool{},
		&heraldv1.HeraldNode{}, &heraldv1.L2AnnouncementPolicy{}} {
		if _, err := c.cache.GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("start informer for %T: %w", obj, err)
		}
	}
	cacheErr := make(chan error, 1)
	go func() { cacheErr <- c.cache.Start(ctx) }()
	if !c.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("informer caches did not sync")
	}
	if err := c.checkLeaseNamespace(ctx); err != nil {
		return err
	}
	c.log.Info("caches synced; waiting for the leader lease",
		"lease", c.opts.LeaseNamespace+"/"+c.opts.LeaseName)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	scheme, err := kube.Scheme()
	if err != nil {
		return err
	}
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "herald-controller"})

	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: c.opts.LeaseNamespace, Name: c.opts.LeaseName},
			Client:     c.kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: c.opts.Identity},
		},
		LeaseDuration:   c.opts.LeaseDuration,
		RenewDeadline:   c.opts.RenewDeadline,
		RetryPeriod:     c.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            c.opts.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) { c.lead(leadCtx, recorder) },
			OnStoppedLeading: func() { c.log.Info("stopped leading") },
			OnNewLeader: func(identity string) {
				if identity != c.opts.Identity {
					c.log.Info("another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("configure leader election: %w", err)
	}
	elector.Run(ctx)
	if ctx.Err() == nil {
		return errors.New("lost the leader lease")
	}
	select {
	case err := <-cacheErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("informer cache: %w", err)
		}
	case <-time.After(5 * time.Second):
	}
	return nil
}

// checkLeaseNamespace fails at once, saying what to do, when the leader
// Lease's namespace does not exist; client-go's elector would otherwise
// retry forever with 'namespaces "herald-system" not found'. A dry-run
// create needs no verb beyond the elector's own and writes nothing.
func (c *Controller) checkLeaseNamespace(ctx context.Context) error {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: c.opts.LeaseNamespace, Name: c.opts.LeaseName}}
	_, err := c.kube.CoordinationV1().Leases(c.opts.LeaseNamespace).Create(ctx, lease, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case err == nil || apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the namespace %q for the leader Lease does not exist: create it (kubectl create namespace %s), "+
			"or run the controller in the namespace Herald is installed in (--lease-namespace or $POD_NAMESPACE): %w",
			c.opts.LeaseNamespace, c.opts.LeaseNamespace, err)
	default:
		// Anything else (RBAC, a flaky API server) is the elector's to
		// retry and report.
		c.log.Warn("cannot check the leader Lease's namespace", "namespace", c.opts.LeaseNamespace, "err", err)
		return nil
	}
}

// lead runs the IPAM loop for one leadership term.
func (c *Controller) lead(ctx context.Context, recorder record.EventRecorder) {
	c.log.Info("leading")
	c.metrics.leader.Set(1)
	defer c.metrics.leader.Set(0)

	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "herald-ipam"})

	if c.opts.CreateHeartbeatSecret {
		go c.keepHeartbeatSecret(ctx)
	}

	// Adopt before anything is allocated: every address already in a
	// Service's status stays with it, so restarts change no address.
	if err := c.adopt(ctx); err != nil {
		c.log.Error("adopting existing addresses failed; giving up leadership", "err", err)
		return
	}

	c.queueMu.Lock()
	c.queue = queue
	c.queueMu.Unlock()
	regs, err := c.watch(ctx)
	if err != nil {
		c.log.Error("watching failed; giving up leadership", "err", err)
		queue.ShutDown()
		return
	}
	defer func() {
		for inf, reg := range regs {
			_ = inf.RemoveEventHandler(reg)
		}
		c.queueMu.Lock()
		c.queue = nil
		c.queueMu.Unlock()
	}()
	r := &reconciler{Controller: c, recorder: recorder, queue: queue}
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for r.processNext(ctx) {
			}
		})
	}
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
}

// enqueue adds key to the work queue, if this replica leads.
func (c *Controller) enqueue(key string) {
	c.queueMu.Lock()
	defer c.queueMu.Unlock()
	if c.queue != nil {
		c.queue.Add(key)
	}
}

// watch registers event handlers that feed the queue; adding a handler to
// a synced informer replays every object, so all Services are revisited.
func (c *Controller) watch(ctx context.Context) (map[cache.Informer]toolscache.ResourceEventHandlerRegistration, error) {
	regs := map[cache.Informer]toolscache.ResourceEventHandlerRegistration{}
	add := func(obj client.Object, h toolscache.ResourceEventHandler) error {
		inf, err := c.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("get informer for %T: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("add event handler for %T: %w", obj, err)
		}
		regs[inf] = reg
		return nil
	}
	svcKey := func(obj any) {
		if k, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.enqueue(k)
		}
	}
	if err := add(&corev1.Service{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc:    svcKey,
		UpdateFunc: func(_, obj any) { svcKey(obj) },
		DeleteFunc: svcKey,
	}); err != nil {
		return regs, err
	}
	pools := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueue(poolsKey) },
		// Only a spec change matters: the controller's own status writes
		// (every burst of allocations) must not revisit every Service.
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*heraldv1.LoadBalancerIPPool)
			n, ok2 := newObj.(*heraldv1.LoadBalancerIPPool)
			if !ok1 || !ok2 || o.Generation != n.Generation {
				c.enqueue(poolsKey)
			}
		},
		DeleteFunc: func(any) { c.enqueue(poolsKey) },
	}
	if err := add(&heraldv1.LoadBalancerIPPool{}, pools); err != nil {
		return regs, err
	}
	if err := add(&corev1.Node{}, toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueue(poolsKey); c.enqueue(announceKey) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if !ok1 || !ok2 || !slices.Equal(o.Status.Addresses, n.Status.Addresses) {
				c.enqueue(poolsKey)
			}
			// Labels feed nodeSelectors and the exclude label; readiness
			// says whether a node's report can be trusted.
			if !ok1 || !ok2 || !maps.Equal(o.Labels, n.Labels) || nodeReady(o) != nodeReady(n) {
				c.enqueue(announceKey)
			}
		},
		DeleteFunc: func(any) { c.enqueue(poolsKey); c.enqueue(announceKey) },
	}); err != nil {
		return regs, err
	}
	reports := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.enqueue(announceKey) },
		UpdateFunc: func(any, any) { c.enqueue(announceKey) },
		DeleteFunc: func(any) { c.enqueue(announceKey) },
	}
	if err := add(&heraldv1.HeraldNode{}, reports); err != nil {
		return regs, err
	}
	policies := toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueue(policiesKey); c.enqueue(announceKey) },
		// The Valid condition the controller writes is a status update:
		// only a spec change re-explains the Services.
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*heraldv1.L2AnnouncementPolicy)
			n, ok2 := newObj.(*heraldv1.L2AnnouncementPolicy)
			if !ok1 || !ok2 || o.Generation != n.Generation {
				c.enqueue(policiesKey)
				c.enqueue(announceKey)
			}
		},
		DeleteFunc: func(any) { c.enqueue(announceKey) },
	}
	if err := add(&heraldv1.L2AnnouncementPolicy{}, policies); err != nil {
		return regs, err
	}
	return regs, nil
}

// nodeReady is the Node's Ready condition ("" when it has none).
func nodeReady(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// adopt loads pools, nodes and the addresses other hosts use into the
// allocator and records every address that a served Service already
// shows, oldest Service first.
func (c *Controller) adopt(ctx context.Context) error {
	if err := c.syncPools(ctx); err != nil {
		return err
	}
	idx, err := c.loadIndex(ctx)
	if err != nil {
		return err
	}
	c.index.Store(idx)
	c.metrics.setConflicts(idx.conflicts)
	c.mu.Lock()
	c.alloc.SetExcluded(idx.excluded)
	c.mu.Unlock()
	var svcs corev1.ServiceList
	if err := c.client.List(ctx, &svcs); err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	items := svcs.Items
	sort.Slice(items, func(i, j int) bool {
		ti, tj := items[i].CreationTimestamp, items[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return serviceKey(items[i].Namespace, items[i].Name) < serviceKey(items[j].Namespace, items[j].Name)
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	adopted := 0
	for i := range items {
		svc := &items[i]
		addrs := ingressAddrs(svc)
		if !kube.Serves(svc, c.opts.DefaultClass) || len(addrs) == 0 {
			continue
		}
		view, err := serviceView(svc)
		if err != nil {
			// Keep what it has: a typo in an annotation must not cost the
			// Service its address. Adopt as if it asked for nothing.
			view = kube.AllocatorService(svc, ipam.Request{})
		}
		got := c.alloc.Adopt(view, addrs)
		adopted += len(got)
	}
	c.metrics.setPools(c.alloc.PoolStatuses())
	c.log.Info("adopted existing addresses", "addresses", adopted, "services", len(items))
	return nil
}

// syncPools rebuilds the allocator's pool set from the cache.
func (c *Controller) syncPools(ctx context.Context) error {
	var pools heraldv1.LoadBalancerIPPoolList
	if err := c.client.List(ctx, &pools); err != nil {
		return fmt.Errorf("list pools: %w", err)
	}
	var nodes corev1.NodeList
	if err := c.client.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	views := make([]ipam.Pool, 0, len(pools.Items))
	errs := map[string]string{}
	for i := range pools.Items {
		v, err := poolView(&pools.Items[i])
		if err != nil {
			errs[pools.Items[i].Name] = err.Error()
			c.log.Warn("pool cannot be used", "pool", pools.Items[i].Name, "err", err)
			continue
		}
		views = append(views, v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.poolErrors = errs
	statuses := c.alloc.SetPools(views, nodeAddresses(nodes.Items))
	c.metrics.setPools(statuses)
	return nil
}

// keepHeartbeatSecret creates the agents' heartbeat Secret when it is
// missing — at the start of the term, and whenever it is deleted — so no
// rendered manifest ever carries a key (a GitOps re-render would replace
// it and split the agents). An existing Secret is never changed.
func (c *Controller) keepHeartbeatSecret(ctx context.Context) {
	ns, name := c.opts.HeartbeatSecret.Namespace, c.opts.HeartbeatSecret.Name
	ensure := func() {
		created, err := heartbeatkey.Ensure(ctx, c.kube, ns, name, c.log)
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Error("cannot create the heartbeat Secret; agents announce nothing without it", "secret", ns+"/"+name, "err", err)
		case created:
			c.log.Info("created the heartbeat Secret", "secret", ns+"/"+name)
		}
	}
	ensure()
	heartbeatkey.Watch(ctx, c.kube, ns, name, func(_ heartbeatkey.Keys, err error) {
		if err != nil {
			ensure()
		}
	})
}
