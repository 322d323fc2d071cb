package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
)

// task is one job being carried out.
type task struct {
	r        *Runner
	j        *job
	s        *spec.Spec
	dir      string // the task's results directory (absolute or relative to the working directory)
	res      *TaskResult
	sb       Sandbox
	base     tree              // the workdir after setup (artifacts mode "changed")
	baseHash map[string]string // content hashes of base's small files

	gone bool // the sandbox stopped answering: skip what needs it

	// b is the backend the task runs on (its spec's, else the run's default); bErr why it could
	// not be opened.
	b    Backend
	bErr error

	cont     *continuation // the interrupted session this task continues (keep.go)
	building *forkBase     // the shared setup this epoch builds (fork.go)
}

// runJob carries out one job and writes its results. The error is for the results directory only
// (it cannot be written); everything that goes wrong with the task is in the result.
func (r *Runner) runJob(ctx context.Context, j *job) (*TaskResult, error) {
	s := j.spec
	dir := filepath.Join(r.cfg.Out, j.dir)
	b, berr := r.backends.get(ctx, r.backendName(s))
	// An interrupted task continues in its kept sandbox when it can (read before the clearing).
	var cont *continuation
	if berr == nil {
		if cont = r.loadContinuation(b, j, dir); cont == nil {
			r.discardKept(ctx, b, j)
		}
	}
	// A re-run (resume after an edit, or of a canceled task) starts from an empty directory.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clearing %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	t := &task{r: r, j: j, s: s, dir: dir, res: &TaskResult{
		SchemaVersion: ResultSchema, Task: s.Name, Epoch: j.epoch, Epochs: max(s.Repeat, 1),
		SpecFile: s.File, SpecDigest: s.Digest, Model: j.model, Tags: s.Tags, Dir: j.dir,
		StartedAt: time.Now().UTC(),
	}, b: b, bErr: berr, cont: cont}
	r.emit(Event{Type: EventTaskStart, Task: s.Name, Epoch: j.epoch})
	werr := t.run(ctx)
	res := t.res
	res.EndedAt = time.Now().UTC()
	res.DurationMS = res.EndedAt.Sub(res.StartedAt).Milliseconds()
	if res.Status == "" {
		res.Status = StatusPassed
	}
	if err := writeJSON(filepath.Join(dir, ResultFile), res); err != nil {
		return nil, err
	}
	r.emit(Event{Type: EventTaskEnd, Task: s.Name, Epoch: j.epoch, Result: res})
	return res, werr
}

func (t *task) phase(name string) {
	t.r.emit(Event{Type: EventPhase, Task: t.s.Name, Epoch: t.j.epoch, Phase: name})
}

// fail ends the task in error, keeping the first reason given.
func (t *task) fail(reason Reason, detail string) {
	if t.res.Status == StatusError {
		return
	}
	t.res.Status, t.res.Reason, t.res.Detail = StatusError, reason, clipText(detail, 2000)
}

func (t *task) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.r.log.Warn(msg, "task", t.s.Name, "epoch", t.j.epoch)
	t.res.Warnings = append(t.res.Warnings, clipText(msg, 500))
}

// interrupted reports whether the run was interrupted (Ctrl-C, SIGTERM, --fail-fast), and ends
// the task as canceled if so.
func (t *task) interrupted(ctx context.Context) bool {
	if ctx.Err() == nil {
		return false
	}
	detail := "the run was interrupted"
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		detail += ": " + c.Error()
	}
	// An interruption overrides what it caused (a command killed, a model call cut).
	t.res.Status, t.res.Reason, t.res.Detail = StatusError, ReasonCanceled, detail
	return true
}

// timeoutDetail describes the task's time limit.
func (t *task) timeoutDetail() string {
	return fmt.Sprintf("the task ran longer than its limit of %s (setup and agent)", t.s.Limits.Timeout)
}

// sandboxErr ends the task for a failed sandbox call: interrupted, timed out, a limit of the
// sandbox (OOM, pids, disk), or a sandbox error.
func (t *task) sandboxErr(ctx, tctx context.Context, doing string, err error) {
	if t.interrupted(ctx) {
		return
	}
	if tctx != nil && tctx.Err() != nil {
		t.fail(ReasonTimeout, t.timeoutDetail()+" while "+doing)
		return
	}
	if t.limitFailure() {
		return
	}
	if errors.Is(err, sandbox.ErrGone) {
		t.gone = true
	}
	t.fail(ReasonSandboxError, fmt.Sprintf("%s: %v", doing, err))
}

// limitFailure asks the sandbox whether a limit ended or hampered it, and ends the task in error
// with that reason if so.
func (t *task) limitFailure() bool {
	if t.sb == nil {
		return false
	}
	f := t.sb.Failure()
	if f == nil {
		return false
	}
	switch {
	case errors.Is(f, sandbox.ErrOOM):
		t.forceFail(ReasonOOM, f.Error())
	case errors.Is(f, sandbox.ErrPidsLimit):
		t.forceFail(ReasonPidsLimit, f.Error())
	case errors.Is(f, sandbox.ErrNoSpace):
		t.forceFail(ReasonDiskFull, f.Error())
	default:
		t.gone = errors.Is(f, sandbox.ErrGone) || errors.Is(f, sandbox.ErrExpired)
		t.forceFail(ReasonSandboxError, f.Error())
	}
	return true
}

// forceFail sets the error reason even over an earlier one: a sandbox limit is the root cause of
// whatever the agent saw (a command killed, a step limit reached while retrying).
func (t *task) forceFail(reason Reason, detail string) {
	if t.res.Reason == ReasonCanceled {
		return
	}
	t.res.Status, t.res.Reason, t.res.Detail = StatusError, reason, clipText(detail, 2000)
}

// run carries out the pipeline. Its error is for the results directory only.
func (t *task) run(ctx context.Context) error {
	s := t.s
	deadline := time.Now().Add(s.Limits.Timeout.D())
	// tctx bounds setup and the agent: the task's time limit.
	tctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// Sandbox: fresh, forked from the task's shared setup, or the kept one of an interrupted
	// session (keep.go, fork.go).
	t.phase("sandbox")
	started := time.Now()
	defer func() { t.endFork(nil) }()
	sb, prepared, err := t.sandbox(ctx, tctx)
	t.res.Phases.SandboxMS = time.Since(started).Milliseconds()
	if err != nil {
		t.sandboxErr(ctx, tctx, "creating the sandbox", err)
		return nil
	}
	t.sb = sb
	info := sb.Info()
	t.res.Sandbox = &info
	t.res.Network = networkMode(s.Network, info.Network)
	t.r.noteTemplate(info.Template, info.TemplateDigest)
	defer t.kill(ctx)

	// Seed files.
	if !prepared {
		t.phase("seed")
		started = time.Now()
		err = t.seed(tctx)
		t.res.Phases.SeedMS = time.Since(started).Milliseconds()
		if err != nil {
			t.sandboxErr(ctx, tctx, "seeding files", err)
			return nil
		}
	}

	// Setup.
	if len(s.Setup) > 0 && !prepared {
		t.phase("setup")
		started = time.Now()
		werr := t.setup(ctx, tctx)
		t.res.Phases.SetupMS = time.Since(started).Milliseconds()
		if werr != nil {
			return werr
		}
		t.shareSetup(tctx)
		if t.res.Status == StatusError {
			return nil
		}
	}
	if s.Artifacts == nil {
		// The state the agent starts from: artifacts are what it creates or changes.
		w, err := t.walkTree(tctx, true)
		if err != nil {
			t.warn("listing the workdir after setup: %v (every file found later counts as created)", err)
		}
		if w != nil {
			t.base = w.files
			t.hashBase(tctx)
		}
	}

	// Agent.
	t.phase("agent")
	started = time.Now()
	werr := t.agent(ctx, deadline)
	t.res.Phases.AgentMS = time.Since(started).Milliseconds()
	if werr != nil {
		return werr
	}
	if t.interrupted(ctx) {
		return nil
	}
	t.limitFailure()

	// Checks: graded even when the agent ended in error, for the diagnosis; the status stays error.
	if !t.gone {
		if s.StopBackground {
			t.stopBackground(ctx)
		}
		if len(s.Checks) > 0 {
			t.phase("checks")
		}
		started = time.Now()
		werr := t.checks(ctx)
		t.res.Phases.ChecksMS = time.Since(started).Milliseconds()
		if werr != nil {
			return werr
		}
		if t.interrupted(ctx) {
			return nil
		}
	} else {
		t.skipChecks("the sandbox is gone")
	}

	// Artifacts.
	if !t.gone {
		t.phase("artifacts")
		started = time.Now()
		werr := t.artifacts(ctx)
		t.res.Phases.ArtifactsMS = time.Since(started).Milliseconds()
		if werr != nil {
			return werr
		}
		t.interrupted(ctx)
	}
	return nil
}

// request describes the sandbox the task needs.
func (t *task) request() SandboxRequest {
	r := RequestFor(t.s)
	r.Epoch = t.j.epoch
	return r
}

// RequestFor describes the sandbox a task of s needs (epoch 0). Backends that prepare sandboxes
// ahead (a warm pool) use it to know what the tasks will ask for.
func RequestFor(s *spec.Spec) SandboxRequest {
	life := s.Limits.Timeout.D() + 5*time.Minute
	for _, c := range s.Checks {
		if c.Kind == spec.CheckRun {
			life += c.Timeout.D()
		}
	}
	return SandboxRequest{
		Task: s.Name, Template: s.Template, Runtime: string(s.Runtime), Env: s.Env, Network: s.Network,
		MemoryBytes: int64(s.Limits.Memory), CPUs: s.Limits.CPUs, Pids: s.Limits.Pids, DiskBytes: int64(s.Limits.Disk),
		Lifetime: min(life, 7*24*time.Hour),
	}
}

// kill destroys the sandbox, even when the run was interrupted.
func (t *task) kill(ctx context.Context) {
	t.phase("kill")
	started := time.Now()
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.r.lim.KillTimeout)
	defer cancel()
	// What the network refused is read while the sandbox's network still exists.
	t.networkReport(kctx)
	if t.keep(ctx) {
		_ = t.sb.Close()
		t.res.Phases.KillMS = time.Since(started).Milliseconds()
		return
	}
	if err := t.sb.Kill(kctx); err != nil {
		t.warn("killing sandbox %s: %v", t.sb.ID(), err)
	}
	_ = t.sb.Close()
	t.res.Phases.KillMS = time.Since(started).Milliseconds()
}

// networkMode is a task's network mode before anything is known of its refusals; policy is what
// the backend says is in force ("" when it does not say).
func networkMode(n spec.Network, policy string) *NetworkResult {
	mode := string(n.Mode)
	if mode == "" {
		mode = string(spec.NetworkNone)
	}
	if policy == "" {
		policy = n.String()
	}
	if policy == "" {
		policy = mode
	}
	return &NetworkResult{Mode: mode, Policy: policy}
}

// networkReport records what the sandbox's network policy refused, when the backend can tell.
func (t *task) networkReport(ctx context.Context) {
	nr, ok := t.sb.(NetworkReporter)
	if !ok || t.res.Network == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rep, err := nr.NetworkResult(rctx)
	if rep != nil {
		n := t.res.Network
		n.Reported = true
		n.Address = rep.Address
		n.RefusedPackets = rep.RefusedPackets
		n.Refused = rep.Refused[:min(len(rep.Refused), MaxNetworkRefused)]
		for i := range n.Refused {
			c := &n.Refused[i]
			c.Name, c.Addr, c.Reason = clipText(c.Name, 256), clipText(c.Addr, 64), clipText(c.Reason, 300)
			c.Kind, c.Proto = clipText(c.Kind, 16), clipText(c.Proto, 16)
		}
	}
	if err != nil {
		t.res.Network.Error = clipText(err.Error(), 500)
		t.warn("reading what the network refused: %v", err)
	}
}

// Seed files are written in batches of this many files (and about this many bytes).
const (
	seedBatchFiles = 256
	seedBatchBytes = 16 << 20
	chmodBatch     = 128
)

// seed creates the workdir and writes the seed files into it.
func (t *task) seed(ctx context.Context) error {
	wd := t.s.Workdir
	if err := t.sb.MakeDir(ctx, wd); err != nil && !errors.Is(err, sandbox.ErrExists) {
		return fmt.Errorf("creating the workdir %s: %w", wd, err)
	}
	var batch []sandbox.File
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := t.sb.WriteFiles(ctx, batch)
		batch, size = nil, 0
		return err
	}
	modes := map[spec.Mode][]string{}
	for _, f := range t.s.Files {
		p := path.Join(wd, f.Path)
		batch = append(batch, sandbox.File{Path: p, Data: f.Data})
		size += len(f.Data)
		if len(batch) >= seedBatchFiles || size >= seedBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		if f.Mode != 0o644 {
			modes[f.Mode] = append(modes[f.Mode], p)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	// envd writes files 0644; other modes are set with chmod, a batch of paths at a time.
	for _, m := range slices.Sorted(mapKeys(modes)) {
		paths := modes[m]
		for len(paths) > 0 {
			n := min(len(paths), chmodBatch)
			argv := append([]string{"chmod", fmt.Sprintf("%04o", uint32(m)), "--"}, paths[:n]...)
			if _, err := t.sb.Run(ctx, sandbox.Cmd{Argv: argv, Dir: wd, Timeout: time.Minute, MaxOutput: 4096}); err != nil {
				return fmt.Errorf("setting mode %s: %w", m, err)
			}
			paths = paths[n:]
		}
	}
	return nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// setup runs the setup commands in order, logging to setup.log; the first failure ends the task.
func (t *task) setup(ctx, tctx context.Context) error {
	log := newBoundedBuffer(t.r.lim.MaxSetupLog)
	defer func() {
		if err := writeFileAtomic(filepath.Join(t.dir, SetupLogFile), log.Bytes()); err != nil {
			t.warn("writing setup.log: %v", err)
		}
	}()
	for i, st := range t.s.Setup {
		fmt.Fprintf(log, "$ %s\n", st.Run)
		started := time.Now()
		res, err := t.sb.Run(tctx, sandbox.Cmd{
			Shell: st.Run, Dir: t.s.Workdir, Env: t.s.Env, Timeout: st.Timeout.D(), MaxOutput: 4096,
			Output: sandbox.Output{Stdout: log.WriteBytes, Stderr: log.WriteBytes},
		})
		var ee *sandbox.ExitError
		if errors.As(err, &ee) {
			res = ee.Result
		}
		switch {
		case res != nil && err != nil:
			log.ensureNewline()
			status := fmt.Sprintf("exited with code %d", res.ExitCode)
			if res.TimedOut {
				status = fmt.Sprintf("timed out after %s", st.Timeout)
			} else if !res.Exited && res.Status != "" {
				status = res.Status
			}
			fmt.Fprintf(log, "[%s after %s]\n", status, time.Since(started).Round(time.Millisecond))
			if t.interrupted(ctx) {
				return nil
			}
			if tctx.Err() != nil {
				t.fail(ReasonTimeout, t.timeoutDetail()+" during setup")
				return nil
			}
			if t.limitFailure() {
				return nil
			}
			t.fail(ReasonSetupFailed, fmt.Sprintf("setup command %d (%s) %s; see setup.log: %s",
				i+1, firstLine(st.Run, 80), status, lastLines(log.String(), 5)))
			return nil
		case err != nil:
			log.ensureNewline()
			fmt.Fprintf(log, "[error: %v]\n", err)
			t.sandboxErr(ctx, tctx, fmt.Sprintf("running setup command %d", i+1), err)
			return nil
		}
		log.ensureNewline()
		fmt.Fprintf(log, "[exit 0 after %s]\n", time.Since(started).Round(time.Millisecond))
	}
	return nil
}

// agent runs the agent loop and writes the transcript.
func (t *task) agent(ctx context.Context, deadline time.Time) error {
	s := t.s
	remaining := time.Until(deadline)
	if remaining <= 0 {
		t.fail(ReasonTimeout, t.timeoutDetail()+" before the agent started")
		return nil
	}
	p, err := t.r.cfg.Models.Provider(s, t.j.model)
	if err != nil {
		t.fail(ReasonModelError, err.Error())
		return nil
	}
	info := p.Info()
	t.res.Provider = info.Name
	t.res.Replayed = info.ReplayOf
	task := agent.Task{
		Name: s.Name, Prompt: s.Prompt, System: s.System, Model: t.j.model, Workdir: s.Workdir, Env: s.Env,
		Limits: agent.Limits{
			MaxSteps: s.Limits.MaxSteps, MaxTokens: s.Limits.MaxTokens, MaxCost: s.Limits.MaxCost,
			// The agent gets what is left of the task's time; its own timer makes the end reason
			// "timeout" rather than a canceled call.
			Timeout:        remaining,
			CommandTimeout: s.Limits.CommandTimeout.D(),
			MaxResultBytes: int(s.Limits.MaxOutput),
		},
	}
	seed := cellSeed(t.j.model, s.Name, t.j.epoch)
	task.Seed = &seed
	t.res.Seed = &seed
	t.continueTask(&task)
	epoch := t.j.epoch
	obs := func(e agent.Event) {
		t.r.emit(Event{Type: EventAgent, Task: s.Name, Epoch: epoch, Agent: &e})
	}
	res, err := agent.Run(ctx, task, t.sb, p, agent.Options{Observer: obs, Prices: t.r.cfg.Prices, Budget: t.r.cfg.Budget, Logger: t.r.log})
	if res == nil {
		// The task could not start: a malformed model id, a cost limit without a price.
		t.fail(ReasonModelError, fmt.Sprintf("starting the agent: %v", err))
		return nil
	}
	tr := res.Transcript
	ar := &AgentResult{End: tr.End, Steps: tr.Steps, Usage: tr.Usage, FinalAnswer: clipText(res.FinalAnswer, 4000)}
	for _, m := range tr.Messages {
		ar.ToolCalls += len(m.ToolCalls)
		if m.Call != nil {
			t.res.Phases.ModelMS += m.Call.DurationMS
		}
	}
	t.res.Agent = ar
	if err := tr.WriteFile(filepath.Join(t.dir, TranscriptFile)); err != nil {
		return fmt.Errorf("task %s: %w", s.Name, err)
	}
	switch tr.End.Reason {
	case transcript.ReasonCompleted:
	case transcript.ReasonCanceled:
		t.interrupted(ctx)
		if t.res.Status == "" { // canceled without the run's context ending: say so
			t.fail(ReasonCanceled, tr.End.Detail)
		}
	case transcript.ReasonTimeout:
		t.fail(ReasonTimeout, t.timeoutDetail())
	case transcript.ReasonSandboxError:
		t.fail(ReasonSandboxError, tr.End.Detail)
		var ee *agent.EndError
		if errors.As(err, &ee) && errors.Is(ee.Err, sandbox.ErrGone) {
			t.gone = true
		}
	default:
		detail := tr.End.Detail
		if tr.End.ErrorKind != "" {
			detail = tr.End.ErrorKind + ": " + detail
		}
		t.fail(Reason(tr.End.Reason), detail)
	}
	return nil
}

// stopBackground kills the commands the agent left running, so checks see a quiet sandbox.
func (t *task) stopBackground(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	procs, err := t.sb.Processes(cctx)
	if err != nil {
		t.warn("listing background commands: %v", err)
		return
	}
	for _, p := range procs {
		if p.PID == 0 {
			continue
		}
		if h, err := t.sb.Connect(cctx, p.PID, "", sandbox.Output{}); err == nil {
			_ = h.Kill(cctx)
			h.Disconnect()
		}
	}
}

// firstLine returns s's first line, clipped.
func firstLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return clipText(s, n)
}

// lastLines returns the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "[") {
			out = append(out, clipText(l, 200))
		}
	}
	slices.Reverse(out)
	return strings.Join(out, " | ")
}
