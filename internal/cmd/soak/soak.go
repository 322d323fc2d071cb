package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox/local"
)

// Bounds of one round: a runner that does not end in roundTimeout is interrupted (SIGINT), then
// killed after interruptGrace; leaks get leakGrace to go away after a round.
const (
	roundTimeout   = 25 * time.Minute
	interruptGrace = 2 * time.Minute
	leakGrace      = 60 * time.Second
	// fakenetPause lets other users of the host-wide fake internet lock in between rounds.
	fakenetPause = 3 * time.Second
)

type soak struct {
	cfg    config
	root   string
	scope  leakcheck.Scope
	base   *leakcheck.Snapshot
	canary *canary
	start  time.Time

	mu      sync.Mutex
	samples []sample
}

// sample is one look at the runner and the host.
type sample struct {
	At        time.Duration `json:"at"`
	Round     int           `json:"round"`
	RunnerRSS int64         `json:"runner_rss"`
	RunnerFDs int           `json:"runner_fds"`
	Threads   int           `json:"runner_threads"`
	Avail     int64         `json:"host_mem_available"`
	Unreclaim int64         `json:"host_sunreclaim"`
	MemCgs    int           `json:"memory_cgroups"`
	Sandboxes int           `json:"sandboxes"`
}

// settled is the host's kernel memory once the page cache is dropped: memory cgroups removed while
// page cache was charged to them stay (dying, counted in SUnreclaim) until their pages go.
type settled struct {
	Unreclaim int64
	Avail     int64
	MemCgs    int
}

// settle drops the page cache (when allowed) and reads the host's kernel memory.
func (s *soak) settle() settled {
	if s.cfg.dropCaches {
		_ = exec.Command("sync").Run()
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
		time.Sleep(5 * time.Second)
	}
	return settled{Unreclaim: meminfo("SUnreclaim:"), Avail: meminfo("MemAvailable:"), MemCgs: memoryCgroups()}
}

// memoryCgroups counts the memory controller's cgroups, dying ones included (/proc/cgroups).
func memoryCgroups() int {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "memory" {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return 0
}

// roundResult is what one round did and what was found.
type roundResult struct {
	N          int
	Started    time.Time
	Duration   time.Duration
	Waited     time.Duration // for the host-wide fake internet, before the round
	Exit       int
	Crash      string
	Expected   int
	Results    int
	Summary    *runner.Summary
	Outcomes   map[string]map[string]int // kind → outcome → count
	Unexpected []string
	Leaks      []string
	Violations []string
	Refused    int // network refusals recorded by the two network tasks
	PeakRSS    int64
	PeakFDs    int
	Avail      int64
	Unreclaim  int64
	MemCgs     int
}

// result is the whole soak.
type result struct {
	cfg        config
	machine    string
	started    time.Time
	ended      time.Time
	rounds     []*roundResult
	samples    []sample
	kinds      []kind
	gc         string
	finalLeaks []string
	notes      []string
	// before and after are the host settled before the first round and after the last.
	before, after settled
}

func (s *soak) run(ctx context.Context) (*result, error) {
	s.start = time.Now()
	res := &result{cfg: s.cfg, machine: machine(), started: s.start}
	if err := s.warmUp(ctx); err != nil {
		return nil, err
	}
	var err error
	if s.canary, err = startCanary(); err != nil {
		return nil, err
	}
	defer s.canary.close()
	res.before = s.settle()
	s.scope = localenv.Scope(s.cfg.dataDir)
	s.scope.ProcessCgroupPrefixes = []string{local.CgroupParentFor(s.cfg.dataDir) + "/"}
	if s.base, err = leakcheck.Take(s.scope); err != nil {
		return nil, fmt.Errorf("leak baseline: %w", err)
	}
	deadline := s.start.Add(s.cfg.duration)
	var last time.Duration
	for n := 1; ctx.Err() == nil; n++ {
		if n > 1 && time.Now().Add(last).After(deadline) {
			break
		}
		rr, kinds, err := s.round(ctx, n, deadline)
		if rr != nil {
			res.rounds = append(res.rounds, rr)
			last = rr.Duration
			slog.Info("round ended", "round", n, "took", rr.Duration.Round(time.Second), "results", rr.Results,
				"expected", rr.Expected, "unexpected", len(rr.Unexpected), "leaks", len(rr.Leaks), "violations", len(rr.Violations), "crash", rr.Crash)
		}
		if kinds != nil {
			res.kinds = kinds
		}
		if err != nil {
			res.notes = append(res.notes, fmt.Sprintf("round %d could not run: %v", n, err))
			break
		}
	}
	// GC from a separate process must find nothing of the soak's left to reclaim.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	out, gerr := exec.CommandContext(gctx, s.cfg.binary, "sandbox", "gc", "--data-dir", s.cfg.dataDir).CombinedOutput()
	cancel()
	res.gc = strings.TrimSpace(string(out))
	if gerr != nil {
		res.gc += fmt.Sprintf(" (%v)", gerr)
	}
	res.finalLeaks = s.leaks(context.WithoutCancel(ctx))
	res.ended = time.Now()
	res.after = s.settle()
	s.mu.Lock()
	res.samples = slices.Clone(s.samples)
	s.mu.Unlock()
	if ctx.Err() != nil {
		res.notes = append(res.notes, "interrupted before its time was up")
	}
	return res, nil
}

// warmUp creates and kills one sandbox, so the data dir's state directories and the host
// template exist before the leak baseline.
func (s *soak) warmUp(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.dataDir, 0o711); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	b, err := local.New(wctx, local.Config{DataDir: s.cfg.dataDir, Binary: s.cfg.binary})
	if err != nil {
		return fmt.Errorf("opening the data dir: %w", err)
	}
	defer b.Close()
	sb, err := b.Create(wctx, local.Options{})
	if err != nil {
		return fmt.Errorf("warm-up sandbox: %w", err)
	}
	return sb.Kill(wctx)
}

// round runs one `agent run` and checks what it left.
func (s *soak) round(ctx context.Context, n int, deadline time.Time) (*roundResult, []kind, error) {
	dir := filepath.Join(s.cfg.work, fmt.Sprintf("round-%03d", n))
	suite, out := filepath.Join(dir, "suite"), filepath.Join(dir, "results")
	if err := os.MkdirAll(suite, 0o755); err != nil {
		return nil, nil, err
	}
	kinds, err := writeSuite(s.root, suite, s.canary.port, s.cfg.repeat)
	if err != nil {
		return nil, nil, err
	}
	var scs []*llmtest.Scenario
	for _, k := range kinds {
		k.scenario.Latency = llmtest.Duration(s.cfg.latency)
		scs = append(scs, k.scenario)
	}
	// A server per round: it records every request, so its memory is bounded by one round.
	srv, err := llmtest.NewServer(scs...)
	if err != nil {
		return nil, nil, err
	}
	defer srv.Close()
	waitStart := time.Now()
	in, err := startFakenet(ctx, deadline)
	if err != nil {
		return nil, nil, fmt.Errorf("fake internet: %w", err)
	}
	waited := time.Since(waitStart)
	defer func() {
		in.Close()
		time.Sleep(fakenetPause)
	}()
	canaryBefore := s.canary.hits.Load()

	rr := &roundResult{N: n, Started: time.Now(), Waited: waited, Outcomes: map[string]map[string]int{}}
	for _, k := range kinds {
		rr.Expected += k.repeat
	}
	logf, err := os.Create(filepath.Join(dir, "runner.log"))
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	rctx, cancel := context.WithTimeout(ctx, roundTimeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, s.cfg.binary, "run", "--data-dir", s.cfg.dataDir, "-j", strconv.Itoa(s.cfg.concurrency),
		"-o", out, "--base-url", srv.URL(), "--api-key-env", "SOAK_LLM_KEY", "--exit-zero", suite)
	cmd.Env = append(os.Environ(), "SOAK_LLM_KEY=soak", "AGENT_DNS="+in.Upstream().String())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = interruptGrace
	slog.Info("round starting", "round", n, "tasks", rr.Expected, "concurrency", s.cfg.concurrency)
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting agent run: %w", err)
	}
	stopSampling := s.sampleWhile(n, cmd.Process.Pid, rr)
	werr := cmd.Wait()
	stopSampling()
	rr.Duration = time.Since(rr.Started)
	var ee *exec.ExitError
	switch {
	case errors.As(werr, &ee):
		rr.Exit = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			rr.Crash = "killed by " + ws.Signal().String()
		}
	case werr != nil:
		rr.Crash = werr.Error()
	}
	if rr.Crash == "" && rr.Exit != 0 {
		rr.Crash = fmt.Sprintf("exit %d", rr.Exit)
	}
	switch {
	case ctx.Err() != nil:
		// The soak itself was interrupted, and interrupted the runner: not a crash (the
		// interrupted tasks are reported as not finished).
		rr.Crash = ""
	case rctx.Err() != nil:
		rr.Crash = strings.TrimSpace(rr.Crash + " (round timed out)")
	}
	if log, err := os.ReadFile(filepath.Join(dir, "runner.log")); err == nil {
		for _, marker := range []string{"panic:", "fatal error:", "DATA RACE"} {
			if bytes.Contains(log, []byte(marker)) {
				rr.Crash = strings.TrimSpace(rr.Crash + " (runner log has " + marker + ")")
			}
		}
	}

	s.account(rr, out, kinds)
	s.inspect(rr, out, in, canaryBefore)
	rr.Leaks = s.leaks(ctx)
	rr.Avail, rr.Unreclaim, rr.MemCgs = meminfo("MemAvailable:"), meminfo("SUnreclaim:"), memoryCgroups()
	findings := rr.Crash != "" || len(rr.Unexpected)+len(rr.Leaks)+len(rr.Violations) > 0 || rr.Results != rr.Expected
	if !findings && !s.cfg.keep {
		_ = os.RemoveAll(dir)
	} else if findings {
		slog.Warn("round has findings; its results are kept", "dir", dir)
	}
	return rr, kinds, nil
}

// startFakenet builds the fake internet, waiting for other users of it (the security battery, the
// network tests: there is one per host) until deadline.
func startFakenet(ctx context.Context, deadline time.Time) (*fakenet.Internet, error) {
	type started struct {
		in  *fakenet.Internet
		err error
	}
	for {
		ch := make(chan started, 1)
		// fakenet.Start waits for the host-wide lock without a context; an abandoned start
		// closes what it gets.
		go func() {
			in, err := fakenet.Start()
			ch <- started{in, err}
		}()
		select {
		case r := <-ch:
			if r.err == nil {
				return r.in, nil
			}
			if time.Now().After(deadline) {
				return nil, r.err
			}
			slog.Warn("the fake internet is busy or failed; retrying", "err", r.err)
			time.Sleep(time.Second)
		case <-ctx.Done():
			go func() {
				if r := <-ch; r.in != nil {
					r.in.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}

// account reads every task's result: each task epoch must have exactly one finished result, and
// the summary must agree.
func (s *soak) account(rr *roundResult, out string, kinds []kind) {
	var sum runner.Summary
	if err := readJSON(filepath.Join(out, runner.SummaryFile), &sum); err != nil {
		rr.Unexpected = append(rr.Unexpected, "summary.json: "+err.Error())
	} else {
		rr.Summary = &sum
		if sum.Total != rr.Expected || sum.NotRun != 0 || sum.Interrupted {
			rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("summary: total %d (want %d), not run %d, interrupted %v", sum.Total, rr.Expected, sum.NotRun, sum.Interrupted))
		}
	}
	for _, k := range kinds {
		for e := 1; e <= k.repeat; e++ {
			d := filepath.Join(out, "tasks", k.name)
			if k.repeat > 1 {
				d = filepath.Join(d, strconv.Itoa(e))
			}
			var r runner.TaskResult
			if err := readJSON(filepath.Join(d, runner.ResultFile), &r); err != nil {
				rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("%s #%d: no result: %v", k.name, e, err))
				continue
			}
			if !r.Finished() {
				rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("%s #%d: result not finished: %s %s", k.name, e, r.Status, r.Reason))
				continue
			}
			rr.Results++
			o := outcome(&r)
			if rr.Outcomes[k.name] == nil {
				rr.Outcomes[k.name] = map[string]int{}
			}
			rr.Outcomes[k.name][o]++
			if !slices.Contains(k.expect, o) {
				rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("%s #%d: %s (want %s): %s", k.name, e, o, strings.Join(k.expect, " or "), clip(r.Detail, 300)))
			}
		}
	}
	// Nothing else in tasks/: a result for a task that was not asked for is not accounted for.
	n := 0
	_ = filepath.WalkDir(filepath.Join(out, "tasks"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == runner.ResultFile {
			n++
		}
		return nil
	})
	if n != rr.Expected {
		rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("%d result.json files, want %d", n, rr.Expected))
	}
}

// inspect checks what the attacks must not have achieved.
func (s *soak) inspect(rr *roundResult, out string, in *fakenet.Internet, canaryBefore int64) {
	violate := func(format string, args ...any) { rr.Violations = append(rr.Violations, fmt.Sprintf(format, args...)) }
	if h := in.TrapHits(); len(h) > 0 {
		violate("the fake internet's traps were reached %d times (first: %+v)", len(h), h[0])
	}
	if h := in.HitsTo(fakenet.Other); len(h) > 0 {
		violate("the host no allow-list allows was reached %d times (first: %+v)", len(h), h[0])
	}
	for _, h := range in.HitsTo(fakenet.Allowed) {
		if h.Name != "" && h.Name != "allowed.test" && h.Name != fakenet.Allowed.String() && !strings.HasPrefix(h.Name, fakenet.Allowed.String()+":") {
			violate("a fronted request reached the allowed address as %q (%s)", h.Name, h.Kind)
		}
	}
	for _, q := range in.DNSQueries() {
		if strings.Contains(q, "tunnel") {
			violate("a DNS tunnel query reached the upstream resolver: %s", q)
		}
	}
	if n := s.canary.hits.Load() - canaryBefore; n > 0 {
		violate("the host's canary listener was reached %d times", n)
	}
	// Artifacts: never a symlink, never a host file's content.
	secrets := map[string]bool{}
	for _, p := range []string{"/etc/shadow", "/etc/passwd", "/etc/hostname"} {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			secrets[string(b)] = true
		}
	}
	_ = filepath.WalkDir(filepath.Join(out, "tasks"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.Contains(p, string(filepath.Separator)+runner.FilesDir+string(filepath.Separator)) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 || (!d.IsDir() && !d.Type().IsRegular()) {
			violate("collected artifact %s is not a regular file (%s)", p, d.Type())
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() < 1<<20 {
				if b, err := os.ReadFile(p); err == nil && secrets[string(b)] {
					violate("collected artifact %s holds a host file's content", p)
				}
			}
		}
		return nil
	})
	var sym runner.TaskResult
	if readJSON(filepath.Join(out, "tasks", "a-symlinks", runner.ResultFile), &sym) == nil && sym.Artifacts != nil {
		skipped := map[string]bool{}
		for _, f := range sym.Artifacts.Skipped {
			skipped[f.Path] = true
		}
		for _, p := range []string{"shadow.txt", "rootlink", "hostname.txt", "environ.txt", "out/passwd.txt"} {
			if !skipped[p] {
				rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("a-symlinks: planted symlink %s not listed as skipped", p))
			}
		}
	}
	var flood runner.TaskResult
	if readJSON(filepath.Join(out, "tasks", "a-artifact-flood", runner.ResultFile), &flood) == nil && flood.Artifacts != nil {
		if len(flood.Artifacts.Files) > 1000 || len(flood.Artifacts.Skipped) == 0 {
			violate("a-artifact-flood: %d files collected, %d skipped (bounds: 1000 files, 16 MiB a file)", len(flood.Artifacts.Files), len(flood.Artifacts.Skipped))
		}
	}
	for _, name := range []string{"a-net-allow", "a-net-internet"} {
		var r runner.TaskResult
		if readJSON(filepath.Join(out, "tasks", name, runner.ResultFile), &r) != nil {
			continue
		}
		if r.Network == nil || !r.Network.Reported || len(r.Network.Refused) == 0 {
			rr.Unexpected = append(rr.Unexpected, fmt.Sprintf("%s: no refusal recorded in result.json: %+v", name, r.Network))
			continue
		}
		rr.Refused += len(r.Network.Refused)
	}
}

// leaks compares the host with the baseline, giving what is going away leakGrace to go.
func (s *soak) leaks(ctx context.Context) []string {
	deadline := time.Now().Add(leakGrace)
	for {
		now, err := leakcheck.Take(s.scope)
		if err != nil {
			return []string{"leak check: " + err.Error()}
		}
		var leaks []string
		for _, l := range s.base.Diff(now) {
			// Interfaces and loop devices of other users of the machine; the soak's own are found
			// by sandbox id (runnertest.NetworkResources) and by backing file.
			if strings.HasPrefix(l, "network interface:") || strings.HasPrefix(l, "loop device:") && !strings.Contains(l, s.cfg.dataDir) {
				continue
			}
			leaks = append(leaks, l)
		}
		if len(leaks) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return leaks
		}
		time.Sleep(time.Second)
	}
}

// sampleWhile samples the runner (pid) and the host every cfg.sample until stopped, keeping the
// round's peaks.
func (s *soak) sampleWhile(round, pid int, rr *roundResult) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(s.cfg.sample)
		defer t.Stop()
		for {
			sm := sample{At: time.Since(s.start), Round: round, Avail: meminfo("MemAvailable:"), Unreclaim: meminfo("SUnreclaim:"),
				MemCgs: memoryCgroups(), Sandboxes: countDir(filepath.Join(s.cfg.dataDir, "sandboxes"))}
			sm.RunnerRSS, sm.Threads = procStatus(pid)
			sm.RunnerFDs = countDir(fmt.Sprintf("/proc/%d/fd", pid))
			if sm.RunnerRSS > 0 {
				s.mu.Lock()
				s.samples = append(s.samples, sm)
				s.mu.Unlock()
				rr.PeakRSS = max(rr.PeakRSS, sm.RunnerRSS)
				rr.PeakFDs = max(rr.PeakFDs, sm.RunnerFDs)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// canary listens on every host address and counts connections: a sandbox must reach none.
type canary struct {
	ln   net.Listener
	port int
	hits atomic.Int64
}

func startCanary() (*canary, error) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		return nil, fmt.Errorf("canary listener: %w", err)
	}
	c := &canary{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.hits.Add(1)
			conn.Close()
		}
	}()
	return c, nil
}

func (c *canary) close() { c.ln.Close() }

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewDecoder(f).Decode(v)
}

func countDir(p string) int {
	ents, err := os.ReadDir(p)
	if err != nil {
		return 0
	}
	return len(ents)
}

// procStatus reads a process's resident set size (bytes) and thread count.
func procStatus(pid int) (rss int64, threads int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return rss, threads
}

func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// machine describes the host without naming it.
func machine() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	rt := ""
	if out, err := exec.Command("runc", "--version").Output(); err == nil {
		rt = strings.SplitN(string(out), "\n", 2)[0]
	}
	cpus := 0
	if b, err := os.ReadFile("/sys/fs/cgroup/cpuset/cpuset.effective_cpus"); err == nil {
		cpus = countCPUs(strings.TrimSpace(string(b)))
	}
	if cpus == 0 {
		cpus = countCPUs(readTrim("/sys/devices/system/cpu/online"))
	}
	return fmt.Sprintf("%d CPUs (%s), %d GiB RAM, Linux %s, %s", cpus, model, meminfo("MemTotal:")>>30, strings.TrimSpace(string(kernel)), rt)
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// countCPUs counts a cpu list like "0-1,4".
func countCPUs(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if ok {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		n += b - a + 1
	}
	return n
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
