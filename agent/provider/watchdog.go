package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// Timeouts bound every phase of a model call so a hung endpoint never hangs a run. Zero fields take
// the defaults.
type Timeouts struct {
	// Connect bounds getting a connection: DNS, TCP and TLS (default 15s).
	Connect time.Duration
	// FirstByte bounds the wait from sending the request to the first byte of the response
	// (default 3m: a non-streaming answer arrives whole, after the model has finished).
	FirstByte time.Duration
	// Idle bounds the silence between two reads of the response body (default 90s).
	Idle time.Duration
	// Total bounds one attempt from start to end (default 10m).
	Total time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = 15 * time.Second
	}
	if t.FirstByte <= 0 {
		t.FirstByte = 3 * time.Minute
	}
	if t.Idle <= 0 {
		t.Idle = 90 * time.Second
	}
	if t.Total <= 0 {
		t.Total = 10 * time.Minute
	}
	return t
}

// errWatchdog is the cause of an attempt the watchdog canceled.
type errWatchdog struct {
	phase string
	after time.Duration
}

func (e *errWatchdog) Error() string {
	return fmt.Sprintf("watchdog: %s after %s", e.phase, e.after)
}

// watchdog cancels one attempt when a phase runs out of time. Each phase arms the timer anew:
// connecting, then waiting for the first byte, then reading with at most Idle between reads.
type watchdog struct {
	mu     sync.Mutex
	t      Timeouts
	cancel context.CancelCauseFunc
	timer  *time.Timer
	phase  string
	armed  time.Duration
	done   bool
	sentAt time.Time
	ttfb   time.Duration
	gotFB  bool
	eof    bool // the response body was read to its end
}

func newWatchdog(t Timeouts, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{t: t, cancel: cancel}
	w.arm("no connection", t.Connect)
	return w
}

func (w *watchdog) arm(phase string, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.phase, w.armed = phase, d
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
		return
	}
	w.timer.Reset(d)
}

func (w *watchdog) fire() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.done = true
	err := &errWatchdog{phase: w.phase, after: w.armed}
	w.mu.Unlock()
	w.cancel(err)
}

// stop disarms the watchdog for good.
func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// connected: the request is on the wire; wait for the first byte.
func (w *watchdog) connected() {
	w.mu.Lock()
	w.sentAt = time.Now()
	w.mu.Unlock()
	w.arm("no response", w.t.FirstByte)
}

// progress: bytes arrived; the stream may now be silent for at most Idle.
func (w *watchdog) progress() {
	w.mu.Lock()
	if !w.gotFB {
		w.gotFB = true
		if !w.sentAt.IsZero() {
			w.ttfb = time.Since(w.sentAt)
		}
	}
	w.mu.Unlock()
	w.arm("stream idle", w.t.Idle)
}

// bodyComplete reports whether the response body was received whole: a failure after that is
// the endpoint's answer, not the network's.
func (w *watchdog) bodyComplete() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.eof
}

func (w *watchdog) firstByte() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ttfb
}

// middleware wires the watchdog into the HTTP exchange and bounds the response body.
func (w *watchdog) middleware(maxBody int64) func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	return func(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
		trace := &httptrace.ClientTrace{
			GotConn:              func(httptrace.GotConnInfo) { w.connected() },
			GotFirstResponseByte: func() { w.progress() },
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := next(req)
		if err != nil || resp == nil || resp.Body == nil {
			return resp, err
		}
		resp.Body = &watchedBody{rc: resp.Body, w: w, left: maxBody}
		return resp, nil
	}
}

// errBodyTooLarge is returned when a response exceeds Config.MaxResponseBytes.
var errBodyTooLarge = errors.New("response body exceeds the size limit")

type watchedBody struct {
	rc   io.ReadCloser
	w    *watchdog
	left int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: only the end of the body is acceptable now.
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if n > 0 {
		b.w.progress()
	}
	if err == io.EOF {
		b.w.mu.Lock()
		b.w.eof = true
		b.w.mu.Unlock()
	}
	return n, err
}

func (b *watchedBody) Close() error { return b.rc.Close() }
