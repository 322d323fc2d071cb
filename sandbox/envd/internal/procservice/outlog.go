package procservice

import (
	"sync"
)

// outKind says which stream a chunk of output came from.
type outKind uint8

const (
	outStdout outKind = iota
	outStderr
	outPTY
)

// maxChunk bounds one data event; bigger reads are split and small consecutive writes of one
// stream are coalesced up to it.
const maxChunk = 32 << 10

// chunkOverhead is the bookkeeping cost charged per held chunk, so a process writing one byte at a
// time cannot hold millions of tiny chunks within the byte budget.
const chunkOverhead = 64

type chunk struct {
	kind outKind
	data []byte
}

func (c chunk) cost() int { return len(c.data) + chunkOverhead }

// subscriber is one stream following a process's output. Its cursor is the sequence number of the
// next chunk it will take.
type subscriber struct {
	cursor uint64
	// wake has room for one pending notification: the producer never blocks on a subscriber.
	wake chan struct{}
}

// outLog is the bounded output buffer of one process, shared by every stream that follows it.
//
// It holds at most max bytes (plus a per-chunk overhead). While streams are attached, a chunk is
// held until the slowest of them has taken it, and a producer finding the buffer full waits: the
// pipe is not read, so the process blocks on write (back-pressure, no data lost). While no stream is
// attached, the buffer is a ring: the oldest output is dropped to make room, so a detached process
// never blocks, and the next stream to attach receives what is still held (dropped counts what was
// lost). Chunks are handed out whole and never modified afterwards, so no lock is held while a
// stream writes to the network.
type outLog struct {
	mu    sync.Mutex
	space *sync.Cond // signalled when room may have appeared or the log closed

	max    int
	chunks []chunk // chunks[head:] are held; chunks[head] has sequence number first
	head   int
	first  uint64
	size   int // cost of the held chunks
	subs   map[*subscriber]struct{}
	closed bool
	// taken is the sequence number below which some stream has taken every chunk; a chunk at or
	// above it may still grow by coalescing.
	taken   uint64
	dropped int64
}

func newOutLog(max int) *outLog {
	if max < maxChunk+chunkOverhead {
		max = maxChunk + chunkOverhead
	}
	l := &outLog{max: max, subs: map[*subscriber]struct{}{}}
	l.space = sync.NewCond(&l.mu)
	return l
}

// next is the sequence number the next appended chunk gets.
func (l *outLog) next() uint64 { return l.first + uint64(len(l.chunks)-l.head) }

// write appends output. It copies data, may block while attached streams are behind (see outLog),
// and discards data once the log is closed.
func (l *outLog) write(kind outKind, data []byte) {
	for len(data) > 0 {
		n := min(len(data), maxChunk)
		l.append(kind, data[:n])
		data = data[n:]
	}
}

func (l *outLog) append(kind outKind, data []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cost := len(data) + chunkOverhead
	for !l.closed && len(l.subs) > 0 && l.size > 0 && l.size+cost > l.max {
		l.space.Wait()
	}
	if l.closed {
		return
	}
	if len(l.subs) == 0 {
		for l.size > 0 && l.size+cost > l.max {
			l.dropped += int64(len(l.chunks[l.head].data))
			l.pop()
		}
	}
	// Coalesce into the last chunk when no stream has taken it yet.
	if n := len(l.chunks); n > l.head && l.next()-1 >= l.taken {
		last := &l.chunks[n-1]
		if last.kind == kind && len(last.data)+len(data) <= maxChunk {
			last.data = append(last.data, data...)
			l.size += len(data)
			l.wakeAll()
			return
		}
	}
	buf := make([]byte, len(data), max(len(data), min(2*len(data), maxChunk)))
	copy(buf, data)
	l.chunks = append(l.chunks, chunk{kind: kind, data: buf})
	l.size += cost
	l.wakeAll()
}

// pop drops the oldest held chunk. Callers hold mu.
func (l *outLog) pop() {
	l.size -= l.chunks[l.head].cost()
	l.chunks[l.head] = chunk{}
	l.head++
	l.first++
	if l.head == len(l.chunks) {
		l.chunks, l.head = l.chunks[:0], 0
	} else if l.head > 1024 && l.head > len(l.chunks)/2 {
		n := copy(l.chunks, l.chunks[l.head:])
		clear(l.chunks[n:])
		l.chunks, l.head = l.chunks[:n], 0
	}
}

func (l *outLog) wakeAll() {
	for s := range l.subs {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// trim drops the chunks every attached stream has taken. Callers hold mu.
func (l *outLog) trim() {
	if len(l.subs) == 0 {
		return
	}
	low := l.next()
	for s := range l.subs {
		low = min(low, s.cursor)
	}
	freed := false
	for l.first < low {
		l.pop()
		freed = true
	}
	if freed {
		l.space.Broadcast()
	}
}

// subscribe attaches a stream. The first stream to attach to an unattended log receives the output
// still held (and learns how much was dropped); a stream joining others receives output from now on.
func (l *outLog) subscribe() (s *subscriber, dropped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s = &subscriber{wake: make(chan struct{}, 1)}
	if len(l.subs) == 0 {
		s.cursor = l.first
		dropped, l.dropped = l.dropped, 0
	} else {
		s.cursor = l.next()
	}
	l.subs[s] = struct{}{}
	if s.cursor < l.next() || l.closed {
		s.wake <- struct{}{}
	}
	return s, dropped
}

// unsubscribe detaches a stream; with none left the log turns into a ring.
func (l *outLog) unsubscribe(s *subscriber) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs, s)
	l.trim()
	l.space.Broadcast()
}

// take returns the subscriber's next chunk. ok is false when none is ready; eof is then true when
// the log is closed and the subscriber has taken everything.
func (l *outLog) take(s *subscriber) (c chunk, ok, eof bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.cursor < l.first {
		s.cursor = l.first
	}
	if s.cursor < l.next() {
		c = l.chunks[l.head+int(s.cursor-l.first)]
		s.cursor++
		l.taken = max(l.taken, s.cursor)
		l.trim()
		return c, true, false
	}
	return chunk{}, false, l.closed
}

// close ends the log: producers stop blocking and their data is discarded, and subscribers see eof
// once they have taken what is held.
func (l *outLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.space.Broadcast()
	l.wakeAll()
}

// stats reports the bytes held and dropped (for tests and logs).
func (l *outLog) stats() (held int, dropped int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.dropped
}
