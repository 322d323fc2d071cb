package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/report/chart"
	"github.com/agentrun/agent/report/diff"
	"github.com/agentrun/agent/report/results"
)

//go:embed report.html.tmpl
var htmlTemplate string

var pageTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":   pct,
	"dur":   dur,
	"count": count,
	"money": money,
	"delta": signedPct,
	"ms":    func(ms int64) string { return dur(time.Duration(ms) * time.Millisecond) },
	"op":    func(o diff.Op) string { return string(rune(o)) },
	"opClass": func(o diff.Op) string {
		switch o {
		case diff.Insert:
			return "ins"
		case diff.Delete:
			return "del"
		}
		return "eq"
	},
	"lineNo": func(n int) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprint(n)
	},
}).Parse(htmlTemplate))

// Bounds on what one page shows, so a run with huge transcripts still gives a page a browser opens.
const (
	// maxShownText bounds one message, tool argument or tool result (head and tail are kept).
	maxShownText = 32 << 10
	// maxShownFile bounds one produced file's content or diff input.
	maxShownFile = 128 << 10
	// maxDetailedCells bounds the cells shown with their transcript; the rest are listed only.
	maxDetailedCells = 2000
)

type page struct {
	Title     string
	Generated string
	Run       results.Run
	Duration  string
	Passed    int
	Failed    int
	Errored   int
	Total     int
	NotRun    int
	Rate      string
	IsEval    bool
	Charts    []template.HTML
	Metrics   []results.Metrics
	WithK     bool
	Cmp       *results.Comparison
	Cells     []*cellView
	Omitted   int
	Warnings  []string
	Versions  []kv
}

type kv struct{ K, V string }

type cellView struct {
	ID        string
	Task      string
	Model     string
	Epoch     int
	Status    string
	Why       string
	Duration  string
	Steps     int
	ToolCalls int
	Tokens    string
	Cost      string
	Detailed  bool
	Checks    []results.Check
	System    string
	Messages  []msgView
	Final     string
	End       string
	Files     []fileView
	SeedsNote string
	SetupLog  string
	Reproduce []kv
}

type msgView struct {
	Role      string
	Step      int
	Content   string
	Reasoning string
	Meta      string
	Calls     []callView
	// Orphan is a tool message whose call was not found (shown on its own).
	Orphan bool
}

type callView struct {
	ID      string
	Name    string
	Summary string
	Args    string
	Result  string
	Meta    string
	Failed  bool
	Missing bool
}

type fileView struct {
	Path      string
	Kind      string // new, modified, changed, unchanged, binary, deleted
	Size      string
	Truncated bool
	Content   string
	Hunks     []diff.Hunk
	TooMany   bool
}

// HTML writes report.html: one self-contained page (inline CSS and SVG, no script, no external
// reference, and a Content-Security-Policy that forbids loading anything) with the summary, the
// charts of an eval, and every task's checks, transcript (tool calls collapsible), produced files
// and their diff against the seed files. All text from the results is escaped by html/template.
func HTML(w io.Writer, r *results.Results) error {
	p := &page{Run: r.Run, IsEval: r.IsEval(), Cmp: r.Comparison, Warnings: r.Warnings,
		Generated: time.Now().UTC().Format(time.RFC3339)}
	p.Passed, p.Failed, p.Errored = r.Totals()
	p.Total = p.Passed + p.Failed + p.Errored
	p.NotRun = r.NotRun
	if p.Total > 0 {
		p.Rate = pct(float64(p.Passed) / float64(p.Total))
	}
	p.Title = "agent " + firstNonEmpty(r.Run.Command, "run")
	if r.Run.ID != "" {
		p.Title += " " + r.Run.ID
	}
	if !r.Run.StartedAt.IsZero() && r.Run.EndedAt.After(r.Run.StartedAt) {
		p.Duration = dur(r.Run.EndedAt.Sub(r.Run.StartedAt))
	}
	for _, k := range sortedKeys(r.Run.Versions) {
		p.Versions = append(p.Versions, kv{k, r.Run.Versions[k]})
	}
	p.Metrics = r.ModelMetrics()
	for _, m := range p.Metrics {
		p.WithK = p.WithK || len(m.PassAtK) > 0
	}
	if p.IsEval {
		p.Charts = charts(r, p.Metrics)
	}
	for i, c := range r.Cells {
		cv := &cellView{ID: fmt.Sprintf("cell-%d", i+1), Task: c.Task, Model: c.Model, Epoch: c.Epoch,
			Status: string(c.Status), Why: Why(c), Duration: dur(c.Duration), Steps: c.Steps, ToolCalls: c.ToolCalls,
			Tokens: count(c.TokensIn) + " / " + count(c.TokensOut), Cost: money(c.Cost, false), Checks: c.Checks}
		if i < maxDetailedCells {
			cv.Detailed = true
			fillDetail(cv, c)
		} else {
			p.Omitted++
		}
		p.Cells = append(p.Cells, cv)
	}
	if err := pageTmpl.Execute(w, p); err != nil {
		return fmt.Errorf("rendering report.html: %w", err)
	}
	return nil
}

func charts(r *results.Results, ms []results.Metrics) []template.HTML {
	var bars []chart.Bar
	var pts []chart.Point
	for _, m := range ms {
		bars = append(bars, chart.Bar{Label: m.Model, Value: m.PassRate.Rate, Low: m.PassRate.Low, High: m.PassRate.High,
			Note: fmt.Sprintf("%d of %d passed", m.Passed, m.Cells)})
		pts = append(pts, chart.Point{Label: m.Model, X: m.TokensPerCell(), Y: m.PassRate.Rate})
	}
	models, tasks := r.Models(), r.Tasks()
	mx := r.Matrix()
	cells := make([][]chart.Cell, len(models))
	for i, m := range models {
		cells[i] = make([]chart.Cell, len(tasks))
		for j, t := range tasks {
			tr := mx[m][t]
			cells[i][j] = chart.Cell{Passed: tr.Passed, Total: tr.Total}
		}
	}
	return []template.HTML{
		chart.PassRateBars("Pass rate per model (95% confidence interval)", bars),
		chart.Scatter("Tokens per task vs pass rate", "tokens per task run (in + out)", pts),
		chart.Heatmap("Epochs passed per model × task", models, tasks, cells),
	}
}

func fillDetail(cv *cellView, c *results.Cell) {
	if c.SpecDigest != "" {
		cv.Reproduce = append(cv.Reproduce, kv{"spec digest", c.SpecDigest})
	}
	if c.Seed != nil {
		cv.Reproduce = append(cv.Reproduce, kv{"seed", fmt.Sprint(*c.Seed)})
	}
	cv.Reproduce = append(cv.Reproduce, kv{"results", c.Dir})
	cv.SetupLog = clipMiddle(c.SetupLog, maxShownText)
	if t := c.Transcript; t != nil {
		cv.System = clipMiddle(t.Task.System, maxShownText)
		cv.Final = clipMiddle(t.FinalAnswer, maxShownText)
		cv.End = string(t.End.Reason)
		if t.End.Detail != "" {
			cv.End += ": " + clipMiddle(t.End.Detail, 2000)
		}
		cv.Messages = messages(t)
		cv.Reproduce = append(cv.Reproduce, kv{"provider", t.Provider.Name}, kv{"transcript id", t.ID})
		if t.Provider.BaseURL != "" {
			cv.Reproduce = append(cv.Reproduce, kv{"base URL", t.Provider.BaseURL})
		}
		if t.Replay != nil {
			cv.Reproduce = append(cv.Reproduce, kv{"replay of", t.Replay.Source})
		}
	}
	cv.Files = files(c)
	cv.SeedsNote = c.SeedsNote
}

// messages pairs each tool call with the tool message answering it, so a call and its result are
// shown together.
func messages(t *transcript.Transcript) []msgView {
	results := map[string]*transcript.Message{}
	for i := range t.Messages {
		m := &t.Messages[i]
		if m.Role == "tool" && m.ToolCallID != "" {
			if _, dup := results[m.ToolCallID]; !dup {
				results[m.ToolCallID] = m
			}
		}
	}
	used := map[*transcript.Message]bool{}
	var out []msgView
	for i := range t.Messages {
		m := &t.Messages[i]
		if m.Role == "system" {
			continue // shown with the prompt
		}
		if m.Role == "tool" && used[m] {
			continue
		}
		mv := msgView{Role: m.Role, Step: m.Step, Content: clipMiddle(m.Content, maxShownText), Reasoning: clipMiddle(m.Reasoning, maxShownText)}
		if m.Call != nil {
			mv.Meta = fmt.Sprintf("%s · %s tokens in, %s out", dur(time.Duration(m.Call.DurationMS)*time.Millisecond),
				count(m.Call.Usage.PromptTokens), count(m.Call.Usage.CompletionTokens))
			if m.Call.FinishReason != "" {
				mv.Meta += " · " + m.Call.FinishReason
			}
			if m.Call.Attempts > 1 {
				mv.Meta += fmt.Sprintf(" · %d attempts", m.Call.Attempts)
			}
		}
		for _, tc := range m.ToolCalls {
			cv := callView{ID: tc.ID, Name: tc.Name, Args: prettyArgs(tc.Arguments), Summary: argsSummary(tc.Arguments)}
			if tc.ArgumentsOverflow {
				cv.Args += "\n… (the model sent more than was kept)"
			}
			if res := results[tc.ID]; res != nil && tc.ID != "" && !used[res] {
				used[res] = true
				cv.Result = clipMiddle(res.Content, maxShownText)
				cv.Meta, cv.Failed = toolMeta(res.Tool)
			} else {
				cv.Missing = true
			}
			mv.Calls = append(mv.Calls, cv)
		}
		if m.Role == "tool" {
			mv.Orphan = true
			mv.Meta, _ = toolMeta(m.Tool)
		}
		out = append(out, mv)
	}
	return out
}

func toolMeta(x *transcript.ToolExecution) (meta string, failed bool) {
	if x == nil {
		return "", false
	}
	parts := []string{dur(time.Duration(x.DurationMS) * time.Millisecond)}
	if x.ExitCode != nil {
		parts = append(parts, fmt.Sprintf("exit %d", *x.ExitCode))
		failed = *x.ExitCode != 0
	}
	if x.TimedOut {
		parts = append(parts, "timed out")
		failed = true
	}
	if x.Error {
		parts = append(parts, "error")
		failed = true
	}
	if x.PID != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", x.PID))
	}
	if x.Truncated {
		parts = append(parts, fmt.Sprintf("truncated from %s bytes", count(x.OutputBytes)))
	}
	return strings.Join(parts, " · "), failed
}

// prettyArgs shows JSON arguments as indented key: value lines, with multi-line strings (file
// contents) as blocks of their own lines; malformed arguments are shown as the model wrote them.
func prettyArgs(s string) string {
	if len(s) <= maxShownText {
		var v any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		// The whole text must be one JSON value: Decoder.More is false before a stray
		// closing delimiter too, so check the rest by offset.
		if dec.Decode(&v) == nil && strings.TrimSpace(s[dec.InputOffset():]) == "" {
			var b strings.Builder
			renderValue(&b, v, 0)
			return strings.TrimSuffix(b.String(), "\n")
		}
	}
	return clipMiddle(s, maxShownText)
}

// maxRenderDepth bounds the nesting rendered; deeper values are shown as compact JSON.
const maxRenderDepth = 8

func renderValue(b *strings.Builder, v any, depth int) {
	pad := strings.Repeat("  ", depth)
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 || depth >= maxRenderDepth {
			b.WriteString(pad + compactJSON(x) + "\n")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sortStrings(keys)
		for _, k := range keys {
			renderField(b, pad+k+":", x[k], depth)
		}
	case []any:
		if len(x) == 0 || depth >= maxRenderDepth {
			b.WriteString(pad + compactJSON(x) + "\n")
			return
		}
		for _, e := range x {
			renderField(b, pad+"-", e, depth)
		}
	default:
		b.WriteString(pad + scalar(x) + "\n")
	}
}

// renderField writes "label value", or the label and the value indented below it.
func renderField(b *strings.Builder, label string, v any, depth int) {
	switch x := v.(type) {
	case map[string]any, []any:
		if n := lenOf(x); n == 0 || depth+1 >= maxRenderDepth {
			b.WriteString(label + " " + compactJSON(x) + "\n")
			return
		}
		b.WriteString(label + "\n")
		renderValue(b, x, depth+1)
	case string:
		if strings.Contains(x, "\n") {
			b.WriteString(label + " |\n")
			pad := strings.Repeat("  ", depth+1)
			for _, line := range strings.Split(strings.TrimSuffix(x, "\n"), "\n") {
				b.WriteString(pad + line + "\n")
			}
			return
		}
		b.WriteString(label + " " + x + "\n")
	default:
		b.WriteString(label + " " + scalar(x) + "\n")
	}
}

func lenOf(v any) int {
	switch x := v.(type) {
	case map[string]any:
		return len(x)
	case []any:
		return len(x)
	}
	return 0
}

func scalar(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return compactJSON(v)
}

// compactJSON encodes v as one line of JSON without escaping <, > and & (the page escapes).
func compactJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// argsSummary is the one-line form of a call's arguments for its collapsed line.
func argsSummary(s string) string {
	var v any
	if len(s) <= maxShownText && json.Unmarshal([]byte(s), &v) == nil {
		s = compactJSON(v)
	}
	return oneLine(s, 120)
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func files(c *results.Cell) []fileView {
	seeds := map[string]results.File{}
	for _, s := range c.Seeds {
		seeds[s.Path] = s
	}
	var out []fileView
	for _, f := range c.Files {
		fv := fileView{Path: f.Path, Size: count(f.Size) + " bytes", Truncated: f.Truncated}
		seed, seeded := seeds[f.Path]
		switch {
		case f.Binary || (seeded && seed.Binary):
			fv.Kind = "binary"
		case c.NewFiles[f.Path] || (!seeded && c.NewFiles == nil):
			fv.Kind = "new"
			fv.Content = clipMiddle(string(f.Data), maxShownFile)
		case !seeded:
			// Present after setup but not a seed file: setup made it; no text to compare with.
			fv.Kind = "changed"
			fv.Content = clipMiddle(string(f.Data), maxShownFile)
		case string(seed.Data) == string(f.Data) && !f.Truncated && !seed.Truncated:
			fv.Kind = "unchanged"
		default:
			fv.Kind = "modified"
			lines, ok := diff.Lines(string(seed.Data), string(f.Data), 0)
			if ok {
				fv.Hunks = diff.Hunks(lines, 3)
			} else {
				fv.TooMany = true
				fv.Content = clipMiddle(string(f.Data), maxShownFile)
			}
		}
		out = append(out, fv)
	}
	for _, d := range c.Deleted {
		out = append(out, fileView{Path: d, Kind: "deleted"})
	}
	return out
}

// clipMiddle bounds untrusted text for display, keeping its head and tail.
func clipMiddle(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	head, tail := n/2, n/2
	for head > 0 && !validStart(s[head]) {
		head--
	}
	start := len(s) - tail
	for start < len(s) && !validStart(s[start]) {
		start++
	}
	return s[:head] + fmt.Sprintf("\n\n… %s bytes not shown …\n\n", count(int64(start-head))) + s[start:]
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
