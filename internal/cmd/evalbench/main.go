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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/internal/llmtest"
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

	tmp, err := os.MkdirTemp("", "evalbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
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
		"the sandbox. An added / ideal ratio near 1 means the model's latency costs no more wall time\n" +
		"than the concurrency allows: the runner overlaps it fully with other tasks.\n")
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
	router, calls, stop, err := startModels(transcripts, models, latency)
	if err != nil {
		return nil, err
	}
	defer stop()
	data := out + "-data"
	defer os.RemoveAll(data)
	cmd := exec.Command(agentBin, "eval", "--models", strings.Join(models, ","), "--repeat", fmt.Sprint(epochs),
		"--concurrency", fmt.Sprint(concurrency), "--base-url", router, "--no-stream", "--out", out,
		"--data-dir", data, suite)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("agent eval: %v\n%s", err, stderr.String())
	}
	res, err := results.Load(out, results.Limits{SkipContent: true})
	if err != nil {
		return nil, err
	}
	m := &measurement{wall: wall, tasks: len(res.Tasks()), cells: len(res.Cells), calls: calls.Load()}
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

// startModels serves every model id with the replay of each task's recorded transcript: a
// request is routed by its task prompt to an llmtest server scripted with that transcript's
// assistant turns. It returns the base URL and a counter of model calls.
func startModels(dir string, models []string, latency time.Duration) (string, *atomic.Int64, func(), error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return "", nil, nil, fmt.Errorf("no transcripts in %s", dir)
	}
	byPrompt := map[string]*url.URL{}
	var servers []*llmtest.Server
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for _, f := range files {
		t, err := transcript.Load(f)
		if err != nil {
			stop()
			return "", nil, nil, err
		}
		var scs []*llmtest.Scenario
		for _, m := range models {
			sc := &llmtest.Scenario{Name: m, Latency: llmtest.Duration(latency)}
			for _, msg := range t.Messages {
				if msg.Role != "assistant" {
					continue
				}
				turn := llmtest.Turn{Content: msg.Content}
				for _, tc := range msg.ToolCalls {
					turn.ToolCalls = append(turn.ToolCalls, llmtest.ToolCall{ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
				}
				sc.Turns = append(sc.Turns, turn)
			}
			scs = append(scs, sc)
		}
		srv, err := llmtest.NewServer(scs...)
		if err != nil {
			stop()
			return "", nil, nil, err
		}
		servers = append(servers, srv)
		u, _ := url.Parse(srv.URL())
		byPrompt[strings.TrimSpace(t.Task.Prompt)] = u
	}
	calls := new(atomic.Int64)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		target, _ := r.In.Context().Value(targetKey{}).(*url.URL)
		r.SetURL(target)
		r.Out.URL.Path = target.Path + strings.TrimPrefix(r.In.URL.Path, "/v1")
	}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content any    `json:"content"`
			} `json:"messages"`
		}
		json.Unmarshal(body, &req)
		var target *url.URL
		for _, m := range req.Messages {
			if s, ok := m.Content.(string); ok && m.Role == "user" {
				target = byPrompt[strings.TrimSpace(s)]
				break
			}
		}
		if target == nil {
			http.Error(w, "no recorded transcript for this prompt", http.StatusNotFound)
			return
		}
		calls.Add(1)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return "", nil, nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	all := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srv.Close()
		}
		stop()
	}
	return "http://" + ln.Addr().String() + "/v1", calls, all, nil
}

type targetKey struct{}
