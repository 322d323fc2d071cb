package chart

import (
	"fmt"
	"html/template"
	"math"
)

// Cell is one model × task cell: the share of its epochs that passed.
type Cell struct {
	// Passed and Total count epochs; Total 0 means the cell was not run.
	Passed, Total int
}

// Heatmap draws a grid with one row per model (rows) and one column per task (cols); cells[i][j]
// is row i, column j. Colour goes from red (0% passed) through yellow to green (100%); cells not
// run are grey. Column labels are rotated so many tasks fit. It returns an empty string when
// there is no row or column.
func Heatmap(title string, rows, cols []string, cells [][]Cell) template.HTML {
	if len(rows) == 0 || len(cols) == 0 {
		return ""
	}
	labelW := labelWidth(rows, 80, 300)
	colH := labelWidth(cols, 40, 300)*0.87 + 10 // rotated by 60°: the height is sin 60° of the width
	const (
		cell  = 34.0
		top   = 34.0
		right = 20.0
	)
	// Rotated column labels lean right past the last column.
	right2 := max(right, labelWidth(cols, 40, 300)*0.5-cell)
	w := max(labelW+cell*float64(len(cols))+right2, 320)
	h := top + colH + cell*float64(len(rows)) + 10
	var s svg
	s.open(int(w), int(h), title, "heatmap")
	s.title(title)
	gridTop := top + colH
	for j, c := range cols {
		cx := labelW + cell*float64(j) + cell/2
		s.text(cx, gridTop-6, "start", "#222", c, fmt.Sprintf(` transform="rotate(-60 %s %s)"`, num(cx), num(gridTop-6)))
	}
	for i, r := range rows {
		y := gridTop + cell*float64(i)
		s.text(labelW-8, y+cell/2+4, "end", "#222", r, "")
		for j := range cols {
			var c Cell
			if i < len(cells) && j < len(cells[i]) {
				c = cells[i][j]
			}
			x := labelW + cell*float64(j)
			fill, label, tip := "#ddd", "–", fmt.Sprintf("%s × %s: not run", r, cols[j])
			if c.Total > 0 {
				v := float64(c.Passed) / float64(c.Total)
				fill = ramp(v)
				label = fmt.Sprintf("%d/%d", c.Passed, c.Total)
				tip = fmt.Sprintf("%s × %s: %d of %d passed", r, cols[j], c.Passed, c.Total)
			}
			s.printf(`<g class="cell"><title>%s</title><rect x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="#fff"/>`,
				esc(tip), num(x), num(y), num(cell), num(cell), fill)
			s.text(x+cell/2, y+cell/2+4, "middle", "#111", label, ` font-size="10"`)
			s.printf(`</g>`)
		}
	}
	return s.close()
}

// ramp maps 0..1 to red → yellow → green.
func ramp(v float64) string {
	v = clamp01(v)
	type rgb struct{ r, g, b float64 }
	red, yellow, green := rgb{215, 48, 39}, rgb{254, 224, 139}, rgb{26, 152, 80}
	a, b, t := red, yellow, v*2
	if v > 0.5 {
		a, b, t = yellow, green, (v-0.5)*2
	}
	mix := func(x, y float64) int { return int(math.Round(x + (y-x)*t)) }
	return fmt.Sprintf("#%02x%02x%02x", mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b))
}
