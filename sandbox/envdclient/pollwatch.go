package envdclient

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// DefaultPollInterval is how often PollWatch asks envd for events.
const DefaultPollInterval = 500 * time.Millisecond

// PollWatch watches a directory like Watch, but with envd's polling watcher API (CreateWatcher,
// GetWatcherEvents, RemoveWatcher — what the Python SDKs use) instead of a long-lived stream: for
// paths through proxies that cut long responses. interval ≤ 0 means DefaultPollInterval. The
// watcher is removed from envd when ctx ends or the watcher is closed.
func (c *Client) PollWatch(ctx context.Context, path string, recursive bool, interval time.Duration) (sandbox.Watcher, error) {
	op := "watch " + path
	if err := checkPath(op, path); err != nil {
		return nil, err
	}
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	uctx, cancel := c.unaryCtx(ctx)
	req := connect.NewRequest(&filesystem.CreateWatcherRequest{Path: path, Recursive: recursive})
	c.setUser(req.Header(), "")
	resp, err := c.fs.CreateWatcher(uctx, req)
	cancel()
	if err != nil {
		return nil, c.rpcError(ctx, op, err)
	}
	id := resp.Msg.GetWatcherId()
	if id == "" {
		return nil, fmt.Errorf("%s: protocol error: no watcher id", op)
	}
	wctx, stop := context.WithCancel(ctx)
	w := &pollWatcher{
		c: c, op: op, id: id, parent: ctx, ctx: wctx, stop: stop, interval: interval,
		events: make(chan sandbox.Event, watchBuffer), done: make(chan struct{}),
	}
	go w.run()
	return w, nil
}

type pollWatcher struct {
	c        *Client
	op, id   string
	parent   context.Context
	ctx      context.Context
	stop     context.CancelFunc
	interval time.Duration
	events   chan sandbox.Event
	done     chan struct{}

	mu     sync.Mutex
	err    error
	closed bool
}

func (w *pollWatcher) run() {
	defer close(w.done)
	defer close(w.events)
	defer w.remove()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			w.fail(ctxError(w.op, w.parent.Err()))
			return
		case <-t.C:
		}
		uctx, cancel := w.c.unaryCtx(w.ctx)
		req := connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: w.id})
		w.c.setUser(req.Header(), "")
		resp, err := w.c.fs.GetWatcherEvents(uctx, req)
		cancel()
		if err != nil {
			w.fail(w.c.rpcError(w.parent, w.op, err))
			return
		}
		for _, fe := range resp.Msg.GetEvents() {
			typ, known := eventType(fe.GetType())
			if !known {
				continue
			}
			select {
			case w.events <- sandbox.Event{Name: fe.GetName(), Type: typ}:
			case <-w.ctx.Done():
				w.fail(ctxError(w.op, w.parent.Err()))
				return
			}
		}
	}
}

// fail records why the watch ended, unless it was closed.
func (w *pollWatcher) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.err = err
	}
}

// remove deletes the watcher in envd, best effort and bounded.
func (w *pollWatcher) remove() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), w.c.cfg.HealthTimeout)
	defer cancel()
	req := connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: w.id})
	w.c.setUser(req.Header(), "")
	if _, err := w.c.fs.RemoveWatcher(ctx, req); err != nil {
		w.c.log.Debug("remove envd watcher", "id", w.id, "err", err)
	}
}

func (w *pollWatcher) Events() <-chan sandbox.Event { return w.events }

func (w *pollWatcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch, removes the watcher from envd and waits for the poller.
func (w *pollWatcher) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.stop()
	<-w.done
	return nil
}
