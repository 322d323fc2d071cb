// Package chart draws the charts of an evaluation report as inline SVG: pass rate per model with
// its confidence interval, tokens against pass rate, and a model × task heatmap. The SVG is built
// in Go with every label escaped, has no scripts, styles of its own or external references, and
// scales to its container (viewBox), so it can be inlined in a self-contained HTML file.
package chart

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// Palette colours series in order; it is legible on white and for common colour blindness
// (Okabe–Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// Color returns the palette colour of series i.
func Color(i int) string { return palette[((i%len(palette))+len(palette))%len(palette)] }

// maxLabel bounds a label drawn in a chart; longer ones are cut with an ellipsis (the full text
// stays in the element's <title> tooltip).
const maxLabel = 40

// svg accumulates an SVG document.
type svg struct {
	b strings.Builder
}

func (s *svg) open(w, h int, title, class string) {
	// The natural size is given so a small chart is not blown up to its container's width; the
	// page's CSS may shrink it (max-width: 100%; height: auto), and the viewBox keeps it sharp.
	fmt.Fprintf(&s.b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart %s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" font-family="system-ui, sans-serif" font-size="12">`,
		esc(class), w, h, w, h, esc(title))
	fmt.Fprintf(&s.b, `<title>%s</title>`, esc(title))
}

func (s *svg) close() template.HTML {
	s.b.WriteString(`</svg>`)
	return template.HTML(s.b.String()) // every dynamic part went through esc or a number format
}

// title draws a chart's heading (not clipped: it is ours, not data).
func (s *svg) title(title string) {
	s.printf(`<text x="8" y="18" fill="#222" font-weight="600" font-size="13">%s</text>`, esc(title))
}

func (s *svg) printf(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

// text draws a label; anchor is start, middle or end.
func (s *svg) text(x, y float64, anchor, fill, label string, extra string) {
	s.printf(`<text x="%s" y="%s" text-anchor="%s" fill="%s"%s>%s</text>`, num(x), num(y), anchor, fill, extra, esc(clip(label)))
}

// labelWidth returns the room for the longest label (about 7 px per character at font size 12),
// between lo and hi pixels.
func labelWidth(labels []string, lo, hi float64) float64 {
	n := 0
	for _, l := range labels {
		n = max(n, len([]rune(clip(l))))
	}
	return min(max(float64(n)*7+16, lo), hi)
}

// esc escapes text for SVG content and attribute values.
func esc(s string) string { return html.EscapeString(s) }

// clip shortens a label to maxLabel runes.
func clip(s string) string {
	r := []rune(s)
	if len(r) <= maxLabel {
		return s
	}
	return string(r[:maxLabel-1]) + "…"
}

// num formats a coordinate compactly; non-finite values (which SVG cannot draw) become 0.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// pct formats a proportion in [0, 1] as a percentage (NaN as 0%).
func pct(v float64) string { return fmt.Sprintf("%.0f%%", 100*clamp01(v)) }

// clamp01 limits v to [0, 1], mapping NaN to 0.
func clamp01(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return min(max(v, 0), 1)
}
