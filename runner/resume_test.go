package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

// TestResumeRunsOnlyUnfinishedTasks interrupts a run while its second task is in the agent loop,
// then resumes it: the finished task is not run again (no model call, its results untouched), the
// canceled and never-started ones run. Resuming again after editing one spec runs that one only.
func TestResumeRunsOnlyUnfinishedTasks(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	tasks := []string{"fizzbuzz", "loc-report", "log-errors", "slugify"} // the order they run in
	suite, srv := runnertest.ReplaySuite(t, repoRoot, tasks, 100*time.Millisecond)
	out := filepath.Join(t.TempDir(), "results")

	// First session: interrupted once the second task is in the agent loop.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	r, err := runner.New(runner.Config{Specs: loadSuite(t, suite), Models: scripted(srv), Out: out, Concurrency: 1,
		Observer: func(e runner.Event) {
			if e.Type == runner.EventPhase && e.Phase == "agent" && e.Task == "loc-report" {
				once.Do(cancel)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(rctx, b)
	if err != nil {
		t.Fatal(err)
	}
	got := summaryByName(sum)
	if !sum.Interrupted || sum.Passed != 1 || sum.NotRun != 3 || got["fizzbuzz"].Status != runner.StatusPassed {
		t.Fatalf("interrupted run: %+v", sum)
	}
	canceled := taskResult(t, out, "loc-report")
	if canceled.Status != runner.StatusError || canceled.Reason != runner.ReasonCanceled || canceled.Finished() {
		t.Errorf("the task in flight: %+v", canceled)
	}
	if _, err := os.Stat(filepath.Join(out, "tasks", "slugify")); !os.IsNotExist(err) {
		t.Errorf("a task that never started has results: %v", err)
	}
	report, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(report), "interrupted") {
		t.Errorf("report.md does not say the run was interrupted:\n%s", report)
	}
	finished, err := os.ReadFile(filepath.Join(out, "tasks", "fizzbuzz", "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	calls := func(model string) int {
		n := 0
		for _, r := range srv.Requests() {
			if r.Model == model {
				n++
			}
		}
		return n
	}
	fizzCalls := calls("m-fizzbuzz")

	// Second session: only the three unfinished tasks run.
	r, err = runner.New(runner.Config{Specs: loadSuite(t, suite), Models: scripted(srv), Out: out, Resume: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	sum, err = r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK || sum.Passed != 4 || sum.Interrupted {
		t.Fatalf("resumed run: %+v", sum)
	}
	if n := calls("m-fizzbuzz"); n != fizzCalls {
		t.Errorf("the finished task called the model again (%d calls, %d before)", n, fizzCalls)
	}
	if again, _ := os.ReadFile(filepath.Join(out, "tasks", "fizzbuzz", "result.json")); !bytes.Equal(again, finished) {
		t.Errorf("the finished task's result.json changed")
	}
	if !summaryByName(sum)["fizzbuzz"].Reused || summaryByName(sum)["slugify"].Reused {
		t.Errorf("reused flags: %+v", sum.Tasks)
	}
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	if len(info.Sessions) != 2 || !info.Sessions[1].Resumed || info.Sessions[1].Reused != 1 || info.Sessions[1].Ran != 3 || !info.Sessions[0].Interrupted || info.Interrupted {
		t.Errorf("run.json sessions = %+v", info.Sessions)
	}

	// Third session after an edit: the edited spec runs again, the others never.
	specFile := filepath.Join(suite, "log-errors", "task.yaml")
	data, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specFile, bytes.Replace(data, []byte("Any tool is fine."), []byte("Any tool will do."), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, task := range tasks {
		before[task] = calls("m-" + task)
	}
	r, err = runner.New(runner.Config{Specs: loadSuite(t, suite), Models: scripted(srv), Out: out, Resume: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sum, err = r.Run(ctx, b); err != nil || !sum.OK {
		t.Fatalf("third session: %+v %v", sum, err)
	}
	for _, task := range tasks {
		ran := calls("m-"+task) > before[task]
		if ran != (task == "log-errors") {
			t.Errorf("%s: ran again = %v", task, ran)
		}
	}
}

// TestResumeWithMoreEpochs raises a finished task's repeat from 1 to 3 and resumes: epoch 1 keeps
// its results (moved to tasks/<name>/1/), epochs 2 and 3 run.
func TestResumeWithMoreEpochs(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 5*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	file := filepath.Join(repoRoot, "tasks", "examples", "fizzbuzz", "task.yaml")
	load := func(repeat int) []*spec.Spec {
		s, err := spec.Load(ctx, []string{file}, spec.Options{Overrides: &spec.Config{Common: spec.Common{Repeat: spec.Ptr(repeat)}}})
		if err != nil {
			t.Fatal(err)
		}
		return s.Specs
	}
	models := &runner.Replays{Path: filepath.Join(repoRoot, "testdata", "transcripts")}
	out := filepath.Join(t.TempDir(), "results")
	r, err := runner.New(runner.Config{Specs: load(1), Models: models, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := r.Run(ctx, b); err != nil || !sum.OK {
		t.Fatalf("first run: %+v %v", sum, err)
	}
	first := taskResult(t, out, "fizzbuzz")
	r, err = runner.New(runner.Config{Specs: load(3), Models: models, Out: out, Resume: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil || !sum.OK || sum.Total != 3 {
		t.Fatalf("resumed run: %+v %v", sum, err)
	}
	if !sum.Tasks[0].Reused || sum.Tasks[1].Reused || sum.Tasks[2].Reused {
		t.Errorf("reused: %+v", sum.Tasks)
	}
	for e := 1; e <= 3; e++ {
		var res runner.TaskResult
		readJSON(t, filepath.Join(out, "tasks", "fizzbuzz", fmt.Sprint(e), "result.json"), &res)
		if res.Epoch != e || res.Epochs != 3 || res.Status != runner.StatusPassed {
			t.Errorf("epoch %d: %+v", e, res)
		}
		if e == 1 && !res.StartedAt.Equal(first.StartedAt) {
			t.Errorf("epoch 1 ran again")
		}
		if _, err := os.Stat(filepath.Join(out, "tasks", "fizzbuzz", fmt.Sprint(e), "transcript.json")); err != nil {
			t.Errorf("epoch %d transcript: %v", e, err)
		}
	}
	for _, name := range []string{"result.json", "transcript.json", "checks.json", "files"} {
		if _, err := os.Stat(filepath.Join(out, "tasks", "fizzbuzz", name)); !os.IsNotExist(err) {
			t.Errorf("single-epoch %s left behind: %v", name, err)
		}
	}
}

// TestFailFast stops the run at the first task that does not pass: the tasks after it never run.
func TestFailFast(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 5*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	var files []string
	for _, task := range []string{"fizzbuzz", "log-errors", "slugify"} {
		files = append(files, filepath.Join(repoRoot, "tasks", "examples", task, "task.yaml"))
	}
	suite, err := spec.Load(ctx, files, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Every task replays slugify's transcript: fizzbuzz, first, fails its checks.
	out := filepath.Join(t.TempDir(), "results")
	r, err := runner.New(runner.Config{Specs: suite.Specs, Out: out, Concurrency: 1, FailFast: true,
		Models: &runner.Replays{Path: filepath.Join(repoRoot, "testdata", "transcripts", "slugify.json")}})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	got := summaryByName(sum)
	if got["fizzbuzz"].Status != runner.StatusFailed || !got["log-errors"].NotRun || !got["slugify"].NotRun || !sum.Interrupted || sum.OK {
		t.Errorf("--fail-fast: %+v", sum.Tasks)
	}
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	if info.Sessions[0].Ran != 1 {
		t.Errorf("ran %d tasks, want 1", info.Sessions[0].Ran)
	}
}
