package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/tools"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
)

// These tests drive the loop with the scripted model and no sandbox at all: every tool call they
// script fails before it would reach a sandbox (unknown tools, malformed arguments). The tools'
// Set is made over a nil sandbox, so a call that reached it would be reported as an internal error
// and fail the assertions. Tests with a real sandbox are in e2e_test.go.

var quiet = slog.New(slog.DiscardHandler)

func scripted(t *testing.T, srv *llmtest.Server, mod func(*provider.Config)) *provider.OpenAI {
	t.Helper()
	cfg := provider.Config{
		BaseURL: srv.URL(), APIKey: "k", Logger: quiet,
		Getenv: func(string) string { return "" },
		Retry:  provider.RetryPolicy{MaxAttempts: 3, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := provider.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) observe(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Type != EventDelta {
			out = append(out, string(e.Type))
		}
	}
	return out
}

func noSandbox(opts *Options) *Options {
	if opts == nil {
		opts = &Options{}
	}
	opts.Tools = tools.New(nil, tools.Config{})
	opts.Logger = quiet
	return opts
}

func validTranscript(t *testing.T, tr *transcript.Transcript) {
	t.Helper()
	b, err := tr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := transcript.Validate(b); err != nil {
		t.Fatalf("transcript invalid: %v\n%s", err, b)
	}
}

func TestRunCompletesWithoutTools(t *testing.T) {
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: "Hello there.", Usage: &llmtest.Usage{PromptTokens: 10, CompletionTokens: 3}}}})
	rec := &recorder{}
	res, err := Run(context.Background(), Task{Name: "hi", Prompt: "Say hello.", Model: "custom:m"},
		nil, scripted(t, srv, nil), *noSandbox(&Options{Observer: rec.observe}))
	if err != nil {
		t.Fatal(err)
	}
	if res.End.Reason != ReasonCompleted || res.FinalAnswer != "Hello there." || res.Steps != 1 {
		t.Errorf("result = %+v", res)
	}
	if res.Usage.TotalTokens != 13 || res.CostKnown {
		t.Errorf("usage = %+v, cost known %v", res.Usage, res.CostKnown)
	}
	want := "task_start,step_start,assistant,task_end"
	if got := strings.Join(rec.types(), ","); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	tr := res.Transcript
	validTranscript(t, tr)
	if tr.Model != "custom:m" || tr.Provider.Name != "custom" || !tr.Provider.Streaming || tr.Replay != nil {
		t.Errorf("transcript header = %+v", tr)
	}
	if len(tr.Tools) != 7 || tr.Limits.MaxSteps != DefaultMaxSteps {
		t.Errorf("tools %d, limits %+v", len(tr.Tools), tr.Limits)
	}
	r := srv.Requests()[0]
	if r.Model != "m" || r.Messages[0].Role != "system" || !strings.Contains(r.Messages[0].Text(), "coding agent") || r.Messages[1].Text() != "Say hello." {
		t.Errorf("request = %+v", r)
	}
	if len(res.Messages) != 2 || res.Messages[0].Role != provider.RoleUser || res.Messages[1].Content != "Hello there." {
		t.Errorf("messages for the next turn = %+v", res.Messages)
	}
}

func TestRunHostileModelOutput(t *testing.T) {
	hostile := llmtest.Turn{
		Content: "Trying things.",
		ToolCalls: []llmtest.ToolCall{
			{ID: "c1", Name: "delete_everything", Arguments: `{}`},
			{ID: "c2", Name: "read_file", Arguments: `{"path": "a.txt"`},
			{ID: "c3", Name: "run_commands", Arguments: `{"command": 42}`},
			{Name: "write_file", Arguments: `not json at all`, NoID: true},
		},
		Interleave: true,
	}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{hostile, {Content: "I give up."}}})
	res, err := Run(context.Background(), Task{Prompt: "p", Model: "m"}, nil, scripted(t, srv, nil), *noSandbox(nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.End.Reason != ReasonCompleted || res.FinalAnswer != "I give up." || res.Steps != 2 {
		t.Fatalf("result = %+v", res.End)
	}
	tr := res.Transcript
	validTranscript(t, tr)
	// system, user, assistant, 4 tool results, assistant.
	if len(tr.Messages) != 8 {
		t.Fatalf("%d messages", len(tr.Messages))
	}
	if got := tr.Messages[2].ToolCalls[1].Arguments; got != `{"path": "a.txt"` {
		t.Errorf("transcript lost the raw arguments: %q", got)
	}
	if id := tr.Messages[2].ToolCalls[3].ID; id != "call_1_3" {
		t.Errorf("id given to a call without one = %q", id)
	}
	wants := []string{`unknown tool "delete_everything"`, "not valid JSON", `argument "command" must be a string`, "not valid JSON"}
	for i, want := range wants {
		m := tr.Messages[3+i]
		if m.Role != "tool" || !m.Tool.Error || !strings.Contains(m.Content, want) || m.ToolCallID != tr.Messages[2].ToolCalls[i].ID {
			t.Errorf("tool message %d = %+v, want error %q", i, m, want)
		}
	}
	// The second request carries the results, and malformed arguments replaced by {}.
	r := srv.Requests()[1]
	a := r.Messages[2]
	if a.Role != "assistant" || len(a.ToolCalls) != 4 {
		t.Fatalf("assistant message sent back = %+v", a)
	}
	for i, want := range []string{`{}`, `{}`, `{"command": 42}`, `{}`} {
		if a.ToolCalls[i].Function.Arguments != want {
			t.Errorf("call %d sent back with arguments %q, want %q", i, a.ToolCalls[i].Function.Arguments, want)
		}
	}
	for i := range 4 {
		m := r.Messages[3+i]
		if m.Role != "tool" || m.ToolCallID != a.ToolCalls[i].ID || !strings.Contains(m.Text(), wants[i]) {
			t.Errorf("tool result %d sent = %+v", i, m)
		}
	}
}

func TestRunMaxSteps(t *testing.T) {
	forever := llmtest.Turn{ToolCalls: []llmtest.ToolCall{{Name: "look_around", Args: map[string]any{}}}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Loop: true, Turns: []llmtest.Turn{forever}})
	res, err := Run(context.Background(), Task{Prompt: "p", Model: "m", Limits: Limits{MaxSteps: 4}}, nil, scripted(t, srv, nil), *noSandbox(nil))
	var ee *EndError
	if !errors.As(err, &ee) || ee.Reason != ReasonMaxSteps || res.End.Reason != ReasonMaxSteps || res.Steps != 4 {
		t.Fatalf("err = %v, res = %+v", err, res)
	}
	if n := len(srv.Requests()); n != 4 {
		t.Errorf("%d model calls, want 4", n)
	}
	validTranscript(t, res.Transcript)
	if !strings.Contains(res.End.Detail, "4 steps") {
		t.Errorf("detail = %q", res.End.Detail)
	}
}

func TestRunTokenAndCostBudgets(t *testing.T) {
	turn := llmtest.Turn{ToolCalls: []llmtest.ToolCall{{Name: "nope", Args: map[string]any{}}}, Usage: &llmtest.Usage{PromptTokens: 800, CompletionTokens: 200}}
	sc := &llmtest.Scenario{Name: "m", Loop: true, Turns: []llmtest.Turn{turn}}
	prices, err := ParsePrices([]byte("models:\n  custom:m: {input: 1.0, output: 10.0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// One call costs 800*1/1e6 + 200*10/1e6 = $0.0028 and 1000 tokens.
	cases := []struct {
		name   string
		limits Limits
		budget *Budget
		reason Reason
		calls  int
	}{
		{"task tokens", Limits{MaxTokens: 2500}, nil, ReasonMaxTokens, 3},
		{"task cost", Limits{MaxCost: 0.005}, nil, ReasonMaxCost, 2},
		{"run cost", Limits{}, NewBudget(0.0028*4-0.0001, 0), ReasonMaxCost, 4},
		{"run tokens", Limits{}, NewBudget(0, 1000), ReasonMaxTokens, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := llmtest.Start(t, sc)
			res, err := Run(context.Background(), Task{Prompt: "p", Model: "custom:m", Limits: c.limits}, nil, scripted(t, srv, nil),
				*noSandbox(&Options{Prices: prices, Budget: c.budget}))
			if err == nil || res.End.Reason != c.reason {
				t.Fatalf("err = %v, end = %+v", err, res.End)
			}
			if n := len(srv.Requests()); n != c.calls {
				t.Errorf("%d model calls, want %d", n, c.calls)
			}
			validTranscript(t, res.Transcript)
			if !res.CostKnown || res.Transcript.Usage.CostUSD == nil {
				t.Errorf("cost unknown with a price table")
			}
			// The last answer's calls were not carried out.
			last := res.Transcript.Messages[len(res.Transcript.Messages)-1]
			if last.Role != "assistant" || len(last.ToolCalls) != 1 {
				t.Errorf("last message = %+v", last)
			}
		})
	}
	t.Run("a budget shared by two tasks", func(t *testing.T) {
		srv := llmtest.Start(t, sc)
		b := NewBudget(0, 3000)
		p := scripted(t, srv, nil)
		res1, _ := Run(context.Background(), Task{Prompt: "one", Model: "m"}, nil, p, *noSandbox(&Options{Budget: b}))
		res2, _ := Run(context.Background(), Task{Prompt: "two", Model: "m"}, nil, p, *noSandbox(&Options{Budget: b}))
		if res1.Steps != 3 || res2.Steps != 0 || res2.End.Reason != ReasonMaxTokens {
			t.Errorf("first task %d steps (%s), second %d steps (%s)", res1.Steps, res1.End.Reason, res2.Steps, res2.End.Reason)
		}
		if tok, _ := b.Spent(); tok != 3000 {
			t.Errorf("spent %d tokens", tok)
		}
	})
	t.Run("cost limit without a price", func(t *testing.T) {
		srv := llmtest.Start(t, sc)
		res, err := Run(context.Background(), Task{Prompt: "p", Model: "other", Limits: Limits{MaxCost: 1}}, nil, scripted(t, srv, nil), *noSandbox(&Options{Prices: prices}))
		if res != nil || err == nil || !strings.Contains(err.Error(), "no price for model other") {
			t.Errorf("res %v err %v", res, err)
		}
		if len(srv.Requests()) != 0 {
			t.Error("the model was called")
		}
	})
}

func TestRunModelErrors(t *testing.T) {
	t.Run("auth fails fast", func(t *testing.T) {
		srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", APIKey: "right", Turns: []llmtest.Turn{{Content: "x"}}})
		res, err := Run(context.Background(), Task{Prompt: "p", Model: "m"}, nil, scripted(t, srv, nil), *noSandbox(nil))
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Kind != provider.KindAuth || res.End.Reason != ReasonModelError || res.End.ErrorKind != "auth" {
			t.Fatalf("err = %v, end = %+v", err, res.End)
		}
		if len(srv.Requests()) != 1 {
			t.Errorf("%d requests", len(srv.Requests()))
		}
		validTranscript(t, res.Transcript)
	})
	t.Run("429 then success is recorded", func(t *testing.T) {
		turn := llmtest.Turn{Content: "ok", Failures: []llmtest.Failure{{Status: 429, RetryAfter: "2"}}}
		srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
		rec := &recorder{}
		res, err := Run(context.Background(), Task{Prompt: "p", Model: "m"}, nil, scripted(t, srv, nil), *noSandbox(&Options{Observer: rec.observe}))
		if err != nil {
			t.Fatal(err)
		}
		call := res.Transcript.Messages[2].Call
		if call.Attempts != 2 || len(call.Retries) != 1 || call.Retries[0].Kind != "rate_limited" || call.Retries[0].WaitMS != 2000 {
			t.Errorf("call = %+v", call)
		}
		if got := strings.Join(rec.types(), ","); got != "task_start,step_start,retry,assistant,task_end" {
			t.Errorf("events = %s", got)
		}
		validTranscript(t, res.Transcript)
	})
	t.Run("500s until the attempts run out", func(t *testing.T) {
		turn := llmtest.Turn{Content: "x", Failures: []llmtest.Failure{{Status: 500}, {Status: 502}, {Status: 500}}}
		srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
		res, err := Run(context.Background(), Task{Prompt: "p", Model: "m"}, nil, scripted(t, srv, nil), *noSandbox(nil))
		if err == nil || res.End.Reason != ReasonModelError || res.End.ErrorKind != "server_error" || !strings.Contains(res.End.Detail, "after 3 attempts") {
			t.Fatalf("err = %v, end = %+v", err, res.End)
		}
	})
}

func TestRunTimeoutAndCancel(t *testing.T) {
	hang := &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: "x", Failures: []llmtest.Failure{{Hang: "headers"}, {Hang: "headers"}, {Hang: "headers"}}}}}
	t.Run("task timeout during a model call", func(t *testing.T) {
		srv := llmtest.Start(t, hang)
		res, err := Run(context.Background(), Task{Prompt: "p", Model: "m", Limits: Limits{Timeout: 200 * time.Millisecond}}, nil, scripted(t, srv, nil), *noSandbox(nil))
		if !errors.Is(err, context.DeadlineExceeded) || res.End.Reason != ReasonTimeout {
			t.Fatalf("err = %v, end = %+v", err, res.End)
		}
		validTranscript(t, res.Transcript)
	})
	t.Run("canceled by the caller", func(t *testing.T) {
		srv := llmtest.Start(t, hang)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for len(srv.Requests()) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
		}()
		res, err := Run(ctx, Task{Prompt: "p", Model: "m", Limits: Limits{Timeout: time.Minute}}, nil, scripted(t, srv, nil), *noSandbox(nil))
		if !errors.Is(err, context.Canceled) || res.End.Reason != ReasonCanceled {
			t.Fatalf("err = %v, end = %+v", err, res.End)
		}
	})
}

func TestRunMaxCallsPerStep(t *testing.T) {
	var calls []llmtest.ToolCall
	for range 5 {
		calls = append(calls, llmtest.ToolCall{Name: "x", Args: map[string]any{}})
	}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{ToolCalls: calls}, {Content: "done"}}})
	res, err := Run(context.Background(), Task{Prompt: "p", Model: "m", Limits: Limits{MaxCallsPerStep: 2}}, nil, scripted(t, srv, nil), *noSandbox(nil))
	if err != nil {
		t.Fatal(err)
	}
	msgs := res.Transcript.Messages
	for i := 3; i < 8; i++ {
		skipped := strings.Contains(msgs[i].Content, "at most 2 tool calls")
		if skipped != (i >= 5) {
			t.Errorf("tool message %d: %q", i, msgs[i].Content)
		}
	}
}

func TestReplayWithoutSandbox(t *testing.T) {
	// Record a run whose calls never reach a sandbox, then replay it: the replay asks no endpoint,
	// produces the same tool results, and says it is a replay.
	turns := []llmtest.Turn{
		{Content: "first", ToolCalls: []llmtest.ToolCall{{Name: "read_file", Arguments: `{"path": 7}`}}, Usage: &llmtest.Usage{PromptTokens: 5, CompletionTokens: 5}},
		{Content: "final answer"},
	}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: turns})
	orig, err := Run(context.Background(), Task{Name: "rec", Prompt: "p", Model: "novita:m"}, nil, scripted(t, srv, nil), *noSandbox(nil))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rec.json")
	if err := orig.Transcript.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	rp, err := provider.LoadReplay(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Task{Name: "rec", Prompt: "p", Model: "replay:" + path}, nil, rp, *noSandbox(nil))
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Transcript
	validTranscript(t, tr)
	if tr.Replay == nil || tr.Replay.Source != path || tr.Replay.TranscriptID != orig.Transcript.ID || tr.Replay.Model != "novita:m" || tr.Provider.Name != "replay" {
		t.Errorf("replay header = %+v provider %+v", tr.Replay, tr.Provider)
	}
	if !tr.Messages[2].Call.Replayed || tr.Messages[3].Content != orig.Transcript.Messages[3].Content || res.FinalAnswer != "final answer" {
		t.Errorf("replayed messages differ")
	}
	if res.Usage.TotalTokens != orig.Usage.TotalTokens {
		t.Errorf("replayed usage %d, recorded %d", res.Usage.TotalTokens, orig.Usage.TotalTokens)
	}
	if len(srv.Requests()) != 2 {
		t.Errorf("the replay called the endpoint")
	}
	// A replay asked for more turns than recorded fails with replay_exhausted.
	rp2, _ := provider.LoadReplay(path)
	res, err = Run(context.Background(), Task{Prompt: "p", Model: "replay:x", History: orig.Messages}, nil, rp2, *noSandbox(nil))
	if err != nil {
		t.Fatalf("a replay continuing a conversation: %v", err)
	}
	res, err = Run(context.Background(), Task{Prompt: "again", Model: "replay:x"}, nil, rp2, *noSandbox(nil))
	if err == nil || res.End.ErrorKind != "replay_exhausted" {
		t.Errorf("exhausted replay: err %v end %+v", err, res.End)
	}
}

func TestEventsMarshal(t *testing.T) {
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "nope", Args: map[string]any{"a": 1}}}},
		{Content: "ok"},
	}})
	var lines []string
	_, err := Run(context.Background(), Task{Name: "ev", Prompt: "p", Model: "m"}, nil, scripted(t, srv, nil), *noSandbox(&Options{Observer: func(e Event) {
		b, err := json.Marshal(e)
		if err != nil {
			t.Error(err)
		}
		lines = append(lines, string(b))
	}}))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{`"type":"task_start"`, `"type":"tool_start"`, `"tool_call":{"id":"call_0_0","name":"nope"`, `"type":"tool_end"`, `"type":"task_end"`, `"end":{"reason":"completed"}`, `"task":"ev"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("events lack %s:\n%s", want, joined)
		}
	}
}

func TestPrices(t *testing.T) {
	p, err := ParsePrices([]byte("models:\n  novita:a/b: {input: 2, output: 4}\n  c: {input: 1, output: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]float64{"novita:a/b": 2, "c": 1, "openai:c": 1, "ollama:c": 1} {
		pr, ok := p.Lookup(model)
		if !ok || pr.Input != want {
			t.Errorf("Lookup(%s) = %v %v", model, pr, ok)
		}
	}
	if _, ok := p.Lookup("a/b"); ok {
		t.Error("a prefixed price matched a bare id")
	}
	if c := (Price{Input: 2, Output: 4}).Cost(provider.Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000}); c != 4 {
		t.Errorf("cost = %v", c)
	}
	for _, bad := range []string{"models:\n  a: {input: -1, output: 1}\n", "models:\n  a: {inptu: 1}\n", "prices: {}\n", "models:\n  a: {input: .nan, output: 1}\n"} {
		if _, err := ParsePrices([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestObservers(t *testing.T) {
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{
		{Content: "Looking.", ToolCalls: []llmtest.ToolCall{{Name: "nope", Args: map[string]any{"x": "y"}}}},
		{Content: "All done."},
	}})
	var text, jsonl strings.Builder
	to, jo := TextObserver(&text, 3), JSONLObserver(&jsonl, false)
	_, err := Run(context.Background(), Task{Name: "obs", Prompt: "p", Model: "m"}, nil, scripted(t, srv, nil),
		*noSandbox(&Options{Observer: func(e Event) { to(e); jo(e) }}))
	if err != nil {
		t.Fatal(err)
	}
	want := "── step 1 ──\nLooking.\n→ nope {\"x\":\"y\"}\n  Error: unknown tool \"nope\"."
	if !strings.HasPrefix(text.String(), want) || !strings.Contains(text.String(), "All done.\n■ completed after 2 steps") {
		t.Errorf("text view:\n%s", text.String())
	}
	lines := strings.Split(strings.TrimSpace(jsonl.String()), "\n")
	for _, l := range lines {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Type == EventDelta || e.Task != "obs" {
			t.Errorf("jsonl line %q: %v", l, err)
		}
	}
	if len(lines) != 8 {
		t.Errorf("%d jsonl events:\n%s", len(lines), jsonl.String())
	}
}
