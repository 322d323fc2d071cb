// Package runnertest holds what the runner's tests and the CLI's tests share: building the agent
// binary, opening a local backend on a private data directory, scoping leak checks to it, turning
// recorded transcripts into scripted-model scenarios and copying a suite with a model per task.
//
// It is meant for tests and benchmarks only.
package runnertest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/localbackend"
	"github.com/agentrun/agent/sandbox/local"
)

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

// BuildAgent builds the agent binary into dir and returns its path.
func BuildAgent(dir string) (string, error) {
	bin := filepath.Join(dir, "agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/agentrun/agent/cmd/agent")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the agent binary: %w", err)
	}
	return bin, nil
}

// DataDir returns a fresh sandbox data directory for a test: sandboxes' roots must be able to
// traverse its parents, which t.TempDir makes private.
func DataDir(t testing.TB) string {
	t.Helper()
	dd := t.TempDir()
	for _, d := range []string{filepath.Dir(dd), dd} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dd
}

// Scope is what a backend on the data directory dd may touch on the host. The machine is shared
// with other sandbox users, so the scope names only what is this data directory's: its mounts,
// its cgroups (a sandbox process left behind keeps its cgroup), its files, and processes naming it
// or descending from the test. Sandbox uids are not unique to a data directory, so processes are
// not selected by uid. Networked sandboxes' links, tables, helpers and leases are found by
// sandbox id (NetworkResources).
func Scope(dd string) leakcheck.Scope {
	return leakcheck.Scope{
		MountPrefixes:  []string{dd},
		CgroupPrefixes: []string{local.CgroupParentFor(dd) + "/"},
		ProcessMarkers: []string{dd},
		DataDirs: []string{filepath.Join(dd, "sandboxes"), filepath.Join(dd, "slots"),
			filepath.Join(dd, "runtime", "runc")},
		SkipNft: true,
		Extra:   NetworkResources(dd),
	}
}

// CheckLeaks takes a baseline of what the data directory dd holds on the host and, at test
// cleanup, fails the test if anything of dd's remains: mounts, cgroups, processes, files, the
// loop devices backed by files under dd, and the network resources of dd's sandboxes (links,
// nftables tables, egress helpers, leases: NetworkResources). Other loop devices and network
// interfaces belong to other users of the machine.
func CheckLeaks(t testing.TB, dd string) {
	t.Helper()
	sc := Scope(dd)
	base, err := leakcheck.Take(sc)
	if err != nil {
		t.Fatalf("leak baseline: %v", err)
	}
	t.Cleanup(func() {
		var leaks []string
		deadline := time.Now().Add(15 * time.Second)
		for {
			now, err := leakcheck.Take(sc)
			if err != nil {
				t.Errorf("leak check: %v", err)
				return
			}
			leaks = leaks[:0]
			for _, l := range base.Diff(now) {
				if strings.HasPrefix(l, "loop device:") && !strings.Contains(l, dd) || strings.HasPrefix(l, "network interface:") {
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
			if len(leaks) > 40 {
				leaks = append(leaks[:40], fmt.Sprintf("… and %d more", len(leaks)-40))
			}
			t.Errorf("leaked host resources:\n  %s", strings.Join(leaks, "\n  "))
		}
	})
}

// Backend opens a local backend on dd with the agent binary bin and closes it at cleanup. It
// creates and kills one sandbox first, so the state directories exist before a leak baseline.
func Backend(t testing.TB, dd, bin, templateDir string) *localbackend.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b, err := localbackend.Open(ctx, local.Config{DataDir: dd, TemplateDir: templateDir, Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
	})
	sb, err := b.Create(ctx, runner.SandboxRequest{Template: "host", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// Scenario turns a recorded transcript into a scripted model that answers the same turns: the
// model's side of the conversation, streamed in the given shape.
func Scenario(name string, tr *transcript.Transcript, shape llmtest.Shape) *llmtest.Scenario {
	sc := &llmtest.Scenario{Name: name, Stream: shape, Description: "the turns of " + tr.Task.Name + "'s transcript"}
	for _, m := range tr.Messages {
		if m.Role != "assistant" {
			continue
		}
		turn := llmtest.Turn{Content: m.Content}
		for _, c := range m.ToolCalls {
			turn.ToolCalls = append(turn.ToolCalls, llmtest.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments})
		}
		sc.Turns = append(sc.Turns, turn)
	}
	return sc
}

// LoadScenario loads testdata/transcripts/<task>.json as a scenario named name.
func LoadScenario(root, task, name string, shape llmtest.Shape) (*llmtest.Scenario, error) {
	tr, err := transcript.Load(filepath.Join(root, "testdata", "transcripts", task+".json"))
	if err != nil {
		return nil, err
	}
	return Scenario(name, tr, shape), nil
}

// CopySuite copies the task directories named in models from the suite src (each holding
// task.yaml) to dst, with agent.yaml, and sets each copied spec's model to models[task]: a
// scripted server tells tasks apart by their model.
func CopySuite(src, dst string, models map[string]string) error {
	if err := copyFile(filepath.Join(src, "agent.yaml"), filepath.Join(dst, "agent.yaml")); err != nil && !os.IsNotExist(err) {
		return err
	}
	for task, model := range models {
		from, to := filepath.Join(src, task), filepath.Join(dst, task)
		err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(from, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(to, rel), 0o755)
			}
			return copyFile(p, filepath.Join(to, rel))
		})
		if err != nil {
			return err
		}
		spec := filepath.Join(to, "task.yaml")
		data, err := os.ReadFile(spec)
		if err != nil {
			return err
		}
		if err := os.WriteFile(spec, []byte(fmt.Sprintf("model: %s\n", model)+string(data)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, fi.Mode().Perm())
}

// WriteSpec writes a spec file named <name>.yaml into dir.
func WriteSpec(t testing.TB, dir, name, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(strings.TrimLeft(yaml, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
