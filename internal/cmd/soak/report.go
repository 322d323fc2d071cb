package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Stability bounds: the runner's peak RSS and open files in the last third of the rounds against
// the first third.
const (
	rssGrowth   = 1.5
	rssSlack    = 32 << 20
	fdsGrowth   = 1.5
	fdsSlack    = 16
	minRoundsOK = 1
	// kernelSlack bounds the growth of the host's settled unreclaimable kernel memory (the
	// machine is shared: others' work moves it too).
	kernelSlack = 64 << 20
)

// hostStable compares the host's settled kernel memory after the soak with before.
func (r *result) hostStable() (ok bool, why string) {
	b, a := r.before, r.after
	ok = a.Unreclaim <= b.Unreclaim+kernelSlack
	why = fmt.Sprintf("unreclaimable kernel memory %s before the first round, %s after the last; memory cgroups (dying ones included) %d, then %d; MemAvailable %s, then %s",
		mib(b.Unreclaim), mib(a.Unreclaim), b.MemCgs, a.MemCgs, mib(b.Avail), mib(a.Avail))
	if r.cfg.dropCaches {
		why += " (each read after dropping the page cache)"
	}
	return ok, why
}

func (r *result) tasks() (run, results int) {
	for _, rr := range r.rounds {
		run += rr.Expected
		results += rr.Results
	}
	return run, results
}

// stable compares the runner's peaks late in the soak with early ones.
func (r *result) stable() (ok bool, why string) {
	n := len(r.rounds)
	if n < 2 {
		return true, "one round: nothing to compare"
	}
	third := max(1, n/3)
	early, late := r.rounds[:third], r.rounds[n-third:]
	peak := func(rs []*roundResult, f func(*roundResult) int64) int64 {
		var m int64
		for _, rr := range rs {
			m = max(m, f(rr))
		}
		return m
	}
	rssE, rssL := peak(early, func(rr *roundResult) int64 { return rr.PeakRSS }), peak(late, func(rr *roundResult) int64 { return rr.PeakRSS })
	fdE, fdL := peak(early, func(rr *roundResult) int64 { return int64(rr.PeakFDs) }), peak(late, func(rr *roundResult) int64 { return int64(rr.PeakFDs) })
	ok = float64(rssL) <= float64(rssE)*rssGrowth+rssSlack && float64(fdL) <= float64(fdE)*fdsGrowth+fdsSlack
	why = fmt.Sprintf("runner peak RSS %s in the first %d round(s), %s in the last %d; peak open files %d, then %d",
		mib(rssE), third, mib(rssL), third, fdE, fdL)
	return ok, why
}

func (r *result) counts() (crashes, leaks, violations, unexpected int) {
	for _, rr := range r.rounds {
		if rr.Crash != "" {
			crashes++
		}
		leaks += len(rr.Leaks)
		violations += len(rr.Violations)
		unexpected += len(rr.Unexpected)
	}
	return crashes, leaks + len(r.finalLeaks), violations, unexpected
}

func (r *result) ok() bool {
	crashes, leaks, violations, unexpected := r.counts()
	run, results := r.tasks()
	stable, _ := r.stable()
	host, _ := r.hostStable()
	return host && len(r.rounds) >= minRoundsOK && crashes == 0 && leaks == 0 && violations == 0 && unexpected == 0 && run == results && stable && len(r.notes) == 0
}

func (r *result) verdict() string {
	crashes, leaks, violations, unexpected := r.counts()
	run, results := r.tasks()
	v := "PASS"
	if !r.ok() {
		v = "FAIL"
	}
	return fmt.Sprintf("%s: %d rounds, %d tasks run, %d results, %d crashes, %d leaks, %d containment violations, %d unexpected outcomes",
		v, len(r.rounds), run, results, crashes, leaks, violations, unexpected)
}

func writeReport(path string, r *result) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	run, results := r.tasks()
	crashes, leaks, violations, unexpected := r.counts()
	stable, why := r.stable()
	p("# Soak\n\nWritten by `make soak` (`scripts/soak.sh`, `internal/cmd/soak`). Not part of `make test`.\n\n")
	p("**%s**\n\n", r.verdict())
	p("- Machine: %s (shared with other work while the soak ran).\n", r.machine)
	p("- Date: %s, for %s (bound %s; no round starts that would end after it).\n", r.started.UTC().Format("2006-01-02 15:04 UTC"),
		r.ended.Sub(r.started).Round(time.Second), r.cfg.duration)
	p("- Each round: one `agent run` (the real binary, runc, host template) with `--concurrency %d` over %d task epochs: "+
		"the ten example tasks × %d, played back from their recorded transcripts, and %d hostile tasks; scripted model latency %s per answer.\n",
		r.cfg.concurrency, perRound(r), r.cfg.repeat, countAttacks(r.kinds), r.cfg.latency)
	p("- Rounds: %d; tasks run: %d; results: %d (every task epoch has exactly one finished `result.json`, and `summary.json` agrees).\n", len(r.rounds), run, results)
	p("- Crashes of the runner: %d. Leaks found: %d. Containment violations: %d. Unexpected outcomes: %d.\n", crashes, leaks, violations, unexpected)
	p("- Runner memory and files: %s — %s.\n", why, map[bool]string{true: "stable", false: "**growing**"}[stable])
	hostOK, hostWhy := r.hostStable()
	p("- Host: %s — %s (bound: +%s).\n", hostWhy, map[bool]string{true: "stable", false: "**growing**"}[hostOK], mib(kernelSlack))
	p("- `agent sandbox gc` afterwards: %s\n", orNone(r.gc))
	var waited time.Duration
	for _, rr := range r.rounds {
		waited += rr.Waited
	}
	if waited >= time.Second {
		p("- Time spent waiting between rounds for the host-wide fake internet (held by other tests on the machine): %s.\n", waited.Round(time.Second))
	}
	for _, n := range r.notes {
		p("- Note: %s\n", n)
	}

	p("\n## Tasks\n\n| task | kind | runs | outcomes | expected |\n|---|---|---|---|---|\n")
	total := map[string]map[string]int{}
	for _, rr := range r.rounds {
		for k, m := range rr.Outcomes {
			if total[k] == nil {
				total[k] = map[string]int{}
			}
			for o, c := range m {
				total[k][o] += c
			}
		}
	}
	for _, k := range r.kinds {
		kind := "normal (recorded transcript)"
		if k.attack {
			kind = "attack"
		}
		var outs []string
		n := 0
		for _, o := range sortedKeys(total[k.name]) {
			outs = append(outs, fmt.Sprintf("%s ×%d", o, total[k.name][o]))
			n += total[k.name][o]
		}
		p("| %s | %s | %d | %s | %s |\n", k.name, kind, n, orNone(strings.Join(outs, ", ")), strings.Join(k.expect, " or "))
	}
	p("\nWhat the hostile tasks do (each `run_commands` call is the scripted model's): `a-fork-bomb` a shell fork bomb under `pids: 64`; " +
		"`a-memory-bomb` Python allocating 16 MiB blocks under `memory: 128MiB`; `a-disk-fill` `dd` until the 128 MiB quota is full; " +
		"`a-output-flood` 100 MB to stdout and 20 MB to stderr from the agent's command and 20 MB from a check; `a-artifact-flood` 3000 files and a 20 MB file; " +
		"`a-symlinks` symlinks to `/etc/shadow`, `/`, `/proc/1/root/…`, `/proc/self/environ`, a relative `../../…/etc/passwd`, a hard link, and a background racer swapping a file for a symlink during collection; " +
		"`a-net-allow` (`allow: [allowed.test]`) fetches the allowed name over HTTP and TLS, then tries other names, raw addresses, SNI and Host fronting, a DNS tunnel, private ranges, the metadata address, UDP, and the host (its gateway address, the fake internet's host address, a canary port listening on every host address); " +
		"`a-net-internet` the same escapes under `internet`.\n")
	p("\nAfter every round the soak checks: the fake internet's traps (10.1.2.3, 172.16.5.4, 192.168.7.8, 100.64.1.1, 169.254.169.254) and the host no allow-list allows saw nothing, " +
		"no fronted name reached the allowed host, no tunnel query reached the upstream resolver, the host canary saw no connection, no collected artifact is a symlink or holds a host file, " +
		"the planted symlinks are listed as skipped, the artifact bounds held, and both network tasks' `result.json` recorded refusals.\n")

	p("\n## Rounds\n\n| round | duration | tasks | results | passed | failed | error | network refusals recorded | unexpected | leaks | violations | runner peak RSS | runner peak fds | host MemAvailable after | host SUnreclaim after | memory cgroups after |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, rr := range r.rounds {
		var pa, fa, er int
		if rr.Summary != nil {
			pa, fa, er = rr.Summary.Passed, rr.Summary.Failed, rr.Summary.Error
		}
		crash := ""
		if rr.Crash != "" {
			crash = " (" + rr.Crash + ")"
		}
		p("| %d%s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %d | %s | %s | %d |\n", rr.N, crash, rr.Duration.Round(time.Second), rr.Expected, rr.Results,
			pa, fa, er, rr.Refused, len(rr.Unexpected), len(rr.Leaks), len(rr.Violations), mib(rr.PeakRSS), rr.PeakFDs, mib(rr.Avail), mib(rr.Unreclaim), rr.MemCgs)
	}

	p("\n## Samples\n\nThe runner (`agent run`) and the host, sampled every %s while a round ran (%d samples); here, for each minute, the sample with the runner's largest RSS.\n\n", r.cfg.sample, len(r.samples))
	p("| time | round | runner RSS | runner fds | runner threads | live sandboxes | host MemAvailable | host SUnreclaim | memory cgroups |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range perMinute(r.samples) {
		p("| %s | %d | %s | %d | %d | %d | %s | %s | %d |\n", fmtAt(s.At), s.Round, mib(s.RunnerRSS), s.RunnerFDs, s.Threads, s.Sandboxes, mib(s.Avail), mib(s.Unreclaim), s.MemCgs)
	}
	p("\nThe host's unreclaimable kernel memory (SUnreclaim) rises while the soak runs and the memory cgroup count with it: a sandbox's memory cgroup, once removed, stays as a dying cgroup for as long as page cache written by the sandbox is charged to it, and the kernel frees it when it reclaims those pages (under memory pressure, or when the page cache is dropped). The settled figures above, read after dropping the page cache, are the ones compared.\n")

	if unexpected+violations+leaks > 0 || crashes > 0 {
		p("\n## Findings\n\n")
		for _, rr := range r.rounds {
			for _, l := range listed("crash", nonEmpty(rr.Crash), rr.N) {
				p("%s\n", l)
			}
			for _, l := range listed("unexpected", rr.Unexpected, rr.N) {
				p("%s\n", l)
			}
			for _, l := range listed("violation", rr.Violations, rr.N) {
				p("%s\n", l)
			}
			for _, l := range listed("leak", rr.Leaks, rr.N) {
				p("%s\n", l)
			}
		}
		for _, l := range r.finalLeaks {
			p("- after the soak: leak: %s\n", l)
		}
	}
	p("\nLeaks are looked for after every round and once more after `agent sandbox gc`, scoped to the soak's data directory: mounts, cgroups, processes (by data dir and by the sandboxes' cgroups), loop devices, files under the sandbox state directories, and each sandbox's network (its link, nftables table, egress helper and address lease, found by sandbox id).\n")
	p("\nRerun: `make soak` (30 minutes), or `SOAK_DURATION=5m make soak`; `SOAK_CONCURRENCY`, `SOAK_ARGS` pass more flags to `internal/cmd/soak`.\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// perMinute keeps, for each minute, the sample with the runner's largest RSS (samples taken while
// the runner was still starting are left out).
func perMinute(samples []sample) []sample {
	var out []sample
	for _, s := range samples {
		if s.RunnerRSS < 4<<20 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].At/time.Minute == s.At/time.Minute {
			if s.RunnerRSS > out[n-1].RunnerRSS {
				out[n-1] = s
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

func listed(what string, items []string, round int) []string {
	var out []string
	for i, it := range items {
		if i == 20 {
			out = append(out, fmt.Sprintf("- round %d: … and %d more", round, len(items)-20))
			break
		}
		out = append(out, fmt.Sprintf("- round %d: %s: %s", round, what, strings.ReplaceAll(clip(it, 400), "|", `\|`)))
	}
	return out
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func perRound(r *result) int {
	n := 0
	for _, k := range r.kinds {
		n += k.repeat
	}
	return n
}

func countAttacks(ks []kind) int {
	n := 0
	for _, k := range ks {
		if k.attack {
			n++
		}
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func orNone(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func fmtAt(d time.Duration) string {
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
