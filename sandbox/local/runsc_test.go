package local_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

// TestRunscSandbox runs a gVisor sandbox: envd answers over the socket it made inside (runsc
// cannot pass one in), commands run under gVisor's kernel, and the network is loopback only.
func TestRunscSandbox(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed")
	}
	b := newBackend(t, nil)
	ctx := ctxT(t, 3*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{Runtime: "runsc"})
	out, code, err := s.Output(ctx, "root", "sh", "-c", "dmesg 2>/dev/null | head -1; cat /proc/version; cat /proc/net/dev")
	if err != nil || code != 0 {
		t.Fatalf("exec: %v (exit %d) %s", err, code, out)
	}
	if !strings.Contains(out, "gVisor") && !strings.Contains(out, "4.4.0") {
		t.Fatalf("not running under gVisor: %q", out)
	}
	if !strings.Contains(out, "lo:") || strings.Contains(out, "eth0") {
		t.Fatalf("network is not loopback only: %q", out)
	}
}

// TestRunscEnvdSocketNotFollowed: under runsc, envd's socket lives in a directory bound from the
// host that the sandbox writes (runsc cannot pass a listening descriptor in). Root in the sandbox
// plants a symlink to a socket of the host there; gVisor refuses to let it unlink or rename over
// envd's socket. The host's dial must not rely on that: with the sandbox's link moved onto the
// socket's name (host side, what a runsc that allowed the rename would leave), the dial is refused
// and the host socket never sees a connection. Put back, the real socket is dialled again.
func TestRunscEnvdSocketNotFollowed(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed")
	}
	dd := tempDataDir(t)
	localenv.CheckLeaks(t, dd)
	b := newBackendAt(t, dd, nil)
	ctx := ctxT(t, 3*time.Minute)

	// A host socket the planted link points at: any connection to it means the host followed.
	decoy := filepath.Join(t.TempDir(), "decoy.sock")
	ln, err := net.Listen("unix", decoy)
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })

	s := mustCreate(t, ctx, b, local.Options{Runtime: "runsc"})
	info := s.ConnectInfo()
	dial := func() error {
		c, err := info.Dial(ctx)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("dialling envd before the attack: %v", err)
	}
	dir := filepath.Dir(info.SocketPath)
	// Inside: the link is made; replacing the socket with it is refused.
	plant := "cd /.agent/run && ln -s " + decoy + " planted && echo planted; " +
		"mv -f planted envd.sock 2>/dev/null && echo renamed; rm -f envd.sock 2>/dev/null && echo removed; true"
	out, code, err := s.Output(ctx, "root", "sh", "-c", plant)
	if err != nil || code != 0 || !strings.Contains(out, "planted") {
		t.Fatalf("planting the link: %v (exit %d) %q", err, code, out)
	}
	if strings.Contains(out, "renamed") || strings.Contains(out, "removed") {
		t.Errorf("root in a runsc sandbox replaced envd's socket (%q)", out)
	}
	planted := filepath.Join(dir, "planted")
	if target, err := os.Readlink(planted); err != nil || target != decoy {
		t.Fatalf("the sandbox's link is not on the host at %s (%q, %v): the attack did not happen", planted, target, err)
	}
	if err := dial(); err != nil {
		t.Errorf("dialling envd with the link beside its socket: %v", err)
	}
	// Host side, the rename gVisor refused: the socket's name is now the sandbox's link.
	real := filepath.Join(dir, "real.sock")
	if err := os.Rename(info.SocketPath, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(planted, info.SocketPath); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil {
		t.Errorf("the host dialled envd through a sandbox-planted symlink")
	} else if !errors.Is(err, sandbox.ErrGone) {
		t.Errorf("dial through a planted link: %v; want a refusal reported as the sandbox gone", err)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host socket the link points at got %d connection(s)", n)
	}
	// Put back: the real socket answers again, so the refusal above was the link's.
	if err := os.Remove(info.SocketPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(real, info.SocketPath); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Errorf("dialling envd after the socket was put back: %v", err)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host socket the link pointed at got %d connection(s)", n)
	}
}
