package tools

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox"
)

// bgProc is a background command started by run_commands with background: true.
type bgProc struct {
	proc    sandbox.Process
	command string
	cancel  context.CancelFunc

	mu          sync.Mutex
	stdout      *capture // output not yet read by command_output
	stderr      *capture
	bufBytes    int
	done        chan struct{}
	result      *sandbox.Result
	err         error
	outputTotal int64
}

func (p *bgProc) write(stderr bool, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outputTotal += int64(len(b))
	if stderr {
		p.stderr.Write(b)
	} else {
		p.stdout.Write(b)
	}
}

// take returns the unread output and starts a new window.
func (p *bgProc) take() (stdout, stderr *capture) {
	p.mu.Lock()
	defer p.mu.Unlock()
	stdout, stderr = p.stdout, p.stderr
	p.stdout, p.stderr = newCapture(p.bufBytes), newCapture(p.bufBytes)
	return stdout, stderr
}

func (p *bgProc) status() (running bool, text string, code *int) {
	select {
	case <-p.done:
	default:
		return true, "running", nil
	}
	r := p.result
	var ee *sandbox.ExitError
	if r == nil && errors.As(p.err, &ee) {
		r = ee.Result
	}
	switch {
	case r == nil && p.err != nil:
		return false, fmt.Sprintf("unknown: lost track of the command (%v)", p.err), nil
	case r == nil:
		return false, "ended", nil
	case !r.Exited && r.Status != "":
		c := r.ExitCode
		return false, fmt.Sprintf("terminated (%s)", r.Status), &c
	}
	c := r.ExitCode
	return false, fmt.Sprintf("exited with code %d", c), &c
}

func (s *Set) startBackground(ctx context.Context, command string) Result {
	s.mu.Lock()
	running := 0
	for _, p := range s.bg {
		select {
		case <-p.done:
		default:
			running++
		}
	}
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	if running >= s.cfg.MaxBackground {
		return errorf("Error: %d background commands are already running (the limit); stop one with kill_command first", running)
	}

	p := &bgProc{
		command:  command,
		bufBytes: s.cfg.BackgroundBufferBytes,
		stdout:   newCapture(s.cfg.BackgroundBufferBytes),
		stderr:   newCapture(s.cfg.BackgroundBufferBytes),
		done:     make(chan struct{}),
	}
	cmd := s.cmd(command)
	cmd.Tag = fmt.Sprintf("agent-bg-%d", seq)
	cmd.MaxOutput = 1 // the output is kept here, per read window
	cmd.Output = sandbox.Output{
		Stdout: func(b []byte) { p.write(false, b) },
		Stderr: func(b []byte) { p.write(true, b) },
	}
	// The process's output stream lives as long as the Set (until Close), not as long as this
	// call; the call's context bounds only the start.
	sctx, cancel := context.WithCancel(s.life)
	stop := context.AfterFunc(ctx, cancel)
	proc, err := s.sb.Start(sctx, cmd)
	if !stop() && err == nil {
		// ctx ended just as the start succeeded: the stream is already canceled.
		err = context.Cause(ctx)
	}
	if err != nil {
		cancel()
		return failure(ctx, "starting background command", err)
	}
	p.proc, p.cancel = proc, cancel
	go func() {
		defer close(p.done)
		res, err := proc.Wait(sctx)
		p.mu.Lock()
		p.result, p.err = res, err
		p.mu.Unlock()
	}()
	s.mu.Lock()
	s.bg[proc.PID()] = p
	s.mu.Unlock()
	return Result{
		Content: fmt.Sprintf("Started in the background with pid %d. Read its output with command_output "+
			"and stop it with kill_command.", proc.PID()),
		PID: proc.PID(),
	}
}

func (s *Set) lookup(raw string) (*bgProc, uint32, *Result) {
	var a pidArgs
	if err := decodeArgs(raw, &a, []string{"pid"}); err != nil {
		r := errorf("Error: %v", err)
		return nil, 0, &r
	}
	if a.PID == nil {
		r := errorf(`Error: missing required argument "pid"`)
		return nil, 0, &r
	}
	pid := uint32(*a.PID)
	s.mu.Lock()
	p := s.bg[pid]
	s.mu.Unlock()
	if p == nil {
		r := errorf("Error: no background command with pid %d (only commands started by run_commands "+
			"with background: true can be read or stopped)", pid)
		return nil, pid, &r
	}
	return p, pid, nil
}

func (s *Set) commandOutput(_ context.Context, raw string) Result {
	p, pid, bad := s.lookup(raw)
	if bad != nil {
		return *bad
	}
	p.mu.Lock()
	running, status, code := p.status()
	p.mu.Unlock()
	stdout, stderr := p.take()
	r := s.outputResult(fmt.Sprintf("pid %d: %s", pid, status), stdout, stderr, "(no new output)")
	r.ExitCode = code
	if running {
		r.ExitCode = nil
	}
	return r
}

func (s *Set) killCommand(ctx context.Context, raw string) Result {
	p, pid, bad := s.lookup(raw)
	if bad != nil {
		return *bad
	}
	select {
	case <-p.done:
		p.mu.Lock()
		_, status, code := p.status()
		p.mu.Unlock()
		return Result{Content: fmt.Sprintf("pid %d already ended: %s", pid, status), ExitCode: code}
	default:
	}
	if err := p.proc.Kill(ctx); err != nil {
		return failure(ctx, fmt.Sprintf("stopping pid %d", pid), err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-p.done:
		p.mu.Lock()
		_, status, code := p.status()
		p.mu.Unlock()
		return Result{Content: fmt.Sprintf("Stopped pid %d: %s", pid, status), ExitCode: code}
	case <-wctx.Done():
		if ctx.Err() != nil {
			return failure(ctx, fmt.Sprintf("stopping pid %d", pid), context.Cause(ctx))
		}
		return Result{Content: fmt.Sprintf("Sent SIGKILL to pid %d; it has not ended yet", pid)}
	}
}
