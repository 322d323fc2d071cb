// Package e2bapi holds the wire types of the E2B control-plane REST API (the subset the official
// SDKs use, which Novita's API shares), spoken by the remote backend (sandbox/e2b) as a client and
// by `agent serve` (sandbox/serve) as a server. Field names and required fields follow the E2B
// OpenAPI spec and what the SDKs parse: the Python SDKs reject a response missing a required field.
package e2bapi

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// ClientID is the constant E2B returns as a sandbox's clientID (deprecated by E2B). Old SDKs and
// Novita's legacy domains address sandboxes as "<sandboxID>-<clientID>".
const ClientID = "6532622b"

// EnvdPort is the port of envd inside a sandbox, sent as the routing port header and used in
// "{port}-{sandboxID}.{domain}" hosts.
const EnvdPort = 49983

// Header names.
const (
	// HeaderAPIKey carries the API key of control-plane requests.
	HeaderAPIKey = "X-API-KEY"
	// HeaderAccessToken carries a sandbox's envdAccessToken on data-plane requests.
	HeaderAccessToken = "X-Access-Token"
	// HeaderNextToken carries the pagination token of list responses.
	HeaderNextToken = "X-Next-Token"
	// HeaderIdempotencyKey makes a create retry-safe on servers that honour it.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Sandbox states.
const (
	StateRunning = "running"
	StatePaused  = "paused"
)

// Error is the body of every non-2xx control-plane response. Code is the HTTP status; the JS SDKs
// read it (not the status line) to tell 404 and 409 apart.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// NewSandbox is the body of POST /sandboxes and POST /v2/sandboxes (v2 has no `secure`: always
// secured). Fields the SDKs may send and that neither side acts on (mcp, iam, volumeMounts,
// secrets, nodeID) are not listed.
type NewSandbox struct {
	TemplateID string `json:"templateID"`
	// Timeout is the lifetime in seconds; absent means the server's default (15 for v1 by the spec,
	// 300 for v2).
	Timeout *int32 `json:"timeout,omitempty"`
	// AutoPause pauses the sandbox at its timeout instead of killing it.
	AutoPause *bool `json:"autoPause,omitempty"`
	// AutoPauseMemory (with AutoPause) keeps memory in the automatic pause (default true).
	AutoPauseMemory *bool `json:"autoPauseMemory,omitempty"`
	// AutoResume resumes a paused sandbox when traffic reaches it.
	AutoResume          *AutoResume       `json:"autoResume,omitempty"`
	Secure              *bool             `json:"secure,omitempty"`
	AllowInternetAccess *bool             `json:"allow_internet_access,omitempty"`
	Network             *NetworkConfig    `json:"network,omitempty"`
	Metadata            map[string]string `json:"metadata,omitempty"`
	EnvVars             map[string]string `json:"envVars,omitempty"`
}

// AutoResume is NewSandbox's autoResume ({"enabled": bool}).
type AutoResume struct {
	Enabled bool `json:"enabled"`
}

// NetworkConfig is NewSandbox's network (E2B's SandboxNetworkConfig): egress allowed and denied by
// CIDR, address or domain. Rules, an egress proxy and host masking are not listed: no side here
// acts on them.
type NetworkConfig struct {
	// AllowOut lists what the sandbox may reach even when DenyOut would refuse it.
	AllowOut []string `json:"allowOut,omitempty"`
	// DenyOut lists what the sandbox may not reach ("0.0.0.0/0": everything not allowed).
	DenyOut []string `json:"denyOut,omitempty"`
	// AllowPublicTraffic makes the sandbox's ports reachable without the traffic access token.
	AllowPublicTraffic *bool `json:"allowPublicTraffic,omitempty"`
}

// ConnectSandbox is the body of POST /sandboxes/{id}/connect (and /v2/…/connect, where timeout is
// optional, default 300) and of the legacy POST /sandboxes/{id}/resume.
type ConnectSandbox struct {
	Timeout *int32 `json:"timeout,omitempty"`
}

// PauseRequest is the body of POST /sandboxes/{id}/pause: memory (default true) keeps the
// processes' memory; false asks for a files-only snapshot.
type PauseRequest struct {
	Memory *bool `json:"memory,omitempty"`
}

// Lifecycle is SandboxDetail's lifecycle: what happens at the timeout and whether traffic resumes a
// paused sandbox.
type Lifecycle struct {
	AutoResume bool `json:"autoResume"`
	// OnTimeout is "kill" or "pause".
	OnTimeout string `json:"onTimeout"`
}

// TimeoutRequest is the body of POST /sandboxes/{id}/timeout.
type TimeoutRequest struct {
	Timeout int32 `json:"timeout"`
}

// RefreshRequest is the body of POST /sandboxes/{id}/refreshes (old SDKs' keep-alive).
type RefreshRequest struct {
	Duration int32 `json:"duration"`
}

// Sandbox is the response of create and connect.
type Sandbox struct {
	TemplateID         string  `json:"templateID"`
	SandboxID          string  `json:"sandboxID"`
	ClientID           string  `json:"clientID"`
	EnvdVersion        string  `json:"envdVersion"`
	EnvdAccessToken    string  `json:"envdAccessToken,omitempty"`
	TrafficAccessToken *string `json:"trafficAccessToken"`
	Domain             *string `json:"domain"`
	Alias              string  `json:"alias,omitempty"`
}

// SandboxDetail is the response of GET /sandboxes/{id}.
type SandboxDetail struct {
	TemplateID          string            `json:"templateID"`
	SandboxID           string            `json:"sandboxID"`
	ClientID            string            `json:"clientID"`
	Alias               string            `json:"alias,omitempty"`
	StartedAt           time.Time         `json:"startedAt"`
	EndAt               time.Time         `json:"endAt"`
	EnvdVersion         string            `json:"envdVersion"`
	EnvdAccessToken     string            `json:"envdAccessToken,omitempty"`
	AllowInternetAccess *bool             `json:"allowInternetAccess,omitempty"`
	Network             *NetworkConfig    `json:"network,omitempty"`
	Domain              *string           `json:"domain"`
	CPUCount            int32             `json:"cpuCount"`
	MemoryMB            int32             `json:"memoryMB"`
	DiskSizeMB          int32             `json:"diskSizeMB"`
	Metadata            map[string]string `json:"metadata,omitempty"`
	State               string            `json:"state"`
	Lifecycle           *Lifecycle        `json:"lifecycle,omitempty"`
}

// ListedSandbox is one element of GET /v2/sandboxes (and the deprecated GET /sandboxes).
type ListedSandbox struct {
	TemplateID  string            `json:"templateID"`
	SandboxID   string            `json:"sandboxID"`
	ClientID    string            `json:"clientID"`
	Alias       string            `json:"alias,omitempty"`
	StartedAt   time.Time         `json:"startedAt"`
	EndAt       time.Time         `json:"endAt"`
	CPUCount    int32             `json:"cpuCount"`
	MemoryMB    int32             `json:"memoryMB"`
	DiskSizeMB  int32             `json:"diskSizeMB"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	State       string            `json:"state"`
	EnvdVersion string            `json:"envdVersion"`
}

// SandboxMetric is one sample of GET /sandboxes/{id}/metrics. Every field is required.
type SandboxMetric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUCount      int32     `json:"cpuCount"`
	CPUUsedPct    float32   `json:"cpuUsedPct"`
	MemUsed       int64     `json:"memUsed"`
	MemTotal      int64     `json:"memTotal"`
	MemCache      int64     `json:"memCache"`
	DiskUsed      int64     `json:"diskUsed"`
	DiskTotal     int64     `json:"diskTotal"`
}

var idRE = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// ValidID tells whether id is a well-formed sandbox id (^[a-z0-9]+$, at most 64 characters).
func ValidID(id string) bool { return idRE.MatchString(id) }

// ShortID strips a "-<clientID>" suffix ("abc-6532622b" → "abc"), as E2B's API does for old SDKs and
// Novita's legacy domains. It does not validate.
func ShortID(id string) string {
	short, _, _ := strings.Cut(id, "-")
	return short
}

// ParseID returns the sandbox id named by s (with or without a "-<clientID>" suffix), or an error
// when s is not a well-formed id.
func ParseID(s string) (string, error) {
	short, suffix, hasSuffix := strings.Cut(s, "-")
	if !ValidID(short) || (hasSuffix && (suffix == "" || len(suffix) > 32 || !ValidID(suffix))) {
		return "", fmt.Errorf("malformed sandbox id %q", truncate(s, 80))
	}
	return short, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
