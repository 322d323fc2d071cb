package chart

import (
	"fmt"
	"html/template"
)

// Bar is one model's pass rate with its confidence interval, all in [0, 1].
type Bar struct {
	Label string
	Value float64
	Low   float64
	High  float64
	// Note is added to the tooltip (e.g. "7/10 passed").
	Note string
}

// PassRateBars draws one horizontal bar per entry with an error bar for its interval, on a 0–100%
// axis. It returns an empty string for no bars.
func PassRateBars(title string, bars []Bar) template.HTML {
	if len(bars) == 0 {
		return ""
	}
	labels := make([]string, len(bars))
	for i, b := range bars {
		labels[i] = b.Label
	}
	labelW := labelWidth(labels, 80, 300)
	const (
		plotW  = 420.0
		rowH   = 28.0
		top    = 34.0
		bottom = 30.0
		right  = 70.0
	)
	w := labelW + plotW + right
	h := top + rowH*float64(len(bars)) + bottom
	var s svg
	s.open(int(w), int(h), title, "pass-rate")
	s.title(title)
	x := func(v float64) float64 { return labelW + plotW*clamp01(v) }
	// Grid lines and axis labels every 20%.
	for i := 0; i <= 5; i++ {
		v := float64(i) / 5
		s.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd"/>`, num(x(v)), num(top-4), num(x(v)), num(h-bottom+4))
		s.text(x(v), h-bottom+18, "middle", "#555", pct(v), "")
	}
	for i, b := range bars {
		y := top + rowH*float64(i)
		s.printf(`<g class="bar">`)
		tip := fmt.Sprintf("%s: %s (95%% CI %s–%s)", b.Label, pct(b.Value), pct(b.Low), pct(b.High))
		if b.Note != "" {
			tip += ", " + b.Note
		}
		s.printf(`<title>%s</title>`, esc(tip))
		s.text(labelW-8, y+rowH/2+4, "end", "#222", b.Label, "")
		s.printf(`<rect x="%s" y="%s" width="%s" height="%s" fill="%s" rx="2"/>`,
			num(x(0)), num(y+5), num(x(b.Value)-x(0)), num(rowH-10), Color(i))
		// Error bar: a line from low to high with end caps.
		cy := y + rowH/2
		s.printf(`<path d="M%s %sH%sM%s %sV%sM%s %sV%s" stroke="#222" stroke-width="1.5" fill="none"/>`,
			num(x(b.Low)), num(cy), num(x(b.High)),
			num(x(b.Low)), num(cy-6), num(cy+6),
			num(x(b.High)), num(cy-6), num(cy+6))
		s.text(x(1)+8, cy+4, "start", "#222", pct(b.Value), "")
		s.printf(`</g>`)
	}
	return s.close()
}
