package tools

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// capture keeps the head and the tail of a stream in bounded memory and counts what it drops in
// between: the start of a command's output says what it did, the end says how it ended.
type capture struct {
	mu    sync.Mutex
	limit int    // bytes kept at most (head + tail)
	head  []byte // the first limit/2 bytes
	tail  []byte // ring of the last limit-limit/2 bytes
	pos   int    // next write position in tail once it is full
	full  bool
	total int64
}

func newCapture(limit int) *capture {
	if limit < 2 {
		limit = 2
	}
	return &capture{limit: limit}
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	c.total += int64(n)
	if room := c.limit/2 - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	tailMax := c.limit - c.limit/2
	if len(p) >= tailMax {
		c.tail = append(c.tail[:0], p[len(p)-tailMax:]...)
		c.pos, c.full = 0, true
		return n, nil
	}
	for len(p) > 0 {
		if !c.full {
			k := min(tailMax-len(c.tail), len(p))
			c.tail = append(c.tail, p[:k]...)
			p = p[k:]
			if len(c.tail) == tailMax {
				c.full, c.pos = true, 0
			}
			continue
		}
		k := copy(c.tail[c.pos:], p)
		p = p[k:]
		c.pos = (c.pos + k) % tailMax
	}
	return n, nil
}

// text is a captured stream: its kept head and tail and the number of bytes dropped between.
type text struct {
	head, tail string
	omitted    int64
}

func (c *capture) text() text {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail := c.tail
	if c.full && c.pos > 0 {
		tail = append(append([]byte(nil), c.tail[c.pos:]...), c.tail[:c.pos]...)
	}
	kept := int64(len(c.head) + len(tail))
	if c.total <= kept {
		// Nothing dropped: head and tail are adjacent.
		return text{head: string(c.head) + string(tail)}
	}
	return text{head: string(c.head), tail: string(tail), omitted: c.total - kept}
}

// Total is the number of bytes written.
func (c *capture) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func (t text) len() int { return len(t.head) + len(t.tail) }

// valid replaces invalid UTF-8 (binary output) with U+FFFD, before the text is measured against a
// limit: each replaced byte takes three.
func (t text) valid() text {
	return text{head: strings.ToValidUTF8(t.head, "\uFFFD"), tail: strings.ToValidUTF8(t.tail, "\uFFFD"), omitted: t.omitted}
}

func (t text) truncated() bool { return t.omitted > 0 }

// shrink keeps at most n bytes, half from the start and half from the end, cut at rune boundaries.
func (t text) shrink(n int) text {
	if t.len() <= n {
		return t
	}
	all := t.head + t.tail // when omitted > 0 the join is marked by the marker in String
	h, tl := n/2, n-n/2
	if t.omitted > 0 && len(t.head) < h {
		tl += h - len(t.head)
		h = len(t.head)
	}
	if t.omitted > 0 && len(t.tail) < tl {
		h += tl - len(t.tail)
		tl = len(t.tail)
	}
	var head, tail string
	if t.omitted > 0 {
		head, tail = t.head[:h], t.tail[len(t.tail)-tl:]
	} else {
		head, tail = all[:h], all[len(all)-tl:]
	}
	head = cutRuneEnd(head)
	tail = cutRuneStart(tail)
	return text{head: head, tail: tail, omitted: t.omitted + int64(t.len()-len(head)-len(tail))}
}

// String renders the text for the model, with an explicit marker where bytes were dropped.
// Invalid UTF-8 is replaced so the result is valid text; call valid before shrinking to keep the
// result within its bound.
func (t text) String() string {
	if t.omitted == 0 {
		return strings.ToValidUTF8(t.head+t.tail, "\uFFFD")
	}
	return strings.ToValidUTF8(t.head, "\uFFFD") + Marker(t.omitted) + strings.ToValidUTF8(t.tail, "\uFFFD")
}

// Marker is the text that replaces n dropped bytes in a truncated tool result.
func Marker(n int64) string {
	return fmt.Sprintf("\n[... %d bytes truncated ...]\n", n)
}

func cutRuneEnd(s string) string {
	// Drop a trailing partial rune.
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			break
		}
	}
	return s
}

func cutRuneStart(s string) string {
	// Drop a leading partial rune; text that is not UTF-8 at all is left alone.
	for i := 0; i < len(s) && i < utf8.UTFMax; i++ {
		if utf8.RuneStart(s[i]) {
			return s[i:]
		}
	}
	if len(s) < utf8.UTFMax {
		return ""
	}
	return s
}
