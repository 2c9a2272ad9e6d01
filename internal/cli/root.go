// Package cli holds the herald command tree (cobra): each subcommand parses
// flags and hands off to the package that does the work.
package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=…".
var Version = "dev"

// PluginName is the name under which kubectl runs the binary as a plugin
// (kubectl herald …): a symlink or copy of herald on the PATH.
const PluginName = "kubectl-herald"

// NewRoot returns the herald root command with every subcommand. name is
// the base name the binary was run as: as PluginName the same commands
// are kubectl herald's, and the controller and agent, which belong in the
// cluster, are hidden from its help.
func NewRoot(name string) *cobra.Command {
	return newRoot(name, inspectHooks{})
}

func newRoot(name string, hooks inspectHooks) *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald gives LoadBalancer Services real addresses on bare metal",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	controller, agent := newControllerCommand(), newAgentCommand()
	if name == PluginName {
		// Help and completion then read "kubectl herald services".
		root.Use = "kubectl herald"
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl herald"}
		controller.Hidden, agent.Hidden = true, true
	}
	root.AddCommand(controller, agent, newVersionCommand())
	root.AddCommand(newInspectCommands(hooks)...)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Herald's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), Version)
			return err
		},
	}
}

// restConfig loads the client configuration: the --kubeconfig file, else
// $KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config.
func restConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	} else if os.Getenv("KUBECONFIG") == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// newLogger returns a structured logger at the named level.
func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
