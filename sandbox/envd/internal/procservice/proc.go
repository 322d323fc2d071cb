package procservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/spec/process"
)

// proc is one process started by the service. Its lifetime is independent of any stream: it runs
// until it exits, its timeout kills it, or the service closes.
type proc struct {
	pid    uint32
	tag    *string
	config *process.ProcessConfig
	cmd    *exec.Cmd
	log    *slog.Logger

	out *outLog
	// readers copy the parent's ends of the output pipes (or the pty master) into out.
	readers []*outReader
	readWG  sync.WaitGroup
	// progress counts reads; busy counts readers inside out.write (possibly waiting for room).
	progress atomic.Int64
	busy     atomic.Int32

	inMu    sync.Mutex // serialises input writes
	stdinMu sync.Mutex // guards stdin; never held while writing, so closing never waits for a write
	stdin   *os.File   // write end of the stdin pipe; nil when stdin is /dev/null or closed
	pty     *os.File   // pty master; nil without a pty

	mu       sync.Mutex // guards exited and the kill decision
	exited   bool       // the process has exited (it may not be reaped yet)
	timedOut bool
	timeout  time.Duration
	timer    *time.Timer

	done chan struct{} // closed after end is set and out is closed
	end  *process.ProcessEvent_EndEvent
}

// signal sends sig to the process group while the process has not exited. After exit the group id
// may be reused by an unrelated process, so the signal is dropped.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	// The leader is alive or a zombie (not yet reaped), so its pid is still its group's id.
	if err := unix.Kill(-int(p.pid), sig); err != nil && err != unix.ESRCH {
		return fmt.Errorf("signal process group %d: %w", p.pid, err)
	}
	return nil
}

// expire kills a process that outlived its timeout.
func (p *proc) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	p.timedOut = true
	if err := unix.Kill(-int(p.pid), unix.SIGKILL); err != nil && err != unix.ESRCH {
		p.log.Warn("killing timed-out process", "err", err)
	}
}

// outReader is one output file of a process and the goroutine reading it.
type outReader struct {
	f    *os.File
	kind outKind
	// read counts bytes read from f; appended those of them handed to the log.
	read, appended atomic.Int64
	done           chan struct{}
}

func newOutReader(f *os.File, kind outKind) *outReader {
	return &outReader{f: f, kind: kind, done: make(chan struct{})}
}

// read copies one output file into the log until EOF (or EIO, when a pty's last slave closes).
func (p *proc) read(r *outReader) {
	defer p.readWG.Done()
	defer close(r.done)
	if r.kind != outPTY {
		// The pty master is closed by wait, once the process has exited: closing it earlier would
		// hang the terminal up under a live process.
		defer r.f.Close()
	}
	buf := make([]byte, maxChunk)
	for {
		n, err := r.f.Read(buf)
		if n > 0 {
			r.read.Add(int64(n))
			p.busy.Add(1)
			p.progress.Add(1)
			p.out.write(r.kind, buf[:n])
			p.progress.Add(1)
			p.busy.Add(-1)
			r.appended.Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

// pending is how many bytes wait to be read from the reader's file (TIOCINQ is FIONREAD, which
// pipes and pty masters answer).
func (r *outReader) pending() int64 {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || ierr != nil {
		return 0
	}
	return int64(n)
}

// drainLimits bound how long a process's end waits for its output after it exited: output pipes
// may be held open by background children (`cmd &`), which must not hold the end event forever.
type drainLimits struct {
	idle time.Duration // give up after this long without output
	max  time.Duration // give up after this long in any case, unless a stream is being fed
}

// wait waits for the process to exit, then drains its output and publishes the end event.
func (p *proc) wait(dl drainLimits, unlist, onEnd func()) {
	defer onEnd()
	// Wait for exit without reaping, so that signals sent until exited is set still reach the
	// right process group.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, int(p.pid), &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			if err != nil {
				p.log.Warn("waitid", "err", err)
			}
			break
		}
	}
	p.mu.Lock()
	p.exited = true
	timedOut := p.timedOut
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	waitErr := p.cmd.Wait()

	p.stdinMu.Lock()
	if p.stdin != nil {
		// A concurrent input write fails with os.ErrClosed.
		p.stdin.Close()
		p.stdin = nil
	}
	p.stdinMu.Unlock()

	// Output the process wrote before it exited is delivered whatever it takes (attached streams
	// apply back-pressure); what comes later is from background children and waits within dl.
	targets := make([]int64, len(p.readers))
	for i, r := range p.readers {
		// read first: bytes read in between then count in neither, never in both (which could make
		// the target unreachable).
		targets[i] = r.read.Load() + r.pending()
	}
	readersDone := make(chan struct{})
	go func() { p.readWG.Wait(); close(readersDone) }()
	p.deliverWritten(readersDone, targets)
	if !p.drain(readersDone, dl) {
		p.log.Debug("output still held open after exit; not waiting for it")
	}

	end := endEvent(p.cmd.ProcessState, waitErr, timedOut, p.timeout)
	// Unlisted before the end is published: a client that saw the end and asks again must get
	// not_found, not a second end.
	unlist()
	p.mu.Lock()
	p.end = end
	p.mu.Unlock()
	p.out.close()
	if p.pty != nil {
		// Closing the master hangs the terminal up (for background jobs still on it) and ends the
		// reader; a concurrent input write fails with os.ErrClosed.
		p.pty.Close()
	}
	close(p.done)
	_, dropped := p.out.stats()
	p.log.Info("process ended", "status", end.GetStatus(), "dropped_output_bytes", dropped)
}

// deliverWritten waits until each reader has handed its target byte count to the log, or ended.
func (p *proc) deliverWritten(readersDone <-chan struct{}, targets []int64) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		reached := true
		for i, r := range p.readers {
			select {
			case <-r.done:
				continue
			default:
			}
			if r.appended.Load() < targets[i] {
				reached = false
			}
		}
		if reached {
			return
		}
		select {
		case <-readersDone:
			return
		case <-tick.C:
		}
	}
}

// drain waits for the readers to reach EOF, within dl. It reports whether they did.
func (p *proc) drain(readersDone <-chan struct{}, dl drainLimits) bool {
	deadline := time.NewTimer(dl.max)
	defer deadline.Stop()
	tick := time.NewTicker(dl.idle)
	defer tick.Stop()
	last := p.progress.Load()
	for {
		select {
		case <-readersDone:
			return true
		case <-deadline.C:
			return false
		case <-tick.C:
			now := p.progress.Load()
			if now == last && p.busy.Load() == 0 {
				return false
			}
			last = now
		}
	}
}

// endEvent describes how a process ended, as Go's ProcessState does.
func endEvent(st *os.ProcessState, waitErr error, timedOut bool, timeout time.Duration) *process.ProcessEvent_EndEvent {
	end := &process.ProcessEvent_EndEvent{}
	if st != nil {
		end.ExitCode = int32(st.ExitCode())
		end.Exited = st.Exited()
		end.Status = st.String()
	}
	var msg string
	switch {
	case timedOut:
		msg = fmt.Sprintf("process timed out after %s", timeout)
	case st != nil && !st.Success():
		msg = st.String()
	case waitErr != nil:
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) {
			msg = waitErr.Error()
		}
	}
	if msg != "" {
		end.Error = &msg
	}
	return end
}

// writeInput writes input to the process's stdin pipe or pty master, waiting at most until ctx ends
// or maxWait passes: a process that does not read its input must not hold the caller forever.
func (p *proc) writeInput(ctx context.Context, toPTY bool, data []byte, maxWait time.Duration) error {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	var f *os.File
	if toPTY {
		if p.pty == nil {
			return errNoPTY
		}
		f = p.pty
	} else {
		if p.pty != nil {
			return errHasPTY
		}
		p.stdinMu.Lock()
		f = p.stdin
		p.stdinMu.Unlock()
		if f == nil {
			return errStdinClosed
		}
	}
	select {
	case <-p.done:
		return errEnded
	default:
	}
	if len(data) == 0 {
		return nil
	}
	deadline := time.Now().Add(maxWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := f.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("set input deadline: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Now()) })
	_, err := f.Write(data)
	stop()
	_ = f.SetWriteDeadline(time.Time{})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errInputTimeout
	case errors.Is(err, unix.EPIPE), errors.Is(err, unix.EIO), errors.Is(err, os.ErrClosed):
		return errStdinClosed
	default:
		return fmt.Errorf("write input of process %d: %w", p.pid, err)
	}
}

// closeStdin closes the stdin pipe, so the process reads EOF.
func (p *proc) closeStdin() error {
	if p.pty != nil {
		return errHasPTY
	}
	p.stdinMu.Lock()
	f := p.stdin
	p.stdin = nil
	p.stdinMu.Unlock()
	if f == nil {
		return nil
	}
	// A concurrent input write fails with os.ErrClosed.
	if err := f.Close(); err != nil {
		return fmt.Errorf("close stdin of process %d: %w", p.pid, err)
	}
	return nil
}

// resize sets the pty's window size.
func (p *proc) resize(cols, rows uint16) error {
	if p.pty == nil {
		return errNoPTY
	}
	select {
	case <-p.done:
		return errEnded
	default:
	}
	return setWinsize(p.pty, cols, rows)
}

func setWinsize(f *os.File, cols, rows uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	if ierr != nil {
		return fmt.Errorf("resize pty: %w", ierr)
	}
	return nil
}

// Errors of input and control operations; the service maps them to Connect codes.
var (
	errNoPTY        = errors.New("process has no pty")
	errHasPTY       = errors.New("process has a pty: write input to the pty (Ctrl-D ends it)")
	errStdinClosed  = errors.New("stdin of the process is not open")
	errEnded        = errors.New("process has ended")
	errInputTimeout = errors.New("process did not read its input in time")
)
