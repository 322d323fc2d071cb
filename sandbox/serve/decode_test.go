package serve

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
)

func TestDecodeNewSandbox(t *testing.T) {
	max := 24 * time.Hour
	req, aerr := decodeNewSandbox([]byte(`{"templateID":"base","timeout":120,"metadata":{"a":"b"},"envVars":{"X_1":"y"},"secure":true,"allow_internet_access":true,"mcp":null}`), false, max)
	if aerr != nil {
		t.Fatal(aerr)
	}
	if req.templateID != "base" || req.timeout != 120*time.Second || req.metadata["a"] != "b" || req.env["X_1"] != "y" {
		t.Fatalf("%+v", req)
	}
	// Defaults: 15 s for v1 (the spec), 300 s for v2.
	if req, _ := decodeNewSandbox([]byte(`{"templateID":"base"}`), false, max); req.timeout != DefaultTimeoutV1 {
		t.Fatalf("v1 default %s", req.timeout)
	}
	if req, _ := decodeNewSandbox([]byte(`{"templateID":"base"}`), true, max); req.timeout != DefaultTimeoutV2 {
		t.Fatalf("v2 default %s", req.timeout)
	}
	// A default beyond a short maximum lifetime is clamped; an explicit one is refused.
	if req, _ := decodeNewSandbox([]byte(`{"templateID":"base"}`), true, time.Minute); req.timeout != time.Minute {
		t.Fatalf("clamped default %s", req.timeout)
	}
	if _, aerr := decodeNewSandbox([]byte(`{"templateID":"base","timeout":61}`), true, time.Minute); aerr == nil || aerr.status != http.StatusBadRequest {
		t.Fatalf("timeout beyond the maximum: %v", aerr)
	}
	many := map[string]string{}
	for i := range maxMetadataEntries + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	b, _ := json.Marshal(map[string]any{"templateID": "base", "metadata": many})
	if _, aerr := decodeNewSandbox(b, true, max); aerr == nil || !strings.Contains(aerr.msg, "at most") {
		t.Fatalf("too much metadata: %v", aerr)
	}
}

func TestParseMetadataQuery(t *testing.T) {
	// What the SDKs send for {"a b": "c&d=e", "plain": "x"}: each key and value percent-encoded,
	// then the pairs joined as a query string.
	md := url.Values{}
	md.Set(url.PathEscape("a b"), url.PathEscape("c&d=e"))
	md.Set("plain", "x")
	got, aerr := parseMetadataQuery(md.Encode())
	if aerr != nil {
		t.Fatal(aerr)
	}
	if len(got) != 2 || got["a b"] != "c&d=e" || got["plain"] != "x" {
		t.Fatalf("%v", got)
	}
	if _, aerr := parseMetadataQuery("a=%zz"); aerr == nil {
		t.Fatal("malformed escape accepted")
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := cursor{started: time.Now().UnixNano(), id: "abc123"}
	back, err := parseCursor(c.String())
	if err != nil || back != c {
		t.Fatalf("%+v %v", back, err)
	}
	for _, bad := range []string{"", "!!!", "bm90LWEtY3Vyc29y", strings.Repeat("A", 500)} {
		if _, err := parseCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func TestHostRE(t *testing.T) {
	for host, want := range map[string]string{
		"49983-abc123.example.com":          "abc123",
		"49983-abc123-6532622b.example.com": "abc123",
		"49983-abc123.example.com:443":      "abc123",
		"127.0.0.1:3000":                    "",
		"localhost":                         "",
		"49983-ABC.example.com":             "",
		"api.example.com":                   "",
	} {
		m := hostRE.FindStringSubmatch(host)
		got := ""
		if m != nil {
			got = m[2]
		}
		if got != want {
			t.Errorf("%s: %q, want %q", host, got, want)
		}
	}
}

// FuzzNewSandbox feeds arbitrary bodies to the create decoder: it must never panic, and whatever it
// accepts must respect its bounds.
func FuzzNewSandbox(f *testing.F) {
	for _, s := range []string{
		`{"templateID":"base","timeout":300,"secure":true,"allow_internet_access":true}`,
		`{"templateID":"code-interpreter-v1","metadata":{"a":"b"},"envVars":{"X":"1"},"timeout":120}`,
		`{"templateID":"base","autoPause":false,"autoResume":{"enabled":true},"network":{"allowOut":["1.1.1.1"]}}`,
		`{"templateID":"","timeout":-1}`, `{"templateID":"base","envVars":{"A=B":"c"}}`, `[]`, `null`, `{`, ``,
		`{"templateID":"base","timeout":2147483647}`, `{"templateID":"base"}{"templateID":"x"}`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, v2 bool) {
		max := 24 * time.Hour
		req, aerr := decodeNewSandbox(body, v2, max)
		if aerr != nil {
			if aerr.status != http.StatusBadRequest || aerr.msg == "" || len(aerr.msg) > 1024 {
				t.Fatalf("error %d %q", aerr.status, aerr.msg)
			}
			return
		}
		if req.templateID == "" || !templateRE.MatchString(req.templateID) || len(req.templateID) > maxTemplateID {
			t.Fatalf("accepted template %q", req.templateID)
		}
		if req.timeout < 0 || req.timeout > max {
			t.Fatalf("accepted timeout %s", req.timeout)
		}
		if len(req.metadata) > maxMetadataEntries || len(req.env) > maxEnvVars {
			t.Fatalf("accepted %d metadata, %d env", len(req.metadata), len(req.env))
		}
		for k, v := range req.env {
			if !envKeyRE.MatchString(k) || strings.ContainsRune(v, 0) {
				t.Fatalf("accepted env %q=%q", k, v)
			}
		}
	})
}

// TestDecodeNetwork: E2B's egress request maps onto the local modes with E2B's meaning
// (allow_internet_access false = deny everything; allowOut wins over denyOut).
func TestDecodeNetwork(t *testing.T) {
	no, yes := false, true
	for _, tc := range []struct {
		name     string
		internet *bool
		body     string
		want     string
		errPart  string
	}{
		{"default", nil, ``, "internet", ""},
		{"internet true", &yes, ``, "internet", ""},
		{"internet false", &no, ``, "none", ""},
		{"deny all", nil, `{"denyOut":["0.0.0.0/0"]}`, "none", ""},
		{"allow-list", nil, `{"allowOut":["allowed.test","*.wild.test","203.0.113.7","198.51.100.0/24"],"denyOut":["0.0.0.0/0"]}`, "allow:allowed.test,*.wild.test,203.0.113.7/32,198.51.100.0/24", ""},
		{"allow-list without internet", &no, `{"allowOut":["allowed.test"]}`, "allow:allowed.test", ""},
		{"allowOut alone allows everything", &yes, `{"allowOut":["allowed.test"]}`, "internet", ""},
		{"allow all traffic", &no, `{"allowOut":["0.0.0.0/0"]}`, "internet", ""},
		{"partial deny", nil, `{"denyOut":["10.0.0.0/8"]}`, "", "only 0.0.0.0/0"},
		{"bad entry", &no, `{"allowOut":["not a domain"]}`, "", "allowOut"},
		{"comma smuggling", &no, `{"allowOut":["a.test,b.test"]}`, "", "allowOut entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nc *e2bapi.NetworkConfig
			if tc.body != "" {
				nc = &e2bapi.NetworkConfig{}
				if err := json.Unmarshal([]byte(tc.body), nc); err != nil {
					t.Fatal(err)
				}
			}
			got, aerr := decodeNetwork(tc.internet, nc)
			if tc.errPart != "" {
				if aerr == nil || aerr.status != http.StatusBadRequest || !strings.Contains(aerr.msg, tc.errPart) {
					t.Fatalf("got %q, %v; want a 400 mentioning %q", got, aerr, tc.errPart)
				}
				return
			}
			if aerr != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, aerr, tc.want)
			}
		})
	}
}
