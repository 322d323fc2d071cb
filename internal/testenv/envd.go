package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// UserUID and UserGID are the ids of a World's "user" account.
const (
	UserUID = 1000
	UserGID = 1000
)

// World lays out a minimal world root for envd in a fresh temporary directory (removed after the
// test): /etc/passwd and /etc/group naming root and user (uid 1000), /root, /home/user (owned by
// user when the test runs as root) and a world-writable /tmp. Commands envd runs as user work inside it
// from the host, so the directory and its temporary parents are made traversable.
func World(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	for d := root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "home/user", "root", "tmp"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(os.Chmod(filepath.Join(root, "root"), 0o700))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o777))
	if os.Geteuid() == 0 {
		must(os.Chown(filepath.Join(root, "home/user"), UserUID, UserGID))
	}
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(
		"root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nuser:x:1000:\n"), 0o644))
	return root
}

// EnvdOptions configures a standalone envd.
type EnvdOptions struct {
	// Root is the world served as "/" (default: a fresh World).
	Root string
	// Token is the access token envd requires, when set (passed through its environment).
	Token string
	// Unix makes envd listen on a unix socket in a host-private directory instead of TCP on
	// loopback.
	Unix bool
	// Env holds sandbox-wide KEY=VALUE variables (--env).
	Env []string
	// LogLevel is envd's --log-level, when set.
	LogLevel string
	// SysProcAttr, when set, starts envd with these attributes (e.g. in new namespaces).
	SysProcAttr *syscall.SysProcAttr
}

// Envd is a standalone `agent envd` serving a world from the host, started by StartEnvd and
// stopped when the test ends.
type Envd struct {
	// URL is envd's base URL: http://127.0.0.1:port, or http://envd on a unix socket.
	URL string
	// Sock is the unix socket's path ("" on TCP).
	Sock string
	// Root is the host directory served as "/".
	Root string
	// Log holds envd's output (printed when the test fails).
	Log *LogBuffer

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error      // set before exited is closed
	mu      sync.Mutex // orders SIGSTOP and SIGCONT
}

// StartEnvd runs bin's `envd` on a listener the test made (passed as fd 3, so its address is known
// before envd starts) and waits until it answers /health. At cleanup it stops envd (SIGTERM, then
// SIGKILL after 10 s).
func StartEnvd(t testing.TB, bin string, o EnvdOptions) *Envd {
	t.Helper()
	e := &Envd{Root: o.Root, Log: &LogBuffer{}, exited: make(chan struct{})}
	if e.Root == "" {
		e.Root = World(t)
	}
	f := e.listen(t, o.Unix)
	defer f.Close()

	var args []string
	if o.LogLevel != "" {
		args = append(args, "--log-level", o.LogLevel)
	}
	args = append(args, "envd", "--listen-fd", "3", "--root", e.Root)
	env := append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if o.Token != "" {
		args = append(args, "--access-token-env", "ENVD_TEST_TOKEN")
		env = append(env, "ENVD_TEST_TOKEN="+o.Token)
	}
	for _, kv := range o.Env {
		args = append(args, "--env", kv)
	}
	e.cmd = exec.Command(bin, args...)
	e.cmd.Env = env
	e.cmd.ExtraFiles = []*os.File{f}
	e.cmd.Stdout, e.cmd.Stderr = e.Log, e.Log
	e.cmd.SysProcAttr = o.SysProcAttr
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.exited)
	}()
	t.Cleanup(func() {
		e.Cont()
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.exited
		}
		if t.Failed() {
			t.Logf("envd log:\n%s", e.Log.String())
		}
	})
	e.WaitHealthy(t)
	return e
}

// listen makes envd's listener and returns it as a file to pass on.
func (e *Envd) listen(t testing.TB, unix bool) *os.File {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	if unix {
		// A host-private directory, as local sandboxes use.
		dir, derr := os.MkdirTemp("", "envd-sock-")
		if derr != nil {
			t.Fatal(derr)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		e.Sock = filepath.Join(dir, "envd.sock")
		e.URL = "http://envd"
		ln, err = net.Listen("unix", e.Sock)
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
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Dial connects to envd's socket, TCP or unix.
func (e *Envd) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	if e.Sock != "" {
		return d.DialContext(ctx, "unix", e.Sock)
	}
	return d.DialContext(ctx, "tcp", e.URL[len("http://"):])
}

// WaitHealthy polls /health until envd answers 2xx; it fails the test if envd exits or 30 s pass.
// The socket is bound already: a request waits in the backlog until envd serves.
func (e *Envd) WaitHealthy(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return e.Dial(ctx) },
	}}
	defer hc.CloseIdleConnections()
	for {
		err := e.health(ctx, hc)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("envd did not become healthy: %v\n%s", err, e.Log.String())
		}
		select {
		case <-e.exited:
			t.Fatalf("envd exited:\n%s", e.Log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (e *Envd) health(ctx context.Context, hc *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("health: %s", resp.Status)
	}
	return nil
}

// Pid is envd's host pid.
func (e *Envd) Pid() int { return e.cmd.Process.Pid }

// Exited is closed once envd has exited.
func (e *Envd) Exited() <-chan struct{} { return e.exited }

// ExitErr is what waiting for envd returned (nil: it exited with status 0). Call it only once
// Exited is closed.
func (e *Envd) ExitErr() error { return e.waitErr }

// Kill ends envd at once, as a crash would, and waits for it.
func (e *Envd) Kill() {
	_ = e.cmd.Process.Kill()
	<-e.exited
}

// Stop freezes envd (SIGSTOP): its sockets stay open but nothing answers.
func (e *Envd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.cmd.Process.Signal(syscall.SIGSTOP)
}

// Cont resumes envd after Stop.
func (e *Envd) Cont() {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.cmd.Process.Signal(syscall.SIGCONT)
}

// HostPath is the host path of a path in the world.
func (e *Envd) HostPath(p string) string { return filepath.Join(e.Root, p) }
