package report_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/agentrun/agent/report"
)

// chromium returns the path of a headless-capable Chromium. Installed by scripts/deps.sh (Debian
// package chromium); a missing browser fails under CI and skips elsewhere.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (scripts/deps.sh installs it)")
	}
	t.Skip("chromium is not installed (scripts/deps.sh installs it)")
	return ""
}

// browser starts a fresh headless Chromium for the test and returns a tab context and the
// problems the page reported (console errors, exceptions, dialogs, CSP violations).
func browser(t *testing.T) (context.Context, func() []string) {
	exe := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // kills the browser process and waits for it
	})
	var mu sync.Mutex
	var problems []string
	add := func(s string) {
		mu.Lock()
		problems = append(problems, s)
		mu.Unlock()
	}
	err := chromedp.Listen(tctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				add(fmt.Sprintf("console.%s", e.Type))
			}
		case *runtime.EventExceptionThrown:
			add("exception: " + e.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError {
				add(fmt.Sprintf("log %s: %s", e.Entry.Source, e.Entry.Text))
			}
		case *page.EventJavascriptDialogOpening:
			add("dialog: " + e.Message)
			go chromedp.Call(tctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	})
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if _, err := chromedp.Call(tctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the log domain: %v", err)
	}
	if _, err := chromedp.Call(tctx, runtime.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enabling the runtime domain: %v", err)
	}
	return tctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

func TestReportInChromium(t *testing.T) {
	r := fixture(t)
	srv := httptest.NewServer(report.Handler(r.Dir, report.ServeOptions{}))
	t.Cleanup(srv.Close)
	ctx, problems := browser(t)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		must(err)
		return v
	}
	must(chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#totals"))))
	title, err := chromedp.Run(ctx, chromedp.Title())
	must(err)
	if title != "agent eval test-eval" {
		t.Errorf("title %q", title)
	}
	if n := eval(`document.querySelectorAll("svg.chart").length`); n != 3.0 {
		t.Fatalf("%v charts rendered, want 3", n)
	}
	areas := eval(`[...document.querySelectorAll("svg.chart")].map(s => { const r = s.getBoundingClientRect(); return r.width * r.height })`).([]any)
	for i, a := range areas {
		if a.(float64) < 10000 {
			t.Errorf("chart %d renders with an area of %.0f px²", i, a)
		}
	}
	if n := eval(`document.querySelectorAll("script").length`); n != 0.0 {
		t.Fatalf("%v script elements in the page (hostile text became markup)", n)
	}

	// The transcript of the first task is collapsed; opening it shows the messages, and a tool
	// call opens to its arguments and result.
	const tr = "#cell-1 details.transcript"
	if eval(`document.querySelector("`+tr+`").open`) != false {
		t.Fatal("transcript open before a click")
	}
	must(chromedp.Do(ctx, chromedp.Click(chromedp.CSS(tr+" > summary")), chromedp.WaitVisible(chromedp.CSS(tr+" .msg"))))
	if eval(`document.querySelector("`+tr+`").open`) != true || eval(`document.querySelector("`+tr+` .msg").offsetHeight`) == 0.0 {
		t.Fatal("transcript did not expand")
	}
	must(chromedp.Do(ctx, chromedp.Click(chromedp.CSS(tr+" details.tool-call > summary")), chromedp.WaitVisible(chromedp.CSS(tr+" details.tool-call pre"))))
	if eval(`document.querySelector("`+tr+` details.tool-call").open`) != true {
		t.Fatal("tool call did not expand")
	}
	args, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(tr+" details.tool-call pre")))
	must(err)
	result := eval(`document.querySelectorAll("` + tr + ` details.tool-call pre")[1].textContent`).(string)
	if args != "path: stats.py" || !strings.Contains(result, "def median(xs):") {
		t.Fatalf("tool call shows args %q result %q", args, result)
	}
	// The hostile text shows as text.
	if eval(`document.body.innerText.includes('<script>alert("x")</script>')`) != true {
		t.Error("hostile text is not shown as text")
	}
	if p := problems(); len(p) > 0 {
		t.Fatalf("the page reported problems: %v", p)
	}

	// The page can be captured (internal/cmd/reportdemo makes the README screenshot this way).
	eval(`window.scrollTo(0, 0), 0`)
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	must(err)
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil || img.Bounds().Dx() < 800 {
		t.Fatalf("screenshot: %v", err)
	}
	// The problem listener works: a console error is seen.
	eval(`console.error("self-check"), 0`)
	deadline := time.Now().Add(5 * time.Second)
	for len(problems()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(problems()) == 0 {
		t.Fatal("a console error was not noticed: the check for console errors cannot fail")
	}
}

// TestServeIndex serves a directory of runs: the index lists them and links to each report;
// names outside the listing are not served.
func TestServeIndex(t *testing.T) {
	r := fixture(t)
	runs := t.TempDir()
	if err := os.Rename(r.Dir, filepath.Join(runs, "20250102T030405Z-abcd1234")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(runs, "not-a-run"), 0o755)
	srv := httptest.NewServer(report.Handler(runs, report.ServeOptions{}))
	t.Cleanup(srv.Close)
	get := func(p string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		return resp.StatusCode, b.String()
	}
	code, body := get("/")
	if code != 200 || !strings.Contains(body, `href="run/20250102T030405Z-abcd1234/"`) || strings.Contains(body, "not-a-run") {
		t.Fatalf("index %d:\n%s", code, body)
	}
	if code, body := get("/run/20250102T030405Z-abcd1234/"); code != 200 || !strings.Contains(body, `class="chart heatmap"`) {
		t.Fatalf("run page %d", code)
	}
	if code, body := get("/run/20250102T030405Z-abcd1234/report.xml"); code != 200 || !strings.Contains(body, "<testsuites") {
		t.Fatalf("report.xml %d", code)
	}
	for _, p := range []string{"/run/not-a-run/", "/run/..%2f..%2fetc/", "/run/.hidden/"} {
		if code, _ := get(p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
}
