package runner

import (
	"context"
	"fmt"
	"maps"
	"sync"
)

// Backends are the sandbox backends of a run: the default one, and the others task specs name
// (a spec's `sandbox:`), so one run can mix backends. Each is opened at most once, when the first
// task that needs it starts: a run opens only what it uses. The caller closes what Open opened,
// after Run returns (Opened lists it).
type Backends struct {
	// Default names the backend of tasks whose spec names none.
	Default string
	// Open opens the named backend. Its error ends every task of that backend in error
	// (sandbox_error), not the run.
	Open func(ctx context.Context, name string) (Backend, error)

	mu     sync.Mutex
	opened map[string]*openedBackend
}

type openedBackend struct {
	done chan struct{}
	b    Backend
	err  error
}

// Fixed returns Backends serving every task from b; a task whose spec names another backend ends
// in error.
func Fixed(b Backend) *Backends {
	return &Backends{Default: b.Name(), Open: func(_ context.Context, name string) (Backend, error) {
		if name != b.Name() {
			return nil, fmt.Errorf("this run has no %s sandbox backend (only %s)", name, b.Name())
		}
		return b, nil
	}}
}

// get returns the named backend ("": the default), opening it on first use.
func (bs *Backends) get(ctx context.Context, name string) (Backend, error) {
	if name == "" {
		name = bs.Default
	}
	bs.mu.Lock()
	if bs.opened == nil {
		bs.opened = map[string]*openedBackend{}
	}
	o, ok := bs.opened[name]
	if !ok {
		o = &openedBackend{done: make(chan struct{})}
		bs.opened[name] = o
	}
	bs.mu.Unlock()
	if !ok {
		o.b, o.err = bs.Open(ctx, name)
		if o.err == nil && o.b == nil {
			o.err = fmt.Errorf("no %s sandbox backend", name)
		}
		if o.err != nil {
			o.err = fmt.Errorf("opening the %s sandbox backend: %w", name, o.err)
		}
		close(o.done)
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the %s sandbox backend to open: %w", name, ctx.Err())
	}
	return o.b, o.err
}

// Opened returns the backends opened successfully so far, by name.
func (bs *Backends) Opened() map[string]Backend {
	bs.mu.Lock()
	all := maps.Clone(bs.opened)
	bs.mu.Unlock()
	out := map[string]Backend{}
	for name, o := range all {
		select {
		case <-o.done:
			if o.err == nil {
				out[name] = o.b
			}
		default:
		}
	}
	return out
}
