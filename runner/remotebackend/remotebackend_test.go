package remotebackend_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/remotebackend"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/e2b"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

var env servetest.Env

func TestMain(m *testing.M) { os.Exit(servetest.Main(m, &env)) }

// TestExampleSuiteSameOnEveryBackend runs the example suite with the scripted model (each task's
// recorded transcript as its scenario; fizzbuzz with its plausible wrong solution) on the local
// backend, and on the e2b and novita backends against agent serve, and checks every task ends the
// same way everywhere: statuses, reasons, steps and the checks that pass and fail.
func TestExampleSuiteSameOnEveryBackend(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	root, err := runnertest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	examples := filepath.Join(root, "tasks", "examples")
	all, err := spec.Load(context.Background(), []string{examples}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]string{}
	var scenarios []*llmtest.Scenario
	for _, s := range all.Specs {
		name := "m-" + s.Name
		models[s.Name] = "custom:" + name
		if s.Name == "fizzbuzz" {
			scenarios = append(scenarios, wrongSolution(t, root, name, s.Name))
			continue
		}
		sc, err := runnertest.LoadScenario(root, s.Name, name, llmtest.ShapeFragments)
		if err != nil {
			t.Fatal(err)
		}
		scenarios = append(scenarios, sc)
	}
	llm := llmtest.Start(t, scenarios...)
	suite := t.TempDir()
	if err := runnertest.CopySuite(examples, suite, models); err != nil {
		t.Fatal(err)
	}
	loaded, err := spec.Load(context.Background(), []string{suite}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}

	dd := runnertest.DataDir(t)
	runnertest.CheckLeaks(t, dd)
	backends := []runner.Backend{runnertest.Backend(t, dd, env.Binary, env.TemplateDir)}
	for _, flavor := range []e2b.Flavor{e2b.FlavorE2B, e2b.FlavorNovita} {
		p := strings.ToUpper(string(flavor))
		vars := map[string]string{p + "_API_KEY": srv.APIKey, p + "_API_URL": srv.URL, p + "_SANDBOX_URL": srv.URL}
		b, err := remotebackend.FromEnv(flavor, func(k string) string { return vars[k] }, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		backends = append(backends, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var first map[string]string
	for i, b := range backends {
		out := filepath.Join(t.TempDir(), "results")
		r, err := runner.New(runner.Config{Specs: loaded.Specs, Models: scripted(llm), Out: out, Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := r.Run(ctx, b)
		if err != nil {
			t.Fatalf("%s: %v", b.Name(), err)
		}
		got := outcomes(sum)
		for name, o := range got {
			want := "passed"
			if name == "fizzbuzz" {
				want = "failed"
			}
			if !strings.HasPrefix(o, want) {
				t.Errorf("%s: %s: %s", b.Name(), name, o)
			}
		}
		if len(got) != len(all.Specs) {
			t.Errorf("%s: %d results for %d tasks", b.Name(), len(got), len(all.Specs))
		}
		if i == 0 {
			first = got
			continue
		}
		for name, o := range first {
			if got[name] != o {
				t.Errorf("%s on %s: %s\n  on %s: %s", name, b.Name(), got[name], backends[0].Name(), o)
			}
		}
	}
	if n := srv.Serve.Count(); n != 0 {
		t.Errorf("%d sandboxes alive in agent serve after the runs", n)
	}
	if m := llm.Mismatches(); len(m) > 0 {
		t.Errorf("scripted model expectations: %v", m)
	}
}

// outcomes describes each task's end in one comparable line.
func outcomes(sum *runner.Summary) map[string]string {
	out := map[string]string{}
	for _, task := range sum.Tasks {
		var failed []string
		for _, f := range task.FailedChecks {
			failed = append(failed, f.Name)
		}
		sort.Strings(failed)
		out[task.Name] = fmt.Sprintf("%s %s steps=%d checks=%d/%d failing=%v", task.Status, task.Reason, task.Steps,
			task.Checks.Passed, task.Checks.Passed+task.Checks.Failed, failed)
	}
	return out
}

func scripted(srv *llmtest.Server) *runner.Endpoints {
	return &runner.Endpoints{Config: provider.Config{
		BaseURL: srv.URL(), APIKey: "test-key", Getenv: func(string) string { return "" },
		Limiter: provider.NewLimiter(8),
		Retry:   provider.RetryPolicy{MaxAttempts: 4, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }},
	}}
}

// wrongSolution scripts a model that runs the task's plausible wrong solution and claims success.
func wrongSolution(t *testing.T, root, name, task string) *llmtest.Scenario {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(root, "tasks", "examples", task, "solution", "wrong.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return &llmtest.Scenario{Name: name, Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": string(script)}}}},
		{Content: "All done, it works."},
	}}
}
