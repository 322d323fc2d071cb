// Command soak runs `agent run` (the real binary, local sandboxes) in rounds for a bounded time,
// with a scripted model (internal/llmtest) that mixes normal work — the example suite's tasks,
// played back from their recorded transcripts — with attacks and floods: a fork bomb, a memory
// bomb, a disk fill, an output flood, an artifact flood, symlinks planted (and raced) for artifact
// collection, and network escapes from an allow-listed and an internet task against the fake
// internet of internal/fakenet. It watches the runner and the host while the rounds run, checks
// after each round that nothing leaked and that every task is accounted for, and writes a
// Markdown report.
//
//	go build -o bin/agent ./cmd/agent
//	go run ./internal/cmd/soak -binary bin/agent -duration 30m -report docs/SOAK.md
//
// It needs root, runc, nft and curl, and is not part of `make test` (`make soak`).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/agentrun/agent/internal/testenv"
)

func main() { os.Exit(soakMain()) }

// config configures a soak.
type config struct {
	binary, dataDir, work, report string
	duration, sample, latency     time.Duration
	concurrency, repeat           int
	keep, dropCaches              bool
}

func soakMain() int {
	var c config
	flag.StringVar(&c.binary, "binary", "bin/agent", "the agent binary")
	flag.StringVar(&c.dataDir, "data-dir", "/var/lib/agent-soak", "sandbox data dir (its sandboxes must all be the soak's)")
	flag.StringVar(&c.work, "work", "", "working directory for suites and results (default: a new temporary directory, removed at the end)")
	flag.StringVar(&c.report, "report", "docs/SOAK.md", "report file to write")
	flag.DurationVar(&c.duration, "duration", 30*time.Minute, "total time bound: no round starts that would end after it")
	flag.DurationVar(&c.sample, "sample", 5*time.Second, "interval of the runner and host samples")
	flag.DurationVar(&c.latency, "latency", 200*time.Millisecond, "scripted model latency per answer")
	flag.IntVar(&c.concurrency, "concurrency", 16, "agent run --concurrency")
	flag.IntVar(&c.repeat, "repeat", 4, "epochs of each example task per round")
	flag.BoolVar(&c.keep, "keep", false, "keep every round's results (default: only those of rounds with findings)")
	flag.BoolVar(&c.dropCaches, "drop-caches", true, "drop the host's page cache before the first round and after the last, to read settled kernel memory")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "soak: needs root (local sandboxes)")
		return 2
	}
	var err error
	if c.binary, err = filepath.Abs(c.binary); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	if c.work == "" {
		if c.work, err = os.MkdirTemp("", "agent-soak-"); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		defer os.RemoveAll(c.work)
	}
	// An interrupt ends the current round early (the runner is interrupted in turn) and still
	// writes the report.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &soak{cfg: c, root: root}
	res, err := s.run(ctx)
	if res != nil {
		if werr := writeReport(c.report, res); werr != nil {
			fmt.Fprintln(os.Stderr, "soak: writing the report:", werr)
			return 1
		}
		fmt.Fprintf(os.Stderr, "soak: report written to %s: %s\n", c.report, res.verdict())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	if !res.ok() {
		return 1
	}
	return 0
}
