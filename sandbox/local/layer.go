package local

// Layer trees: copying a sandbox's overlay upper directory into a snapshot layer, cloning a layer
// with hard links, and the canonical tar form whose sha256 is a snapshot's digest.
//
// Every walk goes through directory file descriptors opened with O_NOFOLLOW, and every name is
// resolved only in the directory that holds it: no symlink a sandbox made is ever followed on the
// host, and a name cannot climb out of the tree.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxLayerDepth bounds directory nesting in a layer (each level holds a file descriptor).
const maxLayerDepth = 512

// Overlay's extended attributes (the overlay is mounted by host root, so "trusted.").
const (
	xattrOpaque   = "trusted.overlay.opaque"
	xattrRedirect = "trusted.overlay.redirect"
	xattrMetacopy = "trusted.overlay.metacopy"
)

// layerStats counts what a layer holds.
type layerStats struct {
	// Entries counts every name (directories, files, links, whiteouts).
	Entries int64
	// Bytes is the apparent size of the regular files (each inode once).
	Bytes int64
}

// applier copies an overlay upper directory onto a layer tree, the way overlayfs would see the
// upper over the layer: whiteouts remove what they hide, opaque directories replace the directory
// below, other directories merge, everything else replaces. Applied onto an empty tree it is a
// copy.
//
// A whiteout stays in the layer only where the template below has the name to hide: overlayfs
// lists a directory that exists in a single layer without filtering, so a whiteout hiding nothing
// would show up as a broken name.
type applier struct {
	ctx context.Context
	// uidBase is subtracted from owners: layers hold sandbox-relative ids (0..UIDRange-1).
	uidBase uint32
	dev     uint64
	dstRoot int
	// tplRoot is the template's tree (-1: unknown, keep every whiteout).
	tplRoot int
	// budget bounds the apparent bytes copied: a sparse file costs nothing on a sandbox's disk but
	// its full size in the digest's tar stream.
	budget int64
	// links maps an inode of the source to where its first copy went, to keep hard links.
	links map[uint64]string
	stats layerStats
	buf   []byte
}

// applyUpper applies the upper directory src onto the layer tree dst (an existing directory) that
// goes over the template tree tpl ("" when unknown).
func applyUpper(ctx context.Context, src, dst, tpl string, uidBase uint32, budget int64) (layerStats, error) {
	sfd, err := openDir(unix.AT_FDCWD, src)
	if err != nil {
		return layerStats{}, err
	}
	defer unix.Close(sfd)
	dfd, err := openDir(unix.AT_FDCWD, dst)
	if err != nil {
		return layerStats{}, err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return layerStats{}, fmt.Errorf("stat %s: %w", src, err)
	}
	a := &applier{ctx: ctx, uidBase: uidBase, dev: st.Dev, dstRoot: dfd, tplRoot: -1, budget: budget, links: map[uint64]string{}}
	tfd := -1
	if tpl != "" {
		if tfd, err = openDir(unix.AT_FDCWD, tpl); err != nil {
			return layerStats{}, err
		}
		defer unix.Close(tfd)
		a.tplRoot = tfd
	}
	if err := a.dir(sfd, dfd, tfd, "", 0); err != nil {
		return a.stats, err
	}
	if err := a.dirMeta(sfd, dfd, &st, false); err != nil {
		return a.stats, err
	}
	return a.stats, nil
}

func (a *applier) id(v uint32) int {
	if v < a.uidBase || v-a.uidBase >= UIDRange {
		return 65534 // not an id of the sandbox: nobody
	}
	return int(v - a.uidBase)
}

// dir applies the directory src onto dst; tpl is the template's directory at the same path while
// the layers merge there (-1 once a layer is opaque or the template has no such directory).
func (a *applier) dir(src, dst, tpl int, rel string, depth int) error {
	if depth >= maxLayerDepth {
		return fmt.Errorf("%s: directories nested deeper than %d levels", rel, maxLayerDepth)
	}
	if err := a.ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(src)
	if err != nil {
		return fmt.Errorf("reading /%s: %w", rel, err)
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("stat /%s: %w", path.Join(rel, name), err)
		}
		if st.Dev != a.dev {
			continue // a mount point, not part of the layer
		}
		childRel := path.Join(rel, name)
		a.stats.Entries++
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = a.subdir(src, dst, tpl, name, &st, childRel, depth)
		case unix.S_IFREG:
			err = a.file(src, dst, name, &st, rel)
		case unix.S_IFLNK:
			err = a.symlink(src, dst, name, &st)
		case unix.S_IFCHR:
			if st.Rdev != 0 {
				continue // a device node: never usable in a sandbox (nodev), not kept
			}
			err = a.whiteout(dst, tpl, name, &st)
		case unix.S_IFIFO:
			err = a.node(dst, name, &st, unix.S_IFIFO)
		default:
			continue // sockets (meaningless without their process) and block devices
		}
		if err != nil {
			return fmt.Errorf("/%s: %w", childRel, err)
		}
	}
	return nil
}

func (a *applier) subdir(src, dst, tpl int, name string, st *unix.Stat_t, rel string, depth int) error {
	sfd, err := openDir(src, name)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	if _, ok, err := getXattr(sfd, xattrRedirect); err != nil || ok {
		return fmt.Errorf("renamed directory (overlay redirect_dir is on): %v", err)
	}
	opaque := isOpaque(sfd)
	var dst0 unix.Stat_t
	exists := unix.Fstatat(dst, name, &dst0, unix.AT_SYMLINK_NOFOLLOW) == nil
	if exists && (dst0.Mode&unix.S_IFMT != unix.S_IFDIR || opaque) {
		if err := removeAt(dst, name, 0); err != nil {
			return err
		}
		exists = false
	}
	if !exists {
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	dfd, err := openDir(dst, name)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	ctpl := -1
	if tpl >= 0 && !isOpaque(dfd) && !opaque {
		if fd, err := unix.Openat(tpl, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			ctpl = fd
			defer unix.Close(fd)
		}
	}
	if err := a.dir(sfd, dfd, ctpl, rel, depth+1); err != nil {
		return err
	}
	return a.dirMeta(sfd, dfd, st, opaque)
}

// whiteout removes name from the layer and leaves a whiteout where the template has it.
func (a *applier) whiteout(dst, tpl int, name string, st *unix.Stat_t) error {
	if a.tplRoot >= 0 {
		var tst unix.Stat_t
		if tpl < 0 || unix.Fstatat(tpl, name, &tst, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return removeAt(dst, name, 0) // nothing below to hide
		}
	}
	return a.node(dst, name, st, unix.S_IFCHR)
}

// dirMeta gives the layer's directory the upper directory's owner, mode, user xattrs and times
// (after its entries are written, which change its times).
func (a *applier) dirMeta(sfd, dfd int, st *unix.Stat_t, opaque bool) error {
	if err := unix.Fchown(dfd, a.id(st.Uid), a.id(st.Gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(dfd, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := copyUserXattrs(sfd, dfd, true); err != nil {
		return err
	}
	if opaque {
		if err := unix.Fsetxattr(dfd, xattrOpaque, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking opaque: %w", err)
		}
	}
	return futimes(dfd, st)
}

func (a *applier) file(src, dst int, name string, st *unix.Stat_t, parentRel string) error {
	if err := removeAt(dst, name, 0); err != nil {
		return err
	}
	if st.Nlink > 1 {
		if first, ok := a.links[st.Ino]; ok && a.linkTo(first, dst, name) == nil {
			return nil
		}
	}
	sfd, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(sfd)
	var fst unix.Stat_t
	if err := unix.Fstat(sfd, &fst); err != nil || fst.Ino != st.Ino || fst.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("changed while being copied (%v)", err)
	}
	if _, ok, err := getXattr(sfd, xattrMetacopy); err != nil || ok {
		return fmt.Errorf("metadata-only copy (overlay metacopy is on): %v", err)
	}
	a.budget -= fst.Size
	if a.budget < 0 {
		return fmt.Errorf("the files' apparent size (sparse files count in full) exceeds the snapshot bound")
	}
	a.stats.Bytes += fst.Size
	dfd, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer unix.Close(dfd)
	if a.buf == nil {
		a.buf = make([]byte, 1<<20)
	}
	if err := copySparse(a.ctx, sfd, dfd, fst.Size, a.buf); err != nil {
		return err
	}
	if err := unix.Fchown(dfd, a.id(fst.Uid), a.id(fst.Gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(dfd, fst.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := copyUserXattrs(sfd, dfd, false); err != nil {
		return err
	}
	if err := futimes(dfd, &fst); err != nil {
		return err
	}
	if st.Nlink > 1 {
		a.links[st.Ino] = path.Join(parentRel, name)
	}
	return nil
}

// linkTo hard-links the layer's file at rel (relative to the layer root) as name in dst.
func (a *applier) linkTo(rel string, dst int, name string) error {
	dir, base := path.Split(rel)
	pfd := a.dstRoot
	if dir != "" {
		fd, err := unix.Openat2(a.dstRoot, dir, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pfd = fd
	}
	return unix.Linkat(pfd, base, dst, name, 0)
}

func (a *applier) symlink(src, dst int, name string, st *unix.Stat_t) error {
	if err := removeAt(dst, name, 0); err != nil {
		return err
	}
	target, err := readlinkat(src, name)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(target, dst, name); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if err := unix.Fchownat(dst, name, a.id(st.Uid), a.id(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return utimesAt(dst, name, st)
}

// node copies a FIFO or an overlay whiteout (character device 0/0).
func (a *applier) node(dst int, name string, st *unix.Stat_t, kind uint32) error {
	if err := removeAt(dst, name, 0); err != nil {
		return err
	}
	if err := unix.Mknodat(dst, name, kind|0o600, 0); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	if err := unix.Fchownat(dst, name, a.id(st.Uid), a.id(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// The node was made here, in a directory only this process writes: no symlink to follow.
	if err := unix.Fchmodat(dst, name, st.Mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return utimesAt(dst, name, st)
}

// cloneLayer makes dst (which must not exist) a copy of the layer tree src that shares every
// file with it through hard links: layers are never written in place, so sharing is safe, and a
// snapshot of a sandbox made from a snapshot costs only what changed.
func cloneLayer(ctx context.Context, src, dst string) error {
	sfd, err := openDir(unix.AT_FDCWD, src)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("creating layer: %w", err)
	}
	dfd, err := openDir(unix.AT_FDCWD, dst)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := cloneDir(ctx, sfd, dfd, "", 0); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return err
	}
	return copyDirMeta(sfd, dfd, &st)
}

func cloneDir(ctx context.Context, src, dst int, rel string, depth int) error {
	if depth >= maxLayerDepth {
		return fmt.Errorf("%s: directories nested deeper than %d levels", rel, maxLayerDepth)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat /%s: %w", path.Join(rel, name), err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			err := unix.Linkat(src, name, dst, name, 0)
			if errors.Is(err, unix.EMLINK) {
				err = copyEntry(ctx, src, dst, name, &st)
			}
			if err != nil {
				return fmt.Errorf("linking /%s: %w", path.Join(rel, name), err)
			}
			continue
		}
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return fmt.Errorf("mkdir /%s: %w", path.Join(rel, name), err)
		}
		sfd, err := openDir(src, name)
		if err != nil {
			return err
		}
		dfd, err := openDir(dst, name)
		if err != nil {
			unix.Close(sfd)
			return err
		}
		err = cloneDir(ctx, sfd, dfd, path.Join(rel, name), depth+1)
		if err == nil {
			err = copyDirMeta(sfd, dfd, &st)
		}
		unix.Close(sfd)
		unix.Close(dfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies a non-directory of a layer (when a hard link is not possible).
func copyEntry(ctx context.Context, src, dst int, name string, st *unix.Stat_t) error {
	a := &applier{ctx: ctx, budget: 1 << 62, links: map[uint64]string{}}
	one := *st
	one.Nlink = 1
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return a.file(src, dst, name, &one, "")
	case unix.S_IFLNK:
		return a.symlink(src, dst, name, &one)
	default:
		return a.node(dst, name, &one, st.Mode&unix.S_IFMT)
	}
}

func copyDirMeta(sfd, dfd int, st *unix.Stat_t) error {
	if err := unix.Fchown(dfd, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Fchmod(dfd, st.Mode&0o7777); err != nil {
		return err
	}
	if err := copyUserXattrs(sfd, dfd, true); err != nil {
		return err
	}
	if isOpaque(sfd) {
		if err := unix.Fsetxattr(dfd, xattrOpaque, []byte("y"), 0); err != nil {
			return err
		}
	}
	return futimes(dfd, st)
}

// writeLayerTar writes the layer tree at root as an OCI image layer: entries in byte order of
// their names, depth first; owners as stored (sandbox-relative); whiteouts as ".wh.NAME" and
// opaque directories as "DIR/.wh..wh..opq"; user extended attributes as PAX SCHILY.xattr records;
// hard links as links to the first name. The same tree always gives the same bytes: a snapshot's
// digest is the sha256 of this stream.
func writeLayerTar(ctx context.Context, root string, w io.Writer) (layerStats, error) {
	fd, err := openDir(unix.AT_FDCWD, root)
	if err != nil {
		return layerStats{}, err
	}
	defer unix.Close(fd)
	t := &tarWalker{ctx: ctx, tw: tar.NewWriter(w), links: map[uint64]string{}}
	if err := t.dir(fd, "", 0); err != nil {
		return t.stats, err
	}
	return t.stats, t.tw.Close()
}

type tarWalker struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[uint64]string
	stats layerStats
}

func (t *tarWalker) dir(fd int, rel string, depth int) error {
	if depth >= maxLayerDepth {
		return fmt.Errorf("%s: directories nested deeper than %d levels", rel, maxLayerDepth)
	}
	if err := t.ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %s%s: %w", rel, name, err)
		}
		t.stats.Entries++
		p := rel + name
		hdr := &tar.Header{Name: p, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
			ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), Format: tar.FormatPAX}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			cfd, err := openDir(fd, name)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
			if hdr.PAXRecords, err = userXattrRecords(cfd); err == nil {
				err = t.tw.WriteHeader(hdr)
			}
			if err == nil && isOpaque(cfd) {
				err = t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p + "/.wh..wh..opq", ModTime: hdr.ModTime, Format: tar.FormatPAX})
			}
			if err == nil {
				err = t.dir(cfd, p+"/", depth+1)
			}
			unix.Close(cfd)
			if err != nil {
				return err
			}
		case unix.S_IFREG:
			if first, ok := t.links[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				if err := t.tw.WriteHeader(hdr); err != nil {
					return err
				}
				continue
			}
			if st.Nlink > 1 {
				t.links[st.Ino] = p
			}
			if err := t.regular(fd, name, hdr, st.Size); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		case unix.S_IFLNK:
			target, err := readlinkat(fd, name)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			if err := t.tw.WriteHeader(hdr); err != nil {
				return err
			}
		case unix.S_IFCHR:
			if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel + ".wh." + name, ModTime: hdr.ModTime, Format: tar.FormatPAX}); err != nil {
				return err
			}
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
			if err := t.tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *tarWalker) regular(dir int, name string, hdr *tar.Header, size int64) error {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if hdr.PAXRecords, err = userXattrRecords(fd); err != nil {
		return err
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, size
	if err := t.tw.WriteHeader(hdr); err != nil {
		return err
	}
	t.stats.Bytes += size
	n, err := io.Copy(t.tw, &ctxReader{ctx: t.ctx, r: io.LimitReader(f, size)})
	if err == nil && n != size {
		err = fmt.Errorf("file shrank while being read (%d of %d bytes)", n, size)
	}
	return err
}

// ctxReader ends a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// removeAt removes name in dir, recursively, without following symlinks. A missing name is not an
// error.
func removeAt(dir int, name string, depth int) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(dir, name, 0)
	}
	if depth >= maxLayerDepth {
		return fmt.Errorf("removing %s: nested deeper than %d levels", name, maxLayerDepth)
	}
	fd, err := openDir(dir, name)
	if err != nil {
		return err
	}
	names, err := readNames(fd)
	for _, n := range names {
		if err == nil {
			err = removeAt(fd, n, depth+1)
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
}

// openDir opens name in dir as a directory, refusing a symlink.
func openDir(dir int, name string) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening directory %s: %w", name, err)
	}
	return fd, nil
}

// readNames lists a directory's names in byte order.
func readNames(fd int) ([]string, error) {
	d, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

func readlinkat(dir int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", fmt.Errorf("readlink: %w", err)
	}
	return string(buf[:n]), nil
}

// copySparse copies size bytes from src to dst, data extents only: holes stay holes, so a sparse
// file costs the host what it costs the sandbox. Within one filesystem the kernel copies
// (copy_file_range); across filesystems (a sandbox's disk to the data dir) buf carries the data,
// which measured faster than the kernel's page-by-page splice.
func copySparse(ctx context.Context, src, dst int, size int64, buf []byte) error {
	var sst, dst0 unix.Stat_t
	sameFS := unix.Fstat(src, &sst) == nil && unix.Fstat(dst, &dst0) == nil && sst.Dev == dst0.Dev
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(src, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			data = off // no SEEK_DATA: copy everything
		}
		hole, err := unix.Seek(src, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		hole = min(hole, size)
		var err2 error
		if sameFS {
			err2 = copyRange(ctx, src, dst, data, hole-data, buf)
		} else {
			err2 = copyRangeRW(ctx, src, dst, data, hole-data, buf)
		}
		if err2 != nil {
			return err2
		}
		off = hole
	}
	if err := unix.Ftruncate(dst, size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	return nil
}

func copyRange(ctx context.Context, src, dst int, off, n int64, buf []byte) error {
	in, out := off, off
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := unix.CopyFileRange(src, &in, dst, &out, int(min(n, 64<<20)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
				return copyRangeRW(ctx, src, dst, in, n, buf)
			}
			return fmt.Errorf("copying: %w", err)
		}
		if k == 0 {
			return nil // the file shrank
		}
		n -= int64(k)
	}
	return nil
}

func copyRangeRW(ctx context.Context, src, dst int, off, n int64, buf []byte) error {
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := unix.Pread(src, buf[:min(n, int64(len(buf)))], off)
		if err != nil {
			return fmt.Errorf("reading: %w", err)
		}
		if k == 0 {
			return nil
		}
		if _, err := unix.Pwrite(dst, buf[:k], off); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
		off += int64(k)
		n -= int64(k)
	}
	return nil
}

func futimes(fd int, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Mtim, st.Mtim}
	if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

func utimesAt(dir int, name string, st *unix.Stat_t) error {
	ts := []unix.Timespec{st.Mtim, st.Mtim}
	if err := unix.UtimesNanoAt(dir, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// Extended attributes: only user.* attributes (and overlay's opaque marker) are kept. Capabilities
// and ACLs carry host ids of the sandbox's range and are dropped.

const xattrMax = 64 << 10 // XATTR_SIZE_MAX and XATTR_LIST_MAX

func listXattrs(fd int) ([]string, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < xattrMax {
			buf = make([]byte, xattrMax)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing xattrs: %w", err)
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		slices.Sort(names)
		return names, nil
	}
}

func getXattr(fd int, name string) ([]byte, bool, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < xattrMax {
			buf = make([]byte, xattrMax)
			continue
		}
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading xattr %s: %w", name, err)
		}
		return buf[:n], true, nil
	}
}

func isOpaque(fd int) bool {
	v, ok, _ := getXattr(fd, xattrOpaque)
	return ok && string(v) == "y"
}

// copyUserXattrs gives dst exactly src's user.* attributes (replace: also remove dst's others).
func copyUserXattrs(src, dst int, replace bool) error {
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		if !strings.HasPrefix(n, "user.") {
			continue
		}
		v, ok, err := getXattr(src, n)
		if err != nil || !ok {
			continue
		}
		want[n] = true
		if err := unix.Fsetxattr(dst, n, v, 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", n, err)
		}
	}
	if !replace {
		return nil
	}
	have, err := listXattrs(dst)
	if err != nil {
		return err
	}
	for _, n := range have {
		if strings.HasPrefix(n, "user.") && !want[n] {
			_ = unix.Fremovexattr(dst, n)
		}
	}
	return nil
}

func userXattrRecords(fd int) (map[string]string, error) {
	names, err := listXattrs(fd)
	if err != nil {
		return nil, err
	}
	var recs map[string]string
	for _, n := range names {
		if !strings.HasPrefix(n, "user.") {
			continue
		}
		v, ok, err := getXattr(fd, n)
		if err != nil || !ok {
			continue
		}
		if recs == nil {
			recs = map[string]string{}
		}
		recs["SCHILY.xattr."+n] = string(v)
	}
	return recs, nil
}
