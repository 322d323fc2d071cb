package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

// TestRunRemoteBackends runs the example suite's replays with `agent run --sandbox e2b` and
// `--backend novita` (the older flag name) against an agent serve (in this process, over real local sandboxes), configured
// as users configure the SDKs: the flavor's API key and URL variables. Every task passes, as it does
// on the local backend (TestRunExitCodes, runner's TestReplayExamples).
func TestRunRemoteBackends(t *testing.T) {
	requireSandboxes(t)
	srv := servetest.Start(t, &servetest.Env{Binary: agentBin, TemplateDir: t.TempDir()}, nil, nil)
	for _, flavor := range []string{"e2b", "novita"} {
		p := strings.ToUpper(flavor)
		env := []string{p + "_API_KEY=" + srv.APIKey, p + "_API_URL=" + srv.URL, p + "_SANDBOX_URL=" + srv.URL, p + "_DOMAIN="}
		out := filepath.Join(t.TempDir(), flavor)
		// --sandbox, and its older name --backend.
		flag := "--sandbox"
		if flavor == "novita" {
			flag = "--backend"
		}
		r := runAgent(t, env, "run", flag, flavor, "--max-sandboxes", "2", "--replay", "testdata/transcripts",
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

// TestRunMixesBackends runs one suite whose specs name different sandbox backends (`sandbox:
// e2b`, `sandbox: novita`, and none: the --sandbox default, local) against an agent serve: each
// task runs on its own backend, as results and run.json record, and every task passes.
func TestRunMixesBackends(t *testing.T) {
	requireSandboxes(t)
	srv := servetest.Start(t, &servetest.Env{Binary: agentBin, TemplateDir: t.TempDir()}, nil, nil)
	suite := t.TempDir()
	want := map[string]string{"fizzbuzz": "e2b", "slugify": "novita", "fix-median": "local"}
	if err := os.CopyFS(filepath.Join(suite, "agent.yaml"+".d"), os.DirFS(filepath.Join(repoRoot, "tasks", "examples"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(suite, "agent.yaml.d", "agent.yaml"), filepath.Join(suite, "agent.yaml")); err != nil {
		t.Fatal(err)
	}
	for task, backend := range want {
		if err := os.Rename(filepath.Join(suite, "agent.yaml.d", task), filepath.Join(suite, task)); err != nil {
			t.Fatal(err)
		}
		if backend == "local" {
			continue // the --sandbox default
		}
		p := filepath.Join(suite, task, "task.yaml")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append([]byte("sandbox: "+backend+"\n"), data...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(suite, "agent.yaml.d")); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, p := range []string{"E2B", "NOVITA"} {
		env = append(env, p+"_API_KEY="+srv.APIKey, p+"_API_URL="+srv.URL, p+"_SANDBOX_URL="+srv.URL, p+"_DOMAIN=")
	}
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	out := filepath.Join(t.TempDir(), "mixed")
	r := runAgent(t, env, "run", "--sandbox", "local", "--data-dir", dd, "--replay", "testdata/transcripts", "--json", "-o", out, suite)
	if r.code != 0 {
		t.Fatalf("mixed run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var sum runner.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Total != 3 || sum.Passed != 3 {
		t.Fatalf("summary %+v", sum)
	}
	for _, task := range sum.Tasks {
		var res runner.TaskResult
		if err := readJSONFile(filepath.Join(out, task.Dir, runner.ResultFile), &res); err != nil {
			t.Fatal(err)
		}
		if res.Sandbox == nil || res.Sandbox.Backend != want[task.Name] {
			t.Errorf("task %s ran on %+v, want %s", task.Name, res.Sandbox, want[task.Name])
		}
	}
	var info runner.RunInfo
	if err := readRunInfo(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Backend != "local" || len(info.Tasks) != 3 {
		t.Fatalf("run.json: backend %q, %d tasks", info.Backend, len(info.Tasks))
	}
	for _, rt := range info.Tasks {
		if rt.Sandbox != want[rt.Name] {
			t.Errorf("run.json task %s: sandbox %q, want %s", rt.Name, rt.Sandbox, want[rt.Name])
		}
	}
	if n := srv.Serve.Count(); n != 0 {
		t.Errorf("%d sandboxes left in agent serve", n)
	}
	// A spec naming a backend the environment cannot open is a usage error before anything runs.
	r = runAgent(t, []string{"NOVITA_API_KEY=", "E2B_API_KEY=" + srv.APIKey}, "run", "--data-dir", dd, "--replay", "testdata/transcripts", "-o", filepath.Join(t.TempDir(), "x"), suite)
	if r.code != 2 || !strings.Contains(r.stderr, "NOVITA_API_KEY") {
		t.Errorf("no novita key: exit %d, %s", r.code, r.stderr)
	}
}
