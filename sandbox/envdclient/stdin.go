package envdclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox/envd/spec/process"
)

// maxInputChunk bounds one StreamInput message.
const maxInputChunk = 256 << 10

// StdinStream opens a stream of input to a running process (the StreamInput RPC): bytes written go to
// its stdin, or to its terminal when pty is set, in order, in one request. It suits large or
// continuous input, where SendStdin would cost a request per write. Close ends the stream (not the
// process's stdin: use CloseStdin for that) and reports envd's verdict. ctx bounds the stream's life.
func (c *Client) StdinStream(ctx context.Context, pid uint32, pty bool) (io.WriteCloser, error) {
	op := fmt.Sprintf("stream input to process %d", pid)
	if pid == 0 {
		return nil, fmt.Errorf("%s: %w", op, errNoPID)
	}
	sctx, cancel, stop := streamContext(ctx)
	s := c.proc.StreamInput(sctx)
	c.setUser(s.RequestHeader(), "")
	w := &stdinStream{c: c, op: op, parent: ctx, s: s, cancel: cancel, stop: stop, pty: pty}
	// A Send blocks while envd does not read; the watchdog bounds that.
	w.wd = newWatchdog(c.cfg.StreamIdleTimeout, cancel)
	if err := w.send(&process.StreamInputRequest{Event: &process.StreamInputRequest_Start{
		Start: &process.StreamInputRequest_StartEvent{Process: pidSelector(pid)},
	}}); err != nil {
		w.closed = true
		return nil, w.finish(err)
	}
	return w, nil
}

var errNoPID = errors.New("no pid")

type stdinStream struct {
	c      *Client
	op     string
	parent context.Context
	s      *connect.ClientStreamForClient[process.StreamInputRequest, process.StreamInputResponse]
	cancel context.CancelFunc
	stop   func() bool
	wd     *watchdog
	pty    bool

	mu     sync.Mutex
	closed bool
	err    error
}

// Write sends p as one or more input messages.
func (w *stdinStream) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("%s: %w", w.op, io.ErrClosedPipe)
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxInputChunk)]
		in := &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: chunk}}
		if w.pty {
			in.Input = &process.ProcessInput_Pty{Pty: chunk}
		}
		err := w.send(&process.StreamInputRequest{Event: &process.StreamInputRequest_Data{
			Data: &process.StreamInputRequest_DataEvent{Input: in},
		}})
		if err != nil {
			// The server gave up; its reason comes with the response.
			w.err = w.finish(err)
			w.closed = true
			return n, w.err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Close ends the stream and returns envd's verdict on it.
func (w *stdinStream) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	w.closed = true
	w.err = w.finish(nil)
	return w.err
}

func (w *stdinStream) send(m *process.StreamInputRequest) error {
	w.wd.arm()
	defer w.wd.disarm()
	return w.s.Send(m)
}

// finish closes the request, reads the response and releases the stream.
func (w *stdinStream) finish(sendErr error) error {
	defer w.cancel()
	defer w.stop()
	w.wd.armFor(w.c.cfg.RequestTimeout)
	_, err := w.s.CloseAndReceive()
	w.wd.disarm()
	if err == nil && sendErr != nil && !errors.Is(sendErr, io.EOF) {
		err = sendErr
	}
	if err == nil {
		return nil
	}
	return w.c.streamError(w.parent, w.op, w.wd, err)
}
