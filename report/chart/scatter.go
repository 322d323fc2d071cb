package chart

import (
	"fmt"
	"html/template"
	"math"
)

// Point is one model in the tokens-versus-pass-rate chart.
type Point struct {
	Label string
	// X is tokens (any non-negative quantity; the axis is scaled to the largest).
	X float64
	// Y is a pass rate in [0, 1].
	Y float64
}

// Scatter draws points with X on a linear axis from 0 to a rounded maximum and Y on 0–100%, each
// point labelled. xLabel names the X axis. It returns an empty string for no points.
func Scatter(title, xLabel string, pts []Point) template.HTML {
	if len(pts) == 0 {
		return ""
	}
	const (
		left   = 60.0
		plotW  = 520.0
		plotH  = 260.0
		top    = 34.0
		bottom = 44.0
	)
	labels := make([]string, len(pts))
	for i, p := range pts {
		labels[i] = p.Label
	}
	right := labelWidth(labels, 40, 300) + 10
	w, h := left+plotW+right, top+plotH+bottom
	xmax := 0.0
	for _, p := range pts {
		if p.X > xmax && !math.IsInf(p.X, 0) {
			xmax = p.X
		}
	}
	xmax = niceCeil(xmax)
	x := func(v float64) float64 {
		if !(v > 0) {
			return left
		}
		return left + plotW*min(v/xmax, 1)
	}
	y := func(v float64) float64 { return top + plotH*(1-clamp01(v)) }
	var s svg
	s.open(int(w), int(h), title, "scatter")
	s.title(title)
	for i := 0; i <= 5; i++ {
		v := float64(i) / 5
		s.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd"/>`, num(left), num(y(v)), num(left+plotW), num(y(v)))
		s.text(left-6, y(v)+4, "end", "#555", pct(v), "")
		xv := xmax * v
		s.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#eee"/>`, num(x(xv)), num(top), num(x(xv)), num(top+plotH))
		s.text(x(xv), top+plotH+16, "middle", "#555", humanCount(xv), "")
	}
	s.printf(`<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#999"/>`, num(left), num(top), num(plotW), num(plotH))
	s.text(left+plotW/2, h-6, "middle", "#333", xLabel, "")
	s.text(14, top+plotH/2, "middle", "#333", "pass rate", fmt.Sprintf(` transform="rotate(-90 14 %s)"`, num(top+plotH/2)))
	for i, p := range pts {
		px, py := x(p.X), y(p.Y)
		s.printf(`<g class="point"><title>%s</title>`, esc(fmt.Sprintf("%s: %s tokens, %s", p.Label, humanCount(p.X), pct(p.Y))))
		s.printf(`<circle cx="%s" cy="%s" r="6" fill="%s" stroke="#222"/>`, num(px), num(py), Color(i))
		s.text(px+9, py+4, "start", "#222", p.Label, "")
		s.printf(`</g>`)
	}
	return s.close()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v ≤ 0).
func niceCeil(v float64) float64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// humanCount formats a count as 950, 12k, 3.4M.
func humanCount(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		v = 0
	}
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	}
	return fmt.Sprintf("%.0f", v)
}

func trimZero(s string) string {
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		return s[:len(s)-2]
	}
	return s
}
