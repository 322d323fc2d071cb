package envdclient

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envd/spec/process"
)

// TimeoutErrorPrefix starts envd's end-event error text when it killed a process because its
// Connect-Timeout-Ms lifetime expired. The client sets Result.TimedOut from it (and, for envds that
// do not say so, from a kill after the requested timeout had elapsed).
const TimeoutErrorPrefix = "process timed out"

// killTimeout bounds the best-effort kill Run sends when its context ends.
const killTimeout = 5 * time.Second

// describe names a command in errors, briefly.
func describe(cmd sandbox.Cmd) string {
	s := cmd.Shell
	if s == "" {
		s = strings.Join(cmd.Argv, " ")
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strconv.Quote(s)
}

// startRequest builds the Start request the SDKs send.
func startRequest(cmd sandbox.Cmd) (*process.StartRequest, error) {
	cfg := &process.ProcessConfig{Envs: cmd.Env}
	switch {
	case cmd.Shell != "":
		cfg.Cmd, cfg.Args = "/bin/bash", []string{"-l", "-c", cmd.Shell}
	case len(cmd.Argv) > 0 && cmd.Argv[0] != "":
		cfg.Cmd, cfg.Args = cmd.Argv[0], cmd.Argv[1:]
	default:
		return nil, fmt.Errorf("%w: command has neither Shell nor Argv", sandbox.ErrInvalid)
	}
	if cmd.Dir != "" {
		cfg.Cwd = &cmd.Dir
	}
	if cmd.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative timeout", sandbox.ErrInvalid)
	}
	if cmd.MaxOutput < 0 {
		return nil, fmt.Errorf("%w: negative MaxOutput", sandbox.ErrInvalid)
	}
	req := &process.StartRequest{Process: cfg}
	stdin := cmd.Stdin
	req.Stdin = &stdin
	if cmd.Tag != "" {
		req.Tag = &cmd.Tag
	}
	if cmd.PTY != nil {
		req.Pty = &process.PTY{Size: &process.PTY_Size{Cols: cmd.PTY.Cols, Rows: cmd.PTY.Rows}}
	}
	return req, nil
}

// Run runs a command to its end. Output streams to cmd.Output; the Result keeps the first
// cmd.MaxOutput bytes of stdout and of stderr (PTY output counts as stdout). A non-zero exit or a
// kill returns the Result and an *sandbox.ExitError. When ctx ends first, Run kills the process.
func (c *Client) Run(ctx context.Context, cmd sandbox.Cmd) (*sandbox.Result, error) {
	op := "run " + describe(cmd)
	p, err := c.start(ctx, op, cmd)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if kerr := p.Kill(kctx); kerr != nil && !errors.Is(kerr, sandbox.ErrNotFound) {
		c.log.Debug("kill after canceled run failed", "pid", p.pid, "err", kerr)
	}
	return nil, ctxError(op, ctx.Err())
}

// Start starts a command and returns once envd reported its pid. Output streams to cmd.Output from a
// background goroutine. Canceling ctx after Start returns detaches from the process without
// killing it; cmd.Timeout (envd's process lifetime) still applies.
func (c *Client) Start(ctx context.Context, cmd sandbox.Cmd) (sandbox.Process, error) {
	p, err := c.start(ctx, "start "+describe(cmd), cmd)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Client) start(ctx context.Context, op string, cmd sandbox.Cmd) (*proc, error) {
	msg, err := startRequest(cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req := connect.NewRequest(msg)
	c.setUser(req.Header(), cmd.User)
	if cmd.Timeout > 0 {
		// Connect allows at most 10 digits (about 115 days).
		ms := min(max(cmd.Timeout.Milliseconds(), 1), 9_999_999_999)
		req.Header().Set("Connect-Timeout-Ms", strconv.FormatInt(ms, 10))
	}
	t0 := time.Now()
	st, err := openStream(c, ctx, c.proc.Start, req)
	if err != nil {
		return nil, c.streamError(ctx, op, st.wd, err)
	}
	p := newProc(c, ctx, op, cmd.Output, cmd.MaxOutput, cmd.PTY != nil)
	p.timeout = cmd.Timeout
	p.started = t0
	if err := p.begin(streamOf(st)); err != nil {
		return nil, err
	}
	return p, nil
}

// Connect attaches to a running process by pid (or by tag when pid is 0). Output from the moment of
// attaching streams to out; the Result keeps up to sandbox.DefaultMaxOutput of it. Canceling ctx
// after Connect returns detaches.
func (c *Client) Connect(ctx context.Context, pid uint32, tag string, out sandbox.Output) (sandbox.Process, error) {
	sel, what, err := selector(pid, tag)
	op := "connect to process " + what
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req := connect.NewRequest(&process.ConnectRequest{Process: sel})
	c.setUser(req.Header(), "")
	st, err := openStream(c, ctx, c.proc.Connect, req)
	if err != nil {
		return nil, c.streamError(ctx, op, st.wd, err)
	}
	p := newProc(c, ctx, op, out, 0, false)
	p.started = time.Now()
	if err := p.begin(streamOf(st)); err != nil {
		return nil, err
	}
	return p, nil
}

func selector(pid uint32, tag string) (*process.ProcessSelector, string, error) {
	switch {
	case pid != 0:
		return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}, strconv.FormatUint(uint64(pid), 10), nil
	case tag != "":
		return &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: tag}}, "tagged " + strconv.Quote(tag), nil
	}
	return nil, "(none)", fmt.Errorf("%w: neither pid nor tag given", sandbox.ErrInvalid)
}

func pidSelector(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

// Processes lists the processes started through envd that still run.
func (c *Client) Processes(ctx context.Context) ([]sandbox.ProcessInfo, error) {
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&process.ListRequest{})
	c.setUser(req.Header(), "")
	resp, err := c.proc.List(uctx, req)
	if err != nil {
		return nil, c.rpcError(ctx, "list processes", err)
	}
	out := make([]sandbox.ProcessInfo, 0, len(resp.Msg.GetProcesses()))
	for _, p := range resp.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out = append(out, sandbox.ProcessInfo{
			PID: p.GetPid(), Tag: p.GetTag(), Cmd: cfg.GetCmd(), Args: cfg.GetArgs(),
			Env: cfg.GetEnvs(), Dir: cfg.GetCwd(),
		})
	}
	return out, nil
}

// eventStream is a Start or Connect stream seen as process events.
type eventStream struct {
	receive func(limit time.Duration) (*process.ProcessEvent, bool)
	err     func() error
	close   func()
	cancel  context.CancelFunc
	wd      *watchdog
}

type eventMsg interface{ GetEvent() *process.ProcessEvent }

func streamOf[T any, PT interface {
	*T
	eventMsg
}](st *stream[T]) eventStream {
	return eventStream{
		receive: func(limit time.Duration) (*process.ProcessEvent, bool) {
			m, ok := st.receive(limit)
			if !ok {
				return nil, false
			}
			return PT(m).GetEvent(), true
		},
		err:    st.err,
		close:  st.close,
		cancel: st.cancel,
		wd:     st.wd,
	}
}

// headBuf keeps the first max bytes written to it.
type headBuf struct {
	max       int
	buf       []byte
	truncated bool
}

func (h *headBuf) write(p []byte) {
	room := h.max - len(h.buf)
	if len(p) > room {
		p = p[:max(room, 0)]
		h.truncated = true
	}
	h.buf = append(h.buf, p...)
}

// proc is a process handle: one stream of its events, consumed in the background.
type proc struct {
	c       *Client
	parent  context.Context
	op      string
	out     sandbox.Output
	pid     uint32
	pty     atomic.Bool
	timeout time.Duration
	started time.Time
	stdout  headBuf
	stderr  headBuf

	st           eventStream
	disconnected atomic.Bool
	closeOnce    sync.Once

	done chan struct{}
	res  *sandbox.Result
	err  error
}

var _ sandbox.Process = (*proc)(nil)

func newProc(c *Client, parent context.Context, op string, out sandbox.Output, maxOut int, pty bool) *proc {
	if maxOut <= 0 {
		maxOut = sandbox.DefaultMaxOutput
	}
	p := &proc{
		c: c, parent: parent, op: op, out: out,
		stdout: headBuf{max: maxOut}, stderr: headBuf{max: maxOut},
		done: make(chan struct{}),
	}
	p.pty.Store(pty)
	return p
}

// begin reads the start event, then consumes the rest of the stream in the background.
func (p *proc) begin(st eventStream) error {
	p.st = st
	ev, ok := st.receive(p.c.cfg.RequestTimeout)
	if !ok {
		err := p.c.streamError(p.parent, p.op, st.wd, st.err())
		p.closeStream()
		return err
	}
	start := ev.GetStart()
	if start == nil || start.GetPid() == 0 {
		p.closeStream()
		return fmt.Errorf("%s: protocol error: first event is not a start event with a pid", p.op)
	}
	p.pid = start.GetPid()
	p.op = fmt.Sprintf("%s (pid %d)", p.op, p.pid)
	go p.consume()
	return nil
}

func (p *proc) closeStream() { p.closeOnce.Do(p.st.close) }

// consume dispatches output and waits for the end event.
func (p *proc) consume() {
	defer p.closeStream()
	var end *process.ProcessEvent_EndEvent
	for end == nil {
		ev, ok := p.st.receive(0)
		if !ok {
			break
		}
		switch e := ev.GetEvent().(type) {
		case *process.ProcessEvent_Data:
			p.data(e.Data)
		case *process.ProcessEvent_End:
			end = e.End
		}
	}
	switch {
	case end != nil:
		p.finish(end)
		close(p.done)
		// Read the end-stream frame that follows, so the connection can be reused; never wait long.
		for range 4 {
			if _, ok := p.st.receive(time.Second); !ok {
				break
			}
		}
		return
	case p.disconnected.Load():
		p.err = fmt.Errorf("%s: disconnected before the process ended: %w", p.op, context.Canceled)
	default:
		p.err = p.c.streamError(p.parent, p.op, p.st.wd, p.st.err())
	}
	close(p.done)
}

func (p *proc) data(d *process.ProcessEvent_DataEvent) {
	switch o := d.GetOutput().(type) {
	case *process.ProcessEvent_DataEvent_Stdout:
		p.stdout.write(o.Stdout)
		if p.out.Stdout != nil {
			p.out.Stdout(o.Stdout)
		}
	case *process.ProcessEvent_DataEvent_Stderr:
		p.stderr.write(o.Stderr)
		if p.out.Stderr != nil {
			p.out.Stderr(o.Stderr)
		}
	case *process.ProcessEvent_DataEvent_Pty:
		p.pty.Store(true)
		p.stdout.write(o.Pty)
		if p.out.PTY != nil {
			p.out.PTY(o.Pty)
		}
	}
}

func (p *proc) finish(end *process.ProcessEvent_EndEvent) {
	elapsed := time.Since(p.started)
	r := &sandbox.Result{
		PID:       p.pid,
		ExitCode:  int(end.GetExitCode()),
		Exited:    end.GetExited(),
		Status:    end.GetStatus(),
		Error:     end.GetError(),
		Stdout:    p.stdout.buf,
		Stderr:    p.stderr.buf,
		Truncated: p.stdout.truncated || p.stderr.truncated,
		Duration:  elapsed,
	}
	r.TimedOut = strings.HasPrefix(r.Error, TimeoutErrorPrefix) ||
		(p.timeout > 0 && !r.Exited && elapsed >= p.timeout && strings.Contains(r.Status, "killed"))
	p.res = r
	if r.ExitCode != 0 || (!r.Exited && r.Error != "") || r.TimedOut {
		p.err = &sandbox.ExitError{Result: r}
	}
}

// PID is the process id inside the sandbox.
func (p *proc) PID() uint32 { return p.pid }

// Wait waits for the end and returns the result; a non-zero exit also returns *sandbox.ExitError.
func (p *proc) Wait(ctx context.Context) (*sandbox.Result, error) {
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return nil, ctxError(fmt.Sprintf("wait for %s", p.op), ctx.Err())
	}
}

// Signal sends SIGTERM or SIGKILL.
func (p *proc) Signal(ctx context.Context, sig sandbox.Signal) error {
	op := fmt.Sprintf("signal %d to process %d", sig, p.pid)
	var s process.Signal
	switch sig {
	case sandbox.SIGTERM:
		s = process.Signal_SIGNAL_SIGTERM
	case sandbox.SIGKILL:
		s = process.Signal_SIGNAL_SIGKILL
	default:
		return fmt.Errorf("%s: %w: envd delivers only SIGTERM and SIGKILL", op, sandbox.ErrInvalid)
	}
	uctx, cancel := p.c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&process.SendSignalRequest{Process: pidSelector(p.pid), Signal: s})
	p.c.setUser(req.Header(), "")
	_, err := p.c.proc.SendSignal(uctx, req)
	return p.c.rpcError(ctx, op, err)
}

// Kill sends SIGKILL.
func (p *proc) Kill(ctx context.Context) error { return p.Signal(ctx, sandbox.SIGKILL) }

// SendStdin writes to the process's stdin, or to its terminal when it runs on a PTY (started with
// one, or seen writing PTY output).
func (p *proc) SendStdin(ctx context.Context, data []byte) error {
	op := fmt.Sprintf("send input to process %d", p.pid)
	in := &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: data}}
	if p.pty.Load() {
		in.Input = &process.ProcessInput_Pty{Pty: data}
	}
	uctx, cancel := p.c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&process.SendInputRequest{Process: pidSelector(p.pid), Input: in})
	p.c.setUser(req.Header(), "")
	_, err := p.c.proc.SendInput(uctx, req)
	return p.c.rpcError(ctx, op, err)
}

// CloseStdin closes the process's stdin.
func (p *proc) CloseStdin(ctx context.Context) error {
	op := fmt.Sprintf("close stdin of process %d", p.pid)
	uctx, cancel := p.c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&process.CloseStdinRequest{Process: pidSelector(p.pid)})
	p.c.setUser(req.Header(), "")
	_, err := p.c.proc.CloseStdin(uctx, req)
	return p.c.rpcError(ctx, op, err)
}

// Resize changes the terminal size of a PTY process.
func (p *proc) Resize(ctx context.Context, size sandbox.PTYSize) error {
	op := fmt.Sprintf("resize terminal of process %d", p.pid)
	if size.Cols == 0 || size.Rows == 0 {
		return fmt.Errorf("%s: %w: zero size", op, sandbox.ErrInvalid)
	}
	uctx, cancel := p.c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&process.UpdateRequest{
		Process: pidSelector(p.pid),
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: size.Cols, Rows: size.Rows}},
	})
	p.c.setUser(req.Header(), "")
	_, err := p.c.proc.Update(uctx, req)
	return p.c.rpcError(ctx, op, err)
}

// Disconnect stops receiving output; the process keeps running. Wait then fails unless the end had
// already arrived.
func (p *proc) Disconnect() {
	p.disconnected.Store(true)
	// Only cancel here: the consuming goroutine closes the stream it is reading.
	p.st.cancel()
}
