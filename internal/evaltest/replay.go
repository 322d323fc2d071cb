package evaltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
)

// Mode is how a scripted model behaves on a task.
type Mode int

// Modes of a scripted model.
const (
	// Solve replays the task's recorded transcript: the recorded tool calls, then its answer.
	Solve Mode = iota
	// GiveUp answers at once without calling a tool: the checks fail.
	GiveUp
	// Loop calls a harmless tool forever: the task ends at its step limit.
	Loop
)

// Replay is a scripted OpenAI-compatible endpoint on 127.0.0.1 serving models that replay the
// recorded transcripts of a suite (dir/<task>.json): each request is routed by its task prompt to
// an llmtest server scripted for that task, where every model has its Mode.
type Replay struct {
	// URL is the base URL (…/v1).
	URL   string
	calls atomic.Int64
	srv   *http.Server
	subs  []*llmtest.Server
}

// Calls counts the model calls served.
func (r *Replay) Calls() int64 { return r.calls.Load() }

// Close stops the servers.
func (r *Replay) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		r.srv.Close()
	}
	for _, s := range r.subs {
		s.Close()
	}
}

// StartReplay starts a Replay. mode gives each model's behaviour on each task (nil: Solve);
// every call waits latency.
func StartReplay(dir string, models []string, mode func(model, task string) Mode, latency time.Duration) (*Replay, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no transcripts in %s", dir)
	}
	r := &Replay{}
	byPrompt := map[string]*url.URL{}
	for _, f := range files {
		t, err := transcript.Load(f)
		if err != nil {
			r.closeSubs()
			return nil, err
		}
		var scs []*llmtest.Scenario
		for _, m := range models {
			md := Solve
			if mode != nil {
				md = mode(m, t.Task.Name)
			}
			scs = append(scs, scenario(m, t, md, latency))
		}
		srv, err := llmtest.NewServer(scs...)
		if err != nil {
			r.closeSubs()
			return nil, err
		}
		r.subs = append(r.subs, srv)
		u, _ := url.Parse(srv.URL())
		byPrompt[strings.TrimSpace(t.Task.Prompt)] = u
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		target, _ := pr.In.Context().Value(targetKey{}).(*url.URL)
		pr.SetURL(target)
		pr.Out.URL.Path = target.Path + strings.TrimPrefix(pr.In.URL.Path, "/v1")
	}}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var cr struct {
			Messages []struct {
				Role    string `json:"role"`
				Content any    `json:"content"`
			} `json:"messages"`
		}
		_ = json.Unmarshal(body, &cr)
		var target *url.URL
		for _, m := range cr.Messages {
			if s, ok := m.Content.(string); ok && m.Role == "user" {
				target = byPrompt[strings.TrimSpace(s)]
				break
			}
		}
		if target == nil {
			http.Error(w, "no recorded transcript for this prompt", http.StatusNotFound)
			return
		}
		r.calls.Add(1)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), targetKey{}, target)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.closeSubs()
		return nil, err
	}
	r.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	r.URL = "http://" + ln.Addr().String() + "/v1"
	return r, nil
}

func (r *Replay) closeSubs() {
	for _, s := range r.subs {
		s.Close()
	}
}

type targetKey struct{}

// scenario scripts one model on one recorded transcript.
func scenario(model string, t *transcript.Transcript, mode Mode, latency time.Duration) *llmtest.Scenario {
	sc := &llmtest.Scenario{Name: model, Latency: llmtest.Duration(latency)}
	switch mode {
	case GiveUp:
		sc.Turns = []llmtest.Turn{{Content: "This looks done already; nothing to change."}}
	case Loop:
		sc.Loop = true
		sc.Turns = []llmtest.Turn{{Content: "Let me look again.", ToolCalls: []llmtest.ToolCall{{Name: "list_files", Args: map[string]any{"path": "."}}}}}
	default:
		sc.Turns = llmtest.TranscriptTurns(t)
	}
	return sc
}
