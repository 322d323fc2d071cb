package actiontest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/evaltest"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
)

// testUser is an unprivileged system user made for one test, with a sudoers drop-in that lets it
// run exactly what the action's script runs as root. Both are removed when the test ends.
type testUser struct {
	name     string
	uid, gid uint32
}

// newTestUser makes the user. bin is the agent binary the user may run as root (with the
// environment variables it names: the script passes its settings with --preserve-env).
func newTestUser(t *testing.T, bin string) *testUser {
	t.Helper()
	var rb [4]byte
	rand.Read(rb[:])
	name := "agentact" + hex.EncodeToString(rb[:])
	if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	pw, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(pw.Uid, 10, 32)
	gid, _ := strconv.ParseUint(pw.Gid, 10, 32)
	u := &testUser{name: name, uid: uint32(uid), gid: uint32(gid)}

	// What run.sh runs through sudo: agent (with --preserve-env, hence SETENV), chown of the
	// results, and apt-get (through env) when the runtime is missing.
	var cmds []string
	for _, c := range []string{"chown", "apt-get", "env"} {
		p, err := exec.LookPath(c)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, p)
	}
	rule := fmt.Sprintf("%s ALL=(root) NOPASSWD:SETENV: %s, %s\n", name, bin, strings.Join(cmds, ", "))
	// Written under a name sudo ignores (it has a dot), checked with visudo, then renamed into
	// place: a broken drop-in would break sudo for the whole host.
	final := filepath.Join("/etc/sudoers.d", "agent-action-test-"+name)
	staged := filepath.Join("/etc/sudoers.d", ".agent-action-test-"+name+".tmp")
	if err := os.WriteFile(staged, []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(staged)
	if out, err := exec.Command("visudo", "-c", "-f", staged).CombinedOutput(); err != nil {
		t.Fatalf("visudo rejects the drop-in %q: %v: %s", rule, err, out)
	}
	if err := os.Rename(staged, final); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(final); err != nil {
			t.Errorf("removing the sudoers drop-in: %v", err)
		}
	})
	return u
}

// own gives u the tree at dir and lets others traverse dir's parent (t.TempDir's is 0700).
func (u *testUser) own(t *testing.T, dir string) {
	t.Helper()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.uid), int(u.gid))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// run runs a shell script as u in dir.
func (u *testUser) run(t *testing.T, dir, script string) testenv.CmdResult {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}}
	return testenv.RunCmd(t, cmd, time.Minute)
}

// copyExecutable copies the agent binary into a fresh directory others can traverse.
func copyExecutable(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, "agent")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestActionRunAsUser runs the action's script as an unprivileged user, as on GitHub's hosted
// runners: it gets root for agent through real sudo (a drop-in allowing only what the script
// runs), passes the key and agent's settings through sudo, and hands the results back to the
// user, who can read them and writes the reports into them.
func TestActionRunAsUser(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	for _, c := range []string{"sudo", "visudo", "useradd", "userdel"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs sudo): %v", c, err)
		}
	}
	var rb [12]byte
	rand.Read(rb[:])
	key := "sk-action-" + hex.EncodeToString(rb[:])
	bin := copyExecutable(t, agentBin)
	data := localenv.DataDir(t)
	evaltest.CheckLeaks(t, data, bin)
	good := evaltest.Good("good")
	good.APIKey = key
	srv := llmtest.Start(t, good)
	u := newTestUser(t, bin)
	ws := keySuite(t, key)
	u.own(t, ws)

	r := runActionAs(t, u, bin, ws, data, map[string]string{
		"tasks": "hello.yaml answer.yaml no-key.yaml", "model": "good", "base-url": srv.URL(), "api-key": key,
		"concurrency": "2", "fail-on": "failed",
	})
	t.Logf("the step's log:\n%s", r.stderr)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(ws, "agent-results")
	want := map[string]string{"passed": "3", "failed": "0", "errored": "0", "pass-rate": "1.0000",
		"results-dir": out, "report": filepath.Join(out, "report.html")}
	for k, v := range want {
		if r.outputs[k] != v {
			t.Errorf("output %s = %q, want %q (all: %v)", k, r.outputs[k], v, r.outputs)
		}
	}
	if !strings.Contains(r.summary, "**3 passed**, 0 failed, 0 errored of 3") {
		t.Errorf("job summary:\n%s", r.summary)
	}
	if strings.Count(r.stdout, "::add-mask::"+key) != 1 || strings.Count(r.stdout+r.stderr, key) != 1 {
		t.Errorf("the key is not masked first, or appears beyond its mask:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	// The key reached agent through sudo (every model request carries it) and no sandbox.
	reqs := srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("no model request")
	}
	for _, req := range reqs {
		if req.Auth != "Bearer "+key {
			t.Fatalf("a model request without the key: %q", req.Auth)
		}
	}
	if leaked := grepTree(t, out, key); len(leaked) > 0 {
		t.Errorf("the key is in %v", leaked)
	}
	// agent used the data dir it was given (AGENT_DATA_DIR kept through sudo).
	if _, err := os.Stat(filepath.Join(data, "sandboxes")); err != nil {
		t.Errorf("agent did not use AGENT_DATA_DIR through sudo: %v", err)
	}

	// The results are the user's: every entry owned by it, all readable by it, and the reports
	// the script wrote as the user are there.
	err := filepath.WalkDir(out, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != u.uid || st.Gid != u.gid {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, u.uid, u.gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res := u.run(t, out, `for f in report.md report.html report.xml run.json tasks/hello/result.json; do test -r "$f" || echo "unreadable: $f"; done
find . ! -readable -printf 'unreadable: %p\n'; test -w . || echo "not writable: ."; echo checked`)
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "checked" {
		t.Errorf("as %s: exit %d\n%s%s", u.name, res.Code, res.Stdout, res.Stderr)
	}
}
