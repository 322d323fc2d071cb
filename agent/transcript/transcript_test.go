package transcript

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func sample() *Transcript {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	zero, cost := 0, 0.0012
	return &Transcript{
		Schema:    Version,
		ID:        "0123456789abcdef",
		Task:      Task{Name: "hello", Prompt: "write hello.txt", System: "You are a coding agent."},
		Model:     "novita:qwen/qwen3-coder-30b-a3b-instruct",
		Provider:  Provider{Name: "novita", BaseURL: "https://api.novita.ai/openai", Streaming: true},
		Tools:     []Tool{{Name: "read_file", Description: "Read contents of a file inside the sandbox", Parameters: json.RawMessage(`{"type":"object"}`)}},
		Limits:    Limits{MaxSteps: 30, TimeoutMS: 600000},
		StartedAt: t0, EndedAt: t0.Add(3 * time.Second), DurationMS: 3000,
		End:   End{Reason: ReasonCompleted},
		Steps: 2,
		Usage: Usage{PromptTokens: 100, CompletionTokens: 20, TotalTokens: 120, CostUSD: &cost},
		Messages: []Message{
			{Role: "system", Content: "You are a coding agent."},
			{Role: "user", Content: "write hello.txt"},
			{Role: "assistant", Step: 1, ToolCalls: []ToolCall{{ID: "c1", Name: "run_commands", Arguments: `{"command":"echo hi > hello.txt"}`}},
				Call: &ModelCall{StartedAt: t0, DurationMS: 900, Attempts: 2, FinishReason: "tool_calls",
					Retries: []Retry{{Attempt: 1, Error: "rate limited", Kind: "rate_limited", WaitMS: 1000}},
					Usage:   Usage{PromptTokens: 50, CompletionTokens: 10, TotalTokens: 60}}},
			{Role: "tool", ToolCallID: "c1", Step: 1, Content: "exit code: 0\n(no output)",
				Tool: &ToolExecution{Name: "run_commands", StartedAt: t0, DurationMS: 30, ExitCode: &zero}},
			{Role: "assistant", Step: 2, Content: "Done.", Call: &ModelCall{StartedAt: t0, DurationMS: 500, Attempts: 1,
				FinishReason: "stop", Usage: Usage{PromptTokens: 50, CompletionTokens: 10, TotalTokens: 60}}},
		},
		FinalAnswer: "Done.",
	}
}

func TestRoundTripValidates(t *testing.T) {
	tr := sample()
	path := filepath.Join(t.TempDir(), "transcript.json")
	if err := tr.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := got.Marshal()
	b, _ := tr.Marshal()
	if string(a) != string(b) {
		t.Errorf("round trip differs:\n%s\nwant\n%s", a, b)
	}
	if got.Messages[2].Call.Retries[0].WaitMS != 1000 || *got.Usage.CostUSD != 0.0012 {
		t.Errorf("decoded = %+v", got)
	}
}

func TestSchemaRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"unknown end reason", func(m map[string]any) { m["end"].(map[string]any)["reason"] = "done" }, "reason"},
		{"missing messages", func(m map[string]any) { delete(m, "messages") }, "messages"},
		{"unknown field", func(m map[string]any) { m["extra"] = 1 }, "extra"},
		{"tool message without call id", func(m map[string]any) {
			delete(m["messages"].([]any)[3].(map[string]any), "tool_call_id")
		}, "tool_call_id"},
		{"tool calls on a user message", func(m map[string]any) {
			m["messages"].([]any)[1].(map[string]any)["tool_calls"] = []any{map[string]any{"id": "x", "name": "y", "arguments": ""}}
		}, "/messages/1"},
		{"bad time", func(m map[string]any) { m["started_at"] = "yesterday" }, "started_at"},
		{"negative tokens", func(m map[string]any) { m["usage"].(map[string]any)["total_tokens"] = -1 }, "total_tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, _ := sample().Marshal()
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			c.mutate(m)
			b, _ = json.Marshal(m)
			err := Validate(b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate = %v, want an error about %s", err, c.want)
			}
		})
	}
}

func TestParseRejectsOtherVersions(t *testing.T) {
	_, err := Parse([]byte(`{"schema":"agent.transcript/v2"}`))
	if !errors.Is(err, ErrVersion) {
		t.Errorf("err = %v", err)
	}
	if _, err := Parse([]byte(`not json`)); err == nil {
		t.Error("garbage accepted")
	}
}

// TestSchemaMatchesTypes keeps the Go types and the JSON Schema in sync: every JSON field of the
// types is a property of the schema and every schema property is a field, object by object.
func TestSchemaMatchesTypes(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(SchemaJSON, &s); err != nil {
		t.Fatal(err)
	}
	defs := s["$defs"].(map[string]any)
	resolve := func(node map[string]any) map[string]any {
		if ref, ok := node["$ref"].(string); ok {
			return defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		return node
	}
	var check func(path string, typ reflect.Type, node map[string]any)
	check = func(path string, typ reflect.Type, node map[string]any) {
		node = resolve(node)
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
			if items, ok := node["items"].(map[string]any); ok {
				node = resolve(items)
			}
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(time.Time{}) {
			return
		}
		props, _ := node["properties"].(map[string]any)
		if node["additionalProperties"] != false {
			t.Errorf("%s: schema object allows additional properties", path)
		}
		var fields []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields = append(fields, name)
			p, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: field missing from the schema", path, name)
				continue
			}
			if f.Type != reflect.TypeOf(json.RawMessage{}) {
				check(path+"."+name, f.Type, p)
			}
		}
		for name := range props {
			if !slices.Contains(fields, name) {
				t.Errorf("%s.%s: schema property has no Go field", path, name)
			}
		}
	}
	check("transcript", reflect.TypeOf(Transcript{}), s)

	// The enum of end reasons is the Go list.
	var reasons []string
	for _, r := range Reasons() {
		reasons = append(reasons, string(r))
	}
	enum := s["properties"].(map[string]any)["end"].(map[string]any)["properties"].(map[string]any)["reason"].(map[string]any)["enum"]
	var got []string
	for _, e := range enum.([]any) {
		got = append(got, e.(string))
	}
	if !slices.Equal(got, reasons) {
		t.Errorf("schema reasons %v, Go reasons %v", got, reasons)
	}
}
