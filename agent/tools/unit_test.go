package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCaptureKeepsHeadAndTail(t *testing.T) {
	for _, limit := range []int{2, 3, 10, 101, 4096} {
		for _, size := range []int{0, 1, limit / 2, limit - 1, limit, limit + 1, 3 * limit, 50 * limit} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte('a' + i%26)
			}
			c := newCapture(limit)
			// Write in random pieces.
			rest := data
			for len(rest) > 0 {
				k := 1 + rand.IntN(len(rest))
				c.Write(rest[:k])
				rest = rest[k:]
			}
			tx := c.text()
			if c.Total() != int64(size) {
				t.Fatalf("limit %d size %d: total %d", limit, size, c.Total())
			}
			if size <= limit {
				if tx.truncated() || tx.head+tx.tail != string(data) {
					t.Errorf("limit %d size %d: kept %q+%q", limit, size, tx.head, tx.tail)
				}
				continue
			}
			h, tl := limit/2, limit-limit/2
			if tx.head != string(data[:h]) || tx.tail != string(data[size-tl:]) || tx.omitted != int64(size-limit) {
				t.Errorf("limit %d size %d: head %q tail %q omitted %d", limit, size, tx.head, tx.tail, tx.omitted)
			}
			if !strings.Contains(tx.String(), Marker(int64(size-limit))) {
				t.Errorf("limit %d size %d: no marker in %q", limit, size, tx.String())
			}
		}
	}
}

func TestShrinkKeepsValidUTF8(t *testing.T) {
	s := strings.Repeat("añ✓😀", 500)
	for n := 1; n < 60; n++ {
		tx := text{head: s}.shrink(n)
		if tx.len() > n {
			t.Errorf("shrink(%d) kept %d bytes", n, tx.len())
		}
		if !utf8.ValidString(tx.head) || !utf8.ValidString(tx.tail) {
			t.Errorf("shrink(%d) cut a rune: %q / %q", n, tx.head, tx.tail)
		}
		if tx.omitted != int64(len(s)-tx.len()) {
			t.Errorf("shrink(%d): omitted %d, want %d", n, tx.omitted, len(s)-tx.len())
		}
	}
	// Shrinking an already-truncated text adds to what it omitted.
	c := newCapture(100)
	c.Write(bytes.Repeat([]byte("x"), 1000))
	tx := c.text().shrink(40)
	if tx.len() != 40 || tx.omitted != 960 {
		t.Errorf("re-shrunk: kept %d omitted %d", tx.len(), tx.omitted)
	}
	// Binary output becomes valid text.
	if out := (text{head: "a\xff\xfeb"}).String(); !utf8.ValidString(out) {
		t.Errorf("invalid UTF-8 kept: %q", out)
	}
}

func TestSpecsAreTheTutorials(t *testing.T) {
	want := map[string]string{
		ReadFile:    "Read contents of a file inside the sandbox",
		WriteFile:   "Write a single file inside the sandbox",
		WriteFiles:  "Write multiple files inside the sandbox",
		RunCommands: "Run a single shell command inside the sandbox working directory",
	}
	sp := Specs()
	if len(sp) != 7 {
		t.Fatalf("%d specs", len(sp))
	}
	for i, name := range []string{ReadFile, WriteFile, WriteFiles, RunCommands} {
		if sp[i].Name != name || sp[i].Description != want[name] {
			t.Errorf("spec %d = %s %q", i, sp[i].Name, sp[i].Description)
		}
	}
	required := map[string][]string{
		ReadFile: {"path"}, WriteFile: {"path", "data"}, WriteFiles: {"files"}, RunCommands: {"command"},
		ListFiles: nil, CommandOutput: {"pid"}, KillCommand: {"pid"},
	}
	for _, s := range sp {
		var schema struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		}
		if err := json.Unmarshal(s.Parameters, &schema); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if schema.Type != "object" || strings.Join(schema.Required, ",") != strings.Join(required[s.Name], ",") {
			t.Errorf("%s: schema %s", s.Name, s.Parameters)
		}
		for _, r := range schema.Required {
			if _, ok := schema.Properties[r]; !ok {
				t.Errorf("%s: required %s is not a property", s.Name, r)
			}
		}
	}
	var wf struct {
		Properties struct {
			Files struct {
				Type  string `json:"type"`
				Items struct {
					Required []string `json:"required"`
				} `json:"items"`
			} `json:"files"`
		} `json:"properties"`
	}
	json.Unmarshal(sp[2].Parameters, &wf)
	if wf.Properties.Files.Type != "array" || strings.Join(wf.Properties.Files.Items.Required, ",") != "path,data" {
		t.Errorf("write_files schema %s", sp[2].Parameters)
	}
}

// TestHostileCallsNeverReachTheSandbox feeds malformed calls to a Set with no sandbox at all: each
// must be answered with an error for the model before any sandbox method is called (a call that
// reached the nil sandbox would panic and be reported as an internal error, failing the test).
func TestHostileCallsNeverReachTheSandbox(t *testing.T) {
	s := New(nil, Config{MaxArgumentBytes: 1000})
	defer s.Close()
	cases := []struct {
		call Call
		want string
	}{
		{Call{Name: "rm_rf", Arguments: `{}`}, `unknown tool "rm_rf". Available tools: read_file, write_file, write_files, run_commands, list_files, command_output, kill_command`},
		{Call{Name: "", Arguments: `{}`}, `unknown tool ""`},
		{Call{Name: ReadFile, Arguments: `{"path": "a.txt"`}, `not valid JSON (unexpected end`},
		{Call{Name: ReadFile, Arguments: `{path: a.txt}`}, `not valid JSON (invalid character 'p'`},
		{Call{Name: ReadFile, Arguments: `{"path": 42}`}, `argument "path" must be a string, not a JSON number`},
		{Call{Name: ReadFile, Arguments: `["a.txt"]`}, `arguments must be a JSON object with the fields path, not a JSON array`},
		{Call{Name: ReadFile, Arguments: `{"file": "a.txt"}`}, `unknown argument "file"; this tool takes the fields path`},
		{Call{Name: ReadFile, Arguments: ``}, `missing required argument "path"`},
		{Call{Name: ReadFile, Arguments: `{"path": ""}`}, `the path is empty`},
		{Call{Name: ReadFile, Arguments: `{"path": "a\u0000b"}`}, `NUL byte`},
		{Call{Name: ReadFile, Arguments: `{"path": "a"} {"path": "b"}`}, `exactly one JSON object`},
		{Call{Name: WriteFile, Arguments: `{"path": "a"}`}, `missing required argument "data"`},
		{Call{Name: WriteFile, Arguments: `{"path": "a", "data": {"x": 1}}`}, `argument "data" must be a string, not a JSON object`},
		{Call{Name: WriteFile, Arguments: `{"path": null, "data": "x"}`}, `missing required argument "path"`},
		{Call{Name: WriteFiles, Arguments: `{"files": "a"}`}, `argument "files" must be an array, not a JSON string`},
		{Call{Name: WriteFiles, Arguments: `{"files": []}`}, `"files" is empty`},
		{Call{Name: WriteFiles, Arguments: `{"files": [{"path": "a"}]}`}, `files[0]: missing required field "data"`},
		{Call{Name: WriteFiles, Arguments: `{"files": [{"path": 1, "data": "x"}]}`}, `must be a string, not a JSON number`},
		{Call{Name: RunCommands, Arguments: `{"command": ["ls", "-l"]}`}, `argument "command" must be a string, not a JSON array`},
		{Call{Name: RunCommands, Arguments: `{"command": "ls", "background": "yes"}`}, `argument "background" must be a boolean (true or false), not a JSON string`},
		{Call{Name: RunCommands, Arguments: `{"command": "  "}`}, `the command is empty`},
		{Call{Name: RunCommands, Arguments: `{"cmd": "ls"}`}, `unknown argument "cmd"; this tool takes the fields command, background`},
		{Call{Name: ListFiles, Arguments: `{"depth": "deep"}`}, `argument "depth" must be an integer, not a JSON string`},
		{Call{Name: CommandOutput, Arguments: `{"pid": -1}`}, `argument "pid" must be an integer`},
		{Call{Name: CommandOutput, Arguments: `{"pid": 12}`}, `no background command with pid 12`},
		{Call{Name: KillCommand, Arguments: `{"pid": "12"}`}, `no background command with pid 12`},
		{Call{Name: KillCommand, Arguments: `{"pid": 1.5}`}, `argument "pid" must be an integer`},
		{Call{Name: KillCommand, Arguments: `{}`}, `missing required argument "pid"`},
		{Call{Name: WriteFile, Arguments: `{"path": "a", "data": "` + strings.Repeat("x", 2000) + `"}`}, `arguments of write_file are too large (2025 bytes; the limit is 1000)`},
		{Call{Name: WriteFile, Arguments: `{"path": "a", "data": "xx`, ArgumentsOverflow: true}, `too large (more than 25 bytes; the limit is 1000)`},
		{Call{Name: ReadFile, Arguments: "\"{\\\"path\\\": 7}\""}, `argument "path" must be a string`},
	}
	for _, c := range cases {
		r := s.Call(context.Background(), c.call)
		if !r.Error || !strings.Contains(r.Content, c.want) || r.Fatal != nil {
			t.Errorf("%s(%.60s):\n got %q (error %v, fatal %v)\nwant …%s…", c.call.Name, c.call.Arguments, r.Content, r.Error, r.Fatal, c.want)
		}
		if strings.Contains(r.Content, "internal error") {
			t.Errorf("%s(%.60s) reached the sandbox: %s", c.call.Name, c.call.Arguments, r.Content)
		}
	}
}

func TestCanceledContextIsFatal(t *testing.T) {
	s := New(nil, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := s.Call(ctx, Call{Name: ReadFile, Arguments: `{"path": 1}`})
	if r.Fatal == nil {
		t.Errorf("a call under an ended context is not fatal: %+v", r)
	}
}

func FuzzCallArguments(f *testing.F) {
	f.Add(ReadFile, `{"path":"a"}`)
	f.Add(WriteFiles, `{"files":[{"path":"a","data":"b"}]}`)
	f.Add(KillCommand, `{"pid":"9"}`)
	f.Add(RunCommands, `"{\"command\": 1}"`)
	f.Fuzz(func(t *testing.T, name, args string) {
		s := New(nil, Config{})
		r := s.Call(context.Background(), Call{Name: name, Arguments: args})
		// Any call that would reach the (nil) sandbox is recovered as an internal error; what
		// must never happen is a panic escaping or an empty answer.
		if r.Content == "" {
			t.Fatalf("empty result for %s(%q)", name, args)
		}
	})
}

func TestBinaryOutputStaysWithinBound(t *testing.T) {
	s := New(nil, Config{MaxResultBytes: 1000})
	out, errs := newCapture(1000), newCapture(1000)
	out.Write(bytes.Repeat([]byte{0xff, 0xfe, 'a'}, 10000))
	r := s.outputResult("exit code: 0", out, errs, "")
	if len(r.Content) > 1000 || !utf8.ValidString(r.Content) || !r.Truncated {
		t.Errorf("%d bytes, valid %v, truncated %v", len(r.Content), utf8.ValidString(r.Content), r.Truncated)
	}
}
