package procservice

import (
	"bytes"
	"testing"
	"time"
)

func drainLog(l *outLog, s *subscriber) (out []chunk) {
	for {
		c, ok, _ := l.take(s)
		if !ok {
			return out
		}
		out = append(out, c)
	}
}

func TestOutLogRingWhenDetached(t *testing.T) {
	l := newOutLog(100 << 10)
	for i := range 1000 {
		l.write(outStdout, bytes.Repeat([]byte{byte(i)}, 1000))
	}
	held, dropped := l.stats()
	if held > 100<<10 {
		t.Fatalf("held %d bytes, bound %d", held, 100<<10)
	}
	s, reported := l.subscribe()
	if reported == 0 || reported != dropped {
		t.Fatalf("subscriber told %d dropped bytes, log dropped %d", reported, dropped)
	}
	var got []byte
	for _, c := range drainLog(l, s) {
		got = append(got, c.data...)
	}
	if int64(len(got))+dropped != 1000*1000 {
		t.Fatalf("held %d + dropped %d != written", len(got), dropped)
	}
	// The newest output survives.
	if got[len(got)-1] != byte(999%256) {
		t.Fatalf("last byte %d, want %d", got[len(got)-1], 999%256)
	}
}

func TestOutLogTinyWritesAreBounded(t *testing.T) {
	l := newOutLog(64 << 10)
	// Alternating streams defeat coalescing; the per-chunk overhead still bounds the count.
	for i := range 200000 {
		l.write(outKind(i%2), []byte{'x'})
	}
	held, _ := l.stats()
	n := len(l.chunks) - l.head
	if held > 64<<10 || n > (64<<10)/chunkOverhead {
		t.Fatalf("held %d bytes in %d chunks", held, n)
	}
}

func TestOutLogCoalescesUntakenOutput(t *testing.T) {
	l := newOutLog(1 << 20)
	s, _ := l.subscribe()
	for range 100 {
		l.write(outStdout, []byte("ab"))
	}
	l.write(outStderr, []byte("e"))
	got := drainLog(l, s)
	if len(got) != 2 || len(got[0].data) != 200 || got[1].kind != outStderr {
		t.Fatalf("chunks %d, want one 200-byte stdout chunk then stderr", len(got))
	}
	// A taken chunk is never modified afterwards.
	l.write(outStderr, []byte("f"))
	if string(got[1].data) != "e" {
		t.Fatalf("taken chunk changed to %q", got[1].data)
	}
	if rest := drainLog(l, s); len(rest) != 1 || string(rest[0].data) != "f" {
		t.Fatalf("rest %v", rest)
	}
}

func TestOutLogBackPressure(t *testing.T) {
	l := newOutLog(100 << 10)
	s, _ := l.subscribe()
	wrote := make(chan int, 1)
	go func() {
		n := 0
		for range 50 {
			l.write(outStdout, bytes.Repeat([]byte{'x'}, 10<<10))
			n += 10 << 10
		}
		wrote <- n
	}()
	// The writer fills the buffer and then waits for the reader.
	time.Sleep(100 * time.Millisecond)
	if held, dropped := l.stats(); held > 100<<10 || dropped != 0 {
		t.Fatalf("held %d dropped %d while a reader is attached", held, dropped)
	}
	select {
	case <-wrote:
		t.Fatal("writer finished without the reader reading")
	default:
	}
	total := 0
	for total < 500<<10 {
		for _, c := range drainLog(l, s) {
			total += len(c.data)
		}
		if total >= 500<<10 {
			break // everything arrived; no wake-up is owed
		}
		select {
		case <-s.wake:
		case <-time.After(10 * time.Second):
			t.Fatalf("no progress at %d bytes", total)
		}
	}
	if n := <-wrote; n != total {
		t.Fatalf("read %d of %d", total, n)
	}
	// Detaching the last reader turns the log into a ring: a blocked writer proceeds.
	done := make(chan struct{})
	go func() {
		for range 50 {
			l.write(outStdout, bytes.Repeat([]byte{'y'}, 10<<10))
		}
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	l.unsubscribe(s)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writer blocked with no reader attached")
	}
}

func TestOutLogJoiningSubscriberSeesNewOutputOnly(t *testing.T) {
	l := newOutLog(1 << 20)
	a, _ := l.subscribe()
	l.write(outStdout, []byte("old"))
	b, _ := l.subscribe()
	l.write(outStderr, []byte("new"))
	if got := drainLog(l, a); len(got) != 2 {
		t.Fatalf("first subscriber got %d chunks, want 2", len(got))
	}
	got := drainLog(l, b)
	if len(got) != 1 || string(got[0].data) != "new" {
		t.Fatalf("joining subscriber got %v", got)
	}
	l.close()
	if _, ok, eof := l.take(b); ok || !eof {
		t.Fatal("no eof after close")
	}
	l.write(outStdout, []byte("discarded"))
	if _, ok, _ := l.take(a); ok {
		t.Fatal("output accepted after close")
	}
}
