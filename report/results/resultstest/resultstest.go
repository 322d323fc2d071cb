// Package resultstest writes results directories in the layout the runner writes, for the tests
// of the readers and reports: a run with any models, tasks, epochs and outcomes, with transcripts
// that hold whatever text a test needs (hostile text included).
package resultstest

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
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
	// Files are produced files (path → content), Seeds the seed files (written into the spec
	// file when Run.SpecsDir is set; a produced file with a seed of its path is not new).
	Files map[string]string
	Seeds map[string]string
	// Messages are the transcript's messages; nil writes a short default conversation.
	Messages []transcript.Message
	// NoTranscript leaves transcript.json out.
	NoTranscript bool
	// SetupLog is written to setup.log when not empty.
	SetupLog string
}

// Run describes the run. With Command "eval" the directory is an eval's: eval.json at the top and
// one run's directory per model under models/.
type Run struct {
	Command string
	Models  []string
	Repeat  int
	// SpecsDir, when set, receives a spec file per task (with the cells' Seeds as inline seed
	// files); result.json names it as spec_file.
	SpecsDir string
}

// Write writes a results directory into dir and returns dir.
func Write(t testing.TB, dir string, run Run, cells []Cell) string {
	t.Helper()
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	end := start.Add(time.Minute)
	epochs := map[string]int{}
	for _, c := range cells {
		k := c.Model + "\x00" + c.Task
		epochs[k] = max(epochs[k], max(c.Epoch, 1))
	}
	runDirs := map[string]string{} // model → run directory, relative to dir
	if run.Command == "eval" {
		var models []map[string]any
		for _, m := range run.Models {
			runDirs[m] = "models/" + Slug(m)
			models = append(models, map[string]any{"model": m, "dir": runDirs[m]})
		}
		writeJSON(t, filepath.Join(dir, "eval.json"), map[string]any{
			"schema_version": "agent.eval/v1", "id": "test-eval", "started_at": start, "ended_at": end,
			"models": models, "repeat": run.Repeat, "versions": map[string]string{"agent": "test"},
		})
	}
	for _, c := range cells {
		if _, ok := runDirs[c.Model]; !ok {
			runDirs[c.Model] = "."
			if run.Command == "eval" {
				t.Fatalf("cell model %s is not among the eval's models", c.Model)
			}
		}
	}
	for model, rd := range runDirs {
		writeJSON(t, filepath.Join(dir, rd, "run.json"), map[string]any{
			"schema_version": "agent.run/v1", "id": "test-run", "started_at": start, "ended_at": end,
			"versions": map[string]string{"agent": "test", "go": "go1.26"}, "command": []string{"agent", "run"},
			"backend": "local", "runtime": "runc", "model": model, "concurrency": 2,
			"templates": map[string]string{"host": "sha256:0123"},
		})
	}
	specFiles := map[string]string{}
	for _, c := range cells {
		if run.SpecsDir == "" || specFiles[c.Task] != "" {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "name: %s\nprompt: Do %s\n", c.Task, c.Task)
		if len(c.Seeds) > 0 {
			b.WriteString("files:\n")
			for p, content := range c.Seeds {
				fmt.Fprintf(&b, "  - path: %s\n    content: %s\n", p, strconv.Quote(content))
			}
		}
		f := filepath.Join(run.SpecsDir, c.Task+".yaml")
		writeFile(t, f, b.String())
		specFiles[c.Task] = f
	}
	for _, c := range cells {
		epoch := max(c.Epoch, 1)
		n := epochs[c.Model+"\x00"+c.Task]
		rel := path.Join(runDirs[c.Model], "tasks", c.Task)
		if n > 1 {
			rel = path.Join(rel, fmt.Sprint(epoch))
		}
		cdir := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(cdir, 0o755); err != nil {
			t.Fatal(err)
		}
		steps, toolCalls := 0, 0
		tr := Transcript(c.Task, c.Model, c.Messages)
		for _, m := range tr.Messages {
			toolCalls += len(m.ToolCalls)
		}
		steps = tr.Steps
		usage := map[string]any{"prompt_tokens": c.TokensIn, "completion_tokens": c.TokensOut, "total_tokens": c.TokensIn + c.TokensOut}
		if c.Cost >= 0 {
			usage["cost_usd"] = c.Cost
		}
		endReason := "completed"
		if c.Status == "error" {
			endReason = c.Reason
		}
		var files []map[string]any
		for p := range c.Files {
			_, seeded := c.Seeds[p]
			files = append(files, map[string]any{"path": p, "size": len(c.Files[p]), "new": !seeded})
		}
		res := map[string]any{
			"schema_version": "agent.result/v1", "task": c.Task, "epoch": epoch, "epochs": n, "status": c.Status,
			"spec_file": specFiles[c.Task], "spec_digest": fmt.Sprintf("sha256:%064x", len(c.Task)), "model": c.Model,
			"provider": "test", "sandbox": map[string]any{"id": "sb", "template": "host", "template_digest": "sha256:0123"},
			"started_at": start, "ended_at": start.Add(time.Duration(c.DurationMS) * time.Millisecond), "duration_ms": c.DurationMS,
			"agent":     map[string]any{"end": map[string]any{"reason": endReason}, "steps": steps, "usage": usage, "tool_calls": toolCalls},
			"artifacts": map[string]any{"mode": "changed", "files": files},
			"dir":       rel,
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
		writeJSON(t, filepath.Join(cdir, "checks.json"), map[string]any{"schema_version": "agent.checks/v1", "task": c.Task, "epoch": epoch, "checks": checks})
		for p, content := range c.Files {
			writeFile(t, filepath.Join(cdir, "files", filepath.FromSlash(p)), content)
		}
		if c.SetupLog != "" {
			writeFile(t, filepath.Join(cdir, "setup.log"), c.SetupLog)
		}
		if !c.NoTranscript {
			tr.Usage = transcript.Usage{PromptTokens: c.TokensIn, CompletionTokens: c.TokensOut, TotalTokens: c.TokensIn + c.TokensOut}
			if c.Status == "error" {
				tr.End = transcript.End{Reason: transcript.Reason(c.Reason), Detail: c.Detail}
			}
			if err := tr.WriteFile(filepath.Join(cdir, "transcript.json")); err != nil {
				t.Fatal(err)
			}
		}
	}
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

// Slug is a model id as a directory name.
func Slug(model string) string {
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
