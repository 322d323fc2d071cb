package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// fork_setup: with repeat > 1 and setup, the first epoch of a task to start seeds its sandbox,
// runs the setup and snapshots the result; every other epoch waits for that snapshot and starts
// from it (a sandbox with the same files, made without running setup again). When the shared setup
// cannot be made (it failed, the epoch building it ended early, the snapshot failed), the other
// epochs run their own setup, as without fork_setup.

// forkBase is one task's shared setup.
type forkBase struct {
	task    string
	builder int    // the epoch building it
	forker  Forker // the task's backend
	ready   chan struct{}
	once    sync.Once

	// Set before ready is closed.
	snapshot string
	setupLog []byte
	err      error
}

// forkBases holds the shared setups of a run.
type forkBases struct {
	mu sync.Mutex
	m  map[string]*forkBase
}

// forkBase returns the task's shared setup when fork_setup applies to it (and marks the task as
// its builder when it is the first to ask), or nil.
func (r *Runner) forkBase(t *task) *forkBase {
	s := t.s
	if !s.ForkSetup || max(s.Repeat, 1) < 2 || len(s.Setup) == 0 {
		return nil
	}
	f, ok := t.b.(Forker)
	if !ok {
		return nil
	}
	r.forks.mu.Lock()
	defer r.forks.mu.Unlock()
	if r.forks.m == nil {
		r.forks.m = map[string]*forkBase{}
	}
	fb := r.forks.m[s.Name]
	if fb == nil {
		fb = &forkBase{task: s.Name, builder: t.j.epoch, forker: f, ready: make(chan struct{})}
		r.forks.m[s.Name] = fb
		t.building = fb
	}
	return fb
}

// fromFork makes the sandbox of an epoch that did not build the shared setup: it waits for the
// snapshot and creates a sandbox from it. nil (and no error) means the epoch makes its own sandbox
// and runs its own setup.
func (t *task) fromFork(ctx, tctx context.Context, fb *forkBase) (Sandbox, error) {
	if t.building == fb {
		return nil, nil
	}
	waited := time.Now()
	select {
	case <-fb.ready:
	case <-tctx.Done():
		return nil, fmt.Errorf("waiting for the shared setup of epoch %d: %w", fb.builder, context.Cause(tctx))
	}
	if fb.err != nil {
		t.warn("fork_setup: the shared setup of epoch %d is not available (%v); this epoch runs its own setup", fb.builder, fb.err)
		return nil, nil
	}
	sb, err := fb.forker.CreateFrom(tctx, fb.snapshot, t.request())
	if err != nil {
		if ctx.Err() != nil || tctx.Err() != nil {
			return nil, err
		}
		t.warn("fork_setup: creating a sandbox from snapshot %s: %v; this epoch runs its own setup", fb.snapshot, err)
		return nil, nil
	}
	t.res.ForkedFrom = fb.snapshot
	t.res.Phases.SetupMS = time.Since(waited).Milliseconds()
	head := fmt.Sprintf("[fork_setup: setup ran once, in epoch %d's sandbox; this sandbox was created from its snapshot %s]\n", fb.builder, fb.snapshot)
	if err := writeFileAtomic(filepath.Join(t.dir, SetupLogFile), append([]byte(head), fb.setupLog...)); err != nil {
		t.warn("writing setup.log: %v", err)
	}
	return sb, nil
}

// shareSetup snapshots the builder's sandbox once its setup has run, for the other epochs.
func (t *task) shareSetup(ctx context.Context) {
	fb := t.building
	if fb == nil {
		return
	}
	if t.res.Status == StatusError {
		t.endFork(fmt.Errorf("its setup ended in %s", t.res.Reason))
		return
	}
	snap, err := fb.forker.Snapshot(ctx, t.sb, fmt.Sprintf("agent run %s: setup of task %s (fork_setup)", t.r.id, t.s.Name))
	if err != nil {
		t.warn("fork_setup: snapshotting the setup: %v; the other epochs run their own setup", err)
		t.endFork(err)
		return
	}
	log, _ := os.ReadFile(filepath.Join(t.dir, SetupLogFile))
	fb.once.Do(func() {
		fb.snapshot, fb.setupLog = snap, log
		close(fb.ready)
	})
}

// endFork releases the epochs waiting for a shared setup this epoch was to build and will not
// (no-op once it is shared).
func (t *task) endFork(err error) {
	fb := t.building
	if fb == nil {
		return
	}
	if err == nil {
		err = errors.New("its epoch ended before the setup was done")
	}
	fb.once.Do(func() {
		fb.err = err
		close(fb.ready)
	})
}

// removeForks deletes the shared setups' snapshots once the run's tasks are done (a snapshot a
// kept sandbox still uses is left to the backend's garbage collection).
func (r *Runner) removeForks(ctx context.Context) {
	r.forks.mu.Lock()
	var done []*forkBase
	for _, fb := range r.forks.m {
		select {
		case <-fb.ready:
			if fb.snapshot != "" {
				done = append(done, fb)
			}
		default:
		}
	}
	r.forks.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, fb := range done {
		if err := fb.forker.RemoveSnapshot(ctx, fb.snapshot); err != nil {
			r.log.Warn("removing a fork_setup snapshot", "snapshot", fb.snapshot, "err", err)
		}
	}
}
