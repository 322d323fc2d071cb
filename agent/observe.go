package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// JSONLObserver returns an observer that writes each event as one JSON line to w. Deltas are
// skipped unless withDeltas is set. Safe for concurrent tasks sharing w; write errors are dropped
// (events are a view, the transcript is the record).
func JSONLObserver(w io.Writer, withDeltas bool) func(Event) {
	var mu sync.Mutex
	return func(e Event) {
		if e.Type == EventDelta && !withDeltas {
			return
		}
		b, err := json.Marshal(e)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		w.Write(append(b, '\n'))
	}
}

// TextObserver returns an observer that prints a task's steps for a person: the model's text as it
// streams, each tool call and a clipped view of its result, retries and the end. lines bounds the
// lines of a tool result shown (0: 8).
func TextObserver(w io.Writer, lines int) func(Event) {
	if lines <= 0 {
		lines = 8
	}
	var mu sync.Mutex
	midLine := false
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		nl := func() {
			if midLine {
				fmt.Fprintln(w)
				midLine = false
			}
		}
		switch e.Type {
		case EventStepStart:
			nl()
			fmt.Fprintf(w, "── step %d ──\n", e.Step)
		case EventDelta:
			if e.Text != "" {
				fmt.Fprint(w, e.Text)
				midLine = !strings.HasSuffix(e.Text, "\n")
			}
		case EventRetry:
			nl()
			if e.Retry != nil {
				fmt.Fprintf(w, "  ! model call failed (%s), retrying in %dms\n", clipLine(e.Retry.Error, 160), e.Retry.WaitMS)
			}
		case EventAssistant:
			nl()
		case EventToolStart:
			nl()
			if e.ToolCall != nil {
				fmt.Fprintf(w, "→ %s %s\n", e.ToolCall.Name, clipLine(e.ToolCall.Arguments, 200))
			}
		case EventToolEnd:
			nl()
			fmt.Fprintln(w, indent(clipLines(e.Text, lines), "  "))
		case EventTaskEnd:
			nl()
			if e.End != nil {
				s := fmt.Sprintf("■ %s after %d steps", e.End.Reason, e.Step)
				if e.Usage != nil {
					s += fmt.Sprintf(", %d tokens", e.Usage.TotalTokens)
					if e.Usage.CostUSD != nil {
						s += fmt.Sprintf(", $%.4f", *e.Usage.CostUSD)
					}
				}
				if e.End.Detail != "" {
					s += ": " + e.End.Detail
				}
				fmt.Fprintln(w, s)
			}
		}
	}
}

// clipLine puts s on one line of at most about n bytes.
func clipLine(s string, n int) string {
	return cut(strings.Join(strings.Fields(s), " "), n)
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func clipLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = append(ls[:n], fmt.Sprintf("… (%d more lines)", len(ls)-n))
	}
	for i, l := range ls {
		ls[i] = cut(l, 240)
	}
	return strings.Join(ls, "\n")
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}
