package cli

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/herald-lb/herald/internal/agent"
	"github.com/herald-lb/herald/internal/membership"
	"github.com/herald-lb/herald/internal/metricsserver"
)

func newAgentCommand() *cobra.Command {
	var (
		kubeconfig, keyFile, metricsAddr string
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
			if opts.NodeName == "" {
				opts.NodeName = os.Getenv("NODE_NAME")
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read heartbeat key: %w", err)
			}
			opts.Key = bytes.TrimSpace(key)
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
			a, err := agent.New(cfg, opts)
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				stop, err := metricsserver.Serve(cmd.Context(), metricsserver.Options{Addr: metricsAddr, Registry: reg, Logger: log})
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
	f.StringVar(&keyFile, "key-file", "/etc/herald/heartbeat/key", "file holding the cluster's heartbeat key (a mounted Secret)")
	f.StringVar(&opts.ClusterID, "cluster-id", "herald", "separates Herald clusters that share a LAN")
	f.BoolVar(&opts.DefaultClass, "default-class", true, "also announce LoadBalancer Services that set no loadBalancerClass")
	f.DurationVar(&opts.Interval, "heartbeat-interval", membership.DefaultInterval, "heartbeat interval on each announcing interface")
	f.IntVar(&opts.DeadAfter, "dead-after", membership.DefaultDeadAfter, "heartbeats missed before a peer is dead on a segment")
	f.BoolVar(&opts.ProbeDisable, "no-probe", false, "do not probe (RFC 5227 / DAD) an address before first announcing it")
	f.DurationVar(&opts.LeaveGrace, "leave-grace", time.Second, "how long a stopping agent keeps answering while successors take over")
	f.StringVar(&dataplaneMode, "dataplane", "auto", "who forwards load-balancer traffic: none (kube-proxy or Cilium does), nftables (Herald's own table; needs NET_ADMIN) or auto (nftables unless kube-proxy or Cilium rules exist)")
	f.StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:9471", "address for /metrics and /healthz (empty disables)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}
