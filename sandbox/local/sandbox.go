package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local/cgroups"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
)

// Sandbox is a local sandbox. It implements sandbox.Sandbox (files and commands through envd) and
// adds what only a local backend knows: limit counters, typed failures, and Exec through the OCI
// runtime.
type Sandbox struct {
	sandbox.Files
	sandbox.Commands

	b     *Backend
	p     paths
	alive *lockFile // held while this process owns the sandbox

	mu     sync.Mutex
	rec    Record
	dp     DataPlane
	timer  *time.Timer
	killed bool
	reason error // why the sandbox ended, when it ended by a limit
	base   cgroups.Stats
	token  string // envd's access token (Options.AccessToken)

	timings []Timing
}

// Timing is the duration of one step of a sandbox's creation.
type Timing struct {
	Step     string
	Duration time.Duration
}

// Timings returns how long each step of the sandbox's creation took.
func (s *Sandbox) Timings() []Timing { return s.timings }

var _ sandbox.Sandbox = (*Sandbox)(nil)

func (b *Backend) newSandbox(rec *Record, alive *lockFile) *Sandbox {
	s := &Sandbox{b: b, p: b.paths(rec.ID), alive: alive, rec: *rec}
	s.Files, s.Commands = noDataPlane{}, noDataPlane{}
	return s
}

func ociCreate(p paths, listener *os.File, logf *os.File) ociruntime.CreateOpts {
	o := ociruntime.CreateOpts{Bundle: p.dir, PidFile: p.pidFile(), Output: logf}
	if listener != nil {
		o.ExtraFiles = []*os.File{listener}
	}
	return o
}

// own registers s as owned by this process and arms its lifetime timer.
func (b *Backend) own(s *Sandbox) {
	b.mu.Lock()
	b.owned[s.rec.ID] = s
	b.mu.Unlock()
	s.mu.Lock()
	d := time.Until(s.rec.Expires)
	s.timer = time.AfterFunc(d, func() { s.expire() })
	s.mu.Unlock()
}

func (s *Sandbox) expire() {
	s.mu.Lock()
	if s.reason == nil {
		s.reason = &LimitError{Kind: sandbox.ErrExpired, Detail: fmt.Sprintf("lifetime %s ran out", s.rec.Limits.Lifetime)}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Kill(ctx); err != nil {
		s.b.log.Error("killing expired sandbox", "id", s.rec.ID, "err", err)
	}
}

// connect builds the envd client when the backend has one.
func (s *Sandbox) connect(ctx context.Context) error {
	if s.b.cfg.Connect == nil {
		return nil
	}
	dp, err := s.b.cfg.Connect(ctx, s.ConnectInfo())
	if err != nil {
		return fmt.Errorf("connecting to sandbox %s: %w", s.rec.ID, err)
	}
	s.mu.Lock()
	s.dp = dp
	s.Files, s.Commands = dp, dp
	s.mu.Unlock()
	return nil
}

// ConnectInfo tells an envd client how to reach this sandbox.
func (s *Sandbox) ConnectInfo() ConnectInfo {
	sock, via := s.p.socket(), s.rec.Runtime == ociruntime.Runsc
	if via {
		sock = filepath.Join(s.p.envdSockDir(), "envd.sock")
	}
	p := s.p
	return ConnectInfo{ID: s.rec.ID, SocketPath: sock, AccessToken: s.token, Dial: func(ctx context.Context) (net.Conn, error) {
		c, err := dialEnvd(ctx, p, via)
		if err != nil {
			return nil, fmt.Errorf("dialing sandbox envd: %w (%w)", err, sandbox.ErrGone)
		}
		return c, nil
	}}
}

// ID implements sandbox.Sandbox.
func (s *Sandbox) ID() string { return s.rec.ID }

// AccessToken is the token the sandbox's envd requires (Options.AccessToken, or the generated
// one), or "". Only the process that created the sandbox knows it.
func (s *Sandbox) AccessToken() string { return s.token }

// Record returns the sandbox's recorded state.
func (s *Sandbox) Record() Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec
}

// Stats reads the sandbox's cgroup counters.
func (s *Sandbox) Stats() cgroups.Stats { return s.b.cg.Stats(s.rec.CgroupsPath) }

// DiskUsage returns the bytes used and the size of the sandbox's disk (its overlay upper layer).
func (s *Sandbox) DiskUsage() (used, size int64, err error) {
	var st syscallStatfs
	if err := statfs(s.p.disk(), &st); err != nil {
		return 0, 0, fmt.Errorf("reading sandbox disk usage: %w", err)
	}
	size = int64(st.Blocks) * st.Bsize
	used = size - int64(st.Bavail)*st.Bsize
	return used, size, nil
}

// Failure tells why the sandbox is failing or failed, as a typed error: ErrExpired when its lifetime
// ran out, ErrOOM when the memory limit killed a process, ErrNoSpace when its disk is full,
// ErrPidsLimit when forks were refused, ErrGone when its init died. nil when nothing went wrong.
// Counters are compared with the values when the sandbox was claimed.
func (s *Sandbox) Failure() error {
	s.mu.Lock()
	reason, killed, base := s.reason, s.killed, s.base
	s.mu.Unlock()
	if reason != nil {
		return reason
	}
	if killed {
		return fmt.Errorf("sandbox %s was killed: %w", s.rec.ID, sandbox.ErrGone)
	}
	st := s.Stats()
	if n := st.OOMKills - base.OOMKills; n > 0 {
		return &LimitError{Kind: sandbox.ErrOOM, Detail: fmt.Sprintf("%d process(es) killed at the %d-byte memory limit", n, s.rec.Limits.MemoryBytes)}
	}
	// ext4 keeps no ENOSPC counter: a disk with less than 1% (at least 4 MiB) left is full for any
	// practical write.
	if used, size, err := s.DiskUsage(); err == nil && size > 0 && size-used < max(4<<20, size/100) {
		return &LimitError{Kind: sandbox.ErrNoSpace, Detail: fmt.Sprintf("disk full: %d of %d bytes used", used, size)}
	}
	if n := st.PidsLimitHits - base.PidsLimitHits; n > 0 {
		return &LimitError{Kind: sandbox.ErrPidsLimit, Detail: fmt.Sprintf("%d fork(s) refused at the %d-process limit", n, s.rec.Limits.Pids)}
	}
	if _, err := os.Stat(s.p.state()); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.rec.ID, sandbox.ErrGone)
	}
	if rt, err := s.b.runtime(s.rec.Runtime); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if st, err := rt.State(ctx, s.rec.ID); err == nil && st.Status != "running" && st.Status != "paused" {
			return withLog(fmt.Errorf("sandbox %s: its init (envd) is %s: %w", s.rec.ID, st.Status, sandbox.ErrGone), s.p.log())
		}
	}
	return nil
}

// ExecOpts describe a command run through the OCI runtime.
type ExecOpts struct {
	Args []string
	// UID/GID inside; default the template's default user (1000) when User is "", root when "root".
	User   string
	Env    []string
	Cwd    string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
}

// Exec runs a command in the sandbox through the OCI runtime (`runc exec`): an administrative path
// that needs nothing inside the sandbox but its init. The process is confined exactly like the
// init (namespaces, seccomp, capabilities, cgroup). It returns the exit code.
func (s *Sandbox) Exec(ctx context.Context, o ExecOpts) (int, error) {
	cmd, err := s.ExecCommand(ctx, o)
	if err != nil {
		return -1, err
	}
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("exec in sandbox %s: %w", s.rec.ID, err)
	}
	return 0, nil
}

// ExecCommand returns the exec.Cmd Exec would run, for callers that manage its stdio themselves.
func (s *Sandbox) ExecCommand(ctx context.Context, o ExecOpts) (*exec.Cmd, error) {
	rt, err := s.b.runtime(s.rec.Runtime)
	if err != nil {
		return nil, err
	}
	uid, home := 1000, "/home/user"
	if o.User == "root" || (o.User == "" && s.rec.DefaultUser == "root") {
		uid, home = 0, "/root"
	} else if o.User != "" && o.User != "user" {
		return nil, fmt.Errorf("exec: user %q: only root and user are known: %w", o.User, sandbox.ErrInvalid)
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = home
	}
	env := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home,
		"LANG=C.UTF-8", "TERM=xterm", "USER=" + map[int]string{0: "root", 1000: "user"}[uid]}, o.Env...)
	cmd := rt.ExecCommand(ctx, s.rec.ID, ociruntime.ExecOpts{Args: o.Args, Env: env, Cwd: cwd, UID: uid, GID: uid, TTY: o.TTY})
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	return cmd, nil
}

// Output runs argv as the given user ("" for the default user) and returns its combined output (bounded to 1 MiB)
// and exit code. A convenience for tests and diagnostics.
func (s *Sandbox) Output(ctx context.Context, user string, argv ...string) (string, int, error) {
	var buf boundedBuffer
	buf.max = 1 << 20
	code, err := s.Exec(ctx, ExecOpts{Args: argv, User: user, Stdout: &buf, Stderr: &buf})
	return buf.String(), code, err
}

type boundedBuffer struct {
	mu  sync.Mutex
	b   strings.Builder
	max int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - w.b.Len(); room > 0 {
		if len(p) > room {
			w.b.Write(p[:room])
		} else {
			w.b.Write(p)
		}
	}
	return len(p), nil
}

func (w *boundedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Close implements sandbox.Sandbox: it releases the envd connection and leaves the sandbox running
// (an owned sandbox stays owned by the backend until Kill, expiry or Backend.Close).
func (s *Sandbox) Close() error {
	s.mu.Lock()
	dp := s.dp
	s.mu.Unlock()
	if dp != nil {
		return dp.Close()
	}
	return nil
}

// Kill implements sandbox.Sandbox: it destroys the sandbox and everything it holds. Killing a gone
// sandbox is not an error.
func (s *Sandbox) Kill(ctx context.Context) error {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.killed = true
	dp := s.dp
	s.mu.Unlock()
	if dp != nil {
		_ = dp.Close()
	}
	s.b.mu.Lock()
	if s.b.owned[s.rec.ID] == s {
		delete(s.b.owned, s.rec.ID)
	}
	s.b.mu.Unlock()
	// Our own hold would make GC in other processes skip it; we are destroying it anyway.
	s.mu.Lock()
	alive := s.alive
	s.alive = nil
	s.mu.Unlock()
	defer alive.Close()
	return s.b.destroyByID(ctx, s.rec.ID)
}

// Detach gives up this process's ownership and returns the open lock that marks the sandbox as
// owned, to hand to another process (a watchdog) that keeps it alive and enforces its lifetime.
// The caller must close the returned file once handed over.
func (s *Sandbox) Detach() *os.File {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	alive := s.alive
	s.alive = nil
	s.mu.Unlock()
	s.b.mu.Lock()
	delete(s.b.owned, s.rec.ID)
	s.b.mu.Unlock()
	if alive == nil {
		return nil
	}
	f := alive.f
	alive.f = nil
	return f
}

// noDataPlane answers file and command calls when no envd client is configured.
type noDataPlane struct{}

func (noDataPlane) Open(context.Context, string) (io.ReadCloser, error) { return nil, ErrNoDataPlane }
func (noDataPlane) WriteFile(context.Context, string, io.Reader) error  { return ErrNoDataPlane }
func (noDataPlane) WriteFiles(context.Context, []sandbox.File) error    { return ErrNoDataPlane }
func (noDataPlane) List(context.Context, string, int) ([]sandbox.Entry, error) {
	return nil, ErrNoDataPlane
}
func (noDataPlane) Stat(context.Context, string) (sandbox.Entry, error) {
	return sandbox.Entry{}, ErrNoDataPlane
}
func (noDataPlane) MakeDir(context.Context, string) error      { return ErrNoDataPlane }
func (noDataPlane) Move(context.Context, string, string) error { return ErrNoDataPlane }
func (noDataPlane) Remove(context.Context, string) error       { return ErrNoDataPlane }
func (noDataPlane) Watch(context.Context, string, bool) (sandbox.Watcher, error) {
	return nil, ErrNoDataPlane
}
func (noDataPlane) Run(context.Context, sandbox.Cmd) (*sandbox.Result, error) {
	return nil, ErrNoDataPlane
}
func (noDataPlane) Start(context.Context, sandbox.Cmd) (sandbox.Process, error) {
	return nil, ErrNoDataPlane
}
func (noDataPlane) Connect(context.Context, uint32, string, sandbox.Output) (sandbox.Process, error) {
	return nil, ErrNoDataPlane
}
func (noDataPlane) Processes(context.Context) ([]sandbox.ProcessInfo, error) {
	return nil, ErrNoDataPlane
}
