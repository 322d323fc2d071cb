package local_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/local"
)

// TestRunscSandbox runs a gVisor sandbox: envd answers over the socket it made inside (runsc
// cannot pass one in), commands run under gVisor's kernel, and the network is loopback only.
func TestRunscSandbox(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed")
	}
	b := newBackend(t, nil)
	ctx := ctxT(t, 3*time.Minute)
	s := mustCreate(t, ctx, b, local.Options{Runtime: "runsc"})
	out, code, err := s.Output(ctx, "root", "sh", "-c", "dmesg 2>/dev/null | head -1; cat /proc/version; cat /proc/net/dev")
	if err != nil || code != 0 {
		t.Fatalf("exec: %v (exit %d) %s", err, code, out)
	}
	if !strings.Contains(out, "gVisor") && !strings.Contains(out, "4.4.0") {
		t.Fatalf("not running under gVisor: %q", out)
	}
	if !strings.Contains(out, "lo:") || strings.Contains(out, "eth0") {
		t.Fatalf("network is not loopback only: %q", out)
	}
}
