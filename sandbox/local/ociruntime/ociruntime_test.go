package ociruntime

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunscNetworkSupport asks the runsc builds installed here: the distribution's (older than
// the fix of gVisor issue 10704) must be refused networking with the reason, the one
// scripts/deps.sh builds accepted, and only the latter takes the recent-build flags.
func TestRunscNetworkSupport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tried := 0
	if bin, err := exec.LookPath("runsc"); err == nil {
		v, _ := (&Runtime{Name: Runsc, Binary: bin}).Version(ctx)
		if strings.Contains(v, "2022") || strings.Contains(v, "2023") {
			tried++
			r := &Runtime{Name: Runsc, Binary: bin, extra: probeRunsc(bin)}
			if err := r.NetworkSupport(ctx); err == nil || !strings.Contains(err.Error(), "10704") {
				t.Errorf("runsc %q at %s: NetworkSupport %v; want a refusal naming gVisor issue 10704", v, bin, err)
			}
			if r.AppliesSeccompInside() {
				t.Errorf("runsc %q takes the recent-build flags %v", v, r.extra)
			}
		}
	}
	if bin := filepath.Join(RunscDir, Runsc); fileExists(bin) {
		tried++
		r, err := New(Runsc, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if r.Binary != bin {
			t.Errorf("New(runsc) chose %s; want %s", r.Binary, bin)
		}
		if err := r.NetworkSupport(ctx); err != nil {
			t.Errorf("runsc at %s: %v", bin, err)
		}
		if !r.AppliesSeccompInside() || !strings.Contains(strings.Join(r.global(), " "), "--overlay2=none") {
			t.Errorf("runsc at %s: global flags %v", bin, r.global())
		}
		if g := strings.Join(r.WithNetwork(NetSandbox).global(), " "); !strings.Contains(g, "--network=sandbox") {
			t.Errorf("WithNetwork(sandbox): %s", g)
		}
		if g := strings.Join(r.global(), " "); !strings.Contains(g, "--network=none") {
			t.Errorf("default network: %s", g)
		}
	}
	if tried == 0 {
		t.Skip("no runsc installed")
	}
	if r := (&Runtime{Name: Runc}); r.NetworkSupport(ctx) != nil {
		t.Error("runc refused networking")
	}
}

func fileExists(p string) bool { _, err := exec.LookPath(p); return err == nil }
