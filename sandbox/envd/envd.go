// Package envd is the in-sandbox daemon: it speaks the E2B envd protocol (Connect RPC services
// filesystem.Filesystem and process.Process, plain HTTP /files and /health) over a world root. In a
// local sandbox it runs as PID 1 with the root "/"; standalone (tests, SDK suites) it serves a host
// directory as its world. The same protocol is spoken by E2B/Novita cloud sandboxes, so one client
// (sandbox/envdclient) serves every backend.
package envd

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox/envd/internal/filesapi"
	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/fsservice"
	"github.com/agentrun/agent/sandbox/envd/internal/procservice"
	"github.com/agentrun/agent/sandbox/envd/internal/rpcmeta"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

// Version is the envd protocol version this daemon reports. The SDKs gate features on it
// (../shared reference §8); every feature gated at or below it is implemented: octet-stream and
// gzip uploads (0.5.7), X-Metadata-* file metadata (0.6.2), include_entry in watch events (0.6.3),
// allow_network_mounts in watch requests (0.6.4).
const Version = "0.6.4"

// Defaults for Config's bounds.
const (
	DefaultMaxRequestBytes   = 16 << 20
	DefaultMaxUploadBytes    = 64 << 30
	DefaultMaxBufferedOutput = 4 << 20
)

// Config configures a Server.
type Config struct {
	// Root is the host directory served as the world ("/" inside a sandbox).
	Root string
	// AccessToken, when set, must accompany every request as X-Access-Token.
	AccessToken string
	// DefaultUser runs requests that name no user; empty means "user" when the world has it, else root.
	DefaultUser string
	// Env is the sandbox-wide environment for every process.
	Env map[string]string
	// MaxRequestBytes bounds an RPC message; MaxUploadBytes bounds one POST /files body.
	MaxRequestBytes int64
	MaxUploadBytes  int64
	// MaxBufferedOutput bounds output held per process while no client reads it.
	MaxBufferedOutput int
	Logger            *slog.Logger
}

// Server is a running envd.
type Server struct {
	cfg   Config
	root  *fsroot.Root
	users *users.DB
	fs    *fsservice.Service
	proc  *procservice.Service
	files *filesapi.Handler
	log   *slog.Logger

	mu  sync.RWMutex
	env map[string]string
}

// New opens the world root and builds the services.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		cfg.Root = "/"
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.MaxBufferedOutput <= 0 {
		cfg.MaxBufferedOutput = DefaultMaxBufferedOutput
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root, err := fsroot.Open(cfg.Root)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, root: root, users: users.NewDB(root), log: cfg.Logger, env: map[string]string{}}
	for k, v := range cfg.Env {
		s.env[k] = v
	}
	if s.cfg.DefaultUser == "" {
		s.cfg.DefaultUser = "root"
		if _, err := s.users.Lookup("user"); err == nil {
			s.cfg.DefaultUser = "user"
		}
	}
	s.fs = fsservice.New(fsservice.Config{Root: root, Users: s.users, Logger: cfg.Logger})
	s.proc = procservice.New(procservice.Config{
		Root: root, Users: s.users, Env: s.Env, MaxBufferedOutput: cfg.MaxBufferedOutput, Logger: cfg.Logger,
	})
	s.files = filesapi.New(filesapi.Config{
		Root: root, Users: s.users, MaxUploadBytes: cfg.MaxUploadBytes, AccessToken: cfg.AccessToken, Logger: cfg.Logger,
	})
	return s, nil
}

// Env returns a copy of the sandbox-wide environment.
func (s *Server) Env() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.env))
	for k, v := range s.env {
		out[k] = v
	}
	return out
}

// DefaultUser is the user requests run as when they name none.
func (s *Server) DefaultUser() string { return s.cfg.DefaultUser }

// Handler returns the HTTP handler for every envd endpoint.
func (s *Server) Handler() http.Handler {
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(int(s.cfg.MaxRequestBytes))}
	mux := http.NewServeMux()
	mux.Handle(filesystemconnect.NewFilesystemHandler(s.fs, opts...))
	mux.Handle(processconnect.NewProcessHandler(s.proc, opts...))
	mux.Handle("/files", s.files)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /envs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Env())
	})
	return s.withVersion(s.withAuth(s.withUser(mux)))
}

func (s *Server) withVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Envd-Version", Version)
		next.ServeHTTP(w, r)
	})
}

// withAuth checks X-Access-Token in constant time. /health stays open: it reveals nothing and the SDKs
// probe it to tell a live sandbox from a dead one. GET and POST /files without a token but with a
// signature (the SDKs' signed download/upload URLs) pass on to filesapi, which checks the signature.
func (s *Server) withAuth(next http.Handler) http.Handler {
	if s.cfg.AccessToken == "" {
		return next
	}
	want := []byte(s.cfg.AccessToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			next.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/files" && (r.Method == http.MethodGet || r.Method == http.MethodPost) &&
			r.Header.Get("X-Access-Token") == "" && r.URL.Query().Has("signature") {
			next.ServeHTTP(w, r)
			return
		}
		got := []byte(r.Header.Get("X-Access-Token"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			writeError(w, r, http.StatusUnauthorized, connect.CodeUnauthenticated, "invalid access token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withUser resolves the user a request runs as: Basic auth user name for RPCs, ?username= for /files,
// else the default user. An unknown user is refused. Process.Start's Connect-Timeout-Ms is moved into
// the context as the process lifetime.
func (s *Server) withUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := s.cfg.DefaultUser
		if q := r.URL.Query().Get("username"); q != "" {
			name = q
		}
		if h := r.Header.Get("Authorization"); h != "" {
			n, ok := basicUser(h)
			if !ok {
				writeError(w, r, http.StatusUnauthorized, connect.CodeUnauthenticated, "malformed Authorization header")
				return
			}
			if n != "" {
				name = n
			}
		}
		u, err := s.users.Lookup(name)
		if err != nil {
			writeError(w, r, http.StatusUnauthorized, connect.CodeUnauthenticated, fmt.Sprintf("invalid user: %v", err))
			return
		}
		ctx := users.WithUser(r.Context(), u)
		if r.URL.Path == processconnect.ProcessStartProcedure {
			if v := r.Header.Get("Connect-Timeout-Ms"); v != "" {
				ms, err := strconv.ParseInt(v, 10, 64)
				if err != nil || ms < 0 || len(v) > 10 {
					writeError(w, r, http.StatusBadRequest, connect.CodeInvalidArgument, "malformed Connect-Timeout-Ms")
					return
				}
				ctx = rpcmeta.WithProcessTimeout(ctx, time.Duration(ms)*time.Millisecond)
				r.Header.Del("Connect-Timeout-Ms")
			}
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func basicUser(h string) (string, bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", false
	}
	name, _, _ := strings.Cut(string(raw), ":")
	return name, true
}

// writeError answers in the shape the caller expects: a Connect error for RPC paths, envd's
// {"code","message"} JSON elsewhere.
func writeError(w http.ResponseWriter, r *http.Request, status int, code connect.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if strings.HasPrefix(r.URL.Path, "/filesystem.") || strings.HasPrefix(r.URL.Path, "/process.") {
		if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/connect+") {
			// Streaming RPC: the error travels in an end-stream envelope on a 200 response.
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(http.StatusOK)
			body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code.String(), "message": msg}})
			frame := make([]byte, 5+len(body))
			frame[0] = 0x02
			frame[1], frame[2], frame[3], frame[4] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
			copy(frame[5:], body)
			_, _ = w.Write(frame)
			return
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": code.String(), "message": msg})
		return
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "message": msg})
}

// Serve serves HTTP/1.1 and h2c on ln until ctx ends, then shuts down gracefully for up to 5 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s.Handler(),
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	// Open streams end only when their processes and watches do: end them at shutdown so clients
	// get their end events now instead of after the grace period.
	srv.RegisterOnShutdown(func() { _ = s.proc.Close(); _ = s.fs.Close() })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	return err
}

// Close stops watchers, kills the processes envd started and releases the root.
func (s *Server) Close() error {
	return errors.Join(s.fs.Close(), s.proc.Close(), s.root.Close())
}
