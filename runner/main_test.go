package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

// These tests run real local sandboxes (runc, overlay, cgroups, envd); the model is the scripted
// server of internal/llmtest, the one stand-in the project allows.

var (
	agentBin   string // the agent binary: every sandbox's init
	repoRoot   string
	skipReason string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return testenv.RunWithSandboxes(m, &agentBin, &skipReason)
}

func requireSandboxes(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// runSuite runs cfg on the backend b and returns the summary; the test fails if the run cannot
// start or ends in an error.
func runSuite(t testing.TB, ctx context.Context, b runner.Backend, cfg runner.Config) *runner.Summary {
	t.Helper()
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// scripted returns models served by the scripted server: each task's model id names its scenario.
func scripted(srv *llmtest.Server) *runner.Endpoints {
	return &runner.Endpoints{Config: provider.Config{
		BaseURL: srv.URL(), APIKey: "test-key", Getenv: func(string) string { return "" },
		Limiter: provider.NewLimiter(8),
		Retry:   provider.RetryPolicy{MaxAttempts: 4, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }},
	}}
}

// loadSuite loads the specs under dir.
func loadSuite(t testing.TB, dir string) []*spec.Spec {
	t.Helper()
	s, err := spec.Load(context.Background(), []string{dir}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Specs
}

// readJSON decodes a results file.
func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func taskResult(t testing.TB, out, task string) *runner.TaskResult {
	t.Helper()
	var r runner.TaskResult
	readJSON(t, filepath.Join(out, "tasks", task, "result.json"), &r)
	return &r
}

func summaryByName(sum *runner.Summary) map[string]runner.SummaryTask {
	m := map[string]runner.SummaryTask{}
	for _, t := range sum.Tasks {
		m[t.Name] = t
	}
	return m
}
