// Package transcript defines the JSON record of one agent task: every message, tool call with its
// arguments and result, timing, token usage, cost and how the task ended. The format is versioned
// ("schema": "agent.transcript/v1") and described by the JSON Schema in transcript.schema.json,
// which Validate applies. A transcript is also the input of the replay provider.
package transcript

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Version is the value of the "schema" field of transcripts this package writes and reads.
const Version = "agent.transcript/v1"

// SchemaJSON is the JSON Schema (draft 2020-12) of a transcript.
//
//go:embed transcript.schema.json
var SchemaJSON []byte

// Transcript is the record of one task.
type Transcript struct {
	// Schema is always Version.
	Schema string `json:"schema"`
	// ID identifies this transcript (random, hex).
	ID string `json:"id"`
	// Task is what was asked.
	Task Task `json:"task"`
	// Model is the model id as requested, with its provider prefix when one was given.
	Model string `json:"model"`
	// Provider is the endpoint the model was reached through.
	Provider Provider `json:"provider"`
	// Replay is set when the model's turns were played back from a recorded transcript.
	Replay *Replay `json:"replay,omitempty"`
	// Origin says how a transcript kept as a fixture was made ("recorded from …", "written by
	// hand"); empty for transcripts a run writes.
	Origin string `json:"origin,omitempty"`
	// Tools are the tools offered to the model.
	Tools []Tool `json:"tools"`
	// Limits are the limits the task ran under.
	Limits Limits `json:"limits"`
	// StartedAt and EndedAt bound the task; DurationMS is their difference.
	StartedAt  time.Time `json:"started_at"`
	EndedAt    time.Time `json:"ended_at"`
	DurationMS int64     `json:"duration_ms"`
	// End says how the task ended.
	End End `json:"end"`
	// Steps counts the model calls made.
	Steps int `json:"steps"`
	// Usage sums the usage of every model call.
	Usage Usage `json:"usage"`
	// Messages is the whole conversation, in order.
	Messages []Message `json:"messages"`
	// FinalAnswer is the content of the last assistant message when the task completed.
	FinalAnswer string `json:"final_answer,omitempty"`
	// Background lists the commands the agent started in the background, as they stood when the
	// task ended: they stay alive across steps and after the task (unless stopped).
	Background []Background `json:"background,omitempty"`
}

// Background is a command the agent started in the background.
type Background struct {
	PID     uint32 `json:"pid"`
	Command string `json:"command"`
	// State is "running", or how it ended ("exited with code 0", "terminated (killed)").
	State    string `json:"state"`
	ExitCode *int   `json:"exit_code,omitempty"`
	// OutputBytes counts what it wrote to stdout and stderr.
	OutputBytes int64 `json:"output_bytes"`
}

// Task is what was asked.
type Task struct {
	Name   string `json:"name,omitempty"`
	Prompt string `json:"prompt"`
	System string `json:"system,omitempty"`
}

// Provider is the endpoint of the model.
type Provider struct {
	Name      string `json:"name"`
	BaseURL   string `json:"base_url,omitempty"`
	Streaming bool   `json:"streaming"`
}

// Replay names the transcript a replay played back.
type Replay struct {
	// Source is where the recorded transcript was read from.
	Source string `json:"source"`
	// TranscriptID and Model are those of the recorded transcript.
	TranscriptID string `json:"transcript_id,omitempty"`
	Model        string `json:"model,omitempty"`
}

// Tool is a tool offered to the model.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

// Limits are the limits of a task; zero means none.
type Limits struct {
	MaxSteps         int     `json:"max_steps,omitempty"`
	MaxTokens        int64   `json:"max_tokens,omitempty"`
	MaxCostUSD       float64 `json:"max_cost_usd,omitempty"`
	TimeoutMS        int64   `json:"timeout_ms,omitempty"`
	CommandTimeoutMS int64   `json:"command_timeout_ms,omitempty"`
	MaxOutputTokens  int64   `json:"max_output_tokens,omitempty"`
	MaxResultBytes   int     `json:"max_result_bytes,omitempty"`
}

// Reason is why a task ended.
type Reason string

// End reasons. Only ReasonCompleted is a success of the agent loop (checks decide the rest).
const (
	ReasonCompleted    Reason = "completed"
	ReasonMaxSteps     Reason = "max_steps"
	ReasonMaxTokens    Reason = "max_tokens"
	ReasonTimeout      Reason = "timeout"
	ReasonMaxCost      Reason = "max_cost"
	ReasonModelError   Reason = "model_error"
	ReasonSandboxError Reason = "sandbox_error"
	ReasonCanceled     Reason = "canceled"
)

// Reasons lists every end reason.
func Reasons() []Reason {
	return []Reason{ReasonCompleted, ReasonMaxSteps, ReasonMaxTokens, ReasonTimeout, ReasonMaxCost,
		ReasonModelError, ReasonSandboxError, ReasonCanceled}
}

// End is how a task ended.
type End struct {
	Reason Reason `json:"reason"`
	// Detail explains a reason other than completed.
	Detail string `json:"detail,omitempty"`
	// ErrorKind is the provider's error kind for model_error (auth, unknown_model, …).
	ErrorKind string `json:"error_kind,omitempty"`
}

// Usage is token usage and its price.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	// Estimated is set when some figures are estimates (the endpoint reported none).
	Estimated bool `json:"estimated,omitempty"`
	// CostUSD is the price in US dollars, when a price table knew the model.
	CostUSD *float64 `json:"cost_usd,omitempty"`
}

// Message is one message of the conversation, with what happened around it.
type Message struct {
	// Role is system, user, assistant or tool.
	Role    string `json:"role"`
	Content string `json:"content"`
	// Reasoning is the model's reasoning text, when the endpoint gave one.
	Reasoning string `json:"reasoning,omitempty"`
	// ToolCalls are an assistant message's calls.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID is the call a tool message answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// Step is the model call that produced an assistant message, or whose call a tool message
	// answers (from 1).
	Step int `json:"step,omitempty"`
	// Call describes the model call of an assistant message.
	Call *ModelCall `json:"call,omitempty"`
	// Tool describes the execution of a tool message.
	Tool *ToolExecution `json:"tool,omitempty"`
}

// ToolCall is a call as the model wrote it.
type ToolCall struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Arguments is the model's argument text, verbatim (possibly malformed or cut).
	Arguments string `json:"arguments"`
	// ArgumentsOverflow is set when the model sent more than the provider keeps.
	ArgumentsOverflow bool `json:"arguments_overflow,omitempty"`
}

// ModelCall describes one model call.
type ModelCall struct {
	StartedAt    time.Time `json:"started_at"`
	DurationMS   int64     `json:"duration_ms"`
	TTFBMS       int64     `json:"ttfb_ms,omitempty"`
	FinishReason string    `json:"finish_reason,omitempty"`
	// Model is the model id the endpoint reported.
	Model string `json:"model,omitempty"`
	// ResponseID is the endpoint's completion id.
	ResponseID string  `json:"response_id,omitempty"`
	Attempts   int     `json:"attempts"`
	Retries    []Retry `json:"retries,omitempty"`
	Usage      Usage   `json:"usage"`
	// Replayed is set when the answer was played back from a recording.
	Replayed bool `json:"replayed,omitempty"`
}

// Retry is a failed attempt of a model call that was retried.
type Retry struct {
	Attempt int    `json:"attempt"`
	Error   string `json:"error"`
	Kind    string `json:"kind,omitempty"`
	WaitMS  int64  `json:"wait_ms"`
}

// ToolExecution describes how a tool call was carried out.
type ToolExecution struct {
	Name       string    `json:"name"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	// Error is set when the call failed (bad arguments, unknown tool, sandbox refusal…); the
	// content then holds the message the model saw.
	Error bool `json:"error,omitempty"`
	// ExitCode is a command's exit code.
	ExitCode *int `json:"exit_code,omitempty"`
	// TimedOut is set when a command was killed by its timeout.
	TimedOut bool `json:"timed_out,omitempty"`
	// PID is the process id of a background command.
	PID uint32 `json:"pid,omitempty"`
	// OutputBytes is the size of the result before truncation.
	OutputBytes int64 `json:"output_bytes"`
	// Truncated is set when the content was cut to the result limit.
	Truncated bool `json:"truncated,omitempty"`
}

// Marshal encodes a transcript as indented JSON.
func (t *Transcript) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("encoding transcript: %w", err)
	}
	return b.Bytes(), nil
}

// WriteFile writes a transcript to path.
func (t *Transcript) WriteFile(path string) error {
	b, err := t.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing transcript: %w", err)
	}
	return nil
}

// MaxFileBytes bounds a transcript file read by Load.
const MaxFileBytes = 256 << 20

// ErrVersion is returned for a transcript of another schema version.
var ErrVersion = errors.New("unsupported transcript schema version")

// Parse validates data against the schema and decodes it.
func Parse(data []byte) (*Transcript, error) {
	var probe struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("parsing transcript: %w", err)
	}
	if probe.Schema != Version {
		return nil, fmt.Errorf("%w: %q (this build reads %q)", ErrVersion, probe.Schema, Version)
	}
	if err := Validate(data); err != nil {
		return nil, err
	}
	var t Transcript
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decoding transcript: %w", err)
	}
	return &t, nil
}

// Load reads and validates a transcript file.
func Load(path string) (*Transcript, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening transcript: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening transcript: %w", err)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("transcript %s is larger than %d bytes", path, MaxFileBytes)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("reading transcript: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

// Validate checks a transcript document against the JSON Schema.
func Validate(data []byte) error {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
		if err != nil {
			schemaErr = fmt.Errorf("transcript schema: %w", err)
			return
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		if err := c.AddResource("transcript.schema.json", doc); err != nil {
			schemaErr = fmt.Errorf("transcript schema: %w", err)
			return
		}
		schema, schemaErr = c.Compile("transcript.schema.json")
	})
	if schemaErr != nil {
		return schemaErr
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("parsing transcript: %w", err)
	}
	if err := schema.Validate(inst); err != nil {
		return fmt.Errorf("transcript does not match schema %s: %w", Version, err)
	}
	return nil
}
