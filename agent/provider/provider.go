// Package provider talks to the models that drive the agent: any OpenAI-compatible chat-completions
// endpoint (through openai-go, streaming or not), with retries, a watchdog on every call and an
// adaptive limit on the calls in flight; and the replay provider, which plays back the model's turns
// of a recorded transcript. The types here are provider-neutral so the loop never sees wire formats.
package provider

import (
	"context"
	"encoding/json"
	"time"
)

// Role is the author of a message.
type Role string

// Message roles of the chat-completions protocol.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
)

// Message is one message of a conversation.
type Message struct {
	Role    Role
	Content string
	// Reasoning is the model's reasoning text when the endpoint reports one (reasoning_content);
	// it is recorded but never sent back.
	Reasoning string
	// ToolCalls are the calls an assistant message asks for, in the model's order.
	ToolCalls []ToolCall
	// ToolCallID names the call a tool message answers.
	ToolCallID string
}

// ToolCall is one function call asked for by the model. Arguments is the model's text, unparsed:
// it may be malformed, and the tool layer decides what to do with it.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
	// ArgumentsOverflow is set when the model sent more argument bytes than the provider keeps
	// (Config.MaxArgumentBytes); Arguments then holds only the first bytes.
	ArgumentsOverflow bool
}

// ToolSpec describes a tool to the model.
type ToolSpec struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments object.
	Parameters json.RawMessage
}

// Request is one model call.
type Request struct {
	// Model is the model id as the endpoint knows it (no provider prefix).
	Model    string
	Messages []Message
	Tools    []ToolSpec
	// MaxOutputTokens bounds the completion (max_tokens); 0 leaves it to the endpoint.
	MaxOutputTokens int64
	// Temperature is sent when not nil.
	Temperature *float64
	// Seed asks the endpoint for deterministic sampling when not nil; endpoints that do not
	// support it ignore it.
	Seed *int64
}

// Usage is the token usage of one call or of a sum of calls.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	// Estimated is set when the endpoint reported no usage and the figures are estimates
	// (about four bytes per token).
	Estimated bool
}

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + o.PromptTokens,
		CompletionTokens: u.CompletionTokens + o.CompletionTokens,
		TotalTokens:      u.TotalTokens + o.TotalTokens,
		Estimated:        u.Estimated || o.Estimated,
	}
}

// Response is the model's answer to one Request.
type Response struct {
	// Message is the assistant message (content and tool calls).
	Message Message
	// FinishReason is the endpoint's finish_reason (stop, tool_calls, length, …), as reported.
	FinishReason string
	Usage        Usage
	// Model is the model id the endpoint reported, when it did.
	Model string
	// ID is the endpoint's completion id, when it gave one.
	ID string
	// Attempts counts the HTTP attempts made, retries included.
	Attempts int
	// Retries describes each failed attempt that was retried.
	Retries []Retry
	// TTFB is the time from sending the successful attempt to its first response byte.
	TTFB time.Duration
	// Duration is the time of the whole call, retries and waits included.
	Duration time.Duration
	// Replayed is set when the response came from a recorded transcript, not a model.
	Replayed bool
}

// Retry describes a failed attempt that was retried.
type Retry struct {
	Attempt int
	// Err is the attempt's error.
	Err error
	// Wait is how long the provider waited before the next attempt.
	Wait time.Duration
}

// Delta is a piece of a streamed answer, delivered as it arrives (for live display only; the
// Response is the record).
type Delta struct {
	// Content is new answer text.
	Content string
	// Reasoning is new reasoning text.
	Reasoning string
	// ToolCallIndex, ToolName and ToolArguments describe a fragment of a tool call.
	ToolCallIndex int
	ToolName      string
	ToolArguments string
}

// Hooks receive what happens during a call. Nil hooks are skipped; hooks run on the calling
// goroutine and must not block for long.
type Hooks struct {
	// OnDelta receives streamed fragments. After a retry, fragments start again from the beginning.
	OnDelta func(Delta)
	// OnRetry is called before waiting to retry a failed attempt.
	OnRetry func(Retry)
}

// Info describes a provider for transcripts and reports.
type Info struct {
	// Name is the preset name ("novita", "openai", "ollama", "custom", "replay").
	Name string
	// BaseURL is the endpoint's base URL (empty for replay).
	BaseURL string
	// Streaming is set when calls stream.
	Streaming bool
	// ReplayOf names the recorded transcript a replay provider plays back.
	ReplayOf string
	// ReplayModel and ReplayID are the model and id of the recorded transcript.
	ReplayModel string
	ReplayID    string
}

// Provider answers model calls. OpenAI is safe for concurrent use by many tasks; a Replay plays
// back one conversation.
type Provider interface {
	// Complete makes one model call, retrying transient failures. Failures are *Error, or the
	// context's error when ctx ended.
	Complete(ctx context.Context, req *Request, hooks Hooks) (*Response, error)
	// Info describes the provider.
	Info() Info
}
