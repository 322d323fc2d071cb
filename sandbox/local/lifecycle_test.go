package local_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox"
)

func TestCreateExecKillHost(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	start := time.Now()
	s, err := b.Create(ctx, localOptions("host", ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("create: %v %v", time.Since(start), s.Timings())
	out, code, err := s.Output(ctx, "", "sh", "-c", "id; hostname; echo hello > f.txt; cat f.txt; pwd")
	if err != nil || code != 0 {
		t.Fatalf("exec: %v code %d: %s", err, code, out)
	}
	t.Log(out)
	for _, want := range []string{"uid=1000(user)", s.ID(), "hello", "/home/user"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if err := s.Kill(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCreateExecKillRuntimes(t *testing.T) {
	for _, rt := range runtimesUnderTest(t) {
		t.Run(rt, func(t *testing.T) {
			b := newBackend(t, nil)
			ctx := ctxT(t, 2*time.Minute)
			s := mustCreate(t, ctx, b, localOptions("host", rt))
			out, code, err := s.Output(ctx, "", "sh", "-c", "id -u; cat /etc/hostname")
			if err != nil || code != 0 || out != "1000\n"+s.ID()+"\n" {
				t.Fatalf("exec: %q %d %v", out, code, err)
			}
			t.Logf("%s: %v", rt, s.Timings())
		})
	}
}

func TestInitDeathIsGone(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, time.Minute)
	s := mustCreate(t, ctx, b, localOptions("host", ""))
	if err := syscall.Kill(s.Record().InitPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = s.Failure(); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("Failure() after the init died = %v, want ErrGone", err)
	}
	t.Log(err)
}
