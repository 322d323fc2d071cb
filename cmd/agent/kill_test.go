package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
)

// TestRunResumeAfterSIGKILL kills `agent run` with SIGKILL while tasks run — one of them in a
// networked sandbox (an allow-list, against the fake internet) — then runs `agent sandbox gc` and
// `agent run --resume DIR`. The kill leaves sandboxes and a network behind; gc reclaims all of them
// (mounts, cgroups, processes, loop devices, files, the veth, the nftables table, the egress helper,
// the address lease); the resume runs only the tasks that had not finished, leaves the finished
// ones' results untouched, and completes the run.
func TestRunResumeAfterSIGKILL(t *testing.T) {
	requireSandboxes(t)
	in := fakenet.New(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	// The same scope as CheckLeaks, compared right after gc (before the resume, whose backend
	// would reclaim the rest too).
	sc := localenv.Scope(dd)
	base, err := leakcheck.Take(sc)
	if err != nil {
		t.Fatal(err)
	}
	networks := localenv.NetworkResources(dd)

	tasks := []string{"fix-median", "fizzbuzz", "log-errors", "slugify"}
	models := map[string]string{}
	var scenarios []*llmtest.Scenario
	for _, task := range tasks {
		s, err := runnertest.LoadScenario(repoRoot, task, "m-"+task, llmtest.ShapeFragments)
		if err != nil {
			t.Fatal(err)
		}
		s.Latency = llmtest.Duration(300 * time.Millisecond)
		scenarios = append(scenarios, s)
		models[task] = "custom:m-" + task
	}
	// The networked task is the first to start and the last to end: it is in flight at the kill.
	cmd := func(c string) llmtest.Turn {
		return llmtest.Turn{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": c}}}}
	}
	net := &llmtest.Scenario{Name: "m-net", Latency: llmtest.Duration(3 * time.Second), Turns: []llmtest.Turn{
		cmd("curl -fsS --max-time 5 http://allowed.test/ >public.txt 2>&1; curl -fsS --max-time 3 http://other.test/ >>public.txt 2>&1; true"),
		cmd("sleep 1"), cmd("sleep 1"), cmd("sleep 1"),
		{Content: "Fetched."},
	}}
	srv := llmtest.Start(t, append(scenarios, net)...)
	suite := t.TempDir()
	if err := runnertest.CopySuite(filepath.Join(repoRoot, "tasks", "examples"), suite, models); err != nil {
		t.Fatal(err)
	}
	runnertest.WriteSpec(t, suite, "a-net", `
model: custom:m-net
prompt: Fetch the allowed page.
network: {allow: [allowed.test]}
checks:
  - file: public.txt
    contains: hello from 203.0.113.10
`)
	out := filepath.Join(t.TempDir(), "results")
	env := []string{"TEST_LLM_KEY=k", "AGENT_DNS=" + in.Upstream().String()}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, agentBin, "run", "--data-dir", dd, "-j", "2", "-o", out,
		"--base-url", srv.URL(), "--api-key-env", "TEST_LLM_KEY", suite)
	run.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	run.Stdout, run.Stderr = &stderr, &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once a task has finished while the networked one runs.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		done, _ := filepath.Glob(filepath.Join(out, "tasks", "*", "result.json"))
		_, netDone := os.Stat(filepath.Join(out, "tasks", "a-net", "result.json"))
		if len(done) > 0 && netDone == nil {
			run.Process.Kill()
			t.Fatalf("the networked task finished before the kill; slow the scripted model down:\n%s", stderr.String())
		}
		if len(done) > 0 && hasNetworkState(networks()) {
			break
		}
		if time.Now().After(deadline) {
			run.Process.Kill()
			t.Fatalf("no task finished while the networked one ran:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := run.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = run.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("agent run should have died of SIGKILL: %v\n%s", err, stderr.String())
	}

	// What the kill left: sandboxes, and the networked one's network.
	left, _ := os.ReadDir(filepath.Join(dd, "sandboxes"))
	if len(left) == 0 || !hasNetworkState(networks()) {
		t.Fatalf("the kill should leave sandboxes (%d) and a network (%q) for gc", len(left), networks())
	}
	finished := map[string][]byte{}
	for _, task := range append(slices.Clone(tasks), "a-net") {
		data, err := os.ReadFile(filepath.Join(out, "tasks", task, "result.json"))
		if err != nil {
			continue
		}
		var res runner.TaskResult
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatalf("%s: a result.json cut by the kill: %v", task, err)
		}
		if !res.Finished() {
			t.Fatalf("%s: unfinished result after a SIGKILL: %+v", task, res)
		}
		finished[task] = data
	}
	if len(finished) == 0 || finished["a-net"] != nil {
		t.Fatalf("finished before the kill: %v", slices.Collect(mapsKeys(finished)))
	}

	// gc, from another process, reclaims everything the killed runner left.
	r := runAgent(t, nil, "sandbox", "gc", "--data-dir", dd)
	if r.code != 0 {
		t.Fatalf("agent sandbox gc: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`reclaimed (\d+) sandbox`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("agent sandbox gc output: %q", r.stdout)
	}
	if n, _ := strconv.Atoi(m[1]); n != len(left) {
		t.Errorf("gc reclaimed %d sandboxes, the kill left %d", n, len(left))
	}
	var leaks []string
	for wait := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		now, err := leakcheck.Take(sc)
		if err != nil {
			t.Fatal(err)
		}
		leaks = leaks[:0]
		for _, l := range base.Diff(now) {
			if strings.HasPrefix(l, "network interface:") || strings.HasPrefix(l, "loop device:") && !strings.Contains(l, dd) {
				continue // other users of the machine; dd's own are found by id and backing file
			}
			leaks = append(leaks, l)
		}
		if len(leaks) == 0 || time.Now().After(wait) {
			break
		}
	}
	if len(leaks) > 0 {
		t.Fatalf("left after agent sandbox gc:\n  %s", strings.Join(leaks, "\n  "))
	}

	// Resume: only the unfinished tasks run; the finished ones' results stay as they were.
	before := map[string]int{}
	for _, req := range srv.Requests() {
		before[req.Model]++
	}
	r = runAgent(t, env, "run", "--resume", out)
	if r.code != 0 {
		t.Fatalf("resumed run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	after := map[string]int{}
	for _, req := range srv.Requests() {
		after[req.Model]++
	}
	for _, task := range append(slices.Clone(tasks), "a-net") {
		model := "m-" + task
		if task == "a-net" {
			model = "m-net"
		}
		data, err := os.ReadFile(filepath.Join(out, "tasks", task, "result.json"))
		if err != nil {
			t.Fatalf("%s: %v", task, err)
		}
		ran := after[model] > before[model]
		if prev, done := finished[task]; done {
			if ran || !bytes.Equal(prev, data) {
				t.Errorf("%s finished before the kill but ran again (%v) or its result changed", task, ran)
			}
		} else if !ran {
			t.Errorf("%s had not finished and did not run on resume", task)
		}
	}
	var sum runner.Summary
	readJSON(t, filepath.Join(out, "summary.json"), &sum)
	if !sum.OK || sum.Passed != len(tasks)+1 || sum.Interrupted {
		t.Errorf("summary after resume: %+v", sum)
	}
	var res runner.TaskResult
	readJSON(t, filepath.Join(out, "tasks", "a-net", "result.json"), &res)
	if res.Network == nil || res.Network.Mode != "allow" || !slices.ContainsFunc(res.Network.Refused, func(c runner.RefusedConnection) bool {
		return c.Kind == "dns" && c.Name == "other.test"
	}) {
		t.Errorf("a-net's network record: %+v", res.Network)
	}
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	if len(info.Sessions) != 2 || info.Sessions[0].EndedAt != nil || info.Sessions[1].Reused != len(finished) {
		t.Errorf("sessions: %+v", info.Sessions)
	}
	if h := in.TrapHits(); len(h) > 0 {
		t.Errorf("the fake internet's traps were reached: %+v", h)
	}
}

// hasNetworkState tells whether a NetworkResources listing holds a sandbox network's state.
func hasNetworkState(list []string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, "network state: ") })
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
