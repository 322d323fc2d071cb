package eval_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/evaltest"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/report/results"
)

var agentBin, skipReason string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithSandboxes(m, &agentBin, &skipReason)) }

// agent runs the agent binary and returns its exit code, stdout and stderr.
func agent(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(agentBin, args...)
	cmd.Env = append(os.Environ(), env...)
	r := testenv.RunCmd(t, cmd, 5*time.Minute)
	return r.Code, r.Stdout, r.Stderr
}

func TestEvalEndToEnd(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	data := localenv.DataDir(t)
	evaltest.CheckLeaks(t, data, agentBin)
	specs := evaltest.Suite(t, t.TempDir())
	srv := llmtest.Start(t, evaltest.Good("good"), evaltest.Bad("bad"), evaltest.Looping("loops"))
	out := filepath.Join(t.TempDir(), "eval")
	env := []string{"AGENT_TEST_KEY=test-key"}
	common := []string{"--data-dir", data, "--base-url", srv.URL(), "--api-key-env", "AGENT_TEST_KEY", "-j", "2", "--seeds-root", specs}
	prices := filepath.Join(t.TempDir(), "prices.yaml")
	if err := os.WriteFile(prices, []byte("models:\n  good: {input: 1.0, output: 2.0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := agent(t, env, append([]string{"eval", "--models", "good,bad,loops", "--repeat", "2", "--out", out, "--prices", prices}, append(common, specs)...)...)
	if code != 0 {
		t.Fatalf("agent eval exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "report:  "+filepath.Join(out, "report.html")) {
		t.Errorf("stdout does not say where the report is:\n%s", stdout)
	}
	var ev results.EvalInfo
	b, err := os.ReadFile(filepath.Join(out, "eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.SchemaVersion != results.EvalSchema || len(ev.Models) != 3 || ev.Models[0].Model != "good" || ev.Repeat != 2 || ev.EndedAt == nil {
		t.Fatalf("eval.json: %+v", ev)
	}
	m := map[string]results.Metrics{}
	for _, x := range ev.Metrics {
		m[x.Model] = x
	}
	good, bad, loops := m["good"], m["bad"], m["loops"]
	if good.Cells != 4 || good.Passed != 4 || good.PassRate.Rate != 1 || good.PassAtK[2] != 1 {
		t.Errorf("good: %+v", good)
	}
	if bad.Passed != 2 || bad.Failed != 2 || bad.PassAtK[1] != 0.5 || bad.PassAtK[2] != 0.5 {
		t.Errorf("bad: %+v", bad)
	}
	if loops.Errored != 4 || loops.Errors["max_steps"] != 4 {
		t.Errorf("loops: %+v", loops)
	}
	if good.TokensIn == 0 || good.ToolCalls != 4 || good.Steps != 8 || good.WallMedian <= 0 {
		t.Errorf("good usage: %+v", good)
	}
	// Priced: good at $1 / $2 per million tokens in / out; bad has no price.
	if want := (float64(good.TokensIn)*1 + float64(good.TokensOut)*2) / 1e6; good.Cost == nil || *good.Cost < want*0.999 || *good.Cost > want*1.001 || good.CostPartial {
		t.Errorf("good cost %v, want %v", good.Cost, want)
	}
	if bad.Cost != nil {
		t.Errorf("bad has a cost without a price: %v", *bad.Cost)
	}
	// Each model's run is an ordinary results directory.
	for _, mm := range ev.Models {
		if _, err := os.Stat(filepath.Join(out, mm.Dir, "run.json")); err != nil {
			t.Errorf("model %s: %v", mm.Model, err)
		}
	}
	// The reports.
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	for _, want := range []string{"| `good` |", "| `answer` | `bad` | 1 | failed | the answer is 42: stdout", "max\\_steps"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	html, _ := os.ReadFile(filepath.Join(out, "report.html"))
	for _, want := range []string{`class="chart pass-rate"`, `class="chart heatmap"`, `<details class="tool-call">`, "write_files("} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	xml, _ := os.ReadFile(filepath.Join(out, "report.xml"))
	if !strings.Contains(string(xml), `tests="12" failures="2" errors="4"`) {
		t.Errorf("report.xml counts:\n%.600s", xml)
	}

	// Every request carried the key; every model call was a scripted one.
	for _, r := range srv.Requests() {
		if r.Auth != "Bearer test-key" {
			t.Fatalf("request without the key: %q", r.Auth)
		}
	}

	// Resuming the finished evaluation runs nothing again: no model call, same results.
	before := len(srv.Requests())
	code, stdout, stderr = agent(t, env, append([]string{"eval", "--models", "good,bad,loops", "--repeat", "2", "--resume", out}, append(common, specs)...)...)
	if code != 0 {
		t.Fatalf("agent eval --resume exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if n := len(srv.Requests()); n != before {
		t.Fatalf("resuming a finished evaluation made %d model calls", n-before)
	}
	var resumed results.EvalInfo
	b, _ = os.ReadFile(filepath.Join(out, "eval.json"))
	json.Unmarshal(b, &resumed)
	if resumed.ID != ev.ID || len(resumed.Metrics) != 3 || resumed.Metrics[0].Passed != 4 {
		t.Fatalf("resumed eval.json: id %s (was %s), metrics %+v", resumed.ID, ev.ID, resumed.Metrics)
	}

	// A second evaluation against the first as baseline: "good" now answers 41 (the server
	// scripts it as bad), so it regresses on answer, and agent eval exits 1.
	srv2 := llmtest.Start(t, evaltest.Bad("good"), evaltest.Bad("bad"))
	out2 := filepath.Join(t.TempDir(), "eval2")
	common[3] = srv2.URL()
	code, stdout, stderr = agent(t, env, append([]string{"eval", "--models", "good,bad", "--out", out2, "--baseline", out, "--max-regression", "0.1"}, append(common, specs)...)...)
	if code != 1 {
		t.Fatalf("agent eval with a regression exited %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "regressed beyond 10.0 points: good") {
		t.Errorf("stderr does not name the regression:\n%s", stderr)
	}
	b, _ = os.ReadFile(filepath.Join(out2, "eval.json"))
	var ev2 results.EvalInfo
	json.Unmarshal(b, &ev2)
	c := ev2.Comparison
	if c == nil || len(c.Models) != 2 || !c.Models[0].Regressed || c.Models[0].Delta != -0.5 || c.Models[1].Regressed {
		t.Fatalf("comparison %+v", c)
	}
	if len(c.Flips) != 1 || c.Flips[0].Model != "good" || c.Flips[0].Task != "answer" || c.Flips[0].From != "pass" || c.Flips[0].To != "fail" {
		t.Fatalf("flips %+v", c.Flips)
	}
	md, _ = os.ReadFile(filepath.Join(out2, "report.md"))
	if !strings.Contains(string(md), "regressed") || !strings.Contains(string(md), "`answer` on `good` pass→fail") {
		t.Errorf("report.md lacks the comparison:\n%s", md)
	}
}
