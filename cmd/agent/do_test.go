package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv/localenv"
)

// TestDoCopiesProducedFiles runs `agent do` with seed files: the steps stream to the terminal, the
// files the agent created or changed land in --out (the untouched seed does not), the record in
// --out/.agent, and the exit code says the agent completed.
func TestDoCopiesProducedFiles(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", APIKey: "k", Turns: []llmtest.Turn{
		{Content: "Reading the notes.", ToolCalls: []llmtest.ToolCall{{Name: "read_file", Args: map[string]any{"path": "notes.txt"}}}},
		{ToolCalls: []llmtest.ToolCall{
			{Name: "write_file", Args: map[string]any{"path": "src/answer.txt", "data": "42\n"}},
			{Name: "run_commands", Args: map[string]any{"command": "echo appended >> notes.txt && chmod +x src/answer.txt && cat notes.txt"}},
		}},
		{Content: "Wrote src/answer.txt."},
	}})
	files := t.TempDir()
	for name, data := range map[string]string{"notes.txt": "the answer is 42\n", "untouched.txt": "same\n"} {
		if err := os.WriteFile(filepath.Join(files, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	r := runAgent(t, []string{"TEST_LLM_KEY=k"}, "do", "--data-dir", dd, "--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY",
		"--model", "custom:m", "--files", files, "--out", out, "write the answer")
	if r.code != 0 {
		t.Fatalf("agent do: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, s := range []string{"── step 1 ──", "→ read_file", "the answer is 42", "→ write_file", "appended", "■ completed after 3 steps"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("streamed steps lack %q:\n%s", s, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "2 file(s) → "+out) {
		t.Errorf("agent do does not say where the files went:\n%s", r.stderr)
	}
	got, err := os.ReadFile(filepath.Join(out, "src", "answer.txt"))
	if err != nil || string(got) != "42\n" {
		t.Errorf("answer.txt = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(out, "src", "answer.txt")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("answer.txt should keep its executable bit: %v", fi)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "notes.txt")); string(got) != "the answer is 42\nappended\n" {
		t.Errorf("notes.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(out, "untouched.txt")); !os.IsNotExist(err) {
		t.Errorf("the untouched seed file was copied out: %v", err)
	}
	if _, err := transcript.Load(filepath.Join(out, ".agent", "tasks", "do", "transcript.json")); err != nil {
		t.Errorf("transcript: %v", err)
	}

	// A model that never stops ends in error: exit 1, and the reason is shown.
	srv.Add(&llmtest.Scenario{Name: "m", APIKey: "k", Loop: true, Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "true"}}}},
	}})
	r = runAgent(t, []string{"TEST_LLM_KEY=k"}, "do", "--data-dir", dd, "--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY",
		"--model", "custom:m", "--max-steps", "2", "-q", "--out", filepath.Join(t.TempDir(), "o2"), "loop")
	if r.code != 1 || !strings.Contains(r.stderr, "error: max_steps") {
		t.Errorf("looping agent do: exit %d\n%s", r.code, r.stderr)
	}
}

// TestChatCommandsAndTurns drives `agent chat` through its stdin: direct commands (empty, silent,
// with output, failing), /files, an agent turn that keeps the conversation, /model, /exit.
func TestChatCommandsAndTurns(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	srv := llmtest.Start(t,
		&llmtest.Scenario{Name: "first", Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "write_file", Args: map[string]any{"path": "hello.py", "data": "print('hi from chat')\n"}}}},
			{Content: "I wrote hello.py."},
			// The second request carries the first conversation: turn 2 answers it.
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "python3 hello.py"}}}},
			{Content: "It printed its greeting."},
		}},
		&llmtest.Scenario{Name: "second", Loop: true, Turns: []llmtest.Turn{{Content: "Hello from the second model."}}},
	)
	input := strings.Join([]string{
		"!",
		"!true",
		"!echo out; echo err >&2",
		"!exit 7",
		"write hello.py",
		"/files",
		"now run it",
		"/model custom:second",
		"who are you?",
		"/bogus",
		"/exit",
		"!echo never reached",
	}, "\n") + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBin, "chat", "--data-dir", dd, "--base-url", srv.URL(), "--model", "custom:first")
	cmd.Env = append(os.Environ(), "NOVITA_API_KEY=", "OPENAI_API_KEY=")
	cmd.Stdin = strings.NewReader(input)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("agent chat: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	o := stdout.String()
	for _, s := range []string{
		"Please enter a command.",
		"Command executed (no output).",
		"out\nerr\n",
		"[exit 7]",
		"→ write_file",
		"I wrote hello.py.",
		"hello.py",
		"hi from chat",
		"It printed its greeting.",
		"model: custom:second",
		"Hello from the second model.",
		"unknown command /bogus",
	} {
		if !strings.Contains(o, s) {
			t.Errorf("chat output lacks %q:\n%s", s, o)
		}
	}
	if strings.Contains(o, "never reached") {
		t.Errorf("chat went on after /exit")
	}
	if !strings.Contains(stderr.String(), "killed") {
		t.Errorf("chat does not report the sandbox killed:\n%s", stderr.String())
	}
	// The second turn carried the first one's conversation; the switched model got it too.
	var sawHistory, secondHistory bool
	for _, r := range srv.Requests() {
		for _, m := range r.Messages {
			if m.Role == "user" && strings.Contains(m.Text(), "write hello.py") {
				if r.Model == "first" && strings.Contains(r.Messages[len(r.Messages)-1].Text(), "now run it") {
					sawHistory = true
				}
				if r.Model == "second" {
					secondHistory = true
				}
			}
		}
	}
	if !sawHistory || !secondHistory {
		t.Errorf("the conversation did not carry over: first %v, second %v", sawHistory, secondHistory)
	}
}
