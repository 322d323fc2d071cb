package fsservice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// errOverflow means the kernel dropped events: the watcher is no longer exact.
var errOverflow = errors.New("inotify event queue overflowed; events were lost")

// errTooManyWatches is returned when a recursive watch would observe more directories than allowed.
var errTooManyWatches = errors.New("too many directories to watch")

const (
	watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
		unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	readBufSize = 64 << 10
	// maxWalkEntries bounds the entries read while adding a recursive watch's directories.
	maxWalkEntries = 1_000_000
	// maxSyntheticCreates bounds the create events reported for entries found in a directory that
	// appeared (their own events happened before the directory was watched).
	maxSyntheticCreates = 1024
)

// fsEvent is one filesystem event; name is relative to the watched directory ("." for itself).
type fsEvent struct {
	name string
	op   filesystem.EventType
}

// inotifyWatch watches one directory (and, recursive, every directory below it that is not reached
// through a symlink) with inotify. Directories are opened through the world root and watched via
// their /proc/self/fd link, so a symlink swapped into a path cannot make envd watch outside the
// root. The maps are owned by the goroutine running run; Close may be called from anywhere.
type inotifyWatch struct {
	root       *fsroot.Root
	base       string // world path of the watched directory
	recursive  bool
	maxWatches int
	log        *slog.Logger

	file      *os.File // the inotify descriptor, non-blocking, read through the runtime poller
	closeOnce sync.Once

	wds    map[int]string // watch descriptor → directory relative to base ("" = base)
	byPath map[string]int
}

// statfs magic numbers of network and FUSE filesystems (include/uapi/linux/magic.h), where inotify
// sees only local changes.
var networkFS = map[int64]bool{0x6969: true, 0xFF534D42: true, 0x517B: true, 0xFE534D42: true, 0x65735546: true}

func newInotifyWatch(root *fsroot.Root, base string, recursive, allowNetwork bool, maxWatches int, log *slog.Logger) (*inotifyWatch, error) {
	dir, err := root.OpenFile(base, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	var sfs unix.Statfs_t
	err = unix.Fstatfs(int(dir.Fd()), &sfs)
	dir.Close()
	if err != nil {
		return nil, fmt.Errorf("statfs %s: %w", base, err)
	}
	if !allowNetwork && networkFS[int64(sfs.Type)] {
		return nil, fmt.Errorf("%w: cannot watch %s: it is on a network filesystem", fs.ErrInvalid, base)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err == unix.EMFILE {
		return nil, fmt.Errorf("inotify_init1: per-user instance limit reached (sysctl fs.inotify.max_user_instances): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &inotifyWatch{
		root: root, base: base, recursive: recursive, maxWatches: maxWatches, log: log,
		file:   os.NewFile(uintptr(fd), "inotify"),
		wds:    map[int]string{},
		byPath: map[string]int{},
	}
	if _, err := w.addTree("", nil); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close stops the watch; run returns.
func (w *inotifyWatch) Close() {
	w.closeOnce.Do(func() { _ = w.file.Close() })
}

// add watches the directory rel (relative to base). Below base, a symlink is never followed.
func (w *inotifyWatch) add(rel string) error {
	if _, ok := w.byPath[rel]; ok {
		return nil
	}
	if len(w.wds) >= w.maxWatches {
		return errTooManyWatches
	}
	flags := unix.O_PATH | unix.O_DIRECTORY
	if rel != "" {
		flags |= unix.O_NOFOLLOW
	}
	world := path.Join(w.base, rel)
	dir, err := w.root.OpenFile(world, flags, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	wd, err := unix.InotifyAddWatch(int(w.file.Fd()), fmt.Sprintf("/proc/self/fd/%d", dir.Fd()), watchMask)
	if err == unix.ENOENT && w.root.Dir() == "/" {
		// No /proc: as PID 1 the root is "/", so the world path is the real path and cannot escape.
		wd, err = unix.InotifyAddWatch(int(w.file.Fd()), world, watchMask|unix.IN_DONT_FOLLOW)
	}
	if err == unix.ENOSPC {
		return fmt.Errorf("watch %s: inotify watch limit reached (sysctl fs.inotify.max_user_watches): %w", world, err)
	}
	if err != nil {
		return &fs.PathError{Op: "watch", Path: world, Err: err}
	}
	if old, ok := w.wds[wd]; ok {
		delete(w.byPath, old) // the same directory under a new name
	}
	w.wds[wd] = rel
	w.byPath[rel] = wd
	return nil
}

// addTree watches rel and, when recursive, every directory below it. found, when not nil, collects
// the entries met below rel (for synthetic create events).
func (w *inotifyWatch) addTree(rel string, found *[]string) (int, error) {
	if err := w.add(rel); err != nil {
		return 0, err
	}
	if !w.recursive {
		return 1, nil
	}
	added := 1
	err := w.root.Walk(path.Join(w.base, rel), fsroot.MaxWalkDepth, maxWalkEntries, func(sub string, st *unix.Stat_t) error {
		full := sub
		if rel != "" {
			full = rel + "/" + sub
		}
		if found != nil && len(*found) < maxSyntheticCreates {
			*found = append(*found, full)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		if err := w.add(full); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				return nil // vanished or replaced meanwhile
			}
			return err
		}
		added++
		return nil
	})
	return added, err
}

// forget drops the watches of rel and everything below it (moved out of the tree or deleted).
func (w *inotifyWatch) forget(rel string, rm bool) {
	for p, wd := range w.byPath {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			if rm {
				_, _ = unix.InotifyRmWatch(int(w.file.Fd()), uint32(wd))
			}
			delete(w.byPath, p)
			delete(w.wds, wd)
		}
	}
}

// rename records that the watched directory from is now to (and so is everything below it).
func (w *inotifyWatch) rename(from, to string) {
	moved := map[string]int{}
	for p, wd := range w.byPath {
		if p == from || strings.HasPrefix(p, from+"/") {
			moved[to+strings.TrimPrefix(p, from)] = wd
			delete(w.byPath, p)
		}
	}
	for p, wd := range moved {
		w.byPath[p] = wd
		w.wds[wd] = p
	}
}

// run reads events and hands them to emit until the watch is closed (nil) or fails. emit returning
// false stops the watch. It must run in one goroutine at a time.
func (w *inotifyWatch) run(emit func(fsEvent) bool) error {
	buf := make([]byte, readBufSize)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read inotify events: %w", err)
		}
		events, err := w.parse(buf[:n])
		if err != nil {
			return err
		}
		for _, e := range events {
			if !emit(e) {
				return nil
			}
		}
	}
}

// parse turns one read of raw inotify events into fsEvents and keeps the recursive watch set
// current (new, moved and removed directories).
func (w *inotifyWatch) parse(buf []byte) ([]fsEvent, error) {
	var out []fsEvent
	movedFrom := map[uint32]string{} // cookie → directory moved away, awaiting its IN_MOVED_TO
	for len(buf) >= unix.SizeofInotifyEvent {
		wd := int(int32(binary.NativeEndian.Uint32(buf[0:4])))
		mask := binary.NativeEndian.Uint32(buf[4:8])
		cookie := binary.NativeEndian.Uint32(buf[8:12])
		nameLen := int(binary.NativeEndian.Uint32(buf[12:16]))
		if unix.SizeofInotifyEvent+nameLen > len(buf) {
			break // the kernel never splits an event; this is defensive
		}
		name := strings.TrimRight(string(buf[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+nameLen]), "\x00")
		buf = buf[unix.SizeofInotifyEvent+nameLen:]

		if mask&unix.IN_Q_OVERFLOW != 0 {
			return out, errOverflow
		}
		dir, ok := w.wds[wd]
		if !ok {
			continue
		}
		if mask&unix.IN_IGNORED != 0 {
			delete(w.wds, wd)
			if w.byPath[dir] == wd {
				delete(w.byPath, dir)
			}
			continue
		}
		var rel string
		switch {
		case name != "" && dir == "":
			rel = name
		case name != "":
			rel = dir + "/" + name
		case dir == "":
			rel = "." // the watched directory itself
		default:
			continue // a subdirectory's own event; its parent's watch reports it
		}
		isDir := mask&unix.IN_ISDIR != 0 && name != ""
		if mask&unix.IN_CREATE != 0 || mask&unix.IN_MOVED_TO != 0 {
			out = append(out, fsEvent{rel, filesystem.EventType_EVENT_TYPE_CREATE})
		}
		if mask&(unix.IN_MOVED_FROM|unix.IN_MOVE_SELF) != 0 {
			out = append(out, fsEvent{rel, filesystem.EventType_EVENT_TYPE_RENAME})
		}
		if mask&unix.IN_ATTRIB != 0 {
			out = append(out, fsEvent{rel, filesystem.EventType_EVENT_TYPE_CHMOD})
		}
		if mask&unix.IN_MODIFY != 0 {
			out = append(out, fsEvent{rel, filesystem.EventType_EVENT_TYPE_WRITE})
		}
		if mask&(unix.IN_DELETE|unix.IN_DELETE_SELF) != 0 {
			out = append(out, fsEvent{rel, filesystem.EventType_EVENT_TYPE_REMOVE})
		}
		if !w.recursive || !isDir {
			continue
		}
		switch {
		case mask&unix.IN_MOVED_FROM != 0:
			movedFrom[cookie] = rel
		case mask&unix.IN_MOVED_TO != 0 && movedFrom[cookie] != "":
			w.rename(movedFrom[cookie], rel)
			delete(movedFrom, cookie)
		case mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			var found []string
			if _, err := w.addTree(rel, &found); err != nil {
				if errors.Is(err, errTooManyWatches) || errors.Is(err, unix.ENOSPC) || errors.Is(err, fsroot.ErrTooMany) {
					return out, err // the watch could no longer be complete
				}
				w.log.Debug("watching new directory", "path", path.Join(w.base, rel), "err", err)
			}
			for _, f := range found {
				out = append(out, fsEvent{f, filesystem.EventType_EVENT_TYPE_CREATE})
			}
		case mask&unix.IN_DELETE != 0:
			w.forget(rel, false)
		}
	}
	// Directories moved out of the tree (no matching IN_MOVED_TO in this read) are no longer ours.
	for _, rel := range movedFrom {
		w.forget(rel, true)
	}
	return out, nil
}
