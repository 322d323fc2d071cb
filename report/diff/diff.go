// Package diff computes line diffs (Myers' O(ND) algorithm with a bound on the edit distance) and
// groups them into unified-diff hunks, for showing what an agent changed in its seed files.
package diff

import (
	"fmt"
	"strings"
)

// Op is the kind of a diff line.
type Op byte

// Line kinds.
const (
	Equal  Op = ' '
	Delete Op = '-'
	Insert Op = '+'
)

// Line is one line of a diff. Text has no trailing newline.
type Line struct {
	Op   Op
	Text string
	// A and B are the line numbers (from 1) in the old and new text; 0 where the line is absent.
	A, B int
}

// Hunk is a run of changes with context lines around it.
type Hunk struct {
	// AStart, ALen, BStart, BLen form the @@ header.
	AStart, ALen, BStart, BLen int
	Lines                      []Line
}

// Header returns the hunk's "@@ -a,n +b,m @@" line.
func (h Hunk) Header() string {
	return fmt.Sprintf("@@ -%d,%d +%d,%d @@", h.AStart, h.ALen, h.BStart, h.BLen)
}

// DefaultMaxEdits bounds the edit distance Lines searches; beyond it the texts are reported as too
// different to diff, which keeps time and memory bounded (O(D²)) on hostile input.
const DefaultMaxEdits = 2000

// Lines returns the line diff of a and b. ok is false when the texts differ by more than maxEdits
// inserted plus deleted lines (maxEdits ≤ 0 means DefaultMaxEdits).
func Lines(a, b string, maxEdits int) (lines []Line, ok bool) {
	if maxEdits <= 0 {
		maxEdits = DefaultMaxEdits
	}
	al, bl := split(a), split(b)
	// Common prefix and suffix are equal lines; only the middle needs the search.
	pre := 0
	for pre < len(al) && pre < len(bl) && al[pre] == bl[pre] {
		pre++
	}
	suf := 0
	for suf < len(al)-pre && suf < len(bl)-pre && al[len(al)-1-suf] == bl[len(bl)-1-suf] {
		suf++
	}
	mid, ok := myers(al[pre:len(al)-suf], bl[pre:len(bl)-suf], maxEdits)
	if !ok {
		return nil, false
	}
	out := make([]Line, 0, pre+len(mid)+suf)
	for i := 0; i < pre; i++ {
		out = append(out, Line{Op: Equal, Text: al[i]})
	}
	out = append(out, mid...)
	for i := 0; i < suf; i++ {
		out = append(out, Line{Op: Equal, Text: al[len(al)-suf+i]})
	}
	// Number the lines.
	ai, bi := 0, 0
	for i := range out {
		switch out[i].Op {
		case Equal:
			ai++
			bi++
			out[i].A, out[i].B = ai, bi
		case Delete:
			ai++
			out[i].A = ai
		case Insert:
			bi++
			out[i].B = bi
		}
	}
	return out, true
}

// split cuts text into lines without their newlines; a final newline ends the last line rather
// than starting an empty one.
func split(s string) []string {
	if s == "" {
		return nil
	}
	s = strings.TrimSuffix(s, "\n")
	return strings.Split(s, "\n")
}

// myers returns the shortest edit script from a to b, or ok false beyond maxD edits.
func myers(a, b []string, maxD int) ([]Line, bool) {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil, true
	}
	limit := min(n+m, maxD)
	off := limit + 1
	v := make([]int, 2*limit+3)
	// trace[d] holds v[off-d .. off+d] as it was before step d.
	var trace [][]int
	found := -1
	for d := 0; d <= limit && found < 0; d++ {
		lo, hi := off-d, off+d+1
		trace = append(trace, append([]int(nil), v[lo:hi]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: insert b[y]
			} else {
				x = v[off+k-1] + 1 // right: delete a[x]
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		return nil, false
	}
	var rev []Line
	x, y := n, m
	for d := found; d > 0; d-- {
		tv := trace[d]
		get := func(k int) int { return tv[k+d] } // tv index 0 is k = -d
		k := x - y
		var pk int
		if k == -d || (k != d && get(k-1) < get(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := get(pk)
		py := px - pk
		// The edit leads from (px, py) to (sx, sy); a snake of equal lines follows it to (x, y).
		sx, sy := px+1, py
		if pk == k+1 {
			sx, sy = px, py+1
		}
		for x > sx && y > sy {
			rev = append(rev, Line{Op: Equal, Text: a[x-1]})
			x--
			y--
		}
		if pk == k+1 {
			rev = append(rev, Line{Op: Insert, Text: b[py]})
		} else {
			rev = append(rev, Line{Op: Delete, Text: a[px]})
		}
		x, y = px, py
	}
	for x > 0 && y > 0 {
		rev = append(rev, Line{Op: Equal, Text: a[x-1]})
		x--
		y--
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, true
}

// Hunks groups a diff into hunks with up to context equal lines around each change. A diff
// without changes has no hunks.
func Hunks(lines []Line, context int) []Hunk {
	var hunks []Hunk
	n := len(lines)
	i := 0
	for i < n {
		// Find the next change.
		for i < n && lines[i].Op == Equal {
			i++
		}
		if i == n {
			break
		}
		start := max(i-context, 0)
		// Extend while changes are within 2*context equal lines of each other.
		end := i
		for end < n {
			if lines[end].Op != Equal {
				end++
				continue
			}
			j := end
			for j < n && lines[j].Op == Equal {
				j++
			}
			if j == n || j-end > 2*context {
				end = min(end+context, n)
				break
			}
			end = j
		}
		h := Hunk{Lines: lines[start:end]}
		for _, l := range h.Lines {
			if l.Op != Insert {
				h.ALen++
				if h.AStart == 0 {
					h.AStart = l.A
				}
			}
			if l.Op != Delete {
				h.BLen++
				if h.BStart == 0 {
					h.BStart = l.B
				}
			}
		}
		// An empty side starts at the line before the hunk, as unified diffs write it.
		if h.ALen == 0 {
			h.AStart = before(lines, start, func(l Line) int { return l.A })
		}
		if h.BLen == 0 {
			h.BStart = before(lines, start, func(l Line) int { return l.B })
		}
		hunks = append(hunks, h)
		i = end
	}
	return hunks
}

func before(lines []Line, start int, num func(Line) int) int {
	for i := start - 1; i >= 0; i-- {
		if v := num(lines[i]); v > 0 {
			return v
		}
	}
	return 0
}

// Unified renders hunks as unified diff text with ---/+++ headers.
func Unified(aName, bName string, hunks []Hunk) string {
	var s strings.Builder
	fmt.Fprintf(&s, "--- %s\n+++ %s\n", aName, bName)
	for _, h := range hunks {
		s.WriteString(h.Header())
		s.WriteByte('\n')
		for _, l := range h.Lines {
			s.WriteByte(byte(l.Op))
			s.WriteString(l.Text)
			s.WriteByte('\n')
		}
	}
	return s.String()
}
