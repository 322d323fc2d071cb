package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/report/results/resultstest"
)

func reportFixture(t *testing.T) string {
	return resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "run"}, []resultstest.Cell{
		{Task: "ok", Model: "m", Status: "passed", DurationMS: 1000},
		{Task: "bad", Model: "m", Status: "failed", DurationMS: 2000},
	})
}

func TestReportCommandWrites(t *testing.T) {
	dir := reportFixture(t)
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"report", "--seeds-root", "", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report.md", "report.html", "report.xml"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(out.String(), filepath.Join(dir, name)) {
			t.Errorf("output does not name %s: %q", name, out.String())
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(md), "**1 passed**, 1 failed") {
		t.Fatalf("report.md:\n%s", md)
	}
	// Not a results directory: a usage error.
	root = newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"report", t.TempDir()})
	if err := root.Execute(); exitCode2(err) != exitUsage {
		t.Fatalf("report of an empty directory: %v", err)
	}
}

func exitCode2(err error) int {
	if ee, ok := err.(*exitError); ok {
		return ee.code
	}
	if err == nil {
		return 0
	}
	return -1
}

func TestReportCommandServes(t *testing.T) {
	dir := reportFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	root := newRootCmd()
	root.SetOut(pw)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"report", "--serve", "--addr", "127.0.0.1:0", dir})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`).FindString(line)
	if url == "" {
		t.Fatalf("no URL in %q", line)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<section class="cell"`) {
		t.Fatalf("GET /: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on cancel")
	}
}
