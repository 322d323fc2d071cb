package local

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentrun/agent/sandbox/local/network"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

// ErrNetworkUnavailable: the network mode cannot be provided with the chosen runtime on this host.
var ErrNetworkUnavailable = errors.New("network mode unavailable")

// NetworkNone gives a sandbox its own network namespace with only a loopback interface.
const NetworkNone = "none"

// Network sets up a sandbox's network (package network implements the modes beyond none).
type Network interface {
	// Name is the mode as recorded (netpolicy form: none, internet, allow:…).
	Name() string
	// Setup prepares the host side before the runtime creates the sandbox. It returns the path
	// of a network namespace to join, or "" for a fresh one made by the runtime.
	Setup(ctx context.Context, id string) (netnsPath string, err error)
	// Attach wires the sandbox's namespace once the runtime created it (init not yet started);
	// pid is the host pid of its init.
	Attach(ctx context.Context, id string, pid int) error
	// Nameserver is the resolver address to write into the sandbox's resolv.conf ("" for none).
	Nameserver(id string) string
	// Teardown releases what Setup made; it must succeed for a sandbox Setup never saw.
	Teardown(ctx context.Context, id string) error
}

type noneNetwork struct{}

func (noneNetwork) Name() string                                  { return NetworkNone }
func (noneNetwork) Setup(context.Context, string) (string, error) { return "", nil }
func (noneNetwork) Attach(context.Context, string, int) error     { return nil }
func (noneNetwork) Nameserver(string) string                      { return "" }
func (noneNetwork) Teardown(context.Context, string) error        { return nil }

// policyNetwork is a networked mode, run by the network manager.
type policyNetwork struct {
	b   *Backend
	pol netpolicy.Policy
}

func (n policyNetwork) Name() string { return n.pol.String() }
func (n policyNetwork) Setup(ctx context.Context, id string) (string, error) {
	return "", n.b.net.Setup(ctx, id, n.b.paths(id).dir, n.pol)
}
func (n policyNetwork) Attach(ctx context.Context, id string, pid int) error {
	return n.b.net.Attach(ctx, id, pid)
}
func (n policyNetwork) Nameserver(id string) string { return n.b.net.Nameserver(id) }
func (n policyNetwork) Teardown(ctx context.Context, id string) error {
	return n.b.net.Teardown(ctx, id)
}

// netnsNetwork is a networked mode for runsc: gVisor's network stack takes over the interfaces
// of the namespace it is created in, so the namespace is made, linked and configured before the
// runtime runs (Attach has nothing left to do). The host side is the same as under runc.
type netnsNetwork struct{ policyNetwork }

func (n netnsNetwork) Setup(ctx context.Context, id string) (string, error) {
	return n.b.net.SetupNetns(ctx, id, n.b.paths(id).dir, n.pol)
}
func (netnsNetwork) Attach(context.Context, string, int) error { return nil }

// networkFor returns the network of a mode (netpolicy form) under a runtime (nil when only
// tearing down).
func (b *Backend) networkFor(ctx context.Context, mode string, rt *ociruntime.Runtime) (Network, error) {
	pol, err := netpolicy.Parse(mode)
	if err != nil {
		return nil, err
	}
	if !pol.Networked() {
		return noneNetwork{}, nil
	}
	if rt != nil && rt.Name == ociruntime.Runsc {
		if err := rt.NetworkSupport(ctx); err != nil {
			return nil, fmt.Errorf("network %s is not available with this runsc: %v; use runc (--runtime runc, or runtime: runc in the spec), or network none: %w", pol, err, ErrNetworkUnavailable)
		}
		return netnsNetwork{policyNetwork{b: b, pol: pol}}, nil
	}
	return policyNetwork{b: b, pol: pol}, nil
}

// runtimeNetwork is the runtime's network mode for a sandbox's network: runsc runs its own
// stack on the sandbox's link when it has one.
func runtimeNetwork(n Network) string {
	if _, ok := n.(netnsNetwork); ok {
		return ociruntime.NetSandbox
	}
	return ociruntime.NetNone
}

// networkManager builds the network manager of a backend.
func networkManager(cfg Config) (*network.Manager, error) {
	nc := cfg.Network
	if len(nc.Helper) == 0 {
		nc.Helper = []string{cfg.Binary, "netd"}
	}
	if nc.Logger == nil {
		nc.Logger = cfg.Logger
	}
	return network.New(nc)
}

// NetworkReport tells what the sandbox's network policy refused so far (names the resolver would
// not answer, connections the egress proxy refused, packets the firewall refused), for the
// task's results. A sandbox without a network reports its mode and nothing else.
func (s *Sandbox) NetworkReport(ctx context.Context) (*network.Report, error) {
	r, err := s.b.net.Report(ctx, s.rec.ID)
	if r != nil && r.Policy == "" {
		r.Policy = s.rec.Network
	}
	if r != nil && s.rec.Network != "" {
		r.Policy = s.rec.Network
	}
	return r, err
}
