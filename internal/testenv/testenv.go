// Package testenv runs a real etcd and kube-apiserver, and optionally
// kube-controller-manager and kube-scheduler, for integration tests.
//
// The binaries are built from the pinned modules in hack/tools and cached
// (see Binaries), so only the first run compiles. That first build takes
// longer than go test's default 10-minute timeout on a small machine:
// prebuild with `go run ./internal/testenv/cmd/buildtools` or pass a larger
// -timeout. Set HERALD_KEEP_TESTENV=1 to keep an environment's directory,
// with the process logs, after Stop. Start launches a private control plane
// on free loopback ports, with RBAC, ServiceAccount tokens and dual-stack
// Service CIDRs, and returns an admin client for it.
//
// By default only etcd and the API server run: nothing creates default
// ServiceAccounts, schedules Pods or runs the garbage collector. With
// Options.Controllers, kube-controller-manager and kube-scheduler run too:
// a full control plane, still without kubelets, so Pods are created and
// bound to Nodes but never run.
//
// Tests use StartForTest for an environment of their own, or Shared from
// TestMain for one environment per package. Callers skip such tests in
// -short mode themselves; this package never skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// keepEnv, set to 1, keeps the environment directory after Stop.
	keepEnv = "HERALD_KEEP_TESTENV"

	// ServiceAccountIssuer is the issuer of ServiceAccount tokens, which is
	// also the only API audience.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// ServiceCIDRv4 is the IPv4 Service CIDR (the primary family).
	ServiceCIDRv4 = "10.96.0.0/16"
	// ServiceCIDRv6 is the IPv6 Service CIDR.
	ServiceCIDRv6 = "fd00:10:96::/112"
	// DefaultClusterCIDR is the Pod CIDR that Nodes get their spec.podCIDR
	// from when Options.Controllers is set and Options.ClusterCIDR is not.
	DefaultClusterCIDR = "10.244.0.0/16"
	// AdminUser is the user name of the admin token, in group system:masters.
	AdminUser = "herald-testenv-admin"
	// KubeProxyUser is kube-proxy's user (Env.KubeProxyKubeconfig), bound
	// to the system:node-proxier ClusterRole by the API server's bootstrap
	// policy.
	KubeProxyUser = "system:kube-proxy"
	// NodesGroup is the group of the Nodes' users (see Options.NodeNames).
	NodesGroup = "system:nodes"

	defaultStartTimeout            = 90 * time.Second
	defaultStartTimeoutControllers = 2 * time.Minute
	stopGrace                      = 10 * time.Second
	startAttempts                  = 3

	// nodeMaskIPv4 and nodeMaskIPv6 are the sizes of the Pod CIDRs that the
	// controller manager gives each Node.
	nodeMaskIPv4 = 24
	nodeMaskIPv6 = 64
)

// errAddrInUse marks a start that failed because a picked port was taken
// between picking and binding; Start retries with new ports.
var errAddrInUse = errors.New("port already in use")

// Options configures Start. The zero value is a plain control plane.
type Options struct {
	// CRDDirs are directories whose *.yaml and *.yml files hold
	// CustomResourceDefinitions to install (created or updated) once the API
	// server is ready; Start waits until each is Established and served.
	// Directories that do not exist are skipped, as are documents of other
	// kinds (e.g. a kustomization.yaml).
	CRDDirs []string
	// ExtraAPIServerFlags are appended to the kube-apiserver command line;
	// a later flag overrides an earlier one.
	ExtraAPIServerFlags []string
	// NodeNames are Nodes whose kubelets get a static token of their own:
	// user system:node:<name> (NodeUser) in group system:nodes, which the
	// Node authorizer confines to that Node and what runs on it. See
	// Env.NodeKubeconfig.
	NodeNames []string
	// ClusterDialer, when set, is how the API server reaches kubelets,
	// Pods and Services (logs, exec, port-forward, the proxy
	// subresources): its "cluster" egress selector sends each such
	// connection as an HTTP CONNECT to a Unix socket in Dir that Start
	// serves by calling ClusterDialer with "tcp" and the CONNECT target.
	// Nodes in network namespaces that the API server cannot route to are
	// reached this way. Connections to etcd and webhooks are unaffected.
	ClusterDialer func(ctx context.Context, network, address string) (net.Conn, error)

	// Controllers also runs kube-controller-manager and kube-scheduler
	// against the API server once it is ready, as the admin user and
	// without leader election, and Start waits until both work: the
	// controller manager has created the "default" ServiceAccount and the
	// kube-root-ca.crt ConfigMap in the default namespace, and the
	// scheduler's /readyz reports its informers synced.
	//
	// All default controllers run, so namespaces get their "default"
	// ServiceAccount and kube-root-ca.crt ConfigMap (holding the CA of the
	// API server's serving certificate), Deployments get ReplicaSets and
	// Pods, the garbage collector and namespace deletion work, and Nodes get
	// spec.podCIDRs from ClusterCIDR. The scheduler binds Pods to Nodes that
	// are Ready, have allocatable "pods" (and room for the Pods' requests)
	// and carry no taint the Pods do not tolerate. Nothing runs the
	// Pods: there is no kubelet. For the same reason the node lifecycle
	// controller marks a Node whose status (or Lease in kube-node-lease) is
	// not renewed as unreachable after its grace period (50 seconds), and
	// taints it; tests that keep Nodes longer renew them or pass
	// ExtraControllerManagerFlags.
	Controllers bool
	// ClusterCIDR is the Pod CIDR from which the controller manager gives
	// each Node its spec.podCIDRs: one prefix, or an IPv4 and an IPv6
	// prefix separated by a comma for dual-stack Nodes. Each Node gets a /24
	// of an IPv4 prefix and a /64 of an IPv6 one. Empty means
	// DefaultClusterCIDR. Used only with Controllers.
	ClusterCIDR string
	// ExtraControllerManagerFlags are appended to the kube-controller-manager
	// command line (with Controllers); a later flag overrides an earlier one.
	ExtraControllerManagerFlags []string
	// ExtraSchedulerFlags are appended to the kube-scheduler command line
	// (with Controllers); a later flag overrides an earlier one.
	ExtraSchedulerFlags []string

	// StartTimeout bounds the wait for the processes to become ready, not
	// counting a build of the binaries. Zero means 90 seconds, or 2 minutes
	// with Controllers.
	StartTimeout time.Duration
	// Logger receives progress messages. Nil means slog.Default().
	Logger *slog.Logger
}

// Env is a running etcd and kube-apiserver, and with Options.Controllers
// kube-controller-manager and kube-scheduler. Stop it when done.
type Env struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file with the same admin credentials,
	// usable by kubectl (see Binaries).
	KubeconfigPath string
	// Dir is the private directory of the environment: data, certificates,
	// keys and the logs etcd.log and kube-apiserver.log, and with
	// Controllers kube-controller-manager.log and kube-scheduler.log.
	Dir string
	// APIServerURL is the https URL of the API server on 127.0.0.1.
	APIServerURL string
	// EtcdURL is the client URL of etcd on 127.0.0.1.
	EtcdURL string
	// ClusterCIDR is the Pod CIDR that Nodes get their spec.podCIDRs from
	// (Options.ClusterCIDR or DefaultClusterCIDR), or empty without
	// Options.Controllers.
	ClusterCIDR string
	// Binaries are the binaries the environment runs.
	Binaries Paths

	clientset *kubernetes.Clientset
	log       *slog.Logger
	pki       pkiFiles
	etcd      *process
	apiserver *process
	// controllerManager and scheduler run only with Options.Controllers.
	controllerManager *process
	scheduler         *process
	// schedulerURL is the https URL of the scheduler's health endpoints.
	schedulerURL string
	// egress serves the API server's cluster egress with
	// Options.ClusterDialer, if set.
	egress *egressProxy
	// ca is the CA bundle of the API server's serving certificate.
	ca []byte

	stopOnce sync.Once
	stopErr  error
}

// Start builds the binaries if needed (see Binaries), then starts etcd and
// kube-apiserver on free loopback ports in a new temporary directory and
// waits until the API server is ready, the default namespace and the
// kubernetes Service exist and the CRDs from opts.CRDDirs are established.
// With opts.Controllers it also starts kube-controller-manager and
// kube-scheduler and waits for them (see Options.Controllers).
//
// ctx bounds only the start; the processes run until Stop. They run in
// their own process groups and are killed if the process that started them
// dies, so a crashed test does not leave them behind.
//
// The API server authenticates a static admin token (in Config and the
// kubeconfig) and ServiceAccount tokens (see ServiceAccountConfig), and
// authorizes with Node,RBAC. Its Service CIDRs are ServiceCIDRv4 and
// ServiceCIDRv6, so Services can be dual-stack. The default admission
// plugins are enabled.
func Start(ctx context.Context, opts Options) (*Env, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Controllers {
		if opts.ClusterCIDR == "" {
			opts.ClusterCIDR = DefaultClusterCIDR
		}
		if _, _, err := clusterCIDR(opts.ClusterCIDR); err != nil {
			return nil, err
		}
	}
	paths, err := binaries(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("control-plane binaries: %w", err)
	}
	for attempt := 1; ; attempt++ {
		env, err := start(ctx, opts, paths, log)
		if err == nil {
			return env, nil
		}
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			return nil, err
		}
		log.Info("testenv: port taken while starting, retrying with new ports", "err", err)
	}
}

func start(ctx context.Context, opts Options, paths Paths, log *slog.Logger) (_ *Env, err error) {
	started := time.Now()
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
		if opts.Controllers {
			timeout = defaultStartTimeoutControllers
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "herald-testenv-")
	if err != nil {
		return nil, fmt.Errorf("create environment directory: %w", err)
	}
	e := &Env{Dir: dir, Binaries: paths, log: log}
	defer func() {
		if err != nil {
			if stopErr := e.Stop(); stopErr != nil {
				err = errors.Join(err, stopErr)
			}
		}
	}()

	nPorts := 3
	if opts.Controllers {
		// The scheduler serves /readyz, which tells when it can schedule.
		nPorts++
	}
	ports, err := freePorts(nPorts)
	if err != nil {
		return e, err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	e.EtcdURL = "http://" + hostPort(etcdPort)
	e.APIServerURL = "https://" + hostPort(apiPort)

	if err := e.startEtcd(ctx, peerPort); err != nil {
		return e, err
	}
	if err := e.startAPIServer(ctx, apiPort, opts); err != nil {
		return e, err
	}
	if opts.Controllers {
		// They start while the CRDs are installed; a late CRD is picked up
		// by the controllers that watch all resources.
		if err := e.startControllers(opts, ports[3]); err != nil {
			return e, err
		}
	}
	if err := e.installCRDs(ctx, opts.CRDDirs); err != nil {
		return e, err
	}
	if opts.Controllers {
		if err := e.waitControllers(ctx); err != nil {
			return e, err
		}
	}
	log.Debug("testenv: control plane ready", "url", e.APIServerURL, "dir", e.Dir,
		"took", time.Since(started).Round(time.Millisecond))
	return e, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free
// when picked; a start that loses a race for one is retried.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		// Keep it open until all are picked, so they differ.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (e *Env) startEtcd(ctx context.Context, peerPort int) error {
	peerURL := "http://" + hostPort(peerPort)
	args := []string{
		"--name=default",
		"--data-dir=" + filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls=" + e.EtcdURL,
		"--advertise-client-urls=" + e.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		"--logger=zap",
		"--log-level=warn",
	}
	p, err := startProcess("etcd", e.Binaries.Etcd, args, filepath.Join(e.Dir, "etcd.log"))
	if err != nil {
		return err
	}
	e.etcd = p

	hc := &http.Client{Timeout: 2 * time.Second}
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := p.exitErr(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.EtcdURL+"/health", nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("wait for etcd at %s: %w", e.EtcdURL, e.withLog(p, err))
	}
	return nil
}

func (e *Env) startAPIServer(ctx context.Context, port int, opts Options) error {
	pki, err := writePKI(e.Dir, opts.NodeNames)
	if err != nil {
		return err
	}
	e.pki = pki
	args := []string{
		"--etcd-servers=" + e.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The endpoint reconcilers refuse a loopback advertise address
		// ("may not be in the loopback range"), so nothing maintains the
		// endpoints of default/kubernetes; the Service itself exists.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + pki.certDir,
		"--token-auth-file=" + pki.tokenFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + pki.saPublicKey,
		"--service-account-signing-key-file=" + pki.saPrivateKey,
		"--api-audiences=" + ServiceAccountIssuer,
		"--service-cluster-ip-range=" + ServiceCIDRv4 + "," + ServiceCIDRv6,
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	if opts.ClusterDialer != nil {
		config, proxy, err := startEgressProxy(e.Dir, opts.ClusterDialer, e.log)
		if err != nil {
			return err
		}
		e.egress = proxy
		// Node names resolve nowhere in a lab: reach kubelets by address.
		args = append(args, "--egress-selector-config-file="+config,
			"--kubelet-preferred-address-types=InternalIP,Hostname")
	}
	args = append(args, opts.ExtraAPIServerFlags...)
	p, err := startProcess("kube-apiserver", e.Binaries.APIServer, args, filepath.Join(e.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	e.apiserver = p

	// The serving certificate appears once the API server has generated it.
	var ca []byte
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if err := e.exitErr(); err != nil {
			return false, err
		}
		ca, err = os.ReadFile(pki.servingCert)
		return err == nil && len(ca) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for kube-apiserver serving certificate %s: %w", pki.servingCert, e.withLog(p, err))
	}

	e.ca = ca
	e.Config = &rest.Config{
		Host:            e.APIServerURL,
		BearerToken:     pki.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS:             100,
		Burst:           200,
	}
	if e.clientset, err = kubernetes.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	if e.KubeconfigPath, err = writeKubeconfig(e.Dir, e.APIServerURL, ca, pki.adminToken); err != nil {
		return err
	}

	if err := e.waitReady(ctx); err != nil {
		return fmt.Errorf("wait for kube-apiserver at %s: %w", e.APIServerURL, e.withLog(p, err))
	}
	return nil
}

// waitReady waits for /readyz, the default namespace and the kubernetes
// Service.
func (e *Env) waitReady(ctx context.Context) error {
	var last string
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := e.exitErr(); err != nil {
			return false, err
		}
		body, err := e.clientset.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "").DoRaw(ctx)
		if err != nil {
			last = strings.TrimSpace(string(body))
			if last == "" {
				last = err.Error()
			}
			return false, nil
		}
		if _, err := e.clientset.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
			last = fmt.Sprintf("namespace default: %v", err)
			return false, nil
		}
		if _, err := e.clientset.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{}); err != nil {
			last = fmt.Sprintf("service default/kubernetes: %v", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil && last != "" {
		return fmt.Errorf("%w; last check: %s", err, last)
	}
	return err
}

// processes returns the processes in the order Stop stops them: the clients
// of the API server first, etcd last.
func (e *Env) processes() []*process {
	return []*process{e.scheduler, e.controllerManager, e.apiserver, e.etcd}
}

// exitErr reports whether a started process has exited.
func (e *Env) exitErr() error {
	for _, p := range e.processes() {
		if p == nil {
			continue
		}
		if err := p.exitErr(); err != nil {
			return err
		}
	}
	return nil
}

// withLog adds the tail of p's log to err unless err already carries a log
// (because a process exited).
func (e *Env) withLog(p *process, err error) error {
	if e.exitErr() != nil {
		return err
	}
	return fmt.Errorf("%w; last lines of %s:\n%s", err, p.logPath, p.tail())
}

// poll calls cond every interval until it returns true or an error, or ctx
// ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// writeKubeconfig writes an admin kubeconfig into dir and returns its path.
func writeKubeconfig(dir, server string, ca []byte, token string) (string, error) {
	return writeKubeconfigFile(filepath.Join(dir, "kubeconfig"), "herald-testenv", server, ca, token)
}

// writeKubeconfigFile writes a kubeconfig with one cluster, user and
// context, all called name, to path and returns path.
func writeKubeconfigFile(path, name, server string, ca []byte, token string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// NodeUser returns the user name of the Node name's kubelet.
func NodeUser(name string) string { return "system:node:" + name }

// NodeKubeconfig writes a kubeconfig for the kubelet of Node name, one of
// Options.NodeNames, into Dir and returns its path. It authenticates with
// the Node's static token as NodeUser(name) in group NodesGroup and trusts
// the API server's serving certificate, whose names include 127.0.0.1 and
// localhost; server is the https URL the kubelet uses, e.g. a
// KubePrism-style proxy inside the node's network namespace, or "" for
// APIServerURL.
func (e *Env) NodeKubeconfig(name, server string) (string, error) {
	token, ok := e.pki.nodeTokens[name]
	if !ok {
		return "", fmt.Errorf("node %q is not one of the environment's NodeNames", name)
	}
	if server == "" {
		server = e.APIServerURL
	}
	return writeKubeconfigFile(filepath.Join(e.Dir, "kubeconfig-node-"+name), NodeUser(name), server, e.ca, token)
}

// KubeProxyKubeconfig writes a kubeconfig for kube-proxy (KubeProxyUser)
// into Dir and returns its path; server is as for NodeKubeconfig.
func (e *Env) KubeProxyKubeconfig(server string) (string, error) {
	if server == "" {
		server = e.APIServerURL
	}
	return writeKubeconfigFile(filepath.Join(e.Dir, "kubeconfig-kube-proxy"), KubeProxyUser, server, e.ca, e.pki.proxyToken)
}

// Clientset returns an admin clientset for the environment.
func (e *Env) Clientset() kubernetes.Interface { return e.clientset }

// ServiceAccountConfig returns a client configuration that authenticates as
// the existing ServiceAccount namespace/name, with a one-hour token from the
// TokenRequest API, so a test sees exactly what RBAC grants that account.
func (e *Env) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	expiry := int64(time.Hour / time.Second)
	tr, err := e.clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg, nil
}

// Stop terminates kube-scheduler, kube-controller-manager, kube-apiserver
// and etcd, in that order (each with SIGTERM, then SIGKILL after 10
// seconds), and removes Dir unless HERALD_KEEP_TESTENV=1, in which case it
// logs where Dir is. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		// The clients of the API server first, then the API server, so that
		// none of them spins on a lost server.
		for _, p := range e.processes() {
			if p == nil {
				continue
			}
			if err := p.stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if e.egress != nil {
			e.egress.close()
		}
		if os.Getenv(keepEnv) == "1" {
			e.log.Info("testenv: keeping environment directory", "dir", e.Dir, "env", keepEnv)
		} else if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove environment directory: %w", err))
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// randomToken returns a random hex token.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
