package fsservice

import (
	"io/fs"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentrun/agent/sandbox/envd/internal/filemeta"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// entries builds EntryInfo messages the way envd reports them. It caches owner and group names for
// one request: users.DB rereads /etc/passwd on every lookup, and a listing may hold many entries.
type entries struct {
	s      *Service
	owners map[uint32]string
	groups map[uint32]string
}

func (s *Service) entries() *entries {
	return &entries{s: s, owners: map[uint32]string{}, groups: map[uint32]string{}}
}

// info describes world without following a final symlink.
func (e *entries) info(world string) (*filesystem.EntryInfo, error) {
	st, err := e.s.cfg.Root.Lstat(world)
	if err != nil {
		return nil, err
	}
	return e.fromStat(world, st), nil
}

// fromStat builds the EntryInfo of world from its lstat, as envd does:
//   - type is the file's type; for a symlink, the type of its target (FILE_TYPE_SYMLINK only when
//     the target cannot be resolved inside the root);
//   - mode is the permission bits only (a symlink: its target's), e.g. 0o644;
//   - permissions is Go's FileMode string of the entry itself ("-rw-r--r--", "drwxr-xr-x",
//     "Lrwxrwxrwx");
//   - size and modified_time are the entry's own;
//   - symlink_target is the symlink's fully resolved world path (the path itself when it cannot be
//     resolved);
//   - metadata is the user.e2b.* xattrs of the file, directory or symlink target.
func (e *entries) fromStat(world string, st *unix.Stat_t) *filesystem.EntryInfo {
	world = path.Clean("/" + world)
	name := path.Base(world)
	info := &filesystem.EntryInfo{
		Name:        utf8Text(name),
		Path:        utf8Text(world),
		Size:        st.Size,
		Permissions: fileMode(st.Mode).String(),
		Owner:       utf8Text(e.owner(st.Uid)),
		Group:       utf8Text(e.group(st.Gid)),
	}
	if st.Mtim.Sec != 0 || st.Mtim.Nsec != 0 {
		info.ModifiedTime = timestamppb.New(time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	}
	mode := st.Mode
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := e.s.cfg.Root.Realpath(world)
		if err != nil {
			target = world
		}
		target = utf8Text(target)
		info.SymlinkTarget = &target
		tst, err := e.s.cfg.Root.Stat(world)
		if err != nil {
			info.Type = filesystem.FileType_FILE_TYPE_SYMLINK
			return info
		}
		mode = tst.Mode
		info.Type = fileType(tst.Mode)
	default:
		info.Type = fileType(st.Mode)
	}
	info.Mode = mode & 0o777
	if t := mode & unix.S_IFMT; t == unix.S_IFREG || t == unix.S_IFDIR {
		md, err := filemeta.ReadAt(e.s.cfg.Root, world)
		if err != nil {
			e.s.log.Debug("reading file metadata", "path", world, "err", err)
		}
		info.Metadata = md
	}
	return info
}

// utf8Text makes a name the sandbox chose fit a protobuf string (which must be UTF-8): invalid bytes
// become U+FFFD. Without this one badly named file would fail a whole listing.
func utf8Text(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func fileType(mode uint32) filesystem.FileType {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return filesystem.FileType_FILE_TYPE_FILE
	case unix.S_IFDIR:
		return filesystem.FileType_FILE_TYPE_DIRECTORY
	case unix.S_IFLNK:
		return filesystem.FileType_FILE_TYPE_SYMLINK
	}
	return filesystem.FileType_FILE_TYPE_UNSPECIFIED
}

// fileMode converts a raw st_mode to Go's FileMode, as os.Lstat does, so String() matches envd.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func (e *entries) owner(uid uint32) string {
	if n, ok := e.owners[uid]; ok {
		return n
	}
	n := e.s.cfg.Users.UserName(int(uid))
	e.owners[uid] = n
	return n
}

func (e *entries) group(gid uint32) string {
	if n, ok := e.groups[gid]; ok {
		return n
	}
	n := e.s.cfg.Users.GroupName(int(gid))
	e.groups[gid] = n
	return n
}
