package local_test

import (
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox/local"
)

func TestWarmPool(t *testing.T) {
	dd := tempDataDir(t)
	localenv.CheckLeaks(t, dd) // checked after the backend's cleanup: Close must kill the pool
	b := newBackendAt(t, dd, func(c *local.Config) { c.Pool = 2 })
	ctx := ctxT(t, 2*time.Minute)
	waitPooled := func(n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			infos, err := b.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c := 0
			for _, in := range infos {
				if in.Phase == local.PhasePooled {
					c++
				}
			}
			if c == n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("pool did not reach %d ready sandboxes", n)
	}
	waitPooled(2)
	infos, _ := b.List(ctx)
	pooled := map[string]bool{}
	for _, in := range infos {
		pooled[in.ID] = true
		if !in.Expires.IsZero() {
			t.Errorf("pooled sandbox %s already has a lifetime", in.ID)
		}
	}
	s, err := b.Create(ctx, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !pooled[s.ID()] {
		t.Errorf("create did not claim a pooled sandbox")
	}
	if rec := s.Record(); rec.Phase != local.PhaseRunning || rec.Expires.IsZero() {
		t.Errorf("claimed sandbox record: %+v", rec)
	}
	if out, code, err := s.Output(ctx, "", "hostname"); err != nil || code != 0 || out != s.ID()+"\n" {
		t.Errorf("claimed sandbox: %q %d %v", out, code, err)
	}
	// A request the pool cannot serve (other limits) creates a fresh sandbox.
	s2, err := b.Create(ctx, local.Options{Limits: local.Limits{Pids: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if pooled[s2.ID()] {
		t.Errorf("a request with its own limits got a pooled sandbox")
	}
	waitPooled(2) // refilled
	if err := s.Kill(ctx); err != nil {
		t.Fatal(err)
	}
}
