package e2b_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b"
	"github.com/agentrun/agent/sandbox/serve"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

var env servetest.Env

func TestMain(m *testing.M) { os.Exit(servetest.Main(m, &env)) }

var flavors = []e2b.Flavor{e2b.FlavorE2B, e2b.FlavorNovita}

// backendFor returns a backend of the flavor pointed at srv the way a user would: the flavor's
// environment variables, read by ConfigFromEnv.
func backendFor(t *testing.T, srv *servetest.Server, flavor e2b.Flavor, mod func(*e2b.Config)) *e2b.Backend {
	t.Helper()
	p := strings.ToUpper(string(flavor))
	vars := map[string]string{p + "_API_KEY": srv.APIKey, p + "_API_URL": srv.URL, p + "_SANDBOX_URL": srv.URL}
	cfg, err := e2b.ConfigFromEnv(flavor, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := e2b.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
	})
	return b
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, ctx context.Context, b *e2b.Backend, o e2b.CreateOptions) *e2b.Sandbox {
	t.Helper()
	s, err := b.CreateSandbox(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Kill(context.Background()); err != nil {
			t.Errorf("kill %s: %v", s.ID(), err)
		}
	})
	return s
}

// TestFilesCommandsLifecycle runs the data plane and the lifecycle through each flavor.
func TestFilesCommandsLifecycle(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	for _, flavor := range flavors {
		t.Run(string(flavor), func(t *testing.T) {
			ctx := ctxT(t, 3*time.Minute)
			b := backendFor(t, srv, flavor, nil)
			s := create(t, ctx, b, e2b.CreateOptions{
				Timeout: 2 * time.Minute, Metadata: map[string]string{"flavor": string(flavor)}, Env: map[string]string{"GREETING": "hello " + string(flavor)},
			})
			if s.EnvdVersion() != serve.EnvdVersion {
				t.Fatalf("envd version %q", s.EnvdVersion())
			}
			// Files.
			if err := s.WriteFile(ctx, "dir/a.txt", strings.NewReader("content\n")); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteFiles(ctx, []sandbox.File{{Path: "/tmp/m1", Data: []byte("1")}, {Path: "/tmp/sub/m2", Data: []byte("2")}}); err != nil {
				t.Fatal(err)
			}
			rc, err := s.Open(ctx, "dir/a.txt")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != "content\n" {
				t.Fatalf("read back %q", got)
			}
			ents, err := s.List(ctx, "/tmp", 2)
			if err != nil || len(ents) < 3 {
				t.Fatalf("list /tmp: %v %v", ents, err)
			}
			if _, err := s.Stat(ctx, "nope"); !errors.Is(err, sandbox.ErrNotFound) {
				t.Fatalf("stat of a missing file: %v", err)
			}
			// Commands: the sandbox-wide env, the default user, a non-zero exit, a large output.
			res, err := s.Run(ctx, sandbox.Cmd{Shell: `echo "$GREETING"; id -un; cat dir/a.txt`})
			if err != nil {
				t.Fatal(err)
			}
			if want := "hello " + string(flavor) + "\nuser\ncontent\n"; string(res.Stdout) != want {
				t.Fatalf("stdout %q, want %q", res.Stdout, want)
			}
			res, err = s.Run(ctx, sandbox.Cmd{Shell: "echo oops >&2; exit 3"})
			var ee *sandbox.ExitError
			if !errors.As(err, &ee) || res == nil || res.ExitCode != 3 || string(res.Stderr) != "oops\n" {
				t.Fatalf("exit 3: %+v %v", res, err)
			}
			res, err = s.Run(ctx, sandbox.Cmd{Shell: "head -c 3000000 /dev/zero | tr '\\0' x", MaxOutput: 4 << 20})
			if err != nil {
				t.Fatalf("3 MB of output: %v", err)
			}
			if len(res.Stdout) != 3000000 || bytes.Count(res.Stdout, []byte("x")) != 3000000 {
				t.Fatalf("3 MB of output: %d bytes", len(res.Stdout))
			}
			// A background process, reattached by pid, fed on stdin.
			p, err := s.Start(ctx, sandbox.Cmd{Shell: "read line; echo got $line", Stdin: true})
			if err != nil {
				t.Fatal(err)
			}
			p.Disconnect()
			var out bytes.Buffer
			var mu sync.Mutex
			p2, err := s.Connect(ctx, p.PID(), "", sandbox.Output{Stdout: func(b []byte) { mu.Lock(); out.Write(b); mu.Unlock() }})
			if err != nil {
				t.Fatal(err)
			}
			if err := p2.SendStdin(ctx, []byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			if _, err := p2.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			if out.String() != "got ping\n" {
				t.Fatalf("background output %q", out.String())
			}
			mu.Unlock()
			// Control plane: info, timeout, metrics.
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.ID != s.ID() || info.State != "running" || info.Metadata["flavor"] != string(flavor) || info.TemplateID != "base" {
				t.Fatalf("info %+v", info)
			}
			if err := s.SetTimeout(ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
			if info2, err := s.Info(ctx); err != nil || !info2.EndAt.Before(info.EndAt) {
				t.Fatalf("set timeout did not move the end earlier: %v %v", info2, err)
			}
			ms, err := s.Metrics(ctx, time.Time{}, time.Time{})
			if err != nil || len(ms) != 1 || ms[0].MemTotal <= 0 || ms[0].DiskTotal <= 0 {
				t.Fatalf("metrics %+v %v", ms, err)
			}
			// Pause (twice: a 409 is not an error), then resume through connect (201, then 200).
			if err := s.Pause(ctx); err != nil {
				t.Fatalf("pause: %v", err)
			}
			if err := s.Pause(ctx); err != nil {
				t.Fatalf("second pause: %v", err)
			}
			if info, err := s.Info(ctx); err != nil || info.State != "paused" {
				t.Fatalf("info after pause: %+v %v", info, err)
			}
			// Its data plane answers as for a sandbox not running (502, the SDKs' is_running false).
			if err := s.Health(ctx); err == nil || !strings.Contains(err.Error(), "502") {
				t.Fatalf("health of a paused sandbox: %v", err)
			}
			if resumed, err := b.Resume(ctx, s.ID(), time.Minute); err != nil || !resumed {
				t.Fatalf("resume: %v %v", resumed, err)
			}
			if resumed, err := b.Resume(ctx, s.ID(), time.Minute); err != nil || resumed {
				t.Fatalf("resume of a running sandbox: %v %v", resumed, err)
			}
			if err := s.Health(ctx); err != nil {
				t.Fatal(err)
			}
			if res, err := s.Run(ctx, sandbox.Cmd{Shell: "echo back"}); err != nil || string(res.Stdout) != "back\n" {
				t.Fatalf("run after resume: %+v %v", res, err)
			}
			// Kill: gone for the control plane and the data plane; a second kill is not an error.
			if err := s.Kill(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(ctx, s.ID()); !errors.Is(err, sandbox.ErrNotFound) {
				t.Fatalf("get after kill: %v", err)
			}
			if _, err := s.Run(ctx, sandbox.Cmd{Shell: "true"}); !errors.Is(err, sandbox.ErrGone) {
				t.Fatalf("run after kill: %v", err)
			}
			if err := s.Health(ctx); !errors.Is(err, sandbox.ErrGone) {
				t.Fatalf("health after kill: %v", err)
			}
			if err := s.Kill(ctx); err != nil {
				t.Fatalf("second kill: %v", err)
			}
		})
	}
	if n := srv.Serve.Count(); n != 0 {
		t.Fatalf("%d sandboxes left", n)
	}
}

// TestListAndConnect lists by metadata across pages and connects to a sandbox from a second
// backend of the other flavor.
func TestListAndConnect(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	ctx := ctxT(t, 3*time.Minute)
	be := backendFor(t, srv, e2b.FlavorE2B, nil)
	bn := backendFor(t, srv, e2b.FlavorNovita, nil)
	run := "run-" + strings.ToLower(t.Name())
	var mine []*e2b.Sandbox
	for i := range 3 {
		mine = append(mine, create(t, ctx, be, e2b.CreateOptions{Metadata: map[string]string{"run": run, "i": string(rune('a' + i))}}))
	}
	create(t, ctx, bn, e2b.CreateOptions{Metadata: map[string]string{"run": "other"}})
	got, err := bn.List(ctx, e2b.ListOptions{Metadata: map[string]string{"run": run}, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("listed %d sandboxes of the run, want 3: %+v", len(got), got)
	}
	ids := map[string]bool{}
	for _, in := range got {
		ids[in.ID] = true
	}
	for _, s := range mine {
		if !ids[s.ID()] {
			t.Fatalf("%s missing from %v", s.ID(), ids)
		}
	}
	all, err := be.List(ctx, e2b.ListOptions{States: []string{"running"}})
	if err != nil || len(all) != 4 {
		t.Fatalf("all running: %d %v", len(all), err)
	}
	if paused, err := be.List(ctx, e2b.ListOptions{States: []string{"paused"}}); err != nil || len(paused) != 0 {
		t.Fatalf("paused: %d %v", len(paused), err)
	}
	// Write through one backend, read through a connection from the other flavor.
	if err := mine[0].WriteFile(ctx, "shared.txt", strings.NewReader("from e2b")); err != nil {
		t.Fatal(err)
	}
	c, err := bn.Connect(ctx, mine[0].ID(), 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Run(ctx, sandbox.Cmd{Shell: "cat shared.txt"})
	if err != nil || string(res.Stdout) != "from e2b" {
		t.Fatalf("through the connection: %q %v", res.Stdout, err)
	}
	if _, err := bn.Connect(ctx, "nosuchsandbox", 0); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("connect to a missing sandbox: %v", err)
	}
	// Closing the connection leaves the sandbox running.
	c.Close()
	if err := mine[0].Health(ctx); err != nil {
		t.Fatalf("after closing the connection: %v", err)
	}
}

func TestTimeoutExpires(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	ctx := ctxT(t, 2*time.Minute)
	b := backendFor(t, srv, e2b.FlavorE2B, nil)
	s, err := b.CreateSandbox(ctx, e2b.CreateOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for {
		_, err := b.Get(ctx, s.ID())
		if errors.Is(err, sandbox.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the sandbox outlived its 1 s timeout by minutes")
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := s.Run(ctx, sandbox.Cmd{Shell: "true"}); !errors.Is(err, sandbox.ErrGone) {
		t.Fatalf("run in an expired sandbox: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	ctx := ctxT(t, time.Minute)
	for _, flavor := range flavors {
		b := backendFor(t, srv, flavor, func(c *e2b.Config) { c.APIKey = "e2b_" + strings.Repeat("f", 40) })
		if _, err := b.Create(ctx, e2b.CreateOptions{}); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Fatalf("%s: create with a wrong key: %v", flavor, err)
		}
		if _, err := b.List(ctx, e2b.ListOptions{}); !errors.Is(err, sandbox.ErrUnauthorized) {
			t.Fatalf("%s: list with a wrong key: %v", flavor, err)
		}
	}
	if n := srv.Requests.Count("/v2/sandboxes", http.StatusUnauthorized) + srv.Requests.Count("/sandboxes", http.StatusUnauthorized); n != 4 {
		t.Fatalf("%d refused requests, want 4 (a 401 is not retried)", n)
	}
	if srv.Serve.Count() != 0 {
		t.Fatal("a refused create created a sandbox")
	}
}

// TestMaxSandboxes: Create waits for a slot of the cap; Kill frees it.
func TestMaxSandboxes(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	ctx := ctxT(t, 2*time.Minute)
	b := backendFor(t, srv, e2b.FlavorNovita, func(c *e2b.Config) { c.MaxSandboxes = 1 })
	first, err := b.CreateSandbox(ctx, e2b.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := b.Create(short, e2b.CreateOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second create while the slot is held: %v", err)
	}
	if srv.Serve.Count() != 1 {
		t.Fatalf("%d sandboxes: the cap did not hold", srv.Serve.Count())
	}
	done := make(chan error, 1)
	go func() {
		s, err := b.Create(ctx, e2b.CreateOptions{})
		if err == nil {
			err = s.Kill(ctx)
		}
		done <- err
	}()
	if err := first.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("create after the slot was freed: %v", err)
	}
}

// TestRateLimitRetried: the provider refuses with 429 + Retry-After at its concurrency limit; the
// backend waits and retries, and succeeds once a sandbox ends. When the limit persists, it gives
// up after its retries with ErrRateLimited.
func TestRateLimitRetried(t *testing.T) {
	srv := servetest.Start(t, &env, func(c *serve.Config) { c.MaxSandboxes = 1 }, nil)
	ctx := ctxT(t, 2*time.Minute)
	b := backendFor(t, srv, e2b.FlavorE2B, nil)
	first := create(t, ctx, b, e2b.CreateOptions{})
	go func() {
		// Free the provider's only place once the second create has been refused at least once.
		for srv.Requests.Count("/v2/sandboxes", http.StatusTooManyRequests) == 0 && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		_ = first.Kill(ctx)
	}()
	second := create(t, ctx, b, e2b.CreateOptions{})
	if second.ID() == first.ID() {
		t.Fatal("same sandbox twice")
	}
	if n := srv.Requests.Count("/v2/sandboxes", http.StatusTooManyRequests); n < 1 {
		t.Fatalf("%d 429 answers", n)
	}
	// The limit persists: bounded retries, then a typed error.
	impatient := backendFor(t, srv, e2b.FlavorE2B, func(c *e2b.Config) { c.MaxRetries = 2; c.MaxRetryWait = 100 * time.Millisecond })
	before := srv.Requests.Count("/v2/sandboxes", http.StatusTooManyRequests)
	if _, err := impatient.Create(ctx, e2b.CreateOptions{}); !errors.Is(err, e2b.ErrRateLimited) {
		t.Fatalf("create at a persistent limit: %v", err)
	}
	if n := srv.Requests.Count("/v2/sandboxes", http.StatusTooManyRequests) - before; n != 3 {
		t.Fatalf("%d attempts, want 1 + 2 retries", n)
	}
}

// TestCreateAPIs: v1 and v2 explicitly, and the automatic fall back to v1 against a server without
// POST /v2/sandboxes (agent serve with that route hidden, as older servers have it).
func TestCreateAPIs(t *testing.T) {
	hideV2 := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v2/sandboxes") && r.Method == http.MethodPost {
				http.NotFound(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := servetest.Start(t, &env, nil, hideV2)
	ctx := ctxT(t, 2*time.Minute)
	b := backendFor(t, srv, e2b.FlavorE2B, nil)
	for range 2 {
		s := create(t, ctx, b, e2b.CreateOptions{})
		if _, err := s.Run(ctx, sandbox.Cmd{Shell: "true"}); err != nil {
			t.Fatal(err)
		}
	}
	if v2, v1 := srv.Requests.Count("/v2/sandboxes", 404), srv.Requests.Count("/sandboxes", 201); v2 != 1 || v1 != 2 {
		t.Fatalf("v2 404s %d (want 1: the fall back is remembered), v1 creates %d (want 2)", v2, v1)
	}
	// Connect falls back likewise.
	s := create(t, ctx, b, e2b.CreateOptions{})
	if c, err := b.Connect(ctx, s.ID(), 0); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}
	// An unknown template is a 404 through both paths, and not mistaken for a missing route.
	fresh := backendFor(t, srv, e2b.FlavorE2B, nil)
	if _, err := fresh.Create(ctx, e2b.CreateOptions{Template: "no-such-template"}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("unknown template: %v", err)
	}

	// Forced versions against the full server.
	full := servetest.Start(t, &env, nil, nil)
	for _, api := range []string{e2b.CreateAPIV1, e2b.CreateAPIV2} {
		bb := backendFor(t, full, e2b.FlavorE2B, func(c *e2b.Config) { c.CreateAPI = api })
		s := create(t, ctx, bb, e2b.CreateOptions{})
		if c, err := bb.Connect(ctx, s.ID(), 0); err != nil {
			t.Fatalf("%s connect: %v", api, err)
		} else {
			c.Close()
		}
	}
	if v1, v2 := full.Requests.Count("/sandboxes", 201), full.Requests.Count("/v2/sandboxes", 201); v1 != 1 || v2 != 1 {
		t.Fatalf("forced versions: %d v1, %d v2 creates", v1, v2)
	}
}

// TestCloseKillsLive: Backend.Close kills what it created and nobody killed.
func TestCloseKillsLive(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	ctx := ctxT(t, 2*time.Minute)
	cfg, _ := e2b.ConfigFromEnv(e2b.FlavorE2B, func(k string) string {
		return map[string]string{"E2B_API_KEY": srv.APIKey, "E2B_API_URL": srv.URL, "E2B_SANDBOX_URL": srv.URL}[k]
	})
	b, err := e2b.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := b.Create(ctx, e2b.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.Serve.Count(); n != 0 {
		t.Fatalf("%d sandboxes alive after Close", n)
	}
	if _, err := b.Create(ctx, e2b.CreateOptions{}); err == nil {
		t.Fatal("create after Close")
	}
}

// TestManyShortStreams runs many short commands back to back: each is a Connect stream whose
// response headers envd sends before the proxy forwarded the client's end-of-body, the case that
// needs the proxy's full duplex (without it some streams were cut mid-envelope).
func TestManyShortStreams(t *testing.T) {
	srv := servetest.Start(t, &env, nil, nil)
	ctx := ctxT(t, 3*time.Minute)
	b := backendFor(t, srv, e2b.FlavorE2B, nil)
	s := create(t, ctx, b, e2b.CreateOptions{})
	for i := range 300 {
		if _, err := s.Run(ctx, sandbox.Cmd{Shell: "true"}); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
