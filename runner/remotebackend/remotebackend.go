// Package remotebackend plugs the remote sandbox backend (sandbox/e2b: E2B's or Novita's cloud, or
// any server with their API such as `agent serve`) into the runner: `agent run --backend e2b` and
// `--backend novita`, configured by the flavor's environment variables as its SDKs are
// (E2B_API_KEY, E2B_DOMAIN, E2B_API_URL, E2B_SANDBOX_URL; NOVITA_… likewise).
package remotebackend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b"
)

// Backend creates remote sandboxes for the runner.
type Backend struct {
	b *e2b.Backend
}

var _ runner.Backend = (*Backend)(nil)

// Open returns a backend of cfg's flavor (see e2b.New).
func Open(cfg e2b.Config) (*Backend, error) {
	b, err := e2b.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Backend{b: b}, nil
}

// FromEnv opens the flavor's backend configured by its environment variables (getenv is usually
// os.Getenv), holding at most maxSandboxes sandboxes at once (0: no cap of our own; the provider's
// 429s are still waited out).
func FromEnv(flavor e2b.Flavor, getenv func(string) string, maxSandboxes int) (*Backend, error) {
	cfg, err := e2b.ConfigFromEnv(flavor, getenv)
	if err != nil {
		return nil, err
	}
	cfg.MaxSandboxes = maxSandboxes
	return Open(cfg)
}

// Remote returns the underlying backend.
func (b *Backend) Remote() *e2b.Backend { return b.b }

// Close kills every sandbox this backend created that is still held.
func (b *Backend) Close() error { return b.b.Close() }

// Name implements runner.Backend: the flavor ("e2b" or "novita").
func (b *Backend) Name() string { return string(b.b.Flavor()) }

// Create implements runner.Backend. The spec's template is passed through, except the local
// default "host", which remote providers do not have: it becomes their default ("base"). Resource
// limits come with the provider's template (E2B sets them per template, not per sandbox); the
// lifetime becomes the sandbox's timeout. Network: none and internet map to the provider's
// internet switch; an allow-list is refused (not mapped yet).
func (b *Backend) Create(ctx context.Context, req runner.SandboxRequest) (runner.Sandbox, error) {
	var internet *bool
	switch req.Network.Mode {
	case "", spec.NetworkNone:
		no := false
		internet = &no
	case spec.NetworkInternet:
		yes := true
		internet = &yes
	default:
		return nil, fmt.Errorf("the %s backend has no network mode %q yet: use none or internet", b.Name(), req.Network.String())
	}
	tpl := req.Template
	if tpl == "" || tpl == spec.DefaultTemplate {
		tpl = e2b.DefaultTemplate
	}
	started := time.Now()
	s, err := b.b.CreateSandbox(ctx, e2b.CreateOptions{
		Template: tpl, Timeout: req.Lifetime, Env: req.Env, AllowInternetAccess: internet,
		Metadata: map[string]string{"agent-task": req.Task, "agent-epoch": strconv.Itoa(req.Epoch)},
	})
	if err != nil {
		return nil, err
	}
	network := string(spec.NetworkNone)
	if *internet {
		network = string(spec.NetworkInternet)
	}
	return &Sandbox{Sandbox: s, info: runner.SandboxInfo{
		ID: s.ID(), Backend: b.Name(), Template: tpl, Network: network, CreateMS: time.Since(started).Milliseconds(),
	}}, nil
}

// Sandbox is a remote sandbox as the runner sees it.
type Sandbox struct {
	*e2b.Sandbox
	info runner.SandboxInfo
}

// Info implements runner.Sandbox.
func (s *Sandbox) Info() runner.SandboxInfo { return s.info }

// Failure implements runner.Sandbox. A remote provider does not say why a sandbox failed; a sandbox
// whose envd no longer answers (killed, expired) is reported gone.
func (s *Sandbox) Failure() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Health(ctx); errors.Is(err, sandbox.ErrGone) {
		return fmt.Errorf("sandbox %s: %w", s.ID(), err)
	}
	return nil
}
