package runner_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
)

// bgCall starts a command in the background through the agent's tool.
func bgCall(command string) llmtest.Turn {
	return llmtest.Turn{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": command, "background": true}}}}
}

// TestKeepFailedThenEnterAndGC: with keep failed, a failing task's sandbox is kept, paused, with
// the agent's background command; the report names the command to enter it; a session in it sees
// the state the task failed in; gc --older-than reclaims it. A passing task's sandbox is not kept.
func TestKeepFailedThenEnterAndGC(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	srv := llmtest.Start(t,
		&llmtest.Scenario{Name: "wrong", Turns: []llmtest.Turn{
			call("echo wrong > answer.txt"),
			bgCall("sleep 1000"),
			{Content: "done"},
		}},
		&llmtest.Scenario{Name: "right", Turns: []llmtest.Turn{call("echo right > answer.txt"), {Content: "done"}}},
	)
	dir := t.TempDir()
	for name, model := range map[string]string{"failing": "custom:wrong", "passing": "custom:right"} {
		runnertest.WriteSpec(t, dir, name, `
prompt: write answer.txt
model: `+model+`
keep: failed
checks: [{file: answer.txt, equals: "right\n"}]
`)
	}
	out := filepath.Join(t.TempDir(), "results")
	sum := runSuite(t, ctx, b, runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Concurrency: 2})
	got := summaryByName(sum)
	if got["failing"].Status != runner.StatusFailed || got["passing"].Status != runner.StatusPassed {
		t.Fatalf("statuses: %+v", sum.Tasks)
	}
	if got["passing"].Kept != nil || taskResult(t, out, "passing").Kept != nil {
		t.Errorf("the passing task's sandbox was kept")
	}
	kept := taskResult(t, out, "failing").Kept
	if kept == nil || kept.Backend != "local" || kept.Command != "agent sandbox --data-dir "+dd+" shell "+kept.ID {
		t.Fatalf("kept: %+v", kept)
	}
	// The transcript lists the background command the agent left running.
	tr, err := transcript.Load(filepath.Join(out, "tasks", "failing", "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Background) != 1 || tr.Background[0].Command != "sleep 1000" || tr.Background[0].State != "running" || tr.Background[0].PID == 0 {
		t.Errorf("transcript background: %+v", tr.Background)
	}
	report, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(report), "Kept sandboxes") || !strings.Contains(string(report), kept.Command) {
		t.Errorf("report.md does not list the kept sandbox:\n%s", report)
	}

	// The run is over and its backend closed: the kept sandbox lives on, paused.
	lb := b.Local()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	infos, err := lb.List(ctx)
	if err != nil || len(infos) != 1 || infos[0].ID != kept.ID || infos[0].Status != "paused" || !infos[0].Kept ||
		!strings.Contains(infos[0].Note, "task failing epoch 1 failed") {
		t.Fatalf("after the run: %+v %v", infos, err)
	}
	// Entering it (the CLI's exec, as the report's shell would): the failed state, the agent's
	// background command still there.
	agentCmd := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, agentBin, append([]string{"sandbox", "--data-dir", dd}, args...)...)
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	if o, err := agentCmd("exec", kept.ID, "--", "sh", "-c", "cat answer.txt; pgrep -x sleep >/dev/null && echo background-alive"); err != nil ||
		o != "wrong\nbackground-alive\n" {
		t.Fatalf("in the kept sandbox: %v %q", err, o)
	}
	if infos, _ := lb.List(ctx); len(infos) != 1 || infos[0].Status != "paused" {
		t.Fatalf("after the session: %+v", infos)
	}
	if o, err := agentCmd("gc"); err != nil || strings.Contains(o, kept.ID) {
		t.Fatalf("gc reclaimed the kept sandbox: %v %s", err, o)
	}
	if o, err := agentCmd("gc", "--older-than", "1ms"); err != nil || !strings.Contains(o, kept.ID) {
		t.Fatalf("gc --older-than 1ms: %v %s", err, o)
	}
	if infos, _ := lb.List(ctx); len(infos) != 0 {
		t.Fatalf("after gc: %+v", infos)
	}
}

// TestResumeContinuesInKeptSandbox: a run interrupted while the model is thinking keeps the task's
// sandbox (keep failed counts interrupted tasks); --resume continues the task in that sandbox from
// its last completed step — the completed steps are replayed into the conversation, the model is
// not asked for them again, the files and the agent's background command are as they were.
func TestResumeContinuesInKeptSandbox(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	hang := call("cat note.txt; test -s /tmp/bg && echo background-ran")
	// The first attempt at step 2 hangs (the model is "thinking" when the run is interrupted); a
	// later conversation with the same opening gets the turn.
	hang.Failures = []llmtest.Failure{{Hang: "headers"}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "long", Turns: []llmtest.Turn{
		bgCall("while :; do date +%s%N >> /tmp/bg; sleep 0.2; done"),
		{ToolCalls: []llmtest.ToolCall{{Name: "write_file", Args: map[string]any{"path": "note.txt", "data": "step two\n"}}}},
		hang,
		{Content: "done"},
	}})
	dir := t.TempDir()
	runnertest.WriteSpec(t, dir, "long", `
prompt: a long task
model: custom:long
keep: failed
checks:
  - {file: note.txt, equals: "step two\n"}
  - {run: 'a=$(wc -l < /tmp/bg); sleep 1; test $(wc -l < /tmp/bg) -gt $a'}
`)
	out := filepath.Join(t.TempDir(), "results")
	// The background command writes a few lines before the interruption.
	first := runInterruptedAtStep2(ctx, t, b, srv, dir, out, 300*time.Millisecond)
	report, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(report), first.Kept.Command) {
		t.Errorf("report.md does not list the kept sandbox:\n%s", report)
	}
	requestsBefore := len(srv.Requests())

	r, err := runner.New(runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Resume: true, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	res := taskResult(t, out, "long")
	if !sum.OK || res.Status != runner.StatusPassed {
		t.Fatalf("resumed run: %+v; result %+v", sum, res)
	}
	if res.Resumed == nil || res.Resumed.Sandbox != first.Kept.ID || res.Resumed.Steps != 2 || res.Resumed.FilesOnly ||
		res.Sandbox == nil || res.Sandbox.ID != first.Kept.ID || res.Kept != nil {
		t.Fatalf("resumed result: %+v (sandbox %+v)", res.Resumed, res.Sandbox)
	}
	// The model was asked only from step 2 on, with the two completed steps as history.
	later := srv.Requests()[requestsBefore:]
	if len(later) == 0 || later[0].Step != 2 {
		t.Fatalf("requests of the resumed session: %+v", later)
	}
	last := later[0].Messages[len(later[0].Messages)-1]
	if last.Role != "user" || !strings.Contains(last.Text(), "resumed in the same sandbox") || !strings.Contains(last.Text(), "running processes are as they were") {
		t.Errorf("the resumed conversation ends with %s %q", last.Role, last.Text())
	}
	tr, err := transcript.Load(filepath.Join(out, "tasks", "long", "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	var toolOut []string
	for _, m := range tr.Messages {
		if m.Role == "tool" {
			toolOut = append(toolOut, m.Content)
		}
	}
	if len(toolOut) != 3 || !strings.Contains(toolOut[2], "step two") || !strings.Contains(toolOut[2], "background-ran") {
		t.Errorf("tool results of the continued transcript: %q", toolOut)
	}
	if _, err := os.Stat(filepath.Join(out, "tasks", "long", runner.InterruptedTranscriptFile)); err != nil {
		t.Errorf("the interrupted transcript was not kept: %v", err)
	}
	if infos, _ := b.Local().List(ctx); len(infos) != 0 {
		t.Errorf("sandboxes left after the resumed run: %+v", infos)
	}
}

// TestForkSetupRunsSetupOnce: with repeat 3 and fork_setup, setup runs in one epoch's sandbox and
// the others start from its snapshot (the same random setup output in all three); without
// fork_setup each epoch runs its own. No snapshot is left afterwards.
func TestForkSetupRunsSetupOnce(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "reader", Turns: []llmtest.Turn{call("cat setup.txt seed.txt"), {Content: "done"}}})
	dir := t.TempDir()
	for name, fork := range map[string]string{"forked": "true", "separate": "false"} {
		runnertest.WriteSpec(t, dir, name, `
prompt: read setup.txt
model: custom:reader
repeat: 3
fork_setup: `+fork+`
files: [{path: seed.txt, content: "seeded\n"}]
setup: ["head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > setup.txt"]
checks: [{file: setup.txt, contains: ""}]
`)
	}
	out := filepath.Join(t.TempDir(), "results")
	sum := runSuite(t, ctx, b, runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Concurrency: 3})
	if !sum.OK {
		t.Fatalf("run: %+v", sum)
	}
	outputs := func(task string) (seen []string, forked int) {
		for e := 1; e <= 3; e++ {
			d := filepath.Join(out, "tasks", task, string(rune('0'+e)))
			tr, err := transcript.Load(filepath.Join(d, "transcript.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tr.Messages {
				if m.Role == "tool" {
					seen = append(seen, m.Content)
				}
			}
			var res runner.TaskResult
			readJSON(t, filepath.Join(d, "result.json"), &res)
			if res.ForkedFrom != "" {
				forked++
				log, _ := os.ReadFile(filepath.Join(d, "setup.log"))
				if !strings.Contains(string(log), "fork_setup: setup ran once") || !strings.Contains(string(log), "$ head -c 16") {
					t.Errorf("%s epoch %d setup.log:\n%s", task, e, log)
				}
			}
		}
		return seen, forked
	}
	seen, forked := outputs("forked")
	if forked != 2 || len(seen) != 3 || seen[0] != seen[1] || seen[1] != seen[2] || !strings.Contains(seen[0], "seeded") {
		t.Errorf("fork_setup: %d epochs forked, outputs %q; want 2 forked and one output", forked, seen)
	}
	seen, forked = outputs("separate")
	if forked != 0 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 3 {
		t.Errorf("without fork_setup: %d forked, outputs %q; want three different outputs", forked, seen)
	}
	snaps, err := b.Local().Snapshots(ctx)
	if err != nil || len(snaps) != 0 {
		t.Errorf("snapshots left: %+v %v", snaps, err)
	}
}

// runInterruptedAtStep2 runs the suite in dir with keep: failed and cancels it once the model was
// asked for step 2 (and settle has passed); it returns the interrupted task "long"'s result, which
// must have its sandbox kept.
func runInterruptedAtStep2(ctx context.Context, t *testing.T, b runner.Backend, srv *llmtest.Server, dir, out string, settle time.Duration) *runner.TaskResult {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for rctx.Err() == nil {
			for _, req := range srv.Requests() {
				if req.Step == 2 {
					time.Sleep(settle)
					cancel()
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	r, err := runner.New(runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(rctx, b)
	if err != nil {
		t.Fatal(err)
	}
	first := taskResult(t, out, "long")
	if !sum.Interrupted || first.Reason != runner.ReasonCanceled || first.Kept == nil {
		t.Fatalf("interrupted run: %+v; result %+v", sum, first)
	}
	return first
}

// TestResumeAfterRebootContinuesFromFiles: a run interrupted while the model is thinking keeps the
// task's sandbox; then its processes die the way a reboot kills them (the runtime's container
// deleted, the sandbox's mounts gone; as TestKeptSandboxAfterReboot in sandbox/local). --resume
// cannot resume it, so it snapshots its files and continues the task from its last completed step
// in a new sandbox made from them: the files written before the interruption are there, the
// agent's background command is not, the model is told so, the task passes and nothing is left.
func TestResumeAfterRebootContinuesFromFiles(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	hang := call("cat note.txt; pgrep -x sleep >/dev/null && echo background-alive || echo background-gone")
	hang.Failures = []llmtest.Failure{{Hang: "headers"}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "long", Turns: []llmtest.Turn{
		bgCall("sleep 1000"),
		{ToolCalls: []llmtest.ToolCall{{Name: "write_file", Args: map[string]any{"path": "note.txt", "data": "before the reboot\n"}}}},
		hang,
		{Content: "done"},
	}})
	dir := t.TempDir()
	runnertest.WriteSpec(t, dir, "long", `
prompt: a long task
model: custom:long
keep: failed
checks:
  - {file: note.txt, equals: "before the reboot\n"}
  - {run: '! pgrep -x sleep'}
`)
	out := filepath.Join(t.TempDir(), "results")
	first := runInterruptedAtStep2(ctx, t, b, srv, dir, out, 0)
	kept := first.Kept.ID
	simulateReboot(ctx, t, dd, kept)
	requestsBefore := len(srv.Requests())

	r, err := runner.New(runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Resume: true, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	res := taskResult(t, out, "long")
	if !sum.OK || res.Status != runner.StatusPassed {
		t.Fatalf("resumed run: %+v; result %+v", sum, res)
	}
	if res.Resumed == nil || res.Resumed.Sandbox != kept || res.Resumed.Steps != 2 || !res.Resumed.FilesOnly ||
		res.Sandbox == nil || res.Sandbox.ID == kept || res.Kept != nil {
		t.Fatalf("resumed result: %+v (sandbox %+v)", res.Resumed, res.Sandbox)
	}
	// The model was asked only from step 2 on, told that the processes were stopped.
	later := srv.Requests()[requestsBefore:]
	if len(later) == 0 || later[0].Step != 2 {
		t.Fatalf("requests of the resumed session: %+v", later)
	}
	last := later[0].Messages[len(later[0].Messages)-1]
	if last.Role != "user" || !strings.Contains(last.Text(), "its files are as they were, but its processes") {
		t.Errorf("the resumed conversation ends with %s %q", last.Role, last.Text())
	}
	tr, err := transcript.Load(filepath.Join(out, "tasks", "long", "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	var toolOut []string
	for _, m := range tr.Messages {
		if m.Role == "tool" {
			toolOut = append(toolOut, m.Content)
		}
	}
	if len(toolOut) != 3 || !strings.Contains(toolOut[2], "before the reboot") || !strings.Contains(toolOut[2], "background-gone") {
		t.Errorf("tool results of the continued transcript: %q", toolOut)
	}
	if infos, _ := b.Local().List(ctx); len(infos) != 0 {
		t.Errorf("sandboxes left after the resumed run: %+v", infos)
	}
	if snaps, err := b.Local().Snapshots(ctx); err != nil || len(snaps) != 0 {
		t.Errorf("snapshots left after the resumed run: %+v %v", snaps, err)
	}
}

// simulateReboot ends a kept local sandbox's processes and mounts as a reboot does, leaving its
// files and state on disk: the runtime's container is deleted (its processes killed, its cgroup
// removed) and every mount under the sandbox's directory is detached.
func simulateReboot(ctx context.Context, t *testing.T, dd, id string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "runc", "--root", filepath.Join(dd, "runtime", "runc"), "delete", "--force", id).CombinedOutput(); err != nil {
		t.Fatalf("runc delete: %v %s", err, out)
	}
	sbdir := filepath.Join(dd, "sandboxes", id)
	for range 8 {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		var points []string
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], sbdir+"/") {
				points = append(points, f[4])
			}
		}
		if len(points) == 0 {
			return
		}
		slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	t.Fatalf("mounts of sandbox %s remain after a simulated reboot", id)
}
