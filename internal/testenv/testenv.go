// Package testenv holds what the tests of real components share: whether real sandboxes can run
// here, the agent binary built once per test binary, the repository's top directory, running a
// command to its end within a bound, a minimal world root for envd, and a standalone `agent envd`
// process serving one.
//
// It imports nothing of the project, so the tests of any package (the envd client's own included)
// can use it. What concerns local sandboxes' data directories is in internal/testenv/localenv.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// SkipReason says why real sandboxes cannot run here ("" when they can).
func SkipReason() string {
	if os.Geteuid() != 0 {
		return "local sandboxes need root (user namespaces, mounts, cgroups)"
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return "runc is not installed (apt-get install runc)"
	}
	return ""
}

// BuildAgent builds cmd/agent into dir and returns the binary's path. The build gets 10 minutes.
func BuildAgent(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		// `go test` may run with a PATH that lacks the toolchain; the running one is at hand.
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "agent")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/agentrun/agent/cmd/agent")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the agent binary: %w", err)
	}
	return bin, nil
}

// RunWithAgent is a TestMain's body for tests that need the agent binary: it builds the binary
// into a temporary directory, sets *bin to its path, runs m's tests and removes the directory. It
// returns the exit code for os.Exit: the tests', or 1 when the build fails. A run that only lists
// the tests builds nothing.
func RunWithAgent(m *testing.M, bin *string) int {
	if Listing() || onlyFuzzing() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "agent-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildAgent(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// RunWithSandboxes is RunWithAgent for tests that run real sandboxes: when they cannot run here,
// it sets *skip to why (for the tests to skip) and builds nothing.
func RunWithSandboxes(m *testing.M, bin, skip *string) int {
	if *skip = SkipReason(); *skip != "" {
		return m.Run()
	}
	return RunWithAgent(m, bin)
}

// Listing tells whether the test binary was asked only to list its tests (`go test -list`), which
// runs none of them. It parses the command line's flags, as TestMain may.
func Listing() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	f := flag.Lookup("test.list")
	return f != nil && f.Value.String() != ""
}

// onlyFuzzing tells whether the test binary runs fuzz inputs and no test: a fuzz worker, or a
// fuzzing run with -run='^$' (as the fuzz smoke run does). Fuzz targets need no agent binary,
// and building one in every worker ate the smoke run's short fuzz time.
func onlyFuzzing() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	val := func(name string) string {
		if f := flag.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	return val("test.fuzzworker") == "true" || val("test.fuzz") != "" && val("test.run") == "^$"
}

// RepoRoot returns the repository's top directory (where go.mod is), from a test's working
// directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// LogBuffer is a goroutine-safe sink for a process's output, bounded: past 1 MiB it drops what is
// written.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p unless the buffer is full; it never fails.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

// String returns what was written.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CmdResult is how a command run by RunCmd ended and what it wrote.
type CmdResult struct {
	// Code is the exit status (-1 when a signal ended it).
	Code           int
	Stdout, Stderr string
}

// RunCmd runs cmd with its output collected and waits for it to end. Past timeout it kills it and
// fails the test; so does a failure to start or wait for it. A non-zero exit status is a result,
// not a failure.
func RunCmd(t testing.TB, cmd *exec.Cmd, timeout time.Duration) CmdResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not end in %v\nstderr:\n%s", cmd.Args, timeout, stderr.String())
	}
	r := CmdResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}
