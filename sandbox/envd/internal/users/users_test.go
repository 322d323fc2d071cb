package users

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
)

func world(t *testing.T, passwd, group string) *DB {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(dir, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return NewDB(r)
}

func TestLookup(t *testing.T) {
	db := world(t,
		"# comment\nroot:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\nbroken:x:abc:1::/x:/bin/sh\n",
		"root:x:0:\nuser:x:1000:\nsudo:x:27:user,other\ndocker:x:999:other\n")
	u, err := db.Lookup("user")
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 1000 || u.GID != 1000 || u.Home != "/home/user" || u.Shell != "/bin/bash" {
		t.Fatalf("user = %+v", u)
	}
	if _, err := db.Lookup("nobody"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := db.Lookup("broken"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("line with a non-numeric uid must not resolve: %v", err)
	}
	if g := db.Groups(u); len(g) != 1 || g[0] != 27 {
		t.Fatalf("groups = %v, want [27]", g)
	}
	if n := db.UserName(1000); n != "user" {
		t.Fatalf("UserName(1000) = %q", n)
	}
	if n := db.GroupName(27); n != "sudo" {
		t.Fatalf("GroupName(27) = %q", n)
	}
	if n := db.UserName(4242); n != "4242" {
		t.Fatalf("UserName of an unknown uid = %q, want the number", n)
	}
}

func TestRootWithoutPasswd(t *testing.T) {
	db := world(t, "", "")
	u, err := db.Lookup("root")
	if err != nil || u.UID != 0 || u.Home != "/root" {
		t.Fatalf("root in an empty world = %+v, %v", u, err)
	}
	if _, err := db.Lookup("user"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("user in an empty world: %v", err)
	}
}

// A sandbox can swap its passwd for a FIFO that never delivers: a lookup must fail, not hang.
func TestFIFOPasswdDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "etc/passwd")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// An idle writer keeps the FIFO open so a reader would wait forever.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	db := NewDB(r)
	done := make(chan error, 1)
	go func() { _, err := db.Lookup("user"); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnknown) {
			t.Fatalf("lookup through a FIFO: %v, want ErrUnknown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lookup blocked on a FIFO passwd")
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("empty context has a user")
	}
	ctx := WithUser(context.Background(), User{Name: "user", UID: 1000})
	if u, ok := FromContext(ctx); !ok || u.Name != "user" {
		t.Fatalf("FromContext = %+v, %v", u, ok)
	}
}
