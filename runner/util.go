package runner

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"unicode/utf8"
)

// clipText cuts s to about n bytes on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("… [%d more bytes]", len(s)-n)
}

// boundedBuffer keeps the first max bytes written to it and counts the rest. Safe for concurrent
// writers (a command's stdout and stderr callbacks).
type boundedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	max     int
	dropped int64
}

func newBoundedBuffer(max int) *boundedBuffer { return &boundedBuffer{max: max} }

// Write implements io.Writer; it never fails.
func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.WriteBytes(p)
	return len(p), nil
}

// WriteBytes appends p, or counts it once the buffer is full.
func (b *boundedBuffer) WriteBytes(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - b.buf.Len()
	if room >= len(p) {
		b.buf.Write(p)
		return
	}
	if room > 0 {
		b.buf.Write(p[:room])
	}
	b.dropped += int64(len(p) - max(room, 0))
}

// ensureNewline ends the text with a newline if it does not already.
func (b *boundedBuffer) ensureNewline() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.buf.Len(); n > 0 && b.buf.Bytes()[n-1] != '\n' && b.buf.Len() < b.max {
		b.buf.WriteByte('\n')
	}
}

// Bytes returns the kept text, with a note of what was dropped.
func (b *boundedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := bytes.Clone(b.buf.Bytes())
	if b.dropped > 0 {
		out = append(out, fmt.Sprintf("\n[… %d more bytes not kept]\n", b.dropped)...)
	}
	return out
}

// String returns Bytes as a string.
func (b *boundedBuffer) String() string { return string(b.Bytes()) }

// cellSeed derives the sampling seed of one cell (model × task × epoch): stable across runs and
// machines, different between epochs, and within 31 bits since some endpoints take an int32.
func cellSeed(model, task string, epoch int) int64 {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%d", model, task, epoch)))
	return int64(binary.BigEndian.Uint32(h[:4]) & 0x7fffffff)
}
