package runner_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

// TestLiveEndpoint runs the fizzbuzz example against a real OpenAI-compatible endpoint, when one
// is named: AGENT_LIVE_BASE_URL, AGENT_LIVE_MODEL and (if the endpoint needs one)
// AGENT_LIVE_API_KEY. A real model may solve the task or not; the test asserts that the loop ran
// to its end against the endpoint and that everything was recorded.
func TestLiveEndpoint(t *testing.T) {
	base, model, key := os.Getenv("AGENT_LIVE_BASE_URL"), os.Getenv("AGENT_LIVE_MODEL"), os.Getenv("AGENT_LIVE_API_KEY")
	if base == "" || model == "" {
		t.Skip("set AGENT_LIVE_BASE_URL and AGENT_LIVE_MODEL (and AGENT_LIVE_API_KEY) to run against a real endpoint")
	}
	requireSandboxes(t)
	ctx := ctxT(t, 20*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	suite, err := spec.Load(ctx, []string{filepath.Join(repoRoot, "tasks", "examples", "fizzbuzz", "task.yaml")},
		spec.Options{Overrides: &spec.Config{Common: spec.Common{Model: spec.Ptr(provider.Custom + ":" + model)}}})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "results")
	sum := runSuite(t, ctx, b, runner.Config{Specs: suite.Specs, Out: out, Concurrency: 1,
		Models: &runner.Endpoints{Config: provider.Config{BaseURL: base, APIKey: key}}})
	res := taskResult(t, out, "fizzbuzz")
	t.Logf("live %s: %s %s %s, %d steps, %d tokens", model, res.Status, res.Reason, res.Detail, res.Agent.Steps, res.Agent.Usage.TotalTokens)
	if res.Agent == nil || res.Agent.Steps == 0 || res.Agent.Usage.TotalTokens == 0 {
		t.Fatalf("the endpoint was not used: %+v", res.Agent)
	}
	if res.Reason == runner.ReasonModelError {
		t.Errorf("model error: %s", res.Detail)
	}
	if _, err := transcript.Load(filepath.Join(out, "tasks", "fizzbuzz", "transcript.json")); err != nil {
		t.Error(err)
	}
	if sum.Total != 1 {
		t.Errorf("summary: %+v", sum)
	}
}
