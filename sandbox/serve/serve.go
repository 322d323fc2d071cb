// Package serve exposes sandboxes (local ones, through a Provider) behind the E2B API on one port:
// the control-plane REST API (create, connect, list, get, set timeout, pause and resume, kill,
// metrics) and the envd data plane, proxied to each sandbox's envd. Sandboxes get network none
// unless Config.AllowInternet lets a create have the internet access or allow-list it asks for. The official E2B and Novita SDKs work with it
// unmodified when E2B_API_URL/E2B_SANDBOX_URL (NOVITA_API_URL/NOVITA_SANDBOX_URL) name it, and so
// does this project's remote backend (sandbox/e2b).
//
// Data-plane requests are routed to a sandbox by the E2b-Sandbox-Id / Novita-Sandbox-Id header (with
// the *-Sandbox-Port header), else by the X-Access-Token value (every sandbox has its own random
// token, which its envd requires), else by a "{port}-{sandboxID}.{domain}" Host. Everything else is
// the control plane, authenticated by X-API-KEY.
package serve

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox/envd"
)

// Defaults for Config's zero values.
const (
	DefaultMaxSandboxes  = 64
	DefaultMaxLifetime   = 24 * time.Hour
	DefaultMaxPaused     = 24 * time.Hour
	DefaultCreateTimeout = 10 * time.Minute
	DefaultMaxBodyBytes  = 1 << 20
	DefaultTemplate      = "host"
	// DefaultTimeoutV1 is a create's lifetime when a POST /sandboxes body names none (the spec's
	// default); DefaultTimeoutV2 the same for POST /v2/sandboxes and for connect.
	DefaultTimeoutV1 = 15 * time.Second
	DefaultTimeoutV2 = 300 * time.Second
	// MaxHeaderBytes bounds the request headers the server reads.
	MaxHeaderBytes = 64 << 10
)

// EnvdVersion is the envd version every sandbox reports: the version of this project's envd.
const EnvdVersion = envd.Version

// Config configures a Server.
type Config struct {
	// Provider creates the sandboxes.
	Provider Provider
	// APIKeys are the keys accepted as X-API-KEY. At least one is required.
	APIKeys []string
	// Domain, when set, is returned as each sandbox's domain and restricts Host routing to
	// "{port}-{id}.Domain". Leave it empty when clients use a sandbox URL override.
	Domain string
	// DefaultTemplate serves the templates E2B's SDKs ask for by default ("base",
	// "code-interpreter-v1") unless TemplateAliases maps them; default "host".
	DefaultTemplate string
	// TemplateAliases maps E2B template names to provider templates.
	TemplateAliases map[string]string
	// MaxSandboxes bounds the sandboxes alive (and being created) at once; a create beyond it is
	// answered 429 with Retry-After, as E2B does at a team's concurrency limit.
	MaxSandboxes int
	// MaxLifetime bounds the time a sandbox runs (time paused excluded): timeouts beyond it are
	// refused (create) or clamped (set timeout, connect).
	MaxLifetime time.Duration
	// MaxPaused bounds the time a sandbox stays paused (its memory stays allocated): it is killed
	// then. Paused sandboxes count against MaxSandboxes.
	MaxPaused time.Duration
	// AllowInternet lets a create that asks for internet access (allow_internet_access, the
	// default of the SDKs) or an egress allow-list (network.allowOut) have it. Without it every
	// sandbox gets network none, and reports allowInternetAccess false.
	AllowInternet bool
	// CreateTimeout bounds one create (a template build included).
	CreateTimeout time.Duration
	// MaxBodyBytes bounds a control-plane request body.
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Server serves the E2B API for the sandboxes of one Provider. It owns the sandboxes it creates:
// they end at their timeouts, when killed through the API, or when the Server closes.
type Server struct {
	cfg  Config
	keys [][32]byte
	log  *slog.Logger

	mu       sync.Mutex
	byID     map[string]*entry
	byToken  map[[32]byte]*entry
	creating int
	gone     *goneList
	closed   bool
	ending   sync.WaitGroup // kills in flight
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Provider == nil {
		return nil, errors.New("serve: no sandbox provider")
	}
	if len(cfg.APIKeys) == 0 {
		return nil, errors.New("serve: at least one API key is required")
	}
	if cfg.DefaultTemplate == "" {
		cfg.DefaultTemplate = DefaultTemplate
	}
	if cfg.MaxSandboxes <= 0 {
		cfg.MaxSandboxes = DefaultMaxSandboxes
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxPaused <= 0 {
		cfg.MaxPaused = DefaultMaxPaused
	}
	if cfg.CreateTimeout <= 0 {
		cfg.CreateTimeout = DefaultCreateTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, byID: map[string]*entry{}, byToken: map[[32]byte]*entry{}, gone: newGoneList(4096)}
	for _, k := range cfg.APIKeys {
		if k == "" {
			return nil, errors.New("serve: empty API key")
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	return s, nil
}

// GenerateAPIKey returns a fresh key in E2B's format ("e2b_" and 40 hex digits), which the SDKs'
// client-side key validation accepts.
func GenerateAPIKey() string { return "e2b_" + randomHex(20) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// checkKey tells whether key is one of the configured API keys, in time independent of the keys.
func (s *Server) checkKey(key string) bool {
	h := sha256.Sum256([]byte(key))
	ok := 0
	for i := range s.keys {
		ok |= subtle.ConstantTimeCompare(h[:], s.keys[i][:])
	}
	return ok == 1
}

// Handler returns the HTTP handler of the control plane and the data plane.
func (s *Server) Handler() http.Handler {
	control := s.controlHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isControlPath(r.URL.Path) {
			if t, ok := s.route(r); ok {
				s.serveData(w, r, t)
				return
			}
		}
		control.ServeHTTP(w, r)
	})
}

// Serve serves HTTP/1.1 on ln until ctx ends, then shuts down gracefully for up to 5 s. It does not
// close the Server: call Close to end its sandboxes.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return srv.Close()
	}
	return nil
}

// Close refuses new sandboxes and kills every sandbox the Server created, waiting for the kills
// (bounded by ctx).
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	all := make([]*entry, 0, len(s.byID))
	for _, e := range s.byID {
		all = append(all, e)
	}
	s.mu.Unlock()
	errc := make(chan error, len(all))
	for _, e := range all {
		go func() { errc <- s.end(ctx, e, "the server shut down") }()
	}
	var errs []error
	for range all {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { s.ending.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("waiting for sandboxes to end: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// Count returns the number of live sandboxes.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
