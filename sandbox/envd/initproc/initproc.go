// Package initproc does the duties of PID 1 for `agent envd` inside a sandbox.
//
// As PID 1, envd does not serve requests itself. It re-executes its own binary as its only direct
// child, the server, handing it the listening socket, and then only: reaps every zombie of the
// sandbox (orphans are reparented to PID 1), forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2
// to the server, restarts the server with backoff if it dies, and exits only once it was asked to
// stop and the server has exited. Keeping init this small means a bug in the server cannot take the
// sandbox down, and the server can use os/exec normally: its children are its own, and nothing
// else reaps them.
package initproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ChildEnv marks the server child: its value is the descriptor number of the inherited listener.
const ChildEnv = "AGENT_ENVD_INIT_LISTEN_FD"

// childListenFD is where the listener lands in the server child (after stdin, stdout, stderr).
const childListenFD = 3

// Defaults of Config's optional fields.
const (
	DefaultStopTimeout = 15 * time.Second
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	// stableAfter is how long a server must run before a crash restarts it without delay again.
	stableAfter = 10 * time.Second
	// reapInterval is a safety net: SIGCHLD already triggers reaping, but a missed wake-up must not
	// leave zombies behind for long.
	reapInterval = 5 * time.Second
)

// IsInit reports whether this process must act as init: it is PID 1 and not the server child.
func IsInit() bool { return os.Getpid() == 1 && os.Getenv(ChildEnv) == "" }

// ChildListenFD reports whether this process is a server child started by init and, if so, the
// descriptor of the listening socket it inherited. It clears the marker so that nothing started
// later inherits it.
func ChildListenFD() (int, bool) {
	v, ok := os.LookupEnv(ChildEnv)
	if !ok {
		return 0, false
	}
	os.Unsetenv(ChildEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return 0, false
	}
	return fd, true
}

// Config configures Run.
type Config struct {
	// Listener is the listening socket every server child serves; init keeps it open across
	// restarts, so the address never goes away.
	Listener *os.File
	// Path and Args are the server's executable and command line (default: this executable via
	// /proc/self/exe, and os.Args). Env is its environment (default os.Environ()).
	Path string
	Args []string
	Env  []string
	// StopTimeout bounds the server's shutdown after a forwarded SIGTERM or SIGINT; then it is
	// killed.
	StopTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before restarting a crashed server.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// forwarded are the signals init passes on to the server.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2}

// Run is init's main loop. It returns the exit status for init once it was asked to stop (SIGTERM
// or SIGINT, or ctx ending) and the server has exited: the server's exit code, or 128+signal.
func Run(ctx context.Context, cfg Config) int {
	if cfg.Path == "" {
		cfg.Path = "/proc/self/exe"
	}
	if cfg.Args == nil {
		cfg.Args = os.Args
	}
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	in := &initLoop{cfg: cfg, log: cfg.Logger.With("component", "init"), backoff: cfg.MinBackoff}
	return in.run(ctx)
}

type initLoop struct {
	cfg     Config
	log     *slog.Logger
	child   int // pid of the server child; 0 when none runs
	started time.Time
	backoff time.Duration

	stopping bool
	restart  *time.Timer // pending restart of a crashed server
	kill     *time.Timer // pending SIGKILL of a server that does not stop
}

func (in *initLoop) run(ctx context.Context) int {
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, forwarded...)...)
	defer signal.Stop(sigs)
	tick := time.NewTicker(reapInterval)
	defer tick.Stop()
	defer func() {
		for _, t := range []*time.Timer{in.restart, in.kill} {
			if t != nil {
				t.Stop()
			}
		}
	}()

	in.startServer()
	done := ctx.Done()
	for {
		var restartC, killC <-chan time.Time
		if in.restart != nil {
			restartC = in.restart.C
		}
		if in.kill != nil {
			killC = in.kill.C
		}
		select {
		case sig := <-sigs:
			if sig == unix.SIGCHLD {
				if code, exit := in.reap(); exit {
					return code
				}
				continue
			}
			if code, exit := in.onSignal(sig.(syscall.Signal)); exit {
				return code
			}
		case <-done:
			done = nil
			if !in.stopping {
				if code, exit := in.onSignal(unix.SIGTERM); exit {
					return code
				}
			}
		case <-tick.C:
			if code, exit := in.reap(); exit {
				return code
			}
		case <-restartC:
			in.restart = nil
			if !in.stopping {
				in.startServer()
			}
		case <-killC:
			in.kill = nil
			if in.child != 0 {
				in.log.Warn("server did not stop in time; killing it", "pid", in.child, "timeout", in.cfg.StopTimeout)
				_ = unix.Kill(in.child, unix.SIGKILL)
			}
		}
	}
}

// onSignal forwards a signal to the server; SIGTERM and SIGINT also start the shutdown.
func (in *initLoop) onSignal(sig syscall.Signal) (code int, exit bool) {
	if sig == unix.SIGTERM || sig == unix.SIGINT {
		if !in.stopping {
			in.log.Info("stopping", "signal", sig.String())
			in.stopping = true
		}
		if in.child == 0 {
			return 0, true
		}
		if in.kill == nil {
			in.kill = time.NewTimer(in.cfg.StopTimeout)
		}
	}
	if in.child != 0 {
		if err := unix.Kill(in.child, sig); err != nil && err != unix.ESRCH {
			in.log.Warn("forwarding signal", "signal", sig.String(), "err", err)
		}
	}
	return 0, false
}

// reap collects every exited child of init: the server and any orphan of the sandbox.
func (in *initLoop) reap() (code int, exit bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD: no children at all; 0: none has exited.
			return 0, false
		}
		if pid != in.child {
			continue
		}
		in.child = 0
		status := exitStatus(ws)
		if in.stopping {
			in.log.Info("server stopped", "status", describe(ws))
			return status, true
		}
		in.scheduleRestart(fmt.Sprintf("server exited unexpectedly: %s", describe(ws)))
	}
}

func (in *initLoop) startServer() {
	env := make([]string, 0, len(in.cfg.Env)+1)
	for _, kv := range in.cfg.Env {
		if !strings.HasPrefix(kv, ChildEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, ChildEnv+"="+strconv.Itoa(childListenFD))
	p, err := os.StartProcess(in.cfg.Path, in.cfg.Args, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, in.cfg.Listener},
	})
	if err != nil {
		in.scheduleRestart(fmt.Sprintf("starting server: %v", err))
		return
	}
	in.child = p.Pid
	in.started = time.Now()
	// init reaps with wait4(-1); the handle's resources are not needed.
	_ = p.Release()
	in.log.Info("server started", "pid", in.child)
}

func (in *initLoop) scheduleRestart(reason string) {
	if !in.started.IsZero() && time.Since(in.started) >= stableAfter {
		in.backoff = in.cfg.MinBackoff
	}
	in.log.Error(reason+"; restarting", "in", in.backoff)
	in.restart = time.NewTimer(in.backoff)
	in.backoff = min(2*in.backoff, in.cfg.MaxBackoff)
}

// exitStatus is the shell's convention: the exit code, or 128+signal.
func exitStatus(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return 1
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "signal: " + ws.Signal().String()
	default:
		return fmt.Sprintf("wait status %#x", uint32(ws))
	}
}

// ForwardedToChild makes a server child tolerate the signals init forwards that it has no use for
// (SIGHUP, SIGUSR1, SIGUSR2), which would otherwise kill it. It logs them until ctx ends. Caught,
// not ignored, so that processes the server starts get default dispositions.
func ForwardedToChild(ctx context.Context, log *slog.Logger) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-ch:
				log.Info("signal forwarded by init; nothing to do", "signal", sig.String())
			}
		}
	}()
}

// ErrNotListener is returned by ListenerFile for a listener without a descriptor.
var ErrNotListener = errors.New("listener has no file descriptor")

// ListenerFile returns a duplicate descriptor of a net listener (TCP or Unix) for handing to the
// server child.
func ListenerFile(ln any) (*os.File, error) {
	f, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, ErrNotListener
	}
	file, err := f.File()
	if err != nil {
		return nil, fmt.Errorf("listener descriptor: %w", err)
	}
	return file, nil
}
