package actiontest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/evaltest"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
)

var agentBin, skipReason string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithSandboxes(m, &agentBin, &skipReason)) }

// keyCheck is a check that fails when the sandbox holds the key anywhere a task could read it:
// the environment of its commands, any process's environment (envd is PID 1), or files in the
// workdir, /tmp and /etc. The key is assembled at run time so the check's own command line does
// not hold it.
func keyCheck(key string) string {
	half := len(key) / 2
	return fmt.Sprintf(`k="$(printf %%s '%s')$(printf %%s '%s')"
if env | grep -qF "$k"; then echo "the key is in the environment"; exit 1; fi
for f in /proc/[0-9]*/environ; do
  if tr '\0' '\n' <"$f" 2>/dev/null | grep -qF "$k"; then echo "the key is in $f"; exit 1; fi
done
if grep -rqsF "$k" /home /tmp /etc; then echo "the key is in a file"; exit 1; fi
echo clean`, key[:half], key[half:])
}

// indent indents every line of s by n spaces (for a YAML block scalar).
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// keySuite writes the two-task suite plus no-key (the key check in a clean sandbox: passes) and
// canary (the same check with the key put in the sandbox's environment by its spec: must fail,
// which shows the check can fail).
func keySuite(t *testing.T, key string) string {
	dir := evaltest.Suite(t, t.TempDir())
	check := indent(keyCheck(key), 6)
	noKey := "prompt: Write hello.txt.\nchecks:\n  - name: the key is nowhere in the sandbox\n    run: |\n" + check + "\n    stdout: \"clean\\n\"\n"
	canary := "prompt: Write hello.txt.\nenv:\n  PLANTED: \"" + key + "\"\nchecks:\n  - name: the key is nowhere in the sandbox\n    run: |\n" + check + "\n    stdout: \"clean\\n\"\n"
	for name, content := range map[string]string{"no-key.yaml": noKey, "canary.yaml": canary} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type actionRun struct {
	code           int
	stdout, stderr string
	summary        string
	outputs        map[string]string
}

// runAction runs the action's script as a runner would: INPUT_* variables, a step summary file
// and an output file, the workspace as working directory.
func runAction(t *testing.T, workspace, data string, inputs map[string]string) actionRun {
	t.Helper()
	return runActionAs(t, nil, agentBin, workspace, data, inputs)
}

// runActionAs is runAction as user u (nil: as this process, root) with the agent binary bin. For
// u, the step's files (summary, outputs, its temp dir) are u's, as on a runner.
func runActionAs(t *testing.T, u *testUser, bin, workspace, data string, inputs map[string]string) actionRun {
	t.Helper()
	tmp := t.TempDir()
	summary, output := filepath.Join(tmp, "summary.md"), filepath.Join(tmp, "output")
	for _, f := range []string{summary, output} {
		os.WriteFile(f, nil, 0o644)
	}
	script, err := filepath.Abs(filepath.Join(repoRoot, ".github", "action", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	home := os.Getenv("HOME")
	if u != nil {
		u.own(t, tmp)
		home = tmp
	}
	cmd := exec.Command("bash", script)
	cmd.Dir = workspace
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}}
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"GITHUB_STEP_SUMMARY=" + summary, "GITHUB_OUTPUT=" + output, "GITHUB_WORKSPACE=" + workspace,
		"RUNNER_TEMP=" + tmp, "AGENT_BIN=" + bin, "AGENT_DATA_DIR=" + data,
	}
	for k, v := range inputs {
		env = append(env, "INPUT_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))+"="+v)
	}
	cmd.Env = env
	res := testenv.RunCmd(t, cmd, 5*time.Minute)
	r := actionRun{code: res.Code, stdout: res.Stdout, stderr: res.Stderr, outputs: map[string]string{}}
	b, _ := os.ReadFile(summary)
	r.summary = string(b)
	b, _ = os.ReadFile(output)
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, dup := r.outputs[k]; dup {
				t.Errorf("output %s written twice", k)
			}
			r.outputs[k] = v
		}
	}
	return r
}

func TestActionRun(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	var rb [12]byte
	rand.Read(rb[:])
	key := "sk-action-" + hex.EncodeToString(rb[:])
	data := localenv.DataDir(t)
	evaltest.CheckLeaks(t, data, agentBin)
	good, bad := evaltest.Good("good"), evaltest.Bad("bad")
	good.APIKey, bad.APIKey = key, key // a request without the key gets 401
	srv := llmtest.Start(t, good, bad)
	ws := keySuite(t, key)

	// One model over the four tasks: canary fails (the key was planted in its sandbox by its own
	// spec), so with fail-on: failed the step fails.
	r := runAction(t, ws, data, map[string]string{
		"tasks": "hello.yaml answer.yaml\nno-key.yaml canary.yaml", "model": "good", "base-url": srv.URL(), "api-key": key,
		"concurrency": "2", "template": "host", "repeat": "1", "fail-on": "failed",
	})
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (canary fails)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Count(r.stdout, "::add-mask::"+key) != 1 {
		t.Errorf("the key is not masked first:\n%s", r.stdout)
	}
	if strings.Count(r.stdout+r.stderr, key) != 1 {
		t.Errorf("the key appears in the step's log beyond its mask:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	want := map[string]string{"passed": "3", "failed": "1", "errored": "0", "pass-rate": "0.7500",
		"results-dir": filepath.Join(ws, "agent-results"), "report": filepath.Join(ws, "agent-results", "report.html")}
	for k, v := range want {
		if r.outputs[k] != v {
			t.Errorf("output %s = %q, want %q (all: %v)", k, r.outputs[k], v, r.outputs)
		}
	}
	for _, s := range []string{"**3 passed**, 1 failed, 0 errored of 4", "| `canary` | `good` | 1 | failed | the key is nowhere in the sandbox: exit code 1, want 0 |"} {
		if !strings.Contains(r.summary, s) {
			t.Errorf("job summary lacks %q:\n%s", s, r.summary)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ws, "agent-results", "tasks", "canary", "checks.json")); err != nil || !strings.Contains(string(b), "the key is in the environment") {
		t.Errorf("canary did not fail because it found the key: %v\n%s", err, b)
	}
	if strings.Contains(r.summary, "| `no-key` |") {
		t.Errorf("the key was found in a clean sandbox:\n%s", r.summary)
	}
	if strings.Contains(r.summary, key) {
		t.Error("the key is in the job summary")
	}
	for _, f := range []string{"report.md", "report.html", "report.xml", "run.json"} {
		if _, err := os.Stat(filepath.Join(ws, "agent-results", f)); err != nil {
			t.Errorf("results: %v", err)
		}
	}
	// The results hold the key only where the canary's own spec put it (its env in run.json's
	// command is absent; the checks' output may not hold it either).
	leaked := grepTree(t, filepath.Join(ws, "agent-results"), key)
	for _, f := range leaked {
		if !strings.Contains(f, "canary") {
			t.Errorf("the key is in %s", f)
		}
	}
	for _, req := range srv.Requests() {
		if req.Auth != "Bearer "+key {
			t.Fatalf("a model request without the key: %q", req.Auth)
		}
	}

	// Two models with epochs (agent eval); fail-on: never keeps the step green although bad fails
	// answer.
	r = runAction(t, ws, data, map[string]string{
		"tasks": "hello.yaml answer.yaml", "models": "good,bad", "base-url": srv.URL(), "api-key": key,
		"repeat": "2", "out": "eval-results", "fail-on": "never",
	})
	if r.code != 0 {
		t.Fatalf("eval exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r.outputs["passed"] != "6" || r.outputs["failed"] != "2" || r.outputs["pass-rate"] != "0.7500" {
		t.Errorf("eval outputs %v", r.outputs)
	}
	for _, s := range []string{"## agent eval", "| `good` | 4 | 0 | 0 | 100.0%", "| `bad` | 2 | 2 | 0 | 50.0%", "pass@k"} {
		if !strings.Contains(r.summary, s) {
			t.Errorf("eval job summary lacks %q:\n%s", s, r.summary)
		}
	}

	// Bad inputs fail fast with an error annotation.
	r = runAction(t, ws, data, map[string]string{"tasks": "hello.yaml", "fail-on": "sometimes"})
	if r.code != 2 || !strings.Contains(r.stdout, "::error title=agent::fail-on must be failed or never") {
		t.Errorf("bad fail-on: exit %d\n%s", r.code, r.stdout)
	}
	r = runAction(t, ws, data, map[string]string{"tasks": "  ", "model": "good"})
	if r.code != 2 {
		t.Errorf("empty tasks: exit %d", r.code)
	}
}

// grepTree lists the regular files below dir that contain s.
func grepTree(t *testing.T, dir, s string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, p)
		}
		return nil
	})
	return out
}
