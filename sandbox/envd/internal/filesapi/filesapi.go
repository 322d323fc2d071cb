// Package filesapi implements envd's plain-HTTP file endpoints: GET and POST /files.
package filesapi

import (
	"log/slog"
	"net/http"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
)

// Config configures the handler.
type Config struct {
	Root  *fsroot.Root
	Users *users.DB
	// MaxUploadBytes bounds one POST /files request body.
	MaxUploadBytes int64
	Logger         *slog.Logger
}

// Handler serves /files. The request's user comes from users.FromContext.
type Handler struct {
	cfg Config
}

// New returns the handler.
func New(cfg Config) *Handler { return &Handler{cfg: cfg} }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, `{"code":501,"message":"not implemented"}`, http.StatusNotImplemented)
}
