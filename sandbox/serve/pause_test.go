package serve_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/serve"
)

// counterScript runs a background counter in the sandbox: it writes an increasing number to
// /tmp/counter ten times a second, from memory (a restarted process would start over at 1).
const counterScript = `nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 &`

func readCounter(t *testing.T, c *client, sb e2bapi.Sandbox) int {
	t.Helper()
	out := strings.TrimSpace(runCommand(t, c, sb, "cat /tmp/counter"))
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("counter %q: %v", out, err)
	}
	return n
}

// waitCounterPast polls the counter until it exceeds n.
func waitCounterPast(t *testing.T, c *client, sb e2bapi.Sandbox, n int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := readCounter(t, c, sb); got > n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the counter did not get past %d in 30 s", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *client) detail(id string) e2bapi.SandboxDetail {
	c.t.Helper()
	a := c.do("GET", "/sandboxes/"+id, nil, nil)
	if a.status != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", id, a.status, a.body)
	}
	var d e2bapi.SandboxDetail
	a.json(c.t, &d)
	return d
}

func (c *client) listIDs(q url.Values) []string {
	c.t.Helper()
	a := c.do("GET", "/v2/sandboxes?"+q.Encode(), nil, nil)
	if a.status != http.StatusOK {
		c.t.Fatalf("list: %d %s", a.status, a.body)
	}
	var ls []e2bapi.ListedSandbox
	a.json(c.t, &ls)
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.SandboxID+":"+l.State)
	}
	return ids
}

// TestPauseResume: pause freezes a sandbox (409 the second time), reports it paused in get and
// list, stops its clock and refuses the data plane with a clear 502; connect resumes it (201, then
// 200) with the files and a counter process as they were, and sets its new end.
func TestPauseResume(t *testing.T) {
	c := newClient(t, nil)
	sb := c.create(map[string]any{"templateID": "base", "timeout": 120, "metadata": map[string]string{"pause": "test"}})
	runCommand(t, c, sb, "echo kept > /home/user/keep.txt && "+counterScript)
	before := waitCounterPast(t, c, sb, 0)

	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/pause", "{}", nil); a.status != http.StatusNoContent {
		t.Fatalf("pause: %d %s", a.status, a.body)
	}
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/pause", "", nil).wantError(t, http.StatusConflict, "already paused")

	d1 := c.detail(sb.SandboxID)
	if d1.State != e2bapi.StatePaused {
		t.Fatalf("state %q after pause", d1.State)
	}
	// The clock is stopped: the end moves along with the time that passes.
	time.Sleep(1100 * time.Millisecond)
	d2 := c.detail(sb.SandboxID)
	if !d2.EndAt.After(d1.EndAt) || d2.EndAt.Sub(time.Now()) > 120*time.Second {
		t.Fatalf("paused sandbox's end went from %s to %s: its clock must stop (end = now + time left)", d1.EndAt, d2.EndAt)
	}
	md := url.Values{"metadata": {"pause=test"}}
	if got := c.listIDs(md); len(got) != 1 || got[0] != sb.SandboxID+":paused" {
		t.Fatalf("list: %v", got)
	}
	md.Set("state", "paused")
	if got := c.listIDs(md); len(got) != 1 {
		t.Fatalf("list state=paused: %v", got)
	}
	md.Set("state", "running")
	if got := c.listIDs(md); len(got) != 0 {
		t.Fatalf("list state=running: %v", got)
	}
	// The data plane says it is paused, as a 502 (the SDKs' is_running false) and as a Connect
	// error on streams.
	hdr := map[string]string{"E2b-Sandbox-Id": sb.SandboxID, e2bapi.HeaderAccessToken: sb.EnvdAccessToken}
	c.envd("GET", "/health", "", hdr).wantError(t, http.StatusBadGateway, "is paused")
	hdr["Content-Type"] = "application/connect+json"
	if a := c.envd("POST", "/process.Process/Start", "\x00\x00\x00\x00\x02{}", hdr); a.status != 200 || !strings.Contains(string(a.body), "is paused") {
		t.Fatalf("stream to a paused sandbox: %d %q", a.status, a.body)
	}
	// set timeout while paused: the time left when it resumes.
	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/timeout", `{"timeout":600}`, nil); a.status != http.StatusNoContent {
		t.Fatalf("timeout while paused: %d %s", a.status, a.body)
	}
	if d := c.detail(sb.SandboxID); d.EndAt.Sub(time.Now()) < 590*time.Second {
		t.Fatalf("end %s after set timeout 600 s while paused", d.EndAt)
	}

	// connect resumes: 201, with the connect's timeout as the new life.
	a := c.do("POST", "/v2/sandboxes/"+sb.SandboxID+"/connect", `{"timeout":60}`, nil)
	if a.status != http.StatusCreated {
		t.Fatalf("connect to a paused sandbox: %d %s", a.status, a.body)
	}
	var cs e2bapi.Sandbox
	a.json(t, &cs)
	if cs.SandboxID != sb.SandboxID || cs.EnvdAccessToken != sb.EnvdAccessToken {
		t.Fatalf("connect answered %+v", cs)
	}
	d3 := c.detail(sb.SandboxID)
	if left := time.Until(d3.EndAt); d3.State != e2bapi.StateRunning || left > 60*time.Second || left < 30*time.Second {
		t.Fatalf("after resume: state %s, %s left (want the connect's 60 s)", d3.State, left)
	}
	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/connect", `{"timeout":60}`, nil); a.status != http.StatusOK {
		t.Fatalf("connect to a running sandbox: %d %s", a.status, a.body)
	}
	// Files and the counter process are as they were: the counter continues from where it was.
	if out := runCommand(t, c, sb, "cat /home/user/keep.txt"); out != "kept\n" {
		t.Fatalf("file after resume: %q", out)
	}
	after := readCounter(t, c, sb)
	if after < before {
		t.Fatalf("counter went back from %d to %d: the process restarted", before, after)
	}
	waitCounterPast(t, c, sb, after)

	// The legacy resume: 409 while running, 201 on a paused sandbox.
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/resume", `{"timeout":30}`, nil).wantError(t, http.StatusConflict, "running")
	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/pause", nil, nil); a.status != http.StatusNoContent {
		t.Fatalf("second pause: %d %s", a.status, a.body)
	}
	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/resume", `{"timeout":30}`, nil); a.status != http.StatusCreated {
		t.Fatalf("legacy resume: %d %s", a.status, a.body)
	}
	// A paused sandbox can be killed.
	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/pause", nil, nil); a.status != http.StatusNoContent {
		t.Fatalf("third pause: %d %s", a.status, a.body)
	}
	if a := c.do("DELETE", "/sandboxes/"+sb.SandboxID, nil, nil); a.status != http.StatusNoContent {
		t.Fatalf("kill while paused: %d %s", a.status, a.body)
	}
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/connect", `{}`, nil).wantError(t, http.StatusNotFound, "killed")
}

// TestAutoPauseAutoResume: a sandbox created with autoPause is paused (not killed) at its timeout;
// with autoResume, data-plane traffic resumes it. A sandbox paused longer than MaxPaused is killed.
func TestAutoPauseAutoResume(t *testing.T) {
	c := newClient(t, func(cfg *serve.Config) { cfg.MaxPaused = 3 * time.Second })
	sb := c.create(map[string]any{"templateID": "base", "timeout": 1, "autoPause": true, "autoResume": map[string]any{"enabled": true}})
	d := c.detail(sb.SandboxID)
	if d.Lifecycle == nil || d.Lifecycle.OnTimeout != "pause" || !d.Lifecycle.AutoResume {
		t.Fatalf("lifecycle %+v", d.Lifecycle)
	}
	waitState(t, c, sb.SandboxID, e2bapi.StatePaused)
	// Traffic resumes it, with the timeout it was created with.
	if out := runCommand(t, c, sb, "echo awake"); out != "awake\n" {
		t.Fatalf("command after auto-resume: %q", out)
	}
	// It pauses again at the end of that second, then stays paused until MaxPaused kills it.
	waitState(t, c, sb.SandboxID, e2bapi.StatePaused)
	deadline := time.Now().Add(time.Minute)
	for {
		a := c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil)
		if a.status == http.StatusNotFound {
			a.wantError(t, http.StatusNotFound, "stayed paused")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a sandbox paused past MaxPaused is still there: %d %s", a.status, a.body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Without autoResume, traffic does not wake it.
	sb2 := c.create(map[string]any{"templateID": "base", "timeout": 1, "autoPause": true})
	waitState(t, c, sb2.SandboxID, e2bapi.StatePaused)
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": sb2.SandboxID}).wantError(t, http.StatusBadGateway, "is paused")
	if st := c.detail(sb2.SandboxID).State; st != e2bapi.StatePaused {
		t.Fatalf("traffic woke a sandbox without autoResume: %s", st)
	}
}

func waitState(t *testing.T, c *client, id, state string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if d := c.detail(id); d.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s not %s after 30 s", id, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
