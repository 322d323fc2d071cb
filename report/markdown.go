package report

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/agentrun/agent/report/results"
)

// MarkdownOptions tune report.md.
type MarkdownOptions struct {
	// MaxFailures bounds the failed tasks listed (default 50).
	MaxFailures int
	// Title replaces the heading.
	Title string
}

// Markdown writes report.md: totals, a table per model, the comparison with a baseline, and the
// tasks that did not pass with their failing check. It stays short (bounded rows and cell text)
// because GitHub caps a job summary at 1 MiB.
func Markdown(w io.Writer, r *results.Results, opt MarkdownOptions) error {
	if opt.MaxFailures <= 0 {
		opt.MaxFailures = 50
	}
	var b strings.Builder
	passed, failed, errored := r.Totals()
	title := opt.Title
	if title == "" {
		title = "agent " + firstNonEmpty(r.Run.Command, "run")
		if r.Run.ID != "" {
			title += " " + r.Run.ID
		}
	}
	fmt.Fprintf(&b, "## %s\n\n", mdText(title, 120))
	total := passed + failed + errored
	icon := "✅"
	if failed+errored > 0 || total == 0 {
		icon = "❌"
	}
	fmt.Fprintf(&b, "%s **%d passed**, %d failed, %d errored of %d", icon, passed, failed, errored, total)
	if total > 0 {
		fmt.Fprintf(&b, " (%s)", pct(float64(passed)/float64(total)))
	}
	if !r.Run.StartedAt.IsZero() && !r.Run.EndedAt.IsZero() {
		fmt.Fprintf(&b, " in %s", dur(r.Run.EndedAt.Sub(r.Run.StartedAt)))
	}
	if r.NotRun > 0 || r.Run.Interrupted {
		fmt.Fprintf(&b, "; **interrupted**, %d task run(s) did not finish", r.NotRun)
	}
	b.WriteString("\n\n")

	ms := r.ModelMetrics()
	if len(ms) > 0 {
		withK := false
		for _, m := range ms {
			withK = withK || len(m.PassAtK) > 0
		}
		b.WriteString("| model | passed | failed | errored | pass rate (95% CI) |")
		if withK {
			b.WriteString(" pass@1 | pass@k |")
		}
		b.WriteString(" median / p90 time | tokens in / out | steps | tool calls | cost |\n|---|--:|--:|--:|--:|")
		if withK {
			b.WriteString("--:|--:|")
		}
		b.WriteString("--:|--:|--:|--:|--:|\n")
		for _, m := range ms {
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %s (%s–%s) |", mdCode(m.Model), m.Passed, m.Failed, m.Errored,
				pct(m.PassRate.Rate), pct(m.PassRate.Low), pct(m.PassRate.High))
			if withK {
				if len(m.PassAtK) > 0 {
					fmt.Fprintf(&b, " %s | %s (k=%d) |", pct(m.PassAtK[1]), pct(m.PassAtK[m.Epochs]), m.Epochs)
				} else {
					b.WriteString(" – | – |")
				}
			}
			fmt.Fprintf(&b, " %s / %s | %s / %s | %d | %d | %s |\n", dur(m.WallMedian), dur(m.WallP90),
				count(m.TokensIn), count(m.TokensOut), m.Steps, m.ToolCalls, money(m.Cost, m.CostPartial))
		}
		b.WriteString("\n")
		var errs []string
		for _, m := range ms {
			if len(m.Errors) == 0 {
				continue
			}
			reasons := make([]string, 0, len(m.Errors))
			for k := range m.Errors {
				reasons = append(reasons, k)
			}
			sort.Strings(reasons)
			var parts []string
			for _, k := range reasons {
				parts = append(parts, fmt.Sprintf("%s ×%d", mdText(k, 40), m.Errors[k]))
			}
			errs = append(errs, fmt.Sprintf("%s: %s", mdCode(m.Model), strings.Join(parts, ", ")))
		}
		if len(errs) > 0 {
			fmt.Fprintf(&b, "Errors by reason — %s\n\n", strings.Join(errs, "; "))
		}
	}

	if c := r.Comparison; c != nil {
		fmt.Fprintf(&b, "### Compared with the baseline\n\n| model | baseline | now | change | tasks compared |\n|---|--:|--:|--:|--:|\n")
		for _, d := range c.Models {
			if !d.InBaseline {
				fmt.Fprintf(&b, "| %s | – | – | new | 0 |\n", mdCode(d.Model))
				continue
			}
			mark := ""
			if d.Regressed {
				mark = " ⚠️ regressed"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s%s | %d |\n", mdCode(d.Model), pct(d.Base), pct(d.Current), signedPct(d.Delta), mark, d.Tasks)
		}
		if len(c.Flips) > 0 {
			b.WriteString("\nFlips: ")
			for i, f := range c.Flips {
				if i == opt.MaxFailures {
					fmt.Fprintf(&b, " … and %d more", len(c.Flips)-i)
					break
				}
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%s on %s %s→%s", mdCode(f.Task), mdCode(f.Model), f.From, f.To)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}

	var bad []*results.Cell
	for _, c := range r.Cells {
		if !c.Passed() {
			bad = append(bad, c)
		}
	}
	if len(bad) > 0 {
		b.WriteString("### Not passed\n\n| task | model | epoch | status | why |\n|---|---|--:|---|---|\n")
		for i, c := range bad {
			if i == opt.MaxFailures {
				fmt.Fprintf(&b, "\n… and %d more (see report.html)\n", len(bad)-i)
				break
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s |\n", mdCode(c.Task), mdCode(c.Model), c.Epoch, c.Status, mdText(Why(c), 200))
		}
		b.WriteString("\n")
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(&b, "%d problem(s) reading the results, first: %s\n", len(r.Warnings), mdText(r.Warnings[0], 200))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Why says in one line why a cell did not pass: its failing check and the reason, or its error.
func Why(c *results.Cell) string {
	switch c.Status {
	case results.StatusPassed:
		return ""
	case results.StatusError:
		if c.Detail != "" {
			return firstNonEmpty(c.Reason, "error") + ": " + c.Detail
		}
		return firstNonEmpty(c.Reason, "error")
	}
	if ch := c.FailingCheck(); ch != nil {
		if why := firstNonEmpty(ch.Reason, ch.Error); why != "" {
			return ch.Name + ": " + why
		}
		return ch.Name
	}
	return "a check failed"
}

// mdText makes untrusted text safe in a Markdown table cell: one line, bounded, with the
// characters that start Markdown or HTML syntax escaped.
func mdText(s string, n int) string {
	s = oneLine(s, n)
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\\', '`', '*', '_', '[', ']', '|', '#', '!', '~', '(', ')':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mdCode shows a name (model, task) as inline code, safe in a table cell.
func mdCode(s string) string {
	s = oneLine(s, 80)
	s = strings.NewReplacer("`", "'", "|", "¦").Replace(s)
	return "`" + s + "`"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
