package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentrun/agent/sandbox"
)

// PhasePaused: the sandbox's processes are frozen by the cgroup freezer; its lifetime clock is
// stopped.
const PhasePaused Phase = "paused"

// Lifecycle is the part of a sandbox's record about pausing, keeping and snapshots.
type Lifecycle struct {
	// PausedAt is when the sandbox was paused; zero while it runs.
	PausedAt time.Time `json:"paused_at,omitzero"`
	// Remaining is the lifetime left when the sandbox was paused. Expires is zero while it is
	// paused: the lifetime clock does not run.
	Remaining time.Duration `json:"remaining,omitempty"`
	// Kept marks a paused sandbox that outlives the process that made it: no process owns it, GC
	// leaves it alone until `gc --older-than` finds it idle for longer than asked.
	Kept bool `json:"kept,omitempty"`
	// Note says why the sandbox was kept (the runner writes the task and its outcome).
	Note string `json:"note,omitempty"`
	// From is the snapshot the sandbox was created from, if any.
	From string `json:"from,omitempty"`
}

// visitLock is held (shared) by every session that thawed a paused sandbox (see Visit).
func (p paths) visitLock() string { return filepath.Join(p.dir, "visit.lock") }

// maxNote bounds a keep note.
const maxNote = 1024

// lockOp takes the sandbox's operation lock, waiting while another process creates, kills, pauses
// or snapshots it.
func (b *Backend) lockOp(ctx context.Context, id string) (*lockFile, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("sandbox id %q: %w", id, sandbox.ErrInvalid)
	}
	p := b.paths(id)
	return waitLock(ctx, p.opLock(), false, func() error {
		if !dirExists(p.dir) {
			return fmt.Errorf("sandbox %s: %w", id, sandbox.ErrNotFound)
		}
		return nil
	})
}

// waitLock takes a lock, retrying until ctx ends. check runs before each attempt and after
// success; its error ends the wait.
func waitLock(ctx context.Context, path string, shared bool, check func() error) (*lockFile, error) {
	for {
		if err := check(); err != nil {
			return nil, err
		}
		l, ok, err := tryLock(path, shared)
		if errors.Is(err, fs.ErrNotExist) {
			if cerr := check(); cerr != nil {
				return nil, cerr
			}
		}
		if err != nil {
			return nil, err
		}
		if ok {
			if err := check(); err != nil {
				l.Close()
				return nil, err
			}
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", filepath.Base(path), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Pause freezes every process of the sandbox (the runtime's pause: the cgroup freezer for runc and
// crun). Memory, processes, open files and network state are kept as they are; the lifetime clock
// stops until Resume. Commands and file operations wait (or time out) while it is paused. The
// caller keeps ownership: a paused sandbox still dies with its owner. Pausing a paused sandbox is
// not an error.
func (s *Sandbox) Pause(ctx context.Context) error { return s.pause(ctx, false, "") }

// Keep pauses the sandbox and lets it outlive this process: its ownership is released, GC leaves
// it alone, and it stays paused until `agent sandbox resume`, `kill`, or `gc --older-than` finds it
// idle for longer than asked. note says why it was kept (bounded to 1 KiB).
func (s *Sandbox) Keep(ctx context.Context, note string) error {
	if err := s.pause(ctx, true, note); err != nil {
		return err
	}
	s.release()
	return nil
}

// release gives up this process's ownership of the sandbox.
func (s *Sandbox) release() {
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	alive := s.alive
	s.alive = nil
	s.mu.Unlock()
	s.b.mu.Lock()
	if s.b.owned[s.rec.ID] == s {
		delete(s.b.owned, s.rec.ID)
	}
	s.b.mu.Unlock()
	alive.Close()
}

func (s *Sandbox) pause(ctx context.Context, keep bool, note string) error {
	id := s.rec.ID
	op, err := s.b.lockOp(ctx, id)
	if err != nil {
		return err
	}
	defer op.Close()
	rec, err := readRecord(s.p)
	if err != nil {
		return fmt.Errorf("pausing sandbox %s: %w", id, err)
	}
	if len(note) > maxNote {
		note = note[:maxNote]
	}
	switch rec.Phase {
	case PhaseRunning:
	case PhasePaused:
		if keep && !rec.Kept {
			rec.Kept, rec.Note = true, note
			if err := writeRecord(s.p, rec); err != nil {
				return err
			}
		}
		s.setRecord(rec)
		return nil
	default:
		return fmt.Errorf("sandbox %s is %s, not running: %w", id, rec.Phase, sandbox.ErrInvalid)
	}
	rt, err := s.b.runtime(rec.Runtime)
	if err != nil {
		return err
	}
	if err := rt.Pause(ctx, id); err != nil {
		return s.b.explain(ctx, rec, fmt.Errorf("pausing sandbox %s: %w", id, err))
	}
	now := time.Now().UTC()
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	rec.Remaining = max(0, rec.Expires.Sub(now))
	rec.Expires = time.Time{}
	rec.PausedAt = now
	rec.Phase = PhasePaused
	rec.Kept, rec.Note = keep, note
	if err := writeRecord(s.p, rec); err != nil {
		_ = rt.Resume(context.WithoutCancel(ctx), id)
		s.rearm()
		return err
	}
	s.setRecord(rec)
	return nil
}

// Resume thaws a paused sandbox: its processes continue where they stopped and its lifetime clock
// runs again with the time that was left. Resuming a running sandbox is not an error.
func (s *Sandbox) Resume(ctx context.Context) error { return s.resume(ctx, 0) }

// resume thaws the sandbox; lifetime > 0 replaces the time that was left.
func (s *Sandbox) resume(ctx context.Context, lifetime time.Duration) error {
	op, err := s.b.lockOp(ctx, s.rec.ID)
	if err != nil {
		return err
	}
	defer op.Close()
	return s.resumeLocked(ctx, lifetime)
}

// resumeLocked is resume with the sandbox's operation lock held.
func (s *Sandbox) resumeLocked(ctx context.Context, lifetime time.Duration) error {
	id := s.rec.ID
	rec, err := readRecord(s.p)
	if err != nil {
		return fmt.Errorf("resuming sandbox %s: %w", id, err)
	}
	switch rec.Phase {
	case PhasePaused:
	case PhaseRunning:
		s.setRecord(rec)
		return nil
	default:
		return fmt.Errorf("sandbox %s is %s, not paused: %w", id, rec.Phase, sandbox.ErrInvalid)
	}
	rt, err := s.b.runtime(rec.Runtime)
	if err != nil {
		return err
	}
	if err := rt.Resume(ctx, id); err != nil {
		// A session (Visit) may have thawed it already.
		if st, serr := rt.State(ctx, id); serr != nil || st.Status != "running" {
			return s.b.explain(ctx, rec, fmt.Errorf("resuming sandbox %s: %w", id, err))
		}
	}
	left := rec.Remaining
	if lifetime > 0 {
		left = lifetime
	}
	rec.Expires = time.Now().UTC().Add(left)
	rec.Phase = PhaseRunning
	rec.Lifecycle = Lifecycle{From: rec.From}
	if err := writeRecord(s.p, rec); err != nil {
		return err
	}
	s.setRecord(rec)
	if s.b.owns(s) {
		s.rearm()
	}
	return nil
}

func (s *Sandbox) setRecord(rec *Record) {
	s.mu.Lock()
	s.rec = *rec
	s.mu.Unlock()
}

// rearm restarts the lifetime timer from the record's expiry.
func (s *Sandbox) rearm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.killed || s.rec.Expires.IsZero() {
		return
	}
	s.timer = time.AfterFunc(time.Until(s.rec.Expires), s.expire)
}

func (b *Backend) owns(s *Sandbox) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owned[s.rec.ID] == s
}

// explain turns a runtime failure on a sandbox whose init is gone into sandbox.ErrGone.
func (b *Backend) explain(ctx context.Context, rec *Record, err error) error {
	rt, rerr := b.runtime(rec.Runtime)
	if rerr != nil {
		return err
	}
	st, serr := rt.State(ctx, rec.ID)
	switch {
	case serr != nil:
		return fmt.Errorf("%w (its init is gone%s: %w)", err, rebootHint(rec), sandbox.ErrGone)
	case st.Status == "stopped":
		return fmt.Errorf("%w (its init has stopped: %w)", err, sandbox.ErrGone)
	}
	return err
}

func rebootHint(rec *Record) string {
	if rec.Phase == PhasePaused {
		return "; paused memory does not survive a reboot — `agent sandbox snapshot` keeps files"
	}
	return ""
}

// Pause pauses the sandbox with the given id, whoever created it, and keeps it (see Sandbox.Keep):
// it stays paused until resumed, killed or reclaimed by `gc --older-than`.
func (b *Backend) Pause(ctx context.Context, id string) error { return b.Keep(ctx, id, "") }

// Keep pauses and keeps the sandbox with the given id (see Sandbox.Keep); note says why.
func (b *Backend) Keep(ctx context.Context, id, note string) error {
	s, err := b.ownedByID(id)
	if err != nil {
		return err
	}
	if s != nil {
		return s.Keep(ctx, note)
	}
	rec, err := readRecord(b.paths(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sandbox %s: %w", id, sandbox.ErrNotFound)
	}
	if err != nil {
		return err
	}
	return b.newSandbox(rec, nil).pause(ctx, true, note)
}

// ResumeOptions configure Backend.Resume.
type ResumeOptions struct {
	// Lifetime replaces the lifetime that was left when the sandbox was paused.
	Lifetime time.Duration
}

// Resume resumes the paused sandbox with the given id and takes ownership of it, as if this process
// had created it: it is killed when its lifetime ends or the backend closes. A sandbox paused by a
// live process that still owns it (Sandbox.Pause, not Keep) is that process's to resume.
func (b *Backend) Resume(ctx context.Context, id string, o ResumeOptions) (*Sandbox, error) {
	s, err := b.ownedByID(id)
	if err != nil {
		return nil, err
	}
	if s != nil {
		return s, s.resume(ctx, o.Lifetime)
	}
	// Under the operation lock, so two processes cannot both take it over.
	op, err := b.lockOp(ctx, id)
	if err != nil {
		return nil, err
	}
	defer op.Close()
	p := b.paths(id)
	rec, err := readRecord(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %s: %w", id, sandbox.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if rec.Phase != PhasePaused {
		return nil, fmt.Errorf("sandbox %s is %s, not paused: %w", id, rec.Phase, sandbox.ErrInvalid)
	}
	// The previous owner of a kept sandbox (a watchdog) lets go within seconds.
	wait := 100 * time.Millisecond
	if rec.Kept {
		wait = 10 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	probe, err := waitLock(wctx, p.alive(), false, func() error { return nil })
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("sandbox %s is paused by a live process that owns it; resume it there: %w", id, sandbox.ErrInvalid)
	}
	probe.Close()
	alive, ok, err := tryLock(p.alive(), true)
	if err != nil || !ok {
		return nil, fmt.Errorf("taking ownership of sandbox %s: %v", id, err)
	}
	s = b.newSandbox(rec, alive)
	if err := s.resumeLocked(ctx, o.Lifetime); err != nil {
		alive.Close()
		return nil, err
	}
	s.base = b.cg.Stats(rec.CgroupsPath)
	if err := s.connect(ctx); err != nil {
		alive.Close()
		return nil, err
	}
	b.own(s)
	return s, nil
}

// Visit opens a sandbox for an interactive session (a shell, an exec) whether it runs or is paused.
// A paused sandbox is thawed for the session without restarting its lifetime clock and its record
// stays paused; leave freezes it again once the last session has left (unless it was resumed
// meanwhile). The returned handle does not own the sandbox.
func (b *Backend) Visit(ctx context.Context, id string) (s *Sandbox, leave func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	s, err = b.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if s.Record().Phase != PhasePaused {
		return s, noop, nil
	}
	p := s.p
	visit, err := waitLock(ctx, p.visitLock(), true, func() error { return nil })
	if err != nil {
		return nil, nil, err
	}
	thaw := func() error {
		op, err := b.lockOp(ctx, id)
		if err != nil {
			return err
		}
		defer op.Close()
		rec, err := readRecord(p)
		if err != nil {
			return err
		}
		s.setRecord(rec)
		if rec.Phase != PhasePaused {
			return nil
		}
		rt, err := b.runtime(rec.Runtime)
		if err != nil {
			return err
		}
		if err := rt.Resume(ctx, id); err != nil {
			if st, serr := rt.State(ctx, id); serr != nil || st.Status != "running" {
				return b.explain(ctx, rec, fmt.Errorf("thawing sandbox %s: %w", id, err))
			}
		}
		return nil
	}
	if err := thaw(); err != nil {
		visit.Close()
		return nil, nil, err
	}
	leave = func(ctx context.Context) error {
		visit.Close()
		last, ok, err := tryLock(p.visitLock(), false)
		if err != nil || !ok {
			return nil // another session is still in; the last one out freezes it
		}
		defer last.Close()
		op, err := b.lockOp(ctx, id)
		if errors.Is(err, sandbox.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		defer op.Close()
		rec, err := readRecord(p)
		if err != nil || rec.Phase != PhasePaused {
			return nil
		}
		rt, err := b.runtime(rec.Runtime)
		if err != nil {
			return err
		}
		if err := rt.Pause(ctx, id); err != nil && !strings.Contains(err.Error(), "paused") {
			return fmt.Errorf("pausing sandbox %s again: %w", id, err)
		}
		return nil
	}
	return s, leave, nil
}

// idle tells how long a kept sandbox has been paused; zero for any other.
func idle(rec *Record, now time.Time) time.Duration {
	if !rec.Kept || rec.PausedAt.IsZero() {
		return 0
	}
	return now.Sub(rec.PausedAt)
}
