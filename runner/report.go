package runner

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Report renders report.md: a Markdown summary of a run, suited to a GitHub job summary
// ($GITHUB_STEP_SUMMARY): a headline, a table of the tasks (status, reason, steps, tokens, time),
// then the failing checks and the errors with their reasons.
func Report(info *RunInfo, sum *Summary) string {
	var b strings.Builder
	head := fmt.Sprintf("%d of %d passed", sum.Passed, sum.Total)
	if sum.Total == 0 {
		head = "no tasks"
	}
	mark := "✅"
	if !sum.OK {
		mark = "❌"
	}
	fmt.Fprintf(&b, "## %s agent run: %s\n\n", mark, head)
	parts := sum.Shortfalls()
	if sum.Interrupted {
		parts = append(parts, "**interrupted** (finish it with `agent run --resume DIR`)")
	}
	if len(parts) > 0 {
		b.WriteString(strings.Join(parts, ", ") + ".\n\n")
	}

	// Run facts.
	model := info.Model
	if info.Replay != "" {
		model = "replay of " + code(info.Replay) + " (recorded model turns played back; the tools really ran)"
	} else if model != "" {
		model = code(model)
	} else {
		model = "per task"
	}
	fmt.Fprintf(&b, "- **Model:** %s\n", model)
	backend := info.Backend
	if info.Runtime != "" {
		backend += " (" + info.Runtime + ")"
	}
	var tpls []string
	for _, name := range sortedKeys(info.Templates) {
		tpls = append(tpls, oneLine(name)+" "+code(shortDigest(info.Templates[name])))
	}
	fmt.Fprintf(&b, "- **Sandbox:** %s; template %s; network %s\n", backend, orDash(strings.Join(tpls, ", ")), orDash(oneLine(strings.Join(info.Network, ", "))))
	dur := time.Duration(sum.DurationMS) * time.Millisecond
	fmt.Fprintf(&b, "- **Run:** `%s`, started %s, %s, concurrency %d", info.ID, sum.StartedAt.Format(time.RFC3339), fmtDuration(dur), info.Concurrency)
	if sum.Tokens > 0 {
		fmt.Fprintf(&b, ", %s tokens", fmtInt(sum.Tokens))
	}
	if sum.CostUSD != nil {
		fmt.Fprintf(&b, ", $%.4f", *sum.CostUSD)
	}
	fmt.Fprintf(&b, "\n- **Agent:** %s\n\n", info.Versions.Agent)

	if len(sum.Tasks) == 0 {
		return b.String()
	}
	multi := false
	for _, t := range sum.Tasks {
		if t.Epoch > 1 {
			multi = true
		}
	}
	b.WriteString("| | Task | Status | Reason | Checks | Steps | Tokens | Time |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, t := range sum.Tasks {
		name := t.Name
		if multi {
			name = fmt.Sprintf("%s #%d", t.Name, t.Epoch)
		}
		status, icon := string(t.Status), statusIcon(t)
		if t.NotRun {
			status = "not run"
		}
		reason := string(t.Reason)
		if t.Status == StatusFailed && len(t.FailedChecks) > 0 {
			reason = fmt.Sprintf("%d of %d checks failed", t.Checks.Failed, t.Checks.Total)
		}
		checks := "–"
		if t.Checks.Total > 0 {
			checks = fmt.Sprintf("%d/%d", t.Checks.Passed, t.Checks.Total)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %s | %s |\n", icon, cell(name), status, cell(reason), checks,
			t.Steps, fmtInt(t.Tokens), fmtDuration(time.Duration(t.DurationMS)*time.Millisecond))
	}

	var failing, errs []SummaryTask
	for _, t := range sum.Tasks {
		if len(t.FailedChecks) > 0 {
			failing = append(failing, t)
		}
		if t.Status == StatusError || (t.NotRun && t.Reason != "") {
			errs = append(errs, t)
		}
	}
	if len(failing) > 0 {
		b.WriteString("\n### Failing checks\n")
		for _, t := range failing {
			fmt.Fprintf(&b, "\n**%s** (`%s`)\n", cellName(t, multi), filepath.ToSlash(filepath.Join(t.Dir, ChecksFile)))
			for _, c := range t.FailedChecks {
				fmt.Fprintf(&b, "- %s: %s\n", code(clipText(oneLine(c.Name), 120)), inline(c.Reason, 400))
			}
		}
	}
	if len(errs) > 0 {
		b.WriteString("\n### Errors\n\n")
		for _, t := range errs {
			fmt.Fprintf(&b, "- **%s**: %s", cellName(t, multi), t.Reason)
			if t.Detail != "" {
				fmt.Fprintf(&b, " — %s", inline(t.Detail, 400))
			}
			b.WriteString("\n")
		}
	}
	var kept []SummaryTask
	for _, t := range sum.Tasks {
		if t.Kept != nil {
			kept = append(kept, t)
		}
	}
	if len(kept) > 0 {
		b.WriteString("\n### Kept sandboxes\n\nPaused with their memory, processes and files; enter one with its command, reclaim them with `agent sandbox gc --older-than DURATION`.\n\n")
		for _, t := range kept {
			status := string(t.Status)
			if t.NotRun {
				status = "interrupted (continued by `agent run --resume`)"
			}
			fmt.Fprintf(&b, "- **%s** (%s): %s\n", cellName(t, multi), status, code(t.Kept.Command))
		}
	}
	var refused []SummaryTask
	for _, t := range sum.Tasks {
		if t.NetworkRefused > 0 {
			refused = append(refused, t)
		}
	}
	if len(refused) > 0 {
		b.WriteString("\n### Network refusals\n\n")
		for _, t := range refused {
			fmt.Fprintf(&b, "- **%s**: %d refused (`%s` `network.refused`)", cellName(t, multi), t.NetworkRefused,
				filepath.ToSlash(filepath.Join(t.Dir, ResultFile)))
			var samples []string
			for _, s := range t.NetworkSample {
				samples = append(samples, code(clipText(s, 120)))
			}
			if len(samples) > 0 {
				fmt.Fprintf(&b, ": %s", strings.Join(samples, ", "))
				if t.NetworkRefused > len(samples) {
					b.WriteString(", …")
				}
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nEach task's transcript, checks, setup log and produced files are under `tasks/` in the results directory.\n")
	return b.String()
}

func statusIcon(t SummaryTask) string {
	switch {
	case t.NotRun:
		return "⏹️"
	case t.Status == StatusPassed:
		return "✅"
	case t.Status == StatusFailed:
		return "❌"
	}
	return "⚠️"
}

func cellName(t SummaryTask, multi bool) string {
	if multi {
		return fmt.Sprintf("%s #%d", t.Name, t.Epoch)
	}
	return t.Name
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

// inline makes text safe on one Markdown line, clipped.
func inline(s string, n int) string {
	return strings.ReplaceAll(clipText(oneLine(s), n), "|", `\|`)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// code wraps s in a code span that its own backticks cannot end.
func code(s string) string {
	s = oneLine(s)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// fmtDuration prints a duration for people: 850ms, 12.3s, 4m05s, 1h02m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// fmtInt prints an integer with thousands separators.
func fmtInt(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + fmtInt(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Shortfalls counts the task epochs that did not pass, by outcome, leaving out the outcomes none
// had: "2 failed", "1 errored", "3 not run".
func (sum *Summary) Shortfalls() []string {
	var parts []string
	if sum.Failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", sum.Failed))
	}
	if sum.Error > 0 {
		parts = append(parts, fmt.Sprintf("%d errored", sum.Error))
	}
	if sum.NotRun > 0 {
		parts = append(parts, fmt.Sprintf("%d not run", sum.NotRun))
	}
	return parts
}
