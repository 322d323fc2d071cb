// Package evaltest holds what the end-to-end tests of `agent eval`, `agent report` and the GitHub
// Action share: building the agent binary, a small task suite whose outcome depends on the model,
// and scripted models (internal/llmtest) that pass, half-pass or never stop.
package evaltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/sandbox/local"
)

// SkipReason says why real sandboxes cannot run here ("" when they can).
func SkipReason() string {
	if os.Geteuid() != 0 {
		return "local sandboxes need root (user namespaces, mounts, cgroups)"
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return "runc is not installed (scripts/deps.sh installs it)"
	}
	return ""
}

// DataDir returns a fresh data directory for local sandboxes. Sandboxes' roots are unprivileged
// host uids, so the directory and its parents must be traversable by others (t.TempDir's are
// not); it is removed when the test ends.
func DataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent-eval-data-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// LeakScope is what a test's sandboxes could leave behind: mounts and cgroups of its data
// directory, processes of its agent binary. Other sandboxes on a shared host are left out.
func LeakScope(dataDir, agentBin string) leakcheck.Scope {
	return leakcheck.Scope{
		MountPrefixes:  []string{dataDir},
		CgroupPrefixes: []string{strings.TrimPrefix(local.CgroupParentFor(dataDir), "/")},
		ProcessMarkers: []string{agentBin},
		DataDirs:       []string{filepath.Join(dataDir, "sandboxes")},
		SkipNft:        true,
	}
}

// CheckLeaks fails the test if, when it ends, anything of LeakScope remains that was not there
// before. Loop devices are global on the host; only those backing files under dataDir count, so
// other sandboxes on a shared host are not reported.
func CheckLeaks(t testing.TB, dataDir, agentBin string) {
	t.Helper()
	sc := LeakScope(dataDir, agentBin)
	base, err := leakcheck.Take(sc)
	if err != nil {
		t.Fatalf("leakcheck baseline: %v", err)
	}
	t.Cleanup(func() {
		var leaks []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			now, err := leakcheck.Take(sc)
			if err != nil {
				t.Errorf("leakcheck: %v", err)
				return
			}
			leaks = leaks[:0]
			for _, l := range base.Diff(now) {
				if strings.HasPrefix(l, "loop device:") && !strings.Contains(l, dataDir) {
					continue
				}
				leaks = append(leaks, l)
			}
			if len(leaks) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(leaks) > 0 {
			t.Errorf("leaked host resources:\n  %s", strings.Join(leaks, "\n  "))
		}
	})
}

// BuildAgent builds cmd/agent into dir and returns the binary's path.
func BuildAgent(dir string) (string, error) {
	bin := filepath.Join(dir, "agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/agentrun/agent/cmd/agent")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the agent binary: %w", err)
	}
	return bin, nil
}

// Suite writes a two-task suite into dir and returns dir: hello (hello.txt must contain
// "hello") and answer (answer.txt must hold "42"). Both run in the host template without network.
func Suite(t testing.TB, dir string) string {
	t.Helper()
	files := map[string]string{
		"agent.yaml": "template: host\nlimits:\n  timeout: 2m\n  command_timeout: 30s\n  max_steps: 4\n  memory: 256MiB\n",
		"hello.yaml": "prompt: Write hello.txt containing the word hello.\ntags: [easy]\nfiles:\n  - {path: README.md, content: \"# greeting\\n\"}\nchecks:\n  - {name: hello.txt says hello, file: hello.txt, contains: hello}\n",
		"answer.yaml": "prompt: Write answer.txt holding the answer, 42, and a newline.\nchecks:\n" +
			"  - {name: the answer is 42, run: cat answer.txt, stdout: \"42\\n\"}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeBoth scripts a model that writes hello.txt and answer.txt (with the given answer) in one
// turn, then answers.
func writeBoth(name, answer string) *llmtest.Scenario {
	return &llmtest.Scenario{Name: name, Turns: []llmtest.Turn{
		{Content: "Writing the files.", ToolCalls: []llmtest.ToolCall{{Name: "write_files", Args: map[string]any{
			"files": []any{
				map[string]any{"path": "hello.txt", "data": "hello\n"},
				map[string]any{"path": "answer.txt", "data": answer + "\n"},
			}}}}},
		{Content: "Done: wrote hello.txt and answer.txt."},
	}}
}

// Good passes both tasks.
func Good(name string) *llmtest.Scenario { return writeBoth(name, "42") }

// Bad passes hello and fails answer (it writes 41).
func Bad(name string) *llmtest.Scenario { return writeBoth(name, "41") }

// Looping never stops calling tools: every task ends in error (max_steps).
func Looping(name string) *llmtest.Scenario {
	return &llmtest.Scenario{Name: name, Loop: true, Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "true"}}}},
	}}
}
