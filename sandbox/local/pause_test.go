package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

// counterScript runs as one long-lived process (no children) that keeps a counter in memory and
// appends "count monotonic_ns" to /tmp/counter every 20 ms.
const counterScript = `
import os, time
i = 0
f = open("/tmp/counter", "a", buffering=1)
while True:
    i += 1
    f.write("%d %d\n" % (i, time.monotonic_ns()))
    time.sleep(0.02)
`

// startCounter starts the counter in the background and waits until it has counted.
func startCounter(t *testing.T, ctx context.Context, s *local.Sandbox) {
	t.Helper()
	if out, code, err := s.Output(ctx, "", "sh", "-c", "command -v python3"); err != nil || code != 0 {
		t.Skipf("python3 is not available in the host template: %v %s", err, out)
	}
	var script bytes.Buffer
	script.WriteString(counterScript)
	code, err := s.Exec(ctx, local.ExecOpts{Args: []string{"sh", "-c", "cat > /tmp/counter.py"}, Stdin: &script})
	if err != nil || code != 0 {
		t.Fatalf("writing the counter: %v %d", err, code)
	}
	out, code, err := s.Output(ctx, "", "sh", "-c", "nohup python3 /tmp/counter.py </dev/null >/dev/null 2>&1 &")
	if err != nil || code != 0 {
		t.Fatalf("starting the counter: %v %d %s", err, code, out)
	}
	waitFor(t, 30*time.Second, "the counter to count", func() bool { return len(readCounter(t, ctx, s)) >= 5 })
}

type tick struct{ n, mono int64 }

func readCounter(t *testing.T, ctx context.Context, s *local.Sandbox) []tick {
	t.Helper()
	out, code, err := s.Output(ctx, "", "cat", "/tmp/counter")
	if err != nil || code != 0 {
		return nil
	}
	var ticks []tick
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue // a line being written
		}
		n, err1 := strconv.ParseInt(f[0], 10, 64)
		m, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 == nil && err2 == nil {
			ticks = append(ticks, tick{n, m})
		}
	}
	return ticks
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procs lists the sandbox's processes as the host sees them (the pids cgroup): pid, start time
// and command name. runc exec processes have ended when it is called.
func procs(t *testing.T, b *local.Backend, s *local.Sandbox) []string {
	t.Helper()
	var out []string
	for _, dir := range b.Cgroups().Dirs(s.Record().CgroupsPath) {
		if !strings.Contains(dir, "pids") && !strings.Contains(dir, "unified") && b.Cgroups().Mode != "v2" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, pid := range strings.Fields(string(data)) {
			stat, err := os.ReadFile("/proc/" + pid + "/stat")
			if err != nil {
				continue
			}
			// comm is in parentheses; the start time is field 22.
			st := string(stat)
			rp := strings.LastIndexByte(st, ')')
			fields := strings.Fields(st[rp+2:])
			out = append(out, fmt.Sprintf("%s %s %s", pid, st[strings.IndexByte(st, '(')+1:rp], fields[19]))
		}
		if len(out) > 0 {
			break
		}
	}
	slices.Sort(out)
	return out
}

func TestPauseResumeCounterContinues(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 3*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{})
	startCounter(t, ctx, s)
	before := procs(t, b, s)
	if len(before) < 2 {
		t.Fatalf("process list %v: want envd and the counter", before)
	}
	if err := s.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx); err != nil {
		t.Fatalf("pausing a paused sandbox: %v", err)
	}
	if ph := s.Record().Phase; ph != local.PhasePaused {
		t.Fatalf("phase %s after Pause", ph)
	}
	if err := s.Failure(); err != nil {
		t.Fatalf("a paused sandbox is not failing: %v", err)
	}
	const paused = 1500 * time.Millisecond
	time.Sleep(paused)
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	after := procs(t, b, s)
	if !slices.Equal(before, after) {
		t.Errorf("process list changed across pause/resume:\nbefore %v\nafter  %v", before, after)
	}
	n0 := len(readCounter(t, ctx, s))
	waitFor(t, 30*time.Second, "the counter to go on", func() bool { return len(readCounter(t, ctx, s)) > n0+5 })
	ticks := readCounter(t, ctx, s)
	var gap int64
	for i := 1; i < len(ticks); i++ {
		if ticks[i].n != ticks[i-1].n+1 {
			t.Fatalf("counter went from %d to %d: state lost", ticks[i-1].n, ticks[i].n)
		}
		gap = max(gap, ticks[i].mono-ticks[i-1].mono)
	}
	// Frozen means no tick during the pause: one interval spans it. (A running counter ticks every
	// 20 ms; the bound is half the pause, so a loaded machine cannot make it fail.)
	if time.Duration(gap) < paused/2 {
		t.Errorf("longest interval between ticks %v: the counter ran while paused", time.Duration(gap))
	}
	t.Logf("%d ticks, one spanning the pause: %v", len(ticks), time.Duration(gap))
}

// treeListing describes every file under dir inside the sandbox: type, mode, owner, size (but
// a directory's, which depends on the filesystem), mtime, path, link target and content hash.
func treeListing(t *testing.T, ctx context.Context, s *local.Sandbox, dir string) string {
	t.Helper()
	out, code, err := s.Output(ctx, "root", "sh", "-c",
		"cd "+dir+" && find . \\( -type d -printf '%y %m %U:%G - %T@ %p\\n' \\) -o -printf '%y %m %U:%G %s %T@ %p -> %l\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum")
	if err != nil || code != 0 {
		t.Fatalf("listing %s: %v %d %s", dir, err, code, out)
	}
	return out
}

// makeTree writes a varied tree under dir: nested directories, random content, a big sparse
// file, a symlink, a hard link, a FIFO, modes, an xattr, a deleted template file.
func makeTree(t *testing.T, ctx context.Context, s *local.Sandbox, dir string) {
	t.Helper()
	script := `set -e
mkdir -p ` + dir + `/a/b/c ` + dir + `/empty
cd ` + dir + `
head -c 300000 /dev/urandom > a/b/c/random.bin
echo hello > a/hello.txt
chmod 640 a/hello.txt
ln -s ../a/hello.txt a/b/link
ln a/hello.txt a/hard.txt
mkfifo a/fifo
truncate -s 200M sparse.img
printf 'x' | dd of=sparse.img bs=1 seek=100000000 conv=notrunc status=none
chmod 1777 empty
setfattr -n user.tag -v snap a/hello.txt 2>/dev/null || true
for i in $(seq 1 50); do echo $i > a/f$i; done
`
	out, code, err := s.Output(ctx, "", "sh", "-c", script)
	if err != nil || code != 0 {
		t.Fatalf("making the tree: %v %d %s", err, code, out)
	}
}

func TestPauseResumeTenCyclesFilesIdentical(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 3*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{})
	makeTree(t, ctx, s, "/home/user/w")
	before := treeListing(t, ctx, s, "/home/user/w")
	for i := range 10 {
		if err := s.Pause(ctx); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := s.Resume(ctx); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if after := treeListing(t, ctx, s, "/home/user/w"); after != before {
		t.Errorf("files changed across 10 pause/resume cycles:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestLifetimeClockStopsWhilePaused(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 3*time.Minute)
	const lifetime = 4 * time.Second
	s := mustCreate(t, ctx, b, local.Options{Limits: local.Limits{Lifetime: lifetime}})
	if err := s.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	rec := s.Record()
	if rec.Remaining <= 0 || rec.Remaining > lifetime || !rec.Expires.IsZero() {
		t.Fatalf("paused record: remaining %v, expires %v", rec.Remaining, rec.Expires)
	}
	// Wait well past the lifetime: a running clock would have killed it.
	time.Sleep(lifetime + 2*time.Second)
	if err := s.Failure(); err != nil {
		t.Fatalf("paused past its lifetime, the sandbox failed: %v", err)
	}
	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	if err := s.Resume(ctx); err != nil {
		t.Fatalf("resuming after more than its lifetime paused: %v", err)
	}
	returned := time.Now()
	if out, code, err := s.Output(ctx, "", "echo", "alive"); err != nil || code != 0 || out != "alive\n" {
		t.Fatalf("after resume: %q %d %v", out, code, err)
	}
	// The clock restarts at resume with exactly what was left at pause.
	if restart := s.Record().Expires.Add(-rec.Remaining); restart.Before(resumed) || restart.After(returned) {
		t.Errorf("expires %v with %v left at pause: the clock restarted at %v, not during Resume (%v..%v)",
			s.Record().Expires, rec.Remaining, restart, resumed, returned)
	}
	// The clock runs again: the sandbox expires.
	waitFor(t, time.Minute, "the resumed sandbox to expire", func() bool { return s.Failure() != nil })
	if err := s.Failure(); !errors.Is(err, sandbox.ErrExpired) {
		t.Fatalf("after its remaining lifetime: %v, want ErrExpired", err)
	}
}

func TestKeepVisitGC(t *testing.T) {
	dd := tempDataDir(t)
	b := newBackendAt(t, dd, nil)
	ctx := ctxT(t, 3*time.Minute)
	leaks := noLeaks(t, dd)
	s, err := b.Create(ctx, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	out, code, err := s.Output(ctx, "", "sh", "-c", "echo 'FAILED: 3 != 4' > /home/user/state.txt; nohup sleep 1000 </dev/null >/dev/null 2>&1 &")
	if err != nil || code != 0 {
		t.Fatalf("%v %d %s", err, code, out)
	}
	if err := s.Keep(ctx, "task demo failed"); err != nil {
		t.Fatal(err)
	}
	// Released: closing the backend leaves it, and GC in another process leaves it.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := newBackendAt(t, dd, nil)
	if rep, err := b2.GC(ctx); err != nil || slices.Contains(rep.Sandboxes, id) {
		t.Fatalf("GC reclaimed a kept sandbox: %v %v", rep, err)
	}
	infos, err := b2.List(ctx)
	if err != nil || len(infos) != 1 || infos[0].ID != id || !infos[0].Kept || infos[0].Status != "paused" || infos[0].Note != "task demo failed" {
		t.Fatalf("list: %+v %v", infos, err)
	}
	// A session sees the state it failed in, with its processes, and leaves it paused.
	v, leave, err := b2.Visit(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	out, code, err = v.Output(ctx, "", "sh", "-c", "cat /home/user/state.txt; pgrep -x sleep >/dev/null && echo sleeping")
	if err != nil || code != 0 || out != "FAILED: 3 != 4\nsleeping\n" {
		t.Fatalf("in the kept sandbox: %q %d %v", out, code, err)
	}
	if err := leave(ctx); err != nil {
		t.Fatal(err)
	}
	if infos, _ := b2.List(ctx); len(infos) != 1 || infos[0].Status != "paused" {
		t.Fatalf("after the session: %+v", infos)
	}
	// The CLI does the same: exec into the kept sandbox, then gc --older-than reclaims it.
	agent := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, agentBin, append([]string{"sandbox", "--data-dir", dd, "--template-dir", templateCache}, args...)...)
		o, err := cmd.CombinedOutput()
		return string(o), err
	}
	if o, err := agent("exec", id, "--", "cat", "/home/user/state.txt"); err != nil || !strings.Contains(o, "FAILED: 3 != 4") {
		t.Fatalf("agent sandbox exec: %v %s", err, o)
	}
	if o, err := agent("gc"); err != nil || strings.Contains(o, id) {
		t.Fatalf("agent sandbox gc reclaimed the kept sandbox: %v %s", err, o)
	}
	if o, err := agent("gc", "--older-than", "1h"); err != nil || strings.Contains(o, id) {
		t.Fatalf("agent sandbox gc --older-than 1h reclaimed a fresh kept sandbox: %v %s", err, o)
	}
	time.Sleep(50 * time.Millisecond)
	if o, err := agent("gc", "--older-than", "10ms"); err != nil || !strings.Contains(o, id) {
		t.Fatalf("agent sandbox gc --older-than 10ms: %v %s", err, o)
	}
	if infos, _ := b2.List(ctx); len(infos) != 0 {
		t.Fatalf("after gc: %+v", infos)
	}
	leaks()
}

// noLeaks takes a baseline of what backends on dd touch on the host and returns the check to call
// once everything is gone (localenv.Scope plus the snapshot store).
func noLeaks(t *testing.T, dd string) func() {
	t.Helper()
	sc := localenv.Scope(dd)
	sc.DataDirs = append(sc.DataDirs, filepath.Join(dd, "snapshots"))
	return leakcheck.Baseline(t, sc)
}

func TestResumeKeptFromAnotherBackend(t *testing.T) {
	dd := tempDataDir(t)
	b := newBackendAt(t, dd, nil)
	ctx := ctxT(t, 3*time.Minute)
	s, err := b.Create(ctx, local.Options{Limits: local.Limits{Lifetime: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Output(ctx, "", "sh", "-c", "echo 7 > /tmp/x"); err != nil {
		t.Fatal(err)
	}
	if err := b.Pause(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	b2 := newBackendAt(t, dd, nil)
	r, err := b2.Resume(ctx, s.ID(), local.ResumeOptions{Lifetime: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(r.Record().Expires); left > 2*time.Minute || left < time.Minute {
		t.Errorf("resumed with lifetime 2m: %v left", left)
	}
	if out, _, err := r.Output(ctx, "", "cat", "/tmp/x"); err != nil || out != "7\n" {
		t.Fatalf("%q %v", out, err)
	}
	if _, err := b2.Resume(ctx, s.ID(), local.ResumeOptions{}); err != nil {
		t.Fatalf("resuming a running sandbox: %v", err)
	}
	// b2 owns it now: closing b2 kills it.
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if infos, _ := b.List(ctx); len(infos) != 0 {
		t.Fatalf("after its new owner closed: %+v", infos)
	}
	if _, err := b.Resume(ctx, "nosuchsandbox", local.ResumeOptions{}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("resume of a missing sandbox: %v", err)
	}
}

// TestKeptSandboxAfterReboot: a reboot takes a kept sandbox's processes and mounts; its files are
// still in its disk image. Resume says it is gone; a snapshot still takes its files; gc
// --older-than reclaims it. The reboot is simulated: the runtime deletes the container and every
// mount of the sandbox is detached.
func TestKeptSandboxAfterReboot(t *testing.T) {
	dd := tempDataDir(t)
	b := newBackendAt(t, dd, nil)
	ctx := ctxT(t, 3*time.Minute)
	leaks := noLeaks(t, dd)
	s, err := b.Create(ctx, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	if out, code, err := s.Output(ctx, "", "sh", "-c", "echo before-reboot > /home/user/f"); err != nil || code != 0 {
		t.Fatalf("%v %d %s", err, code, out)
	}
	if err := s.Keep(ctx, "reboot test"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "runc", "--root", filepath.Join(dd, "runtime", "runc"), "delete", "--force", id).CombinedOutput(); err != nil {
		t.Fatalf("runc delete: %v %s", err, out)
	}
	sbdir := filepath.Join(dd, "sandboxes", id)
	for range 8 {
		data, _ := os.ReadFile("/proc/self/mountinfo")
		var points []string
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], sbdir+"/") {
				points = append(points, f[4])
			}
		}
		if len(points) == 0 {
			break
		}
		slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	if _, err := b.Resume(ctx, id, local.ResumeOptions{}); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("resuming a sandbox whose processes are gone: %v, want ErrGone", err)
	}
	snap, err := b.Snapshot(ctx, id, local.SnapshotOptions{ID: "rescued"})
	if err != nil {
		t.Fatalf("snapshot of a kept sandbox after a reboot: %v", err)
	}
	c, err := b.Create(ctx, local.Options{From: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := c.Output(ctx, "", "cat", "/home/user/f"); err != nil || out != "before-reboot\n" {
		t.Fatalf("files rescued from the kept sandbox: %q %v", out, err)
	}
	if err := c.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := b.GCWith(ctx, local.GCOptions{OlderThan: time.Nanosecond, Snapshots: true}); err != nil ||
		!slices.Contains(rep.Sandboxes, id) || !slices.Contains(rep.Snapshots, "rescued") {
		t.Fatalf("gc --older-than --snapshots: %+v %v", rep, err)
	}
	leaks()
}
