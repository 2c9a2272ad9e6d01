// Package kubelet is the Herald lab's process kubelet: for one node living
// in a network namespace, it registers the Node, keeps it Ready, and runs
// the Pods bound to it as local processes, so that Deployments, DaemonSets,
// Services and EndpointSlices behave as in a real cluster.
//
// A Pod gets a network namespace of its own (a veth on the node's cni0
// bridge, an address from the node's podCIDR) unless it uses hostNetwork;
// each container process gets a private mount and UTS namespace with the
// Pod's volumes (Secrets, ConfigMaps, the projected ServiceAccount token)
// bind-mounted where the spec says, and only the capabilities its
// securityContext grants. Images map to built-in programs (see
// internal/lab/images); readiness and liveness probes run from the node's
// namespace; status goes to the API server like a kubelet's.
//
// It is not a kubelet: no container images, cgroups, exec, logs or port
// forwarding through the API, no init containers. What it cannot do, it
// says in the Pod's status.
package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

const (
	// leaseDuration is the node Lease's duration; the kubelet renews it
	// every leaseDuration/4, like the real one.
	leaseDuration = 40 * time.Second
	// routeResync is how often the routes to other nodes' Pods are
	// re-applied (a link flap drops them).
	routeResync = 5 * time.Second
	// statusEvery is how often the Node's Ready condition is re-posted.
	statusEvery = time.Minute
	// bridgeName is the node's Pod bridge; the first address of the
	// podCIDR is its address and the Pods' gateway.
	bridgeName = "cni0"
)

// Config configures a Kubelet.
type Config struct {
	// NodeName is the Node's name.
	NodeName string
	// NodeIP is the node's IPv4 address on the LAN (InternalIP).
	NodeIP netip.Addr
	// NodeIPv6 is the node's IPv6 address on the LAN, if it has one.
	NodeIPv6 netip.Addr
	// NetNS is the name of the node's network namespace (`ip netns`).
	NetNS string
	// PodNetNSPrefix prefixes the names of Pod network namespaces.
	PodNetNSPrefix string
	// Interface is the node's LAN interface, for routes to other nodes.
	Interface string
	// Client talks to the API server.
	Client kubernetes.Interface
	// Lab is the herald-lab binary: the shim (`herald-lab shim`) and the
	// built-in images (`herald-lab builtin`).
	Lab string
	// Herald is the herald binary, which Herald's image runs.
	Herald string
	// Dir holds the node's Pod directories (volumes and logs).
	Dir string
	// Version is reported as the kubelet version.
	Version string
	// Labels are extra Node labels.
	Labels map[string]string
	// Logger receives the kubelet's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Kubelet runs one node. Create it with New and start it with Run.
type Kubelet struct {
	cfg Config
	log *slog.Logger

	net *nodeNetwork

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wg      sync.WaitGroup
}

// New checks cfg and returns a Kubelet.
func New(cfg Config) (*Kubelet, error) {
	switch {
	case cfg.NodeName == "":
		return nil, fmt.Errorf("kubelet: no node name")
	case !cfg.NodeIP.IsValid():
		return nil, fmt.Errorf("kubelet %s: no node IP", cfg.NodeName)
	case cfg.NetNS == "" || cfg.Interface == "":
		return nil, fmt.Errorf("kubelet %s: no network namespace or interface", cfg.NodeName)
	case cfg.Client == nil:
		return nil, fmt.Errorf("kubelet %s: no API client", cfg.NodeName)
	case cfg.Lab == "" || cfg.Herald == "" || cfg.Dir == "":
		return nil, fmt.Errorf("kubelet %s: no herald-lab binary, herald binary or directory", cfg.NodeName)
	}
	if cfg.PodNetNSPrefix == "" {
		cfg.PodNetNSPrefix = cfg.NetNS + "-pod-"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.NodeName)
	return &Kubelet{
		cfg:     cfg,
		log:     log,
		net:     &nodeNetwork{netns: cfg.NetNS, iface: cfg.Interface, podPrefix: cfg.PodNetNSPrefix, log: log},
		workers: map[types.UID]*podWorker{},
	}, nil
}

// Run registers the Node and runs its Pods until ctx is done; then it stops
// every Pod's processes and removes their namespaces. The Node object stays.
func (k *Kubelet) Run(ctx context.Context) error {
	if err := os.MkdirAll(k.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("kubelet directory: %w", err)
	}
	if err := k.register(ctx); err != nil {
		return err
	}
	defer k.stopAll()

	nodes := informers.NewSharedInformerFactory(k.cfg.Client, 0)
	nodeInformer := nodes.Core().V1().Nodes().Informer()
	if _, err := nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.syncRoutes(nodeInformer.GetStore()) },
		UpdateFunc: func(any, any) { k.syncRoutes(nodeInformer.GetStore()) },
		DeleteFunc: func(any) { k.syncRoutes(nodeInformer.GetStore()) },
	}); err != nil {
		return fmt.Errorf("node informer: %w", err)
	}
	nodes.Start(ctx.Done())
	defer nodes.Shutdown()

	// Pods need the podCIDR, which kube-controller-manager assigns after
	// registration.
	if err := k.waitPodCIDR(ctx); err != nil {
		return err
	}

	pods := informers.NewSharedInformerFactoryWithOptions(k.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
		}))
	podInformer := pods.Core().V1().Pods().Informer()
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.dispatch(ctx, obj, false) },
		UpdateFunc: func(_, obj any) { k.dispatch(ctx, obj, false) },
		DeleteFunc: func(obj any) { k.dispatch(ctx, obj, true) },
	}); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	pods.Start(ctx.Done())
	defer pods.Shutdown()

	resync := func() { k.syncRoutes(nodeInformer.GetStore()) }
	k.watchLink(ctx, resync)
	k.heartbeat(ctx, resync)
	return nil
}

// watchLink calls resync whenever the node's LAN interface comes up: the
// kernel dropped the routes via it when it went down, and a CNI's route
// daemon puts them back at once. (The periodic resync is the safety net.)
func (k *Kubelet) watchLink(ctx context.Context, resync func()) {
	ns, err := netns.GetFromName(k.cfg.NetNS)
	if err != nil {
		k.log.Warn("kubelet: cannot watch the LAN link; routes come back with the periodic sync", "err", err)
		return
	}
	updates := make(chan netlink.LinkUpdate, 16)
	err = netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{
		Namespace:     &ns,
		ErrorCallback: func(err error) { k.log.Warn("kubelet: link watch", "err", err) },
	})
	_ = ns.Close()
	if err != nil {
		k.log.Warn("kubelet: cannot watch the LAN link; routes come back with the periodic sync", "err", err)
		return
	}
	go func() {
		wasUp := true
		for u := range updates {
			if u.Attrs().Name != k.cfg.Interface {
				continue
			}
			up := u.Attrs().OperState == netlink.OperUp || u.Attrs().Flags&net.FlagUp != 0 && u.Attrs().OperState == netlink.OperUnknown
			if up && !wasUp {
				resync()
				// Once more shortly after, in case the connected route
				// the gateway needs was not back yet.
				time.AfterFunc(200*time.Millisecond, resync)
			}
			wasUp = up
		}
	}()
}

// register creates or updates the Node and posts it Ready.
func (k *Kubelet) register(ctx context.Context) error {
	nodes := k.cfg.Client.CoreV1().Nodes()
	labels := map[string]string{
		corev1.LabelHostname:   k.cfg.NodeName,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: runtime.GOARCH,
	}
	for key, v := range k.cfg.Labels {
		labels[key] = v
	}
	node, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		node, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels}},
			metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register node %s: %w", k.cfg.NodeName, err)
		}
	case err != nil:
		return fmt.Errorf("get node %s: %w", k.cfg.NodeName, err)
	}
	k.log.Info("kubelet: node registered", "resourceVersion", node.ResourceVersion)
	return k.updateStatus(ctx)
}

// updateStatus re-posts the Node's status, on the latest version of the
// Node: kube-controller-manager edits new Nodes (podCIDR, taints) too.
func (k *Kubelet) updateStatus(ctx context.Context) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := k.cfg.Client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return k.postStatus(ctx, node)
	})
}

// postStatus writes the Node's addresses, capacity and Ready condition.
func (k *Kubelet) postStatus(ctx context.Context, node *corev1.Node) error {
	now := metav1.Now()
	node = node.DeepCopy()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("4Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP.String()},
	}
	if k.cfg.NodeIPv6.IsValid() {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIPv6.String()})
	}
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: k.cfg.NodeName})
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          k.cfg.Version,
		OperatingSystem:         "linux",
		Architecture:            runtime.GOARCH,
		ContainerRuntimeVersion: "herald-lab://processes",
		OSImage:                 "Herald lab (network namespaces)",
	}
	node.Status.Phase = corev1.NodeRunning
	conds := []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "herald lab kubelet is posting ready status"},
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID"},
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		for _, old := range node.Status.Conditions {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	node.Status.Conditions = conds
	if _, err := k.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("post status of node %s: %w", k.cfg.NodeName, err)
	}
	return nil
}

// heartbeat renews the node Lease and re-posts the status until ctx is
// done, as the real kubelet does, so the node lifecycle controller keeps
// the node Ready; every routeResync it calls resync.
func (k *Kubelet) heartbeat(ctx context.Context, resync func()) {
	renew := time.NewTicker(leaseDuration / 4)
	defer renew.Stop()
	routes := time.NewTicker(routeResync)
	defer routes.Stop()
	status := time.NewTicker(statusEvery)
	defer status.Stop()
	k.renewLease(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			k.renewLease(ctx)
		case <-routes.C:
			resync()
		case <-status.C:
			if err := k.updateStatus(ctx); err != nil && ctx.Err() == nil {
				k.log.Warn("kubelet: node status", "err", err)
			}
		}
	}
}

func (k *Kubelet) renewLease(ctx context.Context) {
	leases := k.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(k.cfg.NodeName),
				LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
	} else if err == nil {
		lease.Spec.RenewTime = &now
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil && ctx.Err() == nil {
		k.log.Warn("kubelet: renew node lease", "err", err)
	}
}

// waitPodCIDR waits for the Node's podCIDR and sets up the Pod bridge.
func (k *Kubelet) waitPodCIDR(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		node, err := k.cfg.Client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err == nil && len(node.Spec.PodCIDRs) > 0 {
			var cidrs []netip.Prefix
			for _, c := range node.Spec.PodCIDRs {
				prefix, err := netip.ParsePrefix(c)
				if err != nil {
					return fmt.Errorf("node %s podCIDR: %w", k.cfg.NodeName, err)
				}
				cidrs = append(cidrs, prefix)
			}
			return k.net.setUp(cidrs)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the podCIDR of node %s: %w", k.cfg.NodeName, ctx.Err())
		case <-tick.C:
		}
	}
}

// syncRoutes routes every other node's podCIDR via that node's address.
func (k *Kubelet) syncRoutes(store cache.Store) {
	routes := map[netip.Prefix]netip.Addr{}
	for _, obj := range store.List() {
		node := obj.(*corev1.Node)
		if node.Name == k.cfg.NodeName {
			continue
		}
		for _, c := range node.Spec.PodCIDRs {
			prefix, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			for _, a := range node.Status.Addresses {
				if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && ip.Is4() == prefix.Addr().Is4() {
					routes[prefix] = ip
				}
			}
		}
	}
	if err := k.net.syncRoutes(routes); err != nil {
		k.log.Warn("kubelet: routes to other nodes' Pods", "err", err)
	}
}

// dispatch hands a Pod event to the Pod's worker, starting one if needed;
// gone says the Pod no longer exists in the API.
func (k *Kubelet) dispatch(ctx context.Context, obj any, gone bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	w, ok := k.workers[pod.UID]
	if !ok {
		if gone {
			return
		}
		w = newPodWorker(k, pod)
		k.workers[pod.UID] = w
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			w.run(ctx)
			k.mu.Lock()
			delete(k.workers, pod.UID)
			k.mu.Unlock()
		}()
	}
	w.update(pod, gone)
}

// stopAll waits for every Pod worker to stop its processes (they stop when
// the kubelet's context is done).
func (k *Kubelet) stopAll() {
	k.wg.Wait()
	k.net.tearDown()
}

// podDir is the directory of a Pod's volumes and logs.
func (k *Kubelet) podDir(pod *corev1.Pod) string {
	return filepath.Join(k.cfg.Dir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
}

// hostIPs are the node's LAN addresses, IPv4 first.
func (k *Kubelet) hostIPs() []string {
	ips := []string{k.cfg.NodeIP.String()}
	if k.cfg.NodeIPv6.IsValid() {
		ips = append(ips, k.cfg.NodeIPv6.String())
	}
	return ips
}
