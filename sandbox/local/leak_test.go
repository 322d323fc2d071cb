package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

// scope is what a backend may touch on the host.
func scope(b *local.Backend) leakcheck.Scope { return localenv.Scope(b.DataDir()) }

func TestNoLeaksCreateKillCycles(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 15*time.Minute)
	// Warm up: the runtime's state dir and the template exist from here on.
	s := mustCreate(t, ctx, b, local.Options{})
	if err := s.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	leakcheck.Check(t, scope(b))
	n := 200
	if v, err := strconv.Atoi(os.Getenv("AGENT_TEST_CYCLES")); err == nil && v > 0 {
		n = v
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		s, err := b.Create(ctx, local.Options{})
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if i%50 == 0 {
			if out, code, err := s.Output(ctx, "", "true"); err != nil || code != 0 {
				t.Fatalf("cycle %d: exec: %v %d %s", i, err, code, out)
			}
		}
		if err := s.Kill(ctx); err != nil {
			t.Fatalf("cycle %d: kill: %v", i, err)
		}
	}
	t.Logf("%d create/kill cycles in %v", n, time.Since(start))
}

// helperCreate runs in a child process: it creates sandboxes on AGENT_TEST_DATA_DIR until killed.
func helperCreate() int {
	ctx := context.Background()
	b, err := local.New(ctx, local.Config{
		DataDir: os.Getenv("AGENT_TEST_DATA_DIR"), TemplateDir: os.Getenv("AGENT_TEST_TEMPLATES"),
		Binary: os.Getenv("AGENT_TEST_BIN"), SkipGC: true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		if _, err := b.Create(ctx, local.Options{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("created")
	}
}

func TestGCAfterSIGKILLMidCreate(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 5*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{}) // builds the template, warms the runtime dir
	if err := s.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	leakcheck.Check(t, scope(b))
	// Kill the creating process at many points of a create (and after a few completed ones).
	for _, delay := range []time.Duration{5, 15, 25, 40, 60, 80, 100, 130, 170, 250, 600} {
		delay *= time.Millisecond
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "AGENT_TEST_HELPER=create", "AGENT_TEST_DATA_DIR="+b.DataDir(),
			"AGENT_TEST_TEMPLATES="+templateCache, "AGENT_TEST_BIN="+agentBin)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the child has started a sandbox directory, then let it run for delay.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			ents, _ := os.ReadDir(filepath.Join(b.DataDir(), "sandboxes"))
			if len(ents) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// A child the killed process had forked but not yet exec'd holds copies of its lock fds for
		// a moment; GC leaves a locked sandbox alone and reclaims it once released.
		var reclaimed []string
		var left []local.Info
		for deadline := time.Now().Add(10 * time.Second); ; {
			rep, err := b.GC(ctx)
			if err != nil {
				t.Fatalf("gc after kill at +%v: %v", delay, err)
			}
			reclaimed = append(reclaimed, rep.Sandboxes...)
			if left, _ = b.List(ctx); len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("killed at +%v; gc reclaimed %v", delay, reclaimed)
		if len(left) != 0 {
			t.Fatalf("sandboxes remain after gc: %+v; lock holders: %v", left, lockHolders(filepath.Join(b.DataDir(), "sandboxes", left[0].ID)))
		}
	}
}

func TestListGetKillFromAnotherBackend(t *testing.T) {
	b1 := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	s := mustCreate(t, ctx, b1, local.Options{})
	b2, err := local.New(ctx, local.Config{DataDir: b1.DataDir(), TemplateDir: templateCache, Binary: agentBin})
	if err != nil {
		t.Fatal(err)
	}
	// b2's GC at open must leave b1's live sandbox alone.
	infos, err := b2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != s.ID() || infos[0].Status != "running" || !infos[0].Owned {
		t.Fatalf("List from another backend: %+v", infos)
	}
	g, err := b2.Get(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if out, code, err := g.Output(ctx, "", "hostname"); err != nil || code != 0 || out != s.ID()+"\n" {
		t.Fatalf("exec through Get: %q %d %v", out, code, err)
	}
	if _, err := b2.Get(ctx, "nosuchsandbox"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := b2.Get(ctx, "../etc"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("Get(bad id) = %v, want ErrInvalid", err)
	}
	if err := b2.Kill(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.Failure(); !errors.Is(err, sandbox.ErrGone) {
		t.Errorf("owner sees %v after another process killed it, want ErrGone", err)
	}
	if infos, _ := b1.List(ctx); len(infos) != 0 {
		t.Errorf("sandbox still listed after kill: %+v", infos)
	}
	if err := b2.Kill(ctx, s.ID()); err != nil {
		t.Errorf("killing a gone sandbox: %v", err)
	}
	if err := b2.Close(); err != nil {
		t.Error(err)
	}
}

func TestLifetimeExpiry(t *testing.T) {
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	s, err := b.Create(ctx, local.Options{Limits: local.Limits{Lifetime: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Failure(); err != nil {
		t.Fatalf("fresh sandbox: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if infos, _ := b.List(ctx); len(infos) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if infos, _ := b.List(ctx); len(infos) != 0 {
		t.Fatalf("sandbox outlived its lifetime: %+v", infos)
	}
	err = s.Failure()
	if !errors.Is(err, sandbox.ErrExpired) || !errors.Is(err, sandbox.ErrGone) {
		t.Errorf("Failure() = %v, want ErrExpired (and ErrGone)", err)
	}
}

// lockHolders lists the processes with a file under dir open (diagnostics).
func lockHolders(dir string) []string {
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && strings.HasPrefix(l, dir) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
				out = append(out, p.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " ")+" -> "+l)
			}
		}
	}
	return out
}

// TestKillElsewhereDropsCgroupParent: a sandbox killed by another backend on the same
// data dir (as `agent sandbox kill` in another process does), whose creator never closes, leaves
// no cgroup behind: the data dir's cgroup parent goes with its last sandbox, in every hierarchy.
func TestKillElsewhereDropsCgroupParent(t *testing.T) {
	dd := tempDataDir(t)
	localenv.CheckLeaks(t, dd)
	creator := newBackendAt(t, dd, nil)
	ctx := ctxT(t, 2*time.Minute)
	s, err := creator.Create(ctx, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	parent := creator.CgroupParent()
	var present []string
	for _, d := range creator.Cgroups().Dirs(parent) {
		if _, err := os.Stat(d); err == nil {
			present = append(present, d)
		}
	}
	if len(present) == 0 {
		t.Fatalf("no cgroup parent %s while a sandbox runs", parent)
	}
	other := newBackendAt(t, dd, nil)
	if err := other.Kill(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	for _, d := range present {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("cgroup parent %s left after its last sandbox was killed: %v", d, err)
		}
	}
}

// TestDataDirTooLongForSockets: in a data dir so deep that the sandboxes' unix socket paths would
// not fit, a create is refused with ErrInvalid and the fix, before it makes anything, instead of
// failing with a bare EINVAL from bind.
func TestDataDirTooLongForSockets(t *testing.T) {
	dd := tempDataDir(t)
	deep := filepath.Join(dd, strings.Repeat("d", 80))
	localenv.CheckLeaks(t, deep)
	b := newBackendAt(t, deep, nil)
	_, err := b.Create(ctxT(t, time.Minute), local.Options{})
	if !errors.Is(err, sandbox.ErrInvalid) || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("create in a %d-byte data dir: %v; want ErrInvalid naming --data-dir", len(deep), err)
	}
	if ents, _ := os.ReadDir(filepath.Join(deep, "sandboxes")); len(ents) != 0 {
		t.Errorf("the refused create left %d entries", len(ents))
	}
}
