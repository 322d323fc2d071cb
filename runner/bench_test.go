package runner_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/hostinfo"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/report/stats"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
)

// BenchmarkOrchestration measures what the runner adds around the model: a zero-latency scripted
// model makes 10 tool calls per task (write, read, list and commands) and answers; each task has
// seed files, one run check and one file check. Run it with one iteration per concurrency:
//
//	go test -run '^$' -bench Orchestration -benchtime 1x ./runner
//
// Metrics, per concurrency (1, 8, 32; each runs max(2×c, 16) tasks):
//   - overhead-p50-ms, overhead-p99-ms: a task's wall time minus its model time (sandbox create,
//     seed, tools, checks, artifacts, kill, results);
//   - tasks/min: throughput of the whole batch;
//   - host-MiB/task: the drop of the host's MemAvailable at the peak, per concurrent task
//     (approximate on a shared machine).
//
// The baseline sub-benchmark measures, in the same run, a bare sandbox lifecycle without the
// runner (create, one command, kill), so the runner's own share is visible.
func BenchmarkOrchestration(b *testing.B) {
	requireSandboxes(b)
	dd := localenv.DataDir(b)
	backend := runnertest.Backend(b, dd, agentBin, "")
	srv := llmtest.Start(b, benchScenario())
	base := benchSpec(b)

	b.Run("baseline-sandbox", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			var ms []float64
			for range 16 {
				start := time.Now()
				sb, err := backend.Create(ctx, runner.SandboxRequest{Template: "host", Lifetime: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := sb.Run(ctx, sandbox.Cmd{Shell: "true"}); err != nil {
					b.Fatal(err)
				}
				if err := sb.Kill(ctx); err != nil {
					b.Fatal(err)
				}
				ms = append(ms, float64(time.Since(start).Microseconds())/1000)
			}
			b.ReportMetric(stats.Percentile(ms, 50), "lifecycle-p50-ms")
			b.ReportMetric(stats.Percentile(ms, 99), "lifecycle-p99-ms")
		}
	})
	for _, c := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", c), func(b *testing.B) {
			n := max(2*c, 16)
			for b.Loop() {
				specs := make([]*spec.Spec, n)
				for i := range specs {
					s := *base
					s.Name = fmt.Sprintf("bench-%03d", i)
					specs[i] = &s
				}
				out := filepath.Join(b.TempDir(), "results")
				r, err := runner.New(runner.Config{Specs: specs, Models: scripted(srv), Out: out, Concurrency: c})
				if err != nil {
					b.Fatal(err)
				}
				availBefore := hostinfo.Meminfo("MemAvailable")
				peak := availBefore
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					t := time.NewTicker(50 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-stop:
							return
						case <-t.C:
							peak = min(peak, hostinfo.Meminfo("MemAvailable"))
						}
					}
				})
				start := time.Now()
				sum, err := r.Run(context.Background(), backend)
				elapsed := time.Since(start)
				close(stop)
				wg.Wait()
				if err != nil {
					b.Fatal(err)
				}
				if sum.Passed != n {
					b.Fatalf("%d of %d tasks passed: %+v", sum.Passed, n, sum.Tasks[0])
				}
				var overhead []float64
				for _, t := range sum.Tasks {
					res := taskResult(b, out, t.Name)
					overhead = append(overhead, float64(res.DurationMS-res.Phases.ModelMS))
				}
				b.ReportMetric(stats.Percentile(overhead, 50), "overhead-p50-ms")
				b.ReportMetric(stats.Percentile(overhead, 99), "overhead-p99-ms")
				b.ReportMetric(float64(n)/elapsed.Minutes(), "tasks/min")
				b.ReportMetric(float64(availBefore-peak)/float64(c)/(1<<20), "host-MiB/task")
			}
		})
	}
}

// benchScenario is a model that makes 10 tool calls, one per turn, then answers.
func benchScenario() *llmtest.Scenario {
	calls := []llmtest.ToolCall{
		{Name: "list_files", Args: map[string]any{"path": "."}},
		{Name: "read_file", Args: map[string]any{"path": "input.txt"}},
		{Name: "write_file", Args: map[string]any{"path": "out.txt", "data": "result\n"}},
		{Name: "run_commands", Args: map[string]any{"command": "wc -l input.txt"}},
		{Name: "write_files", Args: map[string]any{"files": []any{map[string]any{"path": "a/b.txt", "data": "b"}, map[string]any{"path": "a/c.txt", "data": "c"}}}},
		{Name: "run_commands", Args: map[string]any{"command": "ls -la a"}},
		{Name: "read_file", Args: map[string]any{"path": "out.txt"}},
		{Name: "run_commands", Args: map[string]any{"command": "cat a/*.txt"}},
		{Name: "run_commands", Args: map[string]any{"command": "echo done >> out.txt"}},
		{Name: "read_file", Args: map[string]any{"path": "out.txt"}},
	}
	sc := &llmtest.Scenario{Name: "bench"}
	for _, c := range calls {
		sc.Turns = append(sc.Turns, llmtest.Turn{ToolCalls: []llmtest.ToolCall{c}})
	}
	sc.Turns = append(sc.Turns, llmtest.Turn{Content: "Done."})
	return sc
}

func benchSpec(b *testing.B) *spec.Spec {
	dir := b.TempDir()
	runnertest.WriteSpec(b, dir, "bench", `
prompt: do ten things
model: custom:bench
files:
  - {path: input.txt, content: "one\ntwo\nthree\n"}
checks:
  - {run: "grep -c . out.txt", stdout: "2\n"}
  - {file: a/b.txt, equals: "b"}
`)
	s, err := spec.LoadSpec(filepath.Join(dir, "bench.yaml"), spec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}
