package local_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/local"
)

// watchdogs lists the pids of `agent sandbox watch` processes for id.
func watchdogs(id string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if slices.Contains(args, "watch") && slices.Contains(args, id) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestCLIPauseResumeSnapshotFork drives pause, resume, snapshot, create --from, fork and the
// snapshot subcommands through the agent binary.
func TestCLIPauseResumeSnapshotFork(t *testing.T) {
	dd := tempDataDir(t)
	b := newBackendAt(t, dd, nil)
	ctx := ctxT(t, 5*time.Minute)
	leaks := noLeaks(t, dd)
	agent := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(ctx, agentBin, append([]string{"sandbox", "--data-dir", dd, "--template-dir", templateCache}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			t.Logf("agent sandbox %v: %v\n%s", args, err, stderr.String())
		}
		return strings.TrimSpace(stdout.String()), err
	}
	list := func() []local.Info {
		t.Helper()
		out, err := agent("ls", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var infos []local.Info
		if err := json.Unmarshal([]byte(out), &infos); err != nil {
			t.Fatal(err)
		}
		return infos
	}
	id, err := agent("create", "--timeout", "2m")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = agent("kill", "--all") })
	if _, err := agent("exec", id, "--", "sh", "-c", "echo cli > /home/user/f"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the watchdog", func() bool { return len(watchdogs(id)) == 1 })

	if _, err := agent("pause", "--note", "look later", id); err != nil {
		t.Fatal(err)
	}
	if in := list(); len(in) != 1 || in[0].Status != "paused" || !in[0].Kept || in[0].Note != "look later" || in[0].Remaining <= 0 {
		t.Fatalf("after pause: %+v", in)
	}
	// The watchdog lets go of a kept sandbox; gc leaves it.
	waitFor(t, 10*time.Second, "the watchdog to exit", func() bool { return len(watchdogs(id)) == 0 })
	if out, err := agent("gc"); err != nil || strings.Contains(out, id) {
		t.Fatalf("gc: %v %s", err, out)
	}
	if out, err := agent("resume", "--timeout", "90s", id); err != nil || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: %v %s", err, out)
	}
	in := list()
	if len(in) != 1 || in[0].Status != "running" || in[0].Kept || time.Until(in[0].Expires) > 90*time.Second {
		t.Fatalf("after resume: %+v", in)
	}
	waitFor(t, 10*time.Second, "a new watchdog", func() bool { return len(watchdogs(id)) == 1 })

	if out, err := agent("snapshot", id, "--id", "s1"); err != nil || out != "s1" {
		t.Fatalf("snapshot: %v %q", err, out)
	}
	if _, err := agent("snapshot", id, "--memory"); err == nil {
		t.Fatal("snapshot --memory succeeded without CRIU support")
	}
	c, err := agent("create", "--from", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := agent("exec", c, "--", "cat", "/home/user/f"); err != nil || out != "cli" {
		t.Fatalf("created from s1: %v %q", err, out)
	}
	forks, err := agent("fork", "s1", "-n", "2")
	if err != nil || len(strings.Fields(forks)) != 2 {
		t.Fatalf("fork: %v %q", err, forks)
	}
	for _, f := range strings.Fields(forks) {
		if out, err := agent("exec", f, "--", "cat", "/home/user/f"); err != nil || out != "cli" {
			t.Fatalf("fork %s: %v %q", f, err, out)
		}
	}
	out, err := agent("snapshot", "ls", "--json")
	var snaps []local.SnapshotInfo
	if err != nil || json.Unmarshal([]byte(out), &snaps) != nil || len(snaps) != 1 || len(snaps[0].UsedBy) != 3 {
		t.Fatalf("snapshot ls: %v %s", err, out)
	}
	if out, err := agent("snapshot", "verify", "s1"); err != nil || out != "s1: ok" {
		t.Fatalf("verify: %v %q", err, out)
	}
	if _, err := agent("snapshot", "rm", "s1"); err == nil {
		t.Fatal("removed a snapshot in use")
	}
	if _, err := agent("kill", "--all"); err != nil {
		t.Fatal(err)
	}
	if _, err := agent("snapshot", "rm", "s1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the watchdogs to exit", func() bool { return len(watchdogs(id)) == 0 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	leaks()
}
