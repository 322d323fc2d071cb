package llmtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agentrun/agent/agent/transcript"
)

func post(t *testing.T, url string, body any) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url+"/chat/completions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestLoadDir(t *testing.T) {
	scs, err := LoadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, sc := range scs {
		names = append(names, sc.Name)
	}
	if strings.Join(names, ",") != "flaky,never-stops,parallel-whole,write-and-test" {
		t.Errorf("names = %v", names)
	}
	w := scs[3]
	if len(w.Turns) != 3 || w.Turns[0].ToolCalls[0].arguments("") != `{"data":"print('hello from the sandbox')\n","path":"hello.py"}` {
		t.Errorf("write-and-test = %+v", w.Turns[0])
	}
	if scs[0].Turns[0].Failures[0].RetryAfter != "1" || !scs[1].Loop || scs[2].Stream != ShapeWholeSameIndex {
		t.Errorf("fields not read")
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		"turns: [{content: x, bogus: 1}]",
		"stream: sideways",
		"loop: true",
		"turns: [{tool_calls: [{args: {}}]}]",
		"turns: [{failures: [{}]}]",
		"turns: [{failures: [{hang: forever}]}]",
		"turns: [{tool_calls: [{name: a, arguments: '{}', args: {}}]}]",
		"latency: soon",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	// JSON is accepted too.
	sc, err := Parse([]byte(`{"name": "j", "turns": [{"content": "hi"}], "latency": "5ms"}`))
	if err != nil || sc.Name != "j" || sc.Latency != Duration(5e6) {
		t.Errorf("JSON scenario: %+v %v", sc, err)
	}
}

func TestServerAnswersAndRecords(t *testing.T) {
	sc := &Scenario{Name: "m", Turns: []Turn{
		{Content: "héllo", ToolCalls: []ToolCall{{ID: "x", Name: "f", Arguments: `{"a":"✓✓✓✓"}`}}, Fragment: 2},
	}}
	srv := Start(t, sc, &Scenario{Name: "other"})
	// Non-streaming.
	resp := post(t, srv.URL(), map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": "hi"}}})
	var c struct {
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	m := c.Choices[0].Message
	if m.Content != "héllo" || m.ToolCalls[0].ID != "x" || m.ToolCalls[0].Function.Arguments != `{"a":"✓✓✓✓"}` || c.Choices[0].FinishReason != "tool_calls" || c.Usage.TotalTokens == 0 {
		t.Errorf("completion = %+v", c)
	}
	// Streaming, fragments of 2 bytes cut at rune boundaries: every chunk is valid JSON.
	resp = post(t, srv.URL(), map[string]any{"model": "m", "stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []map[string]any{{"role": "user", "content": "hi"}}})
	sc2 := bufio.NewScanner(resp.Body)
	var args, content strings.Builder
	chunks, usage, done := 0, false, false
	for sc2.Scan() {
		line, ok := strings.CutPrefix(sc2.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			continue
		}
		chunks++
		var ch struct {
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					ToolCalls []struct {
						Function struct{ Arguments string } `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct{} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(line), &ch); err != nil {
			t.Fatalf("chunk %q: %v", line, err)
		}
		if ch.Usage != nil {
			usage = true
		}
		for _, choice := range ch.Choices {
			content.WriteString(choice.Delta.Content)
			for _, tc := range choice.Delta.ToolCalls {
				args.WriteString(tc.Function.Arguments)
			}
		}
	}
	if content.String() != "héllo" || args.String() != `{"a":"✓✓✓✓"}` || !usage || !done || chunks < 8 {
		t.Errorf("stream: content %q args %q usage %v done %v chunks %d", content.String(), args.String(), usage, done, chunks)
	}
	// Unknown model with two scenarios: 404 model_not_found.
	resp = post(t, srv.URL(), map[string]any{"model": "nope", "messages": []any{}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "model_not_found") {
		t.Errorf("unknown model: %d %s", resp.StatusCode, body)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[1].Stream != true || !reqs[1].IncludeUsage || reqs[0].Messages[0].Text() != "hi" || reqs[2].Answer != "unknown model" {
		t.Errorf("recorded = %+v", reqs)
	}
	// Past the end of the script: a plain final answer.
	resp = post(t, srv.URL(), map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}}})
	json.NewDecoder(resp.Body).Decode(&c)
	if c.Choices[0].Message.Content != DoneContent || c.Choices[0].FinishReason != "stop" {
		t.Errorf("past the end: %+v", c)
	}
}

func TestFailuresPerConversation(t *testing.T) {
	sc := &Scenario{Name: "m", Turns: []Turn{{Content: "ok", Failures: []Failure{{Status: 429, RetryAfter: "3"}}}}}
	srv := Start(t, sc)
	for _, conv := range []string{"one", "two"} {
		msgs := []map[string]any{{"role": "user", "content": conv}}
		resp := post(t, srv.URL(), map[string]any{"model": "m", "messages": msgs})
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
			t.Errorf("%s: first attempt %d", conv, resp.StatusCode)
		}
		resp = post(t, srv.URL(), map[string]any{"model": "m", "messages": msgs})
		if resp.StatusCode != 200 {
			t.Errorf("%s: second attempt %d", conv, resp.StatusCode)
		}
	}
}

func TestExpectations(t *testing.T) {
	srv := Start(t, &Scenario{Name: "m", Turns: []Turn{{Content: "a", ExpectLastContains: []string{"needle"}}}})
	post(t, srv.URL(), map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": "haystack"}}})
	post(t, srv.URL(), map[string]any{"model": "m", "messages": []map[string]any{{"role": "user", "content": "a needle"}}})
	if mm := srv.Mismatches(); len(mm) != 1 || !strings.Contains(mm[0], `"needle"`) {
		t.Errorf("mismatches = %v", mm)
	}
}

func TestTemplates(t *testing.T) {
	sc := &Scenario{Name: "m", Turns: []Turn{{}, {ToolCalls: []ToolCall{{Name: "kill_command", Args: map[string]any{"pid": "{{last:pid (\\d+)}}"}}}}}}
	srv := Start(t, sc)
	resp := post(t, srv.URL(), map[string]any{"model": "m", "messages": []map[string]any{
		{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}, {"role": "tool", "tool_call_id": "c", "content": "Started with pid 4242."}}})
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `{\"pid\":\"4242\"}`) {
		t.Errorf("template not expanded: %s", body)
	}
	if _, err := Parse([]byte(`turns: [{tool_calls: [{name: a, arguments: "{{last:(}}"}]}]`)); err == nil {
		t.Error("bad template regexp accepted")
	}
}

func TestNewServerAtRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.0.0.1:0", ":0", "example.com:0"} {
		if s, err := NewServerAt(addr); err == nil {
			s.Close()
			t.Errorf("served on %s", addr)
		}
	}
	s, err := NewServerAt("[::1]:0", &Scenario{Name: "m"})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	s.Close()
}

func TestTranscriptTurnsKeepTheModelsSide(t *testing.T) {
	tr := &transcript.Transcript{Messages: []transcript.Message{
		{Role: "system", Content: "be brief"},
		{Role: "user", Content: "write a.txt"},
		{Role: "assistant", Content: "Writing.", ToolCalls: []transcript.ToolCall{{ID: "c1", Name: "write_file", Arguments: `{"path":"a.txt"}`}}},
		{Role: "tool", Content: "wrote 1 byte", ToolCallID: "c1"},
		{Role: "assistant", Content: "Done."},
	}}
	turns := TranscriptTurns(tr)
	if len(turns) != 2 || turns[0].Content != "Writing." || turns[1].Content != "Done." || len(turns[1].ToolCalls) != 0 {
		t.Fatalf("turns: %+v", turns)
	}
	if c := turns[0].ToolCalls; len(c) != 1 || c[0].ID != "c1" || c[0].Name != "write_file" || c[0].Arguments != `{"path":"a.txt"}` {
		t.Errorf("tool calls: %+v", c)
	}
}
