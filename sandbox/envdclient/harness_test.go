package envdclient

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv"
)

// agentBin is the agent binary built once for the package's tests and benchmarks.
var agentBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithAgent(m, &agentBin)) }

// testEnvd is a standalone `agent envd` (logging at debug level) serving a temporary world.
type testEnvd struct{ *testenv.Envd }

func startEnvd(t testing.TB, o testenv.EnvdOptions) *testEnvd {
	t.Helper()
	o.LogLevel = "debug"
	return &testEnvd{testenv.StartEnvd(t, agentBin, o)}
}

// client returns a client of e; mod may adjust the config.
func (e *testEnvd) client(t testing.TB, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: e.URL, RequestTimeout: 30 * time.Second}
	if e.Sock != "" {
		cfg.Dial = e.Dial
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// killPIDOnCleanup makes sure a process envd started (a host process in standalone mode) ends with
// the test even when envd could not kill it (because the test killed envd).
func killPIDOnCleanup(t testing.TB, pid uint32) {
	t.Cleanup(func() {
		if pid > 1 {
			_ = syscall.Kill(int(pid), syscall.SIGKILL)
		}
	})
}

// recorder is a RoundTripper that records the requests it carries.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []*http.Request
	resp []http.Header
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	if resp != nil {
		r.resp = append(r.resp, resp.Header.Clone())
	} else {
		r.resp = append(r.resp, nil)
	}
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) find(path string) (*http.Request, http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reqs) - 1; i >= 0; i-- {
		if r.reqs[i].URL.Path == path {
			return r.reqs[i], r.resp[i]
		}
	}
	return nil, nil
}

// ctxT is a context bounded for one test step.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// lockedBuf collects callback output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) add(p []byte) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls cond until it holds or d passes (a wait, not a timing assertion).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// statOwner reads the owner of a host path.
func statOwner(p string, st *syscallStat) error {
	var s syscall.Stat_t
	if err := syscall.Lstat(p, &s); err != nil {
		return err
	}
	st.uid, st.gid = s.Uid, s.Gid
	return nil
}
