// Package filesapi implements envd's plain-HTTP file endpoints: GET /files (download, optionally
// gzip-encoded) and POST /files (multipart or octet-stream upload, optionally gzip-encoded). Bodies
// are streamed between the connection and the file: memory use does not grow with file size.
package filesapi

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
)

// copyBufSize is the buffer of one transfer: large enough for disk throughput, pooled so many
// concurrent transfers stay cheap.
const copyBufSize = 256 << 10

// Config configures the handler.
type Config struct {
	Root  *fsroot.Root
	Users *users.DB
	// MaxUploadBytes bounds one POST /files request body, and separately what a gzip-encoded body
	// may decompress to.
	MaxUploadBytes int64
	// AccessToken, when set, is what signed URLs are signed with. The server checks X-Access-Token
	// before the handler; requests without it reach the handler only with a signature.
	AccessToken string
	Logger      *slog.Logger
}

// Handler serves /files. The request's user comes from users.FromContext.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	chown bool
	bufs  sync.Pool
}

// New returns the handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 64 << 30
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("service", "files"), chown: unix.Geteuid() == 0}
	h.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, ok := users.FromContext(r.Context())
	if !ok {
		jsonError(w, http.StatusUnauthorized, "request has no user")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if err := h.authorize(r, "read", time.Now()); err != nil {
			jsonError(w, http.StatusUnauthorized, err.Error())
			return
		}
		h.download(w, r, u)
	case http.MethodPost:
		if err := h.authorize(r, "write", time.Now()); err != nil {
			jsonError(w, http.StatusUnauthorized, err.Error())
			return
		}
		h.upload(w, r, u)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		jsonError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on /files")
	}
}

// abs resolves a client path against the user's home.
func abs(p string, u users.User) (string, error) {
	home := u.Home
	if home == "" {
		home = "/"
	}
	return fsroot.Abs(p, home)
}

// jsonError answers envd's error shape: {"code": <status>, "message": "..."}.
func jsonError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Del("Content-Disposition")
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, msg})
}

// statusOf maps a filesystem error to an HTTP status.
func statusOf(err error) int {
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ENOENT:
			return http.StatusNotFound
		case unix.ENOSPC, unix.EDQUOT:
			return http.StatusInsufficientStorage
		case unix.ENOTDIR, unix.EISDIR, unix.EINVAL, unix.ENAMETOOLONG, unix.ELOOP, unix.EEXIST, unix.ENXIO:
			return http.StatusBadRequest
		case unix.EACCES, unix.EPERM, unix.EROFS:
			return http.StatusForbidden
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, fsroot.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
