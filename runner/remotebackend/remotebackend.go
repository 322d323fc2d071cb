// Package remotebackend plugs the remote sandbox backend (sandbox/e2b: E2B's or Novita's cloud, or
// any server with their API such as `agent serve`) into the runner: `agent run --sandbox e2b` and
// `--sandbox novita` (or a spec's `sandbox:`), configured by the flavor's environment variables as
// its SDKs are (E2B_API_KEY, E2B_DOMAIN, E2B_API_URL, E2B_SANDBOX_URL; NOVITA_… likewise).
//
// Sandboxes can be kept (--keep): a kept sandbox is paused in the cloud (memory and processes
// kept, its timeout clock stopped) and left there; --resume continues a task in it by resuming it
// (the cloud's connect). A paused sandbox stays until it is killed, or until the provider's own
// limit for paused sandboxes reclaims it.
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
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
)

// Backend creates remote sandboxes for the runner.
type Backend struct {
	b *e2b.Backend
}

var (
	_ runner.Backend = (*Backend)(nil)
	_ runner.Reviver = (*Backend)(nil)
	_ runner.Keeper  = (*Sandbox)(nil)
)

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
// internet switch; an allow-list to network.allowOut (its domains, *.domains, addresses and CIDRs)
// with everything else denied, as E2B's API has it. A spec's OCI runtime cannot be chosen through
// the API (the provider picks its own): a request naming one is refused, not run under another.
func (b *Backend) Create(ctx context.Context, req runner.SandboxRequest) (runner.Sandbox, error) {
	if req.Runtime != "" {
		return nil, fmt.Errorf("the %s backend cannot choose the OCI runtime (the spec asks for runtime: %s): only local sandboxes can; remove runtime from the spec (or agent.yaml) or run it with sandbox: local", b.Name(), req.Runtime)
	}
	var (
		internet *bool
		nc       *e2bapi.NetworkConfig
	)
	no, yes := false, true
	switch req.Network.Mode {
	case "", spec.NetworkNone:
		internet = &no
	case spec.NetworkInternet:
		internet = &yes
	case spec.NetworkAllow:
		internet = &no
		nc = &e2bapi.NetworkConfig{AllowOut: append([]string(nil), req.Network.Domains...), DenyOut: []string{"0.0.0.0/0"}}
		for _, c := range req.Network.CIDRs {
			nc.AllowOut = append(nc.AllowOut, c.String())
		}
	default:
		return nil, fmt.Errorf("the %s backend has no network mode %q", b.Name(), req.Network.String())
	}
	tpl := req.Template
	if tpl == "" || tpl == spec.DefaultTemplate {
		tpl = e2b.DefaultTemplate
	}
	started := time.Now()
	s, err := b.b.CreateSandbox(ctx, e2b.CreateOptions{
		Template: tpl, Timeout: req.Lifetime, Env: req.Env, AllowInternetAccess: internet, Network: nc,
		Metadata: map[string]string{"agent-task": req.Task, "agent-epoch": strconv.Itoa(req.Epoch)},
	})
	if err != nil {
		return nil, err
	}
	if err := checkNetwork(ctx, s, req.Network.Mode); err != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = s.Kill(kctx)
		return nil, fmt.Errorf("the %s backend: %w", b.Name(), err)
	}
	network := req.Network.String()
	if req.Network.Mode == "" {
		network = string(spec.NetworkNone)
	}
	return &Sandbox{Sandbox: s, enter: b.enterCommand(s.ID()), info: runner.SandboxInfo{
		ID: s.ID(), Backend: b.Name(), Template: tpl, Network: network, CreateMS: time.Since(started).Milliseconds(),
	}}, nil
}

// checkNetwork makes sure a networked sandbox got the egress it asked for: a provider may grant
// less (agent serve without --allow-internet gives none), and a task must not run with less network
// than its spec says without knowing. A provider that does not report egress is trusted.
func checkNetwork(ctx context.Context, s *e2b.Sandbox, mode spec.NetworkMode) error {
	if mode != spec.NetworkInternet && mode != spec.NetworkAllow {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("checking the network of sandbox %s: %w", s.ID(), err)
	}
	switch {
	case mode == spec.NetworkInternet && info.AllowInternetAccess != nil && !*info.AllowInternetAccess:
		return fmt.Errorf("sandbox %s was created without the internet access the task asks for (the provider refused it; agent serve needs --allow-internet)", s.ID())
	case mode == spec.NetworkAllow && info.AllowInternetAccess != nil && !*info.AllowInternetAccess && (info.Network == nil || len(info.Network.AllowOut) == 0):
		return fmt.Errorf("sandbox %s was created without the network allow-list the task asks for (the provider refused it; agent serve needs --allow-internet)", s.ID())
	}
	return nil
}

// enterCommand is the command line that opens a terminal in sandbox id: the provider's CLI
// (`e2b sandbox connect`, which resumes a paused sandbox), with the URL variables when they are
// not the provider's defaults. The API key is never part of it.
func (b *Backend) enterCommand(id string) string {
	cli, p := "e2b", "E2B"
	if b.b.Flavor() == e2b.FlavorNovita {
		cli, p = "novita-sandbox-cli", "NOVITA"
	}
	cmd := cli + " sandbox connect " + id
	apiURL, sandboxURL, isDefault := b.b.Endpoints()
	if isDefault {
		return cmd
	}
	prefix := p + "_API_URL=" + apiURL + " "
	if sandboxURL != "" {
		prefix += p + "_SANDBOX_URL=" + sandboxURL + " "
	}
	return prefix + cmd
}

// Revive implements runner.Reviver: the kept (paused) sandbox is resumed in the cloud with req's
// lifetime, its files and processes as they were. filesOnly is never set: a provider that lost the
// sandbox answers not found, and the task starts over.
func (b *Backend) Revive(ctx context.Context, id string, req runner.SandboxRequest) (runner.Sandbox, bool, error) {
	started := time.Now()
	s, err := b.b.Connect(ctx, id, req.Lifetime)
	if err != nil {
		return nil, false, err
	}
	tpl := s.TemplateID()
	network := string(spec.NetworkNone)
	if req.Network.Mode == spec.NetworkInternet {
		network = string(spec.NetworkInternet)
	}
	return &Sandbox{Sandbox: s, enter: b.enterCommand(s.ID()), info: runner.SandboxInfo{
		ID: s.ID(), Backend: b.Name(), Template: tpl, Network: network, CreateMS: time.Since(started).Milliseconds(),
	}}, false, nil
}

// Discard implements runner.Reviver: the kept sandbox is killed.
func (b *Backend) Discard(ctx context.Context, id string) error { return b.b.Kill(ctx, id) }

// Sandbox is a remote sandbox as the runner sees it.
type Sandbox struct {
	*e2b.Sandbox
	enter string
	info  runner.SandboxInfo
}

// Keep implements runner.Keeper: the sandbox is paused in the cloud and released (this process no
// longer kills it, and its slot of --max-sandboxes is free). The note is not stored: the cloud
// cannot change a sandbox's metadata, which already names its task and epoch.
func (s *Sandbox) Keep(ctx context.Context, note string) error {
	if err := s.Pause(ctx); err != nil {
		return fmt.Errorf("pausing sandbox %s to keep it: %w", s.ID(), err)
	}
	return s.Sandbox.Close()
}

// EnterCommand implements runner.Keeper.
func (s *Sandbox) EnterCommand() string { return s.enter }

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
