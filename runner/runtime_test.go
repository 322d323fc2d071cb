package runner_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox/local/cgroups"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
)

// TestSpecRuntime: a spec's runtime chooses the OCI runtime of its sandbox over the run's default
// (runc here). A task asking for runsc runs under gVisor (its own kernel: uname names gVisor's release), one
// that names none under runc (the host's kernel); both pass and result.json and run.json record
// which runtime each ran on. A task asking for crun where crun cannot run (cgroup v1 hybrid with
// v2 controllers, as agent doctor reports) ends as error with crun's reason and the fix; where
// crun works it passes on crun. Nothing is left behind, runtime state included.
func TestSpecRuntime(t *testing.T) {
	requireSandboxes(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed")
	}
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b := runnertest.Backend(t, dd, agentBin, "")
	localenv.CheckLeaks(t, dd)
	hostKernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	// gVisor's kernel release: 4.4.0 in older builds (Debian's), 4.19.0-gvisor in the recent ones
	// scripts/deps.sh builds (told apart by the flags they take).
	gvisorKernel := "4.4.0\n"
	if rt, err := ociruntime.New("runsc", t.TempDir()); err == nil && rt.AppliesSeccompInside() {
		gvisorKernel = "4.19.0-gvisor\n"
	}
	srv := llmtest.Start(t, &llmtest.Scenario{Name: "kernel", Turns: []llmtest.Turn{call("uname -r > kernel.txt"), {Content: "done"}}})
	dir := t.TempDir()
	for name, c := range map[string]struct{ runtime, kernel string }{
		"gvisor":  {"runtime: runsc\n", gvisorKernel},
		"default": {"", string(hostKernel)},
		"crun":    {"runtime: crun\n", string(hostKernel)},
	} {
		runnertest.WriteSpec(t, dir, name, `
prompt: write the kernel release to kernel.txt
model: custom:kernel
`+c.runtime+`checks:
  - {file: kernel.txt, equals: "`+strings.TrimSpace(c.kernel)+`\n"}
  - {run: uname -r, stdout: "`+strings.TrimSpace(c.kernel)+`\n"}
`)
	}
	out := filepath.Join(t.TempDir(), "results")
	r, err := runner.New(runner.Config{Specs: loadSuite(t, dir), Models: scripted(srv), Out: out, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for task, rt := range map[string]string{"gvisor": "runsc", "default": "runc"} {
		res := taskResult(t, out, task)
		if res.Status != runner.StatusPassed || res.Sandbox == nil || res.Sandbox.Runtime != rt {
			t.Errorf("%s: status %s %s %q, sandbox %+v; want passed on %s", task, res.Status, res.Reason, res.Detail, res.Sandbox, rt)
		}
	}
	crun := taskResult(t, out, "crun")
	if want := crunProblem(t); want != nil {
		t.Logf("crun's task: %s: %s", crun.Reason, crun.Detail)
		ok := crun.Status == runner.StatusError && crun.Reason == runner.ReasonSandboxError && !sum.OK
		for _, w := range want {
			ok = ok && strings.Contains(crun.Detail, w)
		}
		if !ok {
			t.Errorf("crun where it cannot run: status %s %s %q (run OK %v); want error sandbox_error naming %q", crun.Status, crun.Reason, crun.Detail, sum.OK, want)
		}
	} else if crun.Status != runner.StatusPassed || crun.Sandbox == nil || crun.Sandbox.Runtime != "crun" {
		t.Errorf("crun: status %s %s %q, sandbox %+v; want passed on crun", crun.Status, crun.Reason, crun.Detail, crun.Sandbox)
	}
	var info runner.RunInfo
	readJSON(t, filepath.Join(out, "run.json"), &info)
	runtimes := map[string]string{}
	for _, tk := range info.Tasks {
		runtimes[tk.Name] = tk.Runtime
	}
	if runtimes["gvisor"] != "runsc" || runtimes["default"] != "" || runtimes["crun"] != "crun" {
		t.Errorf("run.json task runtimes: %v", runtimes)
	}
	if infos, _ := b.Local().List(ctx); len(infos) != 0 {
		t.Errorf("sandboxes left: %+v", infos)
	}
	// The leak check covers runc's state; the other runtimes' state directories must be empty too.
	for _, rt := range []string{"runsc", "crun"} {
		ents, err := os.ReadDir(filepath.Join(dd, "runtime", rt))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("%s state left: %v", rt, ents)
		}
	}
}

// crunProblem tells why crun cannot run sandboxes here, as agent doctor finds, by the words the
// task's error must contain; nil when it can.
func crunProblem(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("crun"); err != nil {
		return []string{"crun is not installed", "apt-get install crun"}
	}
	h, err := cgroups.Detect()
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode == cgroups.Hybrid && len(h.UnifiedControllers) > 0 {
		return []string{"crun create", "hybrid mode", "agent doctor --fix"}
	}
	return nil
}
