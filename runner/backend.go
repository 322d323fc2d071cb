package runner

import (
	"context"
	"time"

	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
)

// Backend creates the sandboxes tasks run in. The local backend (runner/localbackend) is the
// default; remote backends (E2B, Novita) implement the same interface. A Backend must be safe for
// concurrent use.
type Backend interface {
	// Name names the backend in results ("local", "e2b", "novita").
	Name() string
	// Create creates a sandbox for one task and returns once it answers. The runner kills it when
	// the task ends. A request the backend cannot honour (a network mode it lacks) is an error.
	Create(ctx context.Context, req SandboxRequest) (Sandbox, error)
}

// SandboxRequest describes the sandbox a task needs, from its spec.
type SandboxRequest struct {
	// Task and Epoch name the job the sandbox is for (labels, logs).
	Task  string
	Epoch int
	// Template names the root filesystem ("host", "debian", or a backend's own template id).
	Template string
	// Runtime is the OCI runtime the spec asks for (runc, crun, runsc); empty: the backend's
	// default. Only the local backend can choose one; the others refuse a request that names one.
	Runtime string
	// Env is the sandbox-wide environment of every command.
	Env map[string]string
	// Network is the task's network policy.
	Network spec.Network
	// MemoryBytes, CPUs, Pids and DiskBytes are the task's resource limits (zero: the backend's
	// default).
	MemoryBytes int64
	CPUs        float64
	Pids        int
	DiskBytes   int64
	// Lifetime bounds the sandbox's life: the backend destroys it afterwards even if the runner
	// died without killing it.
	Lifetime time.Duration
}

// Sandbox is a sandbox made for one task: the data plane (files and commands through envd) plus
// what the runner records about it.
type Sandbox interface {
	sandbox.Sandbox
	// Info describes the sandbox for the results.
	Info() SandboxInfo
	// Failure tells why the sandbox failed or is failing, as a typed error matching sandbox.ErrOOM,
	// sandbox.ErrPidsLimit, sandbox.ErrNoSpace, sandbox.ErrExpired or sandbox.ErrGone; nil when
	// nothing is known to be wrong. Backends that cannot tell return nil.
	Failure() error
}

// SandboxInfo describes a created sandbox.
type SandboxInfo struct {
	ID string `json:"id"`
	// Backend is the backend's name.
	Backend string `json:"backend"`
	// Template and TemplateDigest identify the root filesystem.
	Template       string `json:"template"`
	TemplateDigest string `json:"template_digest,omitempty"`
	// Runtime is the OCI runtime (local backend) or empty.
	Runtime string `json:"runtime,omitempty"`
	// Network is the network mode in force.
	Network string `json:"network"`
	// DefaultUser runs commands; Workdir is the user's home.
	DefaultUser string `json:"default_user,omitempty"`
	// CreateMS is how long creating the sandbox took.
	CreateMS int64 `json:"create_ms"`
	// Pooled tells that the sandbox was claimed from a warm pool (local --pool), made before the
	// task asked for it.
	Pooled bool `json:"pooled,omitempty"`
}

// NetworkReporter is implemented by sandboxes whose backend can tell what the sandbox's network
// policy refused (the local backend); the runner asks once, after the checks and artifacts and
// before it kills the sandbox, and records the answer in the task's result.
type NetworkReporter interface {
	NetworkResult(ctx context.Context) (*NetworkResult, error)
}
