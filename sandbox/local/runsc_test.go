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
	if lo := strings.ToLower(out); !strings.Contains(lo, "gvisor") && !strings.Contains(out, "4.4.0") {
		t.Fatalf("not running under gVisor: %q", out)
	}
	if !strings.Contains(out, "lo:") || strings.Contains(out, "eth0") {
		t.Fatalf("network is not loopback only: %q", out)
	}
}

// TestRunscEnvdSocketNotFollowed: under runsc, envd's socket lives in a directory bound from the
// host that the sandbox writes (runsc cannot pass a listening descriptor in). Root in the sandbox
// plants a symlink to a socket of the host there and renames it over envd's socket. Older runsc
// builds refuse the rename, newer ones allow it; the host's dial relies on neither. Where the
// rename worked, the link is at the socket's name and the dial must be refused. Where it was
// refused, the test moves the link onto the socket's name from the host side (what a runsc that
// allowed it would leave): the dial is refused and the host socket never sees a connection; put
// back, the real socket is dialled again.
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
		"mv -f planted envd.sock 2>/dev/null && echo renamed; true"
	out, code, err := s.Output(ctx, "root", "sh", "-c", plant)
	if err != nil || code != 0 || !strings.Contains(out, "planted") {
		t.Fatalf("planting the link: %v (exit %d) %q", err, code, out)
	}
	if strings.Contains(out, "renamed") {
		// This runsc let root replace envd's socket: the link is at the socket's name, host side.
		t.Logf("this runsc lets root in the sandbox rename over envd's socket")
		if target, err := os.Readlink(info.SocketPath); err != nil || target != decoy {
			t.Fatalf("the sandbox's link is not at %s (%q, %v): the attack did not happen", info.SocketPath, target, err)
		}
		if err := dial(); err == nil {
			t.Errorf("the host dialled envd through a sandbox-planted symlink")
		} else if !errors.Is(err, sandbox.ErrGone) {
			t.Errorf("dial through a planted link: %v; want a refusal reported as the sandbox gone", err)
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("the host socket the link points at got %d connection(s)", n)
		}
		return
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
