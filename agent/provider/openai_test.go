package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/internal/llmtest"
)

// sleeps records the waits a provider asked for instead of spending them.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newTestProvider(t *testing.T, srv *llmtest.Server, mod func(*Config)) (*OpenAI, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	cfg := Config{
		BaseURL: srv.URL(),
		APIKey:  "test-key",
		Retry:   RetryPolicy{MaxAttempts: 4, Sleep: sl.sleep},
		Timeouts: Timeouts{
			Connect: 5 * time.Second, FirstByte: 10 * time.Second, Idle: 10 * time.Second, Total: time.Minute,
		},
		Getenv: func(string) string { return "" },
		Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, sl
}

var readFileSpec = ToolSpec{
	Name:        "read_file",
	Description: "Read contents of a file inside the sandbox",
	Parameters:  json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}`),
}

func request(model string) *Request {
	return &Request{
		Model: model,
		Messages: []Message{
			{Role: RoleSystem, Content: "You are a coding agent."},
			{Role: RoleUser, Content: "Read the notes."},
		},
		Tools: []ToolSpec{readFileSpec},
	}
}

func twoCallTurn(shape llmtest.Shape, interleave bool) llmtest.Turn {
	return llmtest.Turn{
		Content:    "Let me look — ünïcode ✓.",
		Stream:     shape,
		Fragment:   3,
		Interleave: interleave,
		ToolCalls: []llmtest.ToolCall{
			{ID: "call_a", Name: "read_file", Args: map[string]any{"path": "notes/ä.txt"}},
			{ID: "call_b", Name: "write_file", Arguments: `{"path":"out.txt","data":"line1\nline2 ✓"}`},
		},
		Usage: &llmtest.Usage{PromptTokens: 120, CompletionTokens: 30},
	}
}

func TestCompleteToolCallShapes(t *testing.T) {
	cases := []struct {
		name       string
		noStream   bool
		shape      llmtest.Shape
		interleave bool
	}{
		{"non-streaming", true, "", false},
		{"fragments", false, llmtest.ShapeFragments, false},
		{"fragments interleaved", false, llmtest.ShapeFragments, true},
		{"whole", false, llmtest.ShapeWhole, false},
		{"whole same index", false, llmtest.ShapeWholeSameIndex, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{twoCallTurn(tc.shape, tc.interleave)}})
			p, _ := newTestProvider(t, srv, func(c *Config) { c.NoStream = tc.noStream })
			var deltas strings.Builder
			resp, err := p.Complete(context.Background(), request("m"), Hooks{OnDelta: func(d Delta) { deltas.WriteString(d.Content) }})
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			m := resp.Message
			if m.Content != "Let me look — ünïcode ✓." {
				t.Errorf("content = %q", m.Content)
			}
			if deltas.String() != m.Content {
				t.Errorf("deltas %q != content %q", deltas.String(), m.Content)
			}
			if len(m.ToolCalls) != 2 {
				t.Fatalf("tool calls = %+v", m.ToolCalls)
			}
			want := []ToolCall{
				{ID: "call_a", Name: "read_file", Arguments: `{"path":"notes/ä.txt"}`},
				{ID: "call_b", Name: "write_file", Arguments: `{"path":"out.txt","data":"line1\nline2 ✓"}`},
			}
			for i := range want {
				if m.ToolCalls[i] != want[i] {
					t.Errorf("call %d = %+v, want %+v", i, m.ToolCalls[i], want[i])
				}
			}
			if resp.FinishReason != "tool_calls" {
				t.Errorf("finish = %q", resp.FinishReason)
			}
			if resp.Usage != (Usage{PromptTokens: 120, CompletionTokens: 30, TotalTokens: 150}) {
				t.Errorf("usage = %+v", resp.Usage)
			}
			if resp.Attempts != 1 || len(resp.Retries) != 0 {
				t.Errorf("attempts = %d, retries %v", resp.Attempts, resp.Retries)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 || reqs[0].Stream == tc.noStream {
				t.Fatalf("requests = %+v", reqs)
			}
			if !tc.noStream && !reqs[0].IncludeUsage {
				t.Errorf("streaming request did not ask for usage")
			}
		})
	}
}

func TestCompleteSendsConversation(t *testing.T) {
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: "ok"}, {Content: "fine"}}})
	p, _ := newTestProvider(t, srv, nil)
	req := request("m")
	req.MaxOutputTokens = 512
	seed := int64(1234567)
	req.Seed = &seed
	req.Messages = append(req.Messages,
		Message{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "c1", Name: "read_file", Arguments: `{"path":"a"}`}}},
		Message{Role: RoleTool, ToolCallID: "c1", Content: "contents of a"},
	)
	resp, err := p.Complete(context.Background(), req, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "fine" || resp.FinishReason != "stop" {
		t.Errorf("answer = %+v (step index should be 1: one assistant message in the request)", resp)
	}
	r := srv.Requests()[0]
	if r.Model != "m" || r.MaxTokens != 512 || r.Auth != "Bearer test-key" || r.Path != "/v1/chat/completions" {
		t.Errorf("request = model %q max %d auth %q path %q", r.Model, r.MaxTokens, r.Auth, r.Path)
	}
	if r.Seed == nil || *r.Seed != seed {
		t.Errorf("seed = %v, want %d", r.Seed, seed)
	}
	roles := []string{}
	for _, m := range r.Messages {
		roles = append(roles, m.Role)
	}
	if strings.Join(roles, ",") != "system,user,assistant,tool" {
		t.Errorf("roles = %v", roles)
	}
	if got := r.Messages[2].ToolCalls; len(got) != 1 || got[0].ID != "c1" || got[0].Function.Arguments != `{"path":"a"}` {
		t.Errorf("assistant tool calls = %+v", got)
	}
	if r.Messages[3].ToolCallID != "c1" || r.Messages[3].Text() != "contents of a" {
		t.Errorf("tool message = %+v", r.Messages[3])
	}
	if len(r.Tools) != 1 {
		t.Fatalf("tools = %s", r.Tools)
	}
	var tool struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if err := json.Unmarshal(r.Tools[0], &tool); err != nil {
		t.Fatal(err)
	}
	if tool.Type != "function" || tool.Function.Name != "read_file" || tool.Function.Description != readFileSpec.Description ||
		!strings.Contains(string(tool.Function.Parameters), `"required":["path"]`) {
		t.Errorf("tool = %s", r.Tools[0])
	}
}

func TestRetryRateLimitHonoursRetryAfterAndCutsWindow(t *testing.T) {
	turn := llmtest.Turn{Content: "ok", Failures: []llmtest.Failure{{Status: 429, RetryAfter: "7"}, {Status: 429, RetryAfter: "3"}}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
	lim := NewLimiter(8)
	p, sl := newTestProvider(t, srv, func(c *Config) { c.Limiter = lim })
	var retries []Retry
	resp, err := p.Complete(context.Background(), request("m"), Hooks{OnRetry: func(r Retry) { retries = append(retries, r) }})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "ok" || resp.Attempts != 3 || len(resp.Retries) != 2 || len(retries) != 2 {
		t.Fatalf("resp = %+v, hook retries %d", resp, len(retries))
	}
	waits := sl.all()
	if len(waits) != 2 || waits[0] != 7*time.Second || waits[1] != 3*time.Second {
		t.Errorf("waits = %v, want [7s 3s] from Retry-After", waits)
	}
	if !IsKind(retries[0].Err, KindRateLimited) {
		t.Errorf("retry error = %v", retries[0].Err)
	}
	// Two 429s from calls that each started after the previous cut: 8 → 4 → 2, then one success
	// adds 1/2.
	if w := lim.Window(); w != 2 {
		t.Errorf("window after two 429s and a success = %d, want 2", w)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("server saw %d requests", n)
	}
}

func TestRetryServerErrorsThenSuccess(t *testing.T) {
	turn := llmtest.Turn{Content: "ok", Failures: []llmtest.Failure{{Status: 500}, {Status: 503, Message: "overloaded"}}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
	p, sl := newTestProvider(t, srv, nil)
	resp, err := p.Complete(context.Background(), request("m"), Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempts != 3 || resp.Retries[1].Err.(*Error).Status != 503 {
		t.Errorf("resp = %+v", resp)
	}
	waits := sl.all()
	// Backoff without Retry-After: base 1s with jitter in [d/2, d], doubling.
	if len(waits) != 2 || waits[0] < 500*time.Millisecond || waits[0] > time.Second || waits[1] < time.Second || waits[1] > 2*time.Second {
		t.Errorf("waits = %v", waits)
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	fails := []llmtest.Failure{{Status: 500}, {Status: 500}, {Status: 500}, {Status: 500}, {Status: 500}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: "never", Failures: fails}}})
	p, _ := newTestProvider(t, srv, nil)
	_, err := p.Complete(context.Background(), request("m"), Hooks{})
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindServer || e.Attempts != 4 || e.Status != 500 {
		t.Fatalf("err = %#v", err)
	}
	if n := len(srv.Requests()); n != 4 {
		t.Errorf("server saw %d requests, want 4", n)
	}
}

func TestFailFast(t *testing.T) {
	cases := []struct {
		name    string
		sc      *llmtest.Scenario
		model   string
		kind    ErrorKind
		message string
	}{
		{"unauthorized", &llmtest.Scenario{Name: "m", APIKey: "other", Turns: []llmtest.Turn{{Content: "x"}}}, "m", KindAuth, "check the API key"},
		{"forbidden", &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Failures: []llmtest.Failure{{Status: 403, Message: "no access"}}}}}, "m", KindAuth, "no access"},
		{"unknown model", &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: "x"}}}, "no-such-model", KindUnknownModel, `does not serve model "no-such-model"`},
		{"unknown model 400", &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Failures: []llmtest.Failure{{Status: 400, Message: "Model xyz is not supported"}}}}}, "m", KindUnknownModel, "not supported"},
		{"bad request", &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Failures: []llmtest.Failure{{Status: 400, Message: "context length exceeded"}}}}}, "m", KindBadRequest, "context length exceeded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Two scenarios so that an unknown model id is not served by the only scenario.
			srv := llmtest.Start(t, tc.sc, &llmtest.Scenario{Name: "other-model"})
			p, sl := newTestProvider(t, srv, nil)
			_, err := p.Complete(context.Background(), request(tc.model), Hooks{})
			var e *Error
			if !errors.As(err, &e) || e.Kind != tc.kind {
				t.Fatalf("err = %v, want kind %s", err, tc.kind)
			}
			if !strings.Contains(e.Error(), tc.message) {
				t.Errorf("message %q does not contain %q", e.Error(), tc.message)
			}
			if n := len(srv.Requests()); n != 1 || len(sl.all()) != 0 {
				t.Errorf("fail-fast error was retried: %d requests, waits %v", n, sl.all())
			}
		})
	}
}

func TestWatchdog(t *testing.T) {
	short := func(c *Config) {
		// Short enough to keep the test quick, long enough that a loaded machine does not time out
		// the answers that do come (which would only add retries: the assertions allow them).
		c.Timeouts = Timeouts{Connect: 5 * time.Second, FirstByte: time.Second, Idle: time.Second, Total: time.Minute}
	}
	for _, hang := range []string{"headers", "body"} {
		for _, noStream := range []bool{false, true} {
			t.Run(hang+map[bool]string{false: " stream", true: " whole"}[noStream], func(t *testing.T) {
				turn := llmtest.Turn{Content: "ok", Failures: []llmtest.Failure{{Hang: hang}}}
				srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
				p, _ := newTestProvider(t, srv, func(c *Config) { short(c); c.NoStream = noStream })
				resp, err := p.Complete(context.Background(), request("m"), Hooks{})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Attempts < 2 || !IsKind(resp.Retries[0].Err, KindTimeout) {
					t.Fatalf("resp = %+v", resp)
				}
				if !strings.Contains(resp.Retries[0].Err.Error(), "watchdog") {
					t.Errorf("retry error = %v", resp.Retries[0].Err)
				}
			})
		}
	}
	t.Run("always hangs", func(t *testing.T) {
		fails := []llmtest.Failure{{Hang: "body"}, {Hang: "body"}}
		srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: "x", Failures: fails}}})
		p, _ := newTestProvider(t, srv, func(c *Config) { short(c); c.Retry.MaxAttempts = 2 })
		_, err := p.Complete(context.Background(), request("m"), Hooks{})
		if !IsKind(err, KindTimeout) || !strings.Contains(err.Error(), "stream idle") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("refused connection is retried", func(t *testing.T) {
		srv := llmtest.Start(t, &llmtest.Scenario{Name: "m"})
		url := srv.URL()
		srv.Close()
		p, sl := newTestProvider(t, srv, func(c *Config) { c.BaseURL = url })
		_, err := p.Complete(context.Background(), request("m"), Hooks{})
		if !IsKind(err, KindNetwork) || len(sl.all()) != 3 {
			t.Fatalf("err = %v, waits %v", err, sl.all())
		}
	})
	t.Run("connect hangs", func(t *testing.T) {
		// A listener whose accept queue is full drops new SYNs, so the dial never completes:
		// only the connect timeout ends the attempt.
		addr := stuckListener(t)
		srv := llmtest.Start(t, &llmtest.Scenario{Name: "m"})
		p, sl := newTestProvider(t, srv, func(c *Config) {
			c.BaseURL = "http://" + addr + "/v1"
			c.Timeouts.Connect = time.Second
			c.Retry.MaxAttempts = 2
		})
		done := make(chan error, 1)
		go func() {
			_, err := p.Complete(context.Background(), request("m"), Hooks{})
			done <- err
		}()
		select {
		case err := <-done:
			var perr *Error
			if !errors.As(err, &perr) || perr.Kind != KindTimeout || !strings.Contains(err.Error(), "no connection") {
				t.Fatalf("err = %v (%T), want a connect timeout", err, err)
			}
			if perr.Attempts != 2 || len(sl.all()) != 1 {
				t.Errorf("attempts %d, waits %v: a connect timeout is retried", perr.Attempts, sl.all())
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("the call still hangs on a connection that never completes")
		}
	})
}

// stuckListener listens on 127.0.0.1 with an accept backlog of zero and fills that backlog, so
// the kernel drops every further SYN and dials to the returned address hang. Everything is closed
// at cleanup.
func stuckListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return addr // the backlog is full
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Fatalf("the backlog of %s never filled", addr)
	return ""
}

func TestBrokenAnswersAreRetried(t *testing.T) {
	cases := []struct {
		name string
		f    llmtest.Failure
		kind ErrorKind
	}{
		{"cut connection", llmtest.Failure{Cut: true}, KindNetwork},
		{"error event in stream", llmtest.Failure{StreamError: "upstream overloaded"}, KindServer},
		{"malformed body", llmtest.Failure{Body: `{"choices": [`}, KindProtocol},
		{"empty choices", llmtest.Failure{Body: `{"id":"x","object":"chat.completion","choices":[]}`}, KindProtocol},
	}
	for _, tc := range cases {
		for _, noStream := range []bool{false, true} {
			if tc.f.StreamError != "" && noStream {
				continue
			}
			if tc.f.Body != "" && !noStream {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				turn := llmtest.Turn{Content: "ok", Failures: []llmtest.Failure{tc.f}}
				srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
				p, _ := newTestProvider(t, srv, func(c *Config) { c.NoStream = noStream })
				resp, err := p.Complete(context.Background(), request("m"), Hooks{})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Message.Content != "ok" || resp.Attempts != 2 || !IsKind(resp.Retries[0].Err, tc.kind) {
					t.Fatalf("resp = %+v, first error %v", resp, resp.Retries)
				}
			})
		}
	}
}

func TestBounds(t *testing.T) {
	huge := strings.Repeat("x", 200_000)
	turn := llmtest.Turn{Fragment: 4096, ToolCalls: []llmtest.ToolCall{
		{Name: "write_file", Args: map[string]any{"path": "big", "data": huge}},
		{Name: "read_file", Args: map[string]any{"path": "small"}},
	}}
	for _, noStream := range []bool{false, true} {
		t.Run("arguments overflow", func(t *testing.T) {
			srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
			p, _ := newTestProvider(t, srv, func(c *Config) { c.NoStream = noStream; c.MaxArgumentBytes = 1000 })
			resp, err := p.Complete(context.Background(), request("m"), Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			calls := resp.Message.ToolCalls
			if len(calls) != 2 || !calls[0].ArgumentsOverflow || len(calls[0].Arguments) != 1000 || calls[1].ArgumentsOverflow ||
				calls[1].Arguments != `{"path":"small"}` {
				t.Fatalf("calls = %d, overflow %v len %d", len(calls), calls[0].ArgumentsOverflow, len(calls[0].Arguments))
			}
		})
		t.Run("response too large", func(t *testing.T) {
			srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
			p, _ := newTestProvider(t, srv, func(c *Config) {
				c.NoStream = noStream
				c.MaxResponseBytes = 50_000
				c.Retry.MaxAttempts = 1
			})
			_, err := p.Complete(context.Background(), request("m"), Hooks{})
			if !IsKind(err, KindProtocol) || !strings.Contains(err.Error(), "larger than") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestUsageEstimatedWhenNotReported(t *testing.T) {
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{{Content: strings.Repeat("word ", 40), NoUsage: true}}})
	p, _ := newTestProvider(t, srv, nil)
	resp, err := p.Complete(context.Background(), request("m"), Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	u := resp.Usage
	if !u.Estimated || u.CompletionTokens != 50 || u.PromptTokens == 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage = %+v", u)
	}
}

func TestCanceledContextStopsRetries(t *testing.T) {
	turn := llmtest.Turn{Content: "x", Failures: []llmtest.Failure{{Hang: "headers"}}}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "m", Turns: []llmtest.Turn{turn}})
	p, sl := newTestProvider(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(srv.Requests()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := p.Complete(ctx, request("m"), Hooks{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(sl.all()) != 0 || p.Limiter().InFlight() != 0 {
		t.Errorf("waits %v, in flight %d", sl.all(), p.Limiter().InFlight())
	}
}

func TestSharedLimiterBoundsConcurrency(t *testing.T) {
	sc := &llmtest.Scenario{Name: "m", Latency: llmtest.Duration(20 * time.Millisecond), Turns: []llmtest.Turn{{Content: "ok"}}}
	srv := llmtest.Start(t, sc)
	lim := NewLimiter(3)
	p1, _ := newTestProvider(t, srv, func(c *Config) { c.Limiter = lim })
	p2, _ := newTestProvider(t, srv, func(c *Config) { c.Limiter = lim })
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		p := p1
		if i%2 == 1 {
			p = p2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request("m")
			req.Messages[1].Content = "conversation " + string(rune('a'+i))
			if _, err := p.Complete(context.Background(), req, Hooks{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if peak := srv.PeakConcurrency(); peak > 3 || peak < 1 {
		t.Errorf("peak concurrency %d with a cap of 3", peak)
	}
	if len(srv.Requests()) != 20 || lim.InFlight() != 0 {
		t.Errorf("requests %d, in flight %d", len(srv.Requests()), lim.InFlight())
	}
}
