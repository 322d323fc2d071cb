// Package localbackend plugs the local sandbox backend (sandbox/local: OCI containers run by runc,
// crun or runsc, with envd as init) into the runner, with the envd client (sandbox/envdclient) as
// every sandbox's data plane over its host-private socket.
package localbackend

import (
	"context"
	"fmt"
	"time"

	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/envdclient"
	"github.com/agentrun/agent/sandbox/local"
)

// Name is the backend's name in results.
const Name = "local"

// Backend creates local sandboxes for the runner.
type Backend struct {
	b *local.Backend
}

var _ runner.Backend = (*Backend)(nil)

// Open opens the local backend (see local.New); when cfg.Connect is nil, sandboxes are reached with
// the envd client (Connect).
func Open(ctx context.Context, cfg local.Config) (*Backend, error) {
	if cfg.Connect == nil {
		cfg.Connect = Connect
	}
	b, err := local.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Backend{b: b}, nil
}

// Connect builds the envd client of a local sandbox: every request goes over the sandbox's
// host-private unix socket; the URL's host only names the server.
func Connect(ctx context.Context, info local.ConnectInfo) (local.DataPlane, error) {
	return envdclient.New(envdclient.Config{
		BaseURL: "http://sandbox-" + info.ID,
		Dial:    info.Dial,
	})
}

// Local returns the underlying backend.
func (b *Backend) Local() *local.Backend { return b.b }

// Close kills every sandbox this backend still owns.
func (b *Backend) Close() error { return b.b.Close() }

// Name implements runner.Backend.
func (b *Backend) Name() string { return Name }

// Create implements runner.Backend. The spec's network policy is passed on as it is (the policy
// string of runner/spec is sandbox/netpolicy's form); a mode the host or runtime cannot provide
// (networked modes under runsc) is refused rather than run with less than it asked for.
func (b *Backend) Create(ctx context.Context, req runner.SandboxRequest) (runner.Sandbox, error) {
	return b.create(ctx, req, "")
}

// create creates a sandbox for req, from a snapshot's files when from is set.
func (b *Backend) create(ctx context.Context, req runner.SandboxRequest, from string) (runner.Sandbox, error) {
	o := options(req)
	o.From = from
	started := time.Now()
	s, err := b.b.Create(ctx, o)
	if err != nil {
		return nil, err
	}
	return b.wrap(s, started), nil
}

// options are the local sandbox options of a runner request.
func options(req runner.SandboxRequest) local.Options {
	network := local.NetworkNone
	if req.Network.Mode != "" && req.Network.Mode != spec.NetworkNone {
		network = req.Network.String()
	}
	return local.Options{
		Template: req.Template,
		Runtime:  req.Runtime,
		Env:      req.Env,
		Network:  network,
		Limits: local.Limits{
			MemoryBytes: req.MemoryBytes, Pids: int64(req.Pids), CPUs: req.CPUs, DiskBytes: req.DiskBytes,
			Lifetime: req.Lifetime,
		},
	}
}

// SetPool gives cfg a warm pool of n sandboxes shaped as the commonest sandbox the specs' tasks
// ask for (template, limits, env) among those with network none and cfg's runtime (pooled
// sandboxes run under it; a spec naming another runtime cannot claim them): only tasks asking for
// exactly that claim pooled sandboxes, the others are created as usual. Without such a spec the
// pool holds sandboxes of the defaults.
func SetPool(cfg *local.Config, n int, specs []*spec.Spec) {
	cfg.Pool = n
	rt := cfg.Runtime
	if rt == "" {
		rt = local.DefaultRuntime
	}
	counts := map[string]int{}
	best := 0
	for _, s := range specs {
		o := options(runner.RequestFor(s))
		if o.Network != local.NetworkNone || (o.Runtime != "" && o.Runtime != rt) {
			continue
		}
		// The lifetime is set when a sandbox is claimed; fmt prints maps with sorted keys.
		o.Limits.Lifetime = 0
		key := fmt.Sprintf("%q %+v %v", o.Template, o.Limits, o.Env)
		counts[key]++
		if counts[key] > best {
			best = counts[key]
			cfg.PoolTemplate, cfg.PoolLimits, cfg.PoolEnv = o.Template, o.Limits, o.Env
		}
	}
}

// wrap describes a local sandbox for the runner.
func (b *Backend) wrap(s *local.Sandbox, started time.Time) *Sandbox {
	rec := s.Record()
	return &Sandbox{Sandbox: s, b: b.b, dataDir: b.b.DataDir(), info: runner.SandboxInfo{
		ID: rec.ID, Backend: Name, Template: rec.Template, TemplateDigest: rec.TemplateDigest, Runtime: rec.Runtime,
		Network: rec.Network, DefaultUser: rec.DefaultUser, CreateMS: time.Since(started).Milliseconds(),
		Pooled: rec.Pooled,
	}}
}

// Sandbox is a local sandbox as the runner sees it.
type Sandbox struct {
	*local.Sandbox
	b       *local.Backend
	dataDir string
	info    runner.SandboxInfo
	// revivedFrom is the automatic snapshot of a kept sandbox's files this one was made from
	// (Revive after a reboot); Kill removes it.
	revivedFrom string
}

// Info implements runner.Sandbox.
func (s *Sandbox) Info() runner.SandboxInfo { return s.info }

// NetworkResult implements runner.NetworkReporter: what the sandbox's network policy refused so
// far (for network none, only the mode).
func (s *Sandbox) NetworkResult(ctx context.Context) (*runner.NetworkResult, error) {
	rep, err := s.Sandbox.NetworkReport(ctx)
	if rep == nil {
		return nil, err
	}
	out := &runner.NetworkResult{Policy: rep.Policy, Address: rep.Address, RefusedPackets: rep.RefusedPackets, Reported: true}
	for _, ev := range rep.Refused {
		if len(out.Refused) >= runner.MaxNetworkRefused {
			break
		}
		out.Refused = append(out.Refused, runner.RefusedConnection{
			Time: ev.Time, Kind: ev.Kind, Name: ev.Name, Addr: ev.Addr, Proto: ev.Proto, Reason: ev.Reason, Count: ev.Count,
		})
	}
	return out, err
}
