// Package mounts prepares a sandbox's root filesystem on the host: idmapped read-only views of
// template layers and host directories (so files look right inside the sandbox's user namespace),
// the overlay that adds a private writable layer, the loop-mounted disk image that bounds that
// layer, and the removal of all of it. Every function works on host paths the sandbox cannot
// reach; nothing here follows a path the sandbox owns.
package mounts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// IDMap is a uid/gid mapping: ids 0..Size-1 inside are HostBase..HostBase+Size-1 outside.
type IDMap struct {
	HostBase uint32
	Size     uint32
}

// UserNS is a user namespace with a given mapping, held open as a file descriptor. Idmapped mounts
// take their mapping from it; they keep it alive after Close.
type UserNS struct {
	fd int
}

// NewUserNS creates a user namespace with m. It starts a helper process (helper, any executable)
// in a new user namespace, traced so that it stops before running any code, takes a reference to
// its namespace, then kills it.
func NewUserNS(helper string, m IDMap) (*UserNS, error) {
	cmd := exec.Command(helper)
	cmd.Args = []string{"agent-userns"}
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostBase), Size: int(m.Size)}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostBase), Size: int(m.Size)}},
		// The traced child stops at its first instruction after exec: it never runs.
		Ptrace:    true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting user namespace helper: %w", err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("opening helper's user namespace: %w", err)
	}
	return &UserNS{fd: fd}, nil
}

// Close releases the reference.
func (u *UserNS) Close() error { return unix.Close(u.fd) }

// Attr selects mount attributes for BindIDMapped.
type Attr struct {
	ReadOnly bool
	NoSuid   bool
	NoDev    bool
}

// BindIDMapped attaches at target a recursive clone of the tree at source, idmapped through ns, with
// the given attributes. target must exist (a directory for a directory source).
func BindIDMapped(source, target string, ns *UserNS, a Attr) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", source, err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.fd)}
	if a.ReadOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if a.NoSuid {
		attr.Attr_set |= unix.MOUNT_ATTR_NOSUID
	}
	if a.NoDev {
		attr.Attr_set |= unix.MOUNT_ATTR_NODEV
	}
	// Idmapping must be set on a tree without submounts, or per mount: the templates and host
	// directories we bind are single mounts, and AT_RECURSIVE applies the rest where allowed.
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("idmapping %s (the filesystem must support idmapped mounts and hold no submounts): %w", source, err)
		}
		return fmt.Errorf("idmapping %s: %w", source, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attaching idmapped %s at %s: %w", source, target, err)
	}
	return nil
}

// BindReadOnly bind-mounts source at target (which must exist) read-only, nosuid and nodev.
func BindReadOnly(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding %s at %s: %w", source, target, err)
	}
	if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("making %s read-only: %w", target, err)
	}
	return nil
}

// Overlay mounts an overlay at target with one read-only lower layer and upper/work directories.
// The mount is nosuid-free on purpose (sandbox sudo works) but nodev: no device node in the layers is
// usable.
func Overlay(lower, upper, work, target string) error {
	return OverlayLayers([]string{lower}, upper, work, target)
}

// Detach lazily unmounts target (used for the lower layer's attachment point once the overlay holds
// its own reference to it).
func Detach(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", target, err)
	}
	return nil
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	ID, Parent int
	Root       string
	Point      string
	FSType     string
	Source     string
	// SuperOptions are the filesystem's own options (for cgroup v1, its controllers).
	SuperOptions string
}

// Table reads the calling process's mount table.
func Table() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		var m Mount
		m.ID, _ = strconv.Atoi(fields[0])
		m.Parent, _ = strconv.Atoi(fields[1])
		m.Root = unescape(fields[3])
		m.Point = unescape(fields[4])
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" && i+2 < len(fields) {
				m.FSType = fields[i+1]
				m.Source = unescape(fields[i+2])
				if i+3 < len(fields) {
					m.SuperOptions = fields[i+3]
				}
				break
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return out, nil
}

// unescape decodes mountinfo's octal escapes (\040 for space and so on).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Under lists the mount points at or below dir, deepest first.
func Under(dir string) ([]string, error) {
	tab, err := Table()
	if err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	var pts []string
	for _, m := range tab {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			pts = append(pts, m.Point)
		}
	}
	slices.SortFunc(pts, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(pts), nil
}

// UnmountAll detaches every mount at or below dir and checks none is left. Lazy unmounts take
// their submounts with them, so only the topmost mounts are detached (each unmount waits for the
// kernel's RCU grace period: fewer calls make a kill faster when many sandboxes exist).
func UnmountAll(ctx context.Context, dir string) error {
	for range 8 {
		if err := ctx.Err(); err != nil {
			return err
		}
		pts, err := Under(dir)
		if err != nil {
			return err
		}
		if len(pts) == 0 {
			return nil
		}
		for _, p := range topmost(pts) {
			if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmounting %s: %w", p, err)
			}
		}
	}
	pts, err := Under(dir)
	if err != nil {
		return err
	}
	if len(pts) > 0 {
		return fmt.Errorf("mounts remain under %s: %v", dir, pts)
	}
	return nil
}

// topmost keeps the mount points not below another one of the list.
func topmost(pts []string) []string {
	var out []string
	for _, p := range pts {
		nested := false
		for _, q := range pts {
			if q != p && strings.HasPrefix(p, q+"/") {
				nested = true
				break
			}
		}
		if !nested {
			out = append(out, p)
		}
	}
	return out
}

// RemoveTree removes dir and everything below it without crossing into another filesystem: it
// refuses when anything is still mounted there, so a failed unmount can never delete a template or
// host directory through a bind.
func RemoveTree(dir string) error {
	pts, err := Under(dir)
	if err != nil {
		return err
	}
	if len(pts) > 0 {
		return fmt.Errorf("refusing to remove %s: still mounted: %v", dir, pts)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}
