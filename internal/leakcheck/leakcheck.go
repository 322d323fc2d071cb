// Package leakcheck snapshots the host resources sandboxes use — mounts, cgroups, processes, loop
// devices, network interfaces, nftables rules and the files under a data directory — so a test can
// compare the host before and after and name whatever was left behind.
package leakcheck

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/local/mounts"
)

// Scope limits what a snapshot looks at, so unrelated activity on a shared host is not reported.
// Empty fields mean "everything of that kind".
type Scope struct {
	// MountPrefixes: only mount points under these paths.
	MountPrefixes []string
	// CgroupPrefixes: only cgroups whose path (relative to the hierarchy root) starts with these.
	CgroupPrefixes []string
	// ProcessMarkers: only processes whose command line contains one of these strings, plus
	// processes in a cgroup under one of ProcessCgroupPrefixes, plus (with Descendants) this
	// process's descendants. Markers and cgroup prefixes both empty: every process.
	ProcessMarkers        []string
	ProcessCgroupPrefixes []string
	Descendants           bool
	// DataDirs: files and directories under these paths.
	DataDirs []string
	// LinkPrefixes: only network interfaces whose name starts with one of these (empty: all).
	LinkPrefixes []string
	// SkipLinks and SkipNft skip network interfaces and the nftables ruleset: both are host-wide,
	// so on a shared host another suite's network tests show up as changes.
	SkipLinks bool
	SkipNft   bool
	// Extra, when set, lists further resources (as strings) to compare, e.g. registry entries.
	Extra func() []string
}

// Snapshot is the state of the host resources in scope at one moment.
type Snapshot struct {
	Mounts    []string
	Cgroups   []string
	Processes []string
	Loops     []string
	Links     []string
	Nft       string
	Files     []string
	Extra     []string
}

// Take records the host's state within scope.
func Take(sc Scope) (*Snapshot, error) {
	s := &Snapshot{}
	var err error
	if s.Mounts, err = mountPoints(sc); err != nil {
		return nil, err
	}
	s.Cgroups = cgroupDirs(sc)
	s.Processes = processes(sc)
	s.Loops = loops(sc)
	if !sc.SkipLinks {
		s.Links = links(sc)
	}
	if !sc.SkipNft {
		s.Nft = nftRuleset()
	}
	for _, d := range sc.DataDirs {
		var dev uint64
		if fi, err := os.Stat(d); err == nil {
			dev = devOf(fi)
		}
		_ = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err != nil || p == d {
				return nil
			}
			s.Files = append(s.Files, p)
			// Mounts are reported as mounts; do not walk into them.
			if de.IsDir() {
				if fi, err := de.Info(); err == nil && devOf(fi) != dev {
					return filepath.SkipDir
				}
			}
			return nil
		})
	}
	slices.Sort(s.Files)
	if sc.Extra != nil {
		s.Extra = sc.Extra()
		slices.Sort(s.Extra)
	}
	return s, nil
}

// Diff lists what after has that s (the baseline) has not.
func (s *Snapshot) Diff(after *Snapshot) []string {
	var out []string
	add := func(kind string, before, now []string) {
		have := map[string]bool{}
		for _, x := range before {
			have[x] = true
		}
		for _, x := range now {
			if !have[x] {
				out = append(out, kind+": "+x)
			}
		}
	}
	add("mount", s.Mounts, after.Mounts)
	add("cgroup", s.Cgroups, after.Cgroups)
	add("process", s.Processes, after.Processes)
	add("loop device", s.Loops, after.Loops)
	add("network interface", s.Links, after.Links)
	add("file", s.Files, after.Files)
	add("other", s.Extra, after.Extra)
	if s.Nft != after.Nft {
		out = append(out, "nftables ruleset changed")
	}
	return out
}

// grace is how long a check waits for what is left to go: processes and mounts of a sandbox that
// was just killed take a moment to disappear.
const grace = 15 * time.Second

// Check takes a baseline now and, at test cleanup, fails the test if anything in scope remains
// that was not there before (after waiting up to grace for it to go).
func Check(t testing.TB, sc Scope) {
	t.Helper()
	t.Cleanup(Baseline(t, sc))
}

// Baseline takes a baseline now and returns the check to call once everything the test made
// should be gone: it fails the test if anything in scope remains that was not there before (after
// waiting up to grace for it to go).
func Baseline(t testing.TB, sc Scope) func() {
	t.Helper()
	base, err := Take(sc)
	if err != nil {
		t.Fatalf("leakcheck baseline: %v", err)
	}
	return func() {
		t.Helper()
		var leaks []string
		deadline := time.Now().Add(grace)
		for {
			now, err := Take(sc)
			if err != nil {
				t.Errorf("leakcheck: %v", err)
				return
			}
			leaks = base.Diff(now)
			if len(leaks) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(leaks) > 0 {
			if len(leaks) > 50 {
				leaks = append(leaks[:50], fmt.Sprintf("… and %d more", len(leaks)-50))
			}
			t.Errorf("leaked host resources:\n  %s", strings.Join(leaks, "\n  "))
		}
	}
}

func devOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}

func under(p string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, pre := range prefixes {
		if p == pre || strings.HasPrefix(p, strings.TrimSuffix(pre, "/")+"/") || strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func mountPoints(sc Scope) ([]string, error) {
	table, err := mounts.Table()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range table {
		if under(m.Point, sc.MountPrefixes) {
			out = append(out, m.Point+" ("+m.FSType+")")
		}
	}
	slices.Sort(out)
	return out, nil
}

func cgroupDirs(sc Scope) []string {
	roots := map[string]bool{}
	if table, err := mounts.Table(); err == nil {
		for _, m := range table {
			if m.FSType == "cgroup" || m.FSType == "cgroup2" {
				roots[m.Point] = true
			}
		}
	}
	var out []string
	for root := range roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || p == root {
				return nil
			}
			rel := strings.TrimPrefix(p, root)
			if under(rel, sc.CgroupPrefixes) {
				out = append(out, p)
			}
			return nil
		})
	}
	slices.Sort(out)
	return out
}

func processes(sc Scope) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	type info struct {
		ppid int
		uid  uint64
		cmd  string
	}
	all := map[int]info{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var in info
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				in.ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(l, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					in.uid, _ = strconv.ParseUint(f[0], 10, 32)
				}
			}
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		in.cmd = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		all[pid] = in
	}
	descendant := func(pid int) bool {
		for i := 0; i < 64 && pid > 1; i++ {
			if pid == self {
				return true
			}
			pid = all[pid].ppid
		}
		return false
	}
	var out []string
	for pid, in := range all {
		if pid == self || in.cmd == "" {
			continue
		}
		keep := (sc.Descendants && descendant(pid)) || inCgroups(pid, sc.ProcessCgroupPrefixes)
		for _, m := range sc.ProcessMarkers {
			if strings.Contains(in.cmd, m) {
				keep = true
			}
		}
		if len(sc.ProcessMarkers) == 0 && len(sc.ProcessCgroupPrefixes) == 0 {
			keep = true
		}
		if keep {
			c := in.cmd
			if len(c) > 200 {
				c = c[:200]
			}
			out = append(out, fmt.Sprintf("%d %s", pid, c))
		}
	}
	slices.Sort(out)
	return out
}

// inCgroups tells whether pid belongs to a cgroup under one of prefixes (in any hierarchy).
func inCgroups(pid int, prefixes []string) bool {
	if len(prefixes) == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 {
			for _, p := range prefixes {
				if strings.HasPrefix(parts[2], p) {
					return true
				}
			}
		}
	}
	return false
}

func loops(sc Scope) []string {
	var out []string
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err == nil && under(strings.TrimSpace(string(b)), sc.MountPrefixes) {
			out = append(out, e.Name()+" "+strings.TrimSpace(string(b)))
		}
	}
	slices.Sort(out)
	return out
}

func links(sc Scope) []string {
	ents, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range ents {
		keep := len(sc.LinkPrefixes) == 0
		for _, p := range sc.LinkPrefixes {
			keep = keep || strings.HasPrefix(e.Name(), p)
		}
		if keep {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

func nftRuleset() string {
	if _, err := exec.LookPath("nft"); err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "nft", "list", "ruleset").Output()
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
