package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local/mounts"
)

// Snapshot kinds.
const (
	// KindFiles: the files of the sandbox's writable layer; no process, no memory.
	KindFiles = "files"
)

// SnapshotFormat names the on-disk format of a snapshot.
const SnapshotFormat = "agent-snapshot/1"

// Snapshot describes a persistent snapshot of a sandbox's files (snapshot.json in its directory).
type Snapshot struct {
	ID      string    `json:"id"`
	Format  string    `json:"format"`
	Kind    string    `json:"kind"`
	Created time.Time `json:"created"`
	// Source is the sandbox it was taken from; Parent the snapshot that sandbox was created from
	// (its files are merged into this one: a snapshot never depends on another).
	Source string `json:"source"`
	Parent string `json:"parent,omitempty"`
	// Template and TemplateDigest name the root filesystem the layer goes over.
	Template       string `json:"template"`
	TemplateDigest string `json:"template_digest"`
	// Limits, DefaultUser and Workdir are the source's; sandboxes created from the snapshot take
	// the limits unless asked otherwise.
	Limits      Limits `json:"limits"`
	DefaultUser string `json:"default_user"`
	Workdir     string `json:"workdir"`
	// Digest is "sha256:" and the hex sha256 of the layer in its canonical tar form (what
	// `agent sandbox snapshot export` writes).
	Digest string `json:"digest"`
	// Entries counts the names in the layer (files, directories, links, whiteouts); Bytes is the
	// apparent size of its regular files.
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
	// Auto marks a snapshot made for a fork: GC deletes it once no sandbox uses it.
	Auto bool   `json:"auto,omitempty"`
	Note string `json:"note,omitempty"`
	// FrozenFor is how long the source was frozen (its files being copied); DigestFor how long
	// the digest took (after the source was thawed).
	FrozenFor time.Duration `json:"frozen_for"`
	DigestFor time.Duration `json:"digest_for"`
}

// SnapshotInfo is a snapshot with the sandboxes built on it.
type SnapshotInfo struct {
	Snapshot
	// UsedBy lists the sandboxes whose lower layer it is: it cannot be removed while they exist.
	UsedBy []string `json:"used_by"`
}

var snapIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidSnapshotID tells whether id is a well-formed snapshot id (or name).
func ValidSnapshotID(id string) bool { return snapIDRE.MatchString(id) }

// snapshot store layout: DataDir/snapshots/ID/{snapshot.json,layer/,lock}.
func (b *Backend) snapDir() string           { return filepath.Join(b.cfg.DataDir, "snapshots") }
func (b *Backend) snapPath(id string) string { return filepath.Join(b.snapDir(), id) }
func snapMeta(dir string) string             { return filepath.Join(dir, "snapshot.json") }
func snapLayer(dir string) string            { return filepath.Join(dir, "layer") }
func snapLock(dir string) string             { return filepath.Join(dir, "lock") }
func (p paths) snapLower() string            { return filepath.Join(p.dir, "snap") }

// SnapshotOptions configure Backend.Snapshot.
type SnapshotOptions struct {
	// ID names the snapshot (default: a random id). It must be unused.
	ID string
	// Note is kept in the snapshot's description.
	Note string
	// Memory asks for processes and memory too. Not implemented: it fails with
	// ErrNoMemorySnapshot, saying what CRIU this host has (see criu.go).
	Memory bool
	// Auto marks a snapshot made only to fork from: GC deletes it once no sandbox uses it.
	Auto bool
}

// Snapshot takes a persistent snapshot of the sandbox's files: its overlay upper layer (what it
// wrote, changed or deleted on top of its template), merged with the snapshot it was created
// from, if any. A running sandbox is frozen while its layer is copied and thawed afterwards; a
// paused one stays paused. Processes and memory are not kept.
// The snapshot survives this process and reboots; Create with Options.From starts new sandboxes
// from it.
func (b *Backend) Snapshot(ctx context.Context, id string, o SnapshotOptions) (*Snapshot, error) {
	if o.ID == "" {
		o.ID = newID()
	}
	if !ValidSnapshotID(o.ID) {
		return nil, fmt.Errorf("snapshot id %q: want lower-case letters, digits, '.', '_', '-': %w", o.ID, sandbox.ErrInvalid)
	}
	if o.Memory {
		return nil, &MemorySnapshotError{Status: b.CRIU(ctx)}
	}
	if _, err := os.Stat(b.snapPath(o.ID)); err == nil {
		return nil, fmt.Errorf("snapshot %s: %w", o.ID, sandbox.ErrExists)
	}
	if err := os.MkdirAll(b.snapDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating snapshot dir: %w", err)
	}
	tmp, err := os.MkdirTemp(b.snapDir(), ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("creating snapshot: %w", err)
	}
	// The lock marks the build as alive; GC removes builds whose lock is free.
	building, _, err := tryLock(snapLock(tmp), false)
	if err != nil || building == nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("creating snapshot: %v", err)
	}
	snap, err := b.buildSnapshot(ctx, id, o, tmp)
	if err == nil {
		err = publish(tmp, b.snapPath(o.ID))
	}
	building.Close()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	return snap, nil
}

func (b *Backend) buildSnapshot(ctx context.Context, id string, o SnapshotOptions, tmp string) (*Snapshot, error) {
	op, err := b.lockOp(ctx, id)
	if err != nil {
		return nil, err
	}
	opHeld := true
	defer func() {
		if opHeld {
			op.Close()
		}
	}()
	p := b.paths(id)
	rec, err := readRecord(p)
	if err != nil {
		return nil, fmt.Errorf("snapshot of sandbox %s: %w", id, err)
	}
	if rec.Phase != PhaseRunning && rec.Phase != PhasePaused {
		return nil, fmt.Errorf("sandbox %s is %s: %w", id, rec.Phase, sandbox.ErrInvalid)
	}
	snap := &Snapshot{
		ID: o.ID, Format: SnapshotFormat, Kind: KindFiles, Created: time.Now().UTC(), Source: id, Parent: rec.From,
		Template: rec.Template, TemplateDigest: rec.TemplateDigest, Limits: rec.Limits,
		DefaultUser: rec.DefaultUser, Workdir: rec.Workdir, Auto: o.Auto, Note: o.Note,
	}
	layer := snapLayer(tmp)
	if rec.From != "" {
		// The parent cannot go away: this sandbox uses it (see RemoveSnapshot).
		if err := cloneLayer(ctx, snapLayer(b.snapPath(rec.From)), layer); err != nil {
			return nil, fmt.Errorf("copying snapshot %s under the new one: %w", rec.From, err)
		}
	} else if err := os.Mkdir(layer, 0o755); err != nil {
		return nil, err
	}
	// After a reboot a kept sandbox's disk is no longer mounted; its files are still in the image.
	if !isMountPoint(p.disk()) {
		if err := (mounts.Disk{Image: p.image()}).Mount(p.disk()); err != nil {
			return nil, fmt.Errorf("mounting the disk of sandbox %s: %w", id, err)
		}
		defer mounts.Detach(p.disk())
	}
	rt, err := b.runtime(rec.Runtime)
	if err != nil {
		return nil, err
	}
	frozeAt := time.Now()
	thaw := func() error { return nil }
	if st, err := rt.State(ctx, id); err == nil && st.Status == "running" {
		if err := rt.Pause(ctx, id); err != nil {
			return nil, b.explain(ctx, rec, fmt.Errorf("freezing sandbox %s for a snapshot: %w", id, err))
		}
		thawed := false
		thaw = func() error {
			if thawed {
				return nil
			}
			thawed = true
			if err := rt.Resume(context.WithoutCancel(ctx), id); err != nil {
				return fmt.Errorf("thawing sandbox %s after a snapshot: %w", id, err)
			}
			return nil
		}
		defer thaw()
	}
	// Bound the copy by what the sandbox could have stored (sparse files count in full).
	budget := max(2*rec.Limits.DiskBytes, 1<<30)
	tplRoot := ""
	if tpl, err := b.templates.Get(rec.Template); err == nil {
		tplRoot = tpl.Rootfs()
	}
	if _, err := applyUpper(ctx, p.upper(), layer, tplRoot, rec.UIDBase, budget); err != nil {
		return nil, fmt.Errorf("copying the files of sandbox %s: %w", id, err)
	}
	if err := thaw(); err != nil {
		return nil, err
	}
	snap.FrozenFor = time.Since(frozeAt)
	op.Close()
	opHeld = false

	t0 := time.Now()
	h := sha256.New()
	st, err := writeLayerTar(ctx, layer, h)
	if err != nil {
		return nil, fmt.Errorf("digesting snapshot: %w", err)
	}
	snap.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	snap.Entries, snap.Bytes = st.Entries, st.Bytes
	snap.DigestFor = time.Since(t0)
	if err := writeJSON(snapMeta(tmp), snap); err != nil {
		return nil, err
	}
	// Durable before it is published: the snapshot must survive a crash or a reboot.
	if err := syncfs(tmp); err != nil {
		return nil, err
	}
	return snap, nil
}

// publish renames the finished build into place, refusing to replace an existing snapshot.
func publish(tmp, dst string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("snapshot %s: %w", filepath.Base(dst), sandbox.ErrExists)
		}
		return fmt.Errorf("publishing snapshot: %w", err)
	}
	return nil
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncing snapshot: %w", err)
	}
	return nil
}

func isMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(dir, &a) != nil || unix.Lstat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return os.Rename(tmp, path)
}

// maxSnapMeta bounds snapshot.json.
const maxSnapMeta = 1 << 20

func readSnapshot(dir string) (*Snapshot, error) {
	f, err := os.Open(snapMeta(dir))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSnapMeta))
	if err != nil {
		return nil, err
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("corrupt snapshot %s: %w", filepath.Base(dir), err)
	}
	if s.Format != SnapshotFormat {
		return nil, fmt.Errorf("snapshot %s has format %q; this agent reads %q", filepath.Base(dir), s.Format, SnapshotFormat)
	}
	return &s, nil
}

// GetSnapshot describes one snapshot.
func (b *Backend) GetSnapshot(ctx context.Context, id string) (*SnapshotInfo, error) {
	if !ValidSnapshotID(id) {
		return nil, fmt.Errorf("snapshot id %q: %w", id, sandbox.ErrInvalid)
	}
	s, err := readSnapshot(b.snapPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", id, sandbox.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &SnapshotInfo{Snapshot: *s, UsedBy: b.snapshotUsers()[id]}, nil
}

// Snapshots lists the snapshots of the data directory, oldest first.
func (b *Backend) Snapshots(ctx context.Context) ([]SnapshotInfo, error) {
	ents, err := os.ReadDir(b.snapDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	users := b.snapshotUsers()
	var out []SnapshotInfo
	for _, e := range ents {
		if !e.IsDir() || !ValidSnapshotID(e.Name()) {
			continue
		}
		s, err := readSnapshot(b.snapPath(e.Name()))
		if err != nil {
			b.log.Warn("skipping snapshot", "id", e.Name(), "err", err)
			continue
		}
		out = append(out, SnapshotInfo{Snapshot: *s, UsedBy: users[s.ID]})
	}
	slices.SortFunc(out, func(x, y SnapshotInfo) int { return x.Created.Compare(y.Created) })
	return out, nil
}

// snapshotUsers maps each snapshot to the sandboxes created from it.
func (b *Backend) snapshotUsers() map[string][]string {
	users := map[string][]string{}
	ents, _ := os.ReadDir(b.sbDir)
	for _, e := range ents {
		if !e.IsDir() || !ValidID(e.Name()) {
			continue
		}
		if rec, err := readRecord(b.paths(e.Name())); err == nil && rec.From != "" {
			users[rec.From] = append(users[rec.From], rec.ID)
		}
	}
	return users
}

// RemoveSnapshot deletes a snapshot. It refuses while a sandbox created from it exists (its
// layer is that sandbox's lower layer).
func (b *Backend) RemoveSnapshot(ctx context.Context, id string) error {
	if !ValidSnapshotID(id) {
		return fmt.Errorf("snapshot id %q: %w", id, sandbox.ErrInvalid)
	}
	dir := b.snapPath(id)
	if _, err := os.Stat(snapMeta(dir)); err != nil {
		return fmt.Errorf("snapshot %s: %w", id, sandbox.ErrNotFound)
	}
	l, err := waitLock(ctx, snapLock(dir), false, func() error { return nil })
	if err != nil {
		return err
	}
	defer l.Close()
	if users := b.snapshotUsers()[id]; len(users) > 0 {
		return fmt.Errorf("snapshot %s is the base of sandbox(es) %v; kill them first: %w", id, users, ErrSnapshotInUse)
	}
	return b.deleteSnapshotDir(dir)
}

// ErrSnapshotInUse: a snapshot cannot be removed while sandboxes are built on it.
var ErrSnapshotInUse = errors.New("snapshot in use")

func (b *Backend) deleteSnapshotDir(dir string) error {
	trash := filepath.Join(b.snapDir(), ".trash-"+filepath.Base(dir)+"-"+newID()[:6])
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("removing snapshot: %w", err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("removing snapshot: %w", err)
	}
	return nil
}

// ExportSnapshot writes the snapshot's layer as an OCI image layer tar (uncompressed); its sha256
// is the snapshot's digest.
func (b *Backend) ExportSnapshot(ctx context.Context, id string, w io.Writer) error {
	info, err := b.GetSnapshot(ctx, id)
	if err != nil {
		return err
	}
	_, err = writeLayerTar(ctx, snapLayer(b.snapPath(info.ID)), w)
	return err
}

// VerifySnapshot recomputes the snapshot's digest and compares it with the recorded one.
func (b *Backend) VerifySnapshot(ctx context.Context, id string) error {
	info, err := b.GetSnapshot(ctx, id)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := writeLayerTar(ctx, snapLayer(b.snapPath(info.ID)), h); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != info.Digest {
		return fmt.Errorf("snapshot %s: digest %s, recorded %s: it was modified or damaged", id, got, info.Digest)
	}
	return nil
}

// createFrom creates a sandbox whose lower layers are the snapshot's layer over its template.
// Unset options take the snapshot's template and limits. The snapshot's lock is held (shared) until
// the sandbox's record names it, so it cannot be removed meanwhile.
func (b *Backend) createFrom(ctx context.Context, o Options) (*Sandbox, error) {
	if !ValidSnapshotID(o.From) {
		return nil, fmt.Errorf("snapshot id %q: %w", o.From, sandbox.ErrInvalid)
	}
	dir := b.snapPath(o.From)
	l, err := waitLock(ctx, snapLock(dir), true, func() error {
		if _, err := os.Stat(snapMeta(dir)); err != nil {
			return fmt.Errorf("snapshot %s: %w", o.From, sandbox.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	snap, err := readSnapshot(dir)
	if err != nil {
		return nil, err
	}
	if o.Template == "" {
		o.Template = snap.Template
	} else if o.Template != snap.Template {
		return nil, fmt.Errorf("snapshot %s was taken over template %s, not %s: %w", snap.ID, snap.Template, o.Template, sandbox.ErrInvalid)
	}
	// Limits come from the snapshot; a lifetime is the request's (else the backend's default).
	lifetime := o.Limits.Lifetime
	o.Limits = o.Limits.withDefaults(snap.Limits)
	o.Limits.Lifetime = lifetime
	if tpl, err := b.templates.Get(snap.Template); err == nil && tpl.Digest != snap.TemplateDigest {
		b.log.Warn("template changed since the snapshot: its files go over the new template", "snapshot", snap.ID,
			"template", snap.Template, "snapshot_template_digest", snap.TemplateDigest, "template_digest", tpl.Digest)
	}
	return b.create(ctx, o, PhaseRunning)
}

// overlay mounts the sandbox's root: the template (already at p.lower()) and, for a sandbox
// created from a snapshot, the snapshot's layer idmapped above it.
func (b *Backend) overlay(p paths, rec *Record, ns *mounts.UserNS) error {
	if rec.From == "" {
		return mounts.Overlay(p.lower(), p.upper(), p.work(), p.rootfs())
	}
	if err := os.Mkdir(p.snapLower(), 0o700); err != nil {
		return fmt.Errorf("creating snapshot mount point: %w", err)
	}
	if err := mounts.BindIDMapped(snapLayer(b.snapPath(rec.From)), p.snapLower(), ns, mounts.Attr{ReadOnly: true, NoDev: true}); err != nil {
		return err
	}
	if err := mounts.OverlayLayers([]string{p.snapLower(), p.lower()}, p.upper(), p.work(), p.rootfs()); err != nil {
		return err
	}
	// The overlay holds its own reference to the layer.
	return mounts.Detach(p.snapLower())
}

// GCOptions configure Backend.GCWith.
type GCOptions struct {
	// OlderThan reclaims kept sandboxes paused for longer than this.
	OlderThan time.Duration
	// Snapshots also deletes snapshots created more than OlderThan ago that no sandbox uses.
	Snapshots bool
}

// autoSnapshotGrace protects a fresh automatic snapshot until its forks have recorded it.
const autoSnapshotGrace = 10 * time.Minute

// gcSnapshots deletes abandoned snapshot builds, automatic snapshots nothing uses, and with
// o.Snapshots snapshots older than o.OlderThan nothing uses.
func (b *Backend) gcSnapshots(ctx context.Context, o GCOptions, _ map[string]bool) ([]string, error) {
	ents, err := os.ReadDir(b.snapDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	now := time.Now()
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		name := e.Name()
		dir := filepath.Join(b.snapDir(), name)
		if !e.IsDir() {
			continue
		}
		if strings.HasPrefix(name, ".trash-") {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if strings.HasPrefix(name, ".tmp-") {
			// A build whose process died: its lock is free (a fresh one may not hold it yet).
			if fi, err := os.Stat(dir); err != nil || now.Sub(fi.ModTime()) < time.Minute {
				continue
			}
			if l, ok, _ := tryLock(snapLock(dir), false); ok {
				if err := os.RemoveAll(dir); err != nil {
					errs = append(errs, err)
				}
				l.Close()
			}
			continue
		}
		if !ValidSnapshotID(name) {
			continue
		}
		s, err := readSnapshot(dir)
		if err != nil {
			continue
		}
		age := now.Sub(s.Created)
		stale := (s.Auto && age > autoSnapshotGrace) || (o.Snapshots && o.OlderThan > 0 && age > o.OlderThan)
		if !stale {
			continue
		}
		l, ok, err := tryLock(snapLock(dir), false)
		if err != nil || !ok {
			continue // a sandbox is being created from it
		}
		if len(b.snapshotUsers()[name]) == 0 {
			if err := b.deleteSnapshotDir(dir); err != nil {
				errs = append(errs, err)
			} else {
				out = append(out, name)
			}
		}
		l.Close()
	}
	return out, errors.Join(errs...)
}
