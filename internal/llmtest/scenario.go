// Package llmtest is a scripted OpenAI-compatible chat-completions server: the one stand-in the
// project's tests allow, because no model can be reached from a test. A Scenario scripts the model's
// answers step by step — text, tool calls (streamed in either shape, parallel, malformed), usage
// figures, latency — and the failures before them: HTTP errors with Retry-After, hangs for the
// watchdog, cut connections. The server records every request so tests can assert what the model was
// sent. Scenarios are written in Go or loaded from YAML/JSON files.
//
// It is meant for tests, benchmarks and demos, never for production runs.
package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Scenario scripts one model. The server picks a request's turn by counting the assistant messages
// the request already holds, so concurrent conversations with one scenario each get their own
// sequence without any server state.
type Scenario struct {
	// Name is the model id that selects this scenario. A server with one scenario serves it for
	// every model id.
	Name string `yaml:"name" json:"name"`
	// Description says what the scenario exercises.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Turns are the model's answers: turn i answers the request holding i assistant messages.
	Turns []Turn `yaml:"turns" json:"turns"`
	// Loop repeats the last turn once the turns run out: a model that never stops. Without Loop,
	// a request past the last turn gets a plain "done" answer without tool calls.
	Loop bool `yaml:"loop,omitempty" json:"loop,omitempty"`
	// Stream is the default shape of streamed tool calls (see Turn.Stream).
	Stream Shape `yaml:"stream,omitempty" json:"stream,omitempty"`
	// Latency is waited before every answer.
	Latency Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	// ChunkDelay is waited between streamed chunks.
	ChunkDelay Duration `yaml:"chunk_delay,omitempty" json:"chunk_delay,omitempty"`
	// APIKey, when set, is the only bearer token accepted; others get 401.
	APIKey string `yaml:"api_key,omitempty" json:"api_key,omitempty"`
}

// Shape is how a streamed answer carries its tool calls.
type Shape string

// Streaming shapes.
const (
	// ShapeFragments sends each call's id and name, then its arguments in fragments, joined by
	// index (OpenAI's shape). The default.
	ShapeFragments Shape = "fragments"
	// ShapeWhole sends each call whole in one chunk, at its own index.
	ShapeWhole Shape = "whole"
	// ShapeWholeSameIndex sends each call whole in one chunk, every one at index 0 (a quirk of
	// some endpoints: calls are told apart by their ids).
	ShapeWholeSameIndex Shape = "whole_same_index"
)

// Turn is one answer of the model, and the failures served before it.
type Turn struct {
	// Content is the assistant's text.
	Content string `yaml:"content,omitempty" json:"content,omitempty"`
	// ToolCalls are the calls asked for, in order (several make a parallel call).
	ToolCalls []ToolCall `yaml:"tool_calls,omitempty" json:"tool_calls,omitempty"`
	// FinishReason defaults to "tool_calls" with calls and "stop" without.
	FinishReason string `yaml:"finish_reason,omitempty" json:"finish_reason,omitempty"`
	// Usage overrides the usage reported; by default about a token per four bytes.
	Usage *Usage `yaml:"usage,omitempty" json:"usage,omitempty"`
	// NoUsage reports no usage at all.
	NoUsage bool `yaml:"no_usage,omitempty" json:"no_usage,omitempty"`
	// Stream overrides the scenario's streaming shape.
	Stream Shape `yaml:"stream,omitempty" json:"stream,omitempty"`
	// Fragment is the size of text and argument fragments when streaming (default 8 bytes).
	Fragment int `yaml:"fragment,omitempty" json:"fragment,omitempty"`
	// Interleave interleaves the argument fragments of parallel calls.
	Interleave bool `yaml:"interleave,omitempty" json:"interleave,omitempty"`
	// Latency overrides the scenario's latency for this turn.
	Latency Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	// Failures answer the first attempts at this step, in order, before the turn is served.
	Failures []Failure `yaml:"failures,omitempty" json:"failures,omitempty"`
	// ExpectLastContains lists strings the last message of the request must contain; a request
	// that does not is recorded as a mismatch (Server.Mismatches) and answered all the same.
	ExpectLastContains []string `yaml:"expect_last_contains,omitempty" json:"expect_last_contains,omitempty"`
}

// ToolCall is one scripted tool call.
type ToolCall struct {
	// ID defaults to call_<step>_<i> (step counted from 0).
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// NoID sends the call without an id, as some endpoints do.
	NoID bool   `yaml:"no_id,omitempty" json:"no_id,omitempty"`
	Name string `yaml:"name" json:"name"`
	// Arguments is the raw argument text, sent as is: it may be malformed on purpose.
	// {{last:REGEX}} in it (or in Args' strings) is replaced by REGEX's first group matched in the
	// last message of the request, so a script can use what a tool returned (e.g. a pid).
	Arguments string `yaml:"arguments,omitempty" json:"arguments,omitempty"`
	// Args is encoded as the JSON arguments when Arguments is empty.
	Args map[string]any `yaml:"args,omitempty" json:"args,omitempty"`
}

// Usage is a reported token usage.
type Usage struct {
	PromptTokens     int64 `yaml:"prompt_tokens" json:"prompt_tokens"`
	CompletionTokens int64 `yaml:"completion_tokens" json:"completion_tokens"`
}

// Failure is an attempt answered with an error, a hang or a cut connection.
type Failure struct {
	// Status is the HTTP status of an error answer (e.g. 429, 500, 401, 404).
	Status int `yaml:"status,omitempty" json:"status,omitempty"`
	// RetryAfter is sent as the Retry-After header.
	RetryAfter string `yaml:"retry_after,omitempty" json:"retry_after,omitempty"`
	// Message and Code fill the OpenAI-style error body.
	Message string `yaml:"message,omitempty" json:"message,omitempty"`
	Code    string `yaml:"code,omitempty" json:"code,omitempty"`
	// Body replaces the whole response body (with Status, default 200): e.g. malformed JSON.
	Body string `yaml:"body,omitempty" json:"body,omitempty"`
	// Hang stalls: "headers" never answers; "body" sends the headers and a first chunk, then
	// stalls. A hang ends when the client gives up or the server closes.
	Hang string `yaml:"hang,omitempty" json:"hang,omitempty"`
	// Cut sends the headers and a first chunk, then closes the connection.
	Cut bool `yaml:"cut,omitempty" json:"cut,omitempty"`
	// StreamError sends an error event inside a 200 stream.
	StreamError string `yaml:"stream_error,omitempty" json:"stream_error,omitempty"`
}

// Duration is a time.Duration written as "150ms", "2s" in files.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration: %w", n.Line, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Parse reads a scenario from YAML or JSON; unknown fields are errors.
func Parse(data []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("parsing scenario: %w", err)
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// Load reads a scenario file; its name defaults to the file's base name without extension.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	sc, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if sc.Name == "" {
		sc.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return sc, nil
}

// LoadDir reads every *.yaml, *.yml and *.json scenario in dir, sorted by file name.
func LoadDir(dir string) ([]*Scenario, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading scenarios: %w", err)
	}
	var names []string
	for _, e := range ents {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	var out []*Scenario
	for _, n := range names {
		sc, err := Load(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// Validate checks a scenario for mistakes a test author would want to hear about.
func (sc *Scenario) Validate() error {
	if err := sc.Stream.valid(); err != nil {
		return fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	if sc.Loop && len(sc.Turns) == 0 {
		return fmt.Errorf("scenario %s: loop needs at least one turn", sc.Name)
	}
	for i, t := range sc.Turns {
		if err := t.Stream.valid(); err != nil {
			return fmt.Errorf("scenario %s: turn %d: %w", sc.Name, i, err)
		}
		for j, c := range t.ToolCalls {
			if c.Name == "" {
				return fmt.Errorf("scenario %s: turn %d: tool call %d has no name", sc.Name, i, j)
			}
			if c.Arguments != "" && c.Args != nil {
				return fmt.Errorf("scenario %s: turn %d: tool call %d has both arguments and args", sc.Name, i, j)
			}
			for _, m := range c.templates() {
				re, err := regexp.Compile(m[1])
				if err != nil {
					return fmt.Errorf("scenario %s: turn %d: tool call %d: %s: %w", sc.Name, i, j, m[0], err)
				}
				if re.NumSubexp() < 1 {
					return fmt.Errorf("scenario %s: turn %d: tool call %d: %s has no group", sc.Name, i, j, m[0])
				}
			}
		}
		for j, f := range t.Failures {
			switch f.Hang {
			case "", "headers", "body":
			default:
				return fmt.Errorf("scenario %s: turn %d: failure %d: hang must be headers or body", sc.Name, i, j)
			}
			if f.Status == 0 && f.Body == "" && f.Hang == "" && !f.Cut && f.StreamError == "" {
				return fmt.Errorf("scenario %s: turn %d: failure %d does nothing", sc.Name, i, j)
			}
		}
	}
	return nil
}

func (s Shape) valid() error {
	switch s {
	case "", ShapeFragments, ShapeWhole, ShapeWholeSameIndex:
		return nil
	}
	return fmt.Errorf("unknown stream shape %q (fragments, whole, whole_same_index)", s)
}

// templateRE finds {{last:REGEX}} templates.
var templateRE = regexp.MustCompile(`\{\{last:(.+?)\}\}`)

// expand replaces the templates of args with what they match in last.
func expand(args, last string) string {
	return templateRE.ReplaceAllStringFunc(args, func(t string) string {
		re, err := regexp.Compile(templateRE.FindStringSubmatch(t)[1])
		if err != nil {
			return t
		}
		m := re.FindStringSubmatch(last)
		if len(m) < 2 {
			return ""
		}
		return m[1]
	})
}

// arguments returns the call's argument text, templates expanded against last.
func (c ToolCall) arguments(last string) string {
	if c.Arguments != "" || c.Args == nil {
		return expand(c.Arguments, last)
	}
	b, err := json.Marshal(walkStrings(c.Args, func(s string) string { return expand(s, last) }))
	if err != nil {
		// Validate-time types come from YAML/JSON and always marshal; a Go value that does not
		// is a test bug worth seeing in the request.
		return fmt.Sprintf("<unmarshalable args: %v>", err)
	}
	return string(b)
}

// templates returns the {{last:…}} templates of the call.
func (c ToolCall) templates() [][]string {
	var out [][]string
	add := func(s string) string {
		out = append(out, templateRE.FindAllStringSubmatch(s, -1)...)
		return s
	}
	add(c.Arguments)
	walkStrings(c.Args, add)
	return out
}

// walkStrings returns a copy of v with f applied to every string in it.
func walkStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = walkStrings(e, f)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = walkStrings(e, f)
		}
		return l
	}
	return v
}
