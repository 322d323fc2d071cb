// Package resultstest writes results directories in the layout the runner writes, for the tests
// of the readers and reports: a run with any models, tasks, epochs and outcomes, with transcripts
// that hold whatever text a test needs (hostile text included).
package resultstest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
)

// Cell describes one task × model × epoch to write.
type Cell struct {
	Task   string
	Model  string
	Epoch  int
	Status string // passed, failed, error
	Reason string
	Detail string
	// DurationMS, Steps, TokensIn, TokensOut, Cost fill result.json (Cost < 0: no price).
	DurationMS          int64
	TokensIn, TokensOut int64
	Cost                float64
	Checks              []map[string]any
	// Files are produced files (path → content), Seeds the seed files.
	Files map[string]string
	Seeds map[string]string
	// Messages are the transcript's messages; nil writes a short default conversation.
	Messages []transcript.Message
	// NoTranscript leaves transcript.json out.
	NoTranscript bool
	// SetupLog is written to setup.log when not empty.
	SetupLog string
}

// Run describes run.json.
type Run struct {
	Command string
	Models  []string
	Repeat  int
}

// Write writes a results directory into dir and returns dir.
func Write(t testing.TB, dir string, run Run, cells []Cell) string {
	t.Helper()
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	writeJSON(t, filepath.Join(dir, "run.json"), map[string]any{
		"id": "test-run", "command": run.Command, "models": run.Models, "repeat": run.Repeat,
		"started_at": start, "ended_at": start.Add(time.Minute),
		"versions": map[string]string{"agent": "test"},
	})
	var passed, failed, errored int
	for _, c := range cells {
		switch c.Status {
		case "passed":
			passed++
		case "failed":
			failed++
		default:
			errored++
		}
		epoch := c.Epoch
		if epoch == 0 {
			epoch = 1
		}
		cdir := filepath.Join(dir, "tasks", slug(c.Model), c.Task, fmt.Sprint(epoch))
		if err := os.MkdirAll(cdir, 0o755); err != nil {
			t.Fatal(err)
		}
		res := map[string]any{
			"task": c.Task, "model": c.Model, "epoch": epoch, "status": c.Status,
			"duration_ms": c.DurationMS, "spec_digest": "sha256:" + fmt.Sprintf("%064x", len(c.Task)),
			"usage": map[string]any{"prompt_tokens": c.TokensIn, "completion_tokens": c.TokensOut},
		}
		if c.Cost >= 0 {
			res["usage"].(map[string]any)["cost_usd"] = c.Cost
		}
		if c.Reason != "" {
			res["reason"] = c.Reason
		}
		if c.Detail != "" {
			res["detail"] = c.Detail
		}
		writeJSON(t, filepath.Join(cdir, "result.json"), res)
		checks := c.Checks
		if checks == nil {
			checks = []map[string]any{{"name": "tests pass", "kind": "run", "run": "make test", "passed": c.Status == "passed"}}
			if c.Status == "failed" {
				checks[0]["reason"] = "exit code 1, want 0"
			}
		}
		writeJSON(t, filepath.Join(cdir, "checks.json"), checks)
		for p, content := range c.Files {
			writeFile(t, filepath.Join(cdir, "files", filepath.FromSlash(p)), content)
		}
		for p, content := range c.Seeds {
			writeFile(t, filepath.Join(cdir, "seed", filepath.FromSlash(p)), content)
		}
		if c.SetupLog != "" {
			writeFile(t, filepath.Join(cdir, "setup.log"), c.SetupLog)
		}
		if !c.NoTranscript {
			tr := Transcript(c.Task, c.Model, c.Messages)
			tr.Usage = transcript.Usage{PromptTokens: c.TokensIn, CompletionTokens: c.TokensOut, TotalTokens: c.TokensIn + c.TokensOut}
			if c.Status == "error" {
				tr.End = transcript.End{Reason: transcript.Reason(c.Reason), Detail: c.Detail}
			}
			if err := tr.WriteFile(filepath.Join(cdir, "transcript.json")); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeJSON(t, filepath.Join(dir, "summary.json"), map[string]any{"passed": passed, "failed": failed, "errored": errored, "total": len(cells)})
	return dir
}

// Transcript returns a valid transcript with the given messages (or a short default exchange:
// a write_file call, its result, a final answer).
func Transcript(task, model string, msgs []transcript.Message) *transcript.Transcript {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	exit := 0
	if msgs == nil {
		msgs = []transcript.Message{
			{Role: "system", Content: "You are a coding agent."},
			{Role: "user", Content: "Do " + task},
			{Role: "assistant", Step: 1, ToolCalls: []transcript.ToolCall{{ID: "call_1", Name: "run_commands", Arguments: `{"command":"ls -la"}`}},
				Call: &transcript.ModelCall{StartedAt: start, DurationMS: 200, Attempts: 1, FinishReason: "tool_calls"}},
			{Role: "tool", ToolCallID: "call_1", Step: 1, Content: "total 0\n", Tool: &transcript.ToolExecution{Name: "run_commands", StartedAt: start, DurationMS: 5, ExitCode: &exit, OutputBytes: 8}},
			{Role: "assistant", Step: 2, Content: "Done.", Call: &transcript.ModelCall{StartedAt: start, DurationMS: 100, Attempts: 1, FinishReason: "stop"}},
		}
	}
	steps := 0
	for _, m := range msgs {
		if m.Role == "assistant" {
			steps++
		}
	}
	return &transcript.Transcript{
		Schema: transcript.Version, ID: "0123456789abcdef", Task: transcript.Task{Name: task, Prompt: "Do " + task},
		Model: model, Provider: transcript.Provider{Name: "test"}, Tools: []transcript.Tool{},
		StartedAt: start, EndedAt: start.Add(time.Second), DurationMS: 1000,
		End: transcript.End{Reason: transcript.ReasonCompleted}, Steps: steps, Messages: msgs,
	}
}

func slug(model string) string {
	out := []byte(model)
	for i, b := range out {
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_') {
			out[i] = '_'
		}
	}
	return string(out)
}

func writeJSON(t testing.TB, file string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, string(b))
}

func writeFile(t testing.TB, file, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
