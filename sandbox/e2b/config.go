package e2b

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/agentrun/agent/sandbox/envdclient"
)

// Flavor is a provider speaking the E2B protocol, with its SDKs' conventions (environment
// variables, default domain, routing header names).
type Flavor string

// Flavors.
const (
	// FlavorE2B is E2B's cloud (E2B_API_KEY, E2B_DOMAIN, E2B_API_URL, E2B_SANDBOX_URL).
	FlavorE2B Flavor = "e2b"
	// FlavorNovita is Novita Agent Sandbox (NOVITA_API_KEY, NOVITA_DOMAIN, NOVITA_API_URL,
	// NOVITA_SANDBOX_URL), whose routing headers are Novita-Sandbox-Id/-Port.
	FlavorNovita Flavor = "novita"
)

// Default domains, as the SDKs have them.
const (
	DefaultE2BDomain    = "e2b.app"
	DefaultNovitaDomain = "us-phx-1.sandbox.novita.ai"
)

// Defaults for Config's zero values.
const (
	DefaultTemplate       = "base"
	DefaultTimeout        = 300 * time.Second
	DefaultRequestTimeout = 60 * time.Second
	DefaultCreateTimeout  = 5 * time.Minute
	DefaultMaxRetries     = 5
	DefaultMaxRetryWait   = 30 * time.Second
)

// Create API versions (Config.CreateAPI).
const (
	// CreateAPIAuto uses POST /v2/sandboxes for E2B (what its newest SDKs send) and falls back to
	// POST /sandboxes for good when a server answers 404/405 to v2 and accepts v1; Novita's API is
	// asked with POST /sandboxes, as its SDKs do.
	CreateAPIAuto = ""
	CreateAPIV1   = "v1"
	CreateAPIV2   = "v2"
)

// legacyNovitaDomains speak an older protocol (ids with a client suffix, other create bodies), as
// novita-sandbox 2.x lists them; they are refused.
var legacyNovitaDomains = []string{
	"sandbox.novita.ai", "us-01.sandbox.novita.ai", "us-ga-01.sandbox.novita.ai", "us-ga-1.sandbox.novita.ai",
	"sandbox-dev.novita.ai", "us-01.sandbox-dev.novita.ai", "us-ga-01.sandbox-dev.novita.ai", "us-ca-1.sandbox-dev.novita.ai",
}

// Config configures a Backend.
type Config struct {
	Flavor Flavor
	// APIKey is sent as X-API-KEY on every control-plane request.
	APIKey string
	// Domain builds the default API URL (https://api.{Domain}) and sandbox hosts
	// (https://{port}-{id}.{Domain}) unless the URLs below override them.
	Domain string
	// APIURL is the control plane's base URL (e.g. http://127.0.0.1:3000 for `agent serve`).
	APIURL string
	// SandboxURL, when set, is every sandbox's envd base URL; requests are routed by the
	// <prefix>-Sandbox-Id header (as with `agent serve` or E2B's sandbox.{domain} proxy).
	SandboxURL string
	// MaxSandboxes caps the sandboxes this Backend holds at once (0: no cap). Create waits for a
	// slot; a slot is freed by Kill or Close of the sandbox.
	MaxSandboxes int
	// DefaultTemplate is created when CreateOptions names none; default "base".
	DefaultTemplate string
	// DefaultTimeout is a sandbox's lifetime when CreateOptions names none; default 300 s.
	DefaultTimeout time.Duration
	// CreateAPI chooses the create endpoint: CreateAPIAuto (default), CreateAPIV1 or CreateAPIV2.
	CreateAPI string
	// RequestTimeout bounds one control-plane request; CreateTimeout one create request.
	RequestTimeout time.Duration
	CreateTimeout  time.Duration
	// MaxRetries bounds the retries of one request (429s, and 5xx or transport errors of requests
	// safe to repeat); MaxRetryWait bounds one wait, Retry-After included.
	MaxRetries   int
	MaxRetryWait time.Duration
	// HTTPClient carries control-plane requests; default: one honouring the proxy environment.
	HTTPClient *http.Client
	// EnvdTransport carries every sandbox's data plane; default: a shared HTTP transport.
	EnvdTransport http.RoundTripper
	// Envd adjusts each sandbox's envd client configuration (timeouts, user agent) before use.
	Envd func(*envdclient.Config)
	// UserAgent is sent on control-plane requests.
	UserAgent string
	Logger    *slog.Logger
}

// ConfigFromEnv reads the flavor's environment variables, as its SDKs do: <P>_API_KEY, <P>_DOMAIN,
// <P>_API_URL and <P>_SANDBOX_URL with P = E2B or NOVITA. getenv is usually os.Getenv.
func ConfigFromEnv(flavor Flavor, getenv func(string) string) (Config, error) {
	var prefix string
	switch flavor {
	case FlavorE2B:
		prefix = "E2B"
	case FlavorNovita:
		prefix = "NOVITA"
	default:
		return Config{}, fmt.Errorf("sandbox provider %q: want e2b or novita", flavor)
	}
	cfg := Config{
		Flavor:     flavor,
		APIKey:     strings.TrimSpace(getenv(prefix + "_API_KEY")),
		Domain:     strings.TrimSpace(getenv(prefix + "_DOMAIN")),
		APIURL:     strings.TrimSpace(getenv(prefix + "_API_URL")),
		SandboxURL: strings.TrimSpace(getenv(prefix + "_SANDBOX_URL")),
	}
	if cfg.APIKey == "" {
		return cfg, fmt.Errorf("%s sandboxes need an API key in %s_API_KEY", flavor, prefix)
	}
	return cfg, nil
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$`)

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	switch cfg.Flavor {
	case "":
		cfg.Flavor = FlavorE2B
	case FlavorE2B, FlavorNovita:
	default:
		return cfg, fmt.Errorf("sandbox provider %q: want e2b or novita", cfg.Flavor)
	}
	if cfg.APIKey == "" {
		return cfg, errors.New("an API key is required")
	}
	if strings.ContainsAny(cfg.APIKey, "\r\n") {
		return cfg, errors.New("the API key must not contain line breaks")
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultE2BDomain
		if cfg.Flavor == FlavorNovita {
			cfg.Domain = DefaultNovitaDomain
		}
	}
	if !hostnameRE.MatchString(cfg.Domain) {
		return cfg, fmt.Errorf("domain %q is not a host name", cfg.Domain)
	}
	if cfg.Flavor == FlavorNovita {
		for _, d := range legacyNovitaDomains {
			if strings.EqualFold(cfg.Domain, d) {
				return cfg, fmt.Errorf("domain %s is a legacy Novita domain with an older protocol; use %s (the SDK default) or a current domain", d, DefaultNovitaDomain)
			}
		}
	}
	if cfg.APIURL == "" {
		cfg.APIURL = "https://api." + cfg.Domain
	}
	var err error
	if cfg.APIURL, err = normalizeBaseURL(cfg.APIURL, "API URL"); err != nil {
		return cfg, err
	}
	if cfg.SandboxURL != "" {
		if cfg.SandboxURL, err = normalizeBaseURL(cfg.SandboxURL, "sandbox URL"); err != nil {
			return cfg, err
		}
	}
	switch cfg.CreateAPI {
	case CreateAPIAuto, CreateAPIV1, CreateAPIV2:
	default:
		return cfg, fmt.Errorf("create API %q: want v1, v2 or empty (auto)", cfg.CreateAPI)
	}
	if cfg.MaxSandboxes < 0 {
		return cfg, errors.New("max sandboxes must not be negative")
	}
	if cfg.DefaultTemplate == "" {
		cfg.DefaultTemplate = DefaultTemplate
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.CreateTimeout <= 0 {
		cfg.CreateTimeout = DefaultCreateTimeout
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.MaxRetryWait <= 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "agent-e2b-backend"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// normalizeBaseURL checks an http(s) base URL without query, adds https:// when there is no scheme
// (as novita-sandbox does) and drops a trailing slash.
func normalizeBaseURL(raw, what string) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", what, raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s %q: want http(s)://host[:port][/path]", what, raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// headerPrefix is the flavor's routing header prefix.
func (cfg Config) headerPrefix() string {
	if cfg.Flavor == FlavorNovita {
		return envdclient.NovitaHeaderPrefix
	}
	return envdclient.DefaultHeaderPrefix
}
