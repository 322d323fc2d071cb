package spec

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExamples validates the example suite in tasks/examples: every spec loads (with the suite's
// agent.yaml), and its checks are meaningful: they fail on the untouched seed files, pass after the
// task's reference solution (solution/solve.sh), and fail after its plausible wrong solution
// (solution/wrong.sh) where there is one. The commands run on this host in a temporary directory
// standing in for the sandbox's workdir; the runner runs the same specs in real sandboxes.
func TestExamples(t *testing.T) {
	// The system's PATH, as a sandbox built from the host's /usr sees it (and without per-user
	// shims, which slow every python3 call down).
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, tool := range []string{"bash", "python3", "node", "git", "awk", "sha256sum"} {
		if !onPath(tool, path) {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("the example tasks need %s on the host: %v", tool, err)
			}
			path = os.Getenv("PATH")
		}
	}
	suite, err := Load(context.Background(), []string{repoFile("tasks/examples")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(suite.Specs) < 8 {
		t.Fatalf("%d example specs, want at least 8", len(suite.Specs))
	}
	if filepath.Base(suite.ConfigFile) != "agent.yaml" {
		t.Errorf("the suite's agent.yaml was not found: %q", suite.ConfigFile)
	}
	for _, s := range suite.Specs {
		t.Run(s.Name, func(t *testing.T) {
			if len(s.Checks) == 0 || len(s.Tags) == 0 {
				t.Fatalf("an example needs checks and tags")
			}
			if s.Limits.MaxSteps != 30 || s.Env["PYTHONDONTWRITEBYTECODE"] != "1" {
				t.Errorf("agent.yaml defaults not applied: %+v %v", s.Limits, s.Env)
			}
			dir := filepath.Join(filepath.Dir(mustAbs(s.File)), "solution")
			if failed := runExample(t, s, path, ""); len(failed) == 0 {
				t.Errorf("every check passes on the unsolved task")
			}
			if failed := runExample(t, s, path, filepath.Join(dir, "solve.sh")); len(failed) > 0 {
				t.Errorf("the reference solution fails:\n  %s", strings.Join(failed, "\n  "))
			}
			wrong := filepath.Join(dir, "wrong.sh")
			if _, err := os.Stat(wrong); err == nil {
				if failed := runExample(t, s, path, wrong); len(failed) == 0 {
					t.Errorf("every check passes after the wrong solution")
				}
			}
		})
	}
}

// runExample seeds a fresh workdir, runs setup and then script (when not empty), grades every
// check, and returns the failed checks with their reasons.
func runExample(t *testing.T, s *Spec, path, script string) []string {
	t.Helper()
	work := t.TempDir()
	tmp := t.TempDir()
	env := []string{"PATH=" + path, "HOME=" + work, "TMPDIR=" + tmp, "LANG=C.UTF-8", "GIT_CONFIG_NOSYSTEM=1"}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	for _, f := range s.Files {
		p := filepath.Join(work, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range s.Setup {
		if code, out, _ := hostRun(work, env, st.Run, st.Timeout.D()); code != 0 {
			t.Fatalf("setup %q: exit %d\n%s", st.Run, code, out)
		}
	}
	if script != "" {
		if code, out, _ := hostRun(work, env, "bash "+shellQuote(script), 2*time.Minute); code != 0 {
			t.Fatalf("%s: exit %d\n%s", filepath.Base(script), code, out)
		}
	}
	var failed []string
	for _, c := range s.Checks {
		var o Outcome
		switch c.Kind {
		case CheckRun:
			code, out, timedOut := hostRun(work, env, c.Run, c.Timeout.D())
			o = c.GradeRun(code, out, timedOut)
			if !o.Passed {
				o.Reason += "; output: " + clip(string(out), 300)
			}
		case CheckFile:
			if filepath.IsAbs(c.File) {
				t.Fatalf("check %q: examples use workdir-relative paths", c.Name)
			}
			data, err := os.ReadFile(filepath.Join(work, c.File))
			o = c.GradeFile(err == nil, data)
		}
		if !o.Passed {
			failed = append(failed, c.Name+": "+o.Reason)
		}
	}
	return failed
}

// hostRun runs a command line with bash in dir, bounded in time and output, killing its whole
// process group when it times out. It returns the exit code (-1 when it did not exit), stdout and
// stderr interleaved, and whether it timed out.
func hostRun(dir string, env []string, line string, timeout time.Duration) (int, []byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr capped
	stdout.max, stderr.max = 1<<20, 1<<20
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out := stdout.Bytes()
	if err != nil && stderr.Len() > 0 {
		out = append(append(out, "\n[stderr] "...), stderr.Bytes()...)
	}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return -1, out, true
	case errors.As(err, &exit):
		return exit.ExitCode(), out, false
	case err != nil:
		return -1, append(out, err.Error()...), false
	}
	return 0, stdout.Bytes(), false
}

// onPath reports whether an executable named tool is in one of the directories of path.
func onPath(tool, path string) bool {
	for _, dir := range filepath.SplitList(path) {
		if info, err := os.Stat(filepath.Join(dir, tool)); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}

// capped is a buffer that keeps at most max bytes.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
