// Command snapbench measures pause/resume, snapshots and forks of local sandboxes, each beside a
// baseline measured in the same run, and prints a Markdown report:
//
//   - pause and resume latency of an idle sandbox and of one with busy processes (CPU spinners and
//     a process holding touched memory), beside the runtime's own round trip (`runc state`) and,
//     on a cgroup v1 host, a direct write to the freezer;
//
//   - snapshot and restore of a sandbox with a 100 MB workdir: snapshot time (and how long the
//     sandbox was frozen), digest time, size on disk, create-from-snapshot time beside a plain
//     create, and a host `cp -a` of the same files;
//
//   - fork of 5 sandboxes from one setup beside 5 fresh setups.
//
//     go build -o bin/agent ./cmd/agent
//     go run ./internal/cmd/snapbench -binary bin/agent -n 20 > snapbench.md
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/internal/hostinfo"
	"github.com/agentrun/agent/report/stats"
	"github.com/agentrun/agent/sandbox/local"
)

func main() { os.Exit(benchMain()) }

type config struct {
	binary, dataDir, templateDir string
	n, forkRuns, forkN           int
	workdirMB                    int
	setup                        string
}

func benchMain() int {
	var c config
	flag.StringVar(&c.binary, "binary", "bin/agent", "agent binary (sandbox init)")
	flag.StringVar(&c.dataDir, "data-dir", "/var/lib/agent-bench-snapshots", "data dir (emptied at the end)")
	flag.StringVar(&c.templateDir, "template-dir", "", "template dir (default DATA_DIR/templates)")
	flag.IntVar(&c.n, "n", 20, "repetitions of each latency measurement")
	flag.IntVar(&c.forkRuns, "fork-runs", 3, "repetitions of the fork comparison")
	flag.IntVar(&c.forkN, "fork-n", 5, "sandboxes per fork")
	flag.IntVar(&c.workdirMB, "workdir-mb", 100, "size of the workdir in the snapshot measurement")
	flag.StringVar(&c.setup, "setup", "python3 -m venv /home/user/venv && head -c 50000000 /dev/urandom > /home/user/data.bin",
		"the setup command forked or repeated in the fork comparison")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := os.MkdirAll(c.dataDir, 0o711); err != nil {
		fmt.Fprintln(os.Stderr, "snapbench:", err)
		return 1
	}
	b, err := local.New(ctx, local.Config{DataDir: c.dataDir, TemplateDir: c.templateDir, Binary: c.binary})
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapbench:", err)
		return 1
	}
	defer func() {
		_ = b.Close()
		_, _ = b.GCWith(context.Background(), local.GCOptions{OlderThan: time.Nanosecond, Snapshots: true})
	}()
	r := &report{w: os.Stdout}
	r.printf("## Pause, resume, snapshots and forks (local sandboxes)\n\n")
	r.printf("%s, %d CPUs, kernel %s, runtime runc, template host, %s. %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), hostinfo.Kernel(), b.Cgroups().Mode, local.CheckCRIU(ctx).Summary())
	steps := []struct {
		name string
		f    func(context.Context, *report, *local.Backend, config) error
	}{
		{"pause/resume", pauseResume},
		{"snapshot/restore", snapshotRestore},
		{"fork", fork},
	}
	for _, s := range steps {
		if err := s.f(ctx, r, b, c); err != nil {
			fmt.Fprintf(os.Stderr, "snapbench: %s: %v\n", s.name, err)
			return 1
		}
	}
	return 0
}

type report struct{ w io.Writer }

func (r *report) printf(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

func (r *report) header() {
	r.printf("| measurement | n | p50 | p99 | min | max |\n|---|---|---|---|---|---|\n")
}

func (r *report) row(name string, d []time.Duration) {
	if len(d) == 0 {
		r.printf("| %s | 0 | - | - | - | - |\n", name)
		return
	}
	s := slices.Clone(d)
	slices.Sort(s)
	r.printf("| %s | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", name, len(s), ms(stats.Percentile(s, 50)), ms(stats.Percentile(s, 99)), ms(s[0]), ms(s[len(s)-1]))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sh(ctx context.Context, s *local.Sandbox, user, script string) error {
	out, code, err := s.Output(ctx, user, "sh", "-c", script)
	if err != nil || code != 0 {
		return fmt.Errorf("%q: exit %d %v: %s", script, code, err, out)
	}
	return nil
}

func pauseResume(ctx context.Context, r *report, b *local.Backend, c config) error {
	r.printf("### Pause and resume\n\n`Sandbox.Pause`/`Resume` (runtime pause through the cgroup freezer, plus the record on disk). ")
	r.printf("Busy: 2 CPU spinners and a process holding 256 MiB of touched memory. Baselines: the runtime's own round trip (`runc state`) and a direct freezer write (v1), same sandbox.\n\n")
	r.header()
	for _, busy := range []bool{false, true} {
		s, err := b.Create(ctx, local.Options{Limits: local.Limits{MemoryBytes: 1 << 30}})
		if err != nil {
			return err
		}
		label := "idle"
		if busy {
			label = "busy"
			if err := sh(ctx, s, "", `for i in 1 2; do nohup sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & done
nohup python3 -c 'import time; b = bytearray(256 << 20); [b.__setitem__(i, 1) for i in range(0, len(b), 4096)]; time.sleep(3600)' </dev/null >/dev/null 2>&1 &
sleep 3`); err != nil {
				_ = s.Kill(ctx)
				return err
			}
		}
		var pause, resume, state, fz, th []time.Duration
		stateArgs := []string{"--root", filepath.Join(b.DataDir(), "runtime", "runc"), "state", s.ID()}
		freezer := freezerState(b, s)
		for range c.n {
			t0 := time.Now()
			if err := s.Pause(ctx); err != nil {
				return err
			}
			pause = append(pause, time.Since(t0))
			t0 = time.Now()
			if err := s.Resume(ctx); err != nil {
				return err
			}
			resume = append(resume, time.Since(t0))
			t0 = time.Now()
			cmd := exec.CommandContext(ctx, "runc", stateArgs...)
			if err := cmd.Run(); err != nil {
				return err
			}
			state = append(state, time.Since(t0))
			if freezer != "" {
				d1, d2, err := freezeDirect(ctx, freezer)
				if err != nil {
					return err
				}
				fz, th = append(fz, d1), append(th, d2)
			}
		}
		r.row("pause, "+label, pause)
		r.row("resume, "+label, resume)
		r.row("baseline: `runc state`, "+label, state)
		if freezer != "" {
			r.row("baseline: freezer.state FROZEN (v1, direct), "+label, fz)
			r.row("baseline: freezer.state THAWED (v1, direct), "+label, th)
		}
		if err := s.Kill(ctx); err != nil {
			return err
		}
	}
	r.printf("\n")
	return nil
}

// freezerState returns the sandbox's v1 freezer.state file, or "".
func freezerState(b *local.Backend, s *local.Sandbox) string {
	for _, d := range b.Cgroups().Dirs(s.Record().CgroupsPath) {
		if f := filepath.Join(d, "freezer.state"); fileExists(f) {
			return f
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freezeDirect(ctx context.Context, state string) (freeze, thaw time.Duration, err error) {
	set := func(v string) (time.Duration, error) {
		t0 := time.Now()
		if err := os.WriteFile(state, []byte(v), 0); err != nil {
			return 0, err
		}
		for {
			b, err := os.ReadFile(state)
			if err != nil {
				return 0, err
			}
			if strings.TrimSpace(string(b)) == v {
				return time.Since(t0), nil
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	if freeze, err = set("FROZEN"); err != nil {
		return
	}
	thaw, err = set("THAWED")
	return
}

func snapshotRestore(ctx context.Context, r *report, b *local.Backend, c config) error {
	r.printf("### Snapshot and restore, %d MB workdir\n\n", c.workdirMB)
	s, err := b.Create(ctx, local.Options{Limits: local.Limits{Lifetime: time.Hour}})
	if err != nil {
		return err
	}
	defer s.Kill(context.WithoutCancel(ctx))
	// A workdir like a project's: many small files and a few big ones, incompressible.
	files := c.workdirMB * 4
	script := fmt.Sprintf(`set -e; mkdir -p /home/user/w/small /home/user/w/big
head -c %d /dev/urandom > /home/user/w/big/a.bin
i=0; while [ $i -lt %d ]; do head -c 131072 /dev/urandom > /home/user/w/small/f$i; i=$((i+1)); done`, (c.workdirMB<<20)/2, files)
	if err := sh(ctx, s, "", script); err != nil {
		return err
	}
	var snap, frozen, digest, fromCreate, plainCreate, cp []time.Duration
	var size, bytes int64
	var entries int64
	for i := range c.n {
		t0 := time.Now()
		sn, err := b.Snapshot(ctx, s.ID(), local.SnapshotOptions{ID: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			return err
		}
		snap = append(snap, time.Since(t0))
		frozen, digest = append(frozen, sn.FrozenFor), append(digest, sn.DigestFor)
		size, bytes, entries = duBytes(filepath.Join(b.DataDir(), "snapshots", sn.ID)), sn.Bytes, sn.Entries
		t0 = time.Now()
		f, err := b.Create(ctx, local.Options{From: sn.ID})
		if err != nil {
			return err
		}
		fromCreate = append(fromCreate, time.Since(t0))
		if i == 0 {
			if err := sh(ctx, f, "", "test $(du -sb /home/user/w | cut -f1) -gt 0 && cat /home/user/w/small/f1 /home/user/w/big/a.bin >/dev/null"); err != nil {
				return err
			}
		}
		_ = f.Kill(ctx)
		t0 = time.Now()
		p, err := b.Create(ctx, local.Options{})
		if err != nil {
			return err
		}
		plainCreate = append(plainCreate, time.Since(t0))
		_ = p.Kill(ctx)
		if err := b.RemoveSnapshot(ctx, sn.ID); err != nil {
			return err
		}
		d, err := hostCopy(ctx, filepath.Join(b.DataDir(), "sandboxes", s.ID(), "disk", "upper"))
		if err != nil {
			return err
		}
		cp = append(cp, d)
	}
	r.printf("Layer: %d entries, %.1f MB of file content, %.1f MB on disk.\n\n", entries, float64(bytes)/1e6, float64(size)/1e6)
	r.header()
	r.row("snapshot (total)", snap)
	r.row("… of which the sandbox was frozen (copy)", frozen)
	r.row("… of which digest (sha256 of the layer tar)", digest)
	r.row("baseline: host `cp -a` of the upper layer", cp)
	r.row("create from the snapshot (to envd ready)", fromCreate)
	r.row("baseline: plain create (to envd ready)", plainCreate)
	r.printf("\n")
	return nil
}

func hostCopy(ctx context.Context, src string) (time.Duration, error) {
	dst, err := os.MkdirTemp(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(src)))), ".bench-cp-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dst)
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cp: %v: %s", err, out)
	}
	syncDir(dst)
	return time.Since(t0), nil
}

func syncDir(dir string) {
	if fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		_ = unix.Syncfs(fd)
		unix.Close(fd)
	}
}

func duBytes(dir string) int64 {
	var n int64
	seen := map[uint64]bool{}
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

func fork(ctx context.Context, r *report, b *local.Backend, c config) error {
	r.printf("### Fork of %d vs %d fresh setups\n\nSetup: `%s`. Fresh: %d × (create + setup), 4 at a time. Fork: 1 × (create + setup) + snapshot + fork of %d (4 creates at a time). Wall time until every sandbox has the setup's files.\n\n",
		c.forkN, c.forkN, c.setup, c.forkN, c.forkN)
	var fresh, forked, setupOnly []time.Duration
	for range c.forkRuns {
		t0 := time.Now()
		var made []*local.Sandbox
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		ch := make(chan *local.Sandbox, c.forkN)
		for range c.forkN {
			g.Go(func() error {
				s, err := b.Create(gctx, local.Options{})
				if err != nil {
					return err
				}
				ch <- s
				return sh(gctx, s, "", c.setup)
			})
		}
		err := g.Wait()
		close(ch)
		fresh = append(fresh, time.Since(t0))
		for s := range ch {
			made = append(made, s)
		}
		killAll(ctx, made)
		if err != nil {
			return err
		}

		t0 = time.Now()
		src, err := b.Create(ctx, local.Options{})
		if err != nil {
			return err
		}
		if err := sh(ctx, src, "", c.setup); err != nil {
			_ = src.Kill(ctx)
			return err
		}
		setupOnly = append(setupOnly, time.Since(t0))
		forks, snap, err := b.ForkSandbox(ctx, src.ID(), c.forkN, local.Options{})
		if err != nil {
			_ = src.Kill(ctx)
			return err
		}
		forked = append(forked, time.Since(t0))
		if err := sh(ctx, forks[0], "", "test -x /home/user/venv/bin/python3 && test -s /home/user/data.bin"); err != nil {
			return err
		}
		killAll(ctx, append(forks, src))
		if err := b.RemoveSnapshot(ctx, snap.ID); err != nil {
			return err
		}
	}
	r.header()
	r.row(fmt.Sprintf("%d fresh setups", c.forkN), fresh)
	r.row(fmt.Sprintf("1 setup + fork of %d", c.forkN), forked)
	r.row("baseline: 1 create + setup", setupOnly)
	r.printf("\n")
	return nil
}

func killAll(ctx context.Context, ss []*local.Sandbox) {
	for _, s := range ss {
		_ = s.Kill(context.WithoutCancel(ctx))
	}
}
