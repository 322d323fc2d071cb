package localbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
)

// Local sandboxes can be kept (paused and released), revived (resumed, or recreated from their
// files after a reboot) and forked from snapshots: see docs/SNAPSHOTS.md.
var (
	_ runner.Keeper  = (*Sandbox)(nil)
	_ runner.Reviver = (*Backend)(nil)
	_ runner.Forker  = (*Backend)(nil)
)

// EnterCommand implements runner.Keeper: `agent sandbox shell ID`, with the data directory when it
// is not the default. (Keep itself is local.Sandbox's.)
func (s *Sandbox) EnterCommand() string {
	if s.dataDir != "" && s.dataDir != local.DefaultDataDir {
		return fmt.Sprintf("agent sandbox --data-dir %s shell %s", s.dataDir, s.ID())
	}
	return "agent sandbox shell " + s.ID()
}

// Revive implements runner.Reviver: the kept sandbox is resumed and owned by this process. When its
// processes are gone (the host rebooted), its files are snapshotted into a new sandbox and the old
// one destroyed.
func (b *Backend) Revive(ctx context.Context, id string, req runner.SandboxRequest) (runner.Sandbox, bool, error) {
	started := time.Now()
	s, err := b.b.Resume(ctx, id, local.ResumeOptions{Lifetime: req.Lifetime})
	if err == nil {
		return b.wrap(s, started), false, nil
	}
	if !errors.Is(err, sandbox.ErrGone) {
		return nil, false, err
	}
	snap, serr := b.b.Snapshot(ctx, id, local.SnapshotOptions{Auto: true, Note: "files of kept sandbox " + id + " whose processes are gone"})
	if serr != nil {
		return nil, false, fmt.Errorf("%w; its files could not be saved either: %v", err, serr)
	}
	sb, cerr := b.create(ctx, req, snap.ID)
	if cerr != nil {
		// The kept sandbox still holds the files; the snapshot would only wait for GC.
		if rerr := b.RemoveSnapshot(context.WithoutCancel(ctx), snap.ID); rerr != nil {
			slog.Warn("removing the snapshot of a kept sandbox that could not be revived", "snapshot", snap.ID, "err", rerr)
		}
		return nil, false, cerr
	}
	// The snapshot only exists for this sandbox: it goes when the sandbox is killed (a kept one
	// still uses it; GC deletes it once that one is gone).
	sb.(*Sandbox).revivedFrom = snap.ID
	if kerr := b.b.Kill(context.WithoutCancel(ctx), id); kerr != nil {
		slog.Warn("destroying a kept sandbox after saving its files", "sandbox", id, "err", kerr)
	}
	return sb, true, nil
}

// Kill destroys the sandbox and, for one revived from a kept sandbox's files, the snapshot it was
// made from.
func (s *Sandbox) Kill(ctx context.Context) error {
	if err := s.Sandbox.Kill(ctx); err != nil {
		return err
	}
	if s.revivedFrom == "" {
		return nil
	}
	if err := s.b.RemoveSnapshot(ctx, s.revivedFrom); err != nil && !errors.Is(err, local.ErrSnapshotInUse) {
		return fmt.Errorf("removing snapshot %s the sandbox was revived from: %w", s.revivedFrom, err)
	}
	return nil
}

// Discard implements runner.Reviver.
func (b *Backend) Discard(ctx context.Context, id string) error { return b.b.Kill(ctx, id) }

// Snapshot implements runner.Forker with an automatic snapshot (GC deletes it once unused).
func (b *Backend) Snapshot(ctx context.Context, sb runner.Sandbox, note string) (string, error) {
	snap, err := b.b.Snapshot(ctx, sb.ID(), local.SnapshotOptions{Auto: true, Note: note})
	if err != nil {
		return "", err
	}
	return snap.ID, nil
}

// CreateFrom implements runner.Forker.
func (b *Backend) CreateFrom(ctx context.Context, snapshot string, req runner.SandboxRequest) (runner.Sandbox, error) {
	return b.create(ctx, req, snapshot)
}

// RemoveSnapshot implements runner.Forker; a snapshot still in use (by a kept sandbox) is left to
// GC, which deletes automatic snapshots once unused.
func (b *Backend) RemoveSnapshot(ctx context.Context, snapshot string) error {
	if err := b.b.RemoveSnapshot(ctx, snapshot); err != nil && !errors.Is(err, local.ErrSnapshotInUse) {
		return err
	}
	return nil
}
