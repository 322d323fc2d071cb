package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/network"
	"github.com/agentrun/agent/sandbox/local/template"
)

// localFlags are the flags of every command that opens the local backend.
type localFlags struct {
	dataDir     string
	templateDir string
	runtime     string
	// maxSandboxes caps the sandboxes a remote backend holds (--max-sandboxes of run, do, chat).
	maxSandboxes int
	// pool is the warm pool's size (--pool of run and eval); poolEnv is AGENT_POOL when it is
	// not a number, reported when the local backend is checked.
	pool    int
	poolEnv string
	// poolSpecs are the specs run on the local backend: the pool holds sandboxes shaped as most of
	// their tasks ask.
	poolSpecs []*spec.Spec
}

// maxPool bounds --pool: every pooled sandbox holds a uid range, a disk image and a running envd.
const maxPool = 256

// poolHelpRun is --pool's help for commands that run tasks.
const poolHelpRun = "local sandboxes: keep N sandboxes created ahead, shaped as most tasks ask (template, limits, env; network none), so a task claims one instead of waiting for a create; costs N idle sandboxes (memory, disk, a running envd each) held until the command ends, beyond --concurrency; helps when tasks outnumber --concurrency (env AGENT_POOL)"

// registerPool adds --pool (commands that run many sandboxes on the local backend).
func (f *localFlags) registerPool(fs *pflag.FlagSet, help string) {
	def := 0
	if v := os.Getenv("AGENT_POOL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.poolEnv = v
		}
		def = n
	}
	fs.IntVar(&f.pool, "pool", def, help)
}

// checkPool validates --pool (and AGENT_POOL).
func (f *localFlags) checkPool() error {
	if f.poolEnv != "" {
		return usageError("AGENT_POOL %q: want a number of sandboxes", f.poolEnv)
	}
	if f.pool < 0 || f.pool > maxPool {
		return usageError("--pool %d: want 0 to %d sandboxes", f.pool, maxPool)
	}
	return nil
}

func (f *localFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", envOr("AGENT_DATA_DIR", local.DefaultDataDir), "where sandboxes and templates live (env AGENT_DATA_DIR)")
	cmd.PersistentFlags().StringVar(&f.templateDir, "template-dir", os.Getenv("AGENT_TEMPLATE_DIR"), "where templates live (default DATA_DIR/templates; env AGENT_TEMPLATE_DIR)")
	cmd.PersistentFlags().StringVar(&f.runtime, "runtime", envOr("AGENT_RUNTIME", local.DefaultRuntime), "OCI runtime: runc, crun or runsc (env AGENT_RUNTIME); a task spec's runtime: wins")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// open opens the local backend; progress of template builds goes to stderr. Networked sandboxes'
// DNS goes to AGENT_DNS's resolvers when it is set, as for agent run.
func (f *localFlags) open(ctx context.Context, skipGC bool) (*local.Backend, error) {
	cfg, err := f.config(skipGC)
	if err != nil {
		return nil, err
	}
	return local.New(ctx, cfg)
}

// config is the local backend configuration open uses.
func (f *localFlags) config(skipGC bool) (local.Config, error) {
	ups, err := dnsUpstreams(os.Getenv("AGENT_DNS"))
	if err != nil {
		return local.Config{}, usageError("AGENT_DNS: %v", err)
	}
	return local.Config{
		DataDir: f.dataDir, TemplateDir: f.templateDir, Runtime: f.runtime, SkipGC: skipGC,
		Progress: progressPrinter(os.Stderr), Network: network.Config{Upstreams: ups},
	}, nil
}

// progressPrinter prints template build progress: one line per phase, and on a terminal a line
// updated in place every second.
func progressPrinter(w io.Writer) func(template.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	last := ""
	lastPrint := time.Time{}
	return func(p template.Progress) {
		line := fmt.Sprintf("template %s: %s (%s, %s)", p.Template, p.Phase, p.Elapsed.Truncate(time.Second), humanBytes(p.SizeBytes))
		switch {
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
			if p.Phase == "done" {
				fmt.Fprintln(w)
			}
		case p.Phase != last || time.Since(lastPrint) >= 10*time.Second:
			fmt.Fprintln(w, line)
			lastPrint = time.Now()
		}
		last = p.Phase
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func newSandboxCmd() *cobra.Command {
	lf := &localFlags{}
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Create, use and destroy local sandboxes",
		Long: `Local sandboxes are OCI containers (runc by default; crun, runsc) with every namespace, root
inside mapped to an unprivileged host uid range, the default seccomp profile, no network but
loopback, and limits on memory, processes, CPU, disk and lifetime. Their init is agent envd.

State lives in --data-dir, so every agent process sees every sandbox.

pause/resume freeze a sandbox with its memory and processes (its lifetime clock stops); snapshot
saves its files (not its processes) for create --from and fork. See docs/SNAPSHOTS.md.`,
	}
	lf.register(cmd)
	cmd.AddCommand(newSandboxCreateCmd(lf), newSandboxExecCmd(lf), newSandboxShellCmd(lf), newSandboxLsCmd(lf),
		newSandboxKillCmd(lf), newSandboxGCCmd(lf), newSandboxWatchCmd(lf),
		newSandboxPauseCmd(lf), newSandboxResumeCmd(lf), newSandboxSnapshotCmd(lf), newSandboxForkCmd(lf))
	return cmd
}

func newSandboxCreateCmd(lf *localFlags) *cobra.Command {
	var (
		tpl, memory, disk string
		from, netw        string
		pids              int64
		cpus              float64
		timeout           time.Duration
		envs              []string
		asJSON            bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a sandbox and print its id",
		Long: `Create a sandbox and print its id. It lives until --timeout runs out or it is killed; a small
watchdog process (agent sandbox watch) enforces the timeout after this command exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := local.Options{Template: tpl, Limits: local.Limits{Pids: pids, CPUs: cpus, Lifetime: timeout}, Env: map[string]string{}, From: from}
			if from != "" && !cmd.Flags().Changed("template") {
				o.Template = "" // the snapshot's
			}
			var err error
			if memory != "" {
				if o.Limits.MemoryBytes, err = spec.ParseSize(memory); err != nil {
					return usageError("--memory: %v", err)
				}
			}
			if disk != "" {
				if o.Limits.DiskBytes, err = spec.ParseSize(disk); err != nil {
					return usageError("--disk: %v", err)
				}
			}
			for _, kv := range envs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageError("--env %q: want KEY=VALUE", kv)
				}
				o.Env[k] = v
			}
			if netw != "" {
				n, err := spec.ParseNetwork(netw)
				if err != nil {
					return usageError("--network: %v", err)
				}
				o.Network = local.NetworkNone
				if n.Mode != spec.NetworkNone {
					o.Network = n.String()
				}
			}
			ctx := cmd.Context()
			b, err := lf.open(ctx, false)
			if err != nil {
				return err
			}
			defer b.Close()
			s, err := b.Create(ctx, o)
			if err != nil {
				return err
			}
			if err := startWatchdog(lf, s); err != nil {
				_ = s.Kill(context.WithoutCancel(ctx))
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(s.Record())
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.ID())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&tpl, "template", "t", local.DefaultTemplate, "template: host or debian")
	f.StringVar(&memory, "memory", "", "memory limit, e.g. 512MiB or 2GB (default 1GiB)")
	f.StringVar(&disk, "disk", "", "disk quota, e.g. 20GiB (default 10GiB)")
	f.Int64Var(&pids, "pids", 0, "process limit (default 512)")
	f.Float64Var(&cpus, "cpus", 0, "CPU quota in CPUs (default 1)")
	f.DurationVar(&timeout, "timeout", 0, "lifetime (default 5m)")
	f.StringArrayVar(&envs, "env", nil, "sandbox-wide environment variable KEY=VALUE (repeatable)")
	f.StringVar(&netw, "network", "", "sandbox network: none (default), internet or allow:DOMAIN,CIDR,… as for agent run (runc or crun; DNS goes to the host's resolvers, or to env AGENT_DNS=IP[:PORT],…)")
	f.BoolVar(&asJSON, "json", false, "print the sandbox's record as JSON")
	f.StringVar(&from, "from", "", "start from a snapshot's files (agent sandbox snapshot); its template and limits are the defaults")
	return cmd
}

// startWatchdog hands the sandbox to a detached `agent sandbox watch` process, which holds its
// ownership lock (so GC leaves it alone) and kills it when its lifetime ends.
func startWatchdog(lf *localFlags, s *local.Sandbox) error {
	lock := s.Detach()
	if lock == nil {
		return errors.New("sandbox has no ownership lock to hand over")
	}
	defer lock.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, "sandbox", "watch", "--data-dir", lf.dataDir, "--runtime", lf.runtime, s.ID())
	if lf.templateDir != "" {
		cmd.Args = append(cmd.Args, "--template-dir", lf.templateDir)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{lock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the sandbox watchdog: %w", err)
	}
	return cmd.Process.Release()
}

func newSandboxWatchCmd(lf *localFlags) *cobra.Command {
	return &cobra.Command{
		Use:    "watch ID",
		Short:  "Keep a sandbox owned and kill it when its lifetime ends (started by create)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// fd 3 is the ownership lock handed over by create; holding it open is the point.
			lock := os.NewFile(3, "alive-lock")
			defer lock.Close()
			ctx := context.Background()
			b, err := lf.open(ctx, true)
			if err != nil {
				return err
			}
			id := args[0]
			for {
				rec, err := b.Lookup(id)
				if errors.Is(err, sandbox.ErrNotFound) {
					return nil // killed by someone else
				}
				if err != nil {
					return err
				}
				if rec.Phase == local.PhasePaused {
					return nil // paused and kept: its clock stopped; resume starts a new watchdog
				}
				if !rec.Expires.IsZero() && time.Now().After(rec.Expires) {
					kctx, cancel := context.WithTimeout(ctx, time.Minute)
					defer cancel()
					return b.Kill(kctx, id)
				}
				wait := time.Until(rec.Expires)
				if wait > 2*time.Second || wait <= 0 {
					wait = 2 * time.Second
				}
				time.Sleep(wait)
			}
		},
	}
}

func newSandboxExecCmd(lf *localFlags) *cobra.Command {
	var (
		user, cwd string
		envs      []string
		tty       bool
	)
	cmd := &cobra.Command{
		Use:   "exec ID -- COMMAND [ARG...]",
		Short: "Run a command in a sandbox and exit with its status",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return execIn(cmd.Context(), lf, args[0], local.ExecOpts{Args: args[1:], User: user, Cwd: cwd, Env: envs, TTY: tty})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&user, "user", "u", "", "run as root or user (default: the template's user)")
	f.StringVarP(&cwd, "cwd", "w", "", "working directory (default: the user's home)")
	f.StringArrayVarP(&envs, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	return cmd
}

func newSandboxShellCmd(lf *localFlags) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "shell ID",
		Short: "Open an interactive login shell in a sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !term.IsTerminal(int(os.Stdin.Fd())) {
				return usageError("shell needs a terminal on stdin; use `agent sandbox exec` otherwise")
			}
			return execIn(cmd.Context(), lf, args[0], local.ExecOpts{Args: []string{"/bin/bash", "-l"}, User: user, TTY: true})
		},
	}
	cmd.Flags().StringVarP(&user, "user", "u", "", "run as root or user (default: the template's user)")
	return cmd
}

// execIn runs a command through the OCI runtime with this process's stdio; a non-zero exit status
// (128+n for a signal) is an exitError carrying it.
func execIn(ctx context.Context, lf *localFlags, id string, o local.ExecOpts) error {
	code, err := execCode(ctx, lf, id, o)
	if err == nil && code != 0 {
		return &exitError{code: code}
	}
	return err
}

// sizedFirst wraps a terminal command so that the terminal has this terminal's size before the
// command starts: the runtime sizes the inner terminal only after starting the command, and a
// command that asks at once (stty size, a full-screen program) would see 0x0. Without a size to
// give, or without stty inside, the command runs as it is.
func sizedFirst(fd int, args []string) []string {
	cols, rows, err := term.GetSize(fd)
	if err != nil || cols <= 0 || rows <= 0 {
		return args
	}
	return append([]string{"/bin/sh", "-c", `stty rows "$1" cols "$2" 2>/dev/null; shift 2; exec "$@"`, "sh",
		strconv.Itoa(rows), strconv.Itoa(cols)}, args...)
}

// execCode runs the command for execIn and returns its exit status.
func execCode(ctx context.Context, lf *localFlags, id string, o local.ExecOpts) (int, error) {
	b, err := lf.open(ctx, true)
	if err != nil {
		return -1, err
	}
	s, leave, err := b.Visit(ctx, id)
	if err != nil {
		if errors.Is(err, sandbox.ErrNotFound) {
			return -1, &exitError{code: exitUsage, err: err}
		}
		return -1, err
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := leave(lctx); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
		}
	}()
	if s.Record().Phase == local.PhasePaused && o.TTY {
		fmt.Fprintf(os.Stderr, "sandbox %s is paused: thawed for this session (its lifetime clock stays stopped), paused again when the last session ends\n", id)
	}
	o.Stdin, o.Stdout, o.Stderr = os.Stdin, os.Stdout, os.Stderr
	if o.TTY {
		o.Args = sizedFirst(int(os.Stdin.Fd()), o.Args)
	}
	// Signals go to the command (the runtime forwards them); we only wait.
	c, err := s.ExecCommand(context.WithoutCancel(ctx), o)
	if err != nil {
		return -1, err
	}
	err = c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.Exited() {
			return ee.ExitCode(), nil
		}
		return 128 + int(ee.Sys().(syscall.WaitStatus).Signal()), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func newSandboxLsCmd(lf *localFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List sandboxes (of every process)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			infos, err := b.List(cmd.Context())
			if err != nil {
				return err
			}
			return printList(cmd.OutOrStdout(), asJSON, infos, "ID\tTEMPLATE\tRUNTIME\tSTATUS\tAGE\tEXPIRES IN\tMEMORY\tPIDS\tOOM", func(in local.Info) string {
				exp := "-"
				if !in.Expires.IsZero() {
					exp = time.Until(in.Expires).Truncate(time.Second).String()
				} else if in.Phase == local.PhasePaused {
					exp = in.Remaining.Truncate(time.Second).String() + " (stopped)"
				}
				status := in.Status
				if in.Phase != local.PhaseRunning && string(in.Phase) != in.Status {
					status = string(in.Phase) + "/" + status
				}
				switch {
				case in.Kept:
					status += " (kept)"
				case !in.Owned:
					status += " (orphan)"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d", in.ID, in.Template, in.Runtime, status,
					time.Since(in.Created).Truncate(time.Second), exp, humanBytes(in.Stats.MemoryBytes), in.Stats.Pids, in.Stats.OOMKills)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newSandboxKillCmd(lf *localFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill ID...",
		Short: "Destroy sandboxes and everything they hold",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return usageError("kill needs sandbox ids (or --all)")
			}
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			if all {
				infos, err := b.List(cmd.Context())
				if err != nil {
					return err
				}
				for _, in := range infos {
					args = append(args, in.ID)
				}
			}
			var errs []error
			for _, id := range args {
				if !local.ValidID(id) {
					errs = append(errs, usageError("sandbox id %q: want ^[a-z0-9]+$", id))
					continue
				}
				if err := b.Kill(cmd.Context(), id); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "kill every sandbox in the data dir")
	return cmd
}

func newSandboxGCCmd(lf *localFlags) *cobra.Command {
	var o local.GCOptions
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Reclaim what crashed processes left: orphaned or expired sandboxes, cgroups, uid ranges",
		Long: `gc reclaims what crashed processes left: orphaned or expired sandboxes, cgroups, uid ranges,
runtime states, unused automatic snapshots. Kept sandboxes (paused by agent sandbox pause or
agent run --keep) stay until --older-than finds them paused for longer than asked; snapshots
stay unless --snapshots is given too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Snapshots && o.OlderThan <= 0 {
				return usageError("--snapshots needs --older-than")
			}
			b, err := lf.open(cmd.Context(), true)
			if err != nil {
				return err
			}
			rep, err := b.GCWith(cmd.Context(), o)
			if rep != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "reclaimed %d sandbox(es) %v, %d cgroup(s), %d uid range(s), %d runtime state(s), %d snapshot(s) %v\n",
					len(rep.Sandboxes), rep.Sandboxes, len(rep.Cgroups), len(rep.Slots), len(rep.RuntimeStates), len(rep.Snapshots), rep.Snapshots)
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&o.OlderThan, "older-than", 0, "also reclaim kept sandboxes paused for longer than this (e.g. 24h)")
	cmd.Flags().BoolVar(&o.Snapshots, "snapshots", false, "also delete snapshots older than --older-than that no sandbox uses")
	return cmd
}
