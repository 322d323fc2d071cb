package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeV2 builds a cgroup v2 tree in a temp dir holding the group /agent/sb with the given files,
// and a Host describing a pure v2 host mounted there.
func fakeV2(t *testing.T, files map[string]string) *Host {
	t.Helper()
	root := t.TempDir()
	d := filepath.Join(root, "agent", "sb")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &Host{Mode: V2, V1: map[string]string{}, Unified: root, UnifiedControllers: []string{"cpu", "memory", "pids"}}
}

// Real v2 interface files, as a kernel 6.1 writes them for a group that hit its limits.
var v2Files = map[string]string{
	"memory.events":  "low 0\nhigh 0\nmax 57\noom 4\noom_kill 3\noom_group_kill 0\n",
	"memory.peak":    "268435456\n",
	"memory.current": "1052672\n",
	"pids.events":    "max 9\n",
	"pids.current":   "5\n",
	"cpu.stat":       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 41000\nnr_bursts 0\nburst_usec 0\n",
}

// TestStatsV2 reads OOM kills, pids-limit hits, memory and CPU of a group on a cgroup v2 host
// (this host is v1-hybrid, so only a fake tree exercises the v2 branch).
func TestStatsV2(t *testing.T) {
	h := fakeV2(t, v2Files)
	s, err := h.ReadStats("/agent/sb")
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		OOMKills:        3, // oom_kill, not oom (4: limit reached) nor max (57: reclaim at the limit)
		PidsLimitHits:   9,
		MemoryPeakBytes: 256 << 20,
		MemoryBytes:     1052672,
		CPUUsage:        2500 * time.Millisecond,
		Pids:            5,
	}
	if s != want {
		t.Errorf("stats = %+v, want %+v", s, want)
	}
	if got := h.Stats("agent/sb"); got != want {
		t.Errorf("Stats of a relative path = %+v", got)
	}
	// A group whose files are gone (killed meanwhile) reads as zero without error.
	if s, err := h.ReadStats("/agent/gone"); err != nil || s != (Stats{}) {
		t.Errorf("missing group: %+v, %v", s, err)
	}
	// A hybrid host with the memory controller on v1 reads memory there, not from v2.
	hy := fakeV2(t, v2Files)
	hy.Mode, hy.V1["memory"] = Hybrid, t.TempDir()
	if s, err := hy.ReadStats("/agent/sb"); err != nil || s.OOMKills != 0 || s.MemoryBytes != 0 || s.PidsLimitHits != 9 {
		t.Errorf("hybrid: %+v, %v", s, err)
	}
}

// TestStatsV2Malformed: files that do not parse give an error naming them, their counters read
// as zero, the others still read, and nothing panics.
func TestStatsV2Malformed(t *testing.T) {
	cases := []struct {
		name, file, content string
		check               func(Stats) bool
	}{
		{"oom_kill not a number", "memory.events", "oom 1\noom_kill lots\n", func(s Stats) bool { return s.OOMKills == 0 && s.PidsLimitHits == 9 }},
		{"pids max negative", "pids.events", "max -4\n", func(s Stats) bool { return s.PidsLimitHits == 0 && s.OOMKills == 3 }},
		{"peak overflows int64", "memory.peak", "99999999999999999999999\n", func(s Stats) bool { return s.MemoryPeakBytes == 0 && s.MemoryBytes == 1052672 }},
		{"current empty", "memory.current", "", func(s Stats) bool { return s.MemoryBytes == 0 }},
		{"current binary", "memory.current", "\x00\xff\x01", func(s Stats) bool { return s.MemoryBytes == 0 }},
		{"usage_usec overflows a duration", "cpu.stat", "usage_usec 9223372036854776\n", func(s Stats) bool { return s.CPUUsage == 0 && s.Pids == 5 }},
		{"usage_usec with junk", "cpu.stat", "usage_usec 12x\n", func(s Stats) bool { return s.CPUUsage == 0 }},
		{"file too large", "pids.current", strings.Repeat("1", 64<<10), func(s Stats) bool { return s.Pids == 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range v2Files {
				files[k] = v
			}
			files[tc.file] = tc.content
			h := fakeV2(t, files)
			s, err := h.ReadStats("/agent/sb")
			if err == nil || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("err = %v, want one naming %s", err, tc.file)
			}
			if !tc.check(s) {
				t.Errorf("stats = %+v", s)
			}
			if got := h.Stats("/agent/sb"); got != s {
				t.Errorf("Stats = %+v, ReadStats = %+v", got, s)
			}
		})
	}
	// A directory where a counter file should be is an error of the read, not a parse: it reads as
	// zero, like a missing file, and must not panic.
	h := fakeV2(t, nil)
	if err := os.Mkdir(filepath.Join(h.Unified, "agent", "sb", "pids.current"), 0o755); err != nil {
		t.Fatal(err)
	}
	if s, _ := h.ReadStats("/agent/sb"); s != (Stats{}) {
		t.Errorf("stats = %+v", s)
	}
}
