// Package envdtest builds worlds and in-process envd servers for tests: a temporary world with the
// accounts envd expects (root, and "user" with uid 1000 and home /home/user), and a real envd
// serving it over HTTP on a loopback port.
package envdtest

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentrun/agent/sandbox/envd"
)

// UserUID and UserGID are the ids of the world's "user" account.
const (
	UserUID = 1000
	UserGID = 1000
)

// NewWorld creates a world directory (removed after the test) with /etc/passwd and /etc/group
// naming root and user, and their homes. The user's home is owned by the user when the test runs
// as root.
func NewWorld(t testing.TB) string {
	t.Helper()
	w := filepath.Join(t.TempDir(), "world")
	for _, d := range []string{"etc", "root", "home/user", "tmp"} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(w, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(w, "home/user"), UserUID, UserGID); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// Start runs envd with cfg (Root defaults to a NewWorld) behind an httptest server on loopback.
// Both are closed when the test ends.
func Start(t testing.TB, cfg envd.Config) (*envd.Server, *httptest.Server) {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = NewWorld(t)
	}
	srv, err := envd.New(cfg)
	if err != nil {
		t.Fatalf("envd.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("closing envd: %v", err)
		}
	})
	return srv, hs
}
