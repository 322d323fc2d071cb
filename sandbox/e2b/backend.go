// Package e2b is the remote sandbox backend: sandboxes in E2B's or Novita's cloud (or any server
// speaking their API, such as `agent serve`). The control plane is E2B's REST API (create, connect,
// get, list, set timeout, pause, metrics, kill; X-API-KEY auth; errors by numeric code; 429s
// retried after Retry-After); the data plane is envd, spoken by sandbox/envdclient with the
// flavor's routing headers and each sandbox's access token.
//
// The runner selects it with `--sandbox e2b|novita` or a spec's `sandbox:` (runner/remotebackend
// adapts it):
//
//	cfg, err := e2b.ConfigFromEnv(e2b.FlavorNovita, os.Getenv)
//	cfg.MaxSandboxes = 20
//	b, err := e2b.New(cfg)
//	defer b.Close()
//	sbx, err := b.Create(ctx, e2b.CreateOptions{Template: "base", Timeout: 10 * time.Minute})
//	defer sbx.Kill(context.WithoutCancel(ctx))
package e2b

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/envdclient"
)

// Backend creates and manages remote sandboxes. It is safe for concurrent use.
type Backend struct {
	cfg   Config
	api   *apiClient
	envd  http.RoundTripper
	slots chan struct{} // nil: no cap
	// v1 is set once a server proved it has no POST /v2/sandboxes.
	v1 atomic.Bool

	mu     sync.Mutex
	live   map[*Sandbox]struct{} // created here and neither killed nor closed
	closed bool
}

// New checks cfg and returns a Backend. It does not contact the provider.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("%s sandboxes: %w", cfg.Flavor, err)
	}
	if cfg.SandboxURL != "" {
		if u, _ := url.Parse(cfg.SandboxURL); u.Path != "" {
			return nil, fmt.Errorf("%s sandboxes: sandbox URL %q must not have a path", cfg.Flavor, cfg.SandboxURL)
		}
	}
	b := &Backend{cfg: cfg, live: map[*Sandbox]struct{}{}}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: newTransport()}
	}
	b.api = &apiClient{cfg: cfg, http: hc}
	b.envd = cfg.EnvdTransport
	if b.envd == nil {
		b.envd = newTransport()
	}
	if cfg.MaxSandboxes > 0 {
		b.slots = make(chan struct{}, cfg.MaxSandboxes)
	}
	return b, nil
}

// newTransport is an HTTP transport for the internet: proxies from the environment, bounded
// connection setup, HTTP/2 over TLS; compression is left to the envd client.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    32,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    15 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     true,
	}
}

// Flavor is the backend's provider flavor.
func (b *Backend) Flavor() Flavor { return b.cfg.Flavor }

// Endpoints returns the control plane's URL and the sandbox URL override ("" when sandboxes are
// reached at their own hosts), and whether the control plane is the flavor's default one.
func (b *Backend) Endpoints() (apiURL, sandboxURL string, isDefault bool) {
	return b.cfg.APIURL, b.cfg.SandboxURL, b.cfg.APIURL == "https://api."+b.cfg.Domain && b.cfg.SandboxURL == ""
}

// CreateOptions describe a sandbox to create.
type CreateOptions struct {
	// Template is passed through to the provider (default Config.DefaultTemplate).
	Template string
	// Timeout is the sandbox's lifetime (default Config.DefaultTimeout); the provider kills it then.
	// It is sent in whole seconds (at least 1).
	Timeout time.Duration
	// Metadata is attached to the sandbox (List filters on it).
	Metadata map[string]string
	// Env is the sandbox-wide environment of every command.
	Env map[string]string
	// AllowInternetAccess asks for (or refuses) outbound internet; nil leaves the provider's default.
	AllowInternetAccess *bool
	// Network is the egress configuration (allowOut, denyOut); nil: none sent.
	Network *e2bapi.NetworkConfig
}

// Create creates a sandbox and returns it once the provider answered (E2B sandboxes are ready
// then). It waits for a slot when MaxSandboxes are held. The result is a *Sandbox.
func (b *Backend) Create(ctx context.Context, o CreateOptions) (sandbox.Sandbox, error) {
	s, err := b.CreateSandbox(ctx, o)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// CreateSandbox is Create returning the concrete type.
func (b *Backend) CreateSandbox(ctx context.Context, o CreateOptions) (*Sandbox, error) {
	if err := b.acquire(ctx); err != nil {
		return nil, err
	}
	s, err := b.create(ctx, o)
	if err != nil {
		b.release()
		return nil, err
	}
	s.slot = b.slots != nil
	b.mu.Lock()
	closed := b.closed
	if !closed {
		b.live[s] = struct{}{}
	}
	b.mu.Unlock()
	if closed {
		_ = s.Kill(context.WithoutCancel(ctx))
		return nil, errors.New("remote backend is closed")
	}
	return s, nil
}

func (b *Backend) acquire(ctx context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errors.New("remote backend is closed")
	}
	if b.slots == nil {
		return nil
	}
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for one of %d sandbox slots: %w", cap(b.slots), ctx.Err())
	}
}

func (b *Backend) release() {
	if b.slots != nil {
		<-b.slots
	}
}

func (b *Backend) create(ctx context.Context, o CreateOptions) (*Sandbox, error) {
	tpl := o.Template
	if tpl == "" {
		tpl = b.cfg.DefaultTemplate
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = b.cfg.DefaultTimeout
	}
	secs := int32(min(max((timeout+time.Second-1)/time.Second, 1), 1<<31-1))
	body := e2bapi.NewSandbox{
		TemplateID: tpl, Timeout: &secs, AllowInternetAccess: o.AllowInternetAccess, Network: o.Network,
		Metadata: maps.Clone(o.Metadata), EnvVars: maps.Clone(o.Env),
	}
	if body.Metadata == nil {
		body.Metadata = map[string]string{}
	}
	if body.EnvVars == nil {
		body.EnvVars = map[string]string{}
	}
	var resp e2bapi.Sandbox
	rq := request{
		op: "create sandbox", method: http.MethodPost, body: &body, out: &resp, timeout: b.cfg.CreateTimeout,
		// Servers that honour it return the same sandbox for a repeated key.
		headers: map[string]string{e2bapi.HeaderIdempotencyKey: newIdempotencyKey()},
	}
	v1 := func() {
		yes := true
		body.Secure = &yes
		rq.path = "/sandboxes"
	}
	switch {
	case b.cfg.CreateAPI == CreateAPIV1, b.cfg.CreateAPI == CreateAPIAuto && (b.cfg.Flavor == FlavorNovita || b.v1.Load()):
		v1()
		_, err := b.api.do(ctx, rq)
		if err != nil {
			return nil, err
		}
	default:
		rq.path = "/v2/sandboxes"
		_, err := b.api.do(ctx, rq)
		if err != nil && b.cfg.CreateAPI == CreateAPIAuto && isMissingRoute(err) {
			// A server without the v2 endpoint; a 404 may also mean an unknown template, which v1
			// reports again, so the switch is kept only when v1 succeeds.
			v1()
			if _, err1 := b.api.do(ctx, rq); err1 != nil {
				return nil, err1
			}
			b.v1.Store(true)
			b.cfg.Logger.Info("the control plane has no POST /v2/sandboxes; using POST /sandboxes", "api", b.cfg.APIURL)
			err = nil
		}
		if err != nil {
			return nil, err
		}
	}
	s, err := b.open(resp)
	if err != nil {
		// A sandbox we cannot use is not left running until its timeout.
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.RequestTimeout)
		defer cancel()
		if id, perr := checkedID(resp.SandboxID); perr == nil {
			_ = b.Kill(kctx, id)
		}
		return nil, err
	}
	return s, nil
}

// isMissingRoute tells whether err is a 404 or 405 answer (a route the server may lack).
func isMissingRoute(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed)
}

func newIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "agent-" + hex.EncodeToString(b)
}

// remoteIDRE is what a provider's sandbox id may look like (it becomes part of a host name and a
// URL path): E2B's ^[a-z0-9]+$, optionally with a "-<clientID>" suffix.
var remoteIDRE = regexp.MustCompile(`^[a-z0-9]{1,64}(-[a-z0-9]{1,32})?$`)

func checkedID(id string) (string, error) {
	if !remoteIDRE.MatchString(id) {
		return "", fmt.Errorf("the provider answered a malformed sandbox id %q", clean(id))
	}
	return id, nil
}

// open builds the Sandbox of a create or connect answer.
func (b *Backend) open(resp e2bapi.Sandbox) (*Sandbox, error) {
	id, err := checkedID(resp.SandboxID)
	if err != nil {
		return nil, err
	}
	ver, ok := parseVersion(resp.EnvdVersion)
	if !ok {
		return nil, fmt.Errorf("sandbox %s: the provider answered a malformed envd version %q", id, clean(resp.EnvdVersion))
	}
	if lessVersion(ver, [3]int{0, 1, 0}) {
		return nil, fmt.Errorf("sandbox %s runs envd %s, older than 0.1.0: the template must be rebuilt: %w", id, resp.EnvdVersion, sandbox.ErrInvalid)
	}
	base := b.cfg.SandboxURL
	if base == "" {
		domain := b.cfg.Domain
		if resp.Domain != nil && *resp.Domain != "" {
			if !hostnameRE.MatchString(*resp.Domain) {
				return nil, fmt.Errorf("sandbox %s: the provider answered a malformed domain %q", id, clean(*resp.Domain))
			}
			domain = *resp.Domain
		}
		base = fmt.Sprintf("https://%d-%s.%s", e2bapi.EnvdPort, id, domain)
	}
	ecfg := envdclient.Config{
		BaseURL: base, Transport: b.envd, AccessToken: resp.EnvdAccessToken, SandboxID: id,
		Port: e2bapi.EnvdPort, HeaderPrefix: b.cfg.headerPrefix(), UserAgent: b.cfg.UserAgent,
		// Over the internet compressed downloads pay off; envd compresses only when asked.
		CompressDownloads: b.cfg.SandboxURL == "", Logger: b.cfg.Logger,
	}
	// envd before 0.4.0 has no default user: the SDKs then name "user" on every call.
	if lessVersion(ver, [3]int{0, 4, 0}) {
		ecfg.DefaultUser = "user"
	}
	if b.cfg.Envd != nil {
		b.cfg.Envd(&ecfg)
	}
	ec, err := envdclient.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, err)
	}
	s := &Sandbox{b: b, id: id, envd: ec, envdVersion: resp.EnvdVersion, templateID: resp.TemplateID}
	s.Files, s.Commands = ec, ec
	return s, nil
}

// parseVersion reads "X.Y.Z" (a pre-release or build suffix is ignored).
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) < 1 || len(parts) > 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func lessVersion(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Connect attaches to an existing sandbox (resuming it if it is paused) and moves its end to at
// least timeout from now (0: the provider's default, 300 s). It takes no slot of MaxSandboxes.
func (b *Backend) Connect(ctx context.Context, id string, timeout time.Duration) (*Sandbox, error) {
	resp, _, err := b.connect(ctx, id, timeout)
	if err != nil {
		return nil, err
	}
	return b.open(resp)
}

// Resume resumes a paused sandbox (the cloud's connect) with timeout to live from now (0: the
// provider's default, 300 s); resumed is false when it was running (its end then only moves
// later). Files and processes continue where they were.
func (b *Backend) Resume(ctx context.Context, id string, timeout time.Duration) (resumed bool, err error) {
	_, status, err := b.connect(ctx, id, timeout)
	return status == http.StatusCreated, err
}

// connect is POST /sandboxes/{id}/connect (v2 where the server has it); it returns the answer and
// its status (201: resumed, 200: was running).
func (b *Backend) connect(ctx context.Context, id string, timeout time.Duration) (e2bapi.Sandbox, int, error) {
	if _, err := checkedID(id); err != nil {
		return e2bapi.Sandbox{}, 0, fmt.Errorf("connect: %w: %w", err, sandbox.ErrInvalid)
	}
	var body e2bapi.ConnectSandbox
	if timeout > 0 {
		secs := int32(min(max((timeout+time.Second-1)/time.Second, 1), 1<<31-1))
		body.Timeout = &secs
	} else {
		secs := int32(DefaultTimeout / time.Second)
		body.Timeout = &secs
	}
	var resp e2bapi.Sandbox
	rq := request{op: "connect to sandbox " + id, method: http.MethodPost, body: &body, out: &resp, idempotent: true}
	p := "/sandboxes/" + url.PathEscape(id) + "/connect"
	useV2 := b.cfg.CreateAPI == CreateAPIV2 || (b.cfg.CreateAPI == CreateAPIAuto && b.cfg.Flavor == FlavorE2B && !b.v1.Load())
	var (
		res *response
		err error
	)
	if useV2 {
		rq.path = "/v2" + p
		res, err = b.api.do(ctx, rq)
		if err != nil && b.cfg.CreateAPI == CreateAPIAuto && isMissingRoute(err) {
			rq.path = p
			res, err = b.api.do(ctx, rq)
		}
	} else {
		rq.path = p
		res, err = b.api.do(ctx, rq)
	}
	if err != nil {
		return resp, 0, err
	}
	return resp, res.status, nil
}

// Info describes a remote sandbox.
type Info struct {
	ID          string
	TemplateID  string
	Alias       string
	Metadata    map[string]string
	StartedAt   time.Time
	EndAt       time.Time
	State       string
	CPUs        int
	MemoryMB    int
	DiskMB      int
	EnvdVersion string
	// AllowInternetAccess and Network are the egress in force, as the provider reports it (Get
	// only; nil when it does not say).
	AllowInternetAccess *bool
	Network             *e2bapi.NetworkConfig
}

// Get describes a sandbox; sandbox.ErrNotFound when it does not exist (any more).
func (b *Backend) Get(ctx context.Context, id string) (*Info, error) {
	if _, err := checkedID(id); err != nil {
		return nil, fmt.Errorf("get: %w: %w", err, sandbox.ErrInvalid)
	}
	var d e2bapi.SandboxDetail
	if _, err := b.api.do(ctx, request{op: "get sandbox " + id, method: http.MethodGet, path: "/sandboxes/" + url.PathEscape(id), out: &d, idempotent: true}); err != nil {
		return nil, err
	}
	return &Info{
		ID: d.SandboxID, TemplateID: d.TemplateID, Alias: d.Alias, Metadata: d.Metadata, StartedAt: d.StartedAt,
		EndAt: d.EndAt, State: d.State, CPUs: int(d.CPUCount), MemoryMB: int(d.MemoryMB), DiskMB: int(d.DiskSizeMB),
		EnvdVersion: d.EnvdVersion, AllowInternetAccess: d.AllowInternetAccess, Network: d.Network,
	}, nil
}

// ListOptions filter a list.
type ListOptions struct {
	// Metadata selects sandboxes carrying all these pairs.
	Metadata map[string]string
	// States selects states ("running", "paused"); empty means both.
	States []string
	// PageSize is the page size asked for (default the server's, 100 on E2B).
	PageSize int
	// Max bounds the sandboxes returned (default 10000).
	Max int
}

// List lists sandboxes (GET /v2/sandboxes), following X-Next-Token pages.
func (b *Backend) List(ctx context.Context, o ListOptions) ([]Info, error) {
	if o.Max <= 0 {
		o.Max = 10000
	}
	q := url.Values{}
	if len(o.Metadata) > 0 {
		// The SDKs' encoding: a query string of percent-encoded keys and values.
		md := url.Values{}
		for k, v := range o.Metadata {
			md.Set(url.PathEscape(k), url.PathEscape(v))
		}
		q.Set("metadata", md.Encode())
	}
	if len(o.States) > 0 {
		q.Set("state", strings.Join(o.States, ","))
	}
	if o.PageSize > 0 {
		q.Set("limit", strconv.Itoa(o.PageSize))
	}
	var out []Info
	seen := map[string]bool{}
	for page := 0; ; page++ {
		var items []e2bapi.ListedSandbox
		res, err := b.api.do(ctx, request{op: "list sandboxes", method: http.MethodGet, path: "/v2/sandboxes", query: q, out: &items, idempotent: true})
		if err != nil {
			return out, err
		}
		for _, it := range items {
			if seen[it.SandboxID] {
				continue
			}
			seen[it.SandboxID] = true
			out = append(out, Info{
				ID: it.SandboxID, TemplateID: it.TemplateID, Alias: it.Alias, Metadata: it.Metadata, StartedAt: it.StartedAt,
				EndAt: it.EndAt, State: it.State, CPUs: int(it.CPUCount), MemoryMB: int(it.MemoryMB), DiskMB: int(it.DiskSizeMB),
				EnvdVersion: it.EnvdVersion,
			})
			if len(out) >= o.Max {
				return out, nil
			}
		}
		next := res.header.Get(e2bapi.HeaderNextToken)
		if next == "" || len(items) == 0 {
			return out, nil
		}
		if next == q.Get("nextToken") {
			return out, fmt.Errorf("list sandboxes: the server repeated the page token %q", clean(next))
		}
		q.Set("nextToken", next)
	}
}

// Kill destroys a sandbox. A sandbox that does not exist (any more) is not an error.
func (b *Backend) Kill(ctx context.Context, id string) error {
	if _, err := checkedID(id); err != nil {
		return fmt.Errorf("kill: %w: %w", err, sandbox.ErrInvalid)
	}
	_, err := b.api.do(ctx, request{op: "kill sandbox " + id, method: http.MethodDelete, path: "/sandboxes/" + url.PathEscape(id), idempotent: true})
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil
	}
	return err
}

// SetTimeout makes the sandbox end timeout from now (earlier or later than before).
func (b *Backend) SetTimeout(ctx context.Context, id string, timeout time.Duration) error {
	if _, err := checkedID(id); err != nil {
		return fmt.Errorf("set timeout: %w: %w", err, sandbox.ErrInvalid)
	}
	secs := int32(min(max((timeout+time.Second-1)/time.Second, 0), 1<<31-1))
	_, err := b.api.do(ctx, request{op: "set timeout of sandbox " + id, method: http.MethodPost,
		path: "/sandboxes/" + url.PathEscape(id) + "/timeout", body: e2bapi.TimeoutRequest{Timeout: secs}, idempotent: true})
	return err
}

// Pause pauses a sandbox, memory included (POST /sandboxes/{id}/pause); Resume or Connect resumes
// it. A sandbox already paused (409) is not an error. Providers without pause answer
// errors.ErrUnsupported.
func (b *Backend) Pause(ctx context.Context, id string) error {
	if _, err := checkedID(id); err != nil {
		return fmt.Errorf("pause: %w: %w", err, sandbox.ErrInvalid)
	}
	yes := true
	_, err := b.api.do(ctx, request{op: "pause sandbox " + id, method: http.MethodPost,
		path: "/sandboxes/" + url.PathEscape(id) + "/pause", body: e2bapi.PauseRequest{Memory: &yes}, idempotent: true})
	if errors.Is(err, sandbox.ErrExists) { // 409: already paused
		return nil
	}
	return err
}

// Metric is one sample of a sandbox's resource use.
type Metric struct {
	Time       time.Time
	CPUs       int
	CPUUsedPct float64
	MemUsed    int64
	MemTotal   int64
	MemCache   int64
	DiskUsed   int64
	DiskTotal  int64
}

// Metrics returns the samples between start and end (zero times: the provider's defaults).
func (b *Backend) Metrics(ctx context.Context, id string, start, end time.Time) ([]Metric, error) {
	if _, err := checkedID(id); err != nil {
		return nil, fmt.Errorf("metrics: %w: %w", err, sandbox.ErrInvalid)
	}
	q := url.Values{}
	if !start.IsZero() {
		q.Set("start", strconv.FormatInt(start.Unix(), 10))
	}
	if !end.IsZero() {
		q.Set("end", strconv.FormatInt(end.Unix(), 10))
	}
	var ms []e2bapi.SandboxMetric
	if _, err := b.api.do(ctx, request{op: "metrics of sandbox " + id, method: http.MethodGet,
		path: "/sandboxes/" + url.PathEscape(id) + "/metrics", query: q, out: &ms, idempotent: true}); err != nil {
		return nil, err
	}
	out := make([]Metric, 0, len(ms))
	for _, m := range ms {
		out = append(out, Metric{Time: m.Timestamp, CPUs: int(m.CPUCount), CPUUsedPct: float64(m.CPUUsedPct), MemUsed: m.MemUsed,
			MemTotal: m.MemTotal, MemCache: m.MemCache, DiskUsed: m.DiskUsed, DiskTotal: m.DiskTotal})
	}
	return out, nil
}

// Close kills the sandboxes created through this Backend that were neither killed nor closed
// (bounded by two minutes) and refuses new ones.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	all := make([]*Sandbox, 0, len(b.live))
	for s := range b.live {
		all = append(all, s)
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errc := make(chan error, len(all))
	for _, s := range all {
		go func() { errc <- s.Kill(ctx) }()
	}
	var errs []error
	for range all {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// forget drops s from the live set and frees its slot (once).
func (b *Backend) forget(s *Sandbox) {
	b.mu.Lock()
	_, ok := b.live[s]
	delete(b.live, s)
	b.mu.Unlock()
	if ok && s.slot {
		b.release()
	}
}
