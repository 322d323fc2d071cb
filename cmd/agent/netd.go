package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/sandbox/local/network"
	"github.com/agentrun/agent/sandbox/local/network/egress"
)

// newNetdCmd is the egress helper of a networked local sandbox (DNS resolver and, for
// allow-lists, the transparent proxy), started and killed by the sandbox network manager.
func newNetdCmd() *cobra.Command {
	var config, id string
	cmd := &cobra.Command{
		Use:    "netd --config FILE",
		Short:  "Serve a sandbox's DNS and egress proxy (started by the sandbox network manager)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return egress.Main(ctx, config, os.Stdout, slog.Default().With("netd", id))
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the helper's configuration file")
	cmd.Flags().StringVar(&id, network.HelperMarker[2:], "", "the sandbox's id (marks the process)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
