package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

// usageIfNotFound turns a missing sandbox or snapshot into a usage error (exit 2).
func usageIfNotFound(err error) error {
	if errors.Is(err, sandbox.ErrNotFound) || errors.Is(err, sandbox.ErrInvalid) {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

// eachID runs fn for every id in turn, going on past failures, and joins their errors (a missing
// sandbox or snapshot as a usage error).
func eachID(ids []string, fn func(id string) error) error {
	var errs []error
	for _, id := range ids {
		if err := fn(id); err != nil {
			errs = append(errs, usageIfNotFound(err))
		}
	}
	return errors.Join(errs...)
}

// printList prints items as indented JSON (none as []) or as a table: header, then a row of
// tab-separated cells per item.
func printList[T any](out io.Writer, asJSON bool, items []T, header string, row func(T) string) error {
	if asJSON {
		if items == nil {
			items = []T{}
		}
		return writeIndentedJSON(out, items)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, it := range items {
		fmt.Fprintln(w, row(it))
	}
	return w.Flush()
}

func newSandboxPauseCmd(lf *localFlags) *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   "pause ID...",
		Short: "Freeze sandboxes, memory and processes kept, and keep them until resumed",
		Long: `pause freezes every process of each sandbox (the cgroup freezer): memory, processes, open files
and files stay exactly as they are, and the sandbox's lifetime clock stops. A paused sandbox is
kept: it outlives the process that created it and stays paused until agent sandbox resume, kill,
or gc --older-than. agent sandbox shell and exec thaw it for their session only.

Memory does not survive a reboot of the host; agent sandbox snapshot keeps the files.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			return eachID(args, func(id string) error {
				if err := b.Keep(cmd.Context(), id, note); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s paused (memory and processes kept, lifetime clock stopped); resume: agent sandbox resume %s\n", id, id)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why it is kept (shown by ls --json)")
	return cmd
}

func newSandboxResumeCmd(lf *localFlags) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "resume ID",
		Short: "Thaw a paused sandbox: its processes continue where they stopped",
		Long: `resume thaws a paused sandbox: its processes continue where they stopped, and its lifetime clock
runs again with the time that was left (or --timeout). A watchdog enforces the lifetime after this
command exits, as for create.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer b.Close()
			s, err := b.Resume(cmd.Context(), args[0], local.ResumeOptions{Lifetime: timeout})
			if err != nil {
				return usageIfNotFound(err)
			}
			if err := startWatchdog(lf, s); err != nil {
				_ = s.Kill(context.WithoutCancel(cmd.Context()))
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s resumed, expires in %s\n", s.ID(), time.Until(s.Record().Expires).Truncate(time.Second))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "new lifetime (default: what was left when it was paused)")
	return cmd
}

func newSandboxSnapshotCmd(lf *localFlags) *cobra.Command {
	var (
		o      local.SnapshotOptions
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot ID",
		Short: "Save a sandbox's files as a persistent snapshot (processes and memory are not kept)",
		Long: `snapshot saves the files of a sandbox — its writable layer over the template: what it wrote,
changed or deleted — as a snapshot in DATA_DIR/snapshots that survives this process and reboots.
The sandbox is frozen while its files are copied and thawed afterwards (a paused one stays paused).
Processes and memory are not kept: a sandbox created from the snapshot (create --from, fork) starts
fresh processes over the same files. --memory would keep them with CRIU; it is not available yet
and fails, saying what CRIU this host has (agent doctor says it too).

Subcommands list, remove, verify and export snapshots.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			snap, err := b.Snapshot(cmd.Context(), args[0], o)
			if err != nil {
				return usageIfNotFound(err)
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(snap)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "snapshot %s of sandbox %s: files only (processes and memory are not kept); %d entries, %s, %s; sandbox frozen %v\n",
				snap.ID, snap.Source, snap.Entries, humanBytes(snap.Bytes), snap.Digest[:19], snap.FrozenFor.Round(time.Millisecond))
			fmt.Fprintln(cmd.OutOrStdout(), snap.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ID, "id", "", "name the snapshot (default: a random id)")
	f.StringVar(&o.Note, "note", "", "a note kept with the snapshot")
	f.BoolVar(&o.Memory, "memory", false, "also keep processes and memory (CRIU; not available yet: fails)")
	f.BoolVar(&asJSON, "json", false, "print the snapshot's description as JSON")
	cmd.AddCommand(newSnapshotLsCmd(lf), newSnapshotRmCmd(lf), newSnapshotVerifyCmd(lf), newSnapshotExportCmd(lf))
	return cmd
}

func newSnapshotLsCmd(lf *localFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List snapshots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			snaps, err := b.Snapshots(cmd.Context())
			if err != nil {
				return err
			}
			return printList(cmd.OutOrStdout(), asJSON, snaps, "ID\tKIND\tSOURCE\tTEMPLATE\tAGE\tENTRIES\tSIZE\tUSED BY\tDIGEST", func(s local.SnapshotInfo) string {
				kind := s.Kind
				if s.Auto {
					kind += " (auto)"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s", s.ID, kind, s.Source, s.Template,
					time.Since(s.Created).Truncate(time.Second), s.Entries, humanBytes(s.Bytes), len(s.UsedBy), s.Digest[:19])
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSnapshotRmCmd(lf *localFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm SNAPSHOT...",
		Short: "Delete snapshots (refused while a sandbox created from one exists)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			return eachID(args, func(id string) error { return b.RemoveSnapshot(cmd.Context(), id) })
		},
	}
}

func newSnapshotVerifyCmd(lf *localFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify SNAPSHOT...",
		Short: "Recompute snapshots' digests and compare them with the recorded ones",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			err = eachID(args, func(id string) error {
				if err := b.VerifySnapshot(cmd.Context(), id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", id)
				return nil
			})
			if err != nil {
				return &exitError{code: exitFailed, err: err}
			}
			return nil
		},
	}
}

func newSnapshotExportCmd(lf *localFlags) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export SNAPSHOT",
		Short: "Write a snapshot's files as an OCI image layer tar (its sha256 is the snapshot's digest)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			w := os.Stdout
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			} else if term.IsTerminal(int(os.Stdout.Fd())) {
				return usageError("export writes a tar: redirect stdout or use -o FILE")
			}
			if err := b.ExportSnapshot(cmd.Context(), args[0], w); err != nil {
				return usageIfNotFound(err)
			}
			return w.Sync()
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE (must not exist) instead of stdout")
	return cmd
}

func newSandboxForkCmd(lf *localFlags) *cobra.Command {
	var (
		n       int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "fork SNAPSHOT|ID",
		Short: "Create N sandboxes with the files of a snapshot (or of a sandbox, snapshotted first)",
		Long: `fork creates N sandboxes that start with the same files: a snapshot's, or a running sandbox's
(snapshotted first; that automatic snapshot is deleted by gc once its forks are gone). The
snapshot's layer is shared read-only, never copied: each fork writes to a layer of its own, so
forks are independent of each other and of the source. Processes are not forked. It prints one
id per line; each fork lives until --timeout runs out or it is killed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if n < 1 || n > local.MaxFork {
				return usageError("-n: want 1..%d", local.MaxFork)
			}
			ctx := cmd.Context()
			b, err := lf.open(ctx, true)
			if err != nil {
				return err
			}
			defer b.Close()
			o := local.Options{Limits: local.Limits{Lifetime: timeout}}
			var forks []*local.Sandbox
			if _, serr := b.GetSnapshot(ctx, args[0]); serr == nil {
				forks, err = b.Fork(ctx, args[0], n, o)
			} else if local.ValidID(args[0]) {
				var snap *local.Snapshot
				forks, snap, err = b.ForkSandbox(ctx, args[0], n, o)
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "forked from automatic snapshot %s of sandbox %s (files only)\n", snap.ID, args[0])
				}
			} else {
				return usageIfNotFound(serr)
			}
			if err != nil {
				return usageIfNotFound(err)
			}
			var errs []error
			for _, s := range forks {
				if err := startWatchdog(lf, s); err != nil {
					_ = s.Kill(context.WithoutCancel(ctx))
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), s.ID())
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().IntVarP(&n, "count", "n", 1, "how many sandboxes")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "lifetime of each (default 5m)")
	return cmd
}
