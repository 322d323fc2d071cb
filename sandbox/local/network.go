package local

import (
	"context"
	"fmt"
)

// NetworkNone gives a sandbox its own network namespace with only a loopback interface.
const NetworkNone = "none"

// Network sets up a sandbox's network. It is the seam for later modes (an egress allow-list, an
// internet mode): Setup returns the path of a network namespace to join, or "" for a fresh one.
type Network interface {
	Name() string
	Setup(ctx context.Context, id string) (netnsPath string, err error)
	// Teardown releases what Setup made; it must succeed for a sandbox Setup never saw.
	Teardown(ctx context.Context, id string) error
}

type noneNetwork struct{}

func (noneNetwork) Name() string                                  { return NetworkNone }
func (noneNetwork) Setup(context.Context, string) (string, error) { return "", nil }
func (noneNetwork) Teardown(context.Context, string) error        { return nil }

func networkFor(name string) (Network, error) {
	switch name {
	case NetworkNone, "":
		return noneNetwork{}, nil
	}
	return nil, fmt.Errorf("network mode %q is not supported by local sandboxes (only %q)", name, NetworkNone)
}
