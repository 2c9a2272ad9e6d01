package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// rootCAConfigMap is the ConfigMap that the controller manager publishes
	// in every namespace with the CA that in-cluster clients trust.
	rootCAConfigMap = "kube-root-ca.crt"
	// defaultServiceAccount is the ServiceAccount that the controller
	// manager creates in every namespace.
	defaultServiceAccount = "default"
)

// clusterCIDR parses a cluster CIDR (one prefix, or an IPv4 and an IPv6
// prefix separated by a comma) and returns it normalized, with the
// kube-controller-manager flags that set the size of each Node's Pod CIDR.
func clusterCIDR(cidr string) (string, []string, error) {
	parts := strings.Split(cidr, ",")
	if len(parts) > 2 {
		return "", nil, fmt.Errorf("cluster CIDR %q: want one prefix or an IPv4,IPv6 pair", cidr)
	}
	prefixes := make([]string, 0, len(parts))
	var v4, v6 int
	for _, part := range parts {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return "", nil, fmt.Errorf("cluster CIDR %q: %w", cidr, err)
		}
		if p != p.Masked() {
			return "", nil, fmt.Errorf("cluster CIDR %q: %s has host bits set", cidr, p)
		}
		mask := nodeMaskIPv6
		if p.Addr().Is4() {
			mask = nodeMaskIPv4
			v4++
		} else {
			v6++
		}
		if p.Bits() > mask {
			return "", nil, fmt.Errorf("cluster CIDR %q: %s is smaller than the /%d each Node gets", cidr, p, mask)
		}
		prefixes = append(prefixes, p.String())
	}
	normalized := strings.Join(prefixes, ",")
	switch {
	case len(prefixes) == 1 && v4 == 1:
		return normalized, []string{"--node-cidr-mask-size=" + strconv.Itoa(nodeMaskIPv4)}, nil
	case len(prefixes) == 1:
		return normalized, []string{"--node-cidr-mask-size=" + strconv.Itoa(nodeMaskIPv6)}, nil
	case v4 == 1 && v6 == 1:
		// kube-controller-manager refuses --node-cidr-mask-size for
		// dual-stack clusters.
		return normalized, []string{
			"--node-cidr-mask-size-ipv4=" + strconv.Itoa(nodeMaskIPv4),
			"--node-cidr-mask-size-ipv6=" + strconv.Itoa(nodeMaskIPv6),
		}, nil
	default:
		return "", nil, fmt.Errorf("cluster CIDR %q: a dual-stack pair needs one IPv4 and one IPv6 prefix", cidr)
	}
}

// startControllers starts kube-controller-manager and kube-scheduler
// against the ready API server, with the admin kubeconfig. schedulerPort is
// the loopback port of the scheduler's health endpoints.
func (e *Env) startControllers(opts Options, schedulerPort int) error {
	cidr, maskFlags, err := clusterCIDR(opts.ClusterCIDR)
	if err != nil {
		return err
	}
	e.ClusterCIDR = cidr
	if err := e.pki.writeServingCA(); err != nil {
		return err
	}

	kcmArgs := []string{
		"--kubeconfig=" + e.KubeconfigPath,
		"--leader-elect=false",
		// No HTTPS endpoints: waitControllers sees the controllers work in
		// the API instead.
		"--secure-port=0",
		// All controllers act as the admin user; RBAC for their own
		// ServiceAccounts is not what the tests exercise.
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + e.pki.saPrivateKey,
		"--root-ca-file=" + e.pki.servingCA,
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + cidr,
	}
	kcmArgs = append(kcmArgs, maskFlags...)
	kcmArgs = append(kcmArgs, opts.ExtraControllerManagerFlags...)
	kcm, err := startProcess("kube-controller-manager", e.Binaries.ControllerManager, kcmArgs,
		filepath.Join(e.Dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	e.controllerManager = kcm

	// The scheduler writes its self-signed serving certificate here, so
	// that waitControllers can verify it.
	certDir := filepath.Join(e.pki.certDir, "kube-scheduler")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return fmt.Errorf("create scheduler certificate directory: %w", err)
	}
	schedArgs := []string{
		"--kubeconfig=" + e.KubeconfigPath,
		// Tokens on its endpoints are checked with TokenReview and
		// SubjectAccessReview. There is no client CA to look up: the API
		// server has none, so it never publishes
		// kube-system/extension-apiserver-authentication.
		"--authentication-kubeconfig=" + e.KubeconfigPath,
		"--authentication-skip-lookup=true",
		"--authorization-kubeconfig=" + e.KubeconfigPath,
		"--leader-elect=false",
		// With --secure-port=0 the scheduler would have no readiness
		// signal short of scheduling a Pod; /readyz includes
		// sched-handler-sync.
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedulerPort),
		"--cert-dir=" + certDir,
	}
	schedArgs = append(schedArgs, opts.ExtraSchedulerFlags...)
	sched, err := startProcess("kube-scheduler", e.Binaries.Scheduler, schedArgs,
		filepath.Join(e.Dir, "kube-scheduler.log"))
	if err != nil {
		return err
	}
	e.scheduler = sched
	e.schedulerURL = "https://" + hostPort(schedulerPort)
	return nil
}

// waitControllers waits until the controller manager has created the
// "default" ServiceAccount and the kube-root-ca.crt ConfigMap (with the API
// server's CA) in the default namespace, and the scheduler's /readyz
// succeeds.
func (e *Env) waitControllers(ctx context.Context) error {
	ca, err := os.ReadFile(e.pki.servingCA)
	if err != nil {
		return fmt.Errorf("read serving CA: %w", err)
	}
	var last string
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := e.exitErr(); err != nil {
			return false, err
		}
		core := e.clientset.CoreV1()
		if _, err := core.ServiceAccounts(metav1.NamespaceDefault).Get(ctx, defaultServiceAccount, metav1.GetOptions{}); err != nil {
			last = fmt.Sprintf("serviceaccount default/%s: %v", defaultServiceAccount, err)
			return false, nil
		}
		cm, err := core.ConfigMaps(metav1.NamespaceDefault).Get(ctx, rootCAConfigMap, metav1.GetOptions{})
		if err != nil {
			last = fmt.Sprintf("configmap default/%s: %v", rootCAConfigMap, err)
			return false, nil
		}
		if cm.Data["ca.crt"] != string(ca) {
			last = fmt.Sprintf("configmap default/%s does not hold the API server's CA", rootCAConfigMap)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for kube-controller-manager: %w", e.withLog(e.controllerManager, lastCheck(err, last)))
	}

	certFile := filepath.Join(e.pki.certDir, "kube-scheduler", "kube-scheduler.crt")
	var client *http.Client
	last = ""
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := e.exitErr(); err != nil {
			return false, err
		}
		if client == nil {
			data, err := os.ReadFile(certFile)
			if err != nil || len(data) == 0 {
				last = fmt.Sprintf("serving certificate %s not written yet", certFile)
				return false, nil
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data) {
				return false, fmt.Errorf("no certificate in %s", certFile)
			}
			client = &http.Client{
				Timeout:   2 * time.Second,
				Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.schedulerURL+"/readyz?verbose", nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		return resp.StatusCode == http.StatusOK, nil
	})
	if client != nil {
		client.CloseIdleConnections()
	}
	if err != nil {
		return fmt.Errorf("wait for kube-scheduler at %s: %w", e.schedulerURL, e.withLog(e.scheduler, lastCheck(err, last)))
	}
	return nil
}

// lastCheck adds the outcome of the last check of a wait to its error.
func lastCheck(err error, last string) error {
	if last == "" {
		return err
	}
	return fmt.Errorf("%w; last check: %s", err, last)
}
