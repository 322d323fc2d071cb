package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type globalFlags struct {
	logLevel string
	logJSON  bool
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "agent",
		Short: "Run LLM coding agents in isolated sandboxes, in batch and in CI",
		Long: `agent runs tool-calling coding agents, each in its own isolated Linux sandbox.

The agent reads and writes files and runs commands (git, python, node, pip) inside the
sandbox; the model's API key, the host's environment and files never enter it.

Exit codes:
  0  success (every task passed)
  1  a task failed or errored (agent eval: a model regressed; agent doctor: a check failed)
  2  usage or configuration error
  3  internal error

Documentation: README.md and docs/ in the source repository.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return setupLogging(g)
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&g.logJSON, "log-json", false, "write logs as JSON lines to stderr")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError("%v (see %s --help)", err, cmd.CommandPath())
	})
	root.AddCommand(newVersionCmd(), newEnvdCmd(), newSandboxCmd(), newTemplateCmd(), newDoctorCmd(),
		newRunCmd(), newDoCmd(), newChatCmd(), newReportCmd(), newEvalCmd(), newNetdCmd(), newServeCmd())
	argsAreUsage(root)
	return root
}

// argsAreUsage makes every mistake on the command line exit 2: cobra's argument checks return
// plain errors (which would exit 3, internal), and a command group given an unknown subcommand
// would print its help and exit 0.
func argsAreUsage(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			cmd.SuggestionsMinimumDistance = 2
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usageError("%s (see %s --help)", msg, cmd.CommandPath())
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	} else if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError("%v (see %s --help)", err, cmd.CommandPath())
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}

func setupLogging(g *globalFlags) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToLower(g.logLevel))); err != nil {
		return usageError("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if g.logJSON {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	slog.SetDefault(slog.New(h))
	return nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of agent and of the protocols it speaks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "agent %s\n", version)
			fmt.Fprintf(cmd.OutOrStdout(), "envd protocol %s\n", envdVersion())
			return nil
		},
	}
}
