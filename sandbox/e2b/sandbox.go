package e2b

import (
	"context"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envdclient"
)

// Sandbox is a remote sandbox. Files and commands go to its envd; lifecycle calls to the control
// plane.
type Sandbox struct {
	sandbox.Files
	sandbox.Commands

	b           *Backend
	id          string
	envd        *envdclient.Client
	envdVersion string
	templateID  string
	slot        bool // holds one of the Backend's MaxSandboxes slots
}

var _ sandbox.Sandbox = (*Sandbox)(nil)

// ID implements sandbox.Sandbox.
func (s *Sandbox) ID() string { return s.id }

// EnvdVersion is the envd version the provider reported.
func (s *Sandbox) EnvdVersion() string { return s.envdVersion }

// TemplateID is the template the provider reported.
func (s *Sandbox) TemplateID() string { return s.templateID }

// Envd is the sandbox's envd client (for calls beyond sandbox.Sandbox, e.g. PollWatch or Health).
func (s *Sandbox) Envd() *envdclient.Client { return s.envd }

// Close implements sandbox.Sandbox: it releases connections and the Backend's slot and leaves the
// sandbox running until its timeout.
func (s *Sandbox) Close() error {
	s.b.forget(s)
	return s.envd.Close()
}

// Kill implements sandbox.Sandbox: it destroys the sandbox. A gone sandbox is not an error.
func (s *Sandbox) Kill(ctx context.Context) error {
	err := s.b.Kill(ctx, s.id)
	if err == nil {
		s.b.forget(s)
		_ = s.envd.Close()
	}
	return err
}

// SetTimeout makes the sandbox end timeout from now.
func (s *Sandbox) SetTimeout(ctx context.Context, timeout time.Duration) error {
	return s.b.SetTimeout(ctx, s.id, timeout)
}

// Info describes the sandbox.
func (s *Sandbox) Info(ctx context.Context) (*Info, error) { return s.b.Get(ctx, s.id) }

// Pause pauses the sandbox in the cloud, memory and processes kept; Resume resumes it. While it is
// paused its timeout clock stops and its data plane answers as for a sandbox not running.
func (s *Sandbox) Pause(ctx context.Context) error { return s.b.Pause(ctx, s.id) }

// Resume resumes the paused sandbox with timeout to live (0: the provider's default, 300 s);
// resuming a running sandbox is not an error.
func (s *Sandbox) Resume(ctx context.Context, timeout time.Duration) error {
	_, err := s.b.Resume(ctx, s.id, timeout)
	return err
}

// Metrics returns the sandbox's resource samples between start and end.
func (s *Sandbox) Metrics(ctx context.Context, start, end time.Time) ([]Metric, error) {
	return s.b.Metrics(ctx, s.id, start, end)
}

// Health reports whether the sandbox's envd answers (sandbox.ErrGone when the sandbox is gone).
func (s *Sandbox) Health(ctx context.Context) error { return s.envd.Health(ctx) }
