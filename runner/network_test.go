package runner_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/runnertest"
	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/localbackend"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/network"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
)

// TestNetworkModesRecorded runs three scripted tasks, one per network mode (none, internet, an
// allow-list), on real networked sandboxes against the fake internet of internal/fakenet: what the
// mode allows works, what it refuses fails inside the sandbox and is recorded in result.json
// (network.refused) and report.md, and nothing of the networks is left on the host.
func TestNetworkModesRecorded(t *testing.T) {
	requireSandboxes(t)
	in := fakenet.New(t)
	ctx := ctxT(t, 10*time.Minute)
	dd := localenv.DataDir(t)
	b, err := localbackend.Open(ctx, local.Config{DataDir: dd, Binary: agentBin,
		Network: network.Config{Upstreams: []netip.AddrPort{in.Upstream()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
	})
	localenv.CheckLeaks(t, dd)

	// Each command records curl's output and exit status in a file the checks read.
	fetch := func(file, args string) string {
		return "curl -fsS --max-time 5 " + args + " >" + file + " 2>&1; echo exit=$? >>" + file
	}
	script := func(name string, cmds ...string) *llmtest.Scenario {
		return &llmtest.Scenario{Name: name, Turns: []llmtest.Turn{
			{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": strings.Join(cmds, "\n")}}}},
			{Content: "Fetched."},
		}}
	}
	srv := llmtest.Start(t,
		script("m-none", fetch("public.txt", "http://203.0.113.10/")),
		script("m-internet", fetch("public.txt", "http://203.0.113.10/"), fetch("private.txt", "http://10.1.2.3/")),
		script("m-allow",
			fetch("public.txt", "http://allowed.test/"),
			fetch("other.txt", "http://other.test/"),
			fetch("fronted.txt", "--resolve other.test:80:203.0.113.20 http://other.test/")),
	)
	suite := t.TempDir()
	for name, yaml := range map[string]string{
		"net-none": `
model: custom:m-none
prompt: Fetch http://203.0.113.10/ into public.txt.
checks:
  - file: public.txt
    regex: "exit=[1-9]"
  - run: ls /sys/class/net
    stdout: "lo\n"
`,
		"net-internet": `
model: custom:m-internet
prompt: Fetch the public page and the private one.
network: internet
checks:
  - file: public.txt
    contains: "hello from 203.0.113.10"
  - file: private.txt
    regex: "exit=[1-9]"
`,
		"net-allow": `
model: custom:m-allow
prompt: Fetch the allowed page, then try others.
network: {allow: [allowed.test]}
checks:
  - file: public.txt
    contains: "hello from 203.0.113.10 (http, host allowed.test)"
  - file: other.txt
    regex: "exit=[1-9]"
  - file: fronted.txt
    regex: "exit=[1-9]"
`,
	} {
		runnertest.WriteSpec(t, suite, name, yaml)
	}
	out := filepath.Join(t.TempDir(), "results")
	r, err := runner.New(runner.Config{Specs: loadSuite(t, suite), Models: scripted(srv), Out: out, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range sum.Tasks {
		if task.Status != runner.StatusPassed {
			t.Errorf("%s: %s %s %s %+v", task.Name, task.Status, task.Reason, task.Detail, task.FailedChecks)
		}
	}
	if h := in.TrapHits(); len(h) != 0 {
		t.Errorf("a trap of the fake internet was reached: %+v", h)
	}
	if h := in.HitsTo(fakenet.Other); len(h) != 0 {
		t.Errorf("the host the allow-list refuses was reached: %+v", h)
	}

	refused := func(n *runner.NetworkResult, kind, what string) bool {
		return slices.ContainsFunc(n.Refused, func(c runner.RefusedConnection) bool {
			return c.Kind == kind && (strings.Contains(c.Name, what) || strings.Contains(c.Addr, what))
		})
	}
	for _, tc := range []struct {
		task, mode, policy string
		refused            [][2]string // kind, name or address
	}{
		{"net-none", "none", "none", nil},
		{"net-internet", "internet", "internet", [][2]string{{"packet", "10.1.2.3"}}},
		{"net-allow", "allow", "allow:allowed.test", [][2]string{{"dns", "other.test"}, {"tcp", "203.0.113.20:80"}}},
	} {
		res := taskResult(t, out, tc.task)
		n := res.Network
		if n == nil || n.Mode != tc.mode || n.Policy != tc.policy || !n.Reported || n.Error != "" {
			t.Errorf("%s: network = %+v", tc.task, n)
			continue
		}
		if res.Sandbox == nil || res.Sandbox.Network != tc.policy {
			t.Errorf("%s: sandbox = %+v", tc.task, res.Sandbox)
		}
		if tc.mode == "none" && (len(n.Refused) != 0 || n.Address != "") {
			t.Errorf("%s: network none reports %+v", tc.task, n)
		}
		if tc.mode != "none" && !network.DefaultPool.Contains(netip.MustParseAddr(n.Address)) {
			t.Errorf("%s: address %q outside the pool", tc.task, n.Address)
		}
		for _, w := range tc.refused {
			if !refused(n, w[0], w[1]) {
				t.Errorf("%s: no %s refusal of %s recorded: %+v", tc.task, w[0], w[1], n.Refused)
			}
		}
		st := summaryByName(sum)[tc.task]
		if st.NetworkRefused != len(n.Refused) || (len(n.Refused) > 0) != (len(st.NetworkSample) > 0) {
			t.Errorf("%s: summary network_refused %d %v, result has %d", tc.task, st.NetworkRefused, st.NetworkSample, len(n.Refused))
		}
	}
	// Nothing of the allowed fetch is a refusal.
	if n := taskResult(t, out, "net-allow").Network; refused(n, "dns", "allowed.test") {
		t.Errorf("allowed.test recorded as refused: %+v", n.Refused)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	rep := string(report)
	if !strings.Contains(rep, "### Network refusals") || !strings.Contains(rep, "**net-allow**") || !strings.Contains(rep, "**net-internet**") || strings.Contains(rep, "**net-none**") {
		t.Errorf("report.md network section:\n%s", rep)
	}
	if !strings.Contains(rep, "network allow:allowed.test, internet, none") {
		t.Errorf("report.md does not list the network modes:\n%s", rep)
	}

	// gVisor gives sandboxes a network only with a runsc recent enough (ociruntime.NetworkSupport);
	// with an older one the task asking for a network is refused, never run with less.
	if rt, err := ociruntime.New("runsc", t.TempDir()); err == nil {
		gb, err := localbackend.Open(ctx, local.Config{DataDir: dd, Binary: agentBin, Runtime: "runsc", SkipGC: true})
		if err != nil {
			t.Fatal(err)
		}
		defer gb.Close()
		n, _ := spec.ParseNetwork("allow:allowed.test")
		sb, err := gb.Create(ctx, runner.SandboxRequest{Template: "host", Network: n, Lifetime: time.Minute})
		if sb != nil {
			defer sb.Kill(ctx)
		}
		if nerr := rt.NetworkSupport(ctx); nerr != nil && !errors.Is(err, local.ErrNetworkUnavailable) {
			t.Errorf("runsc (%v) with an allow-list: %v, want ErrNetworkUnavailable", nerr, err)
		} else if nerr == nil && err != nil {
			t.Errorf("runsc with an allow-list: %v", err)
		}
	}
}
