package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunCmdReportsStatusAndOutput(t *testing.T) {
	r := RunCmd(t, exec.Command("sh", "-c", "echo out; echo err >&2; exit 3"), time.Minute)
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("got %+v", r)
	}
	if r := RunCmd(t, exec.Command("true"), time.Minute); r.Code != 0 {
		t.Errorf("true: %+v", r)
	}
}

func TestWorldHasTheAccountsEnvdExpects(t *testing.T) {
	w := World(t)
	passwd, err := os.ReadFile(filepath.Join(w, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "user:x:1000:1000:user:/home/user:") {
		t.Fatalf("passwd: %q %v", passwd, err)
	}
	fi, err := os.Stat(filepath.Join(w, "tmp"))
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi.Mode(), err)
	}
	for _, d := range []string{"root", "home/user"} {
		if fi, err := os.Stat(filepath.Join(w, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
}

func TestRepoRootHoldsGoMod(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Error(err)
	}
}
