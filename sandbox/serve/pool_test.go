package serve_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

// TestPoolClaimedWithItsToken: with a warm pool (agent serve --pool), a create claims a pooled
// sandbox, whose envd requires the token it was started with, and the server hands out exactly
// that token; a create with env vars of its own gets a fresh sandbox.
func TestPoolClaimedWithItsToken(t *testing.T) {
	srv := servetest.StartWith(t, &env, func(c *local.Config) { c.Pool, c.PoolAccessToken = 1, true }, nil, nil)
	c := &client{t: t, srv: srv, key: srv.APIKey}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pooled := ""
	for deadline := time.Now().Add(time.Minute); pooled == "" && time.Now().Before(deadline); {
		infos, err := srv.Local.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range infos {
			if in.Phase == local.PhasePooled {
				pooled = in.ID
			}
		}
		if pooled == "" {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if pooled == "" {
		t.Fatal("the pool did not fill")
	}
	sb := c.create(nil)
	rec, err := srv.Local.Lookup(sb.SandboxID)
	if err != nil {
		t.Fatal(err)
	}
	if sb.SandboxID != pooled || !rec.Pooled {
		t.Fatalf("create got %s (pooled %v), want the pooled sandbox %s", sb.SandboxID, rec.Pooled, pooled)
	}
	route := map[string]string{"E2b-Sandbox-Id": sb.SandboxID}
	if r := c.envd("GET", "/files?path=/etc/hostname", "", route); r.status != http.StatusUnauthorized {
		t.Errorf("pooled sandbox without a token: %d %s", r.status, r.body)
	}
	route[e2bapi.HeaderAccessToken] = sb.EnvdAccessToken
	if r := c.envd("GET", "/files?path=/etc/hostname", "", route); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != sb.SandboxID {
		t.Errorf("pooled sandbox with its token: %d %q", r.status, r.body)
	}
	other := c.create(map[string]any{"templateID": "base", "envVars": map[string]string{"MARK": "own"}})
	if rec, err := srv.Local.Lookup(other.SandboxID); err != nil || rec.Pooled {
		t.Errorf("a create with env vars got a pooled sandbox (%v, %v)", rec, err)
	}
	if other.EnvdAccessToken == "" || other.EnvdAccessToken == sb.EnvdAccessToken {
		t.Errorf("tokens: pooled %q, fresh %q", sb.EnvdAccessToken, other.EnvdAccessToken)
	}
}
