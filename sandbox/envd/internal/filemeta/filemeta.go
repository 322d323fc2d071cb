// Package filemeta stores envd's user-defined file metadata: `X-Metadata-<key>: <value>` headers on
// an upload become `user.e2b.<key>` extended attributes of the file, and EntryInfo.metadata reports
// them back. Only descriptors are used, never paths.
package filemeta

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
)

const (
	// Prefix namespaces envd's keys inside the user.* xattr namespace.
	Prefix = "user.e2b."
	// HeaderPrefix marks upload headers that carry metadata.
	HeaderPrefix = "X-Metadata-"
	// MaxKeyLen is the longest key: the kernel limits a full xattr name to 255 bytes.
	MaxKeyLen = 255 - len(Prefix)
	// MaxTotalLen bounds the names and values of one file's metadata together (an ext4 inode keeps
	// its xattrs in one block).
	MaxTotalLen = 4096
	// maxListBytes bounds what is read of a file's xattr name list (the kernel's XATTR_LIST_MAX).
	maxListBytes = 64 << 10
)

// ErrInvalid is wrapped by Validate's errors.
var ErrInvalid = errors.New("invalid metadata")

// FromHeaders collects the metadata of an upload request: X-Metadata-<key> headers, key lowercased.
// It returns nil when there is none.
func FromHeaders(h http.Header) map[string]string {
	var md map[string]string
	for name, values := range h {
		if len(values) == 0 || len(name) <= len(HeaderPrefix) || !strings.EqualFold(name[:len(HeaderPrefix)], HeaderPrefix) {
			continue
		}
		if md == nil {
			md = map[string]string{}
		}
		md[strings.ToLower(name[len(HeaderPrefix):])] = values[0]
	}
	return md
}

// Validate checks keys and values: printable US-ASCII, key length and total size.
func Validate(md map[string]string) error {
	total := 0
	for k, v := range md {
		if k == "" || len(k) > MaxKeyLen {
			return fmt.Errorf("%w: key %q must have 1 to %d bytes", ErrInvalid, k, MaxKeyLen)
		}
		if !printable(k) || !printable(v) {
			return fmt.Errorf("%w: key %q: keys and values must be printable US-ASCII", ErrInvalid, k)
		}
		total += len(Prefix) + len(k) + len(v)
	}
	if total > MaxTotalLen {
		return fmt.Errorf("%w: %d bytes in total, at most %d", ErrInvalid, total, MaxTotalLen)
	}
	return nil
}

func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Unsupported reports whether err means the filesystem has no user xattrs.
func Unsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}

// Read returns the metadata of an open file (nil when it has none or the filesystem keeps no
// xattrs). Entries that are not valid UTF-8 (set from inside the sandbox) are skipped: they cannot
// travel in a protobuf string map.
func Read(f *os.File) (map[string]string, error) {
	fd := int(f.Fd())
	names, err := listNames(fd)
	if err != nil {
		if Unsupported(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list xattrs of %s: %w", f.Name(), err)
	}
	var md map[string]string
	buf := make([]byte, MaxTotalLen)
	for _, name := range names {
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		n, err := unix.Fgetxattr(fd, name, buf)
		if err == unix.ENODATA || err == unix.ERANGE {
			continue // removed meanwhile, or larger than anything envd writes
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, f.Name(), err)
		}
		key := strings.TrimPrefix(name, Prefix)
		if !utf8.ValidString(key) || !utf8.Valid(buf[:n]) {
			continue
		}
		if md == nil {
			md = map[string]string{}
		}
		md[key] = string(buf[:n])
	}
	return md, nil
}

// Write replaces the metadata of an open file: keys absent from md are removed, so overwriting a
// file (O_TRUNC keeps xattrs) does not leave stale metadata behind. A nil md clears it.
func Write(f *os.File, md map[string]string) error {
	if err := Validate(md); err != nil {
		return err
	}
	fd := int(f.Fd())
	names, err := listNames(fd)
	if err != nil {
		if Unsupported(err) && len(md) == 0 {
			return nil
		}
		return fmt.Errorf("list xattrs of %s: %w", f.Name(), err)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		if _, keep := md[strings.TrimPrefix(name, Prefix)]; keep {
			continue
		}
		if err := unix.Fremovexattr(fd, name); err != nil && err != unix.ENODATA {
			return fmt.Errorf("remove xattr %s of %s: %w", name, f.Name(), err)
		}
	}
	for k, v := range md {
		if err := unix.Fsetxattr(fd, Prefix+k, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s%s of %s: %w", Prefix, k, f.Name(), err)
		}
	}
	return nil
}

func listNames(fd int) ([]string, error) {
	for range 4 {
		size, err := unix.Flistxattr(fd, nil)
		if err != nil {
			return nil, err
		}
		if size == 0 {
			return nil, nil
		}
		buf := make([]byte, min(size, maxListBytes))
		n, err := unix.Flistxattr(fd, buf)
		if err == unix.ERANGE {
			continue // grew between the two calls
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
	return nil, unix.ERANGE
}

// ReadAt returns the metadata of the regular file or directory at world (following symlinks inside
// the root, as envd does). Other file types have none: opening a device to read its xattrs could
// have side effects.
func ReadAt(root *fsroot.Root, world string) (map[string]string, error) {
	st, err := root.Stat(world)
	if err != nil {
		return nil, err
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return nil, nil
	}
	f, err := root.OpenFile(world, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		return nil, fmt.Errorf("stat %s: %w", world, err)
	}
	if t := fst.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return nil, nil
	}
	return Read(f)
}
