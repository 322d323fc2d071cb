package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox/local"
)

// TestRunKeepFailedShell is issue 8's "--keep failed, then agent sandbox shell sees the failed
// state", as a user does it: a failing `agent run --keep failed`, the kept sandbox's id from
// result.json and report.md, an interactive shell on a terminal that finds what the agent left
// (and the sandbox paused again afterwards), then gc: --older-than 0s keeps it (0 means "never"),
// a positive age reclaims it, and nothing of it remains on the host.
func TestRunKeepFailedShell(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	script, err := os.ReadFile(filepath.Join(repoRoot, "tasks", "examples", "slugify", "solution", "wrong.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// The agent writes the wrong solution, a note, and leaves a process behind.
	cmd := string(script) + "\necho left-by-the-agent > notes.txt\n(sleep 3600 >/dev/null 2>&1 &)\n"
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "wrong", Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": cmd}}}},
		{Content: "Done."},
	}})
	suite := t.TempDir()
	if err := runnertest.CopySuite(filepath.Join(repoRoot, "tasks", "examples"), suite, map[string]string{"slugify": "custom:wrong"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	r := runAgent(t, []string{"TEST_LLM_KEY=k"}, "run", "--data-dir", dd, "--keep", "failed", "--filter", "slugify", "-o", out,
		"--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY", suite)
	if r.code != 1 {
		t.Fatalf("failing run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Kill whatever is left at cleanup, before the leak check (cleanups run last-in first-out).
	t.Cleanup(func() { runAgent(t, nil, "sandbox", "--data-dir", dd, "kill", "--all") })

	var res runner.TaskResult
	readJSON(t, filepath.Join(out, "tasks", "slugify", runner.ResultFile), &res)
	if res.Status != runner.StatusFailed || res.Kept == nil || !local.ValidID(res.Kept.ID) {
		t.Fatalf("result.json: status %q, kept %+v", res.Status, res.Kept)
	}
	id := res.Kept.ID
	if want := "agent sandbox --data-dir " + dd + " shell " + id; res.Kept.Command != want {
		t.Errorf("kept command %q, want %q", res.Kept.Command, want)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), "### Kept sandboxes") || !strings.Contains(string(report), res.Kept.Command) {
		t.Errorf("report.md does not name the kept sandbox:\n%s", report)
	}

	lookup := func() *local.Info {
		t.Helper()
		r := runAgent(t, nil, "sandbox", "--data-dir", dd, "ls", "--json")
		var infos []local.Info
		if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil || r.code != 0 {
			t.Fatalf("ls --json: exit %d, %v\n%s", r.code, err, r.stdout)
		}
		for i := range infos {
			if infos[i].ID == id {
				return &infos[i]
			}
		}
		return nil
	}
	if in := lookup(); in == nil || in.Phase != local.PhasePaused || !in.Kept {
		t.Fatalf("the kept sandbox is not listed as paused and kept: %+v", in)
	}

	s := startPTY(t, 24, 80, "sandbox", "--data-dir", dd, "shell", id)
	s.waitFor(regexp.MustCompile(`sandbox ` + id + ` is paused: thawed for this session`))
	s.ready()
	s.send(`echo "N=$(cat notes.txt) J=$(grep -c toLowerCase slugify.js) P=$(pgrep -c -x sleep)"; exit` + "\r")
	m := s.waitFor(regexp.MustCompile(`N=(\S*) J=(\d+) P=(\d+)`))
	if m[1] != "left-by-the-agent" || m[2] != "1" || m[3] != "1" {
		t.Errorf("in the kept sandbox: notes.txt %q, slugify.js matches %s, sleep processes %s", m[1], m[2], m[3])
	}
	if code := s.exitCode(); code != 0 {
		t.Errorf("shell exit code %d; the terminal showed:\n%s", code, s.output())
	}
	if in := lookup(); in == nil || in.Phase != local.PhasePaused || !in.Kept {
		t.Errorf("after the shell the sandbox is not paused and kept again: %+v", in)
	}

	// --older-than 0s is the default: kept sandboxes stay.
	if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "gc", "--older-than", "0s"); r.code != 0 || strings.Contains(r.stdout, id) {
		t.Errorf("gc --older-than 0s: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if lookup() == nil {
		t.Fatal("gc --older-than 0s reclaimed the kept sandbox")
	}
	if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "gc", "--older-than", "1ns"); r.code != 0 || !strings.Contains(r.stdout, "reclaimed 1 sandbox(es) ["+id+"]") {
		t.Errorf("gc --older-than 1ns: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if in := lookup(); in != nil {
		t.Errorf("still listed after gc: %+v", in)
	}
}
