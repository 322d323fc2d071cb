package e2b

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/envdclient"
)

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"E2B_API_KEY": "e2b_k", "NOVITA_API_KEY": "nk", "NOVITA_DOMAIN": "", "E2B_SANDBOX_URL": "http://127.0.0.1:3000",
	}
	get := func(k string) string { return env[k] }
	cfg, err := ConfigFromEnv(FlavorE2B, get)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = cfg.withDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.APIKey != "e2b_k" || cfg.Domain != "e2b.app" || cfg.APIURL != "https://api.e2b.app" || cfg.SandboxURL != "http://127.0.0.1:3000" || cfg.headerPrefix() != "E2b" {
		t.Fatalf("e2b: %+v", cfg)
	}
	cfg, err = ConfigFromEnv(FlavorNovita, get)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = cfg.withDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != DefaultNovitaDomain || cfg.APIURL != "https://api."+DefaultNovitaDomain || cfg.SandboxURL != "" || cfg.headerPrefix() != "Novita" {
		t.Fatalf("novita: %+v", cfg)
	}
	if _, err := ConfigFromEnv(FlavorNovita, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "NOVITA_API_KEY") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := ConfigFromEnv("other", get); err == nil {
		t.Fatal("unknown flavor accepted")
	}
	// A scheme-less API URL gets https://, as novita-sandbox does; a legacy Novita domain is refused.
	c := Config{Flavor: FlavorNovita, APIKey: "k", APIURL: "api.example.com/"}
	if c, err = c.withDefaults(); err != nil || c.APIURL != "https://api.example.com" {
		t.Fatalf("%v %q", err, c.APIURL)
	}
	if _, err := (Config{Flavor: FlavorNovita, APIKey: "k", Domain: "sandbox.novita.ai"}).withDefaults(); err == nil || !strings.Contains(err.Error(), "legacy") {
		t.Fatalf("legacy domain: %v", err)
	}
	for _, bad := range []Config{
		{APIKey: ""},
		{APIKey: "k\n"},
		{APIKey: "k", Domain: "bad domain"},
		{APIKey: "k", APIURL: "ftp://x"},
		{APIKey: "k", APIURL: "http://x?y=1"},
		{APIKey: "k", CreateAPI: "v3"},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := New(Config{APIKey: "k", SandboxURL: "http://127.0.0.1:1/prefix"}); err == nil {
		t.Error("a sandbox URL with a path accepted")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 10 ":                          10 * time.Second,
		"-1":                            0,
		"99999999":                      0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": 0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

func TestAPIErrorIs(t *testing.T) {
	for status, want := range map[int]error{
		401: sandbox.ErrUnauthorized, 403: sandbox.ErrUnauthorized, 404: sandbox.ErrNotFound, 409: sandbox.ErrExists,
		400: sandbox.ErrInvalid, 429: ErrRateLimited, 501: errors.ErrUnsupported, 504: sandbox.ErrTimeout,
	} {
		err := error(&APIError{Op: "x", Status: status, Code: status})
		if !errors.Is(err, want) {
			t.Errorf("%d is not %v", status, want)
		}
		if status != 404 && errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("%d is ErrNotFound", status)
		}
	}
	// The body's code wins over the status line, as the JS SDKs read it.
	if !errors.Is(&APIError{Status: 400, Code: 404}, sandbox.ErrNotFound) {
		t.Error("code 404 in a 400 answer is not ErrNotFound")
	}
}

func TestVersions(t *testing.T) {
	for v, want := range map[string][3]int{"0.6.4": {0, 6, 4}, "0.1": {0, 1, 0}, "1.2.3-rc1": {1, 2, 3}, "v2.0.0": {2, 0, 0}} {
		got, ok := parseVersion(v)
		if !ok || got != want {
			t.Errorf("%s: %v %v", v, got, ok)
		}
	}
	for _, bad := range []string{"", "x", "1.2.3.4", "1..2", "-1.0.0"} {
		if _, ok := parseVersion(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if !lessVersion([3]int{0, 3, 9}, [3]int{0, 4, 0}) || lessVersion([3]int{0, 4, 0}, [3]int{0, 4, 0}) {
		t.Error("lessVersion")
	}
}

func TestCheckedIDAndClean(t *testing.T) {
	for _, ok := range []string{"abc123", "abc123-6532622b"} {
		if _, err := checkedID(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ABC", "a/b", "a.evil.com", "a b", strings.Repeat("a", 100), "a-", "-a"} {
		if _, err := checkedID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := clean("a\nb\x1b[31m" + strings.Repeat("x", 1000)); strings.ContainsAny(got, "\n\x1b") || len(got) > maxMessageLen+4 {
		t.Errorf("clean: %q", got)
	}
}

// TestRetryable checks which answers the client retries, and after how long; the retry loop itself
// runs against agent serve's 429s in backend_test.go.
func TestRetryable(t *testing.T) {
	res := func(status int, hdr ...string) *attemptResult {
		h := http.Header{}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		return &attemptResult{response: response{status: status, header: h}}
	}
	for _, tc := range []struct {
		name       string
		res        *attemptResult
		idempotent bool
		retry      bool
		after      time.Duration
	}{
		{"429 with Retry-After", res(429, "Retry-After", "2"), false, true, 2 * time.Second},
		{"429 without", res(429), false, true, 0},
		{"503 create", res(503), false, false, 0},
		{"503 get", res(503, "Retry-After", "1"), true, true, time.Second},
		{"502 get", res(502), true, true, 0},
		{"500 get", res(500), true, false, 0},
		{"404", res(404), true, false, 0},
		{"Should-Retry true on a create", res(503, "Should-Retry", "true"), false, true, 0},
		{"Should-Retry false on a 429", res(429, "Should-Retry", "false"), true, false, 0},
	} {
		retry, after := retryable(tc.res, tc.idempotent)
		if retry != tc.retry || (retry && after != tc.after) {
			t.Errorf("%s: retry %v after %s, want %v after %s", tc.name, retry, after, tc.retry, tc.after)
		}
	}
	for attempt := range 10 {
		if d := backoff(attempt); d < 250*time.Millisecond || d > 8*time.Second {
			t.Errorf("backoff(%d) = %s", attempt, d)
		}
	}
}

// TestDataPlaneConfig checks how a create answer becomes an envd client: the sandbox host without a
// URL override, the domain the provider answered, the flavor's routing headers, the token, and the
// default user for old envds.
func TestDataPlaneConfig(t *testing.T) {
	var got envdclient.Config
	capture := func(c *envdclient.Config) { got = *c }
	domain := "eu.example.net"
	for _, tc := range []struct {
		cfg    Config
		resp   e2bapi.Sandbox
		base   string
		prefix string
		user   string
	}{
		{Config{APIKey: "k", Envd: capture}, e2bapi.Sandbox{SandboxID: "abc", EnvdVersion: "0.6.4", EnvdAccessToken: "tok"},
			"https://49983-abc.e2b.app", "E2b", ""},
		{Config{APIKey: "k", Flavor: FlavorNovita, Envd: capture}, e2bapi.Sandbox{SandboxID: "abc", EnvdVersion: "0.3.9", Domain: &domain},
			"https://49983-abc.eu.example.net", "Novita", "user"},
		{Config{APIKey: "k", SandboxURL: "http://127.0.0.1:3000", Envd: capture}, e2bapi.Sandbox{SandboxID: "abc", EnvdVersion: "0.4.0", Domain: &domain},
			"http://127.0.0.1:3000", "E2b", ""},
	} {
		b, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := b.open(tc.resp)
		if err != nil {
			t.Fatal(err)
		}
		if got.BaseURL != tc.base || got.HeaderPrefix != tc.prefix || got.DefaultUser != tc.user || got.SandboxID != "abc" ||
			got.AccessToken != tc.resp.EnvdAccessToken || got.Port != e2bapi.EnvdPort {
			t.Errorf("%+v: envd config %+v", tc.resp, got)
		}
		s.Close()
	}
	b, _ := New(Config{APIKey: "k"})
	for _, bad := range []e2bapi.Sandbox{
		{SandboxID: "abc", EnvdVersion: "0.0.9"},
		{SandboxID: "abc", EnvdVersion: "garbage"},
		{SandboxID: "abc.evil.com", EnvdVersion: "0.6.4"},
		{SandboxID: "abc", EnvdVersion: "0.6.4", Domain: ptr("evil.com/path?")},
	} {
		if _, err := b.open(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func ptr[T any](v T) *T { return &v }
