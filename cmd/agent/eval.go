package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/eval"
	"github.com/agentrun/agent/report"
	"github.com/agentrun/agent/report/results"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

type evalFlags struct {
	lf            localFlags
	mf            modelFlags
	of            overrideFlags
	models        []string
	concurrency   int
	out           string
	resume        string
	filters       []string
	tags          []string
	baseline      string
	maxRegression float64
	asJSON        bool
	allowOutside  bool
	configFile    string
	noConfig      bool
	backend       string
	seedsRoot     string
}

func newEvalCmd() *cobra.Command {
	f := &evalFlags{}
	cmd := &cobra.Command{
		Use:   "eval --models M1,M2,... [flags] SPEC...",
		Short: "Evaluate models on a task suite: pass rates with confidence intervals, pass@k, costs, regressions",
		Long: `eval runs the task suite once per model (times --repeat epochs), every task epoch in a fresh
sandbox, into one results directory:

  eval.json                  models, metrics per model, comparison with --baseline
  report.md, report.html,    the reports (see agent report): charts of pass rate per model with
  report.xml                 95% intervals, tokens vs pass rate, a model x task heatmap
  models/<model>/            an ordinary agent run results directory per model

Per model: pass rate with a 95% Wilson interval, pass@1 and pass@k (unbiased estimator) when
--repeat > 1, errors by reason, median and p90 wall time, tokens in/out, steps, tool calls, and
cost with --prices. Models run one after another in the order given, each with --concurrency tasks
at once; tasks and epochs run in spec order.

--baseline DIR compares with an earlier evaluation: per task what flipped (pass -> fail, fail ->
pass), per model the change in pass rate over the tasks both ran.

Exit codes: 0 the evaluation ran (tasks may have failed: that is what it measures); 1 a model's
pass rate dropped more than --max-regression below the baseline, or the evaluation was
interrupted; 2 usage or spec error; 3 internal error.`,
		Example: `  agent eval --models novita:qwen/qwen3-coder-30b-a3b-instruct,novita:openai/gpt-oss-120b --repeat 3 tasks/examples/
  agent eval --models a,b --baseline runs/eval-yesterday --max-regression 0.05 --out runs/eval-today tasks/`,
		RunE: func(cmd *cobra.Command, args []string) error { return runEval(cmd, f, args) },
	}
	fs := cmd.Flags()
	f.lf.register(cmd)
	f.lf.registerPool(fs, poolHelpRun)
	f.mf.register(fs, false)
	f.of.register(fs, true)
	fs.StringSliceVar(&f.models, "models", nil, "models to evaluate, comma-separated or repeated, in report order (with --model: one more)")
	fs.IntVarP(&f.concurrency, "concurrency", "j", 0, "tasks run at once (default: the number of CPUs)")
	fs.StringVarP(&f.out, "out", "o", "", "results directory (default runs/eval-<UTC timestamp>)")
	fs.StringVar(&f.resume, "resume", "", "finish the evaluation in this results directory (same models and specs)")
	fs.StringSliceVar(&f.filters, "filter", nil, "evaluate only tasks whose name matches: a glob, or re:REGEX")
	fs.StringSliceVar(&f.tags, "tags", nil, "evaluate only tasks with one of these tags; !tag excludes")
	fs.StringVar(&f.baseline, "baseline", "", "an earlier evaluation's results directory to compare with")
	fs.Float64Var(&f.maxRegression, "max-regression", 0.05, "with --baseline: exit 1 when a model's pass rate drops by more than this (0.05 = 5 points)")
	fs.BoolVar(&f.asJSON, "json", false, "print eval.json's metrics and comparison as JSON on stdout (progress goes to stderr)")
	fs.BoolVar(&f.allowOutside, "allow-outside", false, "let seed files (from:) come from outside each spec's directory")
	fs.StringVar(&f.configFile, "config", "", "agent.yaml to use (default: found next to the specs)")
	fs.BoolVar(&f.noConfig, "no-config", false, "ignore agent.yaml files")
	fs.StringVar(&f.seedsRoot, "seeds-root", ".", "directory below which spec files may be read for the reports' seed diffs")
	registerBackend(fs, &f.backend, &f.lf)
	return cmd
}

func runEval(cmd *cobra.Command, f *evalFlags, args []string) error {
	ctx := cmd.Context()
	fs := cmd.Flags()
	models := append([]string(nil), f.models...)
	if fs.Changed("model") {
		models = append(models, f.mf.model)
	}
	for i, m := range models {
		models[i] = strings.TrimSpace(m)
		if models[i] == "" {
			return usageError("--models: an empty model id")
		}
	}
	if len(models) == 0 {
		return usageError("no models: give --models M1,M2,...")
	}
	if len(args) == 0 {
		return usageError("no task specs given (agent eval --models ... SPEC..., e.g. tasks/examples/)")
	}
	if f.maxRegression < 0 || f.maxRegression > 1 {
		return usageError("--max-regression %g: want a proportion between 0 and 1", f.maxRegression)
	}
	out := f.out
	if f.resume != "" {
		if fs.Changed("out") && filepath.Clean(f.out) != filepath.Clean(f.resume) {
			return usageError("--out and --resume name different directories")
		}
		out = f.resume
	}
	if out == "" {
		out = filepath.Join("runs", "eval-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	sel, err := spec.NewSelector(f.filters, f.tags)
	if err != nil {
		return usageError("%v", err)
	}
	overrides, err := f.of.config(fs, &f.mf, f.concurrency)
	if err != nil {
		return err
	}
	var emodels []eval.Model
	var run spec.Run
	var limiter *provider.Limiter
	for _, m := range models {
		o := *overrides
		o.Model = spec.Ptr(m)
		suite, err := loadSuite(ctx, args, spec.Options{
			AllowOutside: f.allowOutside, ConfigFile: f.configFile, NoConfig: f.noConfig, Overrides: &o, Select: sel,
		})
		if err != nil {
			return err
		}
		run = suite.Run
		if limiter == nil {
			limiter = runLimiter(run)
		}
		pcfg, err := f.mf.providerConfig(run, limiter)
		if err != nil {
			return err
		}
		emodels = append(emodels, eval.Model{Model: m, Specs: suite.Specs, Models: &runner.Endpoints{Config: pcfg}})
	}
	prices, budget, err := f.mf.budget(run)
	if err != nil {
		return err
	}
	concurrency := run.Concurrency
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}
	human := cmd.OutOrStdout()
	if f.asJSON {
		human = cmd.ErrOrStderr()
	}
	console := runner.NewConsole(human, isTerminal(human))
	defer console.Close()
	observer := func(model string, e runner.Event) {
		if e.Type == runner.EventRunStart {
			fmt.Fprintf(human, "model %s\n", model)
		}
		console.Observe(e)
	}
	var allSpecs []*spec.Spec
	for _, m := range emodels {
		allSpecs = append(allSpecs, m.Specs...)
	}
	backends, closeBackends, err := runBackends(f.backend, allSpecs, &f.lf)
	if err != nil {
		return err
	}
	defer closeBackends()
	stopSignals := onInterrupt(ctx, cmd.ErrOrStderr())
	defer stopSignals()

	o, err := eval.Run(ctx, eval.Config{
		Models: emodels, Out: out, Resume: f.resume != "", Concurrency: concurrency,
		Prices: prices, Budget: budget, PricesFile: run.Prices, Baseline: f.baseline, MaxRegression: f.maxRegression, Backends: backends,
		SeedsRoot: f.seedsRoot, Observer: observer, Repeat: f.of.repeat,
		Info: runner.RunInfo{
			Versions: runner.Versions{Agent: version, Go: runtime.Version(), EnvdProtocol: envdVersion()},
			Command:  redactArgs(os.Args), Args: args, Flags: changedFlags(cmd), Provider: run.Provider, BaseURL: redactURL(run.BaseURL),
		},
	}, nil)
	console.Close()
	if err != nil {
		switch {
		case errors.Is(err, eval.ErrOut), errors.Is(err, eval.ErrConfig), errors.Is(err, eval.ErrBaseline), errors.Is(err, runner.ErrOut):
			return usageError("%v", err)
		}
		return &exitError{code: exitInternal, err: err}
	}
	if f.asJSON {
		if err := printEvalJSON(cmd.OutOrStdout(), o); err != nil {
			return &exitError{code: exitInternal, err: err}
		}
	}
	printEval(human, o)
	switch {
	case o.Interrupted:
		return &exitError{code: exitFailed, err: fmt.Errorf("interrupted; finish with: agent eval --resume %s --models %s ...", out, strings.Join(models, ","))}
	case len(o.Regressed) > 0:
		return &exitError{code: exitFailed, err: fmt.Errorf("regressed beyond %.1f points: %s", 100*f.maxRegression, strings.Join(o.Regressed, ", "))}
	}
	return nil
}

func printEvalJSON(w io.Writer, o *eval.Outcome) error {
	return writeIndentedJSON(w, struct {
		Dir        string              `json:"dir"`
		Metrics    []results.Metrics   `json:"metrics"`
		Comparison *results.Comparison `json:"comparison,omitempty"`
		Regressed  []string            `json:"regressed,omitempty"`
	}{o.Dir, o.Metrics, o.Comparison, o.Regressed})
}

// printEval prints the per-model table of report.md and where the results are.
func printEval(w io.Writer, o *eval.Outcome) {
	fmt.Fprintln(w)
	for _, m := range o.Metrics {
		line := fmt.Sprintf("%-40s %3d/%-3d passed  %5.1f%% (95%% CI %.1f–%.1f%%)", m.Model, m.Passed, m.Cells,
			100*m.PassRate.Rate, 100*m.PassRate.Low, 100*m.PassRate.High)
		if k := m.Epochs; k > 1 {
			line += fmt.Sprintf("  pass@1 %.1f%% pass@%d %.1f%%", 100*m.PassAtK[1], k, 100*m.PassAtK[k])
		}
		fmt.Fprintln(w, line)
	}
	if c := o.Comparison; c != nil {
		for _, d := range c.Models {
			if d.InBaseline {
				mark := ""
				if d.Regressed {
					mark = "  REGRESSED"
				}
				fmt.Fprintf(w, "%-40s %+.1f points vs baseline (%d tasks)%s\n", d.Model, 100*d.Delta, d.Tasks, mark)
			}
		}
	}
	fmt.Fprintf(w, "results: %s\nreport:  %s\n", o.Dir, filepath.Join(o.Dir, report.HTMLFile))
}

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
