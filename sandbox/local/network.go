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

// networkFor returns the network of a mode (netpolicy form) under a runtime ("" when only
// tearing down).
func (b *Backend) networkFor(mode, runtime string) (Network, error) {
	pol, err := netpolicy.Parse(mode)
	if err != nil {
		return nil, err
	}
	if !pol.Networked() {
		return noneNetwork{}, nil
	}
	if runtime == ociruntime.Runsc {
		return nil, fmt.Errorf("network %s is not available with runsc: gVisor's own network stack fails on this host's kernel (gVisor issue 10704, fixed in newer runsc releases) and host networking would run gVisor outside the sandbox's user namespace; use runc (--runtime runc, or runtime: runc in the spec), or network none: %w", pol, ErrNetworkUnavailable)
	}
	return policyNetwork{b: b, pol: pol}, nil
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
