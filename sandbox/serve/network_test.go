package serve_test

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

// curl fetches url in the sandbox and says OK or FAIL.
func curl(t *testing.T, c *client, sb e2bapi.Sandbox, url string) string {
	t.Helper()
	return strings.TrimSpace(runCommand(t, c, sb, "curl -fsS -o /dev/null --max-time 5 "+url+" && echo OK || echo FAIL"))
}

// TestNetworkAllowInternet: with AllowInternet (agent serve --allow-internet), a create asking for
// internet access (the SDKs' default) gets the internet mode (public addresses only) against the
// fake internet, and network.allowOut with everything else denied becomes an allow-list; both are
// reported honestly. Without it (TestCreateConnectGetKillStatusesAndFields), sandboxes get none.
func TestNetworkAllowInternet(t *testing.T) {
	if env.SkipReason != "" {
		t.Skip(env.SkipReason)
	}
	in := fakenet.New(t)
	srv := servetest.StartWith(t, &env, func(lc *local.Config) {
		lc.Network.Upstreams = []netip.AddrPort{in.Upstream()}
	}, func(cfg *serve.Config) { cfg.AllowInternet = true }, nil)
	c := &client{t: t, srv: srv, key: srv.APIKey}

	open := c.create(map[string]any{"templateID": "base", "allow_internet_access": true})
	d := c.detail(open.SandboxID)
	if d.AllowInternetAccess == nil || !*d.AllowInternetAccess || d.Network != nil {
		t.Fatalf("internet sandbox reports allowInternetAccess %v, network %+v", d.AllowInternetAccess, d.Network)
	}
	if got := curl(t, c, open, "http://allowed.test/"); got != "OK" {
		t.Fatalf("internet mode: allowed.test %s", got)
	}
	for _, trap := range []string{"http://10.1.2.3/", "http://169.254.169.254/", "http://192.168.7.8/"} {
		if got := curl(t, c, open, trap); got != "FAIL" {
			t.Fatalf("internet mode reached %s", trap)
		}
	}

	listed := c.create(map[string]any{"templateID": "base", "allow_internet_access": false,
		"network": map[string]any{"allowOut": []string{"allowed.test"}}})
	d = c.detail(listed.SandboxID)
	if d.AllowInternetAccess == nil || *d.AllowInternetAccess || d.Network == nil ||
		!slices.Equal(d.Network.AllowOut, []string{"allowed.test"}) || !slices.Equal(d.Network.DenyOut, []string{"0.0.0.0/0"}) {
		t.Fatalf("allow-list sandbox reports allowInternetAccess %v, network %+v", d.AllowInternetAccess, d.Network)
	}
	if got := curl(t, c, listed, "http://allowed.test/"); got != "OK" {
		t.Fatalf("allow-list: allowed.test %s", got)
	}
	if got := curl(t, c, listed, "http://other.test/"); got != "FAIL" {
		t.Fatal("allow-list reached other.test")
	}

	closed := c.create(map[string]any{"templateID": "base", "allow_internet_access": false})
	if d := c.detail(closed.SandboxID); d.AllowInternetAccess == nil || *d.AllowInternetAccess {
		t.Fatalf("no-internet sandbox reports %v", d.AllowInternetAccess)
	}
	if got := curl(t, c, closed, "http://allowed.test/"); got != "FAIL" {
		t.Fatal("a sandbox without internet reached allowed.test")
	}
	if h := in.TrapHits(); len(h) != 0 {
		t.Fatalf("traps reached: %+v", h)
	}
	// A deny-list beyond "everything" cannot be enforced here: refused, nothing created.
	c.do("POST", "/v2/sandboxes", map[string]any{"templateID": "base", "network": map[string]any{"denyOut": []string{"203.0.113.20"}}}, nil).
		wantError(t, http.StatusBadRequest, "denyOut")
}
