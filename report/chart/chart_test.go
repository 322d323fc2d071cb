package chart

import (
	"encoding/xml"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// elements parses an SVG document strictly and returns its elements in document order.
func elements(t *testing.T, doc string) []xml.StartElement {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	dec.Strict = true
	var out []xml.StartElement
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 && e.Name.Local != "svg" {
				t.Fatalf("root element is %s", e.Name.Local)
			}
			depth++
			out = append(out, e)
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		t.Fatal("unbalanced SVG")
	}
	return out
}

func count(els []xml.StartElement, name, class string) int {
	n := 0
	for _, e := range els {
		if e.Name.Local != name {
			continue
		}
		if class == "" || attr(e, "class") == class {
			n++
		}
	}
	return n
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// texts returns the character data of every <text> element.
func texts(t *testing.T, doc string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var out []string
	in := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch e := tok.(type) {
		case xml.StartElement:
			in = e.Name.Local == "text"
		case xml.CharData:
			if in {
				out = append(out, string(e))
			}
		case xml.EndElement:
			in = false
		}
	}
	return out
}

const hostile = `</svg><script>alert(1)</script><img src=x onerror="alert(2)">&amp;`

func TestPassRateBars(t *testing.T) {
	doc := string(PassRateBars("Pass rate", []Bar{
		{Label: "model-a", Value: 0.5, Low: 0.3, High: 0.7, Note: "5/10 passed"},
		{Label: hostile, Value: 1, Low: 0.7, High: 1},
		{Label: "nan", Value: math.NaN(), Low: math.Inf(-1), High: math.Inf(1)},
	}))
	els := elements(t, doc)
	if n := count(els, "g", "bar"); n != 3 {
		t.Fatalf("%d bars drawn, want 3", n)
	}
	if count(els, "script", "") != 0 || count(els, "img", "") != 0 || strings.Contains(doc, "<script") {
		t.Fatal("a label was not escaped")
	}
	// The bar widths are proportional to the values: the 100% bar is twice the 50% one.
	var widths []float64
	for _, e := range els {
		if e.Name.Local == "rect" {
			w, err := strconv.ParseFloat(attr(e, "width"), 64)
			if err != nil {
				t.Fatalf("bad width %q", attr(e, "width"))
			}
			widths = append(widths, w)
		}
	}
	if len(widths) != 3 || math.Abs(widths[1]-2*widths[0]) > 0.02 || widths[2] != 0 {
		t.Fatalf("bar widths %v, want w, 2w, 0", widths)
	}
	if strings.Contains(doc, "NaN") || strings.Contains(doc, "Inf") {
		t.Fatal("non-finite number in SVG")
	}
	var sawHostile bool
	for _, s := range texts(t, doc) {
		if strings.HasPrefix(s, "</svg><script>") {
			sawHostile = true
		}
	}
	if !sawHostile {
		t.Fatal("hostile label not drawn as text")
	}
	if PassRateBars("x", nil) != "" {
		t.Fatal("empty chart for no bars expected")
	}
}

func TestScatter(t *testing.T) {
	doc := string(Scatter("Tokens vs pass rate", "tokens per task", []Point{
		{Label: "a", X: 1200, Y: 0.4}, {Label: "b", X: 37000, Y: 0.9}, {Label: hostile, X: 0, Y: 0},
	}))
	els := elements(t, doc)
	if n := count(els, "circle", ""); n != 3 {
		t.Fatalf("%d points, want 3", n)
	}
	if count(els, "script", "") != 0 {
		t.Fatal("label not escaped")
	}
	// The largest X sits at or left of the right edge (axis rounded up to 50k), and higher Y is higher up.
	var cx, cy []float64
	for _, e := range els {
		if e.Name.Local == "circle" {
			x, _ := strconv.ParseFloat(attr(e, "cx"), 64)
			y, _ := strconv.ParseFloat(attr(e, "cy"), 64)
			cx, cy = append(cx, x), append(cy, y)
		}
	}
	if !(cx[0] < cx[1] && cx[2] < cx[0]) || !(cy[1] < cy[0] && cy[0] < cy[2]) {
		t.Fatalf("points misplaced: x %v y %v", cx, cy)
	}
	if !strings.Contains(doc, ">50k<") {
		t.Fatalf("x axis not rounded to 50k:\n%s", doc)
	}
}

func TestHeatmap(t *testing.T) {
	rows := []string{"m1", "m2"}
	cols := []string{"t1", "t2", hostile}
	cells := [][]Cell{{{3, 3}, {0, 3}, {1, 2}}, {{2, 3}}} // row 2 is short: missing cells are "not run"
	doc := string(Heatmap("Model × task", rows, cols, cells))
	els := elements(t, doc)
	if n := count(els, "g", "cell"); n != 6 {
		t.Fatalf("%d cells, want 6", n)
	}
	fills := map[string]int{}
	for _, e := range els {
		if e.Name.Local == "rect" {
			fills[attr(e, "fill")]++
		}
	}
	if fills[ramp(1)] != 1 || fills[ramp(0)] != 1 || fills["#ddd"] != 2 {
		t.Fatalf("fills %v", fills)
	}
	for _, want := range []string{"3/3", "0/3", "1/2", "2/3", "–"} {
		found := false
		for _, s := range texts(t, doc) {
			found = found || s == want
		}
		if !found {
			t.Errorf("cell label %q missing", want)
		}
	}
	if ramp(0) != "#d73027" || ramp(1) != "#1a9850" || ramp(0.5) != "#fee08b" {
		t.Fatalf("ramp ends %s %s %s", ramp(0), ramp(0.5), ramp(1))
	}
	if Heatmap("x", nil, cols, nil) != "" {
		t.Fatal("empty heatmap expected")
	}
}

func TestLongLabelsClipped(t *testing.T) {
	long := strings.Repeat("x", 500)
	doc := string(PassRateBars("t", []Bar{{Label: long, Value: 0.5}}))
	for _, s := range texts(t, doc) {
		if len([]rune(s)) > maxLabel {
			t.Fatalf("label of %d runes drawn", len([]rune(s)))
		}
	}
	if !strings.Contains(doc, long) {
		t.Fatal("full label missing from the tooltip")
	}
}

func TestNiceCeil(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 3: 5, 10: 10, 11: 20, 37000: 50000, 0.3: 0.5, 999: 1000} {
		if got := niceCeil(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}
