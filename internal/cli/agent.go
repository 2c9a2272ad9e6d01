//go:build linux

package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/heartbeatkey"
	"github.com/herald-lb/herald/internal/membership"
	"github.com/herald-lb/herald/internal/metricsserver"
	"github.com/herald-lb/herald/internal/pprofserver"
)

func newAgentCommand() *cobra.Command {
	var (
		kubeconfig, keyFile, metricsAddr string
		pprofAddr                        string
		keySecret                        string
		dataplaneMode                    string
		logLevel, logFormat              string
		opts                             agent.Options
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: answer ARP/NDP for the load-balancer addresses this node owns",
		Long: `Run the node agent (a DaemonSet with hostNetwork and NET_RAW). It learns from
the API server which addresses this node may announce on which interfaces, keeps
a heartbeat presence on each of those LAN segments, settles with the other
agents which node answers for each address, and answers ARP and NDP for the
addresses it owns. Fail-over needs no API server: a node not heard on a segment
for 6 heartbeats (300 ms by default) loses its addresses there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			klog.SetSlogLogger(log)
			ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
			agentRuntimeDefaults(os.Getenv)
			if opts.NodeName == "" {
				opts.NodeName = os.Getenv("NODE_NAME")
			}
			opts.Namespace = os.Getenv("POD_NAMESPACE")
			switch {
			case keyFile != "":
				// A fixed key: never reloaded. For running by hand and for
				// tests; clusters use the watched Secret.
				keys, err := heartbeatkey.LoadFile(keyFile)
				if err != nil {
					return err
				}
				opts.Keys = keys.Values()
			case keySecret != "":
				ns, name, ok := strings.Cut(keySecret, "/")
				if !ok {
					ns, name = os.Getenv("POD_NAMESPACE"), keySecret
					if ns == "" {
						ns = "herald-system"
					}
				}
				opts.KeySecret = types.NamespacedName{Namespace: ns, Name: name}
			default:
				return fmt.Errorf("no heartbeat key: set --heartbeat-secret (the Secret the controller creates) or --key-file")
			}
			if opts.Dataplane, err = agent.ParseDataplaneMode(dataplaneMode); err != nil {
				return err
			}
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			cfg.UserAgent = "herald-agent/" + Version
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			opts.Registerer = reg
			opts.Logger = log
			opts.Version = Version
			a, err := agent.New(cfg, opts)
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
			if metricsAddr != "" {
				stop, err := metricsserver.Serve(cmd.Context(), metricsserver.Options{Addr: metricsAddr, Registry: reg, Healthy: a.Healthy, Logger: log})
				if err != nil {
					return err
				}
				defer stop()
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	f.StringVar(&opts.NodeName, "node-name", "", "this node's Kubernetes name (default: $NODE_NAME)")
	f.StringVar(&keySecret, "heartbeat-secret", "", "the Secret ([namespace/]name; default namespace $POD_NAMESPACE, else herald-system) holding the heartbeat keys, watched and reloaded without a restart")
	f.StringVar(&keyFile, "key-file", "", "a file holding one fixed heartbeat key instead of the Secret (never reloaded)")
	f.StringVar(&opts.ClusterID, "cluster-id", "herald", "separates Herald clusters that share a LAN")
	f.BoolVar(&opts.DefaultClass, "default-class", true, "also announce LoadBalancer Services that set no loadBalancerClass")
	f.DurationVar(&opts.Interval, "heartbeat-interval", membership.DefaultInterval, "heartbeat interval on each announcing interface")
	f.IntVar(&opts.DeadAfter, "dead-after", membership.DefaultDeadAfter, "heartbeats missed before a peer is dead on a segment")
	f.BoolVar(&opts.IgnoreExcludeLabel, "ignore-exclude-label", false, "announce from this node even if it carries node.kubernetes.io/exclude-from-external-load-balancers")
	f.BoolVar(&opts.ProbeDisable, "no-probe", false, "do not probe (RFC 5227 / DAD) an address before first announcing it")
	f.DurationVar(&opts.ConflictReprobe, "conflict-reprobe", 30*time.Second, "how often an address found in use by another host before its first announcement is probed again")
	f.DurationVar(&opts.LeaveGrace, "leave-grace", time.Second, "how long a stopping agent keeps answering while successors take over")
	f.StringVar(&dataplaneMode, "dataplane", "auto", "who forwards load-balancer traffic: none (kube-proxy or Cilium does), nftables (Herald's own table; needs NET_ADMIN) or auto (nftables unless kube-proxy or Cilium rules exist)")
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:9471", "address for /metrics and /healthz (empty disables)")
	f.StringVar(&pprofAddr, "pprof-addr", "", "serve Go's profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (empty: off)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}

// agentRuntimeDefaults sets the Go runtime's defaults for the agent where
// the environment (read with getenv) does not set them.
func agentRuntimeDefaults(getenv func(string) string) {
	if getenv("GOMAXPROCS") == "" {
		// The agent waits for frames and timers, tens of times a
		// second, and rarely computes. With one P a wake-up runs
		// on the thread that was woken; with more, the runtime
		// also wakes a second thread to look for work, which
		// doubled the kernel time of an idle agent (see
		// docs/benchmarks.md, "Agent cost"). GOMAXPROCS overrides.
		runtime.GOMAXPROCS(1)
	}
	if getenv("GOGC") == "" {
		// Most of the agent's heap is its informer caches, which
		// live as long as the agent; the default (100) lets the
		// heap grow to twice them between collections. At 50 the
		// resident set at 10 000 Services stays well inside the
		// chart's limit, and collections stay rare because an
		// agent allocates little once started. GOGC overrides.
		debug.SetGCPercent(50)
	}
}
