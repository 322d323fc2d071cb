package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

// runFlags are the flags of `agent run`.
type runFlags struct {
	lf           localFlags
	mf           modelFlags
	of           overrideFlags
	concurrency  int
	out          string
	resume       string
	filters      []string
	tags         []string
	failFast     bool
	asJSON       bool
	events       string
	exitZero     bool
	allowOutside bool
	configFile   string
	noConfig     bool
	backend      string
}

// notReplayed are the flags a resumed run does not take over from the run it resumes.
var notReplayed = []string{"resume", "out", "json", "events", "exit-zero", "log-level", "log-json"}

func newRunCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [flags] SPEC...",
		Short: "Run task specs (files, directories, globs) concurrently, each in its own sandbox, and grade them",
		Long: `Run task specs: every task (times its repeat) runs in a fresh sandbox — seed files, setup, the
agent loop, checks, artifact collection — with --concurrency tasks at once. One task's failure never
stops the others (--fail-fast to opt in).

Results go to --out (default runs/<UTC timestamp>-<id>/): run.json, summary.json, report.md and
tasks/<name>/{result.json, transcript.json, checks.json, setup.log, files/}. Each task's results
are written as it ends: after Ctrl-C (or a crash), --resume DIR runs only the tasks that did not
finish, with the arguments and flags of the original run unless given again.

Without a model endpoint, --replay DIR plays back recorded transcripts (DIR/<task>.json).

Exit codes: 0 every task passed; 1 a task failed or errored (or did not run); 2 usage or spec
error; 3 internal error. --exit-zero exits 0 whenever the run itself worked.`,
		Example: `  agent run tasks/examples/
  agent run --model novita:qwen/qwen3-coder-30b-a3b-instruct -j 4 'tasks/**/*.yaml'
  agent run --replay testdata/transcripts tasks/examples/
  agent run --resume runs/20250101T120000Z-1a2b3c4d`,
		RunE: func(cmd *cobra.Command, args []string) error { return runRun(cmd, f, args) },
	}
	fs := cmd.Flags()
	f.lf.register(cmd)
	f.lf.registerPool(fs, poolHelpRun)
	f.mf.register(fs, true)
	f.of.register(fs, true)
	f.of.registerKeep(fs)
	fs.IntVarP(&f.concurrency, "concurrency", "j", 0, "tasks run at once (default: the number of CPUs)")
	fs.StringVarP(&f.out, "out", "o", "", "results directory (default runs/<UTC timestamp>-<id>)")
	fs.StringVar(&f.resume, "resume", "", "finish the run in this results directory: run only the tasks that did not finish")
	fs.StringSliceVar(&f.filters, "filter", nil, "run only tasks whose name matches: a glob, or re:REGEX (repeatable, comma-separated)")
	fs.StringSliceVar(&f.tags, "tags", nil, "run only tasks with one of these tags; !tag excludes (repeatable, comma-separated)")
	fs.BoolVar(&f.failFast, "fail-fast", false, "stop at the first task that does not pass")
	fs.BoolVar(&f.asJSON, "json", false, "print the summary as JSON on stdout (progress goes to stderr)")
	fs.StringVar(&f.events, "events", "", "stream task and step events to stdout: jsonl (progress goes to stderr)")
	fs.BoolVar(&f.exitZero, "exit-zero", false, "exit 0 even when tasks fail (usage and internal errors still exit 2 and 3)")
	fs.BoolVar(&f.allowOutside, "allow-outside", false, "let seed files (from:) come from outside each spec's directory")
	fs.StringVar(&f.configFile, "config", "", "agent.yaml to use (default: found next to the specs)")
	fs.BoolVar(&f.noConfig, "no-config", false, "ignore agent.yaml files")
	registerBackend(fs, &f.backend, &f.lf)
	return cmd
}

func runRun(cmd *cobra.Command, f *runFlags, args []string) error {
	ctx := cmd.Context()
	fs := cmd.Flags()
	if f.resume != "" {
		if fs.Changed("out") && filepath.Clean(f.out) != filepath.Clean(f.resume) {
			return usageError("--out and --resume name different directories; a resumed run writes into the directory it resumes")
		}
		var prev runner.RunInfo
		if err := readRunInfo(f.resume, &prev); err != nil {
			return usageError("--resume %s: %v", f.resume, err)
		}
		if len(args) == 0 {
			args = prev.Args
		}
		// The original run's flags, unless given again: the same flags give the same specs (and
		// digests), so finished tasks are recognised.
		for _, name := range sortedMapKeys(prev.Flags) {
			fl := fs.Lookup(name)
			if fl == nil || fs.Changed(name) || slices.Contains(notReplayed, name) {
				continue
			}
			if strings.Contains(prev.Flags[name], ":xxxxx@") {
				fmt.Fprintf(cmd.ErrOrStderr(), "--resume: give --%s again: its credentials were not recorded\n", name)
				continue
			}
			if err := fs.Set(name, prev.Flags[name]); err != nil {
				return usageError("--resume: taking over --%s=%s: %v", name, prev.Flags[name], err)
			}
		}
		f.out = f.resume
	}
	if len(args) == 0 {
		return usageError("no task specs given (agent run SPEC..., e.g. agent run tasks/examples/)")
	}
	if f.events != "" && f.events != "jsonl" {
		return usageError("--events %q: the only format is jsonl", f.events)
	}
	if f.asJSON && f.events != "" {
		return usageError("--json and --events both write to stdout; choose one")
	}
	sel, err := spec.NewSelector(f.filters, f.tags)
	if err != nil {
		return usageError("%v", err)
	}
	overrides, err := f.of.config(fs, &f.mf, f.concurrency)
	if err != nil {
		return err
	}
	suite, err := loadSuite(ctx, args, spec.Options{
		AllowOutside: f.allowOutside, ConfigFile: f.configFile, NoConfig: f.noConfig, Overrides: overrides, Select: sel,
	})
	if err != nil {
		return err
	}

	var models runner.Models
	if f.mf.replay != "" {
		models = &runner.Replays{Path: f.mf.replay}
	} else {
		pcfg, err := f.mf.providerConfig(suite.Run, runLimiter(suite.Run))
		if err != nil {
			return err
		}
		models = &runner.Endpoints{Config: pcfg}
	}
	prices, budget, err := f.mf.budget(suite.Run)
	if err != nil {
		return err
	}
	concurrency := suite.Run.Concurrency
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}

	// Human progress goes to stdout unless stdout carries JSON.
	human := cmd.OutOrStdout()
	if f.asJSON || f.events != "" {
		human = cmd.ErrOrStderr()
	}
	console := runner.NewConsole(human, isTerminal(human))
	defer console.Close()
	observer := console.Observe
	if f.events == "jsonl" {
		observer = runner.Observers(console.Observe, runner.JSONLObserver(cmd.OutOrStdout(), false))
	}

	info := runner.RunInfo{
		Versions:   runner.Versions{Agent: version, Go: runtime.Version(), EnvdProtocol: envdVersion()},
		Command:    redactArgs(os.Args),
		Args:       args,
		Flags:      changedFlags(cmd),
		ConfigFile: suite.ConfigFile,
		Model:      suite.Run.Model,
		Provider:   suite.Run.Provider,
		BaseURL:    redactURL(suite.Run.BaseURL),
		Replay:     f.mf.replay,
	}
	if f.backend == "local" {
		info.Runtime = f.lf.runtime
	}
	backends, closeBackends, err := runBackends(f.backend, suite.Specs, &f.lf)
	if err != nil {
		return err
	}
	defer closeBackends()
	r, err := runner.New(runner.Config{
		Specs: suite.Specs, Models: models, Out: f.out, Resume: f.resume != "",
		Concurrency: concurrency, FailFast: f.failFast, Observer: observer, Prices: prices, Budget: budget, Info: info,
	})
	if err != nil {
		return usageError("%v", err)
	}
	if err := checkModels(models, suite.Specs); err != nil {
		return err
	}
	stopSignals := onInterrupt(ctx, cmd.ErrOrStderr())
	defer stopSignals()
	sum, err := r.RunWith(ctx, backends)
	console.Close()
	if err != nil {
		if errors.Is(err, runner.ErrOut) || errors.Is(err, runner.ErrResume) {
			return usageError("%v", err)
		}
		return &exitError{code: exitInternal, err: err}
	}
	if f.asJSON {
		if err := writeIndentedJSON(cmd.OutOrStdout(), sum); err != nil {
			return &exitError{code: exitInternal, err: err}
		}
	}
	printSummary(human, sum, r.Out())
	if !sum.OK && !f.exitZero {
		return &exitError{code: exitFailed}
	}
	return nil
}

// checkModels opens every task's model provider before anything runs, so a missing key or an
// unknown provider is a usage error rather than a model_error in every task.
func checkModels(models runner.Models, specs []*spec.Spec) error {
	for _, s := range specs {
		m, err := models.Model(s)
		if err != nil {
			return usageError("%v", err)
		}
		if _, err := models.Provider(s, m); err != nil {
			return usageError("task %s: %v", s.Name, err)
		}
	}
	return nil
}

// printSummary prints the run's outcome and where its results are.
func printSummary(w io.Writer, sum *runner.Summary, out string) {
	parts := append([]string{fmt.Sprintf("%d passed", sum.Passed)}, sum.Shortfalls()...)
	d := (time.Duration(sum.DurationMS) * time.Millisecond).Round(100 * time.Millisecond)
	fmt.Fprintf(w, "\n%s of %d task(s) in %s", strings.Join(parts, ", "), sum.Total, d)
	if sum.Interrupted {
		fmt.Fprintf(w, " — interrupted; finish with: agent run --resume %s", out)
	}
	fmt.Fprintf(w, "\nresults: %s\nreport:  %s\n", out, filepath.Join(out, runner.ReportFile))
	for _, t := range sum.Tasks {
		if t.Kept != nil {
			fmt.Fprintf(w, "kept:    %s #%d (%s): %s\n", t.Name, t.Epoch, orNotRun(t), t.Kept.Command)
		}
	}
}

// orNotRun is a task's status, or "interrupted" for one that did not finish.
func orNotRun(t runner.SummaryTask) string {
	if t.NotRun {
		return "interrupted"
	}
	return string(t.Status)
}

// onInterrupt prints what happens on the first Ctrl-C (or SIGTERM) and restores the default
// handling, so a second one ends the process at once (the next run's GC reclaims its sandboxes).
func onInterrupt(ctx context.Context, w io.Writer) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(w, "\ninterrupted: stopping model calls, killing sandboxes, writing results (interrupt again to quit at once)")
			signal.Reset(os.Interrupt, syscall.SIGTERM)
		case <-done:
		}
	}()
	return func() { close(done) }
}

func readRunInfo(dir string, into *runner.RunInfo) error {
	f, err := os.Open(filepath.Join(dir, runner.RunFile))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(into); err != nil {
		return fmt.Errorf("reading %s: %w", runner.RunFile, err)
	}
	if into.SchemaVersion != runner.RunSchema {
		return fmt.Errorf("%s has schema_version %q, want %q", runner.RunFile, into.SchemaVersion, runner.RunSchema)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func sortedMapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// loadSuite loads the task specs args name. A spec that does not load is a usage error (a failure
// when ctx ended meanwhile), and so is a selection of no task.
func loadSuite(ctx context.Context, args []string, o spec.Options) (*spec.Suite, error) {
	suite, err := spec.Load(ctx, args, o)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &exitError{code: exitFailed, err: err}
		}
		return nil, &exitError{code: exitUsage, err: err}
	}
	if len(suite.Specs) == 0 {
		return nil, usageError("no task selected: %d found, none matches --filter/--tags", suite.Discovered)
	}
	return suite, nil
}

// runLimiter caps the model calls in flight across a run: the run's max_llm_concurrency, or
// provider.DefaultMaxConcurrency.
func runLimiter(run spec.Run) *provider.Limiter {
	limit := run.MaxLLMConcurrency
	if limit <= 0 {
		limit = provider.DefaultMaxConcurrency
	}
	return provider.NewLimiter(limit)
}
