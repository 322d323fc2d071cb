package envdclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/sandbox"
)

func TestRun(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)

	var out, errOut lockedBuf
	// Standalone envd runs commands as host processes in the world's directories, so the working
	// directory is checked by its base name.
	res, err := c.Run(ctx, sandbox.Cmd{
		Shell:  `echo hello; echo oops >&2; echo "$FOO"; basename "$PWD"; id -u`,
		Env:    map[string]string{"FOO": "bar baz"},
		Output: sandbox.Output{Stdout: out.add, Stderr: errOut.add},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello\nbar baz\nuser\n1000\n"; string(res.Stdout) != want {
		t.Fatalf("stdout %q, want %q", res.Stdout, want)
	}
	if string(res.Stderr) != "oops\n" || res.ExitCode != 0 || !res.Exited || res.PID == 0 || res.Truncated || res.TimedOut {
		t.Fatalf("result %+v", res)
	}
	if out.String() != string(res.Stdout) || errOut.String() != "oops\n" {
		t.Fatalf("callbacks got %q / %q", out.String(), errOut.String())
	}

	// Argv, a working directory, another user.
	res, err = c.Run(ctx, sandbox.Cmd{Argv: []string{"/bin/sh", "-c", `basename "$PWD"; id -u; printf '%s' "$1"`, "sh", "a b"}, Dir: "/tmp", User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "tmp\n0\na b" {
		t.Fatalf("argv run: %q", res.Stdout)
	}
	// A relative cwd is relative to home; a missing one is refused.
	if _, err := c.Run(ctx, sandbox.Cmd{Shell: "mkdir work"}); err != nil {
		t.Fatal(err)
	}
	res, err = c.Run(ctx, sandbox.Cmd{Shell: "basename $PWD", Dir: "work"})
	if err != nil || string(res.Stdout) != "work\n" {
		t.Fatalf("relative cwd: %q, %v", res.Stdout, err)
	}
	if _, err := c.Run(ctx, sandbox.Cmd{Shell: "true", Dir: "/nonexistent"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("missing cwd: %v, want ErrInvalid", err)
	}
	if _, err := c.Run(ctx, sandbox.Cmd{}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("empty command: %v, want ErrInvalid", err)
	}
	if _, err := c.Run(ctx, sandbox.Cmd{Argv: []string{"/no/such/binary"}}); err == nil {
		t.Fatal("missing binary ran")
	}
}

func TestRunExitError(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	res, err := c.Run(ctx, sandbox.Cmd{Shell: "echo out; echo err >&2; exit 3"})
	var xe *sandbox.ExitError
	if !errors.As(err, &xe) {
		t.Fatalf("err = %v, want *ExitError", err)
	}
	if res == nil || xe.Result != res || res.ExitCode != 3 || !res.Exited || string(res.Stdout) != "out\n" ||
		string(res.Stderr) != "err\n" || res.TimedOut {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error text %q", err)
	}
	if errors.Is(err, sandbox.ErrTimeout) {
		t.Fatal("an exit error matched ErrTimeout")
	}
}

func TestRunTimeout(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	res, err := c.Run(ctx, sandbox.Cmd{Shell: "echo started; sleep 30", Timeout: 700 * time.Millisecond})
	if !errors.Is(err, sandbox.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	var xe *sandbox.ExitError
	if !errors.As(err, &xe) || !res.TimedOut || res.Exited || string(res.Stdout) != "started\n" {
		t.Fatalf("result %+v, err %v", res, err)
	}
	if !strings.HasPrefix(res.Error, TimeoutErrorPrefix) {
		t.Errorf("envd end.error %q does not start with %q", res.Error, TimeoutErrorPrefix)
	}
	// The lifetime applies to background processes too, and a quick command is not marked.
	p, err := c.Start(ctx, sandbox.Cmd{Shell: "sleep 30", Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Wait(ctx); !errors.Is(err, sandbox.ErrTimeout) || !res.TimedOut {
		t.Fatalf("background timeout: %+v, %v", res, err)
	}
	if res, err := c.Run(ctx, sandbox.Cmd{Shell: "true", Timeout: 30 * time.Second}); err != nil || res.TimedOut {
		t.Fatalf("quick command with a timeout: %+v, %v", res, err)
	}
}

func TestRunContextCancelKills(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err := c.Run(rctx, sandbox.Cmd{Shell: "sleep 30", Tag: "cancel-me"})
	if !errors.Is(err, sandbox.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
	waitFor(t, 10*time.Second, "the canceled command to be killed", func() bool {
		ps, err := c.Processes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return !slices.ContainsFunc(ps, func(p sandbox.ProcessInfo) bool { return p.Tag == "cancel-me" })
	})
}

func TestRunFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB of output")
	}
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, 5*time.Minute)
	var seen atomic.Int64
	stop := heapPeak()
	res, err := c.Run(ctx, sandbox.Cmd{
		Shell:     "head -c 1G /dev/zero; echo done >&2",
		MaxOutput: 1 << 20,
		Output:    sandbox.Output{Stdout: func(b []byte) { seen.Add(int64(len(b))) }},
	})
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 1<<30 {
		t.Fatalf("callback saw %d bytes, want 1 GiB", seen.Load())
	}
	if len(res.Stdout) != 1<<20 || !res.Truncated || string(res.Stderr) != "done\n" {
		t.Fatalf("result: %d bytes stdout, truncated %v, stderr %q", len(res.Stdout), res.Truncated, res.Stderr)
	}
	t.Logf("heap peak during 1 GiB of output: %d KiB", peak>>10)
	if peak > 96<<20 {
		t.Fatalf("client heap grew by %d bytes", peak)
	}
}

func TestStartConnectBackground(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)

	var first lockedBuf
	sctx, detach := context.WithCancel(ctx)
	p, err := c.Start(sctx, sandbox.Cmd{
		Shell:  "echo one; while [ ! -e ready ]; do sleep 0.05; done; echo two; sleep 0.2; exit 4",
		Dir:    "/home/user",
		Tag:    "bg-job",
		Output: sandbox.Output{Stdout: first.add},
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	if pid == 0 {
		t.Fatal("no pid")
	}
	killPIDOnCleanup(t, pid)
	waitFor(t, 20*time.Second, "first output", func() bool { return first.String() == "one\n" })
	// Detach by canceling the Start context: the process keeps running.
	detach()
	if _, err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after detaching: %v, want context.Canceled", err)
	}
	ps, err := c.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(pi sandbox.ProcessInfo) bool { return pi.PID == pid })
	if i < 0 || ps[i].Tag != "bg-job" || ps[i].Cmd != "/bin/bash" || !slices.Equal(ps[i].Args[:2], []string{"-l", "-c"}) {
		t.Fatalf("Processes = %+v", ps)
	}

	// Re-attach by tag, then by pid, and see the rest.
	var byTag, byPID lockedBuf
	pt, err := c.Connect(ctx, 0, "bg-job", sandbox.Output{Stdout: byTag.add})
	if err != nil {
		t.Fatal(err)
	}
	if pt.PID() != pid {
		t.Fatalf("connect by tag: pid %d, want %d", pt.PID(), pid)
	}
	pp, err := c.Connect(ctx, pid, "", sandbox.Output{Stdout: byPID.add})
	if err != nil {
		t.Fatal(err)
	}
	// Let the script go on.
	if _, err := c.Run(ctx, sandbox.Cmd{Shell: "touch ready"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []sandbox.Process{pt, pp} {
		res, err := h.Wait(ctx)
		var xe *sandbox.ExitError
		if !errors.As(err, &xe) || res.ExitCode != 4 {
			t.Fatalf("Wait: %+v, %v", res, err)
		}
	}
	if byTag.String() != "two\n" || byPID.String() != "two\n" {
		t.Fatalf("re-attached output %q / %q", byTag.String(), byPID.String())
	}
	if _, err := c.Connect(ctx, pid, "", sandbox.Output{}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("connect to an ended process: %v, want ErrNotFound", err)
	}
	if _, err := c.Connect(ctx, 0, "no-such-tag", sandbox.Output{}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("connect to an unknown tag: %v, want ErrNotFound", err)
	}
	if _, err := c.Connect(ctx, 0, "", sandbox.Output{}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("connect to nothing: %v, want ErrInvalid", err)
	}
}

func TestDisconnect(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	p, err := c.Start(ctx, sandbox.Cmd{Shell: "sleep 30"})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	p.Disconnect()
	if _, err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after Disconnect: %v", err)
	}
	// Still running: reconnect and kill it.
	q, err := c.Connect(ctx, p.PID(), "", sandbox.Output{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := q.Wait(ctx)
	var xe *sandbox.ExitError
	if !errors.As(err, &xe) || res.Exited || !strings.Contains(res.Status, "killed") {
		t.Fatalf("after kill: %+v, %v", res, err)
	}
}

func TestStdin(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	var out lockedBuf
	p, err := c.Start(ctx, sandbox.Cmd{Shell: "cat; echo eof", Stdin: true, Output: sandbox.Output{Stdout: out.add}})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	if err := p.SendStdin(ctx, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "echoed stdin", func() bool { return out.String() == "hello\n" })
	if err := p.SendStdin(ctx, []byte("world\n")); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait(ctx)
	if err != nil || string(res.Stdout) != "hello\nworld\neof\n" {
		t.Fatalf("result %q, %v", res.Stdout, err)
	}
	// Without Stdin, stdin is /dev/null: cat ends at once.
	res, err = c.Run(ctx, sandbox.Cmd{Shell: "cat; echo closed"})
	if err != nil || string(res.Stdout) != "closed\n" {
		t.Fatalf("no stdin: %q, %v", res.Stdout, err)
	}
	// Input to an ended process.
	if err := p.SendStdin(ctx, []byte("late")); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("stdin to an ended process: %v, want ErrNotFound", err)
	}
}

func TestSignals(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	p, err := c.Start(ctx, sandbox.Cmd{Argv: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	if err := p.Signal(ctx, sandbox.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait(ctx)
	var xe *sandbox.ExitError
	if !errors.As(err, &xe) || res.Exited || !strings.Contains(res.Status, "terminated") || res.TimedOut {
		t.Fatalf("SIGTERM: %+v, %v", res, err)
	}
	if err := p.Kill(ctx); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("kill an ended process: %v, want ErrNotFound", err)
	}
	if err := p.Signal(ctx, sandbox.Signal(1)); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("SIGHUP: %v, want ErrInvalid", err)
	}
}

func TestPTY(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	var term lockedBuf
	p, err := c.Start(ctx, sandbox.Cmd{
		Shell:  `stty size; read line; stty size; echo "got:$line"`,
		PTY:    &sandbox.PTYSize{Cols: 80, Rows: 24},
		Output: sandbox.Output{PTY: term.add},
	})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	waitFor(t, 20*time.Second, "first terminal size", func() bool { return strings.Contains(term.String(), "24 80") })
	if err := p.Resize(ctx, sandbox.PTYSize{Cols: 100, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	if err := p.SendStdin(ctx, []byte("typed\r")); err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := term.String()
	if !strings.Contains(out, "30 100") || !strings.Contains(out, "got:typed") {
		t.Fatalf("terminal output %q", out)
	}
	if !strings.Contains(string(res.Stdout), "got:typed") {
		t.Fatalf("PTY output not in the result: %q", res.Stdout)
	}
	if err := p.Resize(ctx, sandbox.PTYSize{}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("zero size: %v", err)
	}
}

func TestEnvdGone(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	p, err := c.Start(ctx, sandbox.Cmd{Shell: "sleep 20"})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	e.Kill()
	if _, err := p.Wait(ctx); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Wait after envd died: %v, want ErrGone", err)
	}
	if _, err := c.Stat(ctx, "/"); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Stat after envd died: %v, want ErrGone", err)
	}
	if _, err := c.Open(ctx, "/etc/passwd"); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Open after envd died: %v, want ErrGone", err)
	}
	if err := c.WriteFile(ctx, "/x", strings.NewReader("x")); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("WriteFile after envd died: %v, want ErrGone", err)
	}
	if _, err := c.Run(ctx, sandbox.Cmd{Shell: "true"}); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Run after envd died: %v, want ErrGone", err)
	}
	if err := c.Health(ctx); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Health after envd died: %v, want ErrGone", err)
	}
}

func TestKeepaliveAndWatchdog(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	quick := func(cfg *Config) {
		cfg.KeepaliveInterval = time.Second
		cfg.StreamIdleTimeout = 3 * time.Second
		cfg.HealthTimeout = 2 * time.Second
	}
	c := e.client(t, quick)
	ctx := ctxT(t, time.Minute)
	// A command silent for longer than the idle limit lives on: envd's keepalives feed the watchdog.
	qw, err := c.Watch(ctx, "/home/user", false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(ctx, sandbox.Cmd{Shell: "sleep 5; echo awake"})
	if err != nil || string(res.Stdout) != "awake\n" {
		t.Fatalf("quiet command: %+v, %v", res, err)
	}
	// The watch was as quiet; it lives too.
	if err := c.WriteFile(ctx, "/home/user/after-quiet", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, qw, "after-quiet", sandbox.EventCreate, sandbox.EventWrite)
	qw.Close()
	// A frozen envd: the stream goes silent, the watchdog ends it, the probe finds envd unresponsive.
	p, err := c.Start(ctx, sandbox.Cmd{Shell: "sleep 30"})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	w, err := c.Watch(ctx, "/home/user", false)
	if err != nil {
		t.Fatal(err)
	}
	e.Stop()
	defer e.Cont()
	if _, err := p.Wait(ctx); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Wait on a frozen envd: %v, want ErrGone", err)
	}
	for range w.Events() {
	}
	if err := w.Err(); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("watch on a frozen envd: %v, want ErrGone", err)
	}
	e.Cont()
	// Thawed, envd answers again.
	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health after thaw: %v", err)
	}
}

func TestConnectionReuse(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	var dials atomic.Int32
	addr := strings.TrimPrefix(e.URL, "http://")
	c := e.client(t, func(cfg *Config) {
		cfg.Dial = func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	})
	ctx := ctxT(t, time.Minute)
	for range 20 {
		if _, err := c.Run(ctx, sandbox.Cmd{Argv: []string{"/bin/true"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Processes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Streams are read to their end-stream frame, so a few keep-alive connections serve them all (a
	// call may start while the previous stream still reads its final frame).
	if n := dials.Load(); n > 5 {
		t.Fatalf("%d connections for 40 sequential calls", n)
	}
}

func TestSandboxEnv(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{Env: []string{"SANDBOX_WIDE=yes", "SHADOWED=sandbox"}})
	c := e.client(t, nil)
	ctx := ctxT(t, time.Minute)
	env, err := c.Envs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if env["SANDBOX_WIDE"] != "yes" {
		t.Fatalf("Envs = %v", env)
	}
	// Processes get the sandbox's env; the request's wins.
	res, err := c.Run(ctx, sandbox.Cmd{Shell: `echo "$SANDBOX_WIDE $SHADOWED"`, Env: map[string]string{"SHADOWED": "request"}})
	if err != nil || string(res.Stdout) != "yes request\n" {
		t.Fatalf("env in a process: %q, %v", res.Stdout, err)
	}
}

func TestStdinStream(t *testing.T) {
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	p, err := c.Start(ctx, sandbox.Cmd{Shell: "cat > in.bin; echo stored", Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	killPIDOnCleanup(t, p.PID())
	w, err := c.StdinStream(ctx, p.PID(), false)
	if err != nil {
		t.Fatal(err)
	}
	const size = 10 << 20
	want := sha256.New()
	if n, err := io.Copy(w, io.TeeReader(newPatternReader(9, size), want)); err != nil || n != size {
		t.Fatalf("streamed %d bytes: %v", n, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("late")); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if err := p.CloseStdin(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait(ctx)
	if err != nil || string(res.Stdout) != "stored\n" {
		t.Fatalf("result %q, %v", res.Stdout, err)
	}
	got, err := os.ReadFile(e.HostPath("home/user/in.bin"))
	if err != nil || len(got) != size {
		t.Fatalf("stored %d bytes, %v", len(got), err)
	}
	if sum := sha256.Sum256(got); !bytes.Equal(sum[:], want.Sum(nil)) {
		t.Fatal("stored input differs from what was streamed")
	}
	// A stream to a process that is not there fails, with envd's reason.
	w, err = c.StdinStream(ctx, p.PID(), false)
	if err == nil {
		_, werr := w.Write([]byte("x"))
		err = errors.Join(werr, w.Close())
	}
	if !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("stream to an ended process: %v, want ErrNotFound", err)
	}
}
