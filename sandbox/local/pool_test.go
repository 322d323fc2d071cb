package local_test

import (
	"testing"
	"time"

	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox"
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

// TestWarmPoolShaped: a pool created with limits and env of its own serves requests that spell the
// same limits (with a lifetime of their own, which the claimed sandbox takes) and env, as the
// runner's requests do; a request with another env is created fresh.
func TestWarmPoolShaped(t *testing.T) {
	dd := tempDataDir(t)
	localenv.CheckLeaks(t, dd)
	env := map[string]string{"POOL_MARK": "shaped"}
	b := newBackendAt(t, dd, func(c *local.Config) {
		c.Pool = 1
		c.PoolLimits = local.Limits{MemoryBytes: 768 << 20, Pids: 300}
		c.PoolEnv = env
	})
	ctx := ctxT(t, 2*time.Minute)
	pooledID := func() string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			infos, err := b.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range infos {
				if in.Phase == local.PhasePooled {
					return in.ID
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("the pool did not fill")
		return ""
	}
	id := pooledID()
	// Other env: not from the pool.
	other, err := b.Create(ctx, local.Options{Limits: local.Limits{MemoryBytes: 768 << 20, Pids: 300}, Env: map[string]string{"POOL_MARK": "other"}})
	if err != nil {
		t.Fatal(err)
	}
	if other.ID() == id || other.Record().Pooled {
		t.Errorf("a request with another env got the pooled sandbox %s", id)
	}
	_ = other.Kill(ctx)
	// Same limits spelled out (CPUs as the default), same env, a lifetime of its own: claimed.
	life := 17 * time.Minute
	s, err := b.Create(ctx, local.Options{Limits: local.Limits{MemoryBytes: 768 << 20, Pids: 300, CPUs: local.DefaultCPUs, Lifetime: life}, Env: map[string]string{"POOL_MARK": "shaped"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := s.Record()
	if s.ID() != id || !rec.Pooled {
		t.Fatalf("create did not claim the pooled sandbox %s: got %s (pooled %v)", id, s.ID(), rec.Pooled)
	}
	if rec.Limits.Lifetime != life || time.Until(rec.Expires) <= 10*time.Minute {
		t.Errorf("claimed sandbox lifetime %s, expires %s: want the request's %s", rec.Limits.Lifetime, rec.Expires, life)
	}
	// Through envd, whose sandbox-wide env the pooled sandbox was started with.
	if res, err := s.Run(ctx, sandbox.Cmd{Shell: "echo $POOL_MARK"}); err != nil || string(res.Stdout) != "shaped\n" {
		t.Errorf("claimed sandbox env: %+v %v", res, err)
	}
	if err := s.Kill(ctx); err != nil {
		t.Fatal(err)
	}
}
