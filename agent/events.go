package agent

import (
	"time"

	"github.com/agentrun/agent/agent/transcript"
)

// EventType names what happened.
type EventType string

// Event types, in the order a task produces them.
const (
	// EventTaskStart: the task begins (Text is the prompt).
	EventTaskStart EventType = "task_start"
	// EventStepStart: a model call begins.
	EventStepStart EventType = "step_start"
	// EventDelta: a streamed fragment of the answer (Text, Reasoning, or a ToolCall fragment).
	EventDelta EventType = "delta"
	// EventRetry: a model call failed and will be retried.
	EventRetry EventType = "retry"
	// EventAssistant: the model answered (Text, ToolCalls, Call).
	EventAssistant EventType = "assistant"
	// EventToolStart: a tool call begins (ToolCall).
	EventToolStart EventType = "tool_start"
	// EventToolEnd: a tool call ended (Text is the result the model sees, Tool the details).
	EventToolEnd EventType = "tool_end"
	// EventTaskEnd: the task ended (End, Usage).
	EventTaskEnd EventType = "task_end"
)

// Event is one thing that happened in a task, shaped for a terminal or a JSONL stream.
type Event struct {
	Type EventType `json:"type"`
	Time time.Time `json:"time"`
	Task string    `json:"task,omitempty"`
	Step int       `json:"step,omitempty"`
	// Text is the prompt, a streamed fragment, the assistant's content or a tool result.
	Text      string `json:"text,omitempty"`
	Reasoning string `json:"reasoning,omitempty"`
	// ToolCall is the call of a tool event or a streamed call fragment.
	ToolCall *transcript.ToolCall `json:"tool_call,omitempty"`
	// ToolCalls are the calls of an assistant event.
	ToolCalls []transcript.ToolCall     `json:"tool_calls,omitempty"`
	Tool      *transcript.ToolExecution `json:"tool,omitempty"`
	Call      *transcript.ModelCall     `json:"call,omitempty"`
	Retry     *transcript.Retry         `json:"retry,omitempty"`
	End       *transcript.End           `json:"end,omitempty"`
	Usage     *transcript.Usage         `json:"usage,omitempty"`
}
