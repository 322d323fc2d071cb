package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// ReadLimits bound what loading reads from disk.
type ReadLimits struct {
	// MaxSpecBytes bounds a spec or agent.yaml file.
	MaxSpecBytes int64
	// MaxFileBytes bounds one seed file.
	MaxFileBytes int64
	// MaxTotalBytes bounds all seed files of one spec, inline content included.
	MaxTotalBytes int64
	// MaxFiles bounds the number of seed files of one spec.
	MaxFiles int
}

// DefaultReadLimits are the bounds used when Options.ReadLimits is zero.
func DefaultReadLimits() ReadLimits {
	return ReadLimits{MaxSpecBytes: 1 << 20, MaxFileBytes: 16 << 20, MaxTotalBytes: 64 << 20, MaxFiles: 10000}
}

// seedFS is the view of the host that from paths are read through: either confined to the spec's
// directory (an os.Root, which refuses every path and symlink leading out of it, race-free), or,
// with --allow-outside, the whole host.
type seedFS interface {
	Lstat(name string) (fs.FileInfo, error)
	Stat(name string) (fs.FileInfo, error)
	OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error)
}

// hostFS reads host paths directly; names are absolute.
type hostFS struct{}

func (hostFS) Lstat(name string) (fs.FileInfo, error) { return os.Lstat(name) }
func (hostFS) Stat(name string) (fs.FileInfo, error)  { return os.Stat(name) }
func (hostFS) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// seeder reads the files entries of one spec.
type seeder struct {
	file    string      // the spec file, for errors
	dir     string      // the spec's directory, absolute
	self    fs.FileInfo // the spec file, which must never be seeded
	fsys    seedFS
	outside bool
	lim     ReadLimits
	total   int64
	files   []File
	owner   map[string]int // seeded path → files entry index
	dirs    map[string]int // directories implied by seeded paths → entry index
	errs    ErrorList
	from    []string
	entry   int
	pos     Pos // the current entry
	fromAt  Pos // its from value
}

// readSeeds reads a spec's seed files. It returns the files, the host paths of from entries and
// every error, each at the position of its entry.
func readSeeds(file string, entries []FileEntry, opts *Options) ([]File, []string, ErrorList) {
	if len(entries) == 0 {
		return nil, nil, nil
	}
	s := &seeder{file: file, outside: opts.AllowOutside, lim: opts.readLimits(),
		owner: map[string]int{}, dirs: map[string]int{}}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, nil, ErrorList{{File: file, Msg: fmt.Sprintf("locating the spec's directory: %v", err)}}
	}
	s.dir = dir
	s.self, _ = os.Stat(file)
	if s.outside {
		s.fsys = hostFS{}
	} else {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, nil, ErrorList{{File: file, Msg: fmt.Sprintf("opening the spec's directory: %v", err)}}
		}
		defer root.Close()
		s.fsys = root
	}
	for i := range entries {
		e := &entries[i]
		s.entry, s.pos, s.fromAt = i, e.pos, e.fromPos
		if e.Content != nil {
			s.add(deref(e.Path), []byte(*e.Content), modeOr(e.Mode, 0o644), "")
			continue
		}
		if e.From != nil {
			s.readFrom(e)
		}
	}
	return s.files, s.from, s.errs
}

func modeOr(m *Mode, def Mode) Mode {
	if m != nil {
		return *m
	}
	return def
}

func (s *seeder) errorf(p Pos, format string, args ...any) {
	if len(s.errs) >= maxErrors {
		return
	}
	msg := fmt.Sprintf("files[%d]: ", s.entry) + fmt.Sprintf(format, args...)
	s.errs = append(s.errs, &Error{File: s.file, Pos: p, Msg: msg})
}

// add records one seed file, enforcing the bounds and refusing paths seeded twice.
func (s *seeder) add(target string, data []byte, mode Mode, source string) bool {
	target = path.Clean(target)
	if prev, dup := s.owner[target]; dup {
		s.errorf(s.pos, "%q is already seeded by files[%d]", target, prev)
		return false
	}
	if prev, dup := s.dirs[target]; dup {
		s.errorf(s.pos, "%q is a directory of files seeded by files[%d]", target, prev)
		return false
	}
	for d := path.Dir(target); d != "."; d = path.Dir(d) {
		if prev, dup := s.owner[d]; dup {
			s.errorf(s.pos, "%q needs %q to be a directory, but files[%d] seeds it as a file", target, d, prev)
			return false
		}
	}
	if len(s.files) >= s.lim.MaxFiles {
		s.errorf(s.pos, "more than %d seed files", s.lim.MaxFiles)
		return false
	}
	if int64(len(data)) > s.lim.MaxFileBytes {
		s.errorf(s.pos, "%q is %s, larger than the %s a seed file may be", target, FormatSize(int64(len(data))), FormatSize(s.lim.MaxFileBytes))
		return false
	}
	s.total += int64(len(data))
	if s.total > s.lim.MaxTotalBytes {
		s.errorf(s.pos, "seed files exceed %s in total", FormatSize(s.lim.MaxTotalBytes))
		return false
	}
	s.owner[target] = s.entry
	for d := path.Dir(target); d != "."; d = path.Dir(d) {
		s.dirs[d] = s.entry
	}
	sum := sha256.Sum256(data)
	s.files = append(s.files, File{Path: target, Data: data, Mode: mode, Source: source,
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))})
	return true
}

// readFrom reads a from entry: a file or a directory tree.
func (s *seeder) readFrom(e *FileEntry) {
	from := *e.From
	p := e.fromPos
	var name string // the path in s.fsys
	if s.outside {
		name = from
		if !filepath.IsAbs(name) {
			name = filepath.Join(s.dir, from)
		}
	} else {
		if filepath.IsAbs(from) {
			s.errorf(p, "from %q is absolute; from is relative to the spec's directory (--allow-outside allows other paths)", clip(from, 80))
			return
		}
		name = filepath.Clean(from)
		if name == ".." || strings.HasPrefix(name, "../") {
			s.errorf(p, "from %q is outside the spec's directory (--allow-outside allows it)", clip(from, 80))
			return
		}
	}
	hostPath := name
	if !filepath.IsAbs(hostPath) {
		hostPath = filepath.Join(s.dir, name)
	}
	info, err := s.fsys.Stat(name)
	if err != nil {
		s.errorf(p, "from %q: %s", clip(from, 80), s.describe(err))
		return
	}
	s.from = append(s.from, hostPath)
	if info.IsDir() {
		if e.Mode != nil {
			s.errorf(e.modePos, "mode applies to a single file; %q is a directory (executable files keep their mode)", clip(from, 80))
			return
		}
		target := "."
		if e.Path != nil {
			target = *e.Path
		}
		s.walk(name, target, from, []fs.FileInfo{info}, 0)
		return
	}
	target := filepath.Base(name)
	if e.Path != nil {
		target = *e.Path
	}
	if target == "." || checkRelPath(target, false) != "" {
		s.errorf(e.pathPos, "path %q names the workdir itself; a file needs a file name", target)
		return
	}
	s.readOne(name, target, from, e.Mode)
}

// describe turns a file system error into a message that says what went wrong for the user.
func (s *seeder) describe(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file or directory"
	case strings.Contains(err.Error(), "path escapes"):
		return "leads outside the spec's directory (through a symlink, or an absolute symlink); --allow-outside allows it"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// maxSeedDepth bounds directory nesting under a from directory.
const maxSeedDepth = 64

// walk copies the directory name (in s.fsys) to target. stack holds the directories being walked,
// so that a symlink back to one of them is refused instead of looping.
func (s *seeder) walk(name, target, from string, stack []fs.FileInfo, depth int) {
	if depth > maxSeedDepth {
		s.errorf(s.posFrom(), "from %q: directories nested deeper than %d", clip(from, 80), maxSeedDepth)
		return
	}
	d, err := s.fsys.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
	if err != nil {
		s.errorf(s.posFrom(), "from %q: reading %s: %s", clip(from, 80), name, s.describe(err))
		return
	}
	var names []string
	for {
		batch, err := d.Readdirnames(256)
		names = append(names, batch...)
		if len(names) > s.lim.MaxFiles {
			d.Close()
			s.errorf(s.posFrom(), "from %q: more than %d entries in %s", clip(from, 80), s.lim.MaxFiles, name)
			return
		}
		if err == io.EOF || (err == nil && len(batch) == 0) {
			break
		}
		if err != nil {
			d.Close()
			s.errorf(s.posFrom(), "from %q: reading %s: %s", clip(from, 80), name, s.describe(err))
			return
		}
	}
	d.Close()
	slices.Sort(names)
	for _, n := range names {
		if len(s.errs) >= maxErrors {
			return
		}
		child := filepath.Join(name, n)
		childTarget := path.Join(target, n)
		li, err := s.fsys.Lstat(child)
		if err != nil {
			s.errorf(s.posFrom(), "from %q: %s: %s", clip(from, 80), n, s.describe(err))
			continue
		}
		info := li
		if li.Mode()&fs.ModeSymlink != 0 {
			if info, err = s.fsys.Stat(child); err != nil {
				s.errorf(s.posFrom(), "from %q: symlink %s %s", clip(from, 80), s.rel(child), s.describe(err))
				continue
			}
		}
		switch {
		case info.IsDir():
			if slices.ContainsFunc(stack, func(o fs.FileInfo) bool { return os.SameFile(o, info) }) {
				s.errorf(s.posFrom(), "from %q: symlink %s loops back to a directory above it", clip(from, 80), s.rel(child))
				continue
			}
			s.walk(child, childTarget, from, append(stack, info), depth+1)
		case info.Mode().IsRegular():
			s.readOne(child, childTarget, from, nil)
		default:
			s.errorf(s.posFrom(), "from %q: %s is not a regular file or directory (%s)", clip(from, 80), s.rel(child), info.Mode().Type())
		}
	}
}

func (s *seeder) posFrom() Pos { return s.fromAt }

// rel names a path in messages relative to the spec's directory.
func (s *seeder) rel(name string) string {
	if filepath.IsAbs(name) {
		if r, err := filepath.Rel(s.dir, name); err == nil {
			return r
		}
	}
	return name
}

// readOne reads one regular file, bounded, without blocking on special files.
func (s *seeder) readOne(name, target, from string, mode *Mode) {
	f, err := s.fsys.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		s.errorf(s.posFrom(), "from %q: %s: %s", clip(from, 80), s.rel(name), s.describe(err))
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		s.errorf(s.posFrom(), "from %q: %s: %s", clip(from, 80), s.rel(name), s.describe(err))
		return
	}
	if !info.Mode().IsRegular() {
		s.errorf(s.posFrom(), "from %q: %s is not a regular file or directory (%s)", clip(from, 80), s.rel(name), info.Mode().Type())
		return
	}
	if info.Size() > s.lim.MaxFileBytes {
		s.errorf(s.posFrom(), "from %q: %s is %s, larger than the %s a seed file may be", clip(from, 80), s.rel(name), FormatSize(info.Size()), FormatSize(s.lim.MaxFileBytes))
		return
	}
	data, err := io.ReadAll(io.LimitReader(f, s.lim.MaxFileBytes+1))
	if err != nil {
		s.errorf(s.posFrom(), "from %q: reading %s: %s", clip(from, 80), s.rel(name), s.describe(err))
		return
	}
	m := Mode(0o644)
	if info.Mode().Perm()&0o111 != 0 {
		m = 0o755
	}
	if mode != nil {
		m = *mode
	}
	src := name
	if !filepath.IsAbs(src) {
		src = filepath.Join(s.dir, src)
	}
	if s.self != nil && os.SameFile(info, s.self) {
		s.errorf(s.posFrom(), "from %q would copy this spec file, checks and all, into the sandbox; seed a subdirectory instead", clip(from, 80))
		return
	}
	s.add(target, data, m, src)
}
