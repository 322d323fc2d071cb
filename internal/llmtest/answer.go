package llmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"
)

// answer is a turn made concrete for one request.
type answer struct {
	content string
	calls   []wireCall
	finish  string
	usage   *Usage
}

type wireCall struct {
	id, name, args string
}

// DoneContent is the answer to a request past the end of a scenario without Loop.
const DoneContent = "Done."

func answerOf(sc *Scenario, t *Turn, step, requestBytes int, last string) *answer {
	if t == nil {
		return &answer{content: DoneContent, finish: "stop", usage: &Usage{PromptTokens: int64(requestBytes/4 + 1), CompletionTokens: 1}}
	}
	a := &answer{content: t.Content, finish: t.FinishReason}
	for i, c := range t.ToolCalls {
		id := c.ID
		if id == "" && !c.NoID {
			id = fmt.Sprintf("call_%d_%d", step, i)
		}
		a.calls = append(a.calls, wireCall{id: id, name: c.Name, args: c.arguments(last)})
	}
	if a.finish == "" {
		a.finish = "stop"
		if len(a.calls) > 0 {
			a.finish = "tool_calls"
		}
	}
	switch {
	case t.NoUsage:
	case t.Usage != nil:
		u := *t.Usage
		a.usage = &u
	default:
		out := len(a.content)
		for _, c := range a.calls {
			out += len(c.name) + len(c.args)
		}
		a.usage = &Usage{PromptTokens: int64(requestBytes/4 + 1), CompletionTokens: int64(out/4 + 1)}
	}
	return a
}

func (a *answer) usageJSON() map[string]any {
	if a.usage == nil {
		return nil
	}
	return map[string]any{
		"prompt_tokens":     a.usage.PromptTokens,
		"completion_tokens": a.usage.CompletionTokens,
		"total_tokens":      a.usage.PromptTokens + a.usage.CompletionTokens,
	}
}

func (a *answer) completion(id, model string) map[string]any {
	msg := map[string]any{"role": "assistant", "content": a.content}
	if a.content == "" && len(a.calls) > 0 {
		msg["content"] = nil
	}
	if len(a.calls) > 0 {
		var calls []map[string]any
		for _, c := range a.calls {
			calls = append(calls, withID(map[string]any{
				"type": "function", "function": map[string]any{"name": c.name, "arguments": c.args},
			}, c.id))
		}
		msg["tool_calls"] = calls
	}
	out := map[string]any{
		"id": id, "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": a.finish}},
	}
	if u := a.usageJSON(); u != nil {
		out["usage"] = u
	}
	return out
}

// stream writes the answer as server-sent chat.completion.chunk events.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sc *Scenario, t *Turn, a *answer, id, model string, includeUsage bool) {
	shape, frag, interleave := sc.Stream, 8, false
	if t != nil {
		if t.Stream != "" {
			shape = t.Stream
		}
		if t.Fragment > 0 {
			frag = t.Fragment
		}
		interleave = t.Interleave
	}
	if shape == "" {
		shape = ShapeFragments
	}
	delay := time.Duration(sc.ChunkDelay)

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	created := time.Now().Unix()
	send := func(choices []map[string]any, usage map[string]any) bool {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
		if usage != nil {
			c["usage"] = usage
		}
		b, err := json.Marshal(c)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return s.wait(r.Context(), delay)
	}
	delta := func(d map[string]any) []map[string]any {
		return []map[string]any{{"index": 0, "delta": d, "finish_reason": nil}}
	}
	callDelta := func(idx int, fields map[string]any) []map[string]any {
		fields["index"] = idx
		return delta(map[string]any{"tool_calls": []map[string]any{fields}})
	}

	if !send(delta(map[string]any{"role": "assistant", "content": ""}), nil) {
		return
	}
	for _, piece := range split(a.content, frag) {
		if !send(delta(map[string]any{"content": piece}), nil) {
			return
		}
	}
	switch shape {
	case ShapeWhole, ShapeWholeSameIndex:
		for i, c := range a.calls {
			idx := i
			if shape == ShapeWholeSameIndex {
				idx = 0
			}
			if !send(callDelta(idx, withID(map[string]any{"type": "function",
				"function": map[string]any{"name": c.name, "arguments": c.args}}, c.id)), nil) {
				return
			}
		}
	default:
		pieces := make([][]string, len(a.calls))
		for i, c := range a.calls {
			pieces[i] = split(c.args, frag)
			if !interleave {
				if !s.sendCall(send, callDelta, i, c, pieces[i]) {
					return
				}
			}
		}
		if interleave {
			for i, c := range a.calls {
				if !send(callDelta(i, withID(map[string]any{"type": "function",
					"function": map[string]any{"name": c.name, "arguments": ""}}, c.id)), nil) {
					return
				}
			}
			for k := 0; ; k++ {
				sent := false
				for i := range a.calls {
					if k < len(pieces[i]) {
						sent = true
						if !send(callDelta(i, map[string]any{"function": map[string]any{"arguments": pieces[i][k]}}), nil) {
							return
						}
					}
				}
				if !sent {
					break
				}
			}
		}
	}
	if !send([]map[string]any{{"index": 0, "delta": map[string]any{}, "finish_reason": a.finish}}, nil) {
		return
	}
	if includeUsage {
		if u := a.usageJSON(); u != nil {
			if !send([]map[string]any{}, u) {
				return
			}
		}
	}
	markAnswered(r)
	fmt.Fprint(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

func (s *Server) sendCall(send func([]map[string]any, map[string]any) bool,
	callDelta func(int, map[string]any) []map[string]any, i int, c wireCall, pieces []string) bool {
	if !send(callDelta(i, withID(map[string]any{"type": "function",
		"function": map[string]any{"name": c.name, "arguments": ""}}, c.id)), nil) {
		return false
	}
	for _, p := range pieces {
		if !send(callDelta(i, map[string]any{"function": map[string]any{"arguments": p}}), nil) {
			return false
		}
	}
	return true
}

// split cuts s into pieces of about n bytes, at rune boundaries: a JSON string cannot carry half a
// UTF-8 sequence.
func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		k := n
		for k < len(s) && !utf8.RuneStart(s[k]) {
			k++
		}
		out = append(out, s[:k])
		s = s[k:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// withID adds an "id" field unless the call has none.
func withID(m map[string]any, id string) map[string]any {
	if id != "" {
		m["id"] = id
	}
	return m
}
