// Package agent runs the tool loop of a coding agent: it sends the task to a model with the
// sandbox tools, carries out the tool calls the model asks for in the sandbox, feeds the results
// back, and repeats until the model answers without tool calls or a limit ends the task (steps,
// tokens, dollars, wall time). Everything that happens is recorded in a transcript and reported to
// an observer as it happens.
//
// The loop runs on the host; only tool calls reach the sandbox. Models are reached through
// agent/provider (any OpenAI-compatible endpoint, or the replay of a recorded transcript).
package agent

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/tools"
	"github.com/agentrun/agent/agent/transcript"
)

// Reason is why a task ended (see transcript.Reason).
type Reason = transcript.Reason

// End reasons, re-exported for the runner.
const (
	ReasonCompleted    = transcript.ReasonCompleted
	ReasonMaxSteps     = transcript.ReasonMaxSteps
	ReasonMaxTokens    = transcript.ReasonMaxTokens
	ReasonTimeout      = transcript.ReasonTimeout
	ReasonMaxCost      = transcript.ReasonMaxCost
	ReasonModelError   = transcript.ReasonModelError
	ReasonSandboxError = transcript.ReasonSandboxError
	ReasonCanceled     = transcript.ReasonCanceled
)

// DefaultMaxSteps bounds the model calls of a task when its limits set none: a model that never
// stops calling tools must still end.
const DefaultMaxSteps = 50

// DefaultSystemPrompt is sent when a task has no system prompt of its own.
const DefaultSystemPrompt = `You are a coding agent working inside an isolated Linux sandbox.
Use the tools to read and write files and to run shell commands; commands run in the working
directory%s. Work step by step: look at what is there, make the change, then run it or test it
to check that it works. Fix what fails. When the task is done, answer with a short summary of
what you did, without calling any tool.`

// Task is one task for the agent.
type Task struct {
	// Name names the task in events and transcripts.
	Name string
	// Prompt is the user's request.
	Prompt string
	// System replaces DefaultSystemPrompt.
	System string
	// Model is the model id as the user gave it, provider prefix included
	// ("novita:qwen/qwen3-coder-30b-a3b-instruct"); the provider receives the id without prefix.
	Model string
	// History holds earlier messages of a conversation (agent chat), without the system
	// message; Prompt is appended to it as a new user message. Result.Messages is the next
	// History.
	History []provider.Message
	// Workdir is the sandbox directory commands run in and relative paths point to.
	Workdir string
	// User runs the commands; empty means the sandbox's default user.
	User string
	// Env is added to the environment of every command.
	Env map[string]string
	// Limits bound the task.
	Limits Limits
	// Seed is sent with every model call when not nil, for endpoints that sample
	// deterministically with a seed.
	Seed *int64
}

// Limits bound a task. Zero values mean no limit, except MaxSteps (DefaultMaxSteps) and the tool
// bounds (the tools package's defaults).
type Limits struct {
	// MaxSteps bounds the model calls.
	MaxSteps int
	// MaxTokens bounds the tokens of all model calls together (prompt + completion).
	MaxTokens int64
	// MaxCost bounds the task's cost in US dollars; it needs a price for the model.
	MaxCost float64
	// Timeout bounds the task's wall time.
	Timeout time.Duration
	// CommandTimeout bounds each foreground command.
	CommandTimeout time.Duration
	// MaxOutputTokens bounds each completion (max_tokens of the request).
	MaxOutputTokens int64
	// MaxResultBytes bounds each tool result given to the model.
	MaxResultBytes int
	// MaxCallsPerStep bounds the tool calls carried out per model answer (default 32); the rest
	// are answered with an error.
	MaxCallsPerStep int
}

// Options are the run-wide parts of a task's environment. All are optional.
type Options struct {
	// Observer receives events as the task runs, on the task's goroutine; it must not block long.
	Observer func(Event)
	// Prices prices the model calls (needed by MaxCost and by a Budget with a dollar limit).
	Prices *Prices
	// Budget is the run-wide budget shared by the tasks of a run.
	Budget *Budget
	// Tools replaces the tool set made for the task, so that a conversation (agent chat) keeps
	// its background commands across turns. The caller then closes it.
	Tools *tools.Set
	// Logger receives the loop's logs (default slog.Default()).
	Logger *slog.Logger
}

// Result is how a task went.
type Result struct {
	// End is how the task ended.
	End transcript.End
	// FinalAnswer is the model's last answer when the task completed.
	FinalAnswer string
	// Steps counts the model calls.
	Steps int
	// Usage sums the model calls' usage.
	Usage provider.Usage
	// Cost is the price of the model calls in US dollars; CostKnown is false when no price was
	// known for the model.
	Cost      float64
	CostKnown bool
	// Duration is the task's wall time.
	Duration time.Duration
	// Transcript is the task's full record.
	Transcript *transcript.Transcript
	// Messages is the conversation as sent to the model, without the system message (the History
	// of a next turn).
	Messages []provider.Message
}

// EndError is the error Run returns for a task that did not complete.
type EndError struct {
	Reason Reason
	Detail string
	// Err is the underlying error: a *provider.Error, a sandbox error, the context's error.
	Err error
}

// Error says why the task ended.
func (e *EndError) Error() string {
	if e.Detail == "" {
		return "task ended: " + string(e.Reason)
	}
	return fmt.Sprintf("task ended: %s: %s", e.Reason, e.Detail)
}

// Unwrap returns the underlying error.
func (e *EndError) Unwrap() error { return e.Err }
