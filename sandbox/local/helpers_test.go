package local_test

import (
	"fmt"
	"os/exec"

	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/cgroups"
)

func localOptions(tpl, rt string) local.Options { return local.Options{Template: tpl, Runtime: rt} }

// crunUnusable says why crun cannot run sandboxes on this host ("" when it can).
func crunUnusable() string {
	if _, err := exec.LookPath("crun"); err != nil {
		return "crun is not installed"
	}
	h, err := cgroups.Detect()
	if err != nil {
		return err.Error()
	}
	if h.Mode == cgroups.Hybrid && len(h.UnifiedControllers) > 0 {
		return fmt.Sprintf("cgroup hybrid mode with controllers %v on v2: crun refuses it (see agent doctor)", h.UnifiedControllers)
	}
	return ""
}
