package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
)

// TestRunKeepFailed: `agent run --keep failed` keeps the failing task's sandbox and prints the
// command to enter it; the sandbox holds what the agent left; gc --older-than reclaims it.
func TestRunKeepFailed(t *testing.T) {
	if r := runAgent(t, nil, "run", "--keep", "sometimes", "--replay", "testdata/transcripts", "tasks/examples"); r.code != 2 || !strings.Contains(r.stderr, "--keep") {
		t.Errorf("--keep sometimes: exit %d, stderr %q", r.code, r.stderr)
	}
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	script, err := os.ReadFile(filepath.Join(repoRoot, "tasks", "examples", "slugify", "solution", "wrong.sh"))
	if err != nil {
		t.Fatal(err)
	}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "wrong", Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": string(script)}}}},
		{Content: "Done."},
	}})
	suite := t.TempDir()
	if err := runnertest.CopySuite(filepath.Join(repoRoot, "tasks", "examples"), suite, map[string]string{"slugify": "custom:wrong"}); err != nil {
		t.Fatal(err)
	}
	r := runAgent(t, []string{"TEST_LLM_KEY=k"}, "run", "--data-dir", dd, "--keep", "failed", "-o", filepath.Join(t.TempDir(), "out"),
		"--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY", suite)
	if r.code != 1 {
		t.Fatalf("failing run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`kept: +slugify #1 \(failed\): agent sandbox --data-dir (\S+) shell ([a-z0-9]+)`).FindStringSubmatch(r.stdout + r.stderr)
	if m == nil || m[1] != dd {
		t.Fatalf("the run does not print the kept sandbox:\n%s\n%s", r.stdout, r.stderr)
	}
	id := m[2]
	if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "exec", id, "--", "sh", "-c", "ls /home/user"); r.code != 0 || !strings.Contains(r.stdout, "slugify.js") {
		t.Errorf("exec in the kept sandbox: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "gc", "--older-than", "1ms"); r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Errorf("gc --older-than: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
