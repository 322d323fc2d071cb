// Package fsroot gives envd a world root: every client path is resolved inside one directory with
// openat2(RESOLVE_IN_ROOT), so "..", absolute symlinks and races cannot reach outside it. As PID 1 of
// a sandbox the root is "/"; standalone (tests) it is a host directory, and the same code confines it.
//
// Every operation is relative to a descriptor: the root's, or that of a parent directory opened
// through it. No host path is ever built from a client path, so a symlink swapped in between two
// steps can at worst redirect an operation to another place inside the root.
package fsroot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by operations on a closed Root.
var ErrClosed = errors.New("world root is closed")

// ErrTooMany is returned by Walk when a tree has more entries than the caller allowed.
var ErrTooMany = errors.New("too many directory entries")

const (
	// maxResolveRetries bounds openat2 retries on EAGAIN/EINTR. With RESOLVE_IN_ROOT the kernel
	// answers EAGAIN when a concurrent rename might have let ".." escape; a hostile rename loop must
	// not make envd spin forever.
	maxResolveRetries = 128
	// maxSymlinks is the kernel's MAXSYMLINKS: Realpath gives up (ELOOP) after as many hops.
	maxSymlinks = 40
	// removeHeldDepth is how deep RemoveAll recurses holding one descriptor per level. Deeper trees
	// (a sandbox can nest directories without limit) are removed with a constant number of
	// descriptors, so envd never runs out of them under a low RLIMIT_NOFILE.
	removeHeldDepth = 64
	// MaxWalkDepth bounds Walk's depth: it holds one descriptor per level.
	MaxWalkDepth = 128
	// maxDeepRounds bounds removeDeep: each round removes one directory.
	maxDeepRounds = 1 << 22
)

// Root is an open world root. Safe for concurrent use.
type Root struct {
	dir string

	// The descriptor is reference counted so Close never releases it while an operation is using
	// it: a reused descriptor number would otherwise silently become another directory's root.
	mu     sync.Mutex
	fd     int
	refs   int
	closed bool
}

// Open opens dir as a world root.
func Open(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open world root %s: %w", dir, err)
	}
	return &Root{dir: dir, fd: fd}, nil
}

// Close releases the root. Operations in flight finish first; later ones fail with ErrClosed.
func (r *Root) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.refs == 0 {
		return unix.Close(r.fd)
	}
	return nil
}

func (r *Root) acquire() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return -1, ErrClosed
	}
	r.refs++
	return r.fd, nil
}

func (r *Root) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs--
	if r.closed && r.refs == 0 {
		_ = unix.Close(r.fd)
	}
}

// Dir is the host directory of the root.
func (r *Root) Dir() string { return r.dir }

// Abs turns a client path into a clean absolute world path, as envd does: "" is home, "~" and "~/x"
// are taken from home, other relative paths are relative to home. "~name" (another user's home) is
// refused, as envd refuses it, and so are NUL bytes and invalid UTF-8.
func Abs(p, home string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: path contains NUL", fs.ErrInvalid)
	}
	if !utf8.ValidString(p) {
		// The protocol carries paths in JSON and protobuf strings, which are UTF-8: a file named
		// otherwise could be created but never reported or addressed again.
		return "", fmt.Errorf("%w: path is not valid UTF-8", fs.ErrInvalid)
	}
	switch {
	case p == "" || p == "~":
		p = home
	case strings.HasPrefix(p, "~/"):
		p = path.Join(home, p[2:])
	case p[0] == '~':
		return "", fmt.Errorf("%w: cannot expand another user's home directory in %q", fs.ErrInvalid, p)
	case !path.IsAbs(p):
		p = path.Join(home, p)
	}
	return path.Clean("/" + p), nil
}

// HostPath is the host path of a world path. It is only for handing a directory to a process as its
// cwd; file operations go through the Root's methods.
func (r *Root) HostPath(world string) string {
	if r.dir == "/" {
		return path.Clean("/" + world)
	}
	return path.Join(r.dir, world)
}

func rel(world string) string {
	p := strings.TrimLeft(path.Clean("/"+world), "/")
	if p == "" {
		return "."
	}
	return p
}

func (r *Root) openat2(world string, flags int, mode uint32, resolve uint64) (int, error) {
	if flags&(unix.O_CREAT|unix.O_TMPFILE) == 0 {
		// openat2 refuses a mode without O_CREAT/O_TMPFILE (EINVAL), unlike open(2).
		mode = 0
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | resolve,
	}
	rootfd, err := r.acquire()
	if err != nil {
		return -1, err
	}
	defer r.release()
	for range maxResolveRetries {
		fd, err := unix.Openat2(rootfd, rel(world), &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.ENOSYS && r.dir == "/" {
			// Kernels without openat2 (gVisor before 2023): when the world root is the process's
			// own root (envd as a sandbox's init), resolving from "/" cannot leave it — ".." stops
			// at "/" and absolute symlinks start there — so plain openat confines the same way.
			// Magic links are then followed, which inside a sandbox reach only what its own
			// processes hold open.
			return unix.Openat(rootfd, rel(world), flags|unix.O_CLOEXEC, mode)
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// OpenFile opens a file, following symlinks only inside the root. Opening never blocks and never
// acquires a controlling terminal: except for O_PATH opens, O_NONBLOCK and O_NOCTTY are added, so a
// FIFO planted by the sandbox cannot hang envd (the returned *os.File uses the runtime poller for
// such files; regular files ignore O_NONBLOCK).
func (r *Root) OpenFile(world string, flag int, perm os.FileMode) (*os.File, error) {
	if flag&unix.O_PATH == 0 {
		flag |= unix.O_NONBLOCK | unix.O_NOCTTY
	}
	fd, err := r.openat2(world, flag, uint32(perm.Perm()), 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: world, Err: err}
	}
	// The file is named by its world path: error texts reach clients and must not reveal the host
	// layout.
	return os.NewFile(uintptr(fd), path.Clean("/"+world)), nil
}

// OpenPath opens an O_PATH descriptor of world (following symlinks inside the root).
func (r *Root) OpenPath(world string) (*os.File, error) {
	return r.OpenFile(world, unix.O_PATH, 0)
}

// parent opens the parent directory of world and returns it with the final component.
func (r *Root) parent(world string) (*os.File, string, error) {
	clean := path.Clean("/" + world)
	if clean == "/" {
		return nil, "", &fs.PathError{Op: "resolve", Path: world, Err: fs.ErrInvalid}
	}
	dir, base := path.Split(clean)
	f, err := r.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, "", err
	}
	return f, base, nil
}

// Lstat describes world without following a final symlink.
func (r *Root) Lstat(world string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if path.Clean("/"+world) == "/" {
		rootfd, err := r.acquire()
		if err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: world, Err: err}
		}
		defer r.release()
		if err := unix.Fstat(rootfd, &st); err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: world, Err: err}
		}
		return &st, nil
	}
	dir, base, err := r.parent(world)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	if err := unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: world, Err: err}
	}
	return &st, nil
}

// Stat describes world, following symlinks inside the root.
func (r *Root) Stat(world string) (*unix.Stat_t, error) {
	f, err := r.OpenPath(world)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: world, Err: err}
	}
	return &st, nil
}

// Readlink reads a symlink's target as stored (not resolved).
func (r *Root) Readlink(world string) (string, error) {
	dir, base, err := r.parent(world)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(dir.Fd()), base, buf)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: world, Err: err}
	}
	return string(buf[:n]), nil
}

// Realpath resolves every symlink in world the way OpenFile does ("/" and ".." stop
// at the root, absolute targets start at the root) and returns the resulting world path. The final
// component need not be a directory but must exist. It is for reporting (EntryInfo.symlink_target);
// operations must not re-resolve its answer on the host.
func (r *Root) Realpath(world string) (string, error) {
	// The world path itself is clean (lexical ".." like every other operation); only symlink targets
	// are resolved component by component, as the kernel does.
	todo := splitPath(path.Clean("/" + world))
	resolved := "/"
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, c)
		st, err := r.Lstat(next)
		if err != nil {
			return "", &fs.PathError{Op: "realpath", Path: world, Err: errors.Unwrap(err)}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			hops++
			if hops > maxSymlinks {
				return "", &fs.PathError{Op: "realpath", Path: world, Err: unix.ELOOP}
			}
			target, err := r.Readlink(next)
			if err != nil {
				return "", &fs.PathError{Op: "realpath", Path: world, Err: errors.Unwrap(err)}
			}
			if strings.HasPrefix(target, "/") {
				resolved = "/"
			}
			todo = append(splitPath(target), todo...)
			if len(todo) > unix.PathMax {
				return "", &fs.PathError{Op: "realpath", Path: world, Err: unix.ENAMETOOLONG}
			}
		case unix.S_IFDIR:
			resolved = next
		default:
			if hasMore(todo) {
				return "", &fs.PathError{Op: "realpath", Path: world, Err: unix.ENOTDIR}
			}
			resolved = next
		}
	}
	return resolved, nil
}

func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
}

// hasMore reports whether components remain that would make the kernel require a directory.
func hasMore(todo []string) bool {
	for _, c := range todo {
		if c != "" {
			return true
		}
	}
	return false
}

// Mkdir creates one directory owned by uid:gid (ownership is skipped when uid < 0).
func (r *Root) Mkdir(world string, perm os.FileMode, uid, gid int) error {
	dir, base, err := r.parent(world)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Mkdirat(int(dir.Fd()), base, uint32(perm.Perm())); err != nil {
		return &fs.PathError{Op: "mkdir", Path: world, Err: err}
	}
	if uid >= 0 {
		// By name with AT_SYMLINK_NOFOLLOW: there is no mkdir that returns a descriptor. A swapped-in
		// symlink gets the ownership instead of its target; the user could only have swapped names in
		// a directory it can already write.
		if err := unix.Fchownat(int(dir.Fd()), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "chown", Path: world, Err: err}
		}
	}
	return nil
}

// MkdirAll creates world and missing parents, each new one owned by uid:gid (uid < 0: not changed).
// It reports whether the final directory was created. An existing non-directory anywhere on the
// way fails with ENOTDIR.
func (r *Root) MkdirAll(world string, perm os.FileMode, uid, gid int) (bool, error) {
	clean := path.Clean("/" + world)
	// Find the deepest existing ancestor first (iteratively: a path can have thousands of parts).
	var missing []string
	cur := clean
	for {
		st, err := r.Stat(cur)
		if err == nil {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return false, &fs.PathError{Op: "mkdir", Path: cur, Err: unix.ENOTDIR}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || cur == "/" {
			return false, err
		}
		missing = append(missing, cur)
		cur = path.Dir(cur)
	}
	created := false
	for i := len(missing) - 1; i >= 0; i-- {
		err := r.Mkdir(missing[i], perm, uid, gid)
		created = err == nil
		if errors.Is(err, fs.ErrExist) {
			// Created concurrently, or a dangling symlink occupies the name: only a directory will do.
			st, serr := r.Stat(missing[i])
			if serr != nil {
				return false, err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return false, &fs.PathError{Op: "mkdir", Path: missing[i], Err: unix.ENOTDIR}
			}
			continue
		}
		if err != nil {
			return false, err
		}
	}
	return created, nil
}

// Remove deletes a file, a symlink (not its target) or an empty directory.
func (r *Root) Remove(world string) error {
	dir, base, err := r.parent(world)
	if err != nil {
		return err
	}
	defer dir.Close()
	err = unix.Unlinkat(int(dir.Fd()), base, 0)
	if err == unix.EISDIR {
		err = unix.Unlinkat(int(dir.Fd()), base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &fs.PathError{Op: "remove", Path: world, Err: err}
	}
	return nil
}

// RemoveAll deletes world and everything below it without following symlinks (a symlink is
// removed, not its target).
func (r *Root) RemoveAll(world string) error {
	dir, base, err := r.parent(world)
	if err != nil {
		return err
	}
	defer dir.Close()
	return removeAt(int(dir.Fd()), base, path.Clean("/"+world), 0)
}

// removeAt removes name under the directory dirfd recursively, never leaving dirfd's subtree: every
// step is an *at call on a single component with O_NOFOLLOW.
func removeAt(dirfd int, name, world string, depth int) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil {
		return nil
	}
	if err != unix.EISDIR {
		return &fs.PathError{Op: "remove", Path: world, Err: err}
	}
	if depth >= removeHeldDepth {
		return removeDeep(dirfd, name, world)
	}
	// Entries can appear while we delete (a sandbox process writing); a few rounds settle it.
	for round := 0; ; round++ {
		if err := removeChildren(dirfd, name, world, depth); err != nil {
			return err
		}
		err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.ENOTEMPTY || round >= 3 {
			return &fs.PathError{Op: "remove", Path: world, Err: err}
		}
	}
}

func removeChildren(dirfd int, name, world string, depth int) error {
	d, err := openDirAt(dirfd, name, world)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer d.Close()
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			if err := removeAt(int(d.Fd()), n, path.Join(world, n), depth+1); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			return nil
		}
	}
}

// removeDeep removes the directory name under dirfd holding at most three descriptors however
// deep the tree is: it repeatedly walks down to a directory without subdirectories, empties it and
// removes it.
func removeDeep(dirfd int, name, world string) error {
	for range maxDeepRounds {
		parent, err := unix.Dup(dirfd)
		if err != nil {
			return &fs.PathError{Op: "remove", Path: world, Err: err}
		}
		curName, curWorld := name, world
		for {
			cur, err := openDirAt(parent, curName, curWorld)
			if err != nil {
				unix.Close(parent)
				if errors.Is(err, fs.ErrNotExist) && curWorld == world {
					return nil
				}
				if errors.Is(err, fs.ErrNotExist) {
					break // raced with another remover; start over
				}
				return err
			}
			sub, err := emptyButDirs(cur, curWorld)
			if err != nil {
				cur.Close()
				unix.Close(parent)
				return err
			}
			if sub == "" {
				cur.Close()
				err := unix.Unlinkat(parent, curName, unix.AT_REMOVEDIR)
				unix.Close(parent)
				if err != nil && err != unix.ENOENT && err != unix.ENOTEMPTY {
					return &fs.PathError{Op: "remove", Path: curWorld, Err: err}
				}
				if curWorld == world && err == nil {
					return nil
				}
				break
			}
			nextParent, err := unix.Dup(int(cur.Fd()))
			cur.Close()
			unix.Close(parent)
			if err != nil {
				return &fs.PathError{Op: "remove", Path: curWorld, Err: err}
			}
			parent, curName, curWorld = nextParent, sub, path.Join(curWorld, sub)
		}
	}
	return &fs.PathError{Op: "remove", Path: world, Err: unix.EAGAIN}
}

// emptyButDirs unlinks every non-directory in d and returns the name of one subdirectory, or "".
func emptyButDirs(d *os.File, world string) (string, error) {
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			err := unix.Unlinkat(int(d.Fd()), n, 0)
			if err == unix.EISDIR {
				return n, nil
			}
			if err != nil && err != unix.ENOENT {
				return "", &fs.PathError{Op: "remove", Path: path.Join(world, n), Err: err}
			}
		}
		if rerr != nil || len(names) == 0 {
			return "", nil
		}
	}
}

func openDirAt(dirfd int, name, world string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: world, Err: err}
	}
	return os.NewFile(uintptr(fd), world), nil
}

// Rename moves from to to, both inside the root. A symlink is moved, not its target.
func (r *Root) Rename(from, to string) error {
	fdir, fbase, err := r.parent(from)
	if err != nil {
		return err
	}
	defer fdir.Close()
	tdir, tbase, err := r.parent(to)
	if err != nil {
		return err
	}
	defer tdir.Close()
	if err := unix.Renameat(int(fdir.Fd()), fbase, int(tdir.Fd()), tbase); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// ReadDir lists the names in a directory.
func (r *Root) ReadDir(world string) ([]string, error) {
	f, err := r.OpenFile(world, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// Lchown changes the owner of world without following a final symlink.
func (r *Root) Lchown(world string, uid, gid int) error {
	dir, base, err := r.parent(world)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Fchownat(int(dir.Fd()), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "chown", Path: world, Err: err}
	}
	return nil
}

// WalkFunc is called by Walk for every entry below the start directory, in lexical pre-order. rel
// is the slash-separated path relative to the start; st describes the entry itself (not a
// symlink's target).
type WalkFunc func(rel string, st *unix.Stat_t) error

// Walk visits the tree below world (which itself may be reached through symlinks inside the root)
// down to maxDepth levels (1 = the directory's own entries; capped at MaxWalkDepth). It never
// follows a symlink below world: every step is an *at call with O_NOFOLLOW on one component.
// Reading more than maxEntries names in total fails with ErrTooMany. Entries that vanish while
// walking are skipped.
func (r *Root) Walk(world string, maxDepth, maxEntries int, fn WalkFunc) error {
	maxDepth = min(maxDepth, MaxWalkDepth)
	if maxDepth < 1 {
		return nil
	}
	d, err := r.OpenFile(world, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	budget := maxEntries
	return walkDir(d, "", path.Clean("/"+world), 1, maxDepth, &budget, fn)
}

func walkDir(d *os.File, relDir, world string, depth, maxDepth int, budget *int, fn WalkFunc) error {
	var names []string
	for {
		batch, rerr := d.Readdirnames(1024)
		*budget -= len(batch)
		if *budget < 0 {
			return &fs.PathError{Op: "readdir", Path: world, Err: ErrTooMany}
		}
		names = append(names, batch...)
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(batch) == 0) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read directory %s: %w", world, rerr)
		}
	}
	slices.Sort(names)
	dirfd := int(d.Fd())
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue
			}
			return &fs.PathError{Op: "lstat", Path: path.Join(world, n), Err: err}
		}
		relPath := n
		if relDir != "" {
			relPath = relDir + "/" + n
		}
		if err := fn(relPath, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || depth >= maxDepth {
			continue
		}
		sub, err := openDirAt(dirfd, n, path.Join(world, n))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				continue // replaced while walking
			}
			return err
		}
		err = walkDir(sub, relPath, path.Join(world, n), depth+1, maxDepth, budget, fn)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
