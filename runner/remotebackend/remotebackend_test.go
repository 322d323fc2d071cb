package remotebackend_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/remotebackend"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve"
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
	root, err := testenv.RepoRoot()
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

	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
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

// TestKeepPausesInTheCloudAndReviveResumes: with keep failed on the e2b backend (against agent
// serve), a failing task's sandbox is paused in the cloud, not killed, and the result names the
// command to reach it (without the API key). Revive resumes it with its files and its background
// process as the task left them; Discard kills it.
func TestKeepPausesInTheCloudAndReviveResumes(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	vars := map[string]string{"E2B_API_KEY": srv.APIKey, "E2B_API_URL": srv.URL, "E2B_SANDBOX_URL": srv.URL}
	open := func() *remotebackend.Backend {
		b, err := remotebackend.FromEnv(e2b.FlavorE2B, func(k string) string { return vars[k] }, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	b := open()
	counter := `nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 & sleep 0.5`
	llm := llmtest.Start(t,
		&llmtest.Scenario{Name: "wrong", Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "echo wrong > answer.txt && " + counter}}}},
			{Content: "done"},
		}},
		&llmtest.Scenario{Name: "right", Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "echo right > answer.txt"}}}},
			{Content: "done"},
		}},
	)
	dir := t.TempDir()
	for name, model := range map[string]string{"failing": "custom:wrong", "passing": "custom:right"} {
		runnertest.WriteSpec(t, dir, name, "prompt: write answer.txt\nmodel: "+model+"\nkeep: failed\nchecks: [{file: answer.txt, equals: \"right\\n\"}]\n")
	}
	loaded, err := spec.Load(context.Background(), []string{dir}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := runner.New(runner.Config{Specs: loaded.Specs, Models: scripted(llm), Out: filepath.Join(t.TempDir(), "results"), Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var kept *runner.KeptSandbox
	for _, task := range sum.Tasks {
		switch task.Name {
		case "failing":
			if task.Status != runner.StatusFailed || task.Kept == nil {
				t.Fatalf("failing task: %s, kept %+v", task.Status, task.Kept)
			}
			kept = task.Kept
		case "passing":
			if task.Kept != nil {
				t.Fatalf("a passing task's sandbox was kept: %+v", task.Kept)
			}
		}
	}
	if kept.Backend != "e2b" || !strings.HasSuffix(kept.Command, "e2b sandbox connect "+kept.ID) ||
		!strings.Contains(kept.Command, "E2B_API_URL="+srv.URL) || strings.Contains(kept.Command, srv.APIKey) {
		t.Fatalf("kept %+v", kept)
	}
	// Paused in the cloud, alone: the passing task's sandbox was killed.
	info, err := b.Remote().Get(ctx, kept.ID)
	if err != nil || info.State != "paused" {
		t.Fatalf("kept sandbox: %+v %v", info, err)
	}
	if n := srv.Serve.Count(); n != 1 {
		t.Fatalf("%d sandboxes in agent serve, want the kept one", n)
	}
	// Closing the backend leaves a kept sandbox alone.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if info, err := open().Remote().Get(ctx, kept.ID); err != nil || info.State != "paused" {
		t.Fatalf("after the backend closed: %+v %v", info, err)
	}

	// Revive (what --resume does) resumes it: files and the counter process as they were.
	b2 := open()
	sb, filesOnly, err := b2.Revive(ctx, kept.ID, runner.SandboxRequest{Lifetime: 2 * time.Minute})
	if err != nil || filesOnly {
		t.Fatalf("revive: %v (files only %v)", err, filesOnly)
	}
	read := func(cmd string) string {
		t.Helper()
		res, err := sb.Run(ctx, sandbox.Cmd{Shell: cmd})
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	if got := read("cat answer.txt"); got != "wrong" {
		t.Fatalf("answer.txt after revive: %q", got)
	}
	first, _ := strconv.Atoi(read("cat /tmp/counter"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n, _ := strconv.Atoi(read("cat /tmp/counter")); first > 0 && n > first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter process did not continue after revive (stuck at %d)", first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info, err := b2.Remote().Get(ctx, kept.ID); err != nil || info.State != "running" {
		t.Fatalf("revived sandbox: %+v %v", info, err)
	}
	if err := b2.Discard(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Remote().Get(ctx, kept.ID); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("after discard: %v", err)
	}
}

// TestNetworkModes: a task's network maps onto the provider's egress settings (internet: the
// internet switch; an allow-list: network.allowOut with everything else denied), and a provider
// that grants less than asked (agent serve without --allow-internet) is an error, not a task
// running with less network than its spec says; so is a spec's OCI runtime, which the API cannot
// choose.
func TestNetworkModes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	open := func(srv *servetest.Server) *remotebackend.Backend {
		vars := map[string]string{"E2B_API_KEY": srv.APIKey, "E2B_API_URL": srv.URL, "E2B_SANDBOX_URL": srv.URL}
		b, err := remotebackend.FromEnv(e2b.FlavorE2B, func(k string) string { return vars[k] }, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	allow, err := spec.ParseNetwork("allow:allowed.test,203.0.113.0/24")
	if err != nil {
		t.Fatal(err)
	}
	internet := spec.Network{Mode: spec.NetworkInternet}

	closed := servetest.Start(t, &env, nil, nil)
	b := open(closed)
	for _, n := range []spec.Network{internet, allow} {
		_, err := b.Create(ctx, runner.SandboxRequest{Task: "net", Epoch: 1, Network: n, Lifetime: time.Minute})
		if err == nil || !strings.Contains(err.Error(), "--allow-internet") {
			t.Fatalf("network %s on a server without --allow-internet: %v", n, err)
		}
	}
	// Nor can the API choose the OCI runtime a spec names.
	if _, err := b.Create(ctx, runner.SandboxRequest{Task: "rt", Epoch: 1, Runtime: "runsc", Lifetime: time.Minute}); err == nil ||
		!strings.Contains(err.Error(), "cannot choose the OCI runtime") || !strings.Contains(err.Error(), "runtime: runsc") {
		t.Fatalf("runtime runsc on the e2b backend: %v", err)
	}
	if n := closed.Serve.Count(); n != 0 {
		t.Fatalf("%d sandboxes left after refused creates", n)
	}

	in := fakenet.New(t) // DNS upstream on this machine: no query leaves it
	srv := servetest.StartWith(t, &env, func(lc *local.Config) {
		lc.Network.Upstreams = []netip.AddrPort{in.Upstream()}
	}, func(cfg *serve.Config) { cfg.AllowInternet = true }, nil)
	b = open(srv)
	for _, n := range []spec.Network{internet, allow} {
		sb, err := b.Create(ctx, runner.SandboxRequest{Task: "net", Epoch: 1, Network: n, Lifetime: time.Minute})
		if err != nil {
			t.Fatalf("network %s: %v", n, err)
		}
		info, err := sb.(*remotebackend.Sandbox).Sandbox.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sb.Info().Network != n.String() {
			t.Errorf("recorded network %q, want %s", sb.Info().Network, n)
		}
		switch n.Mode {
		case spec.NetworkInternet:
			if info.AllowInternetAccess == nil || !*info.AllowInternetAccess {
				t.Errorf("internet: provider reports %v", info.AllowInternetAccess)
			}
		case spec.NetworkAllow:
			if info.Network == nil || strings.Join(info.Network.AllowOut, ",") != "allowed.test,203.0.113.0/24" {
				t.Errorf("allow-list: provider reports %+v", info.Network)
			}
		}
		if err := sb.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
