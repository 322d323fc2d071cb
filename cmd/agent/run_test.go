package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
)

// These tests run the agent binary as a user would: real local sandboxes, the scripted model as
// the only stand-in, exit codes and signals from the outside.

var (
	agentBin   string
	repoRoot   string
	skipReason string
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	skipReason = testenv.SkipReason()
	return testenv.RunWithAgent(m, &agentBin)
}

func requireSandboxes(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// runAgent runs the binary in the repository's top directory and returns its exit code and output.
func runAgent(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(agentBin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	r := testenv.RunCmd(t, cmd, 10*time.Minute)
	return result{r.Code, r.Stdout, r.Stderr}
}

func TestRunUsageErrorsExit2(t *testing.T) {
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "bad.yaml"), []byte("prompt: hi\nchecks:\n  - run: true\n    stdout_contain: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "no task specs given"},
		{[]string{"run", "--no-such-flag", "tasks/examples"}, "unknown flag"},
		{[]string{"run", filepath.Join(bad, "bad.yaml")}, "bad.yaml:4:5: "},
		{[]string{"run", "does/not/exist.yaml"}, "does/not/exist.yaml"},
		{[]string{"run", "--json", "--events", "jsonl", "tasks/examples"}, "choose one"},
		{[]string{"run", "--filter", "no-such-task", "--replay", "testdata/transcripts", "tasks/examples"}, "no task selected"},
		{[]string{"run", "--replay", "testdata/transcripts", "--timeout", "-1s", "tasks/examples"}, "--timeout"},
		{[]string{"run", "--no-config", "tasks/examples/fizzbuzz/task.yaml"}, "no model"},
		{[]string{"run", "--resume", t.TempDir()}, "--resume"},
		{[]string{"run", "--model", "novita:qwen/qwen3-coder-30b-a3b-instruct", "tasks/examples"}, "NOVITA_API_KEY"},
		{[]string{"run", "--replay", "README.md", "tasks/examples"}, "replay"},
		{[]string{"run", "--replay", "testdata/transcripts", "--runtime", "kata", "tasks/examples"}, `--runtime: invalid runtime "kata": want runc, crun or runsc`},
		{[]string{"do"}, "accepts 1 arg"},
	} {
		r := runAgent(t, []string{"NOVITA_API_KEY=", "OPENAI_API_KEY="}, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("agent %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
}

// TestRunExitCodes: 0 when every task passed, 1 when one failed (0 with --exit-zero), 3 when the
// results cannot be written; --json prints the summary, --events jsonl streams events.
func TestRunExitCodes(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	out := filepath.Join(t.TempDir(), "pass")
	r := runAgent(t, nil, "run", "--data-dir", dd, "--replay", "testdata/transcripts", "--filter", "fizzbuzz,slugify", "--json", "-o", out, "tasks/examples")
	if r.code != 0 {
		t.Fatalf("passing run: exit %d\n%s", r.code, r.stderr)
	}
	var sum runner.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.Passed != 2 || !sum.OK {
		t.Fatalf("--json summary: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(r.stderr, "report:  "+filepath.Join(out, "report.md")) {
		t.Errorf("the run does not say where the report is:\n%s", r.stderr)
	}

	script, err := os.ReadFile(filepath.Join(repoRoot, "tasks", "examples", "slugify", "solution", "wrong.sh"))
	if err != nil {
		t.Fatal(err)
	}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "wrong", APIKey: "k-test", Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": string(script)}}}},
		{Content: "Done."},
	}})
	suite := t.TempDir()
	if err := runnertest.CopySuite(filepath.Join(repoRoot, "tasks", "examples"), suite, map[string]string{"slugify": "custom:wrong"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"TEST_LLM_KEY=k-test"}
	model := []string{"--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY"}
	r = runAgent(t, env, append([]string{"run", "--data-dir", dd, "-o", filepath.Join(t.TempDir(), "fail"), suite}, model...)...)
	if r.code != 1 || !strings.Contains(r.stdout, "1 failed") {
		t.Errorf("failing run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runAgent(t, env, append([]string{"run", "--data-dir", dd, "--exit-zero", "--events", "jsonl", "-o", filepath.Join(t.TempDir(), "ez"), suite}, model...)...)
	if r.code != 0 {
		t.Errorf("--exit-zero: exit %d\n%s", r.code, r.stderr)
	}
	types := map[runner.EventType]int{}
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e runner.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("--events line %q: %v", sc.Text(), err)
		}
		types[e.Type]++
		if e.Type == runner.EventTaskEnd && (e.Result == nil || e.Result.Status != runner.StatusFailed) {
			t.Errorf("task_end event: %+v", e.Result)
		}
	}
	if types[runner.EventRunStart] != 1 || types[runner.EventTaskStart] != 1 || types[runner.EventTaskEnd] != 1 || types[runner.EventRunEnd] != 1 || types[runner.EventAgent] < 4 {
		t.Errorf("event types: %v", types)
	}

	// The results directory cannot be created: an internal error, not a task failure.
	r = runAgent(t, nil, "run", "--data-dir", dd, "--replay", "testdata/transcripts", "--filter", "fizzbuzz", "-o", "/proc/agent-test/results", "tasks/examples")
	if r.code != 3 {
		t.Errorf("unwritable results: exit %d\n%s", r.code, r.stderr)
	}
}

// TestRunResumeAfterSIGINT interrupts `agent run` with SIGINT while tasks are running, then runs
// `agent run --resume DIR`: the tasks that finished are not run again, the others complete, and no
// sandbox is left behind.
func TestRunResumeAfterSIGINT(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	tasks := []string{"fix-median", "fizzbuzz", "log-errors", "sales-report", "slugify"}
	// The latency keeps tasks in flight long enough to interrupt.
	suite, srv := runnertest.ReplaySuite(t, repoRoot, tasks, 300*time.Millisecond)
	out := filepath.Join(t.TempDir(), "results")
	args := []string{"run", "--data-dir", dd, "-j", "2", "-o", out, "--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY", suite}
	env := append(os.Environ(), "TEST_LLM_KEY=k")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the first task has finished, while others run.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ents, _ := filepath.Glob(filepath.Join(out, "tasks", "*", "result.json"))
		if len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no task finished:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("interrupted run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("the run does not say it was interrupted:\n%s", stderr.String())
	}
	var sum runner.Summary
	readJSON(t, filepath.Join(out, "summary.json"), &sum)
	if !sum.Interrupted || sum.NotRun == 0 || sum.Passed == 0 {
		t.Fatalf("the interrupted run should have finished some tasks and not others: %+v", sum)
	}
	finished := map[string][]byte{}
	for _, task := range tasks {
		var res runner.TaskResult
		p := filepath.Join(out, "tasks", task, "result.json")
		if data, err := os.ReadFile(p); err == nil {
			if err := json.Unmarshal(data, &res); err != nil {
				t.Fatal(err)
			}
			if res.Finished() {
				finished[task] = data
			} else if res.Reason != runner.ReasonCanceled {
				t.Errorf("%s: unfinished result %+v", task, res)
			}
		}
	}
	if len(finished) == 0 || len(finished) == len(tasks) {
		t.Fatalf("finished after SIGINT: %d of %d", len(finished), len(tasks))
	}
	calls := func() map[string]int {
		n := map[string]int{}
		for _, r := range srv.Requests() {
			n[r.Model]++
		}
		return n
	}
	before := calls()

	// Resume: the original arguments and flags come from run.json.
	r := runAgent(t, []string{"TEST_LLM_KEY=k"}, "run", "--resume", out)
	if r.code != 0 {
		t.Fatalf("resumed run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	after := calls()
	for _, task := range tasks {
		_, done := finished[task]
		ran := after["m-"+task] > before["m-"+task]
		if done && ran {
			t.Errorf("%s finished before the interrupt but ran again", task)
		}
		if !done && !ran {
			t.Errorf("%s did not finish before the interrupt and did not run on resume", task)
		}
		data, err := os.ReadFile(filepath.Join(out, "tasks", task, "result.json"))
		if err != nil {
			t.Fatal(err)
		}
		if done && !bytes.Equal(data, finished[task]) {
			t.Errorf("%s: a finished task's result changed", task)
		}
		tr, err := os.ReadFile(filepath.Join(out, "tasks", task, "transcript.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := transcript.Validate(tr); err != nil {
			t.Errorf("%s: %v", task, err)
		}
	}
	readJSON(t, filepath.Join(out, "summary.json"), &sum)
	if !sum.OK || sum.Passed != len(tasks) || sum.Interrupted {
		t.Errorf("summary after resume: %+v", sum)
	}
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	if len(info.Sessions) != 2 || info.Sessions[1].Reused != len(finished) {
		t.Errorf("sessions: %+v", info.Sessions)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
