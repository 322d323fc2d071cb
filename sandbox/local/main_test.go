package local_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/template"
)

// agentBin is the agent binary built for the tests: it is every sandbox's init (`agent envd`).
var agentBin string

// probeBin is the test probe (internal/probe), copied into sandboxes.
var probeBin string

// skipReason is set when the tests cannot run real sandboxes here.
var skipReason string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("AGENT_TEST_HELPER") == "create" {
		return helperCreate()
	}
	if skipReason = testenv.SkipReason(); skipReason != "" || testenv.Listing() {
		// Listing runs no test: nothing to build (nor a debian template to start).
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "agent-local-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	probeBin = filepath.Join(dir, "probe")
	pb := exec.Command("go", "build", "-o", probeBin, "github.com/agentrun/agent/sandbox/local/internal/probe")
	pb.Env = append(os.Environ(), "CGO_ENABLED=0")
	pb.Stdout, pb.Stderr = os.Stderr, os.Stderr
	if err := pb.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the probe:", err)
		return 1
	}
	templateCache = os.Getenv("AGENT_TEST_TEMPLATE_DIR")
	if templateCache == "" {
		templateCache = filepath.Join(dir, "templates")
	}
	// The debian template takes minutes to build: start it now, beside the other tests;
	// TestDebianTemplate waits for it (the build lock).
	flag.Parse()
	if os.Getenv("AGENT_TEST_SKIP_DEBIAN") == "" && wantsTest("TestDebianTemplate") {
		ctx, cancel := context.WithDeadline(context.Background(), debianDeadline)
		done := make(chan struct{})
		go func() {
			defer close(done)
			st, err := template.NewStore(templateCache, map[string]template.Builder{template.Debian: template.DebianBuilder{}})
			if err == nil {
				_, err = st.Ensure(ctx, template.Debian, nil)
			}
			if err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "background debian template build:", err)
			}
		}()
		defer func() { cancel(); <-done }()
	}
	if agentBin, err = testenv.BuildAgent(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// debianBudget bounds the debian template build in a test run (AGENT_TEST_DEBIAN_BUDGET, default
// 12m): past it TestDebianTemplate skips, saying so, rather than the run hitting go test's timeout
// because a mirror is slow.
var debianBudget = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("AGENT_TEST_DEBIAN_BUDGET")); err == nil && d > 0 {
		return d
	}
	return 12 * time.Minute
}()

var debianDeadline = time.Now().Add(debianBudget)

// wantsTest tells whether -test.run selects the named top-level test.
func wantsTest(name string) bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	re, err := regexp.Compile(strings.SplitN(f.Value.String(), "/", 2)[0])
	return err == nil && re.MatchString(name)
}

// requireRoot skips the test when real sandboxes cannot run.
func requireRoot(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// templateCache is a template directory shared by every test of the run (the debian template takes
// minutes to build). AGENT_TEST_TEMPLATE_DIR keeps it across runs.
var templateCache string

// newBackend opens a backend on a fresh data dir, closed (and checked empty) at cleanup.
func newBackend(t testing.TB, mod func(*local.Config)) *local.Backend {
	t.Helper()
	return newBackendAt(t, tempDataDir(t), mod)
}

// tempDataDir returns a fresh data dir sandboxes can use.
func tempDataDir(t testing.TB) string {
	t.Helper()
	requireRoot(t)
	return localenv.DataDir(t)
}

// newBackendAt opens a backend on dd, closed (and garbage-collected) at cleanup.
func newBackendAt(t testing.TB, dd string, mod func(*local.Config)) *local.Backend {
	t.Helper()
	cfg := local.Config{
		DataDir:     dd,
		TemplateDir: templateCache,
		Binary:      agentBin,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	b, err := local.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing backend: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := b.GC(ctx); err != nil {
			t.Errorf("gc: %v", err)
		}
	})
	return b
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// installProbe copies the probe into the sandbox at /tmp/probe.
func installProbe(t testing.TB, ctx context.Context, s *local.Sandbox) {
	t.Helper()
	f, err := os.Open(probeBin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	code, err := s.Exec(ctx, local.ExecOpts{User: "root", Args: []string{"sh", "-c", "cat > /tmp/probe && chmod 755 /tmp/probe"}, Stdin: f, Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		t.Fatalf("installing probe: %v (exit %d) %s", err, code, out.String())
	}
}

// mustCreate creates a sandbox killed at cleanup.
func mustCreate(t testing.TB, ctx context.Context, b *local.Backend, o local.Options) *local.Sandbox {
	t.Helper()
	s, err := b.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.Kill(ctx); err != nil {
			t.Errorf("kill: %v", err)
		}
	})
	return s
}
