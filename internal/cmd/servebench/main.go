// Command servebench measures create→first command through `agent serve` with the npm e2b SDK,
// beside the same through the Go remote backend (sandbox/e2b) against the same server and through
// the Go local backend directly (the baseline), all in one run on one data directory. It prints a
// Markdown table with p50/p99.
//
//	go build -o bin/agent ./cmd/agent
//	go run ./internal/cmd/servebench -binary bin/agent -n 30 > bench-serve.md
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/agentrun/agent/report/stats"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b"
	"github.com/agentrun/agent/sandbox/envdclient"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve"
)

func main() {
	var (
		binary, dataDir, jsDir, sdks string
		n, warmup                    int
	)
	flag.StringVar(&binary, "binary", "bin/agent", "agent binary (sandbox init)")
	flag.StringVar(&dataDir, "data-dir", "/var/lib/agent-bench-serve", "data dir (its sandboxes are killed at the end)")
	flag.StringVar(&jsDir, "js-dir", "test/sdk/js", "directory with the npm SDKs installed (npm ci) and bench.mjs")
	flag.StringVar(&sdks, "sdks", "e2b,e2b-2.45,novita-sandbox", "npm SDK packages to measure (comma-separated; empty skips node)")
	flag.IntVar(&n, "n", 30, "measured iterations per row")
	flag.IntVar(&warmup, "warmup", 2, "unmeasured iterations first")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(binary, dataDir, jsDir, splitList(sdks), n, warmup); err != nil {
		fmt.Fprintln(os.Stderr, "servebench:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

type row struct {
	name string
	ms   []float64
	err  error
}

func run(binary, dataDir, jsDir string, sdks []string, n, warmup int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	bin, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return err
	}
	b, err := local.New(ctx, local.Config{
		DataDir: dataDir, Binary: bin,
		Connect: func(ctx context.Context, in local.ConnectInfo) (local.DataPlane, error) {
			return envdclient.New(envdclient.Config{BaseURL: "http://envd", Dial: in.Dial, AccessToken: in.AccessToken})
		},
	})
	if err != nil {
		return err
	}
	defer b.Close()
	var rows []row

	// Baseline: the Go local backend, create → first command over its unix socket.
	rows = append(rows, measure("Go local backend, direct (baseline)", n, warmup, func() (time.Duration, error) {
		return createAndRun(ctx, func() (sandbox.Sandbox, error) { return b.Create(ctx, local.Options{}) })
	}))

	// agent serve in this process, over the same backend.
	key := serve.GenerateAPIKey()
	srv, err := serve.New(serve.Config{Provider: &serve.Local{Backend: b}, APIKeys: []string{key}})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() {
		stop()
		<-served
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		_ = srv.Close(cctx)
	}()
	url := "http://" + ln.Addr().String()

	eb, err := e2b.New(e2b.Config{Flavor: e2b.FlavorE2B, APIKey: key, APIURL: url, SandboxURL: url})
	if err != nil {
		return err
	}
	defer eb.Close()
	rows = append(rows, measure("Go remote backend (sandbox/e2b) → agent serve", n, warmup, func() (time.Duration, error) {
		return createAndRun(ctx, func() (sandbox.Sandbox, error) { return eb.Create(ctx, e2b.CreateOptions{}) })
	}))

	for _, pkg := range sdks {
		r := row{name: "npm " + sdkVersion(jsDir, pkg) + " → agent serve"}
		r.ms, r.err = runNode(ctx, jsDir, pkg, url, key, n, warmup)
		rows = append(rows, r)
	}

	host, _ := os.Hostname()
	fmt.Printf("### create → first command (`true`), %d iterations each (after %d warm-up), %s, %s\n\n", n, warmup, host, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| path | p50 | p99 | mean | n |")
	fmt.Println("|---|---|---|---|---|")
	for _, r := range rows {
		if r.err != nil {
			fmt.Printf("| %s | error: %v | | | |\n", r.name, r.err)
			continue
		}
		p50, p99, mean := summarize(r.ms)
		fmt.Printf("| %s | %.1f ms | %.1f ms | %.1f ms | %d |\n", r.name, p50, p99, mean, len(r.ms))
	}
	fmt.Println("\nEach iteration creates a sandbox (host template, runc), runs `true` to its end and then kills it (the kill is not timed). The rows share one data directory and one run; the baseline talks to envd over its unix socket, the others over HTTP on loopback through `agent serve`.")
	return nil
}

func measure(name string, n, warmup int, once func() (time.Duration, error)) row {
	r := row{name: name}
	for i := 0; i < warmup+n; i++ {
		d, err := once()
		if err != nil {
			r.err = err
			return r
		}
		if i >= warmup {
			r.ms = append(r.ms, float64(d.Microseconds())/1000)
		}
	}
	return r
}

// runNode runs bench.mjs with the npm SDK pkg and returns its per-iteration milliseconds.
func runNode(ctx context.Context, jsDir, pkg, url, key string, n, warmup int) ([]float64, error) {
	cmd := exec.CommandContext(ctx, "node", "bench.mjs")
	cmd.Dir = jsDir
	prefix := "E2B"
	if pkg == "novita-sandbox" {
		prefix = "NOVITA"
	}
	cmd.Env = append(os.Environ(), "BENCH_SDK="+pkg, "BENCH_N="+strconv.Itoa(n), "BENCH_WARMUP="+strconv.Itoa(warmup),
		prefix+"_API_URL="+url, prefix+"_SANDBOX_URL="+url, prefix+"_API_KEY="+key)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting node: %w", err)
	}
	var ms []float64
	sc := bufio.NewScanner(io.LimitReader(out, 1<<20))
	for sc.Scan() {
		var v struct{ Ms float64 }
		if json.Unmarshal(sc.Bytes(), &v) == nil && v.Ms > 0 {
			ms = append(ms, v.Ms)
		}
	}
	if err := cmd.Wait(); err != nil {
		return ms, fmt.Errorf("node bench.mjs (%s): %w", pkg, err)
	}
	if len(ms) != n {
		return ms, errors.New("node printed fewer results than iterations")
	}
	return ms, nil
}

// sdkVersion names an installed npm package as "name version" (an alias by its real name).
func sdkVersion(jsDir, pkg string) string {
	b, err := os.ReadFile(filepath.Join(jsDir, "node_modules", pkg, "package.json"))
	if err != nil {
		return pkg
	}
	var p struct{ Name, Version string }
	if json.Unmarshal(b, &p) != nil || p.Name == "" {
		return pkg
	}
	return p.Name + " " + p.Version
}

// createAndRun times create → the first command (true) of a sandbox, which it then kills.
func createAndRun(ctx context.Context, create func() (sandbox.Sandbox, error)) (time.Duration, error) {
	t0 := time.Now()
	s, err := create()
	if err != nil {
		return 0, err
	}
	defer s.Kill(context.WithoutCancel(ctx))
	if _, err := s.Run(ctx, sandbox.Cmd{Shell: "true"}); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// summarize returns the nearest-rank p50 and p99 of ms and their mean.
func summarize(ms []float64) (p50, p99, mean float64) {
	for _, v := range ms {
		mean += v
	}
	return stats.Percentile(ms, 50), stats.Percentile(ms, 99), mean / float64(len(ms))
}
