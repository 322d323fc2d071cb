// Command sandboxbench measures local sandboxes: create→ready latency (p50/p99) per template,
// runtime, pool on/off, sequential and concurrent, beside a bare `runc run /bin/true` of the same
// root filesystem measured in the same run; networked sandboxes (create and kill latency per
// network mode, TCP throughput to a fake internet host through the veth and the egress proxy,
// beside the host's own); and density (host memory per idle sandbox, kill-all time). It prints a
// Markdown report.
//
//	go build -o bin/agent ./cmd/agent
//	go run ./internal/cmd/sandboxbench -binary bin/agent -n 50 > bench.md
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
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sync/errgroup"

	"github.com/agentrun/agent/internal/hostinfo"
	"github.com/agentrun/agent/report/stats"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/ocispec"
	"github.com/agentrun/agent/sandbox/local/template"
)

func main() { os.Exit(benchMain()) }

func benchMain() (exit int) {
	var (
		binary, dataDir, templateDir, templates, runtimes string
		n, conc, density, poolSize, netReps               int
		netMiB                                            int64
		fixCrun                                           bool
		sections                                          string
	)
	flag.StringVar(&binary, "binary", "bin/agent", "agent binary (sandbox init)")
	flag.StringVar(&dataDir, "data-dir", "/var/lib/agent-bench", "data dir (emptied of sandboxes at the end)")
	flag.StringVar(&templateDir, "template-dir", "", "template dir (default DATA_DIR/templates)")
	flag.StringVar(&templates, "templates", "host,debian", "templates to measure")
	flag.StringVar(&runtimes, "runtimes", "runc,crun", "runtimes to measure (unusable ones are reported and skipped)")
	flag.IntVar(&n, "n", 50, "creates per configuration")
	flag.IntVar(&conc, "concurrency", 16, "concurrent creates in the concurrent runs")
	flag.IntVar(&density, "density", 500, "idle sandboxes in the density run (0 skips it)")
	flag.IntVar(&poolSize, "pool", 4, "pool size in the pool runs")
	flag.StringVar(&sections, "sections", "create,breakdown,density", "sections to run: create, breakdown, density, network (scripts/bench-network.sh runs network alone)")
	flag.IntVar(&netReps, "net-reps", 5, "transfers per path in the network throughput run")
	flag.Int64Var(&netMiB, "net-mib", 256, "MiB per transfer in the network throughput run")
	flag.BoolVar(&fixCrun, "fix-crun", false, "on a cgroup hybrid host, apply the crun host fix (agent doctor --fix) for the run and undo it after")
	flag.Parse()
	if fixCrun {
		mounted, err := local.FixCrunHybrid()
		if err != nil {
			fmt.Fprintln(os.Stderr, "sandboxbench: crun fix:", err)
		}
		defer func() {
			if err := local.UndoCrunHybridFix(mounted); err != nil {
				fmt.Fprintln(os.Stderr, "sandboxbench: undoing the crun fix:", err)
			}
		}()
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx := context.Background()
	r := &report{w: os.Stdout}
	if err := run(ctx, r, benchConfig{binary, dataDir, templateDir, strings.Split(templates, ","), strings.Split(runtimes, ","), n, conc, density, poolSize, strings.Split(sections, ","), netReps, netMiB << 20}); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxbench:", err)
		exit = 1
	}
	return exit
}

type benchConfig struct {
	binary, dataDir, templateDir string
	templates, runtimes          []string
	n, conc, density, pool       int
	sections                     []string
	netReps                      int
	netBytes                     int64
}

type report struct{ w io.Writer }

func (r *report) printf(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

func run(ctx context.Context, r *report, c benchConfig) error {
	if err := os.MkdirAll(c.dataDir, 0o711); err != nil {
		return err
	}
	host, _ := os.Hostname()
	title := "Local sandboxes (sandboxbench)"
	if slices.Equal(c.sections, []string{"network"}) {
		title = "Networked sandboxes (sandboxbench -sections network)"
	}
	r.printf("## %s\n\nMachine: %s, %d CPUs, %s, kernel %s. Date: %s. n=%d per row. Every figure in one run of the same binary on the same machine; on a shared machine, runs an hour apart differ by up to 2×, so compare rows within one run (the bare baseline is there for that).\n\n",
		title, host, runtime.NumCPU(), fmt.Sprintf("%d GiB RAM", hostinfo.Meminfo("MemTotal")>>30), hostinfo.Kernel(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), c.n)
	open := func(rt string, pool int, tpl string) (*local.Backend, error) {
		return local.New(ctx, local.Config{DataDir: c.dataDir, TemplateDir: c.templateDir, Binary: c.binary, Runtime: rt,
			Pool: pool, PoolTemplate: tpl})
	}
	b0, err := open("runc", 0, "")
	if err != nil {
		return err
	}
	var usable []string
	for _, rt := range c.runtimes {
		if !slices.Contains(c.sections, "create") && !slices.Contains(c.sections, "breakdown") {
			break
		}
		if err := probe(ctx, b0, rt); err != nil {
			r.printf("- %s skipped: %v\n", rt, firstLine(err.Error()))
			continue
		}
		usable = append(usable, rt)
	}
	if slices.Contains(c.sections, "create") {
		if err := createRows(ctx, r, c, b0, usable, open); err != nil {
			return err
		}
	}
	if len(usable) > 0 && slices.Contains(c.sections, "breakdown") {
		if tpl, err := b0.Templates().Ensure(ctx, c.templates[0], nil); err == nil {
			if err := specCosts(ctx, r, c, b0, usable, tpl); err != nil {
				return err
			}
		}
	}
	if slices.Contains(c.sections, "network") {
		if err := networkRows(ctx, r, c); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	if c.density > 0 && slices.Contains(c.sections, "density") {
		if err := densityRun(ctx, r, b0, c.density); err != nil {
			return err
		}
	}
	_ = b0.Close()
	_, err = b0.GC(ctx)
	return err
}

func createRows(ctx context.Context, r *report, c benchConfig, b0 *local.Backend, usable []string, open func(string, int, string) (*local.Backend, error)) error {
	r.printf("\n### Create → ready (envd answers), milliseconds\n\n")
	r.printf("| template | runtime | mode | p50 | p90 | p99 | max | bare `%s run /bin/true` p50 | ratio p50 |\n|---|---|---|---|---|---|---|---|---|\n", "runtime")
	for _, tn := range c.templates {
		tpl, err := b0.Templates().Ensure(ctx, tn, nil)
		if err != nil {
			r.printf("| %s | | | template unavailable: %s |||||\n", tn, firstLine(err.Error()))
			continue
		}
		for _, rt := range usable {
			bare, err := bareRun(ctx, c, b0, rt, tpl)
			if err != nil {
				return fmt.Errorf("bare %s run: %w", rt, err)
			}
			bareP50 := stats.Percentile(bare, 50)
			row := func(mode string, lat []time.Duration) {
				r.printf("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f× |\n", tn, rt, mode, ms(stats.Percentile(lat, 50)), ms(stats.Percentile(lat, 90)), ms(stats.Percentile(lat, 99)), ms(stats.Percentile(lat, 100)), ms(bareP50), ms(stats.Percentile(lat, 50))/ms(bareP50))
			}
			b, err := open(rt, 0, tn)
			if err != nil {
				return err
			}
			lat, err := sequential(ctx, b, tn, c.n)
			if err != nil {
				return err
			}
			row("sequential", lat)
			lat, err = concurrent(ctx, b, tn, c.n, c.conc)
			if err != nil {
				return err
			}
			row(fmt.Sprintf("%d concurrent", c.conc), lat)
			_ = b.Close()
			bp, err := open(rt, c.pool, tn)
			if err != nil {
				return err
			}
			lat, err = pooled(ctx, bp, tn, c.n, c.pool)
			if err != nil {
				return err
			}
			row(fmt.Sprintf("pool %d, claim", c.pool), lat)
			_ = bp.Close()
		}
	}
	r.printf("\nThe bare baseline is `%s run` of a bundle with the same root filesystem (host template: the same read-only system binds), no user namespace, no seccomp, no cgroup limits, no disk image: the runtime's own floor on this machine. A sandbox adds the disk image (mkfs + loop mount), the idmapped overlay, the seccomp profile, the user namespace, and envd's start.\n", "runtime")
	return nil
}

func probe(ctx context.Context, b *local.Backend, rt string) error {
	s, err := b.Create(ctx, local.Options{Runtime: rt})
	if err != nil {
		return err
	}
	return s.Kill(ctx)
}

func sequential(ctx context.Context, b *local.Backend, tpl string, n int) ([]time.Duration, error) {
	var lat []time.Duration
	for i := 0; i < n+1; i++ {
		start := time.Now()
		s, err := b.Create(ctx, local.Options{Template: tpl})
		if err != nil {
			return nil, err
		}
		d := time.Since(start)
		if i > 0 { // the first warms caches
			lat = append(lat, d)
		}
		if err := s.Kill(ctx); err != nil {
			return nil, err
		}
	}
	return lat, nil
}

func concurrent(ctx context.Context, b *local.Backend, tpl string, n, conc int) ([]time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i := 0; i < n; i++ {
		g.Go(func() error {
			start := time.Now()
			s, err := b.Create(gctx, local.Options{Template: tpl})
			if err != nil {
				return err
			}
			d := time.Since(start)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
			return s.Kill(gctx)
		})
	}
	return lat, g.Wait()
}

// pooled measures claims from a full pool: between claims (not timed) the pool refills.
func pooled(ctx context.Context, b *local.Backend, tpl string, n, size int) ([]time.Duration, error) {
	var lat []time.Duration
	for i := 0; i < n; i++ {
		if err := waitPool(ctx, b, size); err != nil {
			return nil, err
		}
		start := time.Now()
		s, err := b.Create(ctx, local.Options{Template: tpl})
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
		if err := s.Kill(ctx); err != nil {
			return nil, err
		}
	}
	return lat, nil
}

func waitPool(ctx context.Context, b *local.Backend, size int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		infos, err := b.List(ctx)
		if err != nil {
			return err
		}
		c := 0
		for _, in := range infos {
			if in.Phase == local.PhasePooled {
				c++
			}
		}
		if c >= size {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("pool did not fill")
}

// bareRun times `rt run` of /bin/true in a bundle on the template's tree.
func bareRun(ctx context.Context, c benchConfig, b *local.Backend, rt string, tpl *template.Template, extra ...ocispec.Opt) ([]time.Duration, error) {
	dir, err := os.MkdirTemp(c.dataDir, "bare-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	opts := []ocispec.Opt{
		ocispec.WithProcess([]string{"/bin/true"}, []string{"PATH=" + ocispec.DefaultPath}, "/"),
		ocispec.WithRootfs(tpl.Rootfs(), true),
		func(s *specs.Spec) error {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}}
			s.Linux.CgroupsPath = "/agent-bench-bare/" + filepath.Base(dir)
			return nil
		},
		ocispec.WithDefaultMounts(),
	}
	for _, d := range tpl.HostBinds {
		opts = append(opts, ocispec.WithReadonlyBind(d, d))
	}
	opts = append(opts, extra...)
	spec, err := ocispec.New(opts...)
	if err != nil {
		return nil, err
	}
	if err := ocispec.Write(dir, spec); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "state")
	var lat []time.Duration
	for i := 0; i < 31; i++ {
		id := fmt.Sprintf("bare%d", i)
		start := time.Now()
		out, err := exec.CommandContext(ctx, rt, "--root", root, "run", "--bundle", dir, id).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, out)
		}
		if i > 0 {
			lat = append(lat, time.Since(start))
		}
	}
	_ = b.Cgroups().Remove(ctx, "/agent-bench-bare")
	return lat, nil
}

// specCosts times `rt run /bin/true` with each group of the sandbox spec's options added alone, and
// all together, to show where a sandbox's start time goes.
func specCosts(ctx context.Context, r *report, c benchConfig, b *local.Backend, rts []string, tpl *template.Template) error {
	userns := func(s *specs.Spec) error {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace}, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		return ocispec.WithUserNamespace(local.DefaultUIDBase, local.UIDRange)(s)
	}
	seccomp := []ocispec.Opt{ocispec.WithCapabilities(ocispec.DefaultCapabilities()), ocispec.WithSeccompDefault()}
	resources := ocispec.WithResources("/agent-bench-bare/r", ocispec.Resources{MemoryBytes: local.DefaultMemory, Pids: local.DefaultPids, CPUs: local.DefaultCPUs})
	variants := []struct {
		name string
		opts []ocispec.Opt
	}{
		{"bare (namespaces, default mounts)", nil},
		{"+ user namespace", []ocispec.Opt{userns}},
		{"+ capabilities + seccomp profile", seccomp},
		{"+ masked/read-only paths", []ocispec.Opt{ocispec.WithMaskedPaths()}},
		{"+ cgroup limits", []ocispec.Opt{resources}},
		{"all of the above", append([]ocispec.Opt{userns, ocispec.WithMaskedPaths(), resources}, seccomp...)},
	}
	r.printf("\n### Where the runtime's time goes: `run /bin/true` (%s template rootfs), p50 ms\n\n| spec | %s |\n|---|%s\n", tpl.Name, strings.Join(rts, " | "), strings.Repeat("---|", len(rts)))
	// Three interleaved rounds, so a slow spell of a shared machine does not land on one row.
	lat := map[string][]time.Duration{}
	for round := 0; round < 3; round++ {
		for _, v := range variants {
			for _, rt := range rts {
				l, err := bareRun(ctx, c, b, rt, tpl, v.opts...)
				if err != nil {
					return fmt.Errorf("%s %s: %w", rt, v.name, err)
				}
				lat[rt+v.name] = append(lat[rt+v.name], l...)
			}
		}
	}
	for _, v := range variants {
		cells := []string{}
		for _, rt := range rts {
			cells = append(cells, fmt.Sprintf("%.1f", ms(stats.Percentile(lat[rt+v.name], 50))))
		}
		r.printf("| %s | %s |\n", v.name, strings.Join(cells, " | "))
	}
	return nil
}

func densityRun(ctx context.Context, r *report, b *local.Backend, n int) error {
	r.printf("\n### Density: %d idle sandboxes (host template, runc, default limits)\n\n", n)
	sync0()
	before, slabBefore := hostinfo.Meminfo("MemAvailable"), hostinfo.Meminfo("Slab")
	start := time.Now()
	var all []*local.Sandbox
	for i := 0; i < n; i++ {
		s, err := b.Create(ctx, local.Options{})
		if err != nil {
			for _, s := range all {
				_ = s.Kill(ctx)
			}
			return fmt.Errorf("density: sandbox %d: %w", i, err)
		}
		all = append(all, s)
	}
	created := time.Since(start)
	time.Sleep(3 * time.Second)
	sync0()
	after, slabAfter := hostinfo.Meminfo("MemAvailable"), hostinfo.Meminfo("Slab")
	var cg, pss int64
	for _, s := range all {
		cg += s.Stats().MemoryBytes
		pss += pssOf(s.Record().InitPid)
	}
	start = time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, s := range all {
		g.Go(func() error { return s.Kill(gctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	killed := time.Since(start)
	per := float64(before-after) / float64(n)
	mib := func(v float64) float64 { return v / (1 << 20) }
	r.printf("| sandboxes | create all | kill all (8 at a time) | cgroup memory per sandbox | envd Pss per sandbox | kernel slab per sandbox | host MemAvailable drop per sandbox |\n|---|---|---|---|---|---|---|\n")
	r.printf("| %d | %.1f s | %.1f s | %.2f MiB | %.2f MiB | %.2f MiB | %.2f MiB |\n", n, created.Seconds(), killed.Seconds(),
		mib(float64(cg)/float64(n)), mib(float64(pss)/float64(n)), mib(float64(slabAfter-slabBefore)/float64(n)), mib(per))
	r.printf("\nThe cgroup figure is what each sandbox is charged (envd's memory plus the kernel memory its processes allocate); Pss is envd's share of resident memory (its binary's pages are shared by all sandboxes); slab is the host-wide kernel object growth (namespaces, mounts, overlay, ext4, loop devices) divided by the count. MemAvailable is host-wide, read after dropping the page cache, and moves with everything else running on the machine: on a shared machine it is the least reliable of the four.\n")
	return nil
}

// pssOf reads a process's proportional set size.
func pssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func sync0() {
	exec.Command("sync").Run()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	time.Sleep(time.Second)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
