package runner_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
)

// wrongSolution scripts a model that runs the suite's plausible wrong solution of a task (its
// solution/wrong.sh), then claims success.
func wrongSolution(t *testing.T, name, task string) *llmtest.Scenario {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(repoRoot, "tasks", "examples", task, "solution", "wrong.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return &llmtest.Scenario{Name: name, Turns: []llmtest.Turn{
		{Content: "Writing the solution.", ToolCalls: []llmtest.ToolCall{
			{Name: "write_file", Args: map[string]any{"path": "/tmp/solve.sh", "data": string(script)}},
		}},
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "bash /tmp/solve.sh"}}}},
		{Content: "All done, it works."},
	}}
}

// TestExampleSuiteScripted runs part of the example suite with the scripted model, one behaviour
// per task: solving it (argument fragments, whole calls, a 429 first), solving it wrongly, a model
// that never stops, a refused API key. It checks the statuses and reasons, the checks, the
// artifacts, the transcripts against their JSON Schema, the results files, and that nothing is
// left on the host.
func TestExampleSuiteScripted(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 15*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)

	load := func(task, name string, shape llmtest.Shape) *llmtest.Scenario {
		sc, err := runnertest.LoadScenario(repoRoot, task, name, shape)
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	fixMedian := load("fix-median", "m-fix-median", llmtest.ShapeFragments)
	merge := load("git-merge-branch", "m-merge", llmtest.ShapeWhole)
	paginate := load("paginate-fix", "m-paginate", llmtest.ShapeFragments)
	paginate.Turns[0].Failures = []llmtest.Failure{{Status: 429, RetryAfter: "1", Message: "slow down"}}
	loop := &llmtest.Scenario{Name: "m-loop", Loop: true, Turns: []llmtest.Turn{
		{Content: "Checking again.", ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "echo still working"}}}},
	}}
	refused := &llmtest.Scenario{Name: "m-refused", APIKey: "another-key", Turns: []llmtest.Turn{{Content: "never"}}}
	srv := llmtest.Start(t, fixMedian, merge, paginate, wrongSolution(t, "m-wrong", "fizzbuzz"), loop, refused)

	suite := t.TempDir()
	err := runnertest.CopySuite(filepath.Join(repoRoot, "tasks", "examples"), suite, map[string]string{
		"fix-median":       "custom:m-fix-median",
		"git-merge-branch": "custom:m-merge",
		"paginate-fix":     "custom:m-paginate",
		"fizzbuzz":         "custom:m-wrong",
		"slugify":          "custom:m-loop",
		"log-errors":       "custom:m-refused",
	})
	if err != nil {
		t.Fatal(err)
	}
	specs := loadSuite(t, suite)
	out := filepath.Join(t.TempDir(), "results")
	var (
		mu     sync.Mutex
		events []runner.Event
	)
	sum := runSuite(t, ctx, b, runner.Config{Specs: specs, Models: scripted(srv), Out: out, Concurrency: 2,
		Observer: func(e runner.Event) {
			if e.Type != runner.EventAgent {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		}})

	// Statuses and reasons.
	want := map[string]struct {
		status runner.Status
		reason runner.Reason
	}{
		"fix-median":       {runner.StatusPassed, ""},
		"git-merge-branch": {runner.StatusPassed, ""},
		"paginate-fix":     {runner.StatusPassed, ""},
		"fizzbuzz":         {runner.StatusFailed, ""},
		"slugify":          {runner.StatusError, runner.ReasonMaxSteps},
		"log-errors":       {runner.StatusError, runner.ReasonModelError},
	}
	got := summaryByName(sum)
	for name, w := range want {
		g := got[name]
		if g.Status != w.status || g.Reason != w.reason {
			t.Errorf("%s: %s/%s (%s), want %s/%s", name, g.Status, g.Reason, g.Detail, w.status, w.reason)
		}
	}
	if sum.Total != 6 || sum.Passed != 3 || sum.Failed != 1 || sum.Error != 2 || sum.NotRun != 0 || sum.OK || sum.Interrupted {
		t.Errorf("summary counts = %+v", sum)
	}
	if d := got["log-errors"].Detail; !strings.Contains(d, "auth") {
		t.Errorf("a refused key should say so: %q", d)
	}
	if d := got["slugify"].Detail; !strings.Contains(d, "30 steps") {
		t.Errorf("step limit detail = %q (agent.yaml sets max_steps 30)", d)
	}

	// Every model call carries the cell's seed, and result.json records it.
	if fmSeed := taskResult(t, out, "fix-median").Seed; fmSeed == nil {
		t.Error("result.json of fix-median has no seed")
	} else {
		for _, req := range srv.Requests() {
			if req.Model == "m-fix-median" && (req.Seed == nil || *req.Seed != *fmSeed) {
				t.Errorf("model call seed %v, want the recorded %d", req.Seed, *fmSeed)
			}
		}
	}

	// The wrong solution fails the checks that catch it, and only those.
	var checks runner.ChecksDoc
	readJSON(t, filepath.Join(out, "tasks", "fizzbuzz", "checks.json"), &checks)
	if checks.SchemaVersion != runner.ChecksSchema || len(checks.Checks) != 5 {
		t.Fatalf("checks.json = %+v", checks)
	}
	failed := map[string]bool{}
	for _, c := range checks.Checks {
		if !c.Passed {
			failed[c.Name] = true
			if c.Reason == "" {
				t.Errorf("failing check %q has no reason", c.Name)
			}
		}
	}
	for _, name := range []string{"first fifteen lines", "fizzbuzz() returns strings and importing prints nothing"} {
		if !failed[name] {
			t.Errorf("check %q should fail for the wrong solution; failed: %v", name, failed)
		}
	}
	if got["fizzbuzz"].Checks.Failed != len(failed) || len(got["fizzbuzz"].FailedChecks) != len(failed) {
		t.Errorf("summary of fizzbuzz checks = %+v", got["fizzbuzz"])
	}
	readJSON(t, filepath.Join(out, "tasks", "fix-median", "checks.json"), &checks)
	for _, c := range checks.Checks {
		if !c.Passed || c.ExitCode == nil || *c.ExitCode != 0 {
			t.Errorf("fix-median check %+v", c)
		}
	}

	// Artifacts: the changed file, not the untouched seed; what the wrong solution wrote.
	fm := taskResult(t, out, "fix-median")
	if fm.Artifacts == nil || len(fm.Artifacts.Files) != 1 || fm.Artifacts.Files[0].Path != "stats.py" || fm.Artifacts.Files[0].New {
		t.Fatalf("fix-median artifacts = %+v", fm.Artifacts)
	}
	data, err := os.ReadFile(filepath.Join(out, "tasks", "fix-median", "files", "stats.py"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != fm.Artifacts.Files[0].SHA256 || !strings.Contains(string(data), "sorted(values)") {
		t.Errorf("collected stats.py does not match its record")
	}
	if _, err := os.Stat(filepath.Join(out, "tasks", "fix-median", "files", "test_stats.py")); !os.IsNotExist(err) {
		t.Errorf("the untouched seed test_stats.py was collected: %v", err)
	}
	fb := taskResult(t, out, "fizzbuzz")
	var paths []string
	for _, f := range fb.Artifacts.Files {
		paths = append(paths, f.Path)
		if !f.New {
			t.Errorf("%s should be new", f.Path)
		}
	}
	if !slices.Equal(paths, []string{"fizzbuzz.py", "test_fizzbuzz.py"}) {
		t.Errorf("fizzbuzz artifacts = %v", paths)
	}
	gm := taskResult(t, out, "git-merge-branch")
	if gm.Artifacts == nil || !slices.ContainsFunc(gm.Artifacts.Skipped, func(s runner.SkippedFile) bool { return s.Path == ".git/" }) {
		t.Errorf("git-merge-branch: .git should be listed as not collected: %+v", gm.Artifacts)
	}
	if fi, err := os.Stat(filepath.Join(out, "tasks", "git-merge-branch", "setup.log")); err != nil || fi.Size() == 0 {
		t.Errorf("setup.log: %v", err)
	}

	// Transcripts are valid against the schema and say what happened.
	for name := range want {
		if name == "log-errors" {
			continue // checked below: the model refused the first call
		}
		p := filepath.Join(out, "tasks", name, "transcript.json")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := transcript.Validate(data); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	tr, err := transcript.Load(filepath.Join(out, "tasks", "log-errors", "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tr.End.Reason != transcript.ReasonModelError || tr.End.ErrorKind != "auth" {
		t.Errorf("log-errors transcript end = %+v", tr.End)
	}
	pg := taskResult(t, out, "paginate-fix")
	ptr, err := transcript.Load(filepath.Join(out, "tasks", "paginate-fix", "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ptr.Messages) < 3 || ptr.Messages[2].Call == nil || ptr.Messages[2].Call.Attempts != 2 {
		t.Errorf("paginate-fix: the 429 should show as a second attempt: %+v", ptr.Messages[2].Call)
	}
	if pg.Agent == nil || pg.Agent.ToolCalls != 3 || pg.Phases.AgentMS == 0 || pg.Sandbox == nil || pg.Sandbox.TemplateDigest == "" {
		t.Errorf("paginate-fix result = %+v", pg)
	}

	// The results directory.
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	if info.SchemaVersion != runner.RunSchema || len(info.Tasks) != 6 || info.EndedAt == nil || info.Backend != "local" ||
		info.Templates["host"] == "" || len(info.Sessions) != 1 || info.Sessions[0].Ran != 6 {
		t.Errorf("run.json = %+v", info)
	}
	for _, task := range info.Tasks {
		if !strings.HasPrefix(task.Digest, "sha256:") || !strings.HasPrefix(task.Model, "custom:") {
			t.Errorf("run.json task %+v", task)
		}
	}
	var onDisk runner.Summary
	readJSON(t, filepath.Join(out, "summary.json"), &onDisk)
	if onDisk.SchemaVersion != runner.SummarySchema || onDisk.Passed != 3 || onDisk.Failed != 1 || onDisk.Error != 2 {
		t.Errorf("summary.json = %+v", onDisk)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"3 of 6 passed", "| ❌ | fizzbuzz | failed |", "### Failing checks", "first fifteen lines", "### Errors", "**slugify**: max_steps", "**log-errors**: model_error"} {
		if !strings.Contains(string(report), s) {
			t.Errorf("report.md lacks %q:\n%s", s, report)
		}
	}

	// Events: every task started and ended once, phases in order.
	starts, ends := map[string]int{}, map[string]int{}
	for _, e := range events {
		switch e.Type {
		case runner.EventTaskStart:
			starts[e.Task]++
		case runner.EventTaskEnd:
			ends[e.Task]++
		}
	}
	for name := range want {
		if starts[name] != 1 || ends[name] != 1 {
			t.Errorf("%s: %d starts, %d ends", name, starts[name], ends[name])
		}
	}
	if events[0].Type != runner.EventRunStart || events[len(events)-1].Type != runner.EventRunEnd {
		t.Errorf("first and last events: %s, %s", events[0].Type, events[len(events)-1].Type)
	}
	if m := srv.Mismatches(); len(m) > 0 {
		t.Errorf("scripted model expectations: %v", m)
	}
}

// TestReplayExamples replays every example transcript in testdata/transcripts against the example
// suite: the recorded tool calls run in fresh sandboxes and every task passes its checks.
func TestReplayExamples(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 15*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	specs := loadSuite(t, filepath.Join(repoRoot, "tasks", "examples"))
	if len(specs) < 8 {
		t.Fatalf("%d example specs, want at least 8", len(specs))
	}
	out := filepath.Join(t.TempDir(), "results")
	sum := runSuite(t, ctx, b, runner.Config{Specs: specs, Models: &runner.Replays{Path: filepath.Join(repoRoot, "testdata", "transcripts")}, Out: out, Concurrency: 2})
	for _, task := range sum.Tasks {
		if task.Status != runner.StatusPassed {
			t.Errorf("%s: %s %s %s %+v", task.Name, task.Status, task.Reason, task.Detail, task.FailedChecks)
		}
	}
	if !sum.OK || sum.Total != len(specs) {
		t.Errorf("summary %+v", sum)
	}
	for _, s := range specs {
		fixture, err := transcript.Load(filepath.Join(repoRoot, "testdata", "transcripts", s.Name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(fixture.Origin, "hand-written") || fixture.Model != "hand-written" {
			t.Errorf("%s: the fixture must say it was written by hand: origin %q, model %q", s.Name, fixture.Origin, fixture.Model)
		}
		tr, err := transcript.Load(filepath.Join(out, "tasks", s.Name, "transcript.json"))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Replay == nil || tr.Provider.Name != "replay" || tr.Steps != fixture.Steps {
			t.Errorf("%s: the run's transcript should say it is a replay of %d steps: %+v %+v", s.Name, fixture.Steps, tr.Replay, tr.Provider)
		}
		res := taskResult(t, out, s.Name)
		if res.Provider != "replay" || res.Replayed == "" {
			t.Errorf("%s: result does not say it was a replay: %+v", s.Name, res)
		}
	}
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	for _, task := range info.Tasks {
		if !strings.HasPrefix(task.Model, "replay:") {
			t.Errorf("run.json model of %s = %q", task.Name, task.Model)
		}
	}
}
