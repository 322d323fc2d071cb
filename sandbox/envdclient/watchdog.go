package envdclient

import (
	"io"
	"sync/atomic"
	"time"
)

// watchdog cancels a stream or transfer that stays silent too long. It is armed only while the
// client waits on the network (not while a callback or the caller's reader holds the data), so a
// slow consumer is back-pressure, not a dead peer.
type watchdog struct {
	limit time.Duration
	t     *time.Timer
	fired atomic.Bool
}

// newWatchdog returns a disarmed watchdog that calls cancel after limit of armed silence.
func newWatchdog(limit time.Duration, cancel func()) *watchdog {
	w := &watchdog{limit: limit}
	w.t = time.AfterFunc(time.Hour, func() {
		w.fired.Store(true)
		cancel()
	})
	w.t.Stop()
	return w
}

// arm starts (or restarts) the countdown.
func (w *watchdog) arm() { w.t.Reset(w.limit) }

// armFor starts the countdown with another limit (e.g. the wait for a response header).
func (w *watchdog) armFor(d time.Duration) { w.t.Reset(d) }

// disarm stops the countdown.
func (w *watchdog) disarm() { w.t.Stop() }

// Fired reports whether the watchdog ended the stream.
func (w *watchdog) Fired() bool { return w.fired.Load() }

// idleReader arms a watchdog while its reader blocks in Read (a download: the network is silent).
type idleReader struct {
	r  io.Reader
	wd *watchdog
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.wd.arm()
	n, err := r.r.Read(p)
	r.wd.disarm()
	return n, err
}

// stallReader arms a watchdog between Reads (an upload body: the transport holds the data while the
// network does not take it), and disarms it while the source is read.
type stallReader struct {
	r    io.Reader
	wd   *watchdog
	done func()
}

func (r *stallReader) Read(p []byte) (int, error) {
	r.wd.disarm()
	n, err := r.r.Read(p)
	if err != nil {
		if r.done != nil {
			r.done()
		}
		return n, err
	}
	r.wd.arm()
	return n, err
}
