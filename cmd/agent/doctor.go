package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/sandbox/local"
)

func newDoctorCmd() *cobra.Command {
	var (
		dataDir, templateDir  string
		fix, undoFix, noSmoke bool
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that this host can run local sandboxes, and say how to fix what is missing",
		Long: `doctor checks root, kernel features (user namespaces, overlayfs, idmapped mounts, seccomp,
loop devices), the cgroup layout and controllers, the OCI runtimes, tools, the data dir and the
templates, then creates a sandbox with each usable runtime. It exits 1 when something fails.

--fix applies the host fixes agent knows: on a cgroup hybrid host, it moves the controllers
sitting on the v2 hierarchy (usually hugetlb) to v1 hierarchies so crun works (until reboot).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if undoFix {
				if err := local.UndoCrunHybridFix(nil); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "undone: the moved controllers are back on the v2 hierarchy")
				return nil
			}
			if fix {
				mounted, err := local.FixCrunHybrid()
				if err != nil {
					return err
				}
				for _, m := range mounted {
					fmt.Fprintf(cmd.OutOrStdout(), "fixed: mounted a v1 cgroup hierarchy at %s (undo: umount %s)\n", m, m)
				}
			}
			checks := local.Doctor(cmd.Context(), local.DoctorOptions{DataDir: dataDir, TemplateDir: templateDir, Smoke: !noSmoke})
			failed := false
			w := cmd.OutOrStdout()
			for _, c := range checks {
				fmt.Fprintf(w, "%-4s  %-34s %s\n", c.Severity, c.Name, c.Detail)
				if c.Severity != local.OK && c.Fix != "" {
					fmt.Fprintf(w, "      %-34s fix: %s\n", "", c.Fix)
				}
				failed = failed || c.Severity == local.Fail
			}
			if failed {
				return &exitError{code: exitFailed}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", envOr("AGENT_DATA_DIR", local.DefaultDataDir), "data dir to check (env AGENT_DATA_DIR)")
	f.StringVar(&templateDir, "template-dir", os.Getenv("AGENT_TEMPLATE_DIR"), "template dir (default DATA_DIR/templates)")
	f.BoolVar(&fix, "fix", false, "apply known host fixes (crun on cgroup hybrid hosts)")
	f.BoolVar(&undoFix, "undo-fix", false, "undo --fix (move the controllers back to cgroup v2)")
	f.BoolVar(&noSmoke, "no-smoke", false, "skip creating a sandbox with each runtime")
	return cmd
}
