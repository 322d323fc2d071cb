package runner

import (
	"context"
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
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/agentrun/agent/sandbox"
)

// defaultExcluded are directories the default artifact mode ("every file created or changed")
// does not descend into: version-control internals, dependency trees and caches, which are large
// and rebuilt from what the task wrote. Globs can still collect them.
var defaultExcluded = []string{".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".cache", ".npm", ".pytest_cache", ".mypy_cache"}

// tree is a listing of the workdir: relative path → entry.
type tree map[string]sandbox.Entry

// walkResult is a listing with what was not looked at.
type walkResult struct {
	files   tree          // regular files
	skipped []SkippedFile // symlinks, special files, excluded or too deep directories
	dirs    []string      // excluded directories found
}

// walkTree lists the workdir through the sandbox's API, one directory at a time, without following
// symlinks, bounded in entries and depth; with exclude it does not enter defaultExcluded
// directories. Names come from the sandbox and are hostile: a name that is not a plain path
// component is skipped.
func (t *task) walkTree(ctx context.Context, exclude bool) (*walkResult, error) {
	lim := t.r.lim
	w := &walkResult{files: tree{}}
	root := t.s.Workdir
	type dir struct {
		rel   string
		depth int
	}
	queue := []dir{{"", 0}}
	seen := 0
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		abs := root
		if d.rel != "" {
			abs = path.Join(root, d.rel)
		}
		lctx, cancel := context.WithTimeout(ctx, time.Minute)
		ents, err := t.sb.List(lctx, abs, 1)
		cancel()
		if err != nil {
			if d.rel == "" || ctx.Err() != nil || errors.Is(err, sandbox.ErrGone) {
				return w, fmt.Errorf("listing %s: %w", abs, err)
			}
			w.skipped = append(w.skipped, SkippedFile{Path: d.rel + "/", Reason: "could not list: " + clipText(err.Error(), 200)})
			continue
		}
		slices.SortFunc(ents, func(a, b sandbox.Entry) int { return strings.Compare(a.Name, b.Name) })
		for _, e := range ents {
			seen++
			if seen > lim.MaxWalkEntries {
				w.skipped = append(w.skipped, SkippedFile{Path: d.rel + "/", Reason: fmt.Sprintf("stopped listing: more than %d entries under the workdir", lim.MaxWalkEntries)})
				return w, nil
			}
			if !validName(e.Name) {
				w.skipped = append(w.skipped, SkippedFile{Path: clipText(path.Join(d.rel, safeName(e.Name)), 300), Reason: "name is not a plain file name (empty, too long, or holding a NUL, a slash or a line break)"})
				continue
			}
			rel := e.Name
			if d.rel != "" {
				rel = d.rel + "/" + e.Name
			}
			switch {
			case isSymlink(e):
				w.skipped = append(w.skipped, SkippedFile{Path: rel, Reason: "symlink to " + clipText(e.SymlinkTarget, 300) + ": not followed"})
			case e.Type == sandbox.TypeDir:
				if exclude && slices.Contains(defaultExcluded, e.Name) {
					w.dirs = append(w.dirs, rel)
					continue
				}
				if d.depth+1 >= lim.MaxWalkDepth {
					w.skipped = append(w.skipped, SkippedFile{Path: rel + "/", Reason: fmt.Sprintf("deeper than %d directories", lim.MaxWalkDepth)})
					continue
				}
				queue = append(queue, dir{rel, d.depth + 1})
			case e.Type == sandbox.TypeFile:
				w.files[rel] = e
			default:
				w.skipped = append(w.skipped, SkippedFile{Path: rel, Reason: fmt.Sprintf("not a regular file (%s)", e.Type)})
			}
		}
	}
	return w, nil
}

// validName accepts a directory entry name that is one plain path component, both in the sandbox
// and on the host. Line breaks are refused too: the envd protocol cannot name such a path.
func validName(n string) bool {
	return n != "" && n != "." && n != ".." && len(n) <= 255 && !strings.ContainsAny(n, "/\x00\n\r")
}

// safeName shows a refused name in a report.
func safeName(n string) string {
	return strings.Map(func(r rune) rune {
		if r == 0 || r == '/' || r == '\n' || r == '\r' {
			return '?'
		}
		return r
	}, clipText(n, 100))
}

// changed reports whether a file differs from its state after setup.
func changed(before, after sandbox.Entry) bool {
	return before.Size != after.Size || !before.ModTime.Equal(after.ModTime) || before.Mode != after.Mode
}

// artifacts collects the task's files into files/ and records them in the result: by default every
// file created or changed under the workdir since setup ended; with globs, every file they match.
func (t *task) artifacts(ctx context.Context) error {
	a := &Artifacts{Mode: "changed", Files: []ArtifactFile{}}
	if t.s.Artifacts != nil {
		a.Mode, a.Globs = "globs", t.s.Artifacts
	}
	t.res.Artifacts = a
	w, err := t.walkTree(ctx, a.Mode == "changed")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		t.warn("collecting artifacts: %v", err)
		if w == nil {
			return nil
		}
	}
	a.Skipped = append(a.Skipped, w.skipped...)
	for _, d := range w.dirs {
		a.Skipped = append(a.Skipped, SkippedFile{Path: d + "/", Reason: "directory not collected by default (name it in artifacts globs to collect it)"})
	}
	type pick struct {
		rel string
		e   sandbox.Entry
		new bool
		had bool // present after setup, with a different size, time or mode
	}
	var picks []pick
	for _, rel := range sortedKeys(w.files) {
		e := w.files[rel]
		if a.Mode == "globs" {
			if matchAny(t.s.Artifacts, rel) {
				_, had := t.base[rel]
				picks = append(picks, pick{rel: rel, e: e, new: !had && t.base != nil})
			}
			continue
		}
		before, had := t.base[rel]
		if !had || changed(before, e) {
			picks = append(picks, pick{rel: rel, e: e, new: !had, had: had})
		}
	}
	if a.Mode == "changed" {
		for _, rel := range sortedKeys(t.base) {
			if _, ok := w.files[rel]; !ok && !underSkipped(rel, w) {
				a.Deleted = append(a.Deleted, rel)
			}
		}
	}
	if len(picks) == 0 {
		return nil
	}
	filesDir := filepath.Join(t.dir, FilesDir)
	if err := os.MkdirAll(filesDir, 0o755); err != nil {
		return fmt.Errorf("task %s: %w", t.s.Name, err)
	}
	root, err := os.OpenRoot(filesDir)
	if err != nil {
		return fmt.Errorf("task %s: %w", t.s.Name, err)
	}
	defer root.Close()
	lim := t.r.lim
	for _, p := range picks {
		if ctx.Err() != nil {
			return nil
		}
		skip := func(reason string) { a.Skipped = append(a.Skipped, SkippedFile{Path: p.rel, Reason: reason}) }
		switch {
		case len(a.Files) >= lim.MaxArtifactFiles:
			skip(fmt.Sprintf("more than %d files", lim.MaxArtifactFiles))
			continue
		case p.e.Size > lim.MaxArtifactBytes:
			skip(fmt.Sprintf("%d bytes, more than the %d kept per file", p.e.Size, lim.MaxArtifactBytes))
			continue
		case a.Bytes+p.e.Size > lim.MaxArtifactTotal:
			skip(fmt.Sprintf("the task's files would exceed %d bytes", lim.MaxArtifactTotal))
			continue
		}
		f, err := t.readArtifact(ctx, p.rel)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var sk skipError
			if errors.As(err, &sk) {
				skip(string(sk))
				continue
			}
			skip("could not read: " + clipText(err.Error(), 200))
			if errors.Is(err, sandbox.ErrGone) {
				t.gone = true
				return nil
			}
			continue
		}
		sum := sha256.Sum256(f)
		digest := hex.EncodeToString(sum[:])
		if p.had && t.baseHash[p.rel] == digest {
			continue // touched (a checkout, a rewrite) but the same content: not a change
		}
		if a.Bytes+int64(len(f)) > lim.MaxArtifactTotal {
			skip(fmt.Sprintf("the task's files would exceed %d bytes", lim.MaxArtifactTotal))
			continue
		}
		mode := fs.FileMode(0o644)
		if p.e.Mode&0o111 != 0 {
			mode = 0o755
		}
		if err := writeUnder(root, p.rel, f, mode); err != nil {
			skip("could not store: " + clipText(err.Error(), 200))
			continue
		}
		a.Files = append(a.Files, ArtifactFile{Path: p.rel, Size: int64(len(f)), Mode: fmt.Sprintf("%04o", uint32(mode)),
			SHA256: digest, New: p.new})
		a.Bytes += int64(len(f))
	}
	return nil
}

// Bounds of the content hashes taken after setup: small files only, so a checkout that rewrites
// files without changing them does not count as a change, at little cost.
const (
	baseHashMaxFile  = 1 << 20
	baseHashMaxTotal = 32 << 20
	baseHashMaxFiles = 2000
)

// hashBase records the content hashes of the small files present after setup.
func (t *task) hashBase(ctx context.Context) {
	t.baseHash = map[string]string{}
	if len(t.s.Setup) == 0 {
		// Nothing but the seed files ran: their hashes are known.
		for _, f := range t.s.Files {
			t.baseHash[f.Path] = f.SHA256
		}
		return
	}
	var total int64
	for _, rel := range sortedKeys(t.base) {
		e := t.base[rel]
		if e.Size > baseHashMaxFile || total+e.Size > baseHashMaxTotal || len(t.baseHash) >= baseHashMaxFiles {
			continue
		}
		data, err := t.readArtifact(ctx, rel)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		total += int64(len(data))
		sum := sha256.Sum256(data)
		t.baseHash[rel] = hex.EncodeToString(sum[:])
	}
}

// skipError is a reason to skip a file, not a failure.
type skipError string

func (e skipError) Error() string { return string(e) }

// readArtifact reads one file through the sandbox's API. It checks again, just before reading,
// that the path is a regular file and not a symlink, and bounds the read whatever the file does
// meanwhile.
func (t *task) readArtifact(ctx context.Context, rel string) ([]byte, error) {
	lim := t.r.lim.MaxArtifactBytes
	p := path.Join(t.s.Workdir, rel)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	e, err := t.sb.Stat(rctx, p)
	if err != nil {
		if errors.Is(err, sandbox.ErrNotFound) {
			return nil, skipError("removed while collecting")
		}
		return nil, err
	}
	if isSymlink(e) {
		return nil, skipError("symlink to " + clipText(e.SymlinkTarget, 300) + ": not followed")
	}
	if e.Type != sandbox.TypeFile {
		return nil, skipError(fmt.Sprintf("not a regular file (%s)", e.Type))
	}
	rc, err := t.sb.Open(rctx, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, lim+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > lim {
		return nil, skipError(fmt.Sprintf("grew beyond the %d bytes kept per file", lim))
	}
	return data, nil
}

// writeUnder writes a file at rel (slash-separated, from the sandbox) below root. os.Root refuses
// any path that would leave root, through ".." or a symlink.
func writeUnder(root *os.Root, rel string, data []byte, mode fs.FileMode) error {
	name := filepath.FromSlash(rel)
	if !filepath.IsLocal(name) {
		return fmt.Errorf("%q is not a local path", rel)
	}
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// matchAny reports whether rel matches one of the globs (doublestar: ** spans directories).
func matchAny(globs []string, rel string) bool {
	for _, g := range globs {
		if ok, err := doublestar.Match(g, rel); err == nil && ok {
			return true
		}
	}
	return false
}

// underSkipped reports whether rel lies in a directory the walk did not enter, so its absence
// does not mean it was deleted.
func underSkipped(rel string, w *walkResult) bool {
	for _, d := range w.dirs {
		if strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	for _, s := range w.skipped {
		if d, ok := strings.CutSuffix(s.Path, "/"); ok && strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}
