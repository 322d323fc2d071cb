// Package cgroups reads what the kernel reports about a sandbox's control group (OOM kills, hits of
// the pids limit, memory and CPU use) and removes control groups left behind, on cgroup v1, hybrid
// and v2 hosts alike. The OCI runtime creates the groups and applies the limits; this package only
// observes and cleans.
package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentrun/agent/sandbox/local/mounts"
)

// Mode is the host's cgroup layout.
type Mode string

// Layouts.
const (
	V1     Mode = "v1"     // only v1 hierarchies
	Hybrid Mode = "hybrid" // v1 hierarchies and a v2 hierarchy with some controllers
	V2     Mode = "v2"     // unified
)

// Host describes where the controllers are mounted.
type Host struct {
	Mode Mode
	// V1 maps a controller name (memory, pids, cpu, cpuacct, freezer, …) to its hierarchy's mount point.
	V1 map[string]string
	// Unified is the cgroup2 mount point ("" when none).
	Unified string
	// UnifiedControllers are the controllers enabled on the v2 hierarchy.
	UnifiedControllers []string
}

// Detect reads /proc/self/mountinfo to find the cgroup hierarchies.
func Detect() (*Host, error) {
	table, err := mounts.Table()
	if err != nil {
		return nil, err
	}
	h := &Host{V1: map[string]string{}}
	for _, m := range table {
		switch m.FSType {
		case "cgroup2":
			if h.Unified == "" {
				h.Unified = m.Point
			}
		case "cgroup":
			for _, o := range strings.Split(m.SuperOptions, ",") {
				switch o {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "xattr", "clone_children":
					continue
				}
				if _, seen := h.V1[o]; !seen {
					h.V1[o] = m.Point
				}
			}
		}
	}
	if h.Unified != "" {
		if b, err := os.ReadFile(filepath.Join(h.Unified, "cgroup.controllers")); err == nil {
			h.UnifiedControllers = strings.Fields(string(b))
		}
	}
	switch {
	case len(h.V1) == 0 && h.Unified != "":
		h.Mode = V2
	case len(h.V1) > 0 && h.Unified != "":
		h.Mode = Hybrid
	case len(h.V1) > 0:
		h.Mode = V1
	default:
		return nil, errors.New("no cgroup filesystem is mounted")
	}
	return h, nil
}

// Dirs lists every directory that holds the group at path (one per v1 hierarchy, plus the v2 one).
func (h *Host) Dirs(path string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(root string) {
		d := filepath.Join(root, filepath.Clean("/"+path))
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	for _, root := range h.V1 {
		add(root)
	}
	if h.Unified != "" {
		add(h.Unified)
	}
	return out
}

// Stats are the counters a sandbox's limits produce.
type Stats struct {
	// OOMKills counts processes killed by the memory limit.
	OOMKills int64
	// PidsLimitHits counts forks refused by the pids limit.
	PidsLimitHits int64
	// MemoryPeakBytes is the highest memory use seen.
	MemoryPeakBytes int64
	// MemoryBytes is the current memory use.
	MemoryBytes int64
	// CPUUsage is the CPU time used by all processes of the group.
	CPUUsage time.Duration
	// Pids is the number of tasks now.
	Pids int64
}

// Stats reads the counters of the group at path. Missing files read as zero (the group may be
// gone, or the controller not enabled); so do malformed ones, which ReadStats reports.
func (h *Host) Stats(path string) Stats {
	s, _ := h.ReadStats(path)
	return s
}

// ReadStats reads the counters of the group at path like Stats, and also returns an error naming
// every file whose content does not parse (the counters of those read as zero).
func (h *Host) ReadStats(path string) (Stats, error) {
	var s Stats
	r := &statReader{}
	p := filepath.Clean("/" + path)
	if mem, ok := h.V1["memory"]; ok {
		d := filepath.Join(mem, p)
		s.OOMKills = r.keyed(filepath.Join(d, "memory.oom_control"), "oom_kill")
		s.MemoryPeakBytes = r.single(filepath.Join(d, "memory.max_usage_in_bytes"))
		s.MemoryBytes = r.single(filepath.Join(d, "memory.usage_in_bytes"))
	} else if h.Unified != "" {
		d := filepath.Join(h.Unified, p)
		s.OOMKills = r.keyed(filepath.Join(d, "memory.events"), "oom_kill")
		s.MemoryPeakBytes = r.single(filepath.Join(d, "memory.peak"))
		s.MemoryBytes = r.single(filepath.Join(d, "memory.current"))
	}
	if pids, ok := h.V1["pids"]; ok {
		d := filepath.Join(pids, p)
		s.PidsLimitHits = r.keyed(filepath.Join(d, "pids.events"), "max")
		s.Pids = r.single(filepath.Join(d, "pids.current"))
	} else if h.Unified != "" {
		d := filepath.Join(h.Unified, p)
		s.PidsLimitHits = r.keyed(filepath.Join(d, "pids.events"), "max")
		s.Pids = r.single(filepath.Join(d, "pids.current"))
	}
	if acct, ok := h.V1["cpuacct"]; ok {
		s.CPUUsage = time.Duration(r.single(filepath.Join(acct, p, "cpuacct.usage")))
	} else if h.Unified != "" {
		file := filepath.Join(h.Unified, p, "cpu.stat")
		usec := r.keyed(file, "usage_usec")
		if usec > math.MaxInt64/int64(time.Microsecond) {
			r.errs = append(r.errs, fmt.Errorf("%s: usage_usec %d overflows a duration", file, usec))
			usec = 0
		}
		s.CPUUsage = time.Duration(usec) * time.Microsecond
	}
	return s, errors.Join(r.errs...)
}

// statReader reads counter files, collecting what does not parse.
type statReader struct{ errs []error }

// keyed reads "key value" lines and returns key's value (0 when the file or key is missing).
func (r *statReader) keyed(file, key string) int64 {
	b, ok := r.read(file)
	if !ok {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return r.parse(file, v)
		}
	}
	return 0
}

// single reads a file holding one number.
func (r *statReader) single(file string) int64 {
	b, ok := r.read(file)
	if !ok {
		return 0
	}
	return r.parse(file, string(b))
}

// parse reads a counter: a non-negative decimal integer.
func (r *statReader) parse(file, v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err == nil && n < 0 {
		err = fmt.Errorf("negative counter %d", n)
	}
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %w", file, err))
		return 0
	}
	return n
}

// read returns the file's content; a missing or unreadable file is no error (the group may be
// gone), one larger than a counter file can be is.
func (r *statReader) read(file string) ([]byte, bool) {
	b, err := readBounded(file)
	if errors.Is(err, errTooLarge) {
		r.errs = append(r.errs, fmt.Errorf("%s: %w", file, err))
	}
	return b, err == nil
}

// errTooLarge: a counter file holds a few short lines; more is not one.
var errTooLarge = errors.New("larger than a counter file")

func readBounded(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 8192)
	n, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		return nil, errTooLarge
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return buf[:n], nil
	}
	return nil, err
}

// Remove kills every process left in the group at path (and its descendants) and removes the group
// from every hierarchy. Removing a missing group is not an error.
func (h *Host) Remove(ctx context.Context, path string) error {
	var errs []error
	for _, d := range h.Dirs(path) {
		if err := removeTree(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Kill SIGKILLs every process of the group at path and waits (bounded by ctx) until the group is
// empty. Killing a sandbox's init ends its pid namespace; this also catches a runtime's helper
// processes that joined the group.
func (h *Host) Kill(ctx context.Context, path string) error {
	var procs string
	if h.Unified != "" && len(h.V1) == 0 {
		procs = filepath.Join(h.Unified, filepath.Clean("/"+path))
	} else if d, ok := h.V1["pids"]; ok {
		procs = filepath.Join(d, filepath.Clean("/"+path))
	} else if d, ok := h.V1["memory"]; ok {
		procs = filepath.Join(d, filepath.Clean("/"+path))
	} else {
		return nil
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(procs, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", procs, err)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return nil
		}
		killAll(procs)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for cgroup %s to empty: %w", path, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Children lists the direct child groups of parent (by name), across hierarchies.
func (h *Host) Children(parent string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range h.Dirs(parent) {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				out = append(out, e.Name())
			}
		}
	}
	return out
}

func removeTree(ctx context.Context, dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed meanwhile (by the runtime)
	}
	if err != nil {
		return fmt.Errorf("reading cgroup %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(ctx, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for attempt := 0; ; attempt++ {
		killAll(dir)
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || attempt >= 100 {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("removing cgroup %s: %w", dir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// killAll SIGKILLs the processes listed in the group. The group is frozen first when a v1 freezer
// exists for it so that nothing forks while we kill; the v2 cgroup.kill file does it atomically.
func killAll(dir string) {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
