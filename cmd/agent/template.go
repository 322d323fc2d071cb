package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/sandbox/local/template"
)

func newTemplateCmd() *cobra.Command {
	lf := &localFlags{}
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Build, list and remove sandbox templates",
		Long: `Templates are the read-only root filesystems sandboxes start from:

  host    the host's /usr, /bin, /sbin, /lib… read-only and a synthesized minimal /etc (instant)
  debian  Debian bookworm with python3, pip, venv, nodejs, npm, git, curl, build-essential,
          procps and sudo, built once with debootstrap and cached`,
	}
	lf.register(cmd)
	var force bool
	build := &cobra.Command{
		Use:   "build NAME",
		Short: "Build a template (again with --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			t, err := b.Templates().Build(cmd.Context(), args[0], force, progressPrinter(cmd.ErrOrStderr()))
			if errors.Is(err, template.ErrUnknown) {
				return &exitError{code: exitUsage, err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", t.Name, t.Digest, humanBytes(t.SizeBytes))
			return nil
		},
	}
	build.Flags().BoolVar(&force, "force", false, "rebuild even when already built")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List built templates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			ts, err := b.Templates().List()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDIGEST\tCREATED\tSIZE\tUSER\tWORKDIR")
			built := map[string]bool{}
			for _, t := range ts {
				built[t.Name] = true
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, shortDigest(t.Digest), t.Created.Format(time.RFC3339), humanBytes(t.SizeBytes), t.DefaultUser, t.Workdir)
			}
			for _, n := range b.Templates().Known() {
				if !built[n] {
					fmt.Fprintf(w, "%s\t(not built)\t\t\t\t\n", n)
				}
			}
			return w.Flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a built template (running sandboxes keep it until they end)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			err = b.Templates().Remove(cmd.Context(), args[0])
			if errors.Is(err, template.ErrNotBuilt) || errors.Is(err, template.ErrUnknown) {
				return &exitError{code: exitUsage, err: err}
			}
			return err
		},
	}
	cmd.AddCommand(build, ls, rm)
	return cmd
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
