package report

import (
	"strings"
	"testing"
)

func TestPrettyArgs(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"path":"stats.py"}`, "path: stats.py"},
		{`{"command":"pytest 2>&1 | tail -n 5"}`, "command: pytest 2>&1 | tail -n 5"},
		{`{"files":[{"path":"a.py","data":"x = 1\nprint(x)\n"},{"path":"b.txt","data":"one line"}]}`,
			"files:\n  -\n    data: |\n      x = 1\n      print(x)\n    path: a.py\n  -\n    data: one line\n    path: b.txt"},
		// A literal backslash-n stays two characters; only real newlines break lines.
		{`{"data":"a\\nb"}`, `data: a\nb`},
		{`{"n":3,"ok":true,"none":null,"empty":[]}`, "empty: []\nn: 3\nnone: null\nok: true"},
		{`{"command": broken`, `{"command": broken`},
		{`{"a":1} trailing`, `{"a":1} trailing`},
		{`""}`, `""}`},
		{`{"a":1}]`, `{"a":1}]`},
	} {
		if got := prettyArgs(c.in); got != c.want {
			t.Errorf("prettyArgs(%s) =\n%s\nwant\n%s", c.in, got, c.want)
		}
	}
	if got := argsSummary(`{"command":"a \u003e b"}`); got != `{"command":"a > b"}` {
		t.Errorf("argsSummary = %s", got)
	}
}

// FuzzPrettyArgs: any argument text renders without panicking and never loses a model's
// malformed text.
func FuzzPrettyArgs(f *testing.F) {
	f.Add(`{"path":"a.py","data":"x\ny"}`)
	f.Add(`{"files":[{"path":"a","data":"b"}]}`)
	f.Add(`{"command": broken`)
	f.Add(`""}`)
	f.Fuzz(func(t *testing.T, s string) {
		out := prettyArgs(s)
		if len(s) > 0 && out == "" && strings.TrimSpace(s) != `""` && strings.TrimSpace(s) != "" {
			// Only an empty JSON string renders as nothing.
			t.Fatalf("prettyArgs(%q) is empty", s)
		}
		_ = argsSummary(s)
	})
}
