package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/sandbox/envdclient"
)

// End-to-end tests: the loop drives a real `agent envd` (standalone, serving a temporary world)
// through the real envd client; the only stand-in is the scripted model.

// agentBin is the agent binary built for the package's tests.
var agentBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithAgent(m, &agentBin)) }

// envd is a standalone `agent envd` serving a temporary world (testenv.World), with a client.
type envd struct {
	*testenv.Envd
	client *envdclient.Client
}

const workdir = "/home/user"

func startEnvd(t testing.TB) *envd {
	t.Helper()
	e := testenv.StartEnvd(t, agentBin, testenv.EnvdOptions{})
	c, err := envdclient.New(envdclient.Config{BaseURL: e.URL, RequestTimeout: 30 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &envd{Envd: e, client: c}
}

func (e *envd) readHost(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(e.HostPath(p))
	if err != nil {
		t.Fatalf("reading %s on the host: %v", p, err)
	}
	return string(b)
}

func e2eTask(prompt string) Task {
	return Task{Name: "e2e", Prompt: prompt, Model: "custom:m", Workdir: workdir, Limits: Limits{Timeout: 2 * time.Minute}}
}

// toolMessages returns the tool messages of a transcript.
func toolMessages(tr *transcript.Transcript) []transcript.Message {
	var out []transcript.Message
	for _, m := range tr.Messages {
		if m.Role == "tool" {
			out = append(out, m)
		}
	}
	return out
}

const helloScript = "echo 'hello from the sandbox'\necho 'to stderr' >&2\nexit 3\n"

func writeAndTest(shape llmtest.Shape) *llmtest.Scenario {
	sc := &llmtest.Scenario{Name: "m", Stream: shape, Turns: []llmtest.Turn{
		{Content: "I'll write the script first.", ToolCalls: []llmtest.ToolCall{
			{Name: "write_file", Args: map[string]any{"path": "hello.sh", "data": helloScript}},
		}},
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "bash hello.sh"}}},
			ExpectLastContains: []string{"Wrote %d bytes to /home/user/hello.sh"}},
		{ToolCalls: []llmtest.ToolCall{{Name: "read_file", Args: map[string]any{"path": "/home/user/hello.sh"}}},
			ExpectLastContains: []string{"exit code: 3", "stdout:\nhello from the sandbox", "stderr:\nto stderr"}},
		{Content: "The script works.", ExpectLastContains: []string{helloScript}},
	}}
	sc.Turns[1].ExpectLastContains[0] = fmt.Sprintf(sc.Turns[1].ExpectLastContains[0], len(helloScript))
	return sc
}

func TestE2EMultiStepTask(t *testing.T) {
	for _, tc := range []struct {
		name     string
		shape    llmtest.Shape
		noStream bool
	}{
		{"fragments", llmtest.ShapeFragments, false},
		{"whole calls", llmtest.ShapeWhole, false},
		{"non-streaming", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnvd(t)
			srv := llmtest.Start(t, writeAndTest(tc.shape))
			res, err := Run(context.Background(), e2eTask("write hello.sh and run it"), e.client,
				scripted(t, srv, func(c *provider.Config) { c.NoStream = tc.noStream }), Options{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if res.FinalAnswer != "The script works." || res.Steps != 4 {
				t.Errorf("result = %+v", res.End)
			}
			if mm := srv.Mismatches(); len(mm) > 0 {
				t.Errorf("the model was sent unexpected results:\n%s", strings.Join(mm, "\n"))
			}
			if got := e.readHost(t, "home/user/hello.sh"); got != helloScript {
				t.Errorf("hello.sh on the host = %q", got)
			}
			tools := toolMessages(res.Transcript)
			if len(tools) != 3 || *tools[1].Tool.ExitCode != 3 || tools[1].Tool.Error {
				t.Errorf("tool messages = %+v", tools)
			}
			validTranscript(t, res.Transcript)
		})
	}
}

func TestE2EParallelToolCalls(t *testing.T) {
	for _, shape := range []llmtest.Shape{llmtest.ShapeFragments, llmtest.ShapeWhole, llmtest.ShapeWholeSameIndex} {
		t.Run(string(shape), func(t *testing.T) {
			e := startEnvd(t)
			sc := &llmtest.Scenario{Name: "m", Stream: shape, Turns: []llmtest.Turn{
				{Interleave: true, Fragment: 5, ToolCalls: []llmtest.ToolCall{
					{Name: "write_files", Args: map[string]any{"files": []any{
						map[string]any{"path": "a.txt", "data": "A"},
						map[string]any{"path": "sub/dir/b.txt", "data": "B"},
					}}},
					{Name: "run_commands", Args: map[string]any{"command": "cat a.txt sub/dir/b.txt"}},
					{Name: "list_files", Args: map[string]any{"path": ".", "depth": 3}},
				}},
				{Content: "Done."},
			}}
			srv := llmtest.Start(t, sc)
			res, err := Run(context.Background(), e2eTask("p"), e.client, scripted(t, srv, nil), Options{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			tools := toolMessages(res.Transcript)
			if len(tools) != 3 {
				t.Fatalf("%d tool results", len(tools))
			}
			if !strings.HasPrefix(tools[0].Content, "Wrote 2 files") || tools[1].Content != "exit code: 0\nstdout:\nAB" {
				t.Errorf("results = %q, %q", tools[0].Content, tools[1].Content)
			}
			for _, want := range []string{"a.txt (1 byte)", "sub/", "sub/dir/", "sub/dir/b.txt (1 byte)"} {
				if !strings.Contains(tools[2].Content, want+"\n") && !strings.HasSuffix(tools[2].Content, want) {
					t.Errorf("list_files result lacks %q:\n%s", want, tools[2].Content)
				}
			}
			// Results are in the order of the calls.
			calls := res.Transcript.Messages[2].ToolCalls
			for i, m := range tools {
				if m.ToolCallID != calls[i].ID {
					t.Errorf("result %d answers %s, want %s", i, m.ToolCallID, calls[i].ID)
				}
			}
		})
	}
}

func TestE2EHostileArguments(t *testing.T) {
	e := startEnvd(t)
	huge := strings.Repeat("x", 2<<20)
	sc := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
		{Fragment: 1 << 16, ToolCalls: []llmtest.ToolCall{
			{Name: "write_file", Arguments: `{"path": "a.txt", "data": "unterminated`},
			{Name: "write_file", Args: map[string]any{"path": "big.txt", "data": huge}},
			{Name: "run_commands", Args: map[string]any{"command": []any{"ls"}}},
			{Name: "shell", Args: map[string]any{"command": "ls"}},
			{Name: "read_file", Args: map[string]any{"path": "../../../../../../etc/passwd"}},
			{Name: "read_file", Args: map[string]any{"path": "missing.txt"}},
			{Name: "write_file", Args: map[string]any{"path": "ok.txt", "data": "fine"}},
			{Name: "read_file", Args: map[string]any{"path": "~/ok.txt"}},
		}},
		{Content: "Recovered."},
	}}
	srv := llmtest.Start(t, sc)
	res, err := Run(context.Background(), e2eTask("p"), e.client, scripted(t, srv, nil), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tools := toolMessages(res.Transcript)
	wants := []string{"not valid JSON", "too large", `argument "command" must be a string`, `unknown tool "shell"`,
		"user:x:1000:1000", "Error reading file", "Wrote 4 bytes", "fine"}
	for i, want := range wants {
		if !strings.Contains(tools[i].Content, want) {
			t.Errorf("result %d = %.200q, want %q", i, tools[i].Content, want)
		}
	}
	// The traversal stayed in the sandbox's world: its /etc/passwd, not the host's.
	if strings.Contains(tools[4].Content, "root:x:0:0:root:/root:/bin/bash\nuser") == false || strings.Contains(tools[4].Content, "daemon:") {
		t.Errorf("read outside the world? %q", tools[4].Content)
	}
	for _, p := range []string{"home/user/a.txt", "home/user/big.txt"} {
		if _, err := os.Stat(e.HostPath(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was written from bad arguments (%v)", p, err)
		}
	}
	if e.readHost(t, "home/user/ok.txt") != "fine" {
		t.Error("the good call after the bad ones was not carried out")
	}
	validTranscript(t, res.Transcript)
}

func TestE2EFlakyModel(t *testing.T) {
	e := startEnvd(t)
	sc := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
		{Failures: []llmtest.Failure{{Status: 429, RetryAfter: "0"}, {Status: 500}, {Cut: true}},
			ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "echo step one > one.txt"}}}},
		{Failures: []llmtest.Failure{{Hang: "body"}, {Status: 503}},
			ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "cat one.txt"}}}},
		{Content: "Survived.", ExpectLastContains: []string{"step one"}},
	}}
	srv := llmtest.Start(t, sc)
	p := scripted(t, srv, func(c *provider.Config) {
		c.Retry = provider.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}
		c.Timeouts = provider.Timeouts{FirstByte: 10 * time.Second, Idle: time.Second}
	})
	res, err := Run(context.Background(), e2eTask("p"), e.client, p, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if res.FinalAnswer != "Survived." || len(srv.Mismatches()) > 0 {
		t.Errorf("end %+v, mismatches %v", res.End, srv.Mismatches())
	}
	calls := []*transcript.ModelCall{res.Transcript.Messages[2].Call, res.Transcript.Messages[4].Call}
	kinds := func(c *transcript.ModelCall) string {
		var k []string
		for _, r := range c.Retries {
			k = append(k, r.Kind)
		}
		return strings.Join(k, ",")
	}
	if calls[0].Attempts != 4 || kinds(calls[0]) != "rate_limited,server_error,network" {
		t.Errorf("first call: %d attempts, retries %s", calls[0].Attempts, kinds(calls[0]))
	}
	if calls[1].Attempts != 3 || kinds(calls[1]) != "timeout,server_error" {
		t.Errorf("second call: %d attempts, retries %s", calls[1].Attempts, kinds(calls[1]))
	}
	validTranscript(t, res.Transcript)
}

func TestE2EModelThatNeverStops(t *testing.T) {
	e := startEnvd(t)
	sc := &llmtest.Scenario{Name: "m", Loop: true, Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "echo again >> log.txt"}}}},
	}}
	srv := llmtest.Start(t, sc)
	task := e2eTask("p")
	task.Limits.MaxSteps = 5
	res, err := Run(context.Background(), task, e.client, scripted(t, srv, nil), Options{Logger: quiet})
	var ee *EndError
	if !errors.As(err, &ee) || ee.Reason != ReasonMaxSteps || res.Steps != 5 {
		t.Fatalf("err = %v", err)
	}
	if got := e.readHost(t, "home/user/log.txt"); got != strings.Repeat("again\n", 5) {
		t.Errorf("log.txt = %q: every step's command runs, and no more", got)
	}
	validTranscript(t, res.Transcript)
}

func TestE2ETimeouts(t *testing.T) {
	t.Run("task timeout kills the running command", func(t *testing.T) {
		e := startEnvd(t)
		marker := fmt.Sprintf("sleep 31.%d", time.Now().UnixNano()%1000)
		sc := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": marker}}}},
			{Content: "never reached"},
		}}
		srv := llmtest.Start(t, sc)
		task := e2eTask("p")
		task.Limits.Timeout = time.Second
		res, err := Run(context.Background(), task, e.client, scripted(t, srv, nil), Options{Logger: quiet})
		if err == nil || res.End.Reason != ReasonTimeout {
			t.Fatalf("err = %v end = %+v", err, res.End)
		}
		waitGone(t, marker)
		validTranscript(t, res.Transcript)
	})
	t.Run("command timeout", func(t *testing.T) {
		e := startEnvd(t)
		marker := fmt.Sprintf("sleep 32.%d", time.Now().UnixNano()%1000)
		sc := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "echo started; " + marker}}}},
			{Content: "It was too slow.", ExpectLastContains: []string{"timed out after 1s", "started"}},
		}}
		srv := llmtest.Start(t, sc)
		task := e2eTask("p")
		task.Limits.CommandTimeout = time.Second
		res, err := Run(context.Background(), task, e.client, scripted(t, srv, nil), Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if mm := srv.Mismatches(); len(mm) > 0 {
			t.Errorf("mismatches: %v", mm)
		}
		if tm := toolMessages(res.Transcript)[0]; !tm.Tool.TimedOut {
			t.Errorf("tool = %+v", tm.Tool)
		}
		waitGone(t, marker)
	})
}

// waitGone waits for a process whose command line contains marker to end (the sandbox's processes
// are host processes in standalone envd).
func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", marker).Output()
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			exec.Command("pkill", "-f", marker).Run()
			t.Fatalf("%q still runs: pids %s", marker, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestE2EFloodOfOutput(t *testing.T) {
	e := startEnvd(t)
	sc := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{
			{Name: "run_commands", Args: map[string]any{"command": "yes 'line of output' | head -c 30000000; echo; echo THE END"}},
			{Name: "run_commands", Args: map[string]any{"command": "head -c 3000000 /dev/urandom >&2; echo done"}},
			{Name: "run_commands", Args: map[string]any{"command": "head -c 20000000 /dev/zero | tr '\\0' x > big.txt"}},
			{Name: "read_file", Args: map[string]any{"path": "big.txt"}},
		}},
		{Content: "ok"},
	}}
	srv := llmtest.Start(t, sc)
	task := e2eTask("p")
	task.Limits.MaxResultBytes = 4000
	res, err := Run(context.Background(), task, e.client, scripted(t, srv, nil), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tools := toolMessages(res.Transcript)
	flood := tools[0]
	if len(flood.Content) > 4200 || !flood.Tool.Truncated || flood.Tool.OutputBytes != int64(30000000+len("\nTHE END\n")) ||
		!strings.Contains(flood.Content, "bytes truncated ...]") || !strings.HasSuffix(flood.Content, "THE END") ||
		!strings.HasPrefix(flood.Content, "exit code: 0\nstdout:\nline of output\n") {
		t.Errorf("flood result: %d bytes, tool %+v, head %.80q tail %q", len(flood.Content), flood.Tool, flood.Content, flood.Content[max(0, len(flood.Content)-40):])
	}
	bin := tools[1]
	if len(bin.Content) > 4200 || !bin.Tool.Truncated || !strings.Contains(bin.Content, "stdout:\ndone") {
		t.Errorf("binary flood: %d bytes, %+v", len(bin.Content), bin.Tool)
	}
	read := tools[3]
	if len(read.Content) > 4000 || !read.Tool.Truncated || read.Tool.OutputBytes != 8<<20+1 || !strings.Contains(read.Content, "read stopped after") {
		t.Errorf("big read: %d bytes, %+v", len(read.Content), read.Tool)
	}
	// What the model was sent is what the transcript says.
	req := srv.Requests()[1]
	if got := req.Messages[3].Text(); got != flood.Content {
		t.Errorf("sent %d bytes, transcript has %d", len(got), len(flood.Content))
	}
	validTranscript(t, res.Transcript)
}

func TestE2EBackgroundCommands(t *testing.T) {
	e := startEnvd(t)
	server := "for i in 1 2 3; do echo tick $i; sleep 0.05; done; echo oops >&2; exec sleep 33.5"
	// Each step finds the pid in the last message the model was sent (the previous result).
	pidArg := map[string]any{"pid": "{{last:pid (\\d+)}}"}
	sc := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": server, "background": true}}}},
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "sleep 0.5; echo the pid was {{last:pid (\\d+)}}"}}}},
		{ToolCalls: []llmtest.ToolCall{{Name: "command_output", Args: map[string]any{"pid": "{{last:pid was (\\d+)}}"}}}},
		{ToolCalls: []llmtest.ToolCall{{Name: "command_output", Args: pidArg}}},
		{ToolCalls: []llmtest.ToolCall{{Name: "kill_command", Args: pidArg}}},
		{ToolCalls: []llmtest.ToolCall{{Name: "command_output", Args: pidArg}}},
		{Content: "done"},
	}}
	srv := llmtest.Start(t, sc)
	var pid uint32
	obs := func(ev Event) {
		if ev.Type == EventToolEnd && ev.Tool != nil && ev.Tool.PID != 0 {
			pid = ev.Tool.PID
		}
	}
	res, err := Run(context.Background(), e2eTask("p"), e.client, scripted(t, srv, nil), Options{Logger: quiet, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	tools := toolMessages(res.Transcript)
	if pid == 0 || !strings.Contains(tools[0].Content, fmt.Sprintf("pid %d", pid)) {
		t.Fatalf("start result %q (pid %d)", tools[0].Content, pid)
	}
	first := tools[2].Content
	if !strings.Contains(first, fmt.Sprintf("pid %d: running", pid)) || !strings.Contains(first, "stdout:\ntick 1\ntick 2\ntick 3") || !strings.Contains(first, "stderr:\noops") {
		t.Errorf("first output read: %q", first)
	}
	if second := tools[3].Content; !strings.Contains(second, "running") || !strings.Contains(second, "(no new output)") {
		t.Errorf("second read: %q", second)
	}
	if kill := tools[4].Content; !strings.Contains(kill, fmt.Sprintf("Stopped pid %d", pid)) {
		t.Errorf("kill: %q", kill)
	}
	if after := tools[5].Content; strings.Contains(after, "running") {
		t.Errorf("after kill: %q", after)
	}
	waitGone(t, "sleep 33.5")
}

func TestE2EReplay(t *testing.T) {
	e := startEnvd(t)
	srv := llmtest.Start(t, writeAndTest(llmtest.ShapeFragments))
	orig, err := Run(context.Background(), e2eTask("write hello.sh and run it"), e.client, scripted(t, srv, nil), Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "transcript.json")
	if err := orig.Transcript.WriteFile(path); err != nil {
		t.Fatal(err)
	}

	fresh := startEnvd(t)
	p, ref, err := provider.Open("replay:"+path, provider.Config{})
	if err != nil {
		t.Fatal(err)
	}
	task := e2eTask("write hello.sh and run it")
	task.Model = ref.String()
	res, err := Run(context.Background(), task, fresh.client, p, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if got := fresh.readHost(t, "home/user/hello.sh"); got != helloScript {
		t.Errorf("the replay wrote %q", got)
	}
	a, b := toolMessages(orig.Transcript), toolMessages(res.Transcript)
	if len(a) != len(b) {
		t.Fatalf("%d tool results, recorded %d", len(b), len(a))
	}
	for i := range a {
		if a[i].Content != b[i].Content {
			t.Errorf("result %d differs: %q vs recorded %q", i, b[i].Content, a[i].Content)
		}
	}
	if res.Transcript.Replay == nil || res.Transcript.Replay.TranscriptID != orig.Transcript.ID || res.FinalAnswer != orig.FinalAnswer {
		t.Errorf("replay = %+v", res.Transcript.Replay)
	}
	if n := len(srv.Requests()); n != 4 {
		t.Errorf("the replay called the model (%d requests)", n)
	}
	validTranscript(t, res.Transcript)
}

func TestE2ESandboxGone(t *testing.T) {
	e := startEnvd(t)
	sc := &llmtest.Scenario{Name: "m", Loop: true, Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "true"}}}},
	}}
	srv := llmtest.Start(t, sc)
	obs := func(ev Event) {
		if ev.Type == EventToolStart && ev.Step == 2 {
			e.Kill()
		}
	}
	res, err := Run(context.Background(), e2eTask("p"), e.client, scripted(t, srv, nil), Options{Logger: quiet, Observer: obs})
	if err == nil || res.End.Reason != ReasonSandboxError || res.Steps != 2 {
		t.Fatalf("err = %v, end %+v", err, res.End)
	}
	validTranscript(t, res.Transcript)
}

// BenchmarkLoop measures the loop's cost per task with a zero-latency scripted model that asks for
// ten tool calls, one per step, then answers. "envd" runs each call (`true`) in a standalone envd
// through the envd client; "baseline" calls an unknown tool, so no sandbox is involved: the loop,
// the HTTP round trips to the model and the transcript alone. Reports p50 and p99 per task.
func BenchmarkLoop(b *testing.B) {
	for _, mode := range []string{"baseline", "envd"} {
		b.Run(mode, func(b *testing.B) {
			call := llmtest.ToolCall{Name: "run_commands", Args: map[string]any{"command": "true"}}
			if mode == "baseline" {
				call = llmtest.ToolCall{Name: "no_such_tool", Args: map[string]any{}}
			}
			var turns []llmtest.Turn
			for range 10 {
				turns = append(turns, llmtest.Turn{ToolCalls: []llmtest.ToolCall{call}})
			}
			turns = append(turns, llmtest.Turn{Content: "done"})
			srv, err := llmtest.NewServer(&llmtest.Scenario{Name: "m", Turns: turns})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			p, err := provider.New(provider.Config{BaseURL: srv.URL(), APIKey: "k", Logger: quiet, Getenv: func(string) string { return "" }})
			if err != nil {
				b.Fatal(err)
			}
			opts := Options{Logger: quiet}
			var sb *envdclient.Client
			if mode == "envd" {
				sb = startEnvd(b).client
			} else {
				opts = *noSandbox(&opts)
			}
			durs := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := Run(context.Background(), Task{Prompt: fmt.Sprintf("task %d", i), Model: "m", Workdir: workdir}, sb, p, opts)
				if err != nil || res.Steps != 11 {
					b.Fatalf("task: %v (%d steps)", err, res.Steps)
				}
				durs = append(durs, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "p50-ms/task")
			b.ReportMetric(float64(durs[(len(durs)*99)/100].Microseconds())/1000, "p99-ms/task")
		})
	}
}

// TestLiveEndpoint runs a small task against a real model endpoint when AGENT_LIVE_BASE_URL,
// AGENT_LIVE_MODEL and AGENT_LIVE_API_KEY are set (AGENT_LIVE_NO_STREAM=1 for non-streaming); no
// endpoint is reachable from CI, so it is skipped there.
func TestLiveEndpoint(t *testing.T) {
	base, model, key := os.Getenv("AGENT_LIVE_BASE_URL"), os.Getenv("AGENT_LIVE_MODEL"), os.Getenv("AGENT_LIVE_API_KEY")
	if base == "" || model == "" {
		t.Skip("set AGENT_LIVE_BASE_URL, AGENT_LIVE_MODEL and AGENT_LIVE_API_KEY to run against a real endpoint")
	}
	e := startEnvd(t)
	p, err := provider.New(provider.Config{BaseURL: base, APIKey: key, NoStream: os.Getenv("AGENT_LIVE_NO_STREAM") == "1"})
	if err != nil {
		t.Fatal(err)
	}
	task := Task{Name: "live", Model: "custom:" + model, Workdir: workdir,
		Prompt: "Create a file named greeting.txt containing exactly the text: hello from the agent. " +
			"Then run `cat greeting.txt` to check it.",
		Limits: Limits{MaxSteps: 10, Timeout: 5 * time.Minute}}
	res, err := Run(context.Background(), task, e.client, p, Options{Observer: TextObserver(os.Stderr, 4)})
	if err != nil {
		t.Fatalf("live task: %v", err)
	}
	validTranscript(t, res.Transcript)
	if got := strings.TrimSpace(e.readHost(t, "home/user/greeting.txt")); got != "hello from the agent." && got != "hello from the agent" {
		t.Errorf("greeting.txt = %q", got)
	}
}
