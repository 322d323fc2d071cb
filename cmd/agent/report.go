package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/report"
	"github.com/agentrun/agent/report/results"
)

type reportFlags struct {
	totals    bool
	serve     bool
	addr      string
	seedsRoot string
}

func newReportCmd() *cobra.Command {
	f := &reportFlags{}
	cmd := &cobra.Command{
		Use:   "report [flags] DIR",
		Short: "Write report.md, report.html and report.xml for a results directory, or serve reports",
		Long: `report reads the results directory of agent run or agent eval and writes, into it:

  report.md    a summary table and the tasks that did not pass (fits a GitHub job summary)
  report.html  one self-contained page: charts of an eval (pass rate per model with 95%
               intervals, tokens vs pass rate, model x task heatmap) and every task's checks,
               transcript (tool calls collapsible), produced files and their diff against
               the seed files; it loads nothing from the network
  report.xml   JUnit XML, one test case per task and epoch

With --serve it writes nothing and serves the reports on a local port instead: DIR is a results
directory, or a directory of them (runs/) to browse. Pages are rendered on every request.

Seed files for the diffs are read from the spec files the results name, and only from specs
below --seeds-root (default: the current directory).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReport(cmd, f, args[0])
		},
	}
	cmd.Flags().BoolVar(&f.serve, "serve", false, "serve the reports over HTTP instead of writing them")
	cmd.Flags().StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to serve on with --serve (port 0: any free port)")
	cmd.Flags().StringVar(&f.seedsRoot, "seeds-root", ".", "directory below which spec files may be read for seed diffs (empty: no diffs)")
	cmd.Flags().BoolVar(&f.totals, "totals", false, "write nothing; print the totals as key=value lines (passed, failed, errored, total, pass-rate), e.g. for $GITHUB_OUTPUT")
	return cmd
}

func runReport(cmd *cobra.Command, f *reportFlags, dir string) error {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return usageError("%s is not a directory", dir)
	}
	if f.serve {
		return serveReports(cmd.Context(), cmd, f, dir)
	}
	res, err := results.Load(dir, results.Limits{SkipContent: f.totals})
	if errors.Is(err, results.ErrNotResults) || errors.Is(err, fs.ErrNotExist) {
		return usageError("%v", err)
	}
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.totals {
		p, fl, e := res.Totals()
		rate := 0.0
		if n := p + fl + e; n > 0 {
			rate = float64(p) / float64(n)
		}
		fmt.Fprintf(out, "passed=%d\nfailed=%d\nerrored=%d\ntotal=%d\npass-rate=%.4f\n", p, fl, e, p+fl+e, rate)
		return nil
	}
	if f.seedsRoot != "" {
		res.LoadSeeds(f.seedsRoot, results.Limits{})
	}
	if err := report.WriteAll(res); err != nil {
		return err
	}
	for _, name := range []string{report.MarkdownFile, report.HTMLFile, report.JUnitFile} {
		fmt.Fprintln(out, filepath.Join(dir, name))
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	return nil
}

func serveReports(ctx context.Context, cmd *cobra.Command, f *reportFlags, dir string) error {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return usageError("--addr %s: %v", f.addr, err)
	}
	srv := report.NewServer(report.Handler(dir, report.ServeOptions{SeedsRoot: f.seedsRoot}))
	fmt.Fprintf(cmd.OutOrStdout(), "serving the reports of %s on http://%s/ (Ctrl-C to stop)\n", dir, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving reports: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	return nil
}
