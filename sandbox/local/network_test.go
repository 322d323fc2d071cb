package local_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
)

// TestNetworkModes runs real sandboxes in each network mode against the fake internet, under runc
// and, when its build can (see ociruntime.NetworkSupport), under runsc with gVisor's network stack
// on the same link: the sandbox's own tools (getent, curl) resolve and connect as the policy
// allows, and the network is gone with the sandbox. A runsc that cannot must refuse.
func TestNetworkModes(t *testing.T) {
	requireRoot(t)
	in := fakenet.New(t)
	// The default run directory: address leases are host-wide, and tests running at the same
	// time (other packages, the battery) must not hand out the same addresses.
	b := newBackend(t, func(c *local.Config) {
		c.Network.Upstreams = []netip.AddrPort{in.Upstream()}
	})
	ctx := ctxT(t, 5*time.Minute)
	runtimes := []string{"runc"}
	if rt, err := ociruntime.New("runsc", t.TempDir()); err == nil {
		if err := rt.NetworkSupport(ctx); err == nil {
			runtimes = append(runtimes, "runsc")
		} else {
			t.Run("runsc refuses networked modes", func(t *testing.T) {
				_, err := b.Create(ctx, local.Options{Network: "internet", Runtime: "runsc"})
				if !errors.Is(err, local.ErrNetworkUnavailable) {
					t.Fatalf("runsc internet: %v", err)
				}
			})
		}
	}
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) { testNetworkModes(t, ctx, b, in, rt) })
	}
}

func testNetworkModes(t *testing.T, ctx context.Context, b *local.Backend, in *fakenet.Internet, rt string) {
	curl := func(s *local.Sandbox, url string) (string, int) {
		out, code, err := s.Output(ctx, "root", "curl", "-fsS", "--max-time", "5", url)
		if err != nil {
			t.Fatal(err)
		}
		return out, code
	}
	t.Run("none", func(t *testing.T) {
		s := mustCreate(t, ctx, b, local.Options{Network: "none", Runtime: rt})
		out, _, _ := s.Output(ctx, "root", "cat", "/sys/class/net/eth0/address")
		if !strings.Contains(out, "No such file") {
			t.Fatalf("none has an eth0: %q", out)
		}
		if _, code := curl(s, "http://203.0.113.10/"); code == 0 {
			t.Fatal("none reached the fake internet")
		}
	})
	t.Run("internet", func(t *testing.T) {
		s := mustCreate(t, ctx, b, local.Options{Network: "internet", Runtime: rt})
		out, code := curl(s, "http://allowed.test/")
		if code != 0 || !strings.Contains(out, "hello from 203.0.113.10") {
			t.Fatalf("curl allowed.test: exit %d %q", code, out)
		}
		if _, code := curl(s, "http://169.254.169.254/"); code == 0 {
			t.Fatal("metadata reached")
		}
		if h := in.TrapHits(); len(h) != 0 {
			t.Fatalf("traps reached: %+v", h)
		}
		rep, err := s.NetworkReport(ctx)
		if err != nil || rep.Policy != "internet" || rep.RefusedPackets == 0 {
			t.Fatalf("report %+v %v", rep, err)
		}
		addr := rep.Address
		if err := s.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		ifs, _ := net.Interfaces()
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, "ag"+s.ID()[:13]) {
				t.Fatalf("link %s survived the sandbox (address %s)", i.Name, addr)
			}
		}
	})
	t.Run("allow", func(t *testing.T) {
		s := mustCreate(t, ctx, b, local.Options{Network: "allow:allowed.test", Runtime: rt})
		if out, code := curl(s, "http://allowed.test/"); code != 0 {
			t.Fatalf("allowed: exit %d %q", code, out)
		}
		if out, code := curl(s, "http://other.test/"); code == 0 {
			t.Fatalf("other.test reached: %q", out)
		}
		if out, code := curl(s, "http://203.0.113.20/"); code == 0 {
			t.Fatalf("bare address reached: %q", out)
		}
		rep, err := s.NetworkReport(ctx)
		if err != nil || len(rep.Refused) < 2 {
			t.Fatalf("report %+v %v", rep, err)
		}
	})
}
