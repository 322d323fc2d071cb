package envdclient

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/report/stats"
	"github.com/agentrun/agent/sandbox"
)

// The benchmarks run against a real standalone envd. Baselines run in the same process and run:
// a bare fork+exec of /bin/true, and of `/bin/bash -l -c true` (what commands.run sends).

func BenchmarkRunTrue(b *testing.B) {
	e := startEnvd(b, testenv.EnvdOptions{})
	c := e.client(b, nil)
	ctx := context.Background()
	for _, v := range runVariants(c, e.HostPath("home/user")) {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				if err := v.run(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUpload(b *testing.B) {
	e := startEnvd(b, testenv.EnvdOptions{})
	c := e.client(b, nil)
	ctx := context.Background()
	for _, size := range []int64{1 << 20, 100 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := c.WriteFile(ctx, "/home/user/bench.bin", newPatternReader(1, size)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDownload(b *testing.B) {
	e := startEnvd(b, testenv.EnvdOptions{})
	c := e.client(b, nil)
	ctx := context.Background()
	for _, size := range []int64{1 << 20, 100 << 20} {
		path := "/home/user/bench-" + sizeName(size)
		if err := c.WriteFile(ctx, path, newPatternReader(2, size)); err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if err := download(ctx, c, path, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func download(ctx context.Context, c *Client, path string, size int64) error {
	r, err := c.Open(ctx, path)
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes, want %d", n, size)
	}
	return err
}

func sizeName(n int64) string { return strconv.FormatInt(n>>20, 10) + "MiB" }

type runVariant struct {
	name string
	run  func(context.Context) error
}

func runVariants(c *Client, home string) []runVariant {
	// The bare fork+exec baseline comes first: the report's ratios are relative to it.
	return []runVariant{
		{"forkexec-true", func(ctx context.Context) error {
			return exec.CommandContext(ctx, "/bin/true").Run()
		}},
		{"forkexec-bash-login", func(ctx context.Context) error {
			// As envd runs it: as the user, with the world's (empty) home, not the host's dotfiles.
			cmd := exec.CommandContext(ctx, "/bin/bash", "-l", "-c", "true")
			cmd.Env = []string{"HOME=" + home, "PATH=/usr/local/bin:/usr/bin:/bin", "USER=user", "LOGNAME=user"}
			cmd.Dir = home
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
			return cmd.Run()
		}},
		{"envd-argv", func(ctx context.Context) error {
			_, err := c.Run(ctx, sandbox.Cmd{Argv: []string{"/bin/true"}})
			return err
		}},
		{"envd-shell", func(ctx context.Context) error { // commands.run("true") as the SDKs send it
			_, err := c.Run(ctx, sandbox.Cmd{Shell: "true"})
			return err
		}},
	}
}

// TestLatencyReport prints p50/p99 latencies and throughputs as a Markdown table for
// docs/BENCHMARKS.md. It runs only when ENVDCLIENT_BENCH_REPORT is set (to "1", or to a file to
// write the table to):
//
//	ENVDCLIENT_BENCH_REPORT=1 go test -run TestLatencyReport -v ./sandbox/envdclient
func TestLatencyReport(t *testing.T) {
	dest := os.Getenv("ENVDCLIENT_BENCH_REPORT")
	if dest == "" {
		t.Skip("set ENVDCLIENT_BENCH_REPORT=1 (or =FILE) to measure")
	}
	iters := 300
	if v, err := strconv.Atoi(os.Getenv("ENVDCLIENT_BENCH_ITERS")); err == nil && v > 0 {
		iters = v
	}
	e := startEnvd(t, testenv.EnvdOptions{})
	c := e.client(t, nil)
	ctx := context.Background()
	var sb strings.Builder
	fmt.Fprintf(&sb, "### envd client round trips (%d runs each, same machine, same run)\n\n", iters)
	sb.WriteString("| operation | p50 | p99 | p50 vs fork+exec /bin/true |\n|---|---|---|---|\n")
	var base time.Duration
	for _, v := range runVariants(c, e.HostPath("home/user")) {
		lat := make([]time.Duration, 0, iters)
		for range iters {
			t0 := time.Now()
			if err := v.run(ctx); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		p50, p99 := stats.Percentile(lat, 50), stats.Percentile(lat, 99)
		if v.name == "forkexec-true" {
			base = p50
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %.1fx |\n", v.name, round(p50), round(p99), float64(p50)/float64(base))
	}
	sb.WriteString("\n| transfer | runs | p50 time | p50 throughput | p99 time |\n|---|---|---|---|---|\n")
	for _, size := range []int64{1 << 20, 100 << 20} {
		runs := 50
		if size > 1<<20 {
			runs = 8
		}
		path := "/home/user/report-" + sizeName(size)
		var up, down []time.Duration
		for range runs {
			t0 := time.Now()
			if err := c.WriteFile(ctx, path, newPatternReader(3, size)); err != nil {
				t.Fatal(err)
			}
			up = append(up, time.Since(t0))
			t0 = time.Now()
			if err := download(ctx, c, path, size); err != nil {
				t.Fatal(err)
			}
			down = append(down, time.Since(t0))
		}
		for _, m := range []struct {
			name string
			lat  []time.Duration
		}{{"upload", up}, {"download", down}} {
			p50 := stats.Percentile(m.lat, 50)
			fmt.Fprintf(&sb, "| %s %s | %d | %s | %.0f MiB/s | %s |\n", m.name, sizeName(size), runs, round(p50),
				float64(size)/(1<<20)/p50.Seconds(), round(stats.Percentile(m.lat, 99)))
		}
	}
	t.Log("\n" + sb.String())
	if dest != "1" {
		if err := os.WriteFile(dest, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
