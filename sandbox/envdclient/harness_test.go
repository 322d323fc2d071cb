package envdclient

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agentBin is the agent binary built once for the package's tests and benchmarks.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "envdclient-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "agent")
	build := exec.Command("go", "build", "-o", agentBin, "github.com/agentrun/agent/cmd/agent")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build agent:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// envdOpts configures a test envd.
type envdOpts struct {
	token string   // access token, when set
	unix  bool     // listen on a unix socket instead of TCP
	env   []string // sandbox-wide KEY=VALUE
}

// testEnvd is a standalone `agent envd` serving a temporary world.
type testEnvd struct {
	URL  string // http://127.0.0.1:port (or http://envd for unix sockets)
	Sock string // unix socket path
	Root string // host directory served as "/"
	cmd  *exec.Cmd
	log  *syncBuffer

	mu     sync.Mutex
	exited chan struct{}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// makeWorld lays out a minimal world: /etc/passwd with root and user (uid 1000), /home/user, /tmp.
func makeWorld(t testing.TB) string {
	root := t.TempDir()
	// Commands run as uid 1000 on the host with their cwd inside root: every parent must be traversable.
	for d := root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(filepath.Base(d), "Test") || strings.HasPrefix(filepath.Base(d), "Bench") {
			break
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "home/user"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "root"), 0o700))
	must(os.MkdirAll(filepath.Join(root, "tmp"), 0o1777))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	must(os.Chown(filepath.Join(root, "home/user"), 1000, 1000))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(
		"root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nuser:x:1000:\n"), 0o644))
	return root
}

// startEnvd runs `agent envd` on a listener the test made (passed as fd 3), so its address is known.
func startEnvd(t testing.TB, o envdOpts) *testEnvd {
	t.Helper()
	e := &testEnvd{Root: makeWorld(t), log: &syncBuffer{}, exited: make(chan struct{})}
	var (
		ln  net.Listener
		err error
	)
	if o.unix {
		// A host-private directory, as local sandboxes use.
		dir, derr := os.MkdirTemp("", "envd-sock-")
		if derr != nil {
			t.Fatal(derr)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		e.Sock = filepath.Join(dir, "envd.sock")
		ln, err = net.Listen("unix", e.Sock)
		e.URL = "http://envd"
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			e.URL = "http://" + ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var f *os.File
	switch l := ln.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		l.SetUnlinkOnClose(false)
		f, err = l.File()
	}
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	defer f.Close()

	args := []string{"--log-level", "debug", "envd", "--listen-fd", "3", "--root", e.Root}
	env := append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if o.token != "" {
		args = append(args, "--access-token-env", "ENVD_TEST_TOKEN")
		env = append(env, "ENVD_TEST_TOKEN="+o.token)
	}
	for _, kv := range o.env {
		args = append(args, "--env", kv)
	}
	e.cmd = exec.Command(agentBin, args...)
	e.cmd.Env = env
	e.cmd.ExtraFiles = []*os.File{f}
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = e.cmd.Wait()
		close(e.exited)
	}()
	t.Cleanup(func() {
		e.cont()
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.exited
		}
		if t.Failed() {
			t.Logf("envd log:\n%s", e.log.String())
		}
	})
	// The socket is bound already: a request waits in the backlog until envd serves.
	c := e.client(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if err := c.Health(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("envd did not become healthy: %v\n%s", err, e.log.String())
		}
		select {
		case <-e.exited:
			t.Fatalf("envd exited:\n%s", e.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return e
}

// client returns a client of e; mod may adjust the config.
func (e *testEnvd) client(t testing.TB, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: e.URL, RequestTimeout: 30 * time.Second}
	if e.Sock != "" {
		sock := e.Sock
		cfg.Dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kill ends envd at once, as a crash would.
func (e *testEnvd) kill() {
	_ = e.cmd.Process.Kill()
	<-e.exited
}

// stop freezes envd (SIGSTOP): its sockets stay open but nothing answers.
func (e *testEnvd) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.cmd.Process.Signal(syscall.SIGSTOP)
}

func (e *testEnvd) cont() {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.cmd.Process.Signal(syscall.SIGCONT)
}

// hostPath is the host path of a world path.
func (e *testEnvd) hostPath(p string) string { return filepath.Join(e.Root, p) }

// killPIDOnCleanup makes sure a process envd started (a host process in standalone mode) ends with
// the test even when envd could not kill it (because the test killed envd).
func killPIDOnCleanup(t testing.TB, pid uint32) {
	t.Cleanup(func() {
		if pid > 1 {
			_ = syscall.Kill(int(pid), syscall.SIGKILL)
		}
	})
}

// recorder is a RoundTripper that records the requests it carries.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []*http.Request
	resp []http.Header
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	if resp != nil {
		r.resp = append(r.resp, resp.Header.Clone())
	} else {
		r.resp = append(r.resp, nil)
	}
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) find(path string) (*http.Request, http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reqs) - 1; i >= 0; i-- {
		if r.reqs[i].URL.Path == path {
			return r.reqs[i], r.resp[i]
		}
	}
	return nil, nil
}

// ctxT is a context bounded for one test step.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// lockedBuf collects callback output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) add(p []byte) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds or d passes (a wait, not a timing assertion).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// statOwner reads the owner of a host path.
func statOwner(p string, st *syscallStat) error {
	var s syscall.Stat_t
	if err := syscall.Lstat(p, &s); err != nil {
		return err
	}
	st.uid, st.gid = s.Uid, s.Gid
	return nil
}
