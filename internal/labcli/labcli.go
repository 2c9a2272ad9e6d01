// Package labcli holds the herald-lab command tree (cobra): the lab's
// commands (up, status, down, client, node, kubectl) and the hidden daemon
// that `up` starts. Each parses flags and hands off to internal/lab.
package labcli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/herald-lb/herald/internal/lab"
)

// Version is set at build time with -ldflags "-X .../internal/labcli.Version=…".
var Version = "dev"

// NewRoot returns the herald-lab root command with every subcommand.
func NewRoot() *cobra.Command {
	opts := lab.Options{}
	cmd := &cobra.Command{
		Use:   "herald-lab",
		Short: "A Kubernetes cluster in network namespaces on this machine, with Herald installed (root only)",
		Long: `herald-lab runs the Talos tutorial on one Linux machine, as root, without
Docker or VMs: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler (built from pinned modules), N real nodes in network
namespaces on a LAN bridge (192.168.10.0/24, nodes from .215) — each the
real kubelet, containerd, runc and the CNI bridge, with a KubePrism-style
proxy on localhost:7445 — a registry the nodes pull every image from, a LAN
client (192.168.10.10), and Herald installed with its Helm chart and the
Talos preset. Herald's image is built from the herald binary next to
herald-lab (or --herald).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.PersistentFlags().StringVar(&opts.Dir, "dir", envOr("HERALD_LAB_DIR", lab.DefaultDir), "the lab's state directory ($HERALD_LAB_DIR)")
	cmd.PersistentFlags().StringVar(&opts.Prefix, "prefix", envOr("HERALD_LAB_PREFIX", lab.DefaultPrefix), "prefix of the lab's network namespace names ($HERALD_LAB_PREFIX)")
	heraldHelp := "the herald binary that runs as Herald's image ($HERALD_LAB_HERALD; default: herald next to herald-lab)"

	var chart string
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab (or check it is up) and install Herald",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := lab.Up(ctx, opts, chart, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout())
			if err := lab.PrintStatus(ctx, s, cmd.OutOrStdout()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), `
Try: herald-lab kubectl get nodes -o wide
     herald-lab client -- ip neigh
     herald-lab down`)
			return nil
		},
	}
	up.Flags().IntVar(&opts.Nodes, "nodes", 3, "number of nodes (cp1, node1, …)")
	up.Flags().BoolVar(&opts.IPv6, "ipv6", false, "dual stack: IPv6 LAN addresses (fd00:10::/64) and dual-stack Pods")
	bgpDefault := envOr("HERALD_LAB_BGP", "") == "true"
	up.Flags().BoolVar(&opts.BGP, "bgp", bgpDefault, "a router on the LAN (192.168.10.1, FRR, AS 64512: every node's BGP peer and default gateway), a client behind it (192.168.20.10: herald-lab node far -- …) and a core router behind it (192.168.21.2, BIRD 2, AS 64514: herald-lab birdc …) ($HERALD_LAB_BGP=true)")
	up.Flags().StringVar(&chart, "chart", "", "Herald's Helm chart (default: deploy/helm/herald above the working directory)")
	up.Flags().StringVar(&opts.Herald, "herald", os.Getenv("HERALD_LAB_HERALD"), heraldHelp)
	// up and daemon share opts: a flag's default is written when it is
	// defined, so both get the same one.
	proxy := envOr("HERALD_LAB_PROXY", lab.ProxyNone)
	proxyHelp := "what forwards Service traffic: none (Talos without kube-proxy: Herald's data plane), " +
		"or the real kube-proxy in nftables or iptables mode on every node ($HERALD_LAB_PROXY)"
	up.Flags().StringVar(&opts.Proxy, "proxy", proxy, proxyHelp)

	daemon := &cobra.Command{
		Use:    "daemon",
		Short:  "Run the lab in the foreground (what `up` starts in the background)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			return lab.RunDaemon(ctx, opts, log)
		},
	}
	daemon.Flags().IntVar(&opts.Nodes, "nodes", 3, "number of nodes")
	daemon.Flags().BoolVar(&opts.IPv6, "ipv6", false, "IPv6 on the LAN")
	daemon.Flags().BoolVar(&opts.BGP, "bgp", bgpDefault, "a BGP router on the LAN, a client and a core router behind it")
	daemon.Flags().StringVar(&opts.Herald, "herald", os.Getenv("HERALD_LAB_HERALD"), heraldHelp)
	daemon.Flags().StringVar(&opts.HeraldTag, "herald-tag", "", "the tag of Herald's image")
	daemon.Flags().StringVar(&opts.Proxy, "proxy", proxy, proxyHelp)

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts, nodes, Herald's Pods and LoadBalancer Services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lab.ReadState(opts.Dir)
			if err != nil {
				return err
			}
			return lab.PrintStatus(cmd.Context(), s, cmd.OutOrStdout())
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab and remove its namespaces (also after a crash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.Down(opts, cmd.OutOrStdout()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "The lab is down.")
			return nil
		},
	}
	client := &cobra.Command{
		Use:   "client -- COMMAND [ARG...]",
		Short: "Run a command on the LAN client (192.168.10.10), e.g. curl or arp -n",
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := lab.ReadState(opts.Dir)
			if err != nil {
				return err
			}
			return lab.ExecIn(s, "client", args)
		},
	}
	node := &cobra.Command{
		Use:   "node NAME -- COMMAND [ARG...]",
		Short: "Run a command in a node's network namespace",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := lab.ReadState(opts.Dir)
			if err != nil {
				return err
			}
			return lab.ExecIn(s, args[0], args[1:])
		},
	}
	crashNode := &cobra.Command{
		Use:   "crash-node NAME",
		Short: "Cut a node's power: its LAN link, every process it runs (SIGKILL, no goodbye) and its network namespace go at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := lab.ReadState(opts.Dir)
			if err != nil {
				return err
			}
			return lab.CrashNode(cmd.Context(), s, args[0])
		},
	}
	bootNode := &cobra.Command{
		Use:   "boot-node NAME",
		Short: "Boot a crashed node again (its namespace, link, containerd and kubelet; its Pods restart) and wait until it is Ready",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := lab.ReadState(opts.Dir)
			if err != nil {
				return err
			}
			return lab.BootNode(cmd.Context(), s, args[0])
		},
	}
	vtysh := passThrough("vtysh", "Run FRR's vtysh on the lab's router (herald-lab up --bgp), e.g. vtysh -c 'show bgp summary'", lab.Vtysh)
	birdc := passThrough("birdc", "Run BIRD's birdc on the lab's core router (herald-lab up --bgp), e.g. birdc show route", lab.Birdc)
	kubectl := passThrough("kubectl", "Run kubectl with the lab's kubeconfig", lab.Kubectl)

	registryCmd := &cobra.Command{
		Use:   "registry",
		Short: "Print the host:port of the lab's registry on loopback (plain HTTP; the nodes pull from it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := lab.ReadState(opts.Dir)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s.Registry)
			return err
		},
	}

	version := &cobra.Command{
		Use:   "version",
		Short: "Print herald-lab's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), Version)
			return err
		},
	}

	cmd.AddCommand(up, daemon, status, down, client, node, crashNode, bootNode, kubectl, vtysh, birdc, registryCmd, version)
	return cmd
}

// passThrough is a command that hands all its arguments to run (a tool
// of the lab's: kubectl, vtysh, birdc) with the running lab's State. Flag
// parsing is off so that the tool gets every flag; the lab's own
// --dir=DIR may still come first, else $HERALD_LAB_DIR or the default.
func passThrough(name, short string, run func(lab.State, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:                name + " [ARG...]",
		Short:              short,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			dir := envOr("HERALD_LAB_DIR", lab.DefaultDir)
			if len(args) > 0 && strings.HasPrefix(args[0], "--dir=") {
				dir, args = strings.TrimPrefix(args[0], "--dir="), args[1:]
			}
			s, err := lab.ReadState(dir)
			if err != nil {
				return err
			}
			return run(s, args)
		},
	}
}

// envOr returns the environment variable name, or def when it is empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
