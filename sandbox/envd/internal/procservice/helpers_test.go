package procservice_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/procservice"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/process"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

const rootAuth = "Basic cm9vdDo=" // base64("root:")

// world is a temporary world root with users root and user (uid 1000), served by a real envd.
type world struct {
	dir    string
	url    string
	srv    *envd.Server
	svc    *procservice.Service         // set by newServiceWorld
	client processconnect.ProcessClient // JSON codec, as the SDKs use
	proto  processconnect.ProcessClient // binary codec
	http   *http.Client

	closeOnce sync.Once
	closeErr  error
}

type worldOpt func(*envd.Config)

func newWorld(t *testing.T, opts ...worldOpt) *world {
	t.Helper()
	dir := makeWorldDir(t)
	cfg := envd.Config{Root: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := envd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	w := &world{dir: dir, srv: srv}
	t.Cleanup(func() {
		cancel()
		<-served
		if err := w.closeServer(); err != nil {
			t.Errorf("closing envd: %v", err)
		}
	})
	w.url = "http://" + ln.Addr().String()
	w.setClients(t)
	return w
}

func (w *world) setClients(t *testing.T) {
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	w.http = hc
	// No compression, as the SDKs: gzip would shrink the tests' zero floods 1000-fold and hide
	// where bytes wait.
	noGzip := connect.WithAcceptCompression("gzip", nil, nil)
	w.client = processconnect.NewProcessClient(hc, w.url, connect.WithProtoJSON(), noGzip)
	w.proto = processconnect.NewProcessClient(hc, w.url, noGzip)
}

// smallBufListener shrinks the kernel send buffer of accepted connections.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// newServiceWorld serves a procservice.Service built with cfg directly (for settings envd does not
// expose), every request running as user. With smallSockets, the connection's kernel buffers are
// tiny, so that output waits in envd, not in the network stack.
func newServiceWorld(t *testing.T, cfg procservice.Config, smallSockets bool) *world {
	t.Helper()
	dir := makeWorldDir(t)
	root, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	db := users.NewDB(root)
	u, err := db.Lookup("user")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Root, cfg.Users = root, db
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := procservice.New(cfg)
	path, h := processconnect.NewProcessHandler(svc)
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(rw, r.WithContext(users.WithUser(r.Context(), u)))
	}))
	hs := httptest.NewUnstartedServer(mux)
	if smallSockets {
		hs.Listener = smallBufListener{hs.Listener}
	}
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		if err := svc.Close(); err != nil {
			t.Errorf("closing service: %v", err)
		}
		root.Close()
	})
	w := &world{dir: dir, url: hs.URL, svc: svc}
	w.setClients(t)
	if smallSockets {
		dialer := &net.Dialer{}
		w.http.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			return c, err
		}}
	}
	return w
}

// makeWorldDir makes a world root with users root and user (uid 1000, also in group extra).
func makeWorldDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (runs processes as another user)")
	}
	dir := t.TempDir()
	// The temp dirs are 0700; the world's user must be able to reach its home.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n")
	mustWrite(t, filepath.Join(dir, "etc/group"), "root:x:0:\nuser:x:1000:\nextra:x:1500:user\n")
	for _, d := range []string{"root", "home/user/sub", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"home/user", "home/user/sub"} {
		if err := os.Chown(filepath.Join(dir, d), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(dir, "home/user/file.txt"), "x")
	return dir
}

// closeServer closes the envd server once (its Close is not idempotent).
func (w *world) closeServer() error {
	w.closeOnce.Do(func() { w.closeErr = w.srv.Close() })
	return w.closeErr
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sh builds a start request running script with /bin/sh -c.
func sh(script string) *process.StartRequest {
	return &process.StartRequest{Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}}}
}

func withStdin(r *process.StartRequest, v bool) *process.StartRequest { r.Stdin = &v; return r }
func withTag(r *process.StartRequest, tag string) *process.StartRequest {
	r.Tag = &tag
	return r
}

// outcome is what a Start or Connect stream delivered.
type outcome struct {
	pid        uint32
	stdout     bytes.Buffer
	stderr     bytes.Buffer
	pty        bytes.Buffer
	keepalives int
	ends       int
	end        *process.ProcessEvent_EndEvent
}

// eventStream is the part of a client server-stream the tests read.
type eventStream interface {
	Receive() bool
	Err() error
	Close() error
}

// reader reads a Start or Connect stream event by event, checking the contract as it goes: start
// first, nothing after the one end, the stream closing cleanly after it.
type reader struct {
	t      *testing.T
	s      eventStream
	ev     func() *process.ProcessEvent
	n      int
	out    outcome
	closed bool
}

func readStart(t *testing.T, s *connect.ServerStreamForClient[process.StartResponse]) *reader {
	t.Helper()
	r := &reader{t: t, s: s, ev: func() *process.ProcessEvent { return s.Msg().GetEvent() }}
	t.Cleanup(func() { s.Close() })
	r.expectStart()
	return r
}

func readConnect(t *testing.T, s *connect.ServerStreamForClient[process.ConnectResponse]) *reader {
	t.Helper()
	r := &reader{t: t, s: s, ev: func() *process.ProcessEvent { return s.Msg().GetEvent() }}
	t.Cleanup(func() { s.Close() })
	r.expectStart()
	return r
}

func (r *reader) expectStart() {
	r.t.Helper()
	if !r.s.Receive() {
		r.t.Fatalf("stream ended before the start event: %v", r.s.Err())
	}
	st := r.ev().GetStart()
	if st == nil {
		r.t.Fatalf("first event is %v, want start", r.ev())
	}
	if st.GetPid() == 0 {
		r.t.Fatal("start event has pid 0")
	}
	r.out.pid = st.GetPid()
}

// next reads one event; it returns false at the end of the stream.
func (r *reader) next() bool {
	r.t.Helper()
	if !r.s.Receive() {
		if err := r.s.Err(); err != nil {
			r.t.Fatalf("stream failed: %v", err)
		}
		if r.out.ends != 1 {
			r.t.Fatalf("stream ended after %d end events, want 1", r.out.ends)
		}
		return false
	}
	if r.out.ends > 0 {
		r.t.Fatalf("event %v after the end event", r.ev())
	}
	r.n++
	ev := r.ev()
	switch {
	case ev.GetStart() != nil:
		r.t.Fatal("second start event")
	case ev.GetData() != nil:
		d := ev.GetData()
		r.out.stdout.Write(d.GetStdout())
		r.out.stderr.Write(d.GetStderr())
		r.out.pty.Write(d.GetPty())
		if n := len(d.GetStdout()) + len(d.GetStderr()) + len(d.GetPty()); n == 0 || n > 32<<10 {
			r.t.Fatalf("data event of %d bytes", n)
		}
	case ev.GetKeepalive() != nil:
		r.out.keepalives++
	case ev.GetEnd() != nil:
		r.out.ends++
		r.out.end = ev.GetEnd()
	default:
		r.t.Fatalf("empty event %v", ev)
	}
	return true
}

// all reads to the end of the stream.
func (r *reader) all() *outcome {
	r.t.Helper()
	for r.next() {
	}
	return &r.out
}

// until reads until cond holds (false if the stream ended first).
func (r *reader) until(cond func(o *outcome) bool) bool {
	r.t.Helper()
	for !cond(&r.out) {
		if !r.next() {
			return cond(&r.out)
		}
	}
	return true
}

func connectCode(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return connect.CodeUnknown
}

func pidSel(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

func tagSel(tag string) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: tag}}
}

// alive reports whether a host pid is a live (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// waitGone waits until pid is no longer a live process.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %s", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// waitExec waits until pid runs the program named comm.
func waitExec(t *testing.T, pid int, comm string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d did not exec %s within %s", pid, comm, d)
}
