package envdclient

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
)

// stream is a server stream of envd with a watchdog: Receive fails once the stream has been silent
// for longer than the idle limit (envd sends keepalives on silence, so silence means a dead peer).
// The stream's context is detached from the caller's deadline (connect-go would send the deadline as
// Connect-Timeout-Ms, which envd takes as the process lifetime) but still ends when the caller's
// context ends.
type stream[T any] struct {
	s      *connect.ServerStreamForClient[T]
	wd     *watchdog
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool
}

// streamContext derives a stream context from parent: no deadline, canceled with parent or cancel.
func streamContext(parent context.Context) (context.Context, context.CancelFunc, func() bool) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, cancel)
	return ctx, cancel, stop
}

// openStream calls a server-streaming RPC on a detached context.
func openStream[Req, Res any](
	c *Client, parent context.Context,
	call func(context.Context, *connect.Request[Req]) (*connect.ServerStreamForClient[Res], error),
	req *connect.Request[Req],
) (*stream[Res], error) {
	ctx, cancel, stop := streamContext(parent)
	wd := newWatchdog(c.cfg.StreamIdleTimeout, cancel)
	req.Header().Set("Keepalive-Ping-Interval", c.keepaliveHeader())
	// The request (and the answer's headers) must come within the request timeout.
	wd.armFor(c.cfg.RequestTimeout)
	s, err := call(ctx, req)
	wd.disarm()
	st := &stream[Res]{s: s, wd: wd, ctx: ctx, cancel: cancel, stop: stop}
	if err != nil {
		st.close()
		return st, err
	}
	return st, nil
}

// receive waits for the next message within limit (0: the idle limit).
func (s *stream[T]) receive(limit time.Duration) (*T, bool) {
	if limit > 0 {
		s.wd.armFor(limit)
	} else {
		s.wd.arm()
	}
	ok := s.s.Receive()
	s.wd.disarm()
	if !ok {
		return nil, false
	}
	return s.s.Msg(), true
}

// err is the stream's error after receive returned false (nil at a clean end).
func (s *stream[T]) err() error { return s.s.Err() }

// close ends the stream and releases its context.
func (s *stream[T]) close() {
	s.wd.disarm()
	if s.s != nil {
		_ = s.s.Close()
	}
	s.stop()
	s.cancel()
}

// errStreamCut is a stream that ended before its final event.
var errStreamCut = errors.New("stream ended before its final event")

// streamError explains why a stream ended early: the caller's context, the watchdog, or envd.
func (c *Client) streamError(parent context.Context, op string, wd *watchdog, err error) error {
	switch {
	case parent.Err() != nil:
		return ctxError(op, parent.Err())
	case wd.Fired():
		return c.silentError(op)
	case err == nil:
		// A clean end-of-stream before the event that should end it: envd is dying, or broken.
		return c.probeGone(op, errStreamCut)
	}
	return c.rpcError(parent, op, err)
}
