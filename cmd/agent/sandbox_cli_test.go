package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv/localenv"
)

// TestSandboxCLI drives `agent sandbox …` as a user would: create (with the watchdog enforcing the
// timeout after create exits), ls, exec, kill, expiry, gc.
func TestSandboxCLI(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(agentBin, append([]string{args[0], "--data-dir", dd}, args[1:]...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	t.Cleanup(func() { run("sandbox", "kill", "--all"); run("sandbox", "gc") })

	out, code := run("sandbox", "create", "--timeout", "4s", "--memory", "256MiB")
	if code != 0 {
		t.Fatalf("create: %d %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	id := lines[len(lines)-1]
	out, code = run("sandbox", "exec", id, "--", "sh", "-c", "hostname; exit 7")
	if code != 7 || strings.TrimSpace(out) != id {
		t.Errorf("exec: exit %d, output %q", code, out)
	}
	out, code = run("sandbox", "ls", "--json")
	var infos []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Owned  bool   `json:"owned"`
		Limits struct {
			MemoryBytes int64 `json:"memory_bytes"`
		} `json:"limits"`
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil || code != 0 {
		t.Fatalf("ls: %v %s", err, out)
	}
	if len(infos) != 1 || infos[0].ID != id || infos[0].Status != "running" || !infos[0].Owned || infos[0].Limits.MemoryBytes != 256<<20 {
		t.Errorf("ls: %+v (the watchdog must own it)", infos)
	}
	// The watchdog kills it at its timeout, after create exited.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _ = run("sandbox", "ls", "--json")
		if strings.TrimSpace(out) == "[]" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.TrimSpace(out) != "[]" {
		t.Fatalf("sandbox outlived its timeout: %s", out)
	}
	if _, code := run("sandbox", "exec", id, "--", "true"); code != exitUsage {
		t.Errorf("exec in a gone sandbox: exit %d, want %d", code, exitUsage)
	}
	out, code = run("sandbox", "create")
	if code != 0 {
		t.Fatalf("create: %s", out)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	id = lines[len(lines)-1]
	if out, code := run("sandbox", "kill", id); code != 0 {
		t.Errorf("kill: %d %s", code, out)
	}
	if out, _ := run("sandbox", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("after kill: %s", out)
	}
	if out, code := run("sandbox", "gc"); code != 0 || !strings.Contains(out, "reclaimed 0 sandbox") {
		t.Errorf("gc: %d %s", code, out)
	}
	if _, code := run("sandbox", "kill", "NOT-AN-ID"); code != exitUsage {
		t.Errorf("kill with a bad id: exit %d", code)
	}
}
