package local

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/agentrun/agent/sandbox"
)

// MaxFork bounds the sandboxes one Fork makes.
const MaxFork = 256

// forkParallel bounds concurrent creates within a Fork.
const forkParallel = 4

// Fork creates n sandboxes from the snapshot: each gets the snapshot's layer (shared, read-only,
// never copied) under a writable layer of its own, so they start with the same files and diverge
// independently. o applies to each (its From is set to snapshot). The caller owns every returned
// sandbox. On any failure the ones already made are killed and the error returned.
func (b *Backend) Fork(ctx context.Context, snapshot string, n int, o Options) ([]*Sandbox, error) {
	if n < 1 || n > MaxFork {
		return nil, fmt.Errorf("fork of %d sandboxes: want 1..%d: %w", n, MaxFork, sandbox.ErrInvalid)
	}
	o.From = snapshot
	out := make([]*Sandbox, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(forkParallel)
	for i := range n {
		g.Go(func() error {
			s, err := b.Create(gctx, o)
			if err != nil {
				return fmt.Errorf("fork %d of %d from snapshot %s: %w", i+1, n, snapshot, err)
			}
			out[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		kctx := context.WithoutCancel(ctx)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var kerrs []error
		for _, s := range out {
			if s == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if kerr := s.Kill(kctx); kerr != nil {
					mu.Lock()
					kerrs = append(kerrs, kerr)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return nil, errors.Join(append([]error{err}, kerrs...)...)
	}
	return out, nil
}

// ForkSandbox snapshots the sandbox (an automatic snapshot, deleted by GC once its forks are gone)
// and forks n sandboxes from it. The source keeps running (it is frozen while its files are
// copied).
func (b *Backend) ForkSandbox(ctx context.Context, id string, n int, o Options) ([]*Sandbox, *Snapshot, error) {
	snap, err := b.Snapshot(ctx, id, SnapshotOptions{Auto: true, Note: "fork of " + id})
	if err != nil {
		return nil, nil, err
	}
	out, err := b.Fork(ctx, snap.ID, n, o)
	if err != nil {
		_ = b.RemoveSnapshot(context.WithoutCancel(ctx), snap.ID)
		return nil, nil, err
	}
	return out, snap, nil
}
