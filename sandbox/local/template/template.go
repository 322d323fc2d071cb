// Package template builds, stores and describes the root filesystems sandboxes start from. A
// template is a directory tree (read-only lower layer of every sandbox's overlay) plus metadata,
// optionally with host directories bound read-only into it at sandbox start ("host" template).
// Builds are serialized per template by a file lock so concurrent processes never build twice.
package template

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/local/mounts"
)

// Well-known template names.
const (
	Host   = "host"
	Debian = "debian"
)

// Meta describes a built template.
type Meta struct {
	Name string `json:"name"`
	// Digest identifies the content (sha256 over paths, modes, owners, sizes and file contents).
	Digest  string    `json:"digest"`
	Created time.Time `json:"created"`
	// DefaultUser runs commands that name no user; Workdir is where they start.
	DefaultUser string `json:"default_user"`
	Workdir     string `json:"workdir"`
	// HostBinds are host directories bound read-only at the same path inside every sandbox.
	HostBinds []string `json:"host_binds,omitempty"`
	// SizeBytes is the size of the tree on disk (host binds not counted).
	SizeBytes int64 `json:"size_bytes"`
}

// Template is a built template on disk.
type Template struct {
	Meta
	// Dir holds meta.json and rootfs/.
	Dir string
}

// Rootfs is the template's tree, the sandbox overlay's lower layer.
func (t *Template) Rootfs() string { return filepath.Join(t.Dir, "rootfs") }

// Progress is reported while a template builds.
type Progress struct {
	Template string
	Phase    string
	Elapsed  time.Duration
	// SizeBytes is the size written so far.
	SizeBytes int64
}

// Builder builds one template's tree into dir/rootfs and returns its metadata (Name, Digest and
// Created are filled in by the store).
type Builder interface {
	Build(ctx context.Context, rootfs string, progress func(phase string)) (Meta, error)
}

// ErrNotBuilt is returned by Get for a known template that has not been built yet.
var ErrNotBuilt = errors.New("template not built")

// ErrUnknown is returned for a template name no builder knows.
var ErrUnknown = errors.New("unknown template")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Store keeps templates under a directory.
type Store struct {
	dir      string
	builders map[string]Builder
}

// NewStore returns a store at dir with the given builders by name.
func NewStore(dir string, builders map[string]Builder) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating template dir: %w", err)
	}
	return &Store{dir: dir, builders: builders}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Known lists the names the store can build.
func (s *Store) Known() []string {
	var out []string
	for n := range s.builders {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Get returns a built template.
func (s *Store) Get(name string) (*Template, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("template %q: %w", name, ErrUnknown)
	}
	dir := filepath.Join(s.dir, name)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		if _, ok := s.builders[name]; ok {
			return nil, fmt.Errorf("template %q: %w (run `agent template build %s`)", name, ErrNotBuilt, name)
		}
		return nil, fmt.Errorf("template %q: %w (known: %v)", name, ErrUnknown, s.Known())
	}
	if err != nil {
		return nil, fmt.Errorf("reading template %q: %w", name, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("template %q: corrupt meta.json: %w", name, err)
	}
	return &Template{Meta: m, Dir: dir}, nil
}

// List returns the built templates.
func (s *Store) List() ([]*Template, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	var out []*Template
	for _, e := range ents {
		if !e.IsDir() || !nameRE.MatchString(e.Name()) {
			continue
		}
		t, err := s.Get(e.Name())
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// Ensure returns the template, building it first when needed. Concurrent callers (in any process)
// wait for one build. progress, when set, is called during a build.
func (s *Store) Ensure(ctx context.Context, name string, progress func(Progress)) (*Template, error) {
	if t, err := s.Get(name); err == nil || !errors.Is(err, ErrNotBuilt) {
		return t, err
	}
	return s.Build(ctx, name, false, progress)
}

// Build builds the template (again when force is set), replacing the old tree atomically.
func (s *Store) Build(ctx context.Context, name string, force bool, progress func(Progress)) (*Template, error) {
	b, ok := s.builders[name]
	if !ok || !nameRE.MatchString(name) {
		return nil, fmt.Errorf("template %q: %w (known: %v)", name, ErrUnknown, s.Known())
	}
	start := time.Now()
	report := func(phase string, dir string) {
		if progress != nil {
			progress(Progress{Template: name, Phase: phase, Elapsed: time.Since(start), SizeBytes: duBytes(dir)})
		}
	}
	unlock, err := s.lock(ctx, name, func() { report("waiting for another build", "") })
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !force {
		if t, err := s.Get(name); err == nil {
			return t, nil // built by someone else while we waited
		}
	}
	tmp, err := os.MkdirTemp(s.dir, "."+name+".build-")
	if err != nil {
		return nil, fmt.Errorf("creating build dir: %w", err)
	}
	// A failed or interrupted build may leave mounts in the tree (debootstrap mounts /proc in
	// it and does not always unmount it): detach them before deleting anything.
	defer removeBuildDir(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("build dir: %w", err)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("build dir: %w", err)
	}
	// Report progress at least every second while the builder works.
	phase := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cur := "starting"
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case p, ok := <-phase:
				if !ok {
					return
				}
				cur = p
				report(cur, rootfs)
			case <-t.C:
				report(cur, rootfs)
			}
		}
	}()
	m, err := b.Build(ctx, rootfs, func(p string) {
		select {
		case phase <- p:
		default:
		}
	})
	close(phase)
	<-done
	if err != nil {
		return nil, fmt.Errorf("building template %q: %w", name, err)
	}
	if progress != nil {
		progress(Progress{Template: name, Phase: "digest", Elapsed: time.Since(start)})
	}
	m.Name = name
	m.Created = time.Now().UTC().Truncate(time.Second)
	if m.Digest, m.SizeBytes, err = Digest(ctx, rootfs); err != nil {
		return nil, err
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), mb, 0o644); err != nil {
		return nil, fmt.Errorf("writing template metadata: %w", err)
	}
	final := filepath.Join(s.dir, name)
	if _, err := os.Stat(final); err == nil {
		if err := s.trash(name); err != nil {
			return nil, fmt.Errorf("replacing template: %w", err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("installing template: %w", err)
	}
	if progress != nil {
		progress(Progress{Template: name, Phase: "done", Elapsed: time.Since(start), SizeBytes: m.SizeBytes})
	}
	return s.Get(name)
}

// Remove deletes a built template. Running sandboxes keep their view of it until they end: the tree
// is moved aside and deleted by Sweep once unused.
func (s *Store) Remove(ctx context.Context, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("template %q: %w", name, ErrUnknown)
	}
	unlock, err := s.lock(ctx, name, nil)
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(s.dir, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("template %q: %w", name, ErrNotBuilt)
	}
	return s.trash(name)
}

// trashPrefix marks replaced or removed template trees that running sandboxes may still use.
const trashPrefix = ".trash-"

// trash moves a template out of the way; Sweep deletes it once no sandbox uses it. Deleting it at
// once would pull files from under the overlays of running sandboxes.
func (s *Store) trash(name string) error {
	dst := filepath.Join(s.dir, fmt.Sprintf("%s%s-%d", trashPrefix, name, time.Now().UnixNano()))
	if err := os.Rename(filepath.Join(s.dir, name), dst); err != nil {
		return fmt.Errorf("removing template %q: %w", name, err)
	}
	return nil
}

// Sweep deletes trashed template trees whose digest inUse does not report, and leftovers of
// builds that died. It returns the names it deleted.
func (s *Store) Sweep(inUse func(digest string) bool) []string {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		p := filepath.Join(s.dir, n)
		switch {
		case strings.HasPrefix(n, trashPrefix):
			var m Meta
			if b, err := os.ReadFile(filepath.Join(p, "meta.json")); err == nil && json.Unmarshal(b, &m) == nil && inUse(m.Digest) {
				continue
			}
		case strings.Contains(n, ".build-") && strings.HasPrefix(n, "."):
			// A build in progress holds its template's lock.
			name := strings.TrimPrefix(n[:strings.Index(n, ".build-")], ".")
			unlock, err := s.tryLock(name)
			if err != nil || unlock == nil {
				continue
			}
			unlock()
		default:
			continue
		}
		if removeBuildDir(p) == nil {
			out = append(out, n)
		}
	}
	return out
}

// removeBuildDir detaches every mount under dir, then deletes it; it refuses when a mount stays.
func removeBuildDir(dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := mounts.UnmountAll(ctx, dir); err != nil {
		return err
	}
	return mounts.RemoveTree(dir)
}

// tryLock takes a template's build lock without waiting; nil when another holds it.
func (s *Store) tryLock(name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "."+name+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, nil
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// lock takes the template's build lock, polling so ctx can end the wait.
func (s *Store) lock(ctx context.Context, name string, waiting func()) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "."+name+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening template lock: %w", err)
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking template %q: %w", name, err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for template %q build lock: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// duBytes sums the allocated size of files under dir (0 when dir is empty or gone).
func duBytes(dir string) int64 {
	if dir == "" {
		return 0
	}
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
