package runner_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
)

// TestArtifactsNeverFollowSymlinks has a hostile agent plant symlinks pointing out of the workdir
// (to a sandbox file, to /, to a host path) and next to real files: only the real files are
// collected, every symlink is listed as skipped, and nothing outside the task's files/ directory
// is written on the host. A file check on a symlink does not follow it either. A name the envd
// protocol cannot carry (a line break) is skipped with its reason.
func TestArtifactsNeverFollowSymlinks(t *testing.T) {
	requireSandboxes(t)
	ctx := ctxT(t, 5*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	hostSecret := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(hostSecret, []byte("host only"), 0o600); err != nil {
		t.Fatal(err)
	}
	plant := strings.Join([]string{
		"mkdir -p out/sub && echo real > out/real.txt && echo nested > out/sub/n.txt",
		"ln -s /etc/passwd out/passwd",
		"ln -s / out/root",
		"ln -s " + hostSecret + " out/host",
		"ln -s ../../../../../../etc/hostname out/climb",
		"ln -s real.txt out/inner",
		"ln -s /etc/passwd linked.txt",
		"printf x > $'out/new\\nline'",
	}, " && ")
	// The agent also removes a seed file; the changed mode reports it as deleted.
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "planter", Turns: []llmtest.Turn{call(plant + " && rm gone.txt"), {Content: "done"}}})
	dir := t.TempDir()
	for _, name := range []string{"changed", "globs"} {
		extra := ""
		if name == "globs" {
			extra = `artifacts: ["**"]`
		}
		runnertest.WriteSpec(t, dir, name, `
prompt: plant symlinks
model: custom:planter
files:
  - {path: keep.txt, content: "unchanged\n"}
  - {path: gone.txt, content: "to be removed\n"}
checks:
  - {file: linked.txt, contains: "root:"}
  - {file: out/real.txt, equals: "real\n"}
`+extra+"\n")
	}
	out := filepath.Join(t.TempDir(), "results")
	runSuite(t, ctx, b, runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Concurrency: 2})
	for _, name := range []string{"changed", "globs"} {
		res := taskResult(t, out, name)
		if res.Status != runner.StatusFailed {
			t.Errorf("%s: status %s %s (the symlink file check must fail)", name, res.Status, res.Detail)
		}
		var checks runner.ChecksDoc
		readJSON(t, filepath.Join(out, "tasks", name, "checks.json"), &checks)
		if c := checks.Checks[0]; c.Passed || !strings.Contains(c.Reason, "symlink") {
			t.Errorf("%s: file check on a symlink = %+v", name, c)
		}
		if c := checks.Checks[1]; !c.Passed {
			t.Errorf("%s: file check on a real file = %+v", name, c)
		}
		a := res.Artifacts
		var files []string
		for _, f := range a.Files {
			files = append(files, f.Path)
		}
		want := []string{"out/real.txt", "out/sub/n.txt"}
		if name == "globs" {
			want = []string{"keep.txt", "out/real.txt", "out/sub/n.txt"}
		}
		if !slices.Equal(files, want) {
			t.Errorf("%s: collected %q, want %q (skipped %q)", name, files, want, a.Skipped)
		}
		skipped := map[string]string{}
		for _, s := range a.Skipped {
			skipped[s.Path] = s.Reason
		}
		if !strings.Contains(skipped["out/new?line"], "not a plain file name") {
			t.Errorf("%s: a name with a line break should be skipped: %q", name, a.Skipped)
		}
		for _, link := range []string{"out/passwd", "out/root", "out/host", "out/climb", "out/inner", "linked.txt"} {
			if !strings.Contains(skipped[link], "symlink") || !strings.Contains(skipped[link], "not followed") {
				t.Errorf("%s: symlink %s not reported as skipped: %q", name, link, skipped[link])
			}
		}
		if name == "changed" && !slices.Equal(a.Deleted, []string{"gone.txt"}) {
			t.Errorf("changed: deleted = %v", a.Deleted)
		}
		// On the host: only regular files, exactly the collected ones, all inside files/.
		filesDir := filepath.Join(out, "tasks", name, "files")
		var onHost []string
		err := filepath.WalkDir(filesDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				t.Errorf("%s: symlink on the host: %s", name, p)
			}
			if d.Type().IsRegular() {
				rel, _ := filepath.Rel(filesDir, p)
				onHost = append(onHost, filepath.ToSlash(rel))
				data, _ := os.ReadFile(p)
				if strings.Contains(string(data), "root:") || strings.Contains(string(data), "host only") {
					t.Errorf("%s: %s holds content from outside the workdir", name, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(onHost)
		if !slices.Equal(onHost, want) {
			t.Errorf("%s: files on the host %q, want %q", name, onHost, want)
		}
	}
	if data, err := os.ReadFile(hostSecret); err != nil || string(data) != "host only" {
		t.Errorf("the host file was touched: %q %v", data, err)
	}
}
