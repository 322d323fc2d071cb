package report

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// pct formats a proportion as a percentage with one decimal.
func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

// signedPct formats a change of proportion in percentage points.
func signedPct(v float64) string { return fmt.Sprintf("%+.1f pp", 100*v) }

// dur formats a duration for people: 850ms, 12.3s, 4m05s.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// count formats a count with thin grouping: 1234567 → 1,234,567.
func count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// money formats dollars.
func money(v *float64, partial bool) string {
	if v == nil {
		return "–"
	}
	s := fmt.Sprintf("$%.4f", *v)
	if partial {
		s += " (partial)"
	}
	return s
}

// oneLine collapses whitespace runs to single spaces and cuts to n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
