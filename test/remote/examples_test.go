// Package remote_test runs the example task suite (tasks/examples) on three sandbox backends in one
// run — local sandboxes directly, and the same kind of sandboxes through `agent serve` with the
// remote backend in its e2b and novita flavors — and checks that every task ends the same way on
// each: one protocol, tested from both ends.
//
// Until the runner (`agent run --sandbox local|e2b|novita`) lands, the test plays its part with the
// pieces it will use: specs loaded by runner/spec, seed files and setup through the sandbox, the
// agent loop (agent.Run) driven by the scripted model of internal/llmtest, whose one tool call runs
// the task's reference solution (solution/solve.sh), then the spec's checks graded by runner/spec.
package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b"
	"github.com/agentrun/agent/sandbox/envdclient"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

var env servetest.Env

func TestMain(m *testing.M) { os.Exit(servetest.Main(m, &env)) }

// box is what a task needs of a sandbox.
type box interface {
	sandbox.Files
	sandbox.Commands
}

// backend creates a sandbox for a spec and returns it with its release.
type backend struct {
	name   string
	create func(ctx context.Context, s *spec.Spec) (box, func(), error)
}

// outcome is how one task ended on one backend.
type outcome struct {
	end    string
	steps  int
	checks []string // "name: passed" or "name: failed: reason"
}

func (o outcome) String() string {
	return fmt.Sprintf("end %s after %d steps; checks:\n    %s", o.end, o.steps, strings.Join(o.checks, "\n    "))
}

func TestExampleSuiteSameOnEveryBackend(t *testing.T) {
	for _, tool := range []string{"python3", "node", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the example tasks need %s on the host (the host template): %v", tool, err)
		}
	}
	srv := servetest.Start(t, &env, nil, nil)
	_, file, _, _ := runtime.Caller(0)
	examples := filepath.Join(filepath.Dir(file), "..", "..", "tasks", "examples")
	suite, err := spec.Load(context.Background(), []string{examples}, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(suite.Specs) < 8 {
		t.Fatalf("%d example specs", len(suite.Specs))
	}

	backends := []backend{{
		name: "local",
		create: func(ctx context.Context, s *spec.Spec) (box, func(), error) {
			sb, err := srv.Local.Create(ctx, local.Options{Template: s.Template, Env: s.Env})
			if err != nil {
				return nil, nil, err
			}
			in := sb.ConnectInfo()
			c, err := envdclient.New(envdclient.Config{BaseURL: "http://envd", Dial: in.Dial, AccessToken: in.AccessToken})
			if err != nil {
				_ = sb.Kill(context.WithoutCancel(ctx))
				return nil, nil, err
			}
			return c, func() { c.Close(); _ = sb.Kill(context.Background()) }, nil
		},
	}}
	for _, flavor := range []e2b.Flavor{e2b.FlavorE2B, e2b.FlavorNovita} {
		p := strings.ToUpper(string(flavor))
		vars := map[string]string{p + "_API_KEY": srv.APIKey, p + "_API_URL": srv.URL, p + "_SANDBOX_URL": srv.URL}
		cfg, err := e2b.ConfigFromEnv(flavor, func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxSandboxes = 4
		rb, err := e2b.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rb.Close() })
		backends = append(backends, backend{
			name: string(flavor),
			create: func(ctx context.Context, s *spec.Spec) (box, func(), error) {
				// Template names pass through: agent serve knows the local ones.
				sb, err := rb.Create(ctx, e2b.CreateOptions{Template: s.Template, Env: s.Env, Timeout: 10 * time.Minute,
					Metadata: map[string]string{"task": s.Name}})
				if err != nil {
					return nil, nil, err
				}
				return sb, func() { _ = sb.Kill(context.Background()) }, nil
			},
		})
	}

	for _, s := range suite.Specs {
		t.Run(s.Name, func(t *testing.T) {
			solve, err := os.ReadFile(filepath.Join(filepath.Dir(s.File), "solution", "solve.sh"))
			if err != nil {
				t.Fatal(err)
			}
			var first outcome
			for i, b := range backends {
				o := runTask(t, b, s, string(solve))
				for _, c := range o.checks {
					if !strings.HasSuffix(c, ": passed") {
						t.Errorf("%s: check %s", b.name, c)
					}
				}
				if o.end != string(agent.ReasonCompleted) {
					t.Errorf("%s: %s", b.name, o)
				}
				if i == 0 {
					first = o
				} else if o.String() != first.String() {
					t.Errorf("%s ended differently from %s:\n%s: %s\n%s: %s", b.name, backends[0].name, backends[0].name, first, b.name, o)
				}
			}
		})
	}
	if n := srv.Serve.Count(); n != 0 {
		t.Fatalf("%d sandboxes left in agent serve", n)
	}
}

// runTask runs one task as the runner will: sandbox, seed files, setup, the agent loop with the
// scripted model, checks.
func runTask(t *testing.T, b backend, s *spec.Spec, solve string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sb, release, err := b.create(ctx, s)
	if err != nil {
		t.Fatalf("%s: creating the sandbox: %v", b.name, err)
	}
	defer release()
	// Seed files, then setup.
	var files []sandbox.File
	for _, f := range s.Files {
		files = append(files, sandbox.File{Path: path.Join(s.Workdir, f.Path), Data: f.Data})
	}
	if len(files) > 0 {
		if err := sb.WriteFiles(ctx, files); err != nil {
			t.Fatalf("%s: seeding: %v", b.name, err)
		}
	}
	for _, f := range s.Files {
		if f.Mode != 0 && f.Mode&0o111 != 0 {
			if _, err := sb.Run(ctx, sandbox.Cmd{Shell: "chmod +x " + shellQuote(f.Path), Dir: s.Workdir}); err != nil {
				t.Fatalf("%s: chmod: %v", b.name, err)
			}
		}
	}
	for _, st := range s.Setup {
		if res, err := sb.Run(ctx, sandbox.Cmd{Shell: st.Run, Dir: s.Workdir, Timeout: time.Duration(st.Timeout)}); err != nil {
			out := ""
			if res != nil {
				out = string(res.Stdout) + string(res.Stderr)
			}
			t.Fatalf("%s: setup %q: %v\n%s", b.name, st.Run, err, out)
		}
	}
	// The agent: one tool call running the reference solution, then an answer.
	srv := llmtest.Start(t, &llmtest.Scenario{Name: s.Name, Turns: []llmtest.Turn{
		{Content: "Solving it.", ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": solve}}}},
		{Content: "Done: the task is solved."},
	}})
	p, err := provider.New(provider.Config{BaseURL: srv.URL(), APIKey: "k", Logger: slog.New(slog.DiscardHandler), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := agent.Run(ctx, agent.Task{
		Name: s.Name, Prompt: s.Prompt, Model: "custom:" + s.Name, Workdir: s.Workdir, Env: s.Env,
		Limits: agent.Limits{MaxSteps: s.Limits.MaxSteps, CommandTimeout: 2 * time.Minute},
	}, sb, p, agent.Options{Logger: slog.New(slog.DiscardHandler)})
	o := outcome{}
	if res != nil {
		o.end, o.steps = string(res.End.Reason), res.Steps
	}
	if err != nil {
		var ee *agent.EndError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: agent: %v", b.name, err)
		}
	}
	// Checks.
	for _, c := range s.Checks {
		var oc spec.Outcome
		switch c.Kind {
		case spec.CheckRun:
			r, err := sb.Run(ctx, sandbox.Cmd{Shell: c.Run, Dir: s.Workdir, Env: s.Env, Timeout: time.Duration(c.Timeout)})
			var xe *sandbox.ExitError
			if err != nil && !errors.As(err, &xe) {
				t.Fatalf("%s: check %q: %v", b.name, c.Name, err)
			}
			oc = c.GradeRun(r.ExitCode, r.Stdout, r.TimedOut)
		case spec.CheckFile:
			p := c.File
			if !path.IsAbs(p) {
				p = path.Join(s.Workdir, p)
			}
			rc, err := sb.Open(ctx, p)
			switch {
			case errors.Is(err, sandbox.ErrNotFound):
				oc = c.GradeFile(false, nil)
			case err != nil:
				t.Fatalf("%s: check %q: %v", b.name, c.Name, err)
			default:
				data, rerr := io.ReadAll(io.LimitReader(rc, 16<<20))
				rc.Close()
				if rerr != nil {
					t.Fatal(rerr)
				}
				oc = c.GradeFile(true, data)
			}
		}
		line := c.Name + ": passed"
		if !oc.Passed {
			line = c.Name + ": failed: " + oc.Reason
		}
		o.checks = append(o.checks, line)
	}
	return o
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
