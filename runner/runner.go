package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner/spec"
)

// Config configures a run.
type Config struct {
	// Specs are the tasks to run (resolved and selected).
	Specs []*spec.Spec
	// Models gives each task its model.
	Models Models
	// Out is the results directory. A new run creates it (it must not exist, or be empty; empty
	// Out means runs/<UTC timestamp>-<run id>); with Resume it is the directory of an earlier run.
	Out string
	// Resume reuses the finished results in Out: a task epoch runs again only when Out holds no
	// finished result for it with the same spec digest and model.
	Resume bool
	// Concurrency bounds the task epochs run at once (default: the number of CPUs).
	Concurrency int
	// FailFast stops the run at the first task that does not pass: running tasks are canceled,
	// the others never start.
	FailFast bool
	// Observer receives the run's events, from the tasks' goroutines; it must not block long.
	Observer func(Event)
	// Prices and Budget are passed to every agent loop (cost limits, a run-wide budget).
	Prices *agent.Prices
	Budget *agent.Budget
	// Limits bound what is read from sandboxes; zero fields take DefaultLimits.
	Limits Limits
	// Info fills the descriptive fields of run.json (versions, command, flags, model, provider);
	// the runner sets the rest.
	Info RunInfo
	// Logger receives the runner's logs (default slog.Default()).
	Logger *slog.Logger
}

// Limits bound what the runner reads from a sandbox and keeps.
type Limits struct {
	// MaxArtifactFiles bounds the files collected per task.
	MaxArtifactFiles int
	// MaxArtifactBytes bounds one collected file; larger ones are skipped.
	MaxArtifactBytes int64
	// MaxArtifactTotal bounds the bytes collected per task.
	MaxArtifactTotal int64
	// MaxWalkEntries bounds the directory entries looked at under the workdir.
	MaxWalkEntries int
	// MaxWalkDepth bounds the directory depth looked at under the workdir.
	MaxWalkDepth int
	// MaxCheckOutput bounds the stdout and stderr kept per check command.
	MaxCheckOutput int
	// MaxCheckFileBytes bounds the file a file check reads.
	MaxCheckFileBytes int64
	// MaxSetupLog bounds setup.log.
	MaxSetupLog int
	// KillTimeout bounds killing a sandbox.
	KillTimeout time.Duration
}

// DefaultLimits are the bounds used for zero fields of Config.Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxArtifactFiles:  1000,
		MaxArtifactBytes:  16 << 20,
		MaxArtifactTotal:  128 << 20,
		MaxWalkEntries:    50_000,
		MaxWalkDepth:      32,
		MaxCheckOutput:    1 << 20,
		MaxCheckFileBytes: 16 << 20,
		MaxSetupLog:       1 << 20,
		KillTimeout:       time.Minute,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxArtifactFiles <= 0 {
		l.MaxArtifactFiles = d.MaxArtifactFiles
	}
	if l.MaxArtifactBytes <= 0 {
		l.MaxArtifactBytes = d.MaxArtifactBytes
	}
	if l.MaxArtifactTotal <= 0 {
		l.MaxArtifactTotal = d.MaxArtifactTotal
	}
	if l.MaxWalkEntries <= 0 {
		l.MaxWalkEntries = d.MaxWalkEntries
	}
	if l.MaxWalkDepth <= 0 {
		l.MaxWalkDepth = d.MaxWalkDepth
	}
	if l.MaxCheckOutput <= 0 {
		l.MaxCheckOutput = d.MaxCheckOutput
	}
	if l.MaxCheckFileBytes <= 0 {
		l.MaxCheckFileBytes = d.MaxCheckFileBytes
	}
	if l.MaxSetupLog <= 0 {
		l.MaxSetupLog = d.MaxSetupLog
	}
	if l.KillTimeout <= 0 {
		l.KillTimeout = d.KillTimeout
	}
	return l
}

// ErrResume is returned when a directory cannot be resumed (no run.json, another layout).
var ErrResume = errors.New("cannot resume")

// ErrOut is returned when the results directory cannot be used (it exists and is not empty).
var ErrOut = errors.New("unusable results directory")

// job is one task epoch.
type job struct {
	spec   *spec.Spec
	epoch  int
	model  string
	dir    string // relative to the results directory
	prev   *TaskResult
	result *TaskResult
	reused bool
	// interrupted is the result of an earlier session's interrupted run of this job, when that
	// session kept its sandbox (keep.go).
	interrupted *TaskResult
}

// Runner runs one suite into one results directory.
type Runner struct {
	cfg      Config
	backends *Backends
	lim      Limits
	log      *slog.Logger
	jobs     []*job
	id       string // the run's id (a resumed run keeps its first id)

	mu   sync.Mutex // guards info, the jobs' results and the summary files
	info RunInfo

	forks forkBases // shared setups (fork_setup)
}

// New checks the configuration and prepares the jobs; it resolves every task's model, so a task
// without one is reported before anything runs (errors wrap ErrNoModel).
func New(cfg Config) (*Runner, error) {
	if cfg.Models == nil {
		return nil, errors.New("runner: no models")
	}
	if cfg.Out == "" && cfg.Resume {
		return nil, fmt.Errorf("%w: no results directory", ErrResume)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.NumCPU()
	}
	r := &Runner{cfg: cfg, lim: cfg.Limits.withDefaults(), log: cfg.Logger, id: newRunID()}
	if r.cfg.Out == "" {
		r.cfg.Out = filepath.Join("runs", time.Now().UTC().Format("20060102T150405Z")+"-"+r.id[:8])
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	var errs []error
	seen := map[string]bool{}
	for _, s := range cfg.Specs {
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("duplicate task name %q", s.Name))
			continue
		}
		seen[s.Name] = true
		model, err := cfg.Models.Model(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := max(s.Repeat, 1)
		for e := 1; e <= n; e++ {
			r.jobs = append(r.jobs, &job{spec: s, epoch: e, model: model, dir: taskDirName(s.Name, e, n)})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Out returns the results directory.
func (r *Runner) Out() string { return r.cfg.Out }

// Jobs returns the number of task epochs the run holds.
func (r *Runner) Jobs() int { return len(r.jobs) }

// Run runs every job not finished yet in sandboxes of the backend and returns the summary. Tasks that fail or error are
// recorded in the summary, not returned as errors; the error is for what stops the run itself (the
// results directory cannot be written). When ctx ends, running tasks are canceled, their sandboxes
// killed, and the results so far written: the summary then says Interrupted.
func (r *Runner) Run(ctx context.Context, backend Backend) (*Summary, error) {
	if backend == nil {
		return nil, errors.New("runner: no sandbox backend")
	}
	return r.RunWith(ctx, Fixed(backend))
}

// RunWith is Run with the run's backends opened as tasks need them: each task runs on the backend
// its spec names (`sandbox:`), or on backends.Default.
func (r *Runner) RunWith(ctx context.Context, backends *Backends) (*Summary, error) {
	if backends == nil || backends.Default == "" || backends.Open == nil {
		return nil, errors.New("runner: no sandbox backend")
	}
	r.backends = backends
	started := time.Now().UTC()
	if err := r.prepare(started); err != nil {
		return nil, err
	}
	reused := 0
	for _, j := range r.jobs {
		if j.reused {
			reused++
		}
	}
	r.emit(Event{Type: EventRunStart, Total: len(r.jobs), Reused: reused, Dir: r.cfg.Out})

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g := new(errgroup.Group)
	g.SetLimit(r.cfg.Concurrency)
	var ran atomic.Int32
	for _, j := range r.jobs {
		if j.reused {
			continue
		}
		if rctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if rctx.Err() != nil {
				return nil // interrupted or failed fast before it started: not run
			}
			ran.Add(1)
			res, err := r.runJob(rctx, j)
			if err != nil {
				cancel(err)
				return err
			}
			r.mu.Lock()
			j.result = res
			r.mu.Unlock()
			if err := r.writeSummary(nil); err != nil {
				cancel(err)
				return err
			}
			if r.cfg.FailFast && res.Status != StatusPassed && res.Reason != ReasonCanceled {
				cancel(fmt.Errorf("--fail-fast: task %s %s", res.Task, res.Status))
			}
			return nil
		})
	}
	runErr := g.Wait()
	r.removeForks(ctx)
	ended := time.Now().UTC()
	interrupted := rctx.Err() != nil

	r.mu.Lock()
	r.info.EndedAt = &ended
	r.info.Interrupted = interrupted
	s := &r.info.Sessions[len(r.info.Sessions)-1]
	s.EndedAt, s.Ran, s.Reused, s.Interrupted = &ended, int(ran.Load()), reused, interrupted
	info := r.info
	r.mu.Unlock()
	if err := writeJSON(filepath.Join(r.cfg.Out, RunFile), info); err != nil && runErr == nil {
		runErr = err
	}
	sum, err := r.summary(&ended)
	if err == nil {
		err = r.writeSummary(&ended)
	}
	if runErr == nil {
		runErr = err
	}
	r.emit(Event{Type: EventRunEnd, Dir: r.cfg.Out, Summary: sum})
	if runErr != nil {
		return sum, fmt.Errorf("run: %w", runErr)
	}
	return sum, nil
}

// backendName names the backend a task runs on: its spec's, else the run's default.
func (r *Runner) backendName(s *spec.Spec) string {
	if s.Sandbox != "" {
		return string(s.Sandbox)
	}
	return r.backends.Default
}

// prepare creates (or, for Resume, reads) the results directory and writes run.json.
func (r *Runner) prepare(started time.Time) error {
	out := r.cfg.Out
	info := r.cfg.Info
	if r.cfg.Resume {
		var prev RunInfo
		if err := readJSON(filepath.Join(out, RunFile), &prev); err != nil {
			return fmt.Errorf("%w %s: %v", ErrResume, out, err)
		}
		if prev.SchemaVersion != RunSchema {
			return fmt.Errorf("%w %s: run.json has schema_version %q, want %q", ErrResume, out, prev.SchemaVersion, RunSchema)
		}
		info.ID, info.StartedAt, info.Sessions = prev.ID, prev.StartedAt, prev.Sessions
		r.id = prev.ID
		info.Templates = prev.Templates
		for _, j := range r.jobs {
			if err := r.relayout(j); err != nil {
				return err
			}
			var res TaskResult
			if err := readJSON(filepath.Join(out, j.dir, ResultFile), &res); err != nil {
				continue
			}
			same := res.SpecDigest == j.spec.Digest && res.Model == j.model && res.Epoch == j.epoch && res.Task == j.spec.Name
			if res.Finished() && same {
				j.prev, j.result, j.reused = &res, &res, true
			} else if same && res.Kept != nil {
				j.interrupted = &res
			}
		}
	} else {
		if err := ensureEmptyDir(out); err != nil {
			return err
		}
		info.ID = r.id
		info.StartedAt = started
	}
	if err := os.MkdirAll(filepath.Join(out, TasksDir), 0o755); err != nil {
		return fmt.Errorf("creating the results directory: %w", err)
	}
	info.SchemaVersion = RunSchema
	info.EndedAt = nil
	info.Interrupted = false
	info.Versions.Transcript = transcript.Version
	info.Backend = r.backends.Default
	info.Concurrency = r.cfg.Concurrency
	if info.Templates == nil {
		info.Templates = map[string]string{}
	}
	info.Tasks = nil
	nets := map[string]bool{}
	for _, j := range r.jobs {
		if j.epoch != 1 {
			continue
		}
		s := j.spec
		info.Tasks = append(info.Tasks, RunTask{Name: s.Name, File: s.File, Digest: s.Digest, Model: j.model,
			Template: s.Template, Network: s.Network.String(), Sandbox: r.backendName(s), Runtime: string(s.Runtime), Repeat: max(s.Repeat, 1), Tags: s.Tags})
		nets[s.Network.String()] = true
	}
	info.Network = nil
	for n := range nets {
		info.Network = append(info.Network, n)
	}
	sort.Strings(info.Network)
	info.Sessions = append(info.Sessions, Session{StartedAt: started, Resumed: r.cfg.Resume, Agent: info.Versions.Agent})
	r.mu.Lock()
	r.info = info
	r.mu.Unlock()
	return writeJSON(filepath.Join(out, RunFile), info)
}

// singleLayout are the entries of a task run once (tasks/<name>/), which a repeated task keeps per
// epoch (tasks/<name>/<epoch>/).
var singleLayout = []string{ResultFile, TranscriptFile, ChecksFile, SetupLogFile, FilesDir}

// relayout adapts an earlier session's results when a task's repeat went from 1 to more: its
// results, in tasks/<name>/, become epoch 1's (tasks/<name>/1/) when they are still valid for it
// (repeat is not part of the digest, so raising it adds epochs without redoing the first), and are
// removed otherwise.
func (r *Runner) relayout(j *job) error {
	if j.epoch != 1 || max(j.spec.Repeat, 1) == 1 {
		return nil
	}
	single := filepath.Join(r.cfg.Out, taskDirName(j.spec.Name, 1, 1))
	var res TaskResult
	if err := readJSON(filepath.Join(single, ResultFile), &res); err != nil {
		return nil
	}
	keep := res.Finished() && res.SpecDigest == j.spec.Digest && res.Model == j.model && res.Epoch == 1 && res.Task == j.spec.Name
	dst := filepath.Join(r.cfg.Out, j.dir)
	if keep {
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("relayout of %s: %w", j.spec.Name, err)
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("relayout of %s: %w", j.spec.Name, err)
		}
	}
	for _, name := range singleLayout {
		from := filepath.Join(single, name)
		if _, err := os.Lstat(from); err != nil {
			continue
		}
		var err error
		if keep && name != ResultFile {
			err = os.Rename(from, filepath.Join(dst, name))
		} else if !keep {
			err = os.RemoveAll(from)
		}
		if err != nil {
			return fmt.Errorf("relayout of %s: %w", j.spec.Name, err)
		}
	}
	if keep {
		// The result last, as always: its presence marks the epoch as ended.
		res.Epochs, res.Dir = max(j.spec.Repeat, 1), j.dir
		if err := writeJSON(filepath.Join(dst, ResultFile), &res); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(single, ResultFile)); err != nil {
			return fmt.Errorf("relayout of %s: %w", j.spec.Name, err)
		}
	}
	return nil
}

// ensureEmptyDir creates dir, or accepts an existing empty directory.
func ensureEmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the results directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%w %s: %v", ErrOut, dir, err)
	case len(ents) > 0:
		return fmt.Errorf("%w: %s exists and is not empty (use --resume %s to finish that run, or another --out)", ErrOut, dir, dir)
	}
	return nil
}

// noteTemplate records a template's digest in run.json.
func (r *Runner) noteTemplate(name, digest string) {
	if digest == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.info.Templates[name] == digest {
		return
	}
	r.info.Templates[name] = digest
	if err := writeJSON(filepath.Join(r.cfg.Out, RunFile), r.info); err != nil {
		r.log.Warn("updating run.json", "err", err)
	}
}

// summary builds the summary from the jobs' results.
func (r *Runner) summary(ended *time.Time) (*Summary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := &Summary{SchemaVersion: SummarySchema, RunID: r.info.ID, StartedAt: r.info.StartedAt, EndedAt: ended,
		Interrupted: r.info.Interrupted, Total: len(r.jobs)}
	end := time.Now().UTC()
	if ended != nil {
		end = *ended
	}
	sum.DurationMS = end.Sub(r.info.StartedAt).Milliseconds()
	var cost float64
	costKnown := false
	for _, j := range r.jobs {
		t := SummaryTask{Name: j.spec.Name, Epoch: j.epoch, Dir: j.dir, Reused: j.reused}
		res := j.result
		switch {
		case res == nil || res.Reason == ReasonCanceled:
			t.NotRun = true
			sum.NotRun++
			if res != nil {
				t.Reason, t.Detail = res.Reason, res.Detail
			}
		default:
			t.Status, t.Reason, t.Detail = res.Status, res.Reason, res.Detail
			switch res.Status {
			case StatusPassed:
				sum.Passed++
			case StatusFailed:
				sum.Failed++
			default:
				sum.Error++
			}
		}
		if res != nil {
			t.DurationMS, t.Checks, t.Kept = res.DurationMS, res.Checks, res.Kept
			if res.Agent != nil {
				t.Steps, t.Tokens = res.Agent.Steps, res.Agent.Usage.TotalTokens
				sum.Tokens += t.Tokens
				if res.Agent.Usage.CostUSD != nil {
					cost += *res.Agent.Usage.CostUSD
					costKnown = true
				}
			}
			if res.Checks.Failed > 0 {
				t.FailedChecks = r.failedChecks(j)
			}
			if n := res.Network; n != nil && len(n.Refused) > 0 {
				t.NetworkRefused = len(n.Refused)
				for _, c := range n.Refused[:min(len(n.Refused), 3)] {
					t.NetworkSample = append(t.NetworkSample, clipText(c.String(), 200))
				}
			}
		}
		sum.Tasks = append(sum.Tasks, t)
	}
	if costKnown {
		sum.CostUSD = &cost
	}
	sum.OK = sum.Passed == sum.Total && sum.Total > 0
	return sum, nil
}

// failedChecks reads a task's failing checks back from its checks.json.
func (r *Runner) failedChecks(j *job) []FailedCheck {
	var doc ChecksDoc
	if err := readJSON(filepath.Join(r.cfg.Out, j.dir, ChecksFile), &doc); err != nil {
		return nil
	}
	var out []FailedCheck
	for _, c := range doc.Checks {
		if !c.Passed && !c.Skipped {
			reason := c.Reason
			if c.Error != "" {
				reason = c.Error
			}
			out = append(out, FailedCheck{Name: c.Name, Reason: reason})
		}
	}
	return out
}

// writeSummary writes summary.json and report.md from the results so far.
func (r *Runner) writeSummary(ended *time.Time) error {
	sum, err := r.summary(ended)
	if err != nil {
		return err
	}
	r.mu.Lock()
	info := r.info
	r.mu.Unlock()
	if err := writeJSON(filepath.Join(r.cfg.Out, SummaryFile), sum); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(r.cfg.Out, ReportFile), []byte(Report(&info, sum)))
}

func (r *Runner) emit(e Event) {
	if r.cfg.Observer == nil {
		return
	}
	e.Time = time.Now()
	r.cfg.Observer(e)
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux
	return hex.EncodeToString(b[:])
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
