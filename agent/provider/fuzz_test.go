package provider

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
)

// FuzzAccumulate feeds arbitrary chunk sequences (one JSON chunk per line) to the stream
// accumulator: it must never panic and never keep more than its bounds.
func FuzzAccumulate(f *testing.F) {
	f.Add(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"read_file","arguments":"{\"pa"}}]}}]}
{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":1}"}}]}}]}
{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`)
	f.Add(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"x","arguments":"{}"}},{"index":0,"id":"b","function":{"name":"y","arguments":"{}"}}]}}]}`)
	f.Add(`{"choices":[{"index":7,"delta":{"content":"ignored"}},{"index":0,"delta":{"content":"kept","reasoning_content":"hmm"}}]}`)
	f.Fuzz(func(t *testing.T, stream string) {
		const maxText, maxArgs = 64, 32
		a := newAccumulator(maxText, maxArgs)
		for _, line := range strings.Split(stream, "\n") {
			var c openai.ChatCompletionChunk
			if json.Unmarshal([]byte(line), &c) != nil {
				continue
			}
			a.add(&c, func(Delta) {})
		}
		r := a.response()
		if len(r.Message.Content) > maxText || len(r.Message.Reasoning) > maxText {
			t.Fatalf("text beyond its bound: %d", len(r.Message.Content))
		}
		if len(r.Message.ToolCalls) > MaxToolCalls {
			t.Fatalf("%d calls", len(r.Message.ToolCalls))
		}
		for _, tc := range r.Message.ToolCalls {
			if len(tc.Arguments) > maxArgs || len(tc.Name) > 256 {
				t.Fatalf("call beyond its bounds: %+v", tc)
			}
		}
	})
}
