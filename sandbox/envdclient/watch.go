package envdclient

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// watchBuffer is how many events wait for the reader before the stream is back-pressured.
const watchBuffer = 256

// Watch reports changes under a directory (WatchDir stream) until ctx ends or the watcher is closed.
// Events not read promptly back-pressure the stream; envd bounds what it holds meanwhile.
func (c *Client) Watch(ctx context.Context, path string, recursive bool) (sandbox.Watcher, error) {
	op := "watch " + path
	if err := checkPath(op, path); err != nil {
		return nil, err
	}
	req := connect.NewRequest(&filesystem.WatchDirRequest{Path: path, Recursive: recursive})
	c.setUser(req.Header(), "")
	st, err := openStream(c, ctx, c.fs.WatchDir, req)
	if err != nil {
		return nil, c.streamError(ctx, op, st.wd, err)
	}
	first, ok := st.receive(c.cfg.RequestTimeout)
	if !ok {
		err := c.streamError(ctx, op, st.wd, st.err())
		st.close()
		return nil, err
	}
	if first.GetStart() == nil {
		st.close()
		return nil, fmt.Errorf("%s: protocol error: first event is not a start event", op)
	}
	w := &watcher{c: c, op: op, parent: ctx, st: st, events: make(chan sandbox.Event, watchBuffer), done: make(chan struct{})}
	go w.run()
	return w, nil
}

type watcher struct {
	c      *Client
	op     string
	parent context.Context
	st     *stream[filesystem.WatchDirResponse]
	events chan sandbox.Event
	done   chan struct{}
	closed atomic.Bool

	mu  sync.Mutex
	err error
}

func (w *watcher) run() {
	defer close(w.done)
	defer close(w.events)
	defer w.st.close()
	for {
		msg, ok := w.st.receive(0)
		if !ok {
			break
		}
		fe := msg.GetFilesystem()
		if fe == nil {
			continue
		}
		typ, known := eventType(fe.GetType())
		if !known {
			continue
		}
		select {
		case w.events <- sandbox.Event{Name: fe.GetName(), Type: typ}:
		case <-w.st.ctx.Done():
		}
	}
	if w.closed.Load() {
		return
	}
	err := w.c.streamError(w.parent, w.op, w.st.wd, w.st.err())
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

// Events is closed when the watch ends.
func (w *watcher) Events() <-chan sandbox.Event { return w.events }

// Err says why the watch ended; nil while it runs and after Close.
func (w *watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch and waits for its goroutine.
func (w *watcher) Close() error {
	w.closed.Store(true)
	w.st.cancel()
	<-w.done
	return nil
}

func eventType(t filesystem.EventType) (sandbox.EventType, bool) {
	switch t {
	case filesystem.EventType_EVENT_TYPE_CREATE:
		return sandbox.EventCreate, true
	case filesystem.EventType_EVENT_TYPE_WRITE:
		return sandbox.EventWrite, true
	case filesystem.EventType_EVENT_TYPE_REMOVE:
		return sandbox.EventRemove, true
	case filesystem.EventType_EVENT_TYPE_RENAME:
		return sandbox.EventRename, true
	case filesystem.EventType_EVENT_TYPE_CHMOD:
		return sandbox.EventChmod, true
	}
	return "", false
}
