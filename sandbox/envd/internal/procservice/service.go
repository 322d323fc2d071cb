// Package procservice implements the envd process.Process Connect service: it starts commands as the
// requesting user, streams their output, and keeps them running independently of any stream.
//
// Every process runs on the service's own lifetime, not a request's: closing a Start stream never
// kills it, and Connect re-attaches to it by pid or tag. Its output goes through a bounded buffer
// per process (see outLog): attached streams get back-pressure, detached processes a ring.
package procservice

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/rpcmeta"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/process"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

// Defaults for Config's optional fields.
const (
	DefaultMaxBufferedOutput = 4 << 20
	DefaultKeepalive         = 90 * time.Second
	DefaultDrainIdle         = time.Second
	DefaultDrainMax          = time.Minute
	DefaultInputWait         = time.Minute
	DefaultCloseWait         = 10 * time.Second
	// maxKeepalive bounds the Keepalive-Ping-Interval a client may ask for.
	maxKeepalive = 24 * time.Hour
)

// Config configures the service.
type Config struct {
	Root  *fsroot.Root
	Users *users.DB
	// Env returns the sandbox-wide environment, applied after the base env and before the request's.
	Env func() map[string]string
	// MaxBufferedOutput bounds the output held per process while no stream reads it, and how far
	// attached streams may lag before the process is made to wait.
	MaxBufferedOutput int
	Logger            *slog.Logger

	// DrainIdle and DrainMax bound how long a process's end event waits for output after the
	// process exited, when background children keep its output open (defaults 1 s and 1 min).
	DrainIdle, DrainMax time.Duration
	// InputWait bounds one input write to a process that does not read (default 1 min).
	InputWait time.Duration
	// CloseWait bounds how long Close waits for the killed processes' output to be delivered
	// before dropping it (default 10 s).
	CloseWait time.Duration
}

// Service implements processconnect.ProcessHandler.
type Service struct {
	processconnect.UnimplementedProcessHandler
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	procs  map[uint32]*proc   // processes whose end has not been published
	active map[*proc]struct{} // processes whose goroutines still run (readers may outlive the end)
	closed bool
	wg     sync.WaitGroup // one per process, done when its end is published
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.MaxBufferedOutput <= 0 {
		cfg.MaxBufferedOutput = DefaultMaxBufferedOutput
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainIdle <= 0 {
		cfg.DrainIdle = DefaultDrainIdle
	}
	if cfg.DrainMax <= 0 {
		cfg.DrainMax = DefaultDrainMax
	}
	if cfg.InputWait <= 0 {
		cfg.InputWait = DefaultInputWait
	}
	if cfg.CloseWait <= 0 {
		cfg.CloseWait = DefaultCloseWait
	}
	return &Service{
		cfg:    cfg,
		log:    cfg.Logger.With("service", "process"),
		procs:  map[uint32]*proc{},
		active: map[*proc]struct{}{},
	}
}

// Close kills every process the service started (each whole process group), waits for them to be
// reaped, and stops reading output that background children still hold open. Start fails after it.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if err := p.signal(unix.SIGKILL); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	if !waitFor(done, s.cfg.CloseWait) {
		// Output still owed to a stream that does not read: give up on it, so the ends can be
		// published.
		s.stopOutput(true)
		if !waitFor(done, time.Second) {
			errs = append(errs, fmt.Errorf("processes not reaped %s after SIGKILL", s.cfg.CloseWait))
		}
	}
	s.stopOutput(false)
	return errors.Join(errs...)
}

// stopOutput closes the output files of every process whose readers still run (background
// children may hold them open), and with logs also their output logs.
func (s *Service) stopOutput(logs bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.active {
		if logs {
			p.out.close()
		}
		for _, r := range p.readers {
			r.f.Close()
		}
	}
}

func waitFor(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Start starts a process and streams its events: start, output, keepalives, end.
func (s *Service) Start(ctx context.Context, req *connect.Request[process.StartRequest], stream *connect.ServerStream[process.StartResponse]) error {
	u, ok := users.FromContext(ctx)
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("no user for the request"))
	}
	timeout, hasTimeout := rpcmeta.ProcessTimeout(ctx)
	p, sub, err := s.start(u, req.Msg, timeout, hasTimeout)
	if err != nil {
		return err
	}
	send := func(ev *process.ProcessEvent) error { return stream.Send(&process.StartResponse{Event: ev}) }
	return s.follow(ctx, p, sub, keepaliveInterval(req.Header()), send)
}

// start prepares and starts a process, registering a subscriber before any output can arrive.
func (s *Service) start(u users.User, msg *process.StartRequest, timeout time.Duration, hasTimeout bool) (*proc, *subscriber, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
	}
	pr, err := s.prepare(u, msg)
	if err != nil {
		return nil, nil, err
	}
	p := &proc{
		tag:    msg.Tag,
		config: msg.GetProcess(),
		cmd:    pr.cmd,
		out:    newOutLog(s.cfg.MaxBufferedOutput),
		stdin:  pr.stdin,
		pty:    pr.pty,
		done:   make(chan struct{}),
	}
	if pr.pty != nil {
		p.readers = []*outReader{newOutReader(pr.pty, outPTY)}
	} else {
		p.readers = []*outReader{newOutReader(pr.stdout, outStdout), newOutReader(pr.stderr, outStderr)}
	}
	sub, _ := p.out.subscribe()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		pr.closeAll()
		return nil, nil, connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
	}
	if msg.Tag != nil {
		for _, q := range s.procs {
			if q.tag != nil && *q.tag == *msg.Tag {
				s.mu.Unlock()
				pr.closeAll()
				return nil, nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("a process with tag %q is running (pid %d)", *msg.Tag, q.pid))
			}
		}
	}
	// Started under mu so that a concurrent Start cannot take the same tag.
	err = pr.cmd.Start()
	if err != nil {
		s.mu.Unlock()
		pr.closeAll()
		return nil, nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("error starting process '%s': %w", commandLine(msg.GetProcess()), err))
	}
	p.pid = uint32(pr.cmd.Process.Pid)
	p.log = s.log.With("pid", p.pid)
	s.procs[p.pid] = p
	s.active[p] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	pr.closeChild()

	if hasTimeout && timeout > 0 {
		p.mu.Lock()
		p.timeout = timeout
		p.timer = time.AfterFunc(timeout, p.expire)
		p.mu.Unlock()
	}
	p.readWG.Add(len(p.readers))
	for _, r := range p.readers {
		go p.read(r)
	}
	p.log.Info("process started", "cmd", msg.GetProcess().GetCmd(), "user", u.Name, "pty", pr.pty != nil, "timeout", timeout)

	dl := drainLimits{idle: s.cfg.DrainIdle, max: s.cfg.DrainMax}
	go p.wait(dl, func() {
		s.mu.Lock()
		if s.procs[p.pid] == p {
			delete(s.procs, p.pid)
		}
		s.mu.Unlock()
	}, func() {
		s.wg.Done()
		go func() {
			p.readWG.Wait()
			s.mu.Lock()
			delete(s.active, p)
			s.mu.Unlock()
		}()
	})
	return p, sub, nil
}

// Connect re-attaches to a running process: start, then output from now on, then end.
func (s *Service) Connect(ctx context.Context, req *connect.Request[process.ConnectRequest], stream *connect.ServerStream[process.ConnectResponse]) error {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return err
	}
	sub, dropped := p.out.subscribe()
	if dropped > 0 {
		p.log.Info("output was dropped while no stream was attached", "bytes", dropped)
	}
	send := func(ev *process.ProcessEvent) error { return stream.Send(&process.ConnectResponse{Event: ev}) }
	return s.follow(ctx, p, sub, keepaliveInterval(req.Header()), send)
}

// follow streams a process's events to one client: start, output as it comes, keepalives on
// silence, then exactly one end. The client going away detaches the subscriber and nothing else.
func (s *Service) follow(ctx context.Context, p *proc, sub *subscriber, keepalive time.Duration, send func(*process.ProcessEvent) error) error {
	defer p.out.unsubscribe(sub)
	if err := send(&process.ProcessEvent{Event: &process.ProcessEvent_Start{Start: &process.ProcessEvent_StartEvent{Pid: p.pid}}}); err != nil {
		return err
	}
	timer := time.NewTimer(keepalive)
	defer timer.Stop()
	for {
		c, ok, eof := p.out.take(sub)
		if ok {
			if err := send(dataEvent(c)); err != nil {
				return err
			}
			timer.Reset(keepalive)
			continue
		}
		if eof {
			break
		}
		select {
		case <-sub.wake:
		case <-timer.C:
			if err := send(&process.ProcessEvent{Event: &process.ProcessEvent_Keepalive{Keepalive: &process.ProcessEvent_KeepAlive{}}}); err != nil {
				return err
			}
			timer.Reset(keepalive)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The log closes only after the end is set.
	<-p.done
	return send(&process.ProcessEvent{Event: &process.ProcessEvent_End{End: p.end}})
}

func dataEvent(c chunk) *process.ProcessEvent {
	d := &process.ProcessEvent_DataEvent{}
	switch c.kind {
	case outStdout:
		d.Output = &process.ProcessEvent_DataEvent_Stdout{Stdout: c.data}
	case outStderr:
		d.Output = &process.ProcessEvent_DataEvent_Stderr{Stderr: c.data}
	default:
		d.Output = &process.ProcessEvent_DataEvent_Pty{Pty: c.data}
	}
	return &process.ProcessEvent{Event: &process.ProcessEvent_Data{Data: d}}
}

// keepaliveInterval reads Keepalive-Ping-Interval (seconds); absent or malformed means the default.
func keepaliveInterval(h interface{ Get(string) string }) time.Duration {
	v := h.Get("Keepalive-Ping-Interval")
	if v == "" {
		return DefaultKeepalive
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return DefaultKeepalive
	}
	return min(time.Duration(n)*time.Second, maxKeepalive)
}

// find resolves a selector to a process whose end has not been published.
func (s *Service) find(sel *process.ProcessSelector) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v := sel.GetSelector().(type) {
	case *process.ProcessSelector_Pid:
		if p, ok := s.procs[v.Pid]; ok {
			return p, nil
		}
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with pid %d not found", v.Pid))
	case *process.ProcessSelector_Tag:
		for _, p := range s.procs {
			if p.tag != nil && *p.tag == v.Tag {
				return p, nil
			}
		}
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with tag %q not found", v.Tag))
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("process selector (pid or tag) is required"))
	}
}

// List returns the running processes.
func (s *Service) List(ctx context.Context, req *connect.Request[process.ListRequest]) (*connect.Response[process.ListResponse], error) {
	s.mu.Lock()
	infos := make([]*process.ProcessInfo, 0, len(s.procs))
	for _, p := range s.procs {
		infos = append(infos, &process.ProcessInfo{Config: p.config, Pid: p.pid, Tag: p.tag})
	}
	s.mu.Unlock()
	slices.SortFunc(infos, func(a, b *process.ProcessInfo) int { return cmp.Compare(a.Pid, b.Pid) })
	return connect.NewResponse(&process.ListResponse{Processes: infos}), nil
}

// SendInput writes to a process's stdin or pty.
func (s *Service) SendInput(ctx context.Context, req *connect.Request[process.SendInputRequest]) (*connect.Response[process.SendInputResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := s.input(ctx, p, req.Msg.GetInput()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&process.SendInputResponse{}), nil
}

func (s *Service) input(ctx context.Context, p *proc, in *process.ProcessInput) error {
	var err error
	switch v := in.GetInput().(type) {
	case *process.ProcessInput_Stdin:
		err = p.writeInput(ctx, false, v.Stdin, s.cfg.InputWait)
	case *process.ProcessInput_Pty:
		err = p.writeInput(ctx, true, v.Pty, s.cfg.InputWait)
	default:
		return connect.NewError(connect.CodeInvalidArgument, errors.New("input (stdin or pty) is required"))
	}
	return inputError(err)
}

func inputError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoPTY), errors.Is(err, errHasPTY), errors.Is(err, errStdinClosed), errors.Is(err, errEnded):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, errInputTimeout), errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	default:
		return connect.NewError(connect.CodeInternal, err)
	}
}

// StreamInput takes a start event naming the process, then input events, until the client ends.
func (s *Service) StreamInput(ctx context.Context, stream *connect.ClientStream[process.StreamInputRequest]) (*connect.Response[process.StreamInputResponse], error) {
	var p *proc
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *process.StreamInputRequest_Start:
			if p != nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("start event sent twice"))
			}
			var err error
			if p, err = s.find(ev.Start.GetProcess()); err != nil {
				return nil, err
			}
		case *process.StreamInputRequest_Data:
			if p == nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("data event before the start event"))
			}
			if err := s.input(ctx, p, ev.Data.GetInput()); err != nil {
				return nil, err
			}
		case *process.StreamInputRequest_Keepalive:
		default:
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("empty stream input event"))
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&process.StreamInputResponse{}), nil
}

// CloseStdin closes a process's stdin pipe.
func (s *Service) CloseStdin(ctx context.Context, req *connect.Request[process.CloseStdinRequest]) (*connect.Response[process.CloseStdinResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := p.closeStdin(); err != nil {
		return nil, inputError(err)
	}
	return connect.NewResponse(&process.CloseStdinResponse{}), nil
}

// SendSignal sends SIGTERM or SIGKILL to a process's process group.
func (s *Service) SendSignal(ctx context.Context, req *connect.Request[process.SendSignalRequest]) (*connect.Response[process.SendSignalResponse], error) {
	var sig syscall.Signal
	switch req.Msg.GetSignal() {
	case process.Signal_SIGNAL_SIGKILL:
		sig = unix.SIGKILL
	case process.Signal_SIGNAL_SIGTERM:
		sig = unix.SIGTERM
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unsupported signal %v", req.Msg.GetSignal()))
	}
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := p.signal(sig); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&process.SendSignalResponse{}), nil
}

// Update resizes a process's pty.
func (s *Service) Update(ctx context.Context, req *connect.Request[process.UpdateRequest]) (*connect.Response[process.UpdateResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if req.Msg.Pty != nil {
		cols, rows := req.Msg.GetPty().GetSize().GetCols(), req.Msg.GetPty().GetSize().GetRows()
		if cols > 0xffff || rows > 0xffff {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("pty size %dx%d out of range", cols, rows))
		}
		if err := p.resize(uint16(cols), uint16(rows)); err != nil {
			if errors.Is(err, errNoPTY) || errors.Is(err, errEnded) {
				return nil, connect.NewError(connect.CodeFailedPrecondition, err)
			}
			return nil, connect.NewError(connect.CodeInternal, err)
		}
	}
	return connect.NewResponse(&process.UpdateResponse{}), nil
}
