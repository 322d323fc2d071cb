// Command evalbench measures what `agent eval` adds to the time models take: it evaluates the
// example suite with several scripted models of a fixed latency per call (each replaying the
// suite's recorded transcripts, so the tools really run and the checks pass), and compares the
// wall time with the ideal — the model time of all calls divided by the concurrency — on top of a
// baseline measured in the same run: the same evaluation with models that answer at once. It also
// reports, per task epoch, the time spent outside model calls (sandbox, seeding, tools, checks,
// artifacts) as median and p99. It prints a Markdown report.
//
//	go build -o bin/agent ./cmd/agent
//	go run ./internal/cmd/evalbench -agent bin/agent -models 3 -epochs 3 -latency 200ms > bench.md
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/agentrun/agent/internal/evaltest"
	"github.com/agentrun/agent/report/results"
	"github.com/agentrun/agent/report/stats"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "evalbench:", err)
		os.Exit(1)
	}
}

func run() error {
	agentBin := flag.String("agent", "bin/agent", "the agent binary")
	suite := flag.String("suite", "tasks/examples", "the task suite")
	transcripts := flag.String("transcripts", "testdata/transcripts", "recorded transcripts, <task>.json, replayed by the scripted models")
	nModels := flag.Int("models", 3, "scripted models")
	epochs := flag.Int("epochs", 3, "epochs per task")
	latency := flag.Duration("latency", 200*time.Millisecond, "latency of every model call")
	concurrency := flag.Int("concurrency", runtime.NumCPU(), "tasks at once")
	keep := flag.String("out", "", "keep the results in this directory (default: a temporary one, removed)")
	flag.Parse()

	tmp, remove, err := evaltest.Workdir("evalbench-")
	if err != nil {
		return err
	}
	defer remove()
	var models []string
	for i := 1; i <= *nModels; i++ {
		models = append(models, fmt.Sprintf("scripted-%d", i))
	}
	// The baseline, measured in the same run: the same evaluation with models that answer at once,
	// so its wall time is everything but model latency.
	base, err := measure(*agentBin, *suite, *transcripts, models, *epochs, 0, *concurrency, filepath.Join(tmp, "base"))
	if err != nil {
		return err
	}
	out := *keep
	if out == "" {
		out = filepath.Join(tmp, "eval")
	}
	m, err := measure(*agentBin, *suite, *transcripts, models, *epochs, *latency, *concurrency, out)
	if err != nil {
		return err
	}
	ideal := m.modelTime / time.Duration(*concurrency)
	added := m.wall - base.wall
	fmt.Printf("## agent eval: wall time against model time\n\n")
	fmt.Printf("%s, %d CPUs, %s.\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH)
	fmt.Printf("Example suite (%d tasks) × %d scripted models × %d epochs = %d task epochs (%d passed, %d failed, %d errored), concurrency %d. "+
		"The scripted models replay the suite's recorded transcripts (the tools really run); %d model calls.\n\n",
		m.tasks, *nModels, *epochs, m.cells, m.passed, m.failed, m.errored, *concurrency, m.calls)
	fmt.Printf("| | baseline: model answers at once | model call latency %s |\n|---|--:|--:|\n", *latency)
	row := func(name string, f func(r *measurement) string) {
		fmt.Printf("| %s | %s | %s |\n", name, f(base), f(m))
	}
	row("wall time of agent eval", func(r *measurement) string { return r.wall.Round(10 * time.Millisecond).String() })
	row("model time (sum over calls, as the runner measured it)", func(r *measurement) string { return r.modelTime.Round(10 * time.Millisecond).String() })
	row("time per task epoch outside model calls, median", func(r *measurement) string { return r.outsideMedian.Round(time.Millisecond).String() })
	row("time per task epoch outside model calls, p99", func(r *measurement) string { return r.outsideP99.Round(time.Millisecond).String() })
	fmt.Printf("\n| with latency %s | |\n|---|--:|\n", *latency)
	fmt.Printf("| ideal cost of the model latency (model time / concurrency) | %s |\n", ideal.Round(10*time.Millisecond))
	fmt.Printf("| wall time it added (wall − baseline wall) | %s |\n", added.Round(10*time.Millisecond))
	fmt.Printf("| added / ideal | %.2f |\n", float64(added)/float64(ideal))
	fmt.Printf("| wall / (baseline wall + ideal) | %.2f |\n", float64(m.wall)/float64(base.wall+ideal))
	fmt.Printf("\nTime outside model calls is everything else a task epoch does: create the sandbox, seed, run\n" +
		"setup, run the tools the model asked for (tests, builds), run the checks, collect artifacts, kill\n" +
		"the sandbox. An added / ideal ratio near 1 (or below: while a task waits for its model, another\n" +
		"task's tools get the CPU) means the model's latency costs no more wall time than the\n" +
		"concurrency allows: the runner overlaps it with other tasks. Small runs on a busy machine are\n" +
		"noisy; compare the two columns of one run only.\n")
	return nil
}

type measurement struct {
	wall, modelTime           time.Duration
	outsideMedian, outsideP99 time.Duration
	tasks, cells              int
	passed, failed, errored   int
	calls                     int64
}

// measure runs one agent eval with scripted models of the given latency.
func measure(agentBin, suite, transcripts string, models []string, epochs int, latency time.Duration, concurrency int, out string) (*measurement, error) {
	rp, err := evaltest.StartReplay(transcripts, models, nil, latency)
	if err != nil {
		return nil, err
	}
	defer rp.Close()
	data := out + "-data"
	defer os.RemoveAll(data)
	start := time.Now()
	err = evaltest.Eval(agentBin, "--models", strings.Join(models, ","), "--repeat", fmt.Sprint(epochs),
		"--concurrency", fmt.Sprint(concurrency), "--base-url", rp.URL, "--no-stream", "--out", out,
		"--data-dir", data, suite)
	wall := time.Since(start)
	if err != nil {
		return nil, err
	}
	res, err := results.Load(out, results.Limits{SkipContent: true})
	if err != nil {
		return nil, err
	}
	m := &measurement{wall: wall, tasks: len(res.Tasks()), cells: len(res.Cells), calls: rp.Calls()}
	m.passed, m.failed, m.errored = res.Totals()
	var outside []float64
	for _, c := range res.Cells {
		var rf struct {
			Phases struct {
				ModelMS int64 `json:"model_ms"`
			} `json:"phases"`
		}
		b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(c.Dir), "result.json"))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &rf); err != nil {
			return nil, err
		}
		mt := time.Duration(rf.Phases.ModelMS) * time.Millisecond
		m.modelTime += mt
		outside = append(outside, float64(c.Duration-mt))
	}
	med, _ := stats.Median(outside)
	p99, _ := stats.Quantile(outside, 0.99)
	m.outsideMedian, m.outsideP99 = time.Duration(med), time.Duration(p99)
	return m, nil
}
