// Package fsservice implements the envd filesystem.Filesystem Connect service over a world root.
package fsservice

import (
	"log/slog"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
)

// Config configures the service.
type Config struct {
	Root   *fsroot.Root
	Users  *users.DB
	Logger *slog.Logger
}

// Service implements filesystemconnect.FilesystemHandler. Each handler runs as the user that
// users.FromContext returns (the server always sets one).
type Service struct {
	filesystemconnect.UnimplementedFilesystemHandler
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Close stops every watcher.
func (s *Service) Close() error { return nil }
