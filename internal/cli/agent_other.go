//go:build !linux

package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAgentCommand: the agent needs Linux (raw sockets, netlink, nftables).
// Elsewhere — the operator commands on a macOS laptop — it only says so.
func newAgentCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (Linux only)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("herald agent runs on Linux nodes only")
		},
	}
}
