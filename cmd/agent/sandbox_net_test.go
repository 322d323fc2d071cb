package main

import (
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/internal/testenv/localenv"
)

// TestSandboxCreateNetwork: `agent sandbox create --network` takes agent run's syntax. With
// internet, the sandbox resolves and fetches a public host of the fake internet (its DNS going to
// AGENT_DNS) but still not a private address; with none, it reaches nothing. Kill leaves nothing of
// either sandbox (links, tables, egress helper, lease included).
func TestSandboxCreateNetwork(t *testing.T) {
	requireSandboxes(t)
	if r := runAgent(t, nil, "sandbox", "create", "--data-dir", localenv.DataDir(t), "--network", "intranet"); r.code != exitUsage || !strings.Contains(r.stderr, "--network") {
		t.Errorf("create --network intranet: exit %d, stderr %q; want a usage error", r.code, r.stderr)
	}
	in := fakenet.New(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	env := []string{"AGENT_DNS=" + in.Upstream().String()}
	agent := func(args ...string) result {
		t.Helper()
		return runAgent(t, env, append([]string{args[0], args[1], "--data-dir", dd}, args[2:]...)...)
	}
	t.Cleanup(func() { agent("sandbox", "kill", "--all"); agent("sandbox", "gc") })
	create := func(netw string) string {
		t.Helper()
		r := agent("sandbox", "create", "--timeout", "5m", "--network", netw)
		if r.code != 0 {
			t.Fatalf("create --network %s: exit %d\n%s", netw, r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	fetch := "curl -sS --max-time 5 http://allowed.test/ 2>&1; curl -sS --max-time 3 http://" + fakenet.Traps[0].String() + "/ 2>&1; true"

	id := create("internet")
	r := agent("sandbox", "exec", id, "--", "sh", "-c", fetch)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from "+fakenet.Allowed.String()) {
		t.Errorf("internet sandbox: exit %d, output %q; want the public host's page", r.code, r.stdout+r.stderr)
	}
	if len(in.HitsTo(fakenet.Allowed)) == 0 {
		t.Errorf("the public host saw no connection from the internet sandbox")
	}
	if h := in.TrapHits(); len(h) != 0 {
		t.Errorf("an internet sandbox reached a private address: %+v", h)
	}
	if r := agent("sandbox", "kill", id); r.code != 0 {
		t.Errorf("kill %s: exit %d %s", id, r.code, r.stderr)
	}

	before := len(in.Hits())
	id = create("none")
	r = agent("sandbox", "exec", id, "--", "sh", "-c", fetch+"; curl -sS --max-time 3 http://"+fakenet.Allowed.String()+"/ 2>&1; true")
	if r.code != 0 || strings.Contains(r.stdout, "hello from") {
		t.Errorf("none sandbox: exit %d, output %q; want every fetch to fail", r.code, r.stdout+r.stderr)
	}
	if hits := in.Hits(); len(hits) != before {
		t.Errorf("the fake internet saw traffic from a sandbox with network none: %+v", hits[before:])
	}
	if r := agent("sandbox", "kill", id); r.code != 0 {
		t.Errorf("kill %s: exit %d %s", id, r.code, r.stderr)
	}
	if r := agent("sandbox", "ls", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("sandboxes left after kill: %s", r.stdout)
	}
}
