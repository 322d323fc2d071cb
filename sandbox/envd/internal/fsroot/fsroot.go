// Package fsroot gives envd a world root: every client path is resolved inside one directory with
// openat2(RESOLVE_IN_ROOT), so "..", absolute symlinks and races cannot reach outside it. As PID 1 of
// a sandbox the root is "/"; standalone (tests) it is a host directory, and the same code confines it.
package fsroot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is an open world root. Safe for concurrent use.
type Root struct {
	dir string
	fd  int
}

// Open opens dir as a world root.
func Open(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open world root %s: %w", dir, err)
	}
	return &Root{dir: dir, fd: fd}, nil
}

// Close releases the root.
func (r *Root) Close() error { return unix.Close(r.fd) }

// Dir is the host directory of the root.
func (r *Root) Dir() string { return r.dir }

// Abs turns a client path into a clean absolute world path. "~" and "~/x" are taken from home, and
// relative paths are relative to home, as envd does.
func Abs(p, home string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: path contains NUL", fs.ErrInvalid)
	}
	switch {
	case p == "~":
		p = home
	case strings.HasPrefix(p, "~/"):
		p = path.Join(home, p[2:])
	case p == "":
		return "", fmt.Errorf("%w: empty path", fs.ErrInvalid)
	case !path.IsAbs(p):
		p = path.Join(home, p)
	}
	return path.Clean("/" + p), nil
}

// HostPath is the host path of a world path. It is only for handing a directory to a process as its
// cwd; file operations go through the Root's methods.
func (r *Root) HostPath(world string) string {
	if r.dir == "/" {
		return world
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
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | resolve,
	}
	for {
		fd, err := unix.Openat2(r.fd, rel(world), &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// OpenFile opens a file, following symlinks only inside the root.
func (r *Root) OpenFile(world string, flag int, perm os.FileMode) (*os.File, error) {
	fd, err := r.openat2(world, flag, uint32(perm.Perm()), 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: world, Err: err}
	}
	return os.NewFile(uintptr(fd), r.HostPath(world)), nil
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
		if err := unix.Fstat(r.fd, &st); err != nil {
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
		if err := unix.Fchownat(int(dir.Fd()), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "chown", Path: world, Err: err}
		}
	}
	return nil
}

// MkdirAll creates world and missing parents, each new one owned by uid:gid. It reports whether the
// final directory was created.
func (r *Root) MkdirAll(world string, perm os.FileMode, uid, gid int) (bool, error) {
	clean := path.Clean("/" + world)
	if st, err := r.Stat(clean); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return false, &fs.PathError{Op: "mkdir", Path: world, Err: unix.ENOTDIR}
		}
		return false, nil
	}
	if clean != "/" {
		if _, err := r.MkdirAll(path.Dir(clean), perm, uid, gid); err != nil {
			return false, err
		}
	}
	err := r.Mkdir(clean, perm, uid, gid)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	return err == nil, err
}

// Remove deletes a file, a symlink (not its target) or an empty directory.
func (r *Root) Remove(world string) error {
	dir, base, err := r.parent(world)
	if err != nil {
		return err
	}
	defer dir.Close()
	err = unix.Unlinkat(int(dir.Fd()), base, 0)
	if err == unix.EISDIR || err == unix.EPERM {
		err = unix.Unlinkat(int(dir.Fd()), base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &fs.PathError{Op: "remove", Path: world, Err: err}
	}
	return nil
}

// RemoveAll deletes world and everything below it without following symlinks.
func (r *Root) RemoveAll(world string) error {
	dir, base, err := r.parent(world)
	if err != nil {
		return err
	}
	defer dir.Close()
	return removeAt(int(dir.Fd()), base, world)
}

// removeAt removes name under the directory dirfd recursively, never leaving dirfd's subtree.
func removeAt(dirfd int, name, world string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return &fs.PathError{Op: "remove", Path: world, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: world, Err: err}
	}
	d := os.NewFile(uintptr(fd), world)
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			if err := removeAt(fd, n, path.Join(world, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				d.Close()
				return err
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	d.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil {
		return &fs.PathError{Op: "remove", Path: world, Err: err}
	}
	return nil
}

// Rename moves from to to, both inside the root.
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
