package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-lb/herald/internal/controller"
	"github.com/herald-lb/herald/internal/pprofserver"
)

func newControllerCommand() *cobra.Command {
	var (
		kubeconfig, logLevel, logFormat string
		opts                            controller.Options
		heartbeatSecret                 string
		pprofAddr                       string
		qps                             float32
		burst                           int
	)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the LB-IPAM controller: hand out pool addresses to LoadBalancer Services",
		Long: `Run the LB-IPAM controller. It allocates addresses from LoadBalancerIPPools to
Services of type LoadBalancer, writes status.loadBalancer.ingress, the
herald.dev/IPAllocated condition, Events and pool status. Run two replicas:
one leads (a Lease), the other takes over when it goes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			// client-go and controller-runtime log through klog and logr;
			// send both to the same structured handler.
			klog.SetSlogLogger(log)
			ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			cfg.QPS, cfg.Burst = qps, burst
			cfg.UserAgent = "herald-controller/" + Version
			if opts.Identity == "" {
				if opts.Identity, err = leaderIdentity(); err != nil {
					return err
				}
			}
			if opts.LeaseNamespace == "" {
				opts.LeaseNamespace = os.Getenv("POD_NAMESPACE")
			}
			if opts.LeaseNamespace == "" {
				opts.LeaseNamespace = "herald-system"
			}
			ns, name, ok := strings.Cut(heartbeatSecret, "/")
			if !ok {
				ns, name = opts.LeaseNamespace, heartbeatSecret
			}
			opts.HeartbeatSecret = types.NamespacedName{Namespace: ns, Name: name}
			opts.Logger = log
			c, err := controller.New(cfg, opts)
			if err != nil {
				return err
			}
			if pprofAddr != "" {
				stop, err := pprofserver.Serve(cmd.Context(), pprofAddr, log)
				if err != nil {
					return err
				}
				defer stop()
			}
			return c.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	f.StringVar(&opts.Identity, "identity", "", "name of this replica in the leader Lease (default: $POD_NAME, else the hostname, plus a random suffix)")
	f.StringVar(&opts.LeaseNamespace, "lease-namespace", "", "namespace of the leader Lease (default: $POD_NAMESPACE, else herald-system)")
	f.StringVar(&opts.LeaseName, "lease-name", "herald-controller", "name of the leader Lease")
	f.DurationVar(&opts.LeaseDuration, "lease-duration", 15*time.Second, "leader lease duration")
	f.DurationVar(&opts.RenewDeadline, "renew-deadline", 10*time.Second, "leader renew deadline")
	f.DurationVar(&opts.RetryPeriod, "retry-period", 2*time.Second, "leader election retry period")
	f.StringVar(&heartbeatSecret, "heartbeat-secret", "herald-heartbeat-key", "the Secret ([namespace/]name; default namespace: the controller's) holding the agents' heartbeat keys")
	f.BoolVar(&opts.CreateHeartbeatSecret, "create-heartbeat-secret", true, "create the heartbeat Secret with a random key when it is missing (false for a Secret you manage)")
	f.BoolVar(&opts.DefaultClass, "default-class", true, "also serve LoadBalancer Services that set no loadBalancerClass (herald.dev/l2 is always served)")
	f.IntVar(&opts.Workers, "workers", 8, "Services reconciled at once")
	f.StringVar(&opts.MetricsAddr, "metrics-addr", "127.0.0.1:9470", "address for /metrics, /healthz and /readyz (empty disables)")
	f.Float32Var(&qps, "kube-api-qps", 200, "API requests per second this controller may make")
	f.IntVar(&burst, "kube-api-burst", 400, "API request burst")
	f.StringVar(&pprofAddr, "pprof-addr", "", "serve Go's profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6061 (empty: off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}

// leaderIdentity names this replica in the leader Lease: $POD_NAME or the
// hostname, plus a random suffix, as controller-runtime does, so that two
// replicas run by hand on one host never both believe they lead.
func leaderIdentity() (string, error) {
	base := os.Getenv("POD_NAME")
	if base == "" {
		var err error
		if base, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("find a leader identity: %w", err)
		}
	}
	return base + "_" + string(uuid.NewUUID()), nil
}
