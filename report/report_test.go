package report_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/report"
	"github.com/agentrun/agent/report/results"
	"github.com/agentrun/agent/report/results/resultstest"
)

// hostile is text a model or a sandbox could produce to break out of a report.
const hostile = `</pre></details><script>alert("x")</script><img src=x onerror=alert(1)> | ** [link](javascript:alert(2)) <!--`

// fixture writes an eval of two models over three tasks × two epochs, with hostile text in a
// transcript, a failing check, an error, and a modified seed file.
func fixture(t testing.TB) *results.Results {
	t.Helper()
	exit0, exit1 := 0, 1
	msgs := []transcript.Message{
		{Role: "system", Content: "You are a coding agent."},
		{Role: "user", Content: "Fix the median. " + hostile},
		{Role: "assistant", Step: 1, Content: "Let me look. " + hostile, ToolCalls: []transcript.ToolCall{
			{ID: "c1", Name: "read_file", Arguments: `{"path":"stats.py"}`},
			{ID: "c2", Name: "run_commands", Arguments: `{"command":"python3 -m pytest -q"}`},
		}, Call: &transcript.ModelCall{DurationMS: 210, Attempts: 1, FinishReason: "tool_calls", Usage: transcript.Usage{PromptTokens: 900, CompletionTokens: 40}}},
		{Role: "tool", ToolCallID: "c1", Step: 1, Content: "def median(xs):\n    return xs[len(xs)//2]\n", Tool: &transcript.ToolExecution{Name: "read_file", DurationMS: 2, OutputBytes: 40}},
		{Role: "tool", ToolCallID: "c2", Step: 1, Content: "FAILED test_stats.py::test_even " + hostile, Tool: &transcript.ToolExecution{Name: "run_commands", DurationMS: 350, ExitCode: &exit1, OutputBytes: 60}},
		{Role: "assistant", Step: 2, ToolCalls: []transcript.ToolCall{{ID: "c3", Name: "write_file", Arguments: `{"path":"stats.py","data":"def median(xs):\n    s = sorted(xs)\n    n = len(s)\n    return (s[(n-1)//2] + s[n//2]) / 2\n"}`}},
			Call: &transcript.ModelCall{DurationMS: 300, Attempts: 2, FinishReason: "tool_calls"}},
		{Role: "tool", ToolCallID: "c3", Step: 2, Content: "wrote 80 bytes", Tool: &transcript.ToolExecution{Name: "write_file", DurationMS: 1, ExitCode: &exit0}},
		{Role: "assistant", Step: 3, ToolCalls: []transcript.ToolCall{{ID: "c4", Name: "run_commands", Arguments: `{"command": broken json`}}},
		{Role: "tool", ToolCallID: "c4", Step: 3, Content: "error: arguments are not valid JSON", Tool: &transcript.ToolExecution{Name: "run_commands", Error: true}},
		{Role: "assistant", Step: 4, Content: "Fixed the median for even lengths."},
	}
	seed := "import statistics\n\ndef median(xs):\n    return xs[len(xs)//2]\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"
	fixed := "import statistics\n\ndef median(xs):\n    s = sorted(xs)\n    n = len(s)\n    return (s[(n-1)//2] + s[n//2]) / 2\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n"
	var cells []resultstest.Cell
	for _, model := range []string{"novita:qwen/qwen3-coder-30b-a3b-instruct", "openai/gpt-oss-120b"} {
		for _, task := range []string{"fix-median", "fizzbuzz", "slugify"} {
			for epoch := 1; epoch <= 2; epoch++ {
				c := resultstest.Cell{Task: task, Model: model, Epoch: epoch, Status: "passed", DurationMS: int64(1500 * epoch),
					TokensIn: 4000, TokensOut: 300, Cost: 0.002,
					Files: map[string]string{"notes.txt": "new file\n"}}
				if task == "fix-median" {
					c.Messages = msgs
					c.Seeds = map[string]string{"stats.py": seed}
					c.Files = map[string]string{"stats.py": fixed, "out.txt": hostile + "\n"}
					c.SetupLog = "$ pip install pytest\n" + hostile
				}
				if model == "openai/gpt-oss-120b" && task == "fizzbuzz" {
					c.Status = "failed"
					c.Checks = []map[string]any{
						{"name": "first fifteen lines", "kind": "run", "run": "python3 fizzbuzz.py | head -n 15", "passed": true},
						{"name": "exactly 100 lines " + hostile, "kind": "run", "run": "python3 fizzbuzz.py | wc -l", "passed": false,
							"reason": "stdout differs at line 1: got \"99\", want \"100\"", "exit_code": 0, "stdout": "99\n" + hostile},
					}
				}
				if model == "openai/gpt-oss-120b" && task == "slugify" && epoch == 2 {
					c.Status, c.Reason, c.Detail = "error", "timeout", "the task took longer than 10m0s"
				}
				cells = append(cells, c)
			}
		}
	}
	specs := t.TempDir()
	dir := resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "eval", Models: []string{"novita:qwen/qwen3-coder-30b-a3b-instruct", "openai/gpt-oss-120b"}, Repeat: 2, SpecsDir: specs}, cells)
	r, err := results.Load(dir, results.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r.LoadSeeds(specs, results.Limits{})
	if len(r.Warnings) > 0 {
		t.Fatalf("fixture warnings: %v", r.Warnings)
	}
	return r
}

func TestMarkdown(t *testing.T) {
	r := fixture(t)
	var b bytes.Buffer
	if err := report.Markdown(&b, r, report.MarkdownOptions{}); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"**9 passed**, 2 failed, 1 errored of 12",
		"| `openai/gpt-oss-120b` | 3 | 2 | 1 | 50.0% (18.8%–81.2%) | 50.0% | 66.7% (k=2) |",
		"pass@1", "(k=2)",
		"| `fizzbuzz` | `openai/gpt-oss-120b` | 1 | failed | exactly 100 lines &lt;/pre&gt;",
		"| `slugify` | `openai/gpt-oss-120b` | 2 | error | timeout: the task took longer than 10m0s |",
		"Errors by reason — `openai/gpt-oss-120b`: timeout ×1",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "<script") || strings.Contains(md, "<img") || strings.Contains(md, "](javascript") {
		t.Fatalf("hostile text not neutralized in report.md:\n%s", md)
	}
	// Each table row stays one line: no cell text breaks the table.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| `fizzbuzz`") && strings.Count(line, "|")-strings.Count(line, `\|`) != 6 {
			t.Errorf("broken row %q", line)
		}
	}
}

func TestMarkdownBounded(t *testing.T) {
	var cells []resultstest.Cell
	for i := 0; i < 300; i++ {
		cells = append(cells, resultstest.Cell{Task: "t" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "-" + string(rune('a'+i/26)),
			Model: "m", Status: "failed", NoTranscript: true, Cost: -1,
			Checks: []map[string]any{{"name": strings.Repeat("long name ", 100), "passed": false, "reason": strings.Repeat("why ", 1000)}}})
	}
	dir := resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "run"}, cells)
	r, err := results.Load(dir, results.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	report.Markdown(&b, r, report.MarkdownOptions{})
	if b.Len() > 40<<10 {
		t.Fatalf("report.md of 300 failures is %d bytes", b.Len())
	}
	if !strings.Contains(b.String(), "… and 250 more") {
		t.Fatalf("no cut marker:\n%s", b.String())
	}
}

type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Tests int    `xml:"tests,attr"`
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestJUnit(t *testing.T) {
	r := fixture(t)
	// A control character, invalid in XML 1.0 even escaped, in a check reason.
	r.Cells[0].Status = results.StatusFailed
	r.Cells[0].Checks = []results.Check{{Name: "bell", Passed: false, Reason: "got \x07\x00 bytes"}}
	var b bytes.Buffer
	if err := report.JUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc junitDoc
	dec := xml.NewDecoder(&b)
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("report.xml does not parse: %v\n%s", err, b.String())
	}
	if doc.Tests != 12 || doc.Failures != 3 || doc.Errors != 1 || len(doc.Suites) != 2 || doc.Suites[1].Tests != 6 {
		t.Fatalf("counts: %+v", doc)
	}
	var failure, errored int
	for _, c := range doc.Suites[1].Cases {
		if c.Failure != nil {
			failure++
			if c.Name == "fizzbuzz [epoch 1]" {
				if !strings.HasPrefix(c.Failure.Message, "check failed: exactly 100 lines </pre>") || c.Failure.Type != "check" ||
					!strings.Contains(c.Failure.Text, "PASS first fifteen lines") || !strings.Contains(c.Failure.Text, "stdout: 99") {
					t.Errorf("failure %+v", c.Failure)
				}
			}
		}
		if c.Error != nil {
			errored++
			if c.Name != "slugify [epoch 2]" || c.Error.Type != "timeout" || !strings.Contains(c.Error.Message, "longer than 10m0s") {
				t.Errorf("error case %s %+v", c.Name, c.Error)
			}
		}
		if c.Classname == "" || c.Time == "" {
			t.Errorf("case without classname or time: %+v", c)
		}
	}
	if failure != 2 || errored != 1 {
		t.Fatalf("%d failures, %d errors in suite 2", failure, errored)
	}
}

func TestHTMLEscapesAndIsSelfContained(t *testing.T) {
	r := fixture(t)
	var b bytes.Buffer
	if err := report.HTML(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if out := os.Getenv("REPORT_TEST_OUT"); out != "" {
		os.WriteFile(out, b.Bytes(), 0o644) // for looking at the page while working on it
	}
	if strings.Contains(page, hostile) || strings.Contains(page, "<script") || strings.Contains(page, "<img") {
		t.Fatal("hostile text reached the page unescaped")
	}
	if !strings.Contains(page, "&lt;/pre&gt;&lt;/details&gt;&lt;script&gt;") {
		t.Fatal("hostile text not shown escaped")
	}
	for _, ref := range []string{"http://", "https://", "src=", "@import", "url("} {
		for _, line := range strings.Split(page, "\n") {
			if strings.Contains(line, ref) && !strings.Contains(line, "http://www.w3.org/2000/svg") && !strings.Contains(line, "&lt;") {
				t.Errorf("external reference %q in %q", ref, line)
			}
		}
	}
	for _, want := range []string{
		`Content-Security-Policy`, `class="chart pass-rate"`, `class="chart scatter"`, `class="chart heatmap"`,
		`<details class="tool-call">`, `<details class="tool-call failed">`, `read_file({&#34;path&#34;:&#34;stats.py&#34;})`,
		`<tr class="ins">`, `<tr class="del">`, `@@ -1,7 &#43;1,9 @@`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	if n := strings.Count(page, `<section class="cell"`); n != 12 {
		t.Errorf("%d cell sections, want 12", n)
	}
}

func TestWriteAll(t *testing.T) {
	r := fixture(t)
	if err := report.WriteAll(r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{report.MarkdownFile, report.HTMLFile, report.JUnitFile} {
		st, err := os.Stat(filepath.Join(r.Dir, name))
		if err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(r.Dir, ".report*"))
	if len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
