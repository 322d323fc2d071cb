// Package eval runs a model evaluation: the same task suite for every model of a list, with
// epochs, into one results directory, then computes the per-model metrics (pass rate with its 95%
// interval, pass@k, errors by reason, wall time quantiles, tokens, cost), compares them with a
// baseline evaluation and writes the reports.
//
// The results directory holds eval.json (what was evaluated, the metrics, the comparison) and one
// ordinary run's results directory per model under models/<model>/, written by package runner:
// each is readable, reportable and resumable on its own. Models run one after another in the
// order given, each with the whole concurrency, so a task's wall time is never inflated by
// waiting for another model's tasks, and the order of work is deterministic.
package eval

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/report"
	"github.com/agentrun/agent/report/results"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

// Model is one model of an evaluation with the specs resolved for it (the model set as a CLI
// override, so its digests are its own) and how to reach it.
type Model struct {
	// Model is the model id, provider prefix included.
	Model string
	// Specs are the tasks, resolved with Model.
	Specs []*spec.Spec
	// Models opens the model's provider (runner.Endpoints).
	Models runner.Models
}

// Config configures an evaluation.
type Config struct {
	// Models are the models, in the order given; at least one.
	Models []Model
	// Backends, when set, are the sandbox backends of every model's run (each opened once, as
	// tasks need it); otherwise Run's backend serves every task.
	Backends *runner.Backends
	// Out is the results directory: new (absent or empty), or with Resume an earlier
	// evaluation's.
	Out string
	// Resume finishes an earlier evaluation in Out: each model's run is resumed (only the task
	// epochs without a finished result run).
	Resume bool
	// Concurrency bounds the task epochs run at once.
	Concurrency int
	// Prices and Budget are passed to every run (costs, a budget shared by all models).
	Prices *agent.Prices
	Budget *agent.Budget
	// PricesFile is recorded in eval.json.
	PricesFile string
	// Baseline is an earlier evaluation's (or run's) results directory to compare with.
	Baseline string
	// MaxRegression is the drop in pass rate (0.05: five points) beyond which a model regressed.
	MaxRegression float64
	// SeedsRoot is where spec files may be read for the reports' seed diffs.
	SeedsRoot string
	// Observer receives every run's events, with the model they belong to.
	Observer func(model string, e runner.Event)
	// Info fills the descriptive fields of each run's run.json; Command, Args and Versions also
	// go to eval.json.
	Info runner.RunInfo
	// Repeat is the epochs requested on the command line (recorded; the specs carry it).
	Repeat int
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
}

// Outcome is what an evaluation produced.
type Outcome struct {
	// Dir is the results directory.
	Dir string
	// Results are the results read back, Metrics the per-model figures.
	Results *results.Results
	Metrics []results.Metrics
	// Comparison is set when a baseline was given; Regressed lists the models that regressed
	// beyond MaxRegression.
	Comparison *results.Comparison
	Regressed  []string
	// Interrupted is set when the context ended before every model's run finished.
	Interrupted bool
}

// Errors users act on.
var (
	// ErrOut: the results directory cannot be used (not empty; or not an evaluation to resume).
	ErrOut = errors.New("unusable results directory")
	// ErrConfig: the configuration is wrong (no model, a duplicate model).
	ErrConfig = errors.New("invalid evaluation")
	// ErrBaseline: the baseline cannot be read.
	ErrBaseline = errors.New("unusable baseline")
)

// Run runs the evaluation with the sandboxes of backend, or of cfg.Backends when set (backend may
// then be nil).
func Run(ctx context.Context, cfg Config, backend runner.Backend) (*Outcome, error) {
	if cfg.Backends == nil && backend == nil {
		return nil, fmt.Errorf("%w: no sandbox backend", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Models) == 0 {
		return nil, fmt.Errorf("%w: no model", ErrConfig)
	}
	if cfg.Out == "" {
		return nil, fmt.Errorf("%w: no results directory", ErrOut)
	}
	// The baseline is read first: a typo there should not cost a whole evaluation.
	var base *results.Results
	if cfg.Baseline != "" {
		b, err := results.Load(cfg.Baseline, results.Limits{SkipContent: true})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBaseline, err)
		}
		base = b
	}
	info, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	// Every model's runner is made before anything runs, so a task without a model or a
	// duplicate name is reported at once.
	runners := make([]*runner.Runner, len(cfg.Models))
	for i, m := range cfg.Models {
		obs := func(runner.Event) {}
		if cfg.Observer != nil {
			model := m.Model
			obs = func(e runner.Event) { cfg.Observer(model, e) }
		}
		ri := cfg.Info
		ri.Model = m.Model
		r, err := runner.New(runner.Config{
			Specs: m.Specs, Models: m.Models, Out: filepath.Join(cfg.Out, filepath.FromSlash(info.Models[i].Dir)),
			Resume: cfg.Resume && hasRun(cfg.Out, info.Models[i].Dir), Concurrency: cfg.Concurrency,
			Observer: obs, Prices: cfg.Prices, Budget: cfg.Budget, Info: ri, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: model %s: %v", ErrConfig, m.Model, err)
		}
		runners[i] = r
	}
	if err := writeEval(cfg.Out, info); err != nil {
		return nil, err
	}
	out := &Outcome{Dir: cfg.Out}
	for i, r := range runners {
		if ctx.Err() != nil {
			out.Interrupted = true
			break
		}
		log.Info("eval: running model", "model", cfg.Models[i].Model, "jobs", r.Jobs())
		var sum *runner.Summary
		if cfg.Backends != nil {
			sum, err = r.RunWith(ctx, cfg.Backends)
		} else {
			sum, err = r.Run(ctx, backend)
		}
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", cfg.Models[i].Model, err)
		}
		if sum.Interrupted {
			out.Interrupted = true
		}
	}
	ended := time.Now().UTC()
	info.EndedAt = &ended
	info.Interrupted = out.Interrupted

	res, err := results.Load(cfg.Out, results.Limits{})
	if err != nil {
		return nil, fmt.Errorf("reading the results back: %w", err)
	}
	out.Results = res
	out.Metrics = res.ModelMetrics()
	info.Metrics = out.Metrics
	if base != nil {
		c := results.Compare(base, res, cfg.MaxRegression)
		out.Comparison, out.Regressed = &c, c.Regressed()
		info.Comparison = &c
		res.Comparison = &c
	}
	if err := writeEval(cfg.Out, info); err != nil {
		return nil, err
	}
	res.Run.EndedAt, res.Run.Interrupted = ended, out.Interrupted
	if cfg.SeedsRoot != "" {
		res.LoadSeeds(cfg.SeedsRoot, results.Limits{})
	}
	if err := report.WriteAll(res); err != nil {
		return nil, err
	}
	return out, nil
}

// prepare creates the results directory (or reads the evaluation to resume) and returns the
// eval.json to write.
func prepare(cfg Config) (*results.EvalInfo, error) {
	info := &results.EvalInfo{
		SchemaVersion: results.EvalSchema, ID: newID(), StartedAt: time.Now().UTC(), Command: cfg.Info.Command,
		Args: cfg.Info.Args, Repeat: cfg.Repeat, Concurrency: cfg.Concurrency, Prices: cfg.PricesFile,
		Versions: map[string]string{"agent": cfg.Info.Versions.Agent, "go": cfg.Info.Versions.Go,
			"envd_protocol": cfg.Info.Versions.EnvdProtocol, "transcript": cfg.Info.Versions.Transcript},
	}
	for k, v := range info.Versions {
		if v == "" {
			delete(info.Versions, k)
		}
	}
	if cfg.Baseline != "" {
		info.Baseline = cfg.Baseline
	}
	seen := map[string]bool{}
	for _, m := range cfg.Models {
		if seen[m.Model] {
			return nil, fmt.Errorf("%w: model %s given twice", ErrConfig, m.Model)
		}
		seen[m.Model] = true
	}
	if cfg.Resume {
		var prev results.EvalInfo
		data, err := os.ReadFile(filepath.Join(cfg.Out, results.EvalFile))
		if err == nil {
			err = json.Unmarshal(data, &prev)
		}
		if err != nil || prev.SchemaVersion != results.EvalSchema {
			return nil, fmt.Errorf("%w: %s is not an evaluation to resume (%s: %v)", ErrOut, cfg.Out, results.EvalFile, err)
		}
		info.ID, info.StartedAt = prev.ID, prev.StartedAt
		dirs := map[string]string{}
		for _, m := range prev.Models {
			dirs[m.Model] = m.Dir
		}
		used := map[string]bool{}
		for _, m := range cfg.Models {
			dir, ok := dirs[m.Model]
			if !ok {
				dir = uniqueDir(m.Model, used)
			}
			used[dir] = true
			info.Models = append(info.Models, results.EvalModel{Model: m.Model, Dir: dir})
		}
		return info, nil
	}
	ents, err := os.ReadDir(cfg.Out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return nil, fmt.Errorf("creating the results directory: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("%w %s: %v", ErrOut, cfg.Out, err)
	case len(ents) > 0:
		return nil, fmt.Errorf("%w: %s exists and is not empty (use --resume %s to finish that evaluation, or another --out)", ErrOut, cfg.Out, cfg.Out)
	}
	used := map[string]bool{}
	for _, m := range cfg.Models {
		dir := uniqueDir(m.Model, used)
		used[dir] = true
		info.Models = append(info.Models, results.EvalModel{Model: m.Model, Dir: dir})
	}
	return info, nil
}

// uniqueDir names a model's run directory: models/<model id made a file name>, unique.
func uniqueDir(model string, used map[string]bool) string {
	base := path.Join(results.ModelsDir, slug(model))
	dir := base
	for n := 2; used[dir]; n++ {
		dir = fmt.Sprintf("%s-%d", base, n)
	}
	return dir
}

// slug turns a model id into a directory name: letters, digits, '.', '_' and '-' kept, runs of
// anything else one '_'; bounded in length.
func slug(model string) string {
	var b strings.Builder
	under := false
	for _, r := range model {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		switch {
		case ok:
			b.WriteRune(r)
			under = false
		case !under:
			b.WriteByte('_')
			under = true
		}
	}
	s := strings.Trim(b.String(), "._")
	if len(s) > 100 {
		s = s[:100]
	}
	if s == "" {
		s = "model"
	}
	return s
}

func hasRun(out, dir string) bool {
	_, err := os.Stat(filepath.Join(out, filepath.FromSlash(dir), results.RunFile))
	return err == nil
}

func writeEval(out string, info *results.EvalInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", results.EvalFile, err)
	}
	file := filepath.Join(out, results.EvalFile)
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", results.EvalFile, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", results.EvalFile, err)
	}
	return nil
}

// newID returns a random hex id for the evaluation.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return hex.EncodeToString(b[:])
}
