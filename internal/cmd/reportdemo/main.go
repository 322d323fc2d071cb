// Command reportdemo makes the report screenshot of the README (docs/report.png) from a real
// `agent eval`: the example suite in real sandboxes with three scripted models — one replays every
// recorded transcript, one gives up on some tasks and loops on one, one gives up on most — then
// opens report.html in headless Chromium and captures the top of the page. No real model is
// involved, and the model names say so.
//
//	go build -o bin/agent ./cmd/agent
//	go run ./internal/cmd/reportdemo -agent bin/agent -png docs/report.png
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentrun/agent/internal/evaltest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reportdemo:", err)
		os.Exit(1)
	}
}

func run() error {
	agentBin := flag.String("agent", "bin/agent", "the agent binary")
	suite := flag.String("suite", "tasks/examples", "the task suite")
	transcripts := flag.String("transcripts", "testdata/transcripts", "recorded transcripts, <task>.json")
	png := flag.String("png", "docs/report.png", "where to write the screenshot")
	keep := flag.String("out", "", "keep the evaluation's results here (default: removed)")
	flag.Parse()

	tmp, remove, err := evaltest.Workdir("reportdemo-")
	if err != nil {
		return err
	}
	defer remove()
	out := *keep
	if out == "" {
		out = filepath.Join(tmp, "eval")
	}
	models := []string{"scripted-strong", "scripted-medium", "scripted-weak"}
	mode := func(model, task string) evaltest.Mode {
		switch model {
		case "scripted-medium":
			if task == "paginate-fix" {
				return evaltest.Loop
			}
			if slices.Contains([]string{"git-find-regression", "sales-report"}, task) {
				return evaltest.GiveUp
			}
		case "scripted-weak":
			if !slices.Contains([]string{"fizzbuzz", "slugify", "log-errors"}, task) {
				return evaltest.GiveUp
			}
		}
		return evaltest.Solve
	}
	rp, err := evaltest.StartReplay(*transcripts, models, mode, 50*time.Millisecond)
	if err != nil {
		return err
	}
	defer rp.Close()
	err = evaltest.Eval(*agentBin, "--models", "scripted-strong,scripted-medium,scripted-weak", "--repeat", "2",
		"--base-url", rp.URL, "--no-stream", "--max-steps", "8", "--out", out, "--data-dir", filepath.Join(tmp, "data"), *suite)
	if err != nil {
		return err
	}
	page, err := filepath.Abs(filepath.Join(out, "report.html"))
	if err != nil {
		return err
	}
	shot, err := screenshot("file://" + page)
	if err != nil {
		return err
	}
	return os.WriteFile(*png, shot, 0o644)
}

// screenshot opens url in a fresh headless Chromium and captures the top of the page.
func screenshot(url string) ([]byte, error) {
	udd, err := os.MkdirTemp("", "reportdemo-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(udd)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(udd), chromedp.WindowSize(1280, 1100),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		opts = append(opts, chromedp.ExecPath(p))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#totals"))); err != nil {
		return nil, err
	}
	return chromedp.Run(ctx, chromedp.CaptureScreenshot())
}
