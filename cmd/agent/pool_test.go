package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
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
		args := append([]string{"run", "--data-dir", localenv.DataDir(t), "--replay", "testdata/transcripts", "--filter", "fizzbuzz"}, tc.args...)
		r := runAgent(t, tc.env, append(args, "tasks/examples")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("agent %s (env %v): exit %d, stderr %q; want exit %d naming %s", strings.Join(args, " "), tc.env, r.code, r.stderr, exitUsage, tc.want)
		}
	}

	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
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

// TestServePool: `agent serve --pool 2` holds two pooled sandboxes; an SDK-style create claims one
// and its envd takes the token the server hands out; when the server is stopped (SIGTERM) nothing
// of the data directory is left, the idle pooled sandbox included.
func TestServePool(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, agentBin, "serve", "--data-dir", dd, "--listen", "127.0.0.1:0", "--pool", "2")
	srv.Dir = repoRoot
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = srv.Process.Kill()
			_ = srv.Wait()
		}
	})
	var url, key string
	sc := bufio.NewScanner(stdout)
	for (url == "" || key == "") && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "E2B_API_URL="); ok {
			url = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "E2B_API_KEY="); ok {
			key = v
		}
	}
	if url == "" || key == "" {
		t.Fatalf("no URL and key in the banner; stderr:\n%s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)

	pooled := map[string]bool{}
	for deadline := time.Now().Add(2 * time.Minute); len(pooled) < 2 && time.Now().Before(deadline); {
		r := runAgent(t, nil, "sandbox", "ls", "--data-dir", dd, "--json")
		var infos []struct {
			ID    string `json:"id"`
			Phase string `json:"phase"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &infos); err != nil {
			t.Fatalf("sandbox ls: %v %q", err, r.stdout)
		}
		clear(pooled)
		for _, in := range infos {
			if in.Phase == "pooled" {
				pooled[in.ID] = true
			}
		}
		if len(pooled) < 2 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(pooled) != 2 {
		t.Fatalf("serve --pool 2 holds %d pooled sandboxes; stderr:\n%s", len(pooled), stderr.String())
	}

	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v2/sandboxes", strings.NewReader(`{"templateID":"base"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(e2bapi.HeaderAPIKey, key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	var sb e2bapi.Sandbox
	if res.StatusCode != http.StatusCreated || json.Unmarshal(body, &sb) != nil {
		t.Fatalf("create: %d %s", res.StatusCode, body)
	}
	if !pooled[sb.SandboxID] {
		t.Errorf("create got %s, not one of the pooled sandboxes %v", sb.SandboxID, pooled)
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", url+"/files?path=/etc/hostname", nil)
	req.Header.Set("E2b-Sandbox-Id", sb.SandboxID)
	req.Header.Set(e2bapi.HeaderAccessToken, sb.EnvdAccessToken)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	if res.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != sb.SandboxID {
		t.Errorf("reading a file of the claimed sandbox with its token: %d %q", res.StatusCode, body)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = srv.Wait()
	exited = true
	if err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, stderr.String())
	}
	ents, err := os.ReadDir(filepath.Join(dd, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%d sandbox(es) left in the data directory after serve ended", len(ents))
	}
}
