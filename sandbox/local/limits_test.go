package local_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

func TestMemoryBombIsOOM(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{Limits: local.Limits{MemoryBytes: 128 << 20}})
	installProbe(t, ctx, s)
	if err := s.Failure(); err != nil {
		t.Fatalf("fresh sandbox reports %v", err)
	}
	out, code, err := s.Output(ctx, "", "/tmp/probe", "membomb")
	t.Logf("membomb: exit %d err %v: %s", code, err, lastLine(out))
	if code == 0 {
		t.Fatalf("membomb ended normally")
	}
	ferr := s.Failure()
	if !errors.Is(ferr, sandbox.ErrOOM) {
		t.Fatalf("Failure() = %v, want ErrOOM (stats %+v)", ferr, s.Stats())
	}
	t.Logf("failure: %v", ferr)
	// The sandbox survives its bomb: envd (pid 1) is still there.
	if out, code, err := s.Output(ctx, "", "true"); err != nil || code != 0 {
		t.Errorf("sandbox unusable after OOM: %v %d %s", err, code, out)
	}
}

func TestForkBombContained(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	const limit = 64
	s := mustCreate(t, ctx, b, local.Options{Limits: local.Limits{Pids: limit}})
	installProbe(t, ctx, s)
	done := make(chan string, 1)
	go func() {
		out, _, _ := s.Output(ctx, "", "/tmp/probe", "forkbomb", "500")
		done <- out
	}()
	// The host stays responsive while the bomb runs.
	for i := 0; i < 5; i++ {
		if err := exec.CommandContext(ctx, "true").Run(); err != nil {
			t.Fatalf("host cannot fork during the bomb: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := <-done
	t.Logf("forkbomb: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "failed") || strings.Contains(out, "failed 0") {
		t.Errorf("no fork was refused: %q", out)
	}
	st := s.Stats()
	if st.PidsLimitHits == 0 {
		t.Errorf("pids limit hits not counted: %+v", st)
	}
	if err := s.Failure(); !errors.Is(err, sandbox.ErrPidsLimit) {
		t.Errorf("Failure() = %v, want ErrPidsLimit", err)
	}
}

func TestDiskFillIsENOSPC(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{Limits: local.Limits{DiskBytes: 128 << 20}})
	out, code, err := s.Output(ctx, "", "sh", "-c", "dd if=/dev/zero of=$HOME/fill bs=1M count=1024 2>&1; echo rc=$?")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dd: %s", out)
	if !strings.Contains(out, "No space left on device") || code != 0 || strings.Contains(out, "rc=0") {
		t.Errorf("disk fill did not end with ENOSPC: %s", out)
	}
	used, size, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk: %d of %d bytes used", used, size)
	if size > 128<<20 || used < size-(8<<20) {
		t.Errorf("disk usage %d of %d: quota not reached or exceeded", used, size)
	}
	if err := s.Failure(); !errors.Is(err, sandbox.ErrNoSpace) {
		t.Errorf("Failure() = %v, want ErrNoSpace", err)
	}
	// Freeing space makes the sandbox writable again.
	if out, code, _ := s.Output(ctx, "", "sh", "-c", "rm $HOME/fill && echo ok > $HOME/after"); code != 0 {
		t.Errorf("sandbox not writable after freeing space: %s", out)
	}
}

func TestCPUQuotaHolds(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	const cpus = 0.5
	s := mustCreate(t, ctx, b, local.Options{Limits: local.Limits{CPUs: cpus}})
	installProbe(t, ctx, s)
	before := s.Stats().CPUUsage
	start := time.Now()
	if out, code, err := s.Output(ctx, "", "/tmp/probe", "spin", "3", "2"); err != nil || code != 0 {
		t.Fatalf("spin: %v %d %s", err, code, out)
	}
	wall := time.Since(start)
	used := s.Stats().CPUUsage - before
	ratio := used.Seconds() / wall.Seconds()
	t.Logf("CPU used %v over %v wall: %.2f CPUs (quota %.2f)", used, wall, ratio, cpus)
	// Two busy threads would use 2 CPUs unconfined; the quota holds them near 0.5.
	if ratio > cpus*1.3 {
		t.Errorf("sandbox used %.2f CPUs, quota %.2f", ratio, cpus)
	}
	if used <= 0 {
		t.Errorf("no CPU usage measured")
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
