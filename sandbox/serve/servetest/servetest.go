// Package servetest runs a real `agent serve` (sandbox/serve over real local sandboxes) inside a
// test process, for the tests of the server and of the clients that talk to it (sandbox/e2b).
// Sandboxes are real: it needs root and runc, and builds the agent binary each sandbox runs as its
// init.
package servetest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve"
)

// Env holds what the tests of one package share: the agent binary and the reason real sandboxes
// cannot run here, if any.
type Env struct {
	// Binary is the agent binary built for the run.
	Binary string
	// SkipReason is set when real sandboxes cannot run (not root, no runc).
	SkipReason string
	// TemplateDir is shared by every server of the run.
	TemplateDir string
}

// Main builds the agent binary, runs the tests and removes what it built. Call it from TestMain.
func Main(m *testing.M, env *Env) int {
	flag.Parse()
	// Listing or fuzzing runs no test that needs sandboxes: do not build for them.
	for _, f := range []string{"test.list", "test.fuzz"} {
		if fl := flag.Lookup(f); fl != nil && fl.Value.String() != "" {
			env.SkipReason = "not needed when listing or fuzzing"
			return m.Run()
		}
	}
	if env.SkipReason = testenv.SkipReason(); env.SkipReason != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "agent-servetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	env.TemplateDir = filepath.Join(dir, "templates")
	if env.Binary, err = testenv.BuildAgent(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Server is a running server with its local backend.
type Server struct {
	// URL is the server's base URL (control plane and data plane alike).
	URL string
	// APIKey is accepted by the server.
	APIKey string
	Serve  *serve.Server
	Local  *local.Backend
	// Requests counts the HTTP requests the server answered, by status.
	Requests *StatusCounter
}

// Start starts a server on 127.0.0.1:0 over a fresh data directory. mod adjusts its configuration;
// wrap, when set, wraps its handler (e.g. to hide a route as an older server would). Everything is
// stopped at cleanup, where the test fails if a sandbox, or a mount, cgroup or process of the data
// directory, is left.
func Start(t testing.TB, env *Env, mod func(*serve.Config), wrap func(http.Handler) http.Handler) *Server {
	t.Helper()
	return StartWith(t, env, nil, mod, wrap)
}

// StartWith is Start with localMod adjusting the local backend's configuration too (e.g. the
// network's DNS upstreams for a fake internet).
func StartWith(t testing.TB, env *Env, localMod func(*local.Config), mod func(*serve.Config), wrap func(http.Handler) http.Handler) *Server {
	t.Helper()
	if env.SkipReason != "" {
		t.Skip(env.SkipReason)
	}
	dd := localenv.DataDir(t)
	// Registered before the server's teardown, so it checks after it: no mount, cgroup, process,
	// loop device or sandbox state of this data directory may remain.
	localenv.CheckLeaks(t, dd)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lvl := slog.LevelWarn
	if os.Getenv("SERVETEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	lc := local.Config{DataDir: dd, TemplateDir: env.TemplateDir, Binary: env.Binary, Logger: logger}
	if localMod != nil {
		localMod(&lc)
	}
	b, err := local.New(ctx, lc)
	if err != nil {
		t.Fatal(err)
	}
	key := serve.GenerateAPIKey()
	cfg := serve.Config{Provider: &serve.Local{Backend: b}, APIKeys: []string{key}, Logger: logger}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := serve.New(cfg)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	counter := &StatusCounter{}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	h = counter.wrap(h)
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, MaxHeaderBytes: serve.MaxHeaderBytes}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serving: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
		if err := srv.Close(ctx); err != nil {
			t.Errorf("closing the server: %v", err)
		}
		left, err := b.List(ctx)
		if err != nil {
			t.Errorf("listing sandboxes: %v", err)
		}
		for _, in := range left {
			if in.Phase == local.PhasePooled {
				continue // a warm pool's idle sandboxes end with the backend (checked below)
			}
			t.Errorf("sandbox %s left behind after the server closed", in.ID)
		}
		if err := b.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
		if _, err := b.GC(ctx); err != nil {
			t.Errorf("gc: %v", err)
		}
	})
	return &Server{URL: "http://" + ln.Addr().String(), APIKey: key, Serve: srv, Local: b, Requests: counter}
}
