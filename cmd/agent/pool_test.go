package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/runner"
)

// TestRunPool: `agent run --pool 2` runs example tasks (replayed transcripts) with a warm pool
// shaped as they ask (agent.yaml's limits and env): every task passes, tasks after the first are
// served from the pool (result.json: sandbox.pooled), and when the command ends nothing of the data
// directory is left, the pool's idle sandboxes included.
func TestRunPool(t *testing.T) {
	requireSandboxes(t)
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--pool", "-1"}, nil, "--pool -1"},
		{[]string{"--pool", "100000"}, nil, "--pool 100000"},
		{nil, []string{"AGENT_POOL=many"}, "AGENT_POOL"},
	} {
		args := append([]string{"run", "--data-dir", runnertest.DataDir(t), "--replay", "testdata/transcripts", "--filter", "fizzbuzz"}, tc.args...)
		r := runAgent(t, tc.env, append(args, "tasks/examples")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("agent %s (env %v): exit %d, stderr %q; want exit %d naming %s", strings.Join(args, " "), tc.env, r.code, r.stderr, exitUsage, tc.want)
		}
	}

	dd := runnertest.DataDir(t)
	runnertest.CheckLeaks(t, dd)
	out := filepath.Join(t.TempDir(), "pool")
	tasks := []string{"fizzbuzz", "slugify", "fix-median", "log-errors"}
	r := runAgent(t, nil, "run", "--data-dir", dd, "--pool", "2", "-j", "1", "--replay", "testdata/transcripts",
		"--filter", strings.Join(tasks, ","), "--json", "-o", out, "tasks/examples")
	if r.code != 0 {
		t.Fatalf("run --pool 2: exit %d\n%s", r.code, r.stderr)
	}
	var sum runner.Summary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.Passed != len(tasks) {
		t.Fatalf("--json summary: %v\n%s", err, r.stdout)
	}
	pooled := 0
	for _, ts := range sum.Tasks {
		var res runner.TaskResult
		readJSON(t, filepath.Join(out, ts.Dir, runner.ResultFile), &res)
		if res.Sandbox == nil {
			t.Fatalf("task %s: no sandbox in its result", ts.Dir)
		}
		if res.Sandbox.Pooled {
			pooled++
		}
	}
	// The first task starts as the pool starts filling; with one task at a time, the pool has the
	// whole of a task to fill, so later tasks claim pooled sandboxes.
	t.Logf("%d of %d tasks ran in a pooled sandbox", pooled, len(tasks))
	if pooled == 0 {
		t.Errorf("no task was served from the pool (%d tasks, --pool 2, -j 1)", len(tasks))
	}
	// Right away, not only at the leak check's cleanup: the command killed the idle pool.
	ents, err := os.ReadDir(filepath.Join(dd, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("sandboxes left in the data directory after the run: %v", names)
	}
}
