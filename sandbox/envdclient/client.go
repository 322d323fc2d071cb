// Package envdclient is the Go client of the E2B envd protocol: the data plane of every sandbox backend
// (local sandboxes running `agent envd`, E2B and Novita cloud sandboxes). It implements sandbox.Files
// and sandbox.Commands with the Connect RPC services filesystem.Filesystem and process.Process (JSON
// codec over HTTP/1.1, as the official SDKs send them) and the plain-HTTP endpoints /files and /health.
//
// Errors carry the operation and wrap the sandbox package's typed errors (sandbox.ErrNotFound,
// sandbox.ErrGone, …) so callers test them with errors.Is. When a request fails at the transport level
// the client probes GET /health once to tell a dead sandbox (sandbox.ErrGone) from a transient error.
package envdclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

// Defaults for Config's zero values.
const (
	// DefaultPort is envd's port, sent as the routing port header.
	DefaultPort = 49983
	// DefaultHeaderPrefix names the E2B routing headers (E2b-Sandbox-Id, E2b-Sandbox-Port).
	DefaultHeaderPrefix = "E2b"
	// NovitaHeaderPrefix names the Novita routing headers (Novita-Sandbox-Id, Novita-Sandbox-Port).
	NovitaHeaderPrefix = "Novita"
	// DefaultRequestTimeout bounds a unary call and the wait for a stream's first event.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultKeepaliveInterval is the keepalive interval asked of envd on streams.
	DefaultKeepaliveInterval = 15 * time.Second
	// DefaultHealthTimeout bounds a GET /health probe.
	DefaultHealthTimeout = 5 * time.Second
	// DefaultMaxMessageBytes bounds one RPC message received from envd.
	DefaultMaxMessageBytes = 32 << 20
)

// Config configures a Client. Only BaseURL is required.
type Config struct {
	// BaseURL is envd's address, http(s)://host:port, without a path. With Dial the host part only
	// names the server in requests.
	BaseURL string
	// HTTPClient carries every request. When nil, one is built from Transport, or from Dial, or with
	// a plain TCP dialer. Its Timeout should be zero: streams live long and the client bounds its
	// waits itself.
	HTTPClient *http.Client
	// Transport carries every request when HTTPClient is nil.
	Transport http.RoundTripper
	// Dial opens a connection to envd when HTTPClient and Transport are nil, e.g. to a unix socket in
	// a host-private directory. Every connection is dialled with it, whatever BaseURL's host.
	Dial func(ctx context.Context) (net.Conn, error)
	// AccessToken is sent as X-Access-Token on every request when set.
	AccessToken string
	// SandboxID and Port are sent as routing headers (<HeaderPrefix>-Sandbox-Id/-Port) when
	// SandboxID is set, so a proxy in front of many sandboxes can route the request.
	SandboxID string
	Port      int
	// HeaderPrefix is "E2b" (default) or "Novita".
	HeaderPrefix string
	// DefaultUser runs requests that name no user: Authorization: Basic base64("user:") on RPCs,
	// ?username= on /files. Empty leaves the choice to envd (its default user).
	DefaultUser string
	// UserAgent is sent as User-Agent; default "agent-envdclient".
	UserAgent string
	// RequestTimeout bounds each unary call and the wait for a stream's first event; default 60 s.
	RequestTimeout time.Duration
	// KeepaliveInterval is asked of envd on streams (Keepalive-Ping-Interval, whole seconds, at
	// least 1 s); default 15 s.
	KeepaliveInterval time.Duration
	// StreamIdleTimeout ends a stream (and a transfer) that stays silent this long; default four
	// keepalive intervals plus 5 s.
	StreamIdleTimeout time.Duration
	// HealthTimeout bounds the GET /health probe made after a transport error; default 5 s.
	HealthTimeout time.Duration
	// MaxMessageBytes bounds one RPC message received; default 32 MiB.
	MaxMessageBytes int
	// CompressDownloads asks envd for gzip-compressed downloads (worth it over the internet, not on
	// loopback).
	CompressDownloads bool
	// Logger receives debug logs; default slog.Default().
	Logger *slog.Logger
}

// Client talks to one envd. It is safe for concurrent use. It implements sandbox.Files and
// sandbox.Commands; a backend embeds it into its sandbox.Sandbox.
type Client struct {
	cfg  Config
	base *url.URL
	http *http.Client
	fs   filesystemconnect.FilesystemClient
	proc processconnect.ProcessClient
	log  *slog.Logger
	// user overrides cfg.DefaultUser for clients made with WithUser.
	user string
}

var (
	_ sandbox.Files    = (*Client)(nil)
	_ sandbox.Commands = (*Client)(nil)
)

// New returns a client of the envd at cfg.BaseURL. It does not contact envd.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("envd base URL %q: %w", cfg.BaseURL, err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("envd base URL %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	if p := strings.TrimRight(base.Path, "/"); p != "" || base.RawQuery != "" {
		return nil, fmt.Errorf("envd base URL %q: must not have a path or query", cfg.BaseURL)
	}
	base.Path = ""
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.HeaderPrefix == "" {
		cfg.HeaderPrefix = DefaultHeaderPrefix
	}
	if strings.ContainsAny(cfg.HeaderPrefix, " :\r\n") {
		return nil, fmt.Errorf("header prefix %q is not a header name", cfg.HeaderPrefix)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "agent-envdclient"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = DefaultKeepaliveInterval
	}
	cfg.KeepaliveInterval = max(cfg.KeepaliveInterval.Round(time.Second), time.Second)
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = 4*cfg.KeepaliveInterval + 5*time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, s := range []string{cfg.AccessToken, cfg.SandboxID, cfg.DefaultUser} {
		if strings.ContainsAny(s, "\r\n") {
			return nil, errors.New("access token, sandbox id and user must not contain line breaks")
		}
	}
	hc := cfg.HTTPClient
	if hc == nil {
		rt := cfg.Transport
		if rt == nil {
			rt = newTransport(cfg.Dial)
		}
		hc = &http.Client{Transport: rt}
	}
	c := &Client{cfg: cfg, base: base, http: hc, log: cfg.Logger}
	opts := []connect.ClientOption{
		connect.WithProtoJSON(),
		connect.WithReadMaxBytes(cfg.MaxMessageBytes),
		connect.WithInterceptors(headerInterceptor{c}),
	}
	c.fs = filesystemconnect.NewFilesystemClient(hc, base.String(), opts...)
	c.proc = processconnect.NewProcessClient(hc, base.String(), opts...)
	return c, nil
}

// newTransport is an HTTP/1.1 transport (HTTP/2 only over TLS), with our own gzip handling.
func newTransport(dial func(context.Context) (net.Conn, error)) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
	}
	if dial != nil {
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	}
	return t
}

// WithUser returns a client that runs every request as user (files and commands); it shares the
// connections of c. An empty user means envd's default user.
func (c *Client) WithUser(user string) *Client {
	cp := *c
	cp.user = user
	if user == "" {
		cp.cfg.DefaultUser = ""
	}
	return &cp
}

// Close releases idle connections. Streams and processes still open keep running.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// effectiveUser is the user a request runs as when it names none.
func (c *Client) effectiveUser() string {
	if c.user != "" {
		return c.user
	}
	return c.cfg.DefaultUser
}

// basicAuth is the Authorization header envd reads the user from.
func basicAuth(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"))
}

// setCommonHeaders sets the headers every request carries.
func (c *Client) setCommonHeaders(h http.Header) {
	if c.cfg.AccessToken != "" {
		h.Set("X-Access-Token", c.cfg.AccessToken)
	}
	if c.cfg.SandboxID != "" {
		h.Set(c.cfg.HeaderPrefix+"-Sandbox-Id", c.cfg.SandboxID)
		h.Set(c.cfg.HeaderPrefix+"-Sandbox-Port", strconv.Itoa(c.cfg.Port))
	}
	h.Set("User-Agent", c.cfg.UserAgent)
}

// setUser sets the Authorization header of an RPC for user, or the client's default user.
func (c *Client) setUser(h http.Header, user string) {
	if user == "" {
		user = c.effectiveUser()
	}
	if user != "" {
		h.Set("Authorization", basicAuth(user))
	}
}

func (c *Client) keepaliveHeader() string {
	return strconv.Itoa(int(c.cfg.KeepaliveInterval / time.Second))
}

// headerInterceptor adds the common headers to every RPC.
type headerInterceptor struct{ c *Client }

func (i headerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		i.c.setCommonHeaders(req.Header())
		return next(ctx, req)
	}
}

func (i headerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		i.c.setCommonHeaders(conn.RequestHeader())
		return conn
	}
}

func (i headerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// newRequest builds a plain-HTTP request to envd with the common headers.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	u.Path = path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	c.setCommonHeaders(req.Header)
	return req, nil
}

// unaryCtx bounds a unary call by the request timeout.
func (c *Client) unaryCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// Health reports whether envd answers GET /health with a 2xx status. A refused connection or a 502
// (what E2B's proxy answers for a dead sandbox) is sandbox.ErrGone.
func (c *Client) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HealthTimeout)
	defer cancel()
	if err := c.health(ctx); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	return nil
}

func (c *Client) health(ctx context.Context) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/health", nil, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return &kindError{kind: sandbox.ErrTimeout, err: err}
		}
		return &kindError{kind: sandbox.ErrGone, err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return httpStatusError(resp.StatusCode, nil)
}

// maxEnvsResponse bounds the answer of GET /envs.
const maxEnvsResponse = 4 << 20

// Envs returns the sandbox-wide environment envd gives every process (GET /envs).
func (c *Client) Envs(ctx context.Context) (map[string]string, error) {
	const op = "read sandbox environment"
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req, err := c.newRequest(uctx, http.MethodGet, "/envs", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.responseError(op, resp)
	}
	env := map[string]string{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxEnvsResponse)).Decode(&env); err != nil {
		return nil, fmt.Errorf("%s: unexpected answer from envd: %w", op, err)
	}
	return env, nil
}
