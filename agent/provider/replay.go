package provider

import (
	"context"
	"fmt"
	"sync"

	"github.com/agentrun/agent/agent/transcript"
)

// Replay plays back the model's turns of a recorded transcript, in order, whatever the request
// says: the loop then runs the recorded tool calls for real in a fresh sandbox. It reproduces a run
// offline, without a key. A Replay serves one conversation; make one per task.
type Replay struct {
	source string
	tr     *transcript.Transcript
	turns  []transcript.Message

	mu   sync.Mutex
	next int
}

// NewReplay returns a replay of tr; source names where it was read from.
func NewReplay(tr *transcript.Transcript, source string) *Replay {
	r := &Replay{source: source, tr: tr}
	for _, m := range tr.Messages {
		if m.Role == string(RoleAssistant) {
			r.turns = append(r.turns, m)
		}
	}
	return r
}

// LoadReplay reads and validates a transcript file and returns its replay.
func LoadReplay(path string) (*Replay, error) {
	tr, err := transcript.Load(path)
	if err != nil {
		return nil, err
	}
	return NewReplay(tr, path), nil
}

// Transcript returns the recorded transcript.
func (r *Replay) Transcript() *transcript.Transcript { return r.tr }

// Info describes the replay.
func (r *Replay) Info() Info {
	return Info{Name: ReplayName, ReplayOf: r.source, ReplayModel: r.tr.Model, ReplayID: r.tr.ID}
}

// Complete returns the next recorded turn. When none is left it fails with KindReplayExhausted.
func (r *Replay) Complete(ctx context.Context, req *Request, hooks Hooks) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	r.mu.Lock()
	if r.next >= len(r.turns) {
		n := len(r.turns)
		r.mu.Unlock()
		return nil, &Error{Kind: KindReplayExhausted, Attempts: 1, Message: fmt.Sprintf(
			"the recorded transcript %s has no model turn left (it has %d; the recorded task ended: %s)",
			r.source, n, r.tr.End.Reason)}
	}
	m := r.turns[r.next]
	r.next++
	r.mu.Unlock()

	resp := &Response{
		Message:  Message{Role: RoleAssistant, Content: m.Content, Reasoning: m.Reasoning},
		Attempts: 1,
		Replayed: true,
		Model:    r.tr.Model,
	}
	for _, tc := range m.ToolCalls {
		resp.Message.ToolCalls = append(resp.Message.ToolCalls, ToolCall{
			ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments, ArgumentsOverflow: tc.ArgumentsOverflow,
		})
	}
	if c := m.Call; c != nil {
		resp.FinishReason = c.FinishReason
		resp.Usage = Usage{
			PromptTokens: c.Usage.PromptTokens, CompletionTokens: c.Usage.CompletionTokens,
			TotalTokens: c.Usage.TotalTokens, Estimated: c.Usage.Estimated,
		}
		if c.Model != "" {
			resp.Model = c.Model
		}
	}
	if hooks.OnDelta != nil {
		if m.Content != "" {
			hooks.OnDelta(Delta{Content: m.Content})
		}
		for i, tc := range m.ToolCalls {
			hooks.OnDelta(Delta{ToolCallIndex: i, ToolName: tc.Name, ToolArguments: tc.Arguments})
		}
	}
	return resp, nil
}
