// Package envdtest builds worlds and in-process envd servers for tests: a temporary world with the
// accounts envd expects (root, and "user" with uid 1000 and home /home/user), and a real envd
// serving it over HTTP on a loopback port.
package envdtest

import (
	"net/http/httptest"
	"testing"

	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/sandbox/envd"
)

// UserUID and UserGID are the ids of the world's "user" account.
const (
	UserUID = testenv.UserUID
	UserGID = testenv.UserGID
)

// NewWorld creates a world directory (removed after the test): testenv.World.
func NewWorld(t testing.TB) string {
	t.Helper()
	return testenv.World(t)
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
