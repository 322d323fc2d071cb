package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/agentrun/agent/sandbox/local/mounts"
)

// destroyByID takes the sandbox's operation lock (waiting for a create or kill in progress
// elsewhere) and destroys it.
func (b *Backend) destroyByID(ctx context.Context, id string) error {
	p := b.paths(id)
	var op *lockFile
	for {
		l, ok, err := tryLock(p.opLock(), false)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !dirExists(p.dir)) {
			if l != nil {
				l.Close()
			}
			return nil // gone already
		}
		if err != nil {
			return err
		}
		if ok {
			op = l
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting to kill sandbox %s: %w", id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer op.Close()
	if !dirExists(p.dir) {
		return nil
	}
	rec, err := readRecord(p)
	if err != nil {
		rec = &Record{ID: id, Slot: -1, CgroupsPath: b.cgParent + "/" + id, Runtime: b.cfg.Runtime}
	}
	return b.destroy(ctx, p, rec)
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// destroy removes everything a sandbox holds, in order: its processes and runtime state, its
// cgroups, its network, its mounts, its uid range and its directory. It works on any partial state
// (a create that failed or crashed at any step), and is idempotent. The caller holds the op lock.
func (b *Backend) destroy(ctx context.Context, p paths, rec *Record) error {
	var errs []error
	t0 := time.Now()
	var steps []any
	mark := func(step string) {
		steps = append(steps, step, time.Since(t0).Round(time.Microsecond).String())
		t0 = time.Now()
	}
	defer func() { b.log.Debug("destroyed sandbox", append([]any{"id", rec.ID}, steps...)...) }()
	// Kill every process first (the init's death ends the pid namespace), so the runtime only has
	// state to remove.
	if rec.CgroupsPath != "" {
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := b.cg.Kill(kctx, rec.CgroupsPath); err != nil {
			b.log.Warn("killing a sandbox's processes", "id", rec.ID, "err", err)
		}
		cancel()
	}
	mark("kill")
	rtNames := []string{rec.Runtime}
	if rec.Runtime == "" {
		rtNames = []string{"runc", "crun", "runsc"}
	}
	for _, name := range rtNames {
		rt, err := b.runtime(name)
		if err != nil {
			continue
		}
		if err := rt.Delete(ctx, rec.ID); err != nil {
			errs = append(errs, err)
		}
		// A runtime killed mid-create leaves a state directory it no longer recognizes.
		_ = os.RemoveAll(filepath.Join(rt.Root, rec.ID))
	}
	mark("runtime")
	if rec.CgroupsPath != "" {
		if err := b.cg.Remove(ctx, rec.CgroupsPath); err != nil {
			errs = append(errs, err)
		}
	}
	if netw, err := b.networkFor(ctx, rec.Network, nil); err == nil {
		if err := netw.Teardown(ctx, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	mark("cgroups")
	if err := mounts.UnmountAll(ctx, p.dir); err != nil {
		errs = append(errs, err)
	} else {
		mark("unmount")
		if err := mounts.RemoveTree(p.dir); err != nil {
			errs = append(errs, err)
		}
		mark("remove")
	}
	if rec.Slot >= 0 {
		b.slots.release(rec.Slot, p.dir)
	}
	if len(errs) > 0 {
		return fmt.Errorf("destroying sandbox %s: %w", rec.ID, errors.Join(errs...))
	}
	return nil
}

// GCReport lists what GC reclaimed.
type GCReport struct {
	// Sandboxes destroyed: orphaned (owner died), expired, or half-created.
	Sandboxes []string
	// Cgroups, slots and runtime states removed that had no sandbox directory.
	Cgroups, Slots, RuntimeStates []string
	// Templates lists trashed template trees (and dead builds) deleted.
	Templates []string
	// Snapshots lists snapshots deleted: automatic ones nothing uses, and with
	// GCOptions.Snapshots those older than GCOptions.OlderThan that nothing uses.
	Snapshots []string
	// Networks lists sandbox networks (links, firewall tables, helpers) whose sandbox was gone.
	Networks []string
}

// GC reclaims what crashed processes left: sandboxes whose owner died (creating, pooled or running
// without a holder), expired sandboxes, and cgroups, uid slots and runtime states without a
// sandbox. Sandboxes another live process is working on, and kept sandboxes, are left alone.
func (b *Backend) GC(ctx context.Context) (*GCReport, error) { return b.GCWith(ctx, GCOptions{}) }

// GCWith is GC with options: kept sandboxes idle for longer than o.OlderThan are reclaimed too,
// and so are snapshots (snapshot.go).
func (b *Backend) GCWith(ctx context.Context, o GCOptions) (*GCReport, error) {
	rep := &GCReport{}
	ents, err := os.ReadDir(b.sbDir)
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	var errs []error
	live := map[string]bool{}
	for _, e := range ents {
		id := e.Name()
		if !e.IsDir() || !ValidID(id) {
			continue
		}
		live[id] = true
		p := b.paths(id)
		op, ok, err := tryLock(p.opLock(), false)
		if err != nil || !ok {
			continue // busy: another process is creating or killing it
		}
		reclaim := false
		rec, rerr := readRecord(p)
		if l, free, _ := tryLock(p.alive(), false); free {
			l.Close()
			// nobody holds it: its owner died (a kept sandbox has no owner)
			reclaim = rerr != nil || !(rec.Kept && rec.Phase == PhasePaused)
		}
		if rerr == nil && !rec.Expires.IsZero() && time.Now().After(rec.Expires.Add(5*time.Second)) {
			reclaim = true
		}
		if rerr == nil && o.OlderThan > 0 && idle(rec, time.Now()) > o.OlderThan {
			reclaim = true
		}
		if rerr != nil {
			rec = &Record{ID: id, Slot: -1, CgroupsPath: b.cgParent + "/" + id}
		}
		if reclaim {
			if err := b.destroy(ctx, p, rec); err != nil {
				errs = append(errs, err)
			} else {
				rep.Sandboxes = append(rep.Sandboxes, id)
				delete(live, id)
			}
		}
		op.Close()
	}
	for _, name := range b.cg.Children(b.cgParent) {
		if !live[name] {
			if err := b.cg.Remove(ctx, b.cgParent+"/"+name); err != nil {
				errs = append(errs, err)
			} else {
				rep.Cgroups = append(rep.Cgroups, name)
			}
		}
	}
	if len(live) == 0 {
		b.removeIdleCgroupParent(ctx)
	}
	digests := map[string]bool{}
	for id := range live {
		if rec, err := readRecord(b.paths(id)); err == nil {
			digests[rec.TemplateDigest] = true
		} else {
			// Unknown: keep every trashed template until this sandbox is gone.
			digests["*"] = true
		}
	}
	rep.Snapshots, err = b.gcSnapshots(ctx, o, live)
	if err != nil {
		errs = append(errs, err)
	}
	if ids, err := b.net.Sweep(ctx); err != nil {
		errs = append(errs, err)
	} else {
		rep.Networks = ids
	}
	rep.Templates = b.templates.Sweep(func(d string) bool { return digests["*"] || digests[d] })
	rep.Slots = b.slots.sweep()
	if rts, err := os.ReadDir(b.rtDir); err == nil {
		for _, r := range rts {
			states, err := os.ReadDir(filepath.Join(b.rtDir, r.Name()))
			if err != nil {
				continue
			}
			for _, st := range states {
				if ValidID(st.Name()) && !live[st.Name()] && !dirExists(b.paths(st.Name()).dir) {
					if rt, err := b.runtime(r.Name()); err == nil {
						_ = rt.Delete(ctx, st.Name())
					}
					_ = os.RemoveAll(filepath.Join(b.rtDir, r.Name(), st.Name()))
					rep.RuntimeStates = append(rep.RuntimeStates, r.Name()+"/"+st.Name())
				}
			}
		}
	}
	b.removeIdleCgroupParent(ctx)
	return rep, errors.Join(errs...)
}
