package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

// Config configures an OpenAI-compatible provider. Zero fields take the defaults.
type Config struct {
	// Preset names a built-in endpoint (novita, openai, ollama). Empty, "custom" or any other name
	// needs BaseURL; the name is then only what transcripts call the endpoint.
	Preset string
	// BaseURL overrides the preset's base URL.
	BaseURL string
	// APIKey overrides the key the preset reads from the environment.
	APIKey string
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// NoStream makes non-streaming calls; by default calls stream, which lets the watchdog tell a
	// slow model from a dead one.
	NoStream bool
	// Timeouts bound each phase of a call.
	Timeouts Timeouts
	// Retry says how failed attempts are retried.
	Retry RetryPolicy
	// Limiter bounds the calls in flight; share one across every provider of a run. Nil: a
	// private limiter of DefaultMaxConcurrency.
	Limiter *Limiter
	// HTTPClient replaces the default client (which has connect and TLS timeouts and honours the
	// proxy environment). It must not have a Timeout: streams last as long as the model writes.
	HTTPClient *http.Client
	// Headers are sent with every call.
	Headers map[string]string
	// MaxResponseBytes bounds a response body (default 32 MiB).
	MaxResponseBytes int64
	// MaxArgumentBytes bounds the arguments kept per tool call (default 4 MiB); the rest is
	// dropped and the call marked ArgumentsOverflow.
	MaxArgumentBytes int
	// Logger receives retry and failure logs (default slog.Default()).
	Logger *slog.Logger
}

// Default bounds of a response.
const (
	DefaultMaxResponseBytes = 32 << 20
	DefaultMaxArgumentBytes = 4 << 20
)

// OpenAI is a provider over an OpenAI-compatible chat-completions endpoint.
type OpenAI struct {
	name    string
	baseURL string
	keyEnv  string
	stream  bool
	useMCT  bool
	svc     openai.ChatCompletionService
	t       Timeouts
	retry   RetryPolicy
	limiter *Limiter
	maxBody int64
	maxArgs int
	log     *slog.Logger
	hasKey  bool
}

// New returns a provider for cfg. It fails when the preset is unknown, the base URL is not an
// http(s) URL, or the preset needs a key that is not set (wrapping ErrMissingAPIKey).
func New(cfg Config) (*OpenAI, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	name := cfg.Preset
	if name == "" {
		name = Custom
	}
	var preset Preset
	if name != Custom {
		p, ok := LookupPreset(name)
		switch {
		case ok:
			preset = p
		case cfg.BaseURL != "":
			// A name of the user's own for an endpoint given by its base URL.
			preset = Preset{Name: name}
		default:
			return nil, fmt.Errorf("unknown provider %q (known: novita, openai, ollama; any other name needs a base URL)", name)
		}
	}
	base := preset.BaseURL
	if preset.BaseURLEnv != "" {
		if v := strings.TrimSpace(getenv(preset.BaseURLEnv)); v != "" {
			base = v
		}
	}
	if cfg.BaseURL != "" {
		base = cfg.BaseURL
	}
	if base == "" {
		return nil, fmt.Errorf("provider %s: no base URL", name)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("provider %s: base URL %q is not an http(s) URL", name, base)
	}
	key := cfg.APIKey
	if key == "" && preset.KeyEnv != "" {
		key = strings.TrimSpace(getenv(preset.KeyEnv))
	}
	if key == "" && preset.KeyRequired {
		return nil, fmt.Errorf("provider %s: %s is not set: %w", name, preset.KeyEnv, ErrMissingAPIKey)
	}

	t := cfg.Timeouts.withDefaults()
	hc := cfg.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(t)
	}
	p := &OpenAI{
		name:    name,
		baseURL: base,
		keyEnv:  preset.KeyEnv,
		stream:  !cfg.NoStream,
		useMCT:  name == PresetOpenAI,
		t:       t,
		retry:   cfg.Retry.withDefaults(),
		limiter: cfg.Limiter,
		maxBody: cfg.MaxResponseBytes,
		maxArgs: cfg.MaxArgumentBytes,
		log:     cfg.Logger,
		hasKey:  key != "",
	}
	if p.limiter == nil {
		p.limiter = NewLimiter(DefaultMaxConcurrency)
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxResponseBytes
	}
	if p.maxArgs <= 0 {
		p.maxArgs = DefaultMaxArgumentBytes
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	opts := []option.RequestOption{
		option.WithBaseURL(base),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0), // retries are ours: they must release the concurrency slot
	}
	if key != "" {
		opts = append(opts, option.WithAPIKey(key))
	}
	for k, v := range cfg.Headers {
		opts = append(opts, option.WithHeader(k, v))
	}
	// NewChatCompletionService, unlike NewClient, reads no OPENAI_* variables: a novita or ollama
	// provider must not pick up OpenAI's base URL, organization or headers.
	p.svc = openai.NewChatCompletionService(opts...)
	return p, nil
}

func defaultHTTPClient(t Timeouts) *http.Client {
	d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   t.Connect,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr}
}

// Info describes the provider.
func (p *OpenAI) Info() Info {
	return Info{Name: p.name, BaseURL: p.baseURL, Streaming: p.stream}
}

// Limiter returns the limiter the provider's calls go through.
func (p *OpenAI) Limiter() *Limiter { return p.limiter }

// Complete makes one model call: it waits for a slot of the limiter, sends the request, and
// retries rate limits, server errors, broken connections and watchdog timeouts with backoff
// (honouring Retry-After) up to the policy's attempts. Auth, unknown-model and other request
// errors fail at once.
func (p *OpenAI) Complete(ctx context.Context, req *Request, hooks Hooks) (*Response, error) {
	if req.Model == "" {
		return nil, &Error{Kind: KindBadRequest, Message: "no model given"}
	}
	params, err := p.params(req)
	if err != nil {
		return nil, &Error{Kind: KindBadRequest, Message: err.Error(), Err: err}
	}
	start := time.Now()
	var retries []Retry
	for attempt := 1; ; attempt++ {
		permit, err := p.limiter.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		resp, aerr := p.attempt(ctx, params, hooks)
		outcome := OutcomeOther
		switch {
		case aerr == nil:
			outcome = OutcomeSuccess
		case IsKind(aerr, KindRateLimited):
			outcome = OutcomeThrottled
		}
		permit.Release(outcome)
		if aerr == nil {
			if resp.Usage.TotalTokens == 0 {
				resp.Usage = estimateUsage(req, &resp.Message)
			}
			resp.Attempts = attempt
			resp.Retries = retries
			resp.Duration = time.Since(start)
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		perr := asError(aerr)
		p.explain(perr, req.Model)
		if !perr.Retryable() || attempt >= p.retry.MaxAttempts {
			perr.Attempts = attempt
			return nil, perr
		}
		wait := p.retry.delay(attempt, perr)
		r := Retry{Attempt: attempt, Err: perr, Wait: wait}
		retries = append(retries, r)
		p.log.Warn("model call failed; retrying", "provider", p.name, "model", req.Model,
			"attempt", attempt, "kind", perr.Kind, "status", perr.Status, "wait", wait)
		if hooks.OnRetry != nil {
			hooks.OnRetry(r)
		}
		if err := p.retry.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (p *OpenAI) attempt(ctx context.Context, params openai.ChatCompletionNewParams, hooks Hooks) (*Response, error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	actx, cancelTotal := context.WithTimeoutCause(actx, p.t.Total,
		&errWatchdog{phase: "attempt not finished", after: p.t.Total})
	defer cancelTotal()
	wd := newWatchdog(p.t, cancel)
	defer wd.stop()
	opt := option.WithMiddleware(wd.middleware(p.maxBody))

	if !p.stream {
		c, err := p.svc.New(actx, params, opt)
		if err != nil {
			return nil, p.classify(actx, wd, err)
		}
		r, err := p.fromCompletion(c)
		if err != nil {
			return nil, err
		}
		if hooks.OnDelta != nil && r.Message.Content != "" {
			hooks.OnDelta(Delta{Content: r.Message.Content})
		}
		r.TTFB = wd.firstByte()
		return r, nil
	}

	s := p.svc.NewStreaming(actx, params, opt)
	defer s.Close()
	acc := newAccumulator(p.maxBodyInt(), p.maxArgs)
	for s.Next() {
		c := s.Current()
		acc.add(&c, hooks.OnDelta)
	}
	if err := s.Err(); err != nil {
		return nil, p.classify(actx, wd, err)
	}
	if acc.id == "" && acc.finish == "" && len(acc.calls) == 0 && acc.content.b.Len() == 0 {
		return nil, &Error{Kind: KindProtocol, Message: "the stream ended without any chunk"}
	}
	r := acc.response()
	r.TTFB = wd.firstByte()
	return r, nil
}

func (p *OpenAI) maxBodyInt() int {
	if p.maxBody > int64(^uint(0)>>1) {
		return int(^uint(0) >> 1)
	}
	return int(p.maxBody)
}

func (p *OpenAI) fromCompletion(c *openai.ChatCompletion) (*Response, error) {
	if c == nil || len(c.Choices) == 0 {
		return nil, &Error{Kind: KindProtocol, Message: "the response has no choices"}
	}
	ch := &c.Choices[0]
	m := &ch.Message
	r := &Response{
		Message: Message{
			Role:      RoleAssistant,
			Content:   m.Content,
			Reasoning: extraString(m.JSON.ExtraFields, "reasoning_content", "reasoning"),
		},
		FinishReason: ch.FinishReason,
		Model:        c.Model,
		ID:           c.ID,
		Usage:        usageOf(c.Usage),
	}
	for i, tc := range m.ToolCalls {
		if i == MaxToolCalls {
			break
		}
		args, over := tc.Function.Arguments, false
		if len(args) > p.maxArgs {
			args, over = args[:p.maxArgs], true
		}
		r.Message.ToolCalls = append(r.Message.ToolCalls, ToolCall{
			ID: tc.ID, Name: tc.Function.Name, Arguments: args, ArgumentsOverflow: over,
		})
	}
	return r, nil
}

func (p *OpenAI) params(req *Request) (openai.ChatCompletionNewParams, error) {
	params := openai.ChatCompletionNewParams{Model: req.Model}
	for i := range req.Messages {
		m, err := messageParam(&req.Messages[i])
		if err != nil {
			return params, fmt.Errorf("message %d: %w", i, err)
		}
		params.Messages = append(params.Messages, m)
	}
	for _, t := range req.Tools {
		var schema map[string]any
		if len(t.Parameters) > 0 {
			if err := json.Unmarshal(t.Parameters, &schema); err != nil {
				return params, fmt.Errorf("tool %s: parameters: %w", t.Name, err)
			}
		}
		fd := openai.FunctionDefinitionParam{Name: t.Name, Parameters: schema}
		if t.Description != "" {
			fd.Description = openai.String(t.Description)
		}
		params.Tools = append(params.Tools, openai.ChatCompletionFunctionTool(fd))
	}
	if req.MaxOutputTokens > 0 {
		// OpenAI's newer models accept only max_completion_tokens; most compatible endpoints
		// know only max_tokens.
		if p.useMCT {
			params.MaxCompletionTokens = openai.Int(req.MaxOutputTokens)
		} else {
			params.MaxTokens = openai.Int(req.MaxOutputTokens)
		}
	}
	if req.Temperature != nil {
		params.Temperature = openai.Float(*req.Temperature)
	}
	if req.Seed != nil {
		params.Seed = openai.Int(*req.Seed)
	}
	if p.stream {
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	}
	return params, nil
}

func messageParam(m *Message) (openai.ChatCompletionMessageParamUnion, error) {
	switch m.Role {
	case RoleSystem:
		return openai.SystemMessage(m.Content), nil
	case RoleUser:
		return openai.UserMessage(m.Content), nil
	case RoleTool:
		return openai.ToolMessage(m.Content, m.ToolCallID), nil
	case RoleAssistant:
		a := openai.ChatCompletionAssistantMessageParam{}
		if m.Content != "" || len(m.ToolCalls) == 0 {
			a.Content.OfString = openai.String(m.Content)
		}
		for _, tc := range m.ToolCalls {
			a.ToolCalls = append(a.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
				OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
					ID: tc.ID,
					Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{
						Name: tc.Name, Arguments: tc.Arguments,
					},
				},
			})
		}
		return openai.ChatCompletionMessageParamUnion{OfAssistant: &a}, nil
	}
	return openai.ChatCompletionMessageParamUnion{}, fmt.Errorf("unknown role %q", m.Role)
}

// classify turns an attempt's failure into an *Error.
func (p *OpenAI) classify(actx context.Context, wd0 *watchdog, err error) error {
	var wd *errWatchdog
	if errors.As(context.Cause(actx), &wd) {
		return &Error{Kind: KindTimeout, Message: wd.Error(), Err: err}
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		e := &Error{Status: apiErr.StatusCode, Message: apiMessage(apiErr), Err: err}
		if apiErr.Response != nil {
			e.RetryAfter = parseRetryAfter(apiErr.Response.Header, time.Now())
		}
		e.Kind = statusKind(apiErr.StatusCode, apiErr.Code, e.Message)
		return e
	}
	var se *ssestream.StreamError
	if errors.As(err, &se) {
		return &Error{Kind: KindServer, Message: clip(se.Message, 500), Err: err}
	}
	if errors.Is(err, errBodyTooLarge) {
		return &Error{Kind: KindProtocol, Message: fmt.Sprintf("response larger than %d bytes", p.maxBody), Err: err}
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &typ) || wd0.bodyComplete() {
		// The whole answer arrived and could not be understood.
		return &Error{Kind: KindProtocol, Message: "malformed response: " + clip(err.Error(), 300), Err: err}
	}
	// Everything else broke on the way: refused, reset, cut short.
	return &Error{Kind: KindNetwork, Message: clip(err.Error(), 300), Err: err}
}

// explain rewrites the messages of fail-fast errors into what the user should do.
func (p *OpenAI) explain(e *Error, model string) {
	switch e.Kind {
	case KindAuth:
		hint := "check the API key"
		if p.keyEnv != "" {
			hint = "check " + p.keyEnv
		}
		if !p.hasKey {
			hint = "no API key was sent; set one"
			if p.keyEnv != "" {
				hint += " in " + p.keyEnv
			}
		}
		e.Message = fmt.Sprintf("%s refused the request (%s): %s", p.name, hint, e.Message)
	case KindUnknownModel:
		e.Message = fmt.Sprintf("%s does not serve model %q: %s", p.name, model, e.Message)
	}
}

func statusKind(status int, code, msg string) ErrorKind {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return KindAuth
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status == http.StatusRequestTimeout || status == http.StatusConflict || status == http.StatusTooEarly:
		return KindServer
	case status >= 500:
		return KindServer
	case unknownModel(code, msg):
		return KindUnknownModel
	}
	return KindBadRequest
}

func unknownModel(code, msg string) bool {
	if code == "model_not_found" || code == "invalid_model" {
		return true
	}
	m := strings.ToLower(msg)
	if !strings.Contains(m, "model") {
		return false
	}
	for _, s := range []string{"not found", "does not exist", "not exist", "unknown", "not supported", "invalid model", "no such", "not available"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func apiMessage(e *openai.Error) string {
	if e.Message != "" {
		return clip(e.Message, 500)
	}
	if raw := strings.TrimSpace(e.RawJSON()); raw != "" {
		return clip(raw, 500)
	}
	return http.StatusText(e.StatusCode)
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindNetwork, Message: err.Error(), Err: err}
}

// clip bounds text from an endpoint before it reaches logs and transcripts.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// estimateUsage guesses the usage of a call the endpoint reported none for: about four bytes a
// token, the usual figure for English and code.
func estimateUsage(req *Request, m *Message) Usage {
	var in, out int
	for i := range req.Messages {
		in += len(req.Messages[i].Content) + 8
		for _, tc := range req.Messages[i].ToolCalls {
			in += len(tc.Name) + len(tc.Arguments)
		}
	}
	for _, t := range req.Tools {
		in += len(t.Name) + len(t.Description) + len(t.Parameters)
	}
	out = len(m.Content)
	for _, tc := range m.ToolCalls {
		out += len(tc.Name) + len(tc.Arguments)
	}
	u := Usage{PromptTokens: int64(in+3) / 4, CompletionTokens: int64(out+3) / 4, Estimated: true}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}
