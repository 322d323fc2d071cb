package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/template"
)

// Provider creates the sandboxes a Server exposes.
type Provider interface {
	// Create creates a sandbox and returns once its envd answers.
	Create(ctx context.Context, spec Spec) (Instance, error)
	// HasTemplate tells whether name is a template the provider knows.
	HasTemplate(name string) bool
}

// Spec describes a sandbox to create.
type Spec struct {
	// Template is the provider's template name (aliases already resolved).
	Template string
	// Env is the sandbox-wide environment of every command.
	Env map[string]string
	// Lifetime is a backstop: the provider destroys the sandbox after it even if the Server does
	// not (the Server ends sandboxes at their own, shorter, timeouts). Its clock stops while the
	// sandbox is paused.
	Lifetime time.Duration
	// Network is the network mode in netpolicy form ("none", "internet", "allow:…").
	Network string
}

// Instance is one sandbox of a Provider.
type Instance interface {
	ID() string
	// AccessToken is the random token the sandbox's envd requires as X-Access-Token, chosen by
	// the provider (a warm pool's sandboxes have theirs before they are asked for).
	AccessToken() string
	// Dial connects to the sandbox's envd.
	Dial(ctx context.Context) (net.Conn, error)
	// Kill destroys the sandbox; killing a gone sandbox is not an error.
	Kill(ctx context.Context) error
	// Resources are the sandbox's limits.
	Resources() Resources
	// Usage samples what the sandbox uses now.
	Usage() (Usage, error)
	// Failure tells why the sandbox failed (wrapping sandbox.ErrGone when it is gone), or nil.
	Failure() error
	// Pause freezes every process of the sandbox, memory kept, and stops its lifetime clock;
	// Resume thaws it. Neither is an error when the sandbox is already in that state.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Resources are a sandbox's limits.
type Resources struct {
	CPUs        float64
	MemoryBytes int64
	DiskBytes   int64
}

// Usage is a sample of what a sandbox uses.
type Usage struct {
	// CPU is the CPU time used since the sandbox started.
	CPU         time.Duration
	MemoryBytes int64
	DiskUsed    int64
	DiskTotal   int64
}

// Local is the Provider of local sandboxes.
type Local struct {
	Backend *local.Backend
	// Runtime and Limits apply to every sandbox (zero values: the backend's defaults); the
	// lifetime comes from the Spec.
	Runtime string
	Limits  local.Limits
}

// HasTemplate implements Provider.
func (l *Local) HasTemplate(name string) bool {
	for _, k := range l.Backend.Templates().Known() {
		if k == name {
			return true
		}
	}
	return false
}

// Create implements Provider.
func (l *Local) Create(ctx context.Context, spec Spec) (Instance, error) {
	lim := l.Limits
	lim.Lifetime = spec.Lifetime
	s, err := l.Backend.Create(ctx, local.Options{
		Template: spec.Template, Runtime: l.Runtime, Limits: lim, Env: spec.Env, GenerateAccessToken: true,
		Network: spec.Network,
	})
	if err != nil {
		if errors.Is(err, template.ErrUnknown) {
			return nil, fmt.Errorf("%w: %w", err, sandbox.ErrNotFound)
		}
		if errors.Is(err, local.ErrNetworkUnavailable) {
			return nil, fmt.Errorf("%w: %w", err, errors.ErrUnsupported)
		}
		return nil, err
	}
	return &localInstance{s: s, dial: s.ConnectInfo().Dial}, nil
}

type localInstance struct {
	s    *local.Sandbox
	dial func(ctx context.Context) (net.Conn, error)
}

func (i *localInstance) ID() string                                 { return i.s.ID() }
func (i *localInstance) AccessToken() string                        { return i.s.AccessToken() }
func (i *localInstance) Dial(ctx context.Context) (net.Conn, error) { return i.dial(ctx) }
func (i *localInstance) Kill(ctx context.Context) error             { return i.s.Kill(ctx) }
func (i *localInstance) Failure() error                             { return i.s.Failure() }
func (i *localInstance) Pause(ctx context.Context) error            { return i.s.Pause(ctx) }
func (i *localInstance) Resume(ctx context.Context) error           { return i.s.Resume(ctx) }

func (i *localInstance) Resources() Resources {
	l := i.s.Record().Limits
	return Resources{CPUs: l.CPUs, MemoryBytes: l.MemoryBytes, DiskBytes: l.DiskBytes}
}

func (i *localInstance) Usage() (Usage, error) {
	st := i.s.Stats()
	u := Usage{CPU: st.CPUUsage, MemoryBytes: st.MemoryBytes}
	used, size, err := i.s.DiskUsage()
	if err != nil {
		return u, err
	}
	u.DiskUsed, u.DiskTotal = used, size
	return u, nil
}
