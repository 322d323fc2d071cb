package localbackend_test

import (
	"testing"

	"github.com/agentrun/agent/runner/localbackend"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/local"
)

// TestSetPoolSkipsOtherRuntimes: the pool's sandboxes run under the backend's runtime, so specs
// naming another runtime (which could never claim them) do not shape it, however many they are;
// specs naming the backend's own runtime do.
func TestSetPoolSkipsOtherRuntimes(t *testing.T) {
	task := func(template string, rt spec.Runtime) *spec.Spec {
		return &spec.Spec{Name: "t", Template: template, Runtime: rt, Network: spec.Network{Mode: spec.NetworkNone},
			Limits: spec.Limits{Memory: 1 << 30, CPUs: 1, Pids: 512, Disk: 1 << 30}}
	}
	specs := []*spec.Spec{
		task("debian", spec.RuntimeRunsc), task("debian", spec.RuntimeRunsc), task("debian", spec.RuntimeCrun),
		task("host", ""),
	}
	var cfg local.Config
	localbackend.SetPool(&cfg, 2, specs)
	if cfg.Pool != 2 || cfg.PoolTemplate != "host" {
		t.Errorf("default runtime: pool %d of template %q; want 2 of host (the only spec runc serves)", cfg.Pool, cfg.PoolTemplate)
	}
	cfg = local.Config{Runtime: "runsc"}
	localbackend.SetPool(&cfg, 2, specs)
	if cfg.PoolTemplate != "debian" {
		t.Errorf("runtime runsc: pool template %q; want debian (two specs ask for it under runsc)", cfg.PoolTemplate)
	}
	cfg = local.Config{}
	localbackend.SetPool(&cfg, 1, append(specs, task("debian", spec.RuntimeRunc), task("debian", spec.RuntimeRunc)))
	if cfg.PoolTemplate != "debian" {
		t.Errorf("specs naming runc, the default: pool template %q; want debian", cfg.PoolTemplate)
	}
}
