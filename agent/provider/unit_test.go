package provider

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestParseModel(t *testing.T) {
	cases := []struct {
		in   string
		want ModelRef
		err  bool
	}{
		{"novita:qwen/qwen3-coder-30b-a3b-instruct", ModelRef{"novita", "qwen/qwen3-coder-30b-a3b-instruct"}, false},
		{"qwen/qwen3-coder-30b-a3b-instruct", ModelRef{"", "qwen/qwen3-coder-30b-a3b-instruct"}, false},
		{"llama3:8b", ModelRef{"", "llama3:8b"}, false},
		{"ollama:llama3:8b", ModelRef{"ollama", "llama3:8b"}, false},
		{"openai:gpt-4o-mini", ModelRef{"openai", "gpt-4o-mini"}, false},
		{"custom:my-model", ModelRef{"custom", "my-model"}, false},
		{"replay:testdata/run.json", ModelRef{"replay", "testdata/run.json"}, false},
		{"novita:", ModelRef{"novita", "qwen/qwen3-coder-30b-a3b-instruct"}, false},
		{"  novita:deepseek/deepseek-v3.2-exp ", ModelRef{"novita", "deepseek/deepseek-v3.2-exp"}, false},
		{"openai:", ModelRef{}, true},
		{"", ModelRef{}, true},
		{"a\nb", ModelRef{}, true},
	}
	for _, c := range cases {
		got, err := ParseModel(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseModel(%q) = %+v, %v; want %+v, err %v", c.in, got, err, c.want, c.err)
		}
		if err == nil && c.want.Provider != "" {
			if again, _ := ParseModel(got.String()); again != got {
				t.Errorf("String() of %+v does not parse back: %+v", got, again)
			}
		}
	}
}

func TestNewPresets(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	_, err := New(Config{Preset: "novita", Getenv: env(nil)})
	if !errors.Is(err, ErrMissingAPIKey) {
		t.Errorf("novita without key: %v", err)
	}
	p, err := New(Config{Preset: "novita", Getenv: env(map[string]string{"NOVITA_API_KEY": "k", "OPENAI_BASE_URL": "http://wrong"})})
	if err != nil || p.Info().BaseURL != "https://api.novita.ai/openai" || p.Info().Name != "novita" || !p.Info().Streaming {
		t.Errorf("novita: %+v, %v", p, err)
	}
	p, err = New(Config{Preset: "openai", Getenv: env(map[string]string{"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})})
	if err != nil || p.Info().BaseURL != "http://127.0.0.1:1/v1" {
		t.Errorf("openai with OPENAI_BASE_URL: %+v, %v", p, err)
	}
	p, err = New(Config{Preset: "ollama", Getenv: env(nil), NoStream: true})
	if err != nil || p.Info().BaseURL != "http://localhost:11434/v1" || p.Info().Streaming {
		t.Errorf("ollama: %+v, %v", p, err)
	}
	if _, err := New(Config{Getenv: env(nil)}); err == nil {
		t.Error("custom without base URL accepted")
	}
	if _, err := New(Config{BaseURL: "ftp://x", Getenv: env(nil)}); err == nil {
		t.Error("ftp base URL accepted")
	}
	if _, err := New(Config{Preset: "nope", Getenv: env(nil)}); err == nil {
		t.Error("unknown preset accepted without a base URL")
	}
	if p, err := New(Config{Preset: "vllm-lab", BaseURL: "http://127.0.0.1:8000/v1", Getenv: env(nil)}); err != nil || p.Info().Name != "vllm-lab" {
		t.Errorf("named custom endpoint: %v %v", p, err)
	}
	if p, ok := LookupPreset("novita"); !ok || len(p.Models) != 5 {
		t.Errorf("novita models = %v", p.Models)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"5"}}, 5 * time.Second},
		{http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond},
		{http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30 * time.Second},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"-3"}}, 0},
		{http.Header{"Retry-After": {"1e99"}}, 0},
		{nil, 0},
	}
	for _, c := range cases {
		if got := parseRetryAfter(c.h, now); got != c.want {
			t.Errorf("parseRetryAfter(%v) = %v, want %v", c.h, got, c.want)
		}
	}
	p := RetryPolicy{MaxRetryAfter: time.Minute}.withDefaults()
	if d := p.delay(1, &Error{RetryAfter: time.Hour}); d != time.Minute {
		t.Errorf("Retry-After not capped: %v", d)
	}
	for n := 1; n < 20; n++ {
		d := p.delay(n, &Error{})
		if d < p.BaseDelay/2 || d > p.MaxDelay {
			t.Errorf("delay(%d) = %v outside [%v, %v]", n, d, p.BaseDelay/2, p.MaxDelay)
		}
	}
}

func TestLimiterAIMD(t *testing.T) {
	l := NewLimiter(8)
	ctx := context.Background()
	var permits []*Permit
	for range 8 {
		p, err := l.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		permits = append(permits, p)
	}
	if l.InFlight() != 8 {
		t.Fatalf("in flight %d", l.InFlight())
	}
	// All eight were in flight before any cut: their 429s halve the window once.
	for _, p := range permits[:4] {
		p.Release(OutcomeThrottled)
	}
	if w := l.Window(); w != 4 {
		t.Errorf("window after a burst of 429s = %d, want 4", w)
	}
	// A call that started after the cut and is throttled cuts again.
	for _, p := range permits[4:] {
		p.Release(OutcomeOther)
	}
	p, _ := l.Acquire(ctx)
	p.Release(OutcomeThrottled)
	if w := l.Window(); w != 2 {
		t.Errorf("window = %d, want 2", w)
	}
	// Double release is harmless.
	p.Release(OutcomeThrottled)
	if l.InFlight() != 0 {
		t.Errorf("in flight %d after double release", l.InFlight())
	}
	// Never below one.
	for range 10 {
		p, _ := l.Acquire(ctx)
		p.Release(OutcomeThrottled)
	}
	if w := l.Window(); w != 1 {
		t.Errorf("window = %d, want 1", w)
	}
	// Grows back additively: from 1 to 8 needs about 1+2+…+7 = 28 successes, never above the cap.
	n := 0
	for l.Window() < 8 && n < 1000 {
		p, _ := l.Acquire(ctx)
		p.Release(OutcomeSuccess)
		n++
	}
	if n < 20 || n > 40 {
		t.Errorf("grew from 1 to 8 in %d successes, want about 28", n)
	}
	for range 100 {
		p, _ := l.Acquire(ctx)
		p.Release(OutcomeSuccess)
	}
	if w := l.Window(); w != 8 {
		t.Errorf("window = %d above/below cap 8", w)
	}
}

func TestLimiterWaitsInOrderAndHonoursContext(t *testing.T) {
	l := NewLimiter(1)
	first, _ := l.Acquire(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire past deadline: %v", err)
	}

	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			p, err := l.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			p.Release(OutcomeSuccess)
		}()
		// Queue them one after another.
		for {
			l.mu.Lock()
			n := len(l.waiters)
			l.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	first.Release(OutcomeSuccess)
	for want := range 3 {
		if got := <-order; got != want {
			t.Errorf("served %d, want %d (FIFO)", got, want)
		}
	}
	if l.InFlight() != 0 {
		t.Errorf("in flight %d", l.InFlight())
	}
}

func TestOpen(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		model    string
		cfg      Config
		provider string
		base     string
		err      error
	}{
		{"novita:qwen/qwen3-coder-30b-a3b-instruct", Config{Getenv: env(map[string]string{"NOVITA_API_KEY": "k"})}, "novita", "https://api.novita.ai/openai", nil},
		{"qwen/qwen3-coder-30b-a3b-instruct", Config{Getenv: env(map[string]string{"NOVITA_API_KEY": "k", "OPENAI_API_KEY": "k"})}, "novita", "https://api.novita.ai/openai", nil},
		{"gpt-4o", Config{Getenv: env(map[string]string{"OPENAI_API_KEY": "k"})}, "openai", "https://api.openai.com/v1", nil},
		{"m", Config{BaseURL: "http://127.0.0.1:9/v1", Getenv: env(nil)}, "custom", "http://127.0.0.1:9/v1", nil},
		{"custom:m", Config{BaseURL: "http://127.0.0.1:9/v1", Getenv: env(nil)}, "custom", "http://127.0.0.1:9/v1", nil},
		{"ollama:llama3:8b", Config{Getenv: env(nil)}, "ollama", "http://localhost:11434/v1", nil},
		{"m", Config{Getenv: env(nil)}, "", "", ErrNoProvider},
		{"openai:gpt-4o", Config{Getenv: env(nil)}, "", "", ErrMissingAPIKey},
	}
	for _, c := range cases {
		p, ref, err := Open(c.model, c.cfg)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("Open(%s) err = %v, want %v", c.model, err, c.err)
			}
			continue
		}
		if err != nil || ref.Provider != c.provider || p.Info().BaseURL != c.base || p.Info().Name != c.provider {
			t.Errorf("Open(%s) = %+v %+v %v", c.model, p.Info(), ref, err)
		}
	}
	if _, _, err := Open("replay:/nonexistent/t.json", Config{}); err == nil {
		t.Error("replay of a missing file opened")
	}
}
