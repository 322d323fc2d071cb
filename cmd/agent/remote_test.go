package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

// TestRunRemoteBackends runs the example suite's replays with `agent run --backend e2b` and
// `--backend novita` against an agent serve (in this process, over real local sandboxes), configured
// as users configure the SDKs: the flavor's API key and URL variables. Every task passes, as it does
// on the local backend (TestRunExitCodes, runner's TestReplayExamples).
func TestRunRemoteBackends(t *testing.T) {
	requireSandboxes(t)
	srv := servetest.Start(t, &servetest.Env{Binary: agentBin, TemplateDir: t.TempDir()}, nil, nil)
	for _, flavor := range []string{"e2b", "novita"} {
		p := strings.ToUpper(flavor)
		env := []string{p + "_API_KEY=" + srv.APIKey, p + "_API_URL=" + srv.URL, p + "_SANDBOX_URL=" + srv.URL, p + "_DOMAIN="}
		out := filepath.Join(t.TempDir(), flavor)
		r := runAgent(t, env, "run", "--backend", flavor, "--max-sandboxes", "2", "--replay", "testdata/transcripts",
			"--json", "-o", out, "tasks/examples")
		if r.code != 0 {
			t.Fatalf("--backend %s: exit %d\n%s\n%s", flavor, r.code, r.stdout, r.stderr)
		}
		var sum runner.Summary
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Fatalf("--json: %v\n%s", err, r.stdout)
		}
		if !sum.OK || sum.Total < 8 || sum.Passed != sum.Total {
			t.Errorf("--backend %s: %+v", flavor, sum)
		}
		var info runner.RunInfo
		if err := readRunInfo(out, &info); err != nil {
			t.Fatal(err)
		}
		if info.Backend != flavor {
			t.Errorf("run.json backend %q, want %s", info.Backend, flavor)
		}
	}
	// Without the key the backend refuses to open, as a usage error naming the variable.
	r := runAgent(t, []string{"NOVITA_API_KEY="}, "run", "--backend", "novita", "--replay", "testdata/transcripts", "-o", filepath.Join(t.TempDir(), "x"), "tasks/examples")
	if r.code != 2 || !strings.Contains(r.stderr, "NOVITA_API_KEY") {
		t.Errorf("no key: exit %d, %s", r.code, r.stderr)
	}
	if n := srv.Serve.Count(); n != 0 {
		t.Errorf("%d sandboxes left in agent serve", n)
	}
}
