package local_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

// TestDataPlaneThroughEnvd drives a sandbox through sandbox.Sandbox: envd (pid 1) over the
// host-private socket, with the envd client.
func TestDataPlaneThroughEnvd(t *testing.T) {
	t.Setenv("AGENT_TEST_HOST_SECRET", "hunter2")
	b := newBackend(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{Env: map[string]string{"SANDBOX_WIDE": "yes"}})
	var sb sandbox.Sandbox = s

	res, err := sb.Run(ctx, sandbox.Cmd{Shell: "id -un; pwd; hostname; echo $SANDBOX_WIDE; env | grep -c HOST_SECRET || true"})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	want := "user\n/home/user\n" + s.ID() + "\nyes\n0\n"
	if string(res.Stdout) != want {
		t.Errorf("stdout %q, want %q (stderr %q)", res.Stdout, want, res.Stderr)
	}
	res, err = sb.Run(ctx, sandbox.Cmd{Shell: "echo oops >&2; exit 3"})
	var ee *sandbox.ExitError
	if !errors.As(err, &ee) || res == nil || res.ExitCode != 3 || !strings.Contains(string(res.Stderr), "oops") {
		t.Errorf("failing command: %v %+v", err, res)
	}
	res, err = sb.Run(ctx, sandbox.Cmd{Argv: []string{"id", "-u"}, User: "root"})
	if err != nil || string(res.Stdout) != "0\n" {
		t.Errorf("as root: %v %+v", err, res)
	}

	payload := bytes.Repeat([]byte("0123456789"), 100000)
	if err := sb.WriteFile(ctx, "dir/sub/data.bin", bytes.NewReader(payload)); err != nil {
		t.Fatalf("write: %v", err)
	}
	r, err := sb.Open(ctx, "/home/user/dir/sub/data.bin")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("read back %d bytes, err %v", len(got), err)
	}
	ents, err := sb.List(ctx, "dir", 2)
	if err != nil || len(ents) != 2 {
		t.Errorf("list: %v %+v", err, ents)
	}
	st, err := sb.Stat(ctx, "dir/sub/data.bin")
	if err != nil || st.Size != int64(len(payload)) || st.Owner != "user" {
		t.Errorf("stat: %v %+v", err, st)
	}
	if _, err := sb.Stat(ctx, "/nonexistent"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("stat missing: %v", err)
	}
	// The file landed in the sandbox's overlay, owned by the sandbox's user: seen through the
	// runtime too.
	out, code, err := s.Output(ctx, "", "stat", "-c", "%U %s", "dir/sub/data.bin")
	if err != nil || code != 0 || strings.TrimSpace(out) != "user 1000000" {
		t.Errorf("runtime view of the file: %q %d %v", out, code, err)
	}
	// Files outside the sandbox cannot be named: paths resolve inside its root.
	if _, err := sb.Open(ctx, "/../../../../etc/shadow"); err == nil {
		t.Errorf("opened /etc/shadow through ..")
	}
	if err := sb.Remove(ctx, "dir"); err != nil {
		t.Errorf("remove: %v", err)
	}
}
