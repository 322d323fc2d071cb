package runner_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
)

func call(command string) llmtest.Turn {
	return llmtest.Turn{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": command}}}}
}

// TestTasksEndInErrorWithTheReason runs tasks that hit each limit — the task's time limit, the
// sandbox's memory limit, the step limit — and a failing setup command; each ends as error with
// its reason, while passing tasks in the same run are unaffected (one of them has its background
// command stopped before the checks, as stop_background asks).
func TestTasksEndInErrorWithTheReason(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	srv := llmtest.Start(t,
		&llmtest.Scenario{Name: "sleeper", Turns: []llmtest.Turn{call("sleep 300"), {Content: "done"}}},
		&llmtest.Scenario{Name: "hog", Turns: []llmtest.Turn{
			call(`python3 -c "s = 'x' * (400 * 1024 * 1024); print(len(s))"`),
			{Content: "It printed the length."},
		}},
		&llmtest.Scenario{Name: "looper", Loop: true, Turns: []llmtest.Turn{call("date")}},
		&llmtest.Scenario{Name: "fine", Turns: []llmtest.Turn{call("echo ok > ok.txt"), {Content: "done"}}},
		&llmtest.Scenario{Name: "background", Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "sleep 1000", "background": true}}}},
			{Content: "left it running"},
		}},
	)
	dir := t.TempDir()
	runnertest.WriteSpec(t, dir, "timeout", `
prompt: sleep
model: custom:sleeper
limits: {timeout: 8s, command_timeout: 5m}
checks: [{file: never.txt}]
`)
	runnertest.WriteSpec(t, dir, "oom", `
prompt: use memory
model: custom:hog
limits: {memory: 64MiB}
`)
	runnertest.WriteSpec(t, dir, "steps", `
prompt: loop
model: custom:looper
limits: {max_steps: 3}
`)
	runnertest.WriteSpec(t, dir, "setup", `
prompt: never asked
model: custom:fine
setup:
  - echo preparing
  - echo broken >&2; exit 3
  - echo never reached
`)
	runnertest.WriteSpec(t, dir, "fine", `
prompt: write ok.txt
model: custom:fine
checks: [{file: ok.txt, equals: "ok\n"}]
`)
	// stop_background: the command the agent left running is gone before the checks.
	runnertest.WriteSpec(t, dir, "background", `
prompt: leave a command running
model: custom:background
stop_background: true
checks: [{run: "! pgrep -x sleep"}]
`)
	out := filepath.Join(t.TempDir(), "results")
	sum := runSuite(t, ctx, b, runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Concurrency: 3})
	got := summaryByName(sum)
	for name, want := range map[string]runner.Reason{
		"timeout": runner.ReasonTimeout, "oom": runner.ReasonOOM, "steps": runner.ReasonMaxSteps, "setup": runner.ReasonSetupFailed,
	} {
		g := got[name]
		if g.Status != runner.StatusError || g.Reason != want {
			t.Errorf("%s: %s/%s (%s), want error/%s", name, g.Status, g.Reason, g.Detail, want)
		}
	}
	for _, name := range []string{"fine", "background"} {
		if got[name].Status != runner.StatusPassed {
			t.Errorf("%s: %+v", name, got[name])
		}
	}
	if d := got["timeout"].Detail; !strings.Contains(d, "limit of 8s") {
		t.Errorf("timeout detail = %q", d)
	}
	if d := got["oom"].Detail; !strings.Contains(strings.ToLower(d), "memory") {
		t.Errorf("oom detail = %q", d)
	}
	if d := got["setup"].Detail; !strings.Contains(d, "setup command 2") || !strings.Contains(d, "exited with code 3") || !strings.Contains(d, "broken") {
		t.Errorf("setup detail = %q", d)
	}
	log, err := os.ReadFile(filepath.Join(out, "tasks", "setup", "setup.log"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(log); !strings.Contains(s, "$ echo preparing\npreparing\n[exit 0") || !strings.Contains(s, "broken") || strings.Contains(s, "never reached") {
		t.Errorf("setup.log:\n%s", log)
	}
	// The timed-out task's checks were still graded, for the diagnosis.
	var checks runner.ChecksDoc
	readJSON(t, filepath.Join(out, "tasks", "timeout", "checks.json"), &checks)
	if len(checks.Checks) != 1 || checks.Checks[0].Passed || !strings.Contains(checks.Checks[0].Reason, "does not exist") {
		t.Errorf("timeout checks = %+v", checks.Checks)
	}
	steps := taskResult(t, out, "steps")
	if steps.Agent == nil || steps.Agent.Steps != 3 || steps.Agent.End.Reason != "max_steps" {
		t.Errorf("steps agent = %+v", steps.Agent)
	}
	// The setup failure never reached the model.
	for _, req := range srv.Requests() {
		for _, m := range req.Messages {
			if m.Role == "user" && strings.Contains(m.Text(), "never asked") {
				t.Errorf("the model was called for a task whose setup failed")
			}
		}
	}
	if st := taskResult(t, out, "setup"); st.Agent != nil || slices.Contains([]int64{st.Phases.SetupMS}, 0) {
		t.Errorf("setup result = %+v", st)
	}
}
