package local

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Memory snapshots (processes and their memory, restored running) need CRIU 4.1 or later: older
// versions fail on kernels from 6.13 on (the vDSO/vvar layout changed; CRIU issue 2532). This
// backend detects CRIU and says what it found; it does not implement memory snapshots yet, so a
// snapshot always keeps files only.

// CRIUMin is the oldest CRIU that checkpoints on current kernels.
const CRIUMin = "4.1"

// CRIUStatus says whether memory snapshots could work on this host.
type CRIUStatus struct {
	// Path is the criu binary found on PATH ("" when none).
	Path string `json:"path"`
	// Version is what `criu --version` reported.
	Version string `json:"version"`
	// Works is true when the version is at least CRIUMin and `criu check` passed.
	Works bool `json:"works"`
	// Check is the end of what `criu check` printed (bounded).
	Check string `json:"check"`
}

// Summary says in one line what was found.
func (c CRIUStatus) Summary() string {
	switch {
	case c.Path == "":
		return "criu is not installed"
	case c.Works:
		return fmt.Sprintf("criu %s at %s: criu check passed", c.Version, c.Path)
	case !versionAtLeast(c.Version, CRIUMin):
		return fmt.Sprintf("criu %s at %s is older than %s (which current kernels need); criu check: %s", c.Version, c.Path, CRIUMin, oneLine(c.Check))
	}
	return fmt.Sprintf("criu %s at %s: criu check failed: %s", c.Version, c.Path, oneLine(c.Check))
}

// CheckCRIU looks for criu on PATH, asks its version and runs `criu check` (as root).
func CheckCRIU(ctx context.Context) CRIUStatus {
	bin, err := exec.LookPath("criu")
	if err != nil {
		return CRIUStatus{}
	}
	st := CRIUStatus{Path: bin}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if m := regexp.MustCompile(`Version:\s*([0-9][0-9.]*)`).FindSubmatch(out); m != nil {
		st.Version = string(m[1])
	}
	cmd := exec.CommandContext(ctx, bin, "check")
	cmd.WaitDelay = 5 * time.Second
	out, err = cmd.CombinedOutput()
	st.Check = strings.TrimSpace(tailString(string(out), 1024))
	if err != nil && st.Check == "" {
		st.Check = err.Error()
	}
	st.Works = err == nil && versionAtLeast(st.Version, CRIUMin) && strings.Contains(st.Check, "Looks good")
	return st
}

// CRIU checks CRIU for this backend (see CheckCRIU).
func (b *Backend) CRIU(ctx context.Context) CRIUStatus { return CheckCRIU(ctx) }

// ErrNoMemorySnapshot: memory snapshots are not available; only files can be snapshotted.
var ErrNoMemorySnapshot = errors.New("memory snapshots are not available: only files are kept")

// MemorySnapshotError says why a memory snapshot was refused.
type MemorySnapshotError struct {
	Status CRIUStatus
}

func (e *MemorySnapshotError) Error() string {
	if e.Status.Works {
		return fmt.Sprintf("%v (%s, but this agent does not implement CRIU restore of sandboxes yet); take a files-only snapshot", ErrNoMemorySnapshot, e.Status.Summary())
	}
	return fmt.Sprintf("%v (%s; memory snapshots need a working CRIU ≥ %s); take a files-only snapshot", ErrNoMemorySnapshot, e.Status.Summary(), CRIUMin)
}

// Is matches ErrNoMemorySnapshot.
func (e *MemorySnapshotError) Is(target error) bool { return target == ErrNoMemorySnapshot }

// criuCheck is the doctor's finding about memory snapshots.
func criuCheck(ctx context.Context) Check {
	st := CheckCRIU(ctx)
	c := Check{Name: "memory snapshots (criu)", Severity: Warn,
		Detail: st.Summary() + ": snapshots keep files only (processes and memory are not kept)"}
	switch {
	case st.Path == "":
		c.Fix = fmt.Sprintf("optional: CRIU ≥ %s (Debian trixie's criu); pause/resume keeps memory without it", CRIUMin)
	case st.Works:
		c.Detail = st.Summary() + ", but this agent does not restore CRIU images yet: snapshots keep files only"
	default:
		c.Fix = fmt.Sprintf("optional: CRIU ≥ %s (Debian bookworm's 3.17 fails on kernels ≥ 6.13); pause/resume keeps memory without it", CRIUMin)
	}
	return c
}

func versionAtLeast(v, min string) bool {
	if v == "" {
		return false
	}
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}

// oneLine picks the line of criu's output that names the cause: its first error (the root cause
// comes first, its consequences after), else its last line.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.Contains(l, "Error") && !strings.Contains(l, "exited, status=") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
