package llmtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxRequestBytes bounds a recorded request body.
const maxRequestBytes = 64 << 20

// Server is a running scripted endpoint on 127.0.0.1.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	closing chan struct{}
	once    sync.Once
	done    chan struct{}

	handlers sync.WaitGroup

	mu         sync.Mutex
	scenarios  map[string]*Scenario
	requests   []Request
	attempts   map[string]int
	mismatches []string
	seq        int
	active     int
	peak       int
	closed     bool
}

// Request is a recorded request.
type Request struct {
	Time   time.Time
	Path   string
	Auth   string // the Authorization header
	Model  string
	Stream bool
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage bool
	Messages     []Message
	// Tools are the tool definitions sent, as JSON objects.
	Tools []json.RawMessage
	// MaxTokens is max_tokens or max_completion_tokens, when sent.
	MaxTokens int64
	// Seed is the sampling seed, when sent.
	Seed *int64
	// Body is the raw request body.
	Body []byte
	// Step is the turn index the request asked for (its assistant-message count).
	Step int
	// Answer says what the server did: "turn", "done", "failure N", or an error.
	Answer string
}

// Message is a message of a recorded request.
type Message struct {
	Role       string            `json:"role"`
	Content    json.RawMessage   `json:"content"`
	ToolCallID string            `json:"tool_call_id"`
	ToolCalls  []RequestToolCall `json:"tool_calls"`
}

// Text returns the message content as text (string content, or the text parts joined).
func (m Message) Text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(m.Content, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return ""
}

// RequestToolCall is a tool call of a recorded assistant message.
type RequestToolCall struct {
	ID       string `json:"id"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type wireRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages            []Message         `json:"messages"`
	Tools               []json.RawMessage `json:"tools"`
	MaxTokens           int64             `json:"max_tokens"`
	MaxCompletionTokens int64             `json:"max_completion_tokens"`
	Seed                *int64            `json:"seed"`
}

// NewServer starts a server for the scenarios on an ephemeral loopback port.
func NewServer(scenarios ...*Scenario) (*Server, error) {
	return NewServerAt("127.0.0.1:0", scenarios...)
}

// NewServerAt starts a server on a loopback address (127.0.0.0/8 or ::1): a scripted model is
// never served to other machines.
func NewServerAt(addr string, scenarios ...*Scenario) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("listen address %q is not a loopback address", addr)
	}
	s := &Server{
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		scenarios: map[string]*Scenario{},
		attempts:  map[string]int{},
	}
	for _, sc := range scenarios {
		if err := s.Add(sc); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("POST /chat/completions", s.chat)
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("GET /models", s.models)
	s.ln = ln
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Start starts a server for a test and closes it when the test ends.
func Start(t testing.TB, scenarios ...*Scenario) *Server {
	t.Helper()
	s, err := NewServer(scenarios...)
	if err != nil {
		t.Fatalf("starting scripted model: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Add adds a scenario, replacing one of the same name.
func (s *Server) Add(sc *Scenario) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scenarios[sc.Name] = sc
	return nil
}

// URL is the base URL clients use: http://127.0.0.1:PORT/v1.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + "/v1" }

// Close stops the server, ending any hang in progress.
func (s *Server) Close() {
	s.once.Do(func() {
		// Unblock hangs and latencies, drop every connection (an idle keep-alive one would hold a
		// graceful shutdown for seconds), then wait for the handlers to return.
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		_ = s.srv.Close()
		<-s.done
		s.handlers.Wait()
	})
}

// Requests returns the requests received so far, in order of arrival.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Mismatches returns the unmet ExpectLastContains expectations.
func (s *Server) Mismatches() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mismatches...)
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var data []map[string]any
	for name := range s.scenarios {
		data = append(data, map[string]any{"id": name, "object": "model", "owned_by": "llmtest"})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// PeakConcurrency returns the largest number of chat requests the server has handled at once.
func (s *Server) PeakConcurrency() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server closing", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	defer s.handlers.Done()
	s.active++
	s.peak = max(s.peak, s.active)
	s.mu.Unlock()
	// A request stops counting just before its answer's last bytes are written: a client may send
	// its next request as soon as it has read them, before this handler returns.
	answered := sync.OnceFunc(func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	})
	defer answered()
	r = r.WithContext(context.WithValue(r.Context(), answeredKey{}, answered))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request too large", "")
		return
	}
	var wr wireRequest
	rec := Request{Time: time.Now(), Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body}
	if err := json.Unmarshal(body, &wr); err != nil {
		rec.Answer = "bad request: " + err.Error()
		s.record(rec)
		writeError(w, http.StatusBadRequest, "malformed request: "+err.Error(), "")
		return
	}
	rec.Model, rec.Stream, rec.Messages, rec.Tools = wr.Model, wr.Stream, wr.Messages, wr.Tools
	rec.IncludeUsage = wr.StreamOptions != nil && wr.StreamOptions.IncludeUsage
	rec.MaxTokens = max(wr.MaxTokens, wr.MaxCompletionTokens)
	rec.Seed = wr.Seed
	for _, m := range wr.Messages {
		if m.Role == "assistant" {
			rec.Step++
		}
	}

	s.mu.Lock()
	sc := s.scenarios[wr.Model]
	if sc == nil && len(s.scenarios) == 1 {
		for _, only := range s.scenarios {
			sc = only
		}
	}
	s.mu.Unlock()
	if sc == nil {
		rec.Answer = "unknown model"
		s.record(rec)
		writeError(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist", wr.Model), "model_not_found")
		return
	}
	if sc.APIKey != "" && rec.Auth != "Bearer "+sc.APIKey {
		rec.Answer = "unauthorized"
		s.record(rec)
		writeError(w, http.StatusUnauthorized, "Incorrect API key provided", "invalid_api_key")
		return
	}

	turn, done := s.turn(sc, rec.Step)
	if turn != nil && len(turn.Failures) > 0 {
		key := sc.Name + "\x00" + conversationKey(wr.Messages) + fmt.Sprintf("\x00%d", rec.Step)
		s.mu.Lock()
		n := s.attempts[key]
		s.attempts[key] = n + 1
		s.mu.Unlock()
		if n < len(turn.Failures) {
			rec.Answer = fmt.Sprintf("failure %d", n)
			s.record(rec)
			s.fail(w, r, &turn.Failures[n], wr.Stream)
			return
		}
	}
	if turn != nil {
		s.expect(sc, rec.Step, turn, wr.Messages)
	}
	rec.Answer = "turn"
	if done {
		rec.Answer = "done"
	}
	s.record(rec)

	latency := time.Duration(sc.Latency)
	if turn != nil && turn.Latency > 0 {
		latency = time.Duration(turn.Latency)
	}
	if !s.wait(r.Context(), latency) {
		return
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("chatcmpl-llmtest-%d", s.seq)
	s.mu.Unlock()
	last := ""
	if len(wr.Messages) > 0 {
		last = wr.Messages[len(wr.Messages)-1].Text()
	}
	a := answerOf(sc, turn, rec.Step, len(body), last)
	if wr.Stream {
		s.stream(w, r, sc, turn, a, id, wr.Model, rec.IncludeUsage)
		return
	}
	answered()
	writeJSON(w, http.StatusOK, a.completion(id, wr.Model))
}

type answeredKey struct{}

// markAnswered stops counting r as in progress (see PeakConcurrency).
func markAnswered(r *http.Request) {
	if f, ok := r.Context().Value(answeredKey{}).(func()); ok {
		f()
	}
}

// turn returns the turn for a step; done is set when the script has run out and the server answers
// a plain final message.
func (s *Server) turn(sc *Scenario, step int) (t *Turn, done bool) {
	switch {
	case step < len(sc.Turns):
		return &sc.Turns[step], false
	case sc.Loop:
		return &sc.Turns[len(sc.Turns)-1], false
	}
	return nil, true
}

func (s *Server) expect(sc *Scenario, step int, t *Turn, msgs []Message) {
	if len(t.ExpectLastContains) == 0 {
		return
	}
	last := ""
	if len(msgs) > 0 {
		last = msgs[len(msgs)-1].Text()
	}
	for _, want := range t.ExpectLastContains {
		if !strings.Contains(last, want) {
			s.mu.Lock()
			s.mismatches = append(s.mismatches, fmt.Sprintf("%s step %d: last message does not contain %q: %.300q", sc.Name, step, want, last))
			s.mu.Unlock()
		}
	}
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

// wait sleeps for d unless the client leaves or the server closes; it reports whether to go on.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-s.closing:
	}
	return false
}

func (s *Server) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, f *Failure, stream bool) {
	switch {
	case f.Hang == "headers":
		s.hang(r.Context())
		return
	case f.Hang == "body" || f.Cut || f.StreamError != "":
		fl, _ := w.(http.Flusher)
		if stream {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, "data: {\"id\":\"chatcmpl-llmtest-partial\",\"object\":\"chat.completion.chunk\",\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n")
		} else {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, `{"id":"chatcmpl-llmtest-partial","object":"chat.completion",`)
		}
		if f.StreamError != "" && stream {
			b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": f.StreamError, "type": "server_error"}})
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		if fl != nil {
			fl.Flush()
		}
		if f.Cut {
			panic(http.ErrAbortHandler) // closes the connection mid-answer
		}
		if f.Hang == "body" {
			s.hang(r.Context())
		}
		return
	}
	markAnswered(r)
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	if f.Body != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, f.Body)
		return
	}
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	writeError(w, status, msg, f.Code)
}

func writeError(w http.ResponseWriter, status int, msg, code string) {
	e := map[string]any{"message": msg, "type": errorType(status)}
	if code != "" {
		e["code"] = code
	} else {
		e["code"] = nil
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "authentication_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// conversationKey tells conversations apart by their opening messages.
func conversationKey(msgs []Message) string {
	h := sha256.New()
	for _, m := range msgs {
		if m.Role == "assistant" {
			break
		}
		h.Write([]byte(m.Role))
		h.Write(m.Content)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
