package provider

import (
	"encoding/json"
	"strings"

	"github.com/openai/openai-go/v3"
)

// accumulator assembles a streamed answer from its chunks. Endpoints stream tool calls in two
// shapes, both handled: argument fragments spread over chunks and joined by index (OpenAI), and one
// whole call per chunk — sometimes every call at index 0, told apart only by a new id.
// Every buffer is bounded: text past the limit is counted, not kept.
type accumulator struct {
	maxText   int
	maxArgs   int
	content   boundedText
	reasoning boundedText
	calls     []*callAcc
	byIndex   map[int64]*callAcc
	finish    string
	usage     openai.CompletionUsage
	hasUsage  bool
	id, model string
}

// MaxToolCalls bounds the tool calls kept from one answer; a model asking for more loses the rest.
const MaxToolCalls = 256

type callAcc struct {
	id, name string
	args     strings.Builder
	overflow bool
}

type boundedText struct {
	b       strings.Builder
	dropped int
}

func (t *boundedText) add(s string, limit int) {
	if room := limit - t.b.Len(); room < len(s) {
		if room > 0 {
			t.b.WriteString(s[:room])
		}
		t.dropped += len(s) - max(room, 0)
		return
	}
	t.b.WriteString(s)
}

func newAccumulator(maxText, maxArgs int) *accumulator {
	return &accumulator{maxText: maxText, maxArgs: maxArgs, byIndex: map[int64]*callAcc{}}
}

func (a *accumulator) add(c *openai.ChatCompletionChunk, onDelta func(Delta)) {
	if a.id == "" {
		a.id = c.ID
	}
	if a.model == "" {
		a.model = c.Model
	}
	if c.JSON.Usage.Valid() && (c.Usage.TotalTokens > 0 || c.Usage.PromptTokens > 0 || c.Usage.CompletionTokens > 0) {
		a.usage, a.hasUsage = c.Usage, true
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue // only the first choice is asked for
		}
		if ch.FinishReason != "" {
			a.finish = ch.FinishReason
		}
		d := &ch.Delta
		if d.Content != "" {
			a.content.add(d.Content, a.maxText)
			emit(onDelta, Delta{Content: d.Content})
		}
		if r := extraString(d.JSON.ExtraFields, "reasoning_content", "reasoning"); r != "" {
			a.reasoning.add(r, a.maxText)
			emit(onDelta, Delta{Reasoning: r})
		}
		for j := range d.ToolCalls {
			a.addCall(&d.ToolCalls[j], onDelta)
		}
	}
}

func (a *accumulator) addCall(tc *openai.ChatCompletionChunkChoiceDeltaToolCall, onDelta func(Delta)) {
	idx := tc.Index
	cur := a.byIndex[idx]
	if cur == nil || (tc.ID != "" && cur.id != "" && tc.ID != cur.id) {
		if len(a.calls) >= MaxToolCalls {
			return
		}
		cur = &callAcc{}
		a.byIndex[idx] = cur
		a.calls = append(a.calls, cur)
	}
	if tc.ID != "" && cur.id == "" {
		cur.id = tc.ID
	}
	// Some endpoints repeat the whole name in every fragment; others split it.
	if n := tc.Function.Name; n != "" && n != cur.name && len(cur.name)+len(n) <= 256 {
		cur.name += n
	}
	if frag := tc.Function.Arguments; frag != "" {
		if room := a.maxArgs - cur.args.Len(); room < len(frag) {
			if room > 0 {
				cur.args.WriteString(frag[:room])
			}
			cur.overflow = true
		} else {
			cur.args.WriteString(frag)
		}
	}
	emit(onDelta, Delta{ToolCallIndex: len(a.calls) - 1, ToolName: tc.Function.Name, ToolArguments: tc.Function.Arguments})
}

func (a *accumulator) response() *Response {
	r := &Response{
		Message: Message{
			Role:      RoleAssistant,
			Content:   a.content.b.String(),
			Reasoning: a.reasoning.b.String(),
		},
		FinishReason: a.finish,
		Model:        a.model,
		ID:           a.id,
	}
	for _, c := range a.calls {
		r.Message.ToolCalls = append(r.Message.ToolCalls, ToolCall{
			ID: c.id, Name: c.name, Arguments: c.args.String(), ArgumentsOverflow: c.overflow,
		})
	}
	if a.hasUsage {
		r.Usage = usageOf(a.usage)
	}
	return r
}

func emit(f func(Delta), d Delta) {
	if f != nil {
		f(d)
	}
}

func usageOf(u openai.CompletionUsage) Usage {
	total := u.TotalTokens
	if total == 0 {
		total = u.PromptTokens + u.CompletionTokens
	}
	return Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: total}
}

// extraString returns the first of the named extra JSON fields that holds a non-empty string.
func extraString[F interface{ Raw() string }](fields map[string]F, names ...string) string {
	for _, n := range names {
		f, ok := fields[n]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal([]byte(f.Raw()), &s) == nil && s != "" {
			return s
		}
	}
	return ""
}
