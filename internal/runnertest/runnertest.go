// Package runnertest holds what the runner's tests and the CLI's tests share: opening a local
// backend on a private data directory, turning recorded transcripts into scripted-model scenarios,
// copying a suite with a model per task and writing specs. The agent binary, data directories and
// leak checks are internal/testenv's.
//
// It is meant for tests and benchmarks only.
package runnertest

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/localbackend"
	"github.com/agentrun/agent/sandbox/local"
)

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
	return &llmtest.Scenario{Name: name, Stream: shape, Description: "the turns of " + tr.Task.Name + "'s transcript",
		Turns: llmtest.TranscriptTurns(tr)}
}

// LoadScenario loads testdata/transcripts/<task>.json as a scenario named name.
func LoadScenario(root, task, name string, shape llmtest.Shape) (*llmtest.Scenario, error) {
	tr, err := transcript.Load(filepath.Join(root, "testdata", "transcripts", task+".json"))
	if err != nil {
		return nil, err
	}
	return Scenario(name, tr, shape), nil
}

// ReplaySuite starts a scripted server whose model m-<task>, for each of tasks, replays that task's
// recorded transcript (under root's testdata/transcripts, streamed in fragments, latency per call)
// and copies those tasks of the example suite into a temporary directory with their models set
// to them. It returns the suite's directory and the server.
func ReplaySuite(t testing.TB, root string, tasks []string, latency time.Duration) (string, *llmtest.Server) {
	t.Helper()
	models := map[string]string{}
	var scenarios []*llmtest.Scenario
	for _, task := range tasks {
		sc, err := LoadScenario(root, task, "m-"+task, llmtest.ShapeFragments)
		if err != nil {
			t.Fatal(err)
		}
		sc.Latency = llmtest.Duration(latency)
		scenarios = append(scenarios, sc)
		models[task] = "custom:m-" + task
	}
	srv := llmtest.Start(t, scenarios...)
	suite := t.TempDir()
	if err := CopySuite(filepath.Join(root, "tasks", "examples"), suite, models); err != nil {
		t.Fatal(err)
	}
	return suite, srv
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
