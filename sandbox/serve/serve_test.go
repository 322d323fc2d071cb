package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/serve"
	"github.com/agentrun/agent/sandbox/serve/servetest"
)

var env servetest.Env

func TestMain(m *testing.M) { os.Exit(servetest.Main(m, &env)) }

// client sends raw requests, as the SDKs do.
type client struct {
	t   *testing.T
	srv *servetest.Server
	key string
}

func newClient(t *testing.T, mod func(*serve.Config)) *client {
	srv := servetest.Start(t, &env, mod, nil)
	return &client{t: t, srv: srv, key: srv.APIKey}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %q", a.status, err, a.body)
	}
}

// wantError checks an error answer: the status, a numeric code equal to it and a message.
func (a answer) wantError(t *testing.T, status int, msgPart string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
	}
	var e struct {
		Code    *int   `json:"code"`
		Message string `json:"message"`
	}
	a.json(t, &e)
	if e.Code == nil || *e.Code != status {
		t.Fatalf("error body %s: want numeric code %d", a.body, status)
	}
	if e.Message == "" || !strings.Contains(e.Message, msgPart) {
		t.Fatalf("error message %q: want it to mention %q", e.Message, msgPart)
	}
}

func (c *client) do(method, path string, body any, hdr map[string]string) answer {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.srv.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(e2bapi.HeaderAPIKey, c.key)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		c.t.Fatal(err)
	}
	return answer{status: res.StatusCode, header: res.Header, body: b}
}

// create creates a sandbox through v2 and registers its kill.
func (c *client) create(body map[string]any) e2bapi.Sandbox {
	c.t.Helper()
	if body == nil {
		body = map[string]any{"templateID": "base"}
	}
	a := c.do("POST", "/v2/sandboxes", body, nil)
	if a.status != http.StatusCreated {
		c.t.Fatalf("create: %d %s", a.status, a.body)
	}
	var sb e2bapi.Sandbox
	a.json(c.t, &sb)
	c.t.Cleanup(func() { c.do("DELETE", "/sandboxes/"+sb.SandboxID, nil, nil) })
	return sb
}

// envd sends a data-plane request routed by the given headers.
func (c *client) envd(method, path string, body string, hdr map[string]string) answer {
	c.t.Helper()
	h := map[string]string{e2bapi.HeaderAPIKey: ""}
	for k, v := range hdr {
		h[k] = v
	}
	return c.do(method, path, body, h)
}

func TestCreateConnectGetKillStatusesAndFields(t *testing.T) {
	c := newClient(t, nil)

	// v1 (e2b-py, e2b-js ≤ 2.50, Novita): 201 and the fields Python requires.
	a := c.do("POST", "/sandboxes", map[string]any{"templateID": "base", "timeout": 120, "secure": true, "allow_internet_access": true,
		"metadata": map[string]string{"suite": "serve", "k": "v w"}, "envVars": map[string]string{"GREETING": "hi there"}}, nil)
	if a.status != http.StatusCreated {
		t.Fatalf("POST /sandboxes: %d %s", a.status, a.body)
	}
	var raw map[string]any
	a.json(t, &raw)
	for _, k := range []string{"templateID", "sandboxID", "clientID", "envdVersion", "envdAccessToken", "trafficAccessToken", "domain"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("create answer lacks %q: %s", k, a.body)
		}
	}
	var sb e2bapi.Sandbox
	a.json(t, &sb)
	if !e2bapi.ValidID(sb.SandboxID) || sb.ClientID != e2bapi.ClientID || sb.EnvdVersion != serve.EnvdVersion || len(sb.EnvdAccessToken) < 32 {
		t.Fatalf("create answer %+v", sb)
	}
	t.Cleanup(func() { c.do("DELETE", "/sandboxes/"+sb.SandboxID, nil, nil) })

	// The sandbox-wide environment reaches commands: run one through the data plane.
	out := runCommand(t, c, sb, "echo \"$GREETING\"")
	if out != "hi there\n" {
		t.Fatalf("command output %q", out)
	}

	// GET: every field Python's SandboxDetail requires.
	a = c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("GET: %d %s", a.status, a.body)
	}
	raw = nil
	a.json(t, &raw)
	for _, k := range []string{"templateID", "sandboxID", "clientID", "startedAt", "endAt", "envdVersion", "cpuCount", "memoryMB", "diskSizeMB", "state", "metadata"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("detail lacks %q: %s", k, a.body)
		}
	}
	var d e2bapi.SandboxDetail
	a.json(t, &d)
	if d.State != "running" || d.Metadata["k"] != "v w" || d.CPUCount < 1 || d.MemoryMB < 16 || d.DiskSizeMB < 64 {
		t.Fatalf("detail %+v", d)
	}
	// Internet access was asked for, but serve without --allow-internet gives network none, and says so.
	if d.AllowInternetAccess == nil || *d.AllowInternetAccess || d.Network != nil {
		t.Fatalf("allowInternetAccess %v, network %+v without AllowInternet", d.AllowInternetAccess, d.Network)
	}
	if out := runCommand(t, c, sb, "cat /sys/class/net/eth0/address 2>&1 || echo no eth0"); !strings.Contains(out, "no eth0") {
		t.Fatalf("a sandbox of a server without AllowInternet has an eth0: %q", out)
	}
	if got := d.EndAt.Sub(d.StartedAt); got != 120*time.Second {
		t.Fatalf("endAt - startedAt = %s, want the 120 s timeout", got)
	}

	// An id with the client suffix is the same sandbox.
	if a := c.do("GET", "/sandboxes/"+sb.SandboxID+"-"+e2bapi.ClientID, nil, nil); a.status != http.StatusOK {
		t.Fatalf("GET with client suffix: %d %s", a.status, a.body)
	}

	// Connect, v1 and v2: 200 and the same token.
	for _, p := range []string{"/sandboxes/", "/v2/sandboxes/"} {
		a = c.do("POST", p+sb.SandboxID+"/connect", map[string]any{"timeout": 60}, nil)
		if a.status != http.StatusOK {
			t.Fatalf("connect %s: %d %s", p, a.status, a.body)
		}
		var cs e2bapi.Sandbox
		a.json(t, &cs)
		if cs.SandboxID != sb.SandboxID || cs.EnvdAccessToken != sb.EnvdAccessToken {
			t.Fatalf("connect answered %+v", cs)
		}
	}
	// connect with a shorter timeout (60 s) did not shorten the life.
	var d2 e2bapi.SandboxDetail
	c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil).json(t, &d2)
	if !d2.EndAt.Equal(d.EndAt) {
		t.Fatalf("connect with a shorter timeout moved the end from %s to %s; it may only extend", d.EndAt, d2.EndAt)
	}
	// An empty body means the default 300 s, which reaches beyond the 120 s: the end moves later.
	if a := c.do("POST", "/v2/sandboxes/"+sb.SandboxID+"/connect", "", nil); a.status != http.StatusOK {
		t.Fatalf("connect without body: %d %s", a.status, a.body)
	}
	c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil).json(t, &d2)
	if !d2.EndAt.After(d.EndAt) {
		t.Fatalf("connect with the default 300 s did not extend the end (%s, was %s)", d2.EndAt, d.EndAt)
	}
	// set timeout: 204, and it may shorten.
	if a := c.do("POST", "/sandboxes/"+sb.SandboxID+"/timeout", map[string]any{"timeout": 30}, nil); a.status != http.StatusNoContent {
		t.Fatalf("timeout: %d %s", a.status, a.body)
	}
	c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil).json(t, &d2)
	if !d2.EndAt.Before(d.EndAt) {
		t.Fatalf("set timeout 30 s did not move the end (%s) earlier than %s", d2.EndAt, d.EndAt)
	}

	// The legacy resume of a running sandbox is a conflict.
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/resume", `{"timeout":10}`, nil).wantError(t, http.StatusConflict, "running")

	// Metrics: one sample with every field.
	a = c.do("GET", "/sandboxes/"+sb.SandboxID+"/metrics", nil, nil)
	var ms []map[string]any
	a.json(t, &ms)
	if a.status != http.StatusOK || len(ms) != 1 {
		t.Fatalf("metrics: %d %s", a.status, a.body)
	}
	for _, k := range []string{"timestamp", "timestampUnix", "cpuCount", "cpuUsedPct", "memUsed", "memTotal", "memCache", "diskUsed", "diskTotal"} {
		if _, ok := ms[0][k]; !ok {
			t.Errorf("metric lacks %q", k)
		}
	}

	// Kill: 204, then 404 everywhere, and the data plane says the sandbox was not found (502).
	if a := c.do("DELETE", "/sandboxes/"+sb.SandboxID, nil, nil); a.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	c.do("DELETE", "/sandboxes/"+sb.SandboxID, nil, nil).wantError(t, http.StatusNotFound, "killed")
	c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil).wantError(t, http.StatusNotFound, sb.SandboxID)
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49983"}).wantError(t, http.StatusBadGateway, "was not found")
	c.envd("GET", "/health", "", map[string]string{e2bapi.HeaderAccessToken: sb.EnvdAccessToken}).wantError(t, http.StatusBadGateway, "was not found")
	if n := c.srv.Serve.Count(); n != 0 {
		t.Fatalf("%d sandboxes alive after the kill", n)
	}
}

// runCommand runs a shell command through envd's Process.Start stream (Connect protocol, JSON),
// routed by the E2B headers, and returns its stdout.
func runCommand(t *testing.T, c *client, sb e2bapi.Sandbox, cmd string) string {
	t.Helper()
	msg, _ := json.Marshal(map[string]any{"process": map[string]any{"cmd": "/bin/bash", "args": []string{"-l", "-c", cmd}}})
	frame := append([]byte{0, byte(len(msg) >> 24), byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))}, msg...)
	a := c.envd("POST", "/process.Process/Start", string(frame), map[string]string{
		"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49983", e2bapi.HeaderAccessToken: sb.EnvdAccessToken,
		"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
	})
	if a.status != http.StatusOK {
		t.Fatalf("Process.Start: %d %s", a.status, a.body)
	}
	var stdout []byte
	sawEnd := false
	for b := a.body; len(b) >= 5; {
		n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			t.Fatalf("truncated frame")
		}
		var ev struct {
			Event struct {
				Data *struct {
					Stdout []byte `json:"stdout"`
				} `json:"data"`
				End *struct{} `json:"end"`
			} `json:"event"`
			Error *struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(b[5:5+n], &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Error != nil {
			t.Fatalf("stream error %+v", ev.Error)
		}
		if ev.Event.Data != nil {
			stdout = append(stdout, ev.Event.Data.Stdout...)
		}
		if ev.Event.End != nil {
			sawEnd = true
		}
		b = b[5+n:]
	}
	if !sawEnd {
		t.Fatalf("no end event in %q", a.body)
	}
	return string(stdout)
}

func TestBadInput(t *testing.T) {
	c := newClient(t, nil)
	sb := c.create(nil)

	// Keys.
	c.do("GET", "/v2/sandboxes", nil, map[string]string{e2bapi.HeaderAPIKey: ""}).wantError(t, 401, "missing API key")
	c.do("GET", "/v2/sandboxes", nil, map[string]string{e2bapi.HeaderAPIKey: "e2b_" + strings.Repeat("0", 40)}).wantError(t, 401, "invalid API key")
	c.do("POST", "/v2/sandboxes", map[string]any{"templateID": "base"}, map[string]string{e2bapi.HeaderAPIKey: "wrong"}).wantError(t, 401, "invalid API key")
	c.do("DELETE", "/sandboxes/"+sb.SandboxID, nil, map[string]string{e2bapi.HeaderAPIKey: "wrong"}).wantError(t, 401, "invalid API key")
	if a := c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil); a.status != 200 {
		t.Fatalf("a refused kill killed the sandbox: %d", a.status)
	}

	// Unknown and malformed sandboxes.
	for _, m := range []struct{ method, path, body string }{
		{"GET", "/sandboxes/nosuchsandbox", ""},
		{"DELETE", "/sandboxes/nosuchsandbox", ""},
		{"POST", "/sandboxes/nosuchsandbox/timeout", `{"timeout":10}`},
		{"POST", "/sandboxes/nosuchsandbox/connect", `{"timeout":10}`},
		{"POST", "/v2/sandboxes/nosuchsandbox/connect", `{}`},
		{"GET", "/sandboxes/nosuchsandbox/metrics", ""},
		{"POST", "/sandboxes/nosuchsandbox/pause", `{}`},
	} {
		c.do(m.method, m.path, m.body, nil).wantError(t, 404, "nosuchsandbox")
	}
	c.do("GET", "/sandboxes/Bad_ID", nil, nil).wantError(t, 400, "malformed sandbox id")
	c.do("GET", "/sandboxes/"+strings.Repeat("a", 300), nil, nil).wantError(t, 400, "malformed sandbox id")

	// Malformed bodies.
	for _, body := range []string{"", "{", `{"templateID":}`, `[1,2]`, `{"templateID":"base"} trailing`, `{"templateID":5}`, `"x"`, `{"templateID":"base","timeout":"300"}`} {
		c.do("POST", "/v2/sandboxes", body, nil).wantError(t, 400, "")
	}
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/timeout", `{"timeout":-1}`, nil).wantError(t, 400, "negative")
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/timeout", `{}`, nil).wantError(t, 400, "required")
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/timeout", `{"timeout":1e99}`, nil).wantError(t, 400, "")
	for _, body := range []map[string]any{
		{"templateID": ""},
		{"templateID": "../../etc"},
		{"templateID": "base", "timeout": -5},
		{"templateID": "base", "timeout": 999999999},
		{"templateID": "base", "envVars": map[string]string{"BAD=KEY": "x"}},
		{"templateID": "base", "envVars": map[string]string{"K": "nul\x00"}},
		{"templateID": "base", "metadata": map[string]string{"": "x"}},
		{"templateID": "base", "autoResume": map[string]any{"enabled": true}},
		{"templateID": "base", "network": map[string]any{"denyOut": []string{"10.0.0.0/8"}}},
		{"templateID": "base", "allow_internet_access": false, "network": map[string]any{"allowOut": []string{"not a domain"}}},
	} {
		c.do("POST", "/v2/sandboxes", body, nil).wantError(t, 400, "")
	}
	c.do("POST", "/v2/sandboxes", map[string]any{"templateID": "no-such-template"}, nil).wantError(t, 404, "no-such-template")

	// Oversized bodies: 413, and nothing created.
	huge := `{"templateID":"base","metadata":{"k":"` + strings.Repeat("x", 2<<20) + `"}}`
	c.do("POST", "/v2/sandboxes", huge, nil).wantError(t, 413, "exceeds")
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/timeout", huge, nil).wantError(t, 413, "exceeds")
	if n := c.srv.Serve.Count(); n != 1 {
		t.Fatalf("%d sandboxes alive; bad requests must create none", n)
	}

	// Listing parameters.
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "nextToken=%25%25", "nextToken=" + strings.Repeat("A", 300), "state=frozen", "order=sideways", "startedAfter=yesterday", "metadata=%ZZ"} {
		c.do("GET", "/v2/sandboxes?"+q, nil, nil).wantError(t, 400, "")
	}

	// Unknown routes and unsupported ones.
	c.do("GET", "/nope", nil, nil).wantError(t, 404, "no such endpoint")
	c.do("POST", "/sandboxes/"+sb.SandboxID+"/snapshots", `{}`, nil).wantError(t, 501, "not supported")

	// Error messages never echo large inputs.
	a := c.do("POST", "/v2/sandboxes", map[string]any{"templateID": strings.Repeat("z", 10000)}, nil)
	if a.status != 400 || len(a.body) > 1000 {
		t.Fatalf("long template name: %d, %d-byte answer", a.status, len(a.body))
	}

	// Data plane: unknown sandbox, wrong token, closed port, malformed routing, oversized headers.
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": "nosuchsandbox"}).wantError(t, 502, "was not found")
	c.envd("GET", "/files?path=x", "", map[string]string{e2bapi.HeaderAccessToken: "not-a-token"}).wantError(t, 401, "invalid access token")
	c.envd("GET", "/files?path=x", "", map[string]string{"E2b-Sandbox-Id": sb.SandboxID, e2bapi.HeaderAccessToken: "not-a-token"}).wantError(t, 401, "")
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49999"}).wantError(t, 502, "port is not open")
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "99999"}).wantError(t, 400, "malformed")
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": "UPPER"}).wantError(t, 400, "malformed")
	a = c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "X-Big": strings.Repeat("h", 100<<10)})
	if a.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d", a.status)
	}
	// A streaming RPC to a missing sandbox gets a Connect end-stream error carrying the message.
	a = c.envd("POST", "/process.Process/Start", "\x00\x00\x00\x00\x02{}", map[string]string{"E2b-Sandbox-Id": "nosuchsandbox", "Content-Type": "application/connect+json"})
	if a.status != 200 || len(a.body) < 5 || a.body[0] != 2 || !strings.Contains(string(a.body), "was not found") {
		t.Fatalf("streaming RPC to a missing sandbox: %d %q", a.status, a.body)
	}
	// The sandbox survived all of it.
	if out := runCommand(t, c, sb, "echo alive"); out != "alive\n" {
		t.Fatalf("after bad input: %q", out)
	}
}

func TestDataPlaneRouting(t *testing.T) {
	c := newClient(t, func(cfg *serve.Config) { cfg.Domain = "sandbox.test" })
	a, b := c.create(nil), c.create(nil)
	if a.EnvdAccessToken == b.EnvdAccessToken {
		t.Fatal("two sandboxes got the same access token")
	}
	if a.Domain == nil || *a.Domain != "sandbox.test" {
		t.Fatalf("domain %v", a.Domain)
	}
	hostname := func(t *testing.T, hdr map[string]string, host string) string {
		t.Helper()
		// The command's output names the sandbox it ran in.
		msg := `{"process":{"cmd":"/bin/hostname"}}`
		frame := string([]byte{0, 0, 0, 0, byte(len(msg))}) + msg
		h := map[string]string{"Content-Type": "application/connect+json", e2bapi.HeaderAPIKey: ""}
		for k, v := range hdr {
			h[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", c.srv.URL+"/process.Process/Start", strings.NewReader(frame))
		for k, v := range h {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		if host != "" {
			req.Host = host
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var out []string
		for b := body; len(b) >= 5; {
			n := int(b[1])<<24 | int(b[2])<<16 | int(b[3])<<8 | int(b[4])
			var ev struct {
				Event struct {
					Data *struct{ Stdout []byte } `json:"data"`
				} `json:"event"`
				Error *struct{ Message string } `json:"error"`
			}
			_ = json.Unmarshal(b[5:5+n], &ev)
			if ev.Error != nil {
				t.Fatalf("stream error: %s", ev.Error.Message)
			}
			if ev.Event.Data != nil {
				out = append(out, string(ev.Event.Data.Stdout))
			}
			b = b[5+n:]
		}
		return strings.TrimSpace(strings.Join(out, ""))
	}
	for _, sb := range []e2bapi.Sandbox{a, b} {
		tok := sb.EnvdAccessToken
		cases := map[string]struct {
			hdr  map[string]string
			host string
		}{
			"e2b headers":         {map[string]string{"E2b-Sandbox-Id": sb.SandboxID, "E2b-Sandbox-Port": "49983", e2bapi.HeaderAccessToken: tok}, ""},
			"novita headers":      {map[string]string{"Novita-Sandbox-Id": sb.SandboxID, "Novita-Sandbox-Port": "49983", e2bapi.HeaderAccessToken: tok}, ""},
			"client suffix":       {map[string]string{"E2b-Sandbox-Id": sb.SandboxID + "-" + e2bapi.ClientID, e2bapi.HeaderAccessToken: tok}, ""},
			"token only":          {map[string]string{e2bapi.HeaderAccessToken: tok}, ""},
			"host with token":     {map[string]string{e2bapi.HeaderAccessToken: tok}, fmt.Sprintf("49983-%s.sandbox.test:443", sb.SandboxID)},
			"host, client suffix": {map[string]string{e2bapi.HeaderAccessToken: tok}, fmt.Sprintf("49983-%s-%s.sandbox.test", sb.SandboxID, e2bapi.ClientID)},
		}
		for name, tc := range cases {
			if got := hostname(t, tc.hdr, tc.host); got != sb.SandboxID {
				t.Errorf("%s: ran in %q, want %s", name, got, sb.SandboxID)
			}
		}
	}
	// envd itself requires the token: routing without it is refused by envd (401).
	r := c.envd("GET", "/files?path=/etc/hostname", "", map[string]string{"E2b-Sandbox-Id": a.SandboxID})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}
	// Another sandbox's token does not open this one.
	r = c.envd("GET", "/files?path=/etc/hostname", "", map[string]string{"E2b-Sandbox-Id": a.SandboxID, e2bapi.HeaderAccessToken: b.EnvdAccessToken})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("other sandbox's token: %d %s", r.status, r.body)
	}
	// /health stays open (the SDKs probe it) and a Host of another domain is not data plane.
	if r := c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": a.SandboxID}); r.status != http.StatusNoContent {
		t.Fatalf("health: %d %s", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.srv.URL+"/health", nil)
	req.Host = "49983-" + a.SandboxID + ".elsewhere.test"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK { // the control plane's own /health
		t.Fatalf("foreign host: %d", res.StatusCode)
	}
	// A control-plane path carrying a routing header stays control plane (e2b-py 2.7–2.25 connect).
	r = c.do("POST", "/sandboxes/"+a.SandboxID+"/connect", `{"timeout":60}`, map[string]string{"E2b-Sandbox-Id": a.SandboxID})
	if r.status != http.StatusOK {
		t.Fatalf("connect with a routing header: %d %s", r.status, r.body)
	}
}

func TestListFiltersAndPagination(t *testing.T) {
	c := newClient(t, nil)
	var ids []string
	for i := range 4 {
		md := map[string]string{"group": "odd", "odd key&=": "v/a l%ue"}
		if i%2 == 0 {
			md = map[string]string{"group": "even"}
		}
		ids = append(ids, c.create(map[string]any{"templateID": "base", "metadata": md}).SandboxID)
	}
	list := func(q url.Values) ([]e2bapi.ListedSandbox, string) {
		t.Helper()
		a := c.do("GET", "/v2/sandboxes?"+q.Encode(), nil, nil)
		if a.status != 200 {
			t.Fatalf("list %s: %d %s", q.Encode(), a.status, a.body)
		}
		var out []e2bapi.ListedSandbox
		a.json(t, &out)
		return out, a.header.Get(e2bapi.HeaderNextToken)
	}
	all, next := list(url.Values{})
	if len(all) != 4 || next != "" {
		t.Fatalf("list: %d sandboxes, next %q", len(all), next)
	}
	// Newest first by default, oldest first with order=asc.
	if all[0].SandboxID != ids[3] || all[3].SandboxID != ids[0] {
		t.Fatalf("default order: %v", all)
	}
	asc, _ := list(url.Values{"order": {"asc"}})
	if asc[0].SandboxID != ids[0] {
		t.Fatalf("asc order: %v", asc)
	}
	// Pages of one, across the whole set, each sandbox once.
	seen := map[string]bool{}
	q := url.Values{"limit": {"1"}, "order": {"asc"}}
	for page := 0; ; page++ {
		got, next := list(q)
		if page > 10 {
			t.Fatal("pagination does not end")
		}
		for _, s := range got {
			if seen[s.SandboxID] {
				t.Fatalf("%s listed twice", s.SandboxID)
			}
			seen[s.SandboxID] = true
		}
		if next == "" {
			break
		}
		q.Set("nextToken", next)
	}
	if len(seen) != 4 {
		t.Fatalf("paged through %d sandboxes, want 4", len(seen))
	}
	// Metadata filter, encoded as the SDKs encode it (percent-encoded pairs in a query string).
	md := url.Values{}
	md.Set(url.PathEscape("odd key&="), url.PathEscape("v/a l%ue"))
	md.Set("group", "odd")
	odd, _ := list(url.Values{"metadata": {md.Encode()}})
	if len(odd) != 2 || odd[0].Metadata["group"] != "odd" || odd[1].Metadata["group"] != "odd" {
		t.Fatalf("metadata filter: %+v", odd)
	}
	none, _ := list(url.Values{"metadata": {"group=none"}})
	if len(none) != 0 {
		t.Fatalf("metadata filter for nothing: %d", len(none))
	}
	// State: nothing here is paused (TestPauseResume pauses); both spellings of a state list
	// (comma, repeated) work.
	if p, _ := list(url.Values{"state": {"paused"}}); len(p) != 0 {
		t.Fatalf("paused: %d", len(p))
	}
	if r, _ := list(url.Values{"state": {"running", "paused"}}); len(r) != 4 {
		t.Fatalf("state=running&state=paused: %d", len(r))
	}
	if r, _ := list(url.Values{"state": {"paused,running"}}); len(r) != 4 {
		t.Fatalf("state=paused,running: %d", len(r))
	}
	// Deprecated GET /sandboxes: every running sandbox, filtered too.
	a := c.do("GET", "/sandboxes?metadata="+url.QueryEscape("group=even"), nil, nil)
	var v1 []e2bapi.ListedSandbox
	a.json(t, &v1)
	if a.status != 200 || len(v1) != 2 {
		t.Fatalf("GET /sandboxes: %d %d", a.status, len(v1))
	}
}

func TestTimeoutExpiry(t *testing.T) {
	c := newClient(t, nil)
	sb := c.create(map[string]any{"templateID": "base", "timeout": 1})
	deadline := time.Now().Add(time.Minute)
	for {
		a := c.do("GET", "/sandboxes/"+sb.SandboxID, nil, nil)
		if a.status == http.StatusNotFound {
			a.wantError(t, 404, "timeout expired")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox with a 1 s timeout still there after a minute: %d", a.status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.envd("GET", "/health", "", map[string]string{"E2b-Sandbox-Id": sb.SandboxID}).wantError(t, 502, "was not found")
	// The kill runs after the sandbox left the registry: wait for it.
	for {
		infos, err := c.srv.Local.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("local sandboxes after expiry: %v", infos)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestConcurrencyCap(t *testing.T) {
	c := newClient(t, func(cfg *serve.Config) { cfg.MaxSandboxes = 1 })
	first := c.create(nil)
	a := c.do("POST", "/v2/sandboxes", map[string]any{"templateID": "base"}, nil)
	a.wantError(t, http.StatusTooManyRequests, "maximum number of concurrent sandboxes")
	if a.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	c.do("DELETE", "/sandboxes/"+first.SandboxID, nil, nil)
	c.create(nil)
}

func TestCloseKillsSandboxes(t *testing.T) {
	c := newClient(t, nil)
	c.create(nil)
	c.create(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.srv.Serve.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if infos, err := c.srv.Local.List(ctx); err != nil || len(infos) != 0 {
		t.Fatalf("after Close: %d local sandboxes (%v)", len(infos), err)
	}
	c.do("POST", "/v2/sandboxes", map[string]any{"templateID": "base"}, nil).wantError(t, 503, "shutting down")
}
