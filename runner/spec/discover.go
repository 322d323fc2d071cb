package spec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// configNames are the names of the defaults file; discovery never takes them for specs.
var configNames = []string{"agent.yaml", "agent.yml"}

// maxCandidates bounds the spec files one run may discover.
const maxCandidates = 10000

// Candidate is a spec file found by Discover.
type Candidate struct {
	// Path is the file's path, as named or as found below a named directory or glob.
	Path string
	// Named is true when the argument named this file itself (not a directory or a glob).
	Named bool
}

func isConfigName(name string) bool {
	for _, n := range configNames {
		if name == n {
			return true
		}
	}
	return false
}

func isSpecName(name string) bool {
	ext := filepath.Ext(name)
	return (ext == ".yaml" || ext == ".yml") && !isConfigName(name)
}

// Discover expands arguments into spec files, in argument order, each file once:
//   - a file is taken as it is (agent.yaml is refused: it holds defaults, not a task);
//   - a directory is searched recursively for *.yaml and *.yml files, in lexical order, skipping
//     agent.yaml, hidden directories (.git, …) and node_modules, and not following symlinks;
//   - anything with glob characters (* ? [ {) is a glob, ** matching any number of directories;
//     it keeps the .yaml/.yml files it matches, except agent.yaml.
//
// A name that does not exist, or a glob or directory that yields no spec, is an error.
func Discover(ctx context.Context, args []string) ([]Candidate, error) {
	var out []Candidate
	seen := map[string]int{} // absolute path → index in out
	var errs ErrorList
	add := func(p string, named bool) {
		abs := mustAbs(p)
		if i, dup := seen[abs]; dup {
			out[i].Named = out[i].Named || named
			return
		}
		seen[abs] = len(out)
		out = append(out, Candidate{Path: p, Named: named})
	}
	for _, arg := range args {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("discovering specs: %w", err)
		}
		before := len(out)
		argErr := func(format string, a ...any) {
			errs = append(errs, &Error{File: arg, Msg: fmt.Sprintf(format, a...)})
		}
		if strings.ContainsAny(arg, "*?[{") {
			if !doublestar.ValidatePathPattern(filepath.ToSlash(arg)) {
				argErr("invalid glob")
				continue
			}
			matches, err := doublestar.FilepathGlob(arg, doublestar.WithFilesOnly(), doublestar.WithFailOnIOErrors())
			if err != nil {
				argErr("expanding glob: %v", unwrapPath(err))
				continue
			}
			for _, m := range matches {
				if isSpecName(filepath.Base(m)) {
					add(m, false)
				}
			}
			if len(out) == before {
				argErr("no spec file (*.yaml, *.yml) matches")
			}
			continue
		}
		info, err := os.Stat(arg)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				argErr("no such file or directory")
			} else {
				argErr("%v", unwrapPath(err))
			}
			continue
		}
		if !info.IsDir() {
			if isConfigName(filepath.Base(arg)) {
				argErr("%s holds defaults for the specs next to it, not a task; name the specs or their directory", filepath.Base(arg))
				continue
			}
			add(arg, true)
			continue
		}
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if d.IsDir() {
				if p != arg && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() && isSpecName(d.Name()) {
				add(p, false)
				if len(out) > maxCandidates {
					return fmt.Errorf("more than %d spec files", maxCandidates)
				}
			}
			return nil
		})
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("discovering specs: %w", cerr)
			}
			argErr("searching: %v", unwrapPath(err))
			continue
		}
		if len(out) == before {
			argErr("no spec file (*.yaml, *.yml) in this directory")
		}
	}
	if len(out) > maxCandidates {
		errs = append(errs, &Error{Msg: fmt.Sprintf("more than %d spec files", maxCandidates)})
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, &Error{Msg: "no spec given"}
	}
	return out, nil
}

// FindConfig looks for the agent.yaml that applies to a set of spec files: in the deepest
// directory that contains them all, then in its parents, stopping after a directory that holds
// .git (a repository's root) or at the file system's root. It returns "" when there is none, and
// an error when one directory holds both agent.yaml and agent.yml.
func FindConfig(specFiles []string) (string, error) {
	if len(specFiles) == 0 {
		return "", nil
	}
	dir := filepath.Dir(mustAbs(specFiles[0]))
	for _, f := range specFiles[1:] {
		dir = commonDir(dir, filepath.Dir(mustAbs(f)))
	}
	for {
		var found []string
		for _, n := range configNames {
			p := filepath.Join(dir, n)
			if info, err := os.Stat(p); err == nil && !info.IsDir() {
				found = append(found, p)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 2:
			return "", &Error{File: found[0], Msg: "both agent.yaml and agent.yml exist here; keep one"}
		}
		if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
			return "", nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil
		}
		dir = parent
	}
}

// commonDir returns the deepest directory containing both absolute directories a and b.
func commonDir(a, b string) string {
	for {
		if b == a || strings.HasPrefix(b, a+string(filepath.Separator)) || a == string(filepath.Separator) {
			return a
		}
		a = filepath.Dir(a)
	}
}

// Selector chooses tasks by name (--filter) and tag (--tags).
type Selector struct {
	names []func(string) bool
	with  []string
	not   []string
}

// NewSelector compiles name filters and tag expressions.
//
// A filter is a glob on the whole name (*, ?, [a-z]) or, with the prefix re:, a regular
// expression (RE2) searched in the name; a task matches when any filter matches (or none is
// given). A tag selects tasks that have it; !tag (or -tag) excludes tasks that have it; a task
// matches when it has at least one of the plain tags (or none is given) and none of the excluded.
// Arguments may hold several comma-separated entries.
func NewSelector(filters, tags []string) (*Selector, error) {
	s := &Selector{}
	for _, f := range splitAll(filters) {
		if src, ok := strings.CutPrefix(f, "re:"); ok {
			re, err := regexp.Compile(src)
			if err != nil {
				return nil, &Error{Msg: fmt.Sprintf("--filter %q: %v", f, err)}
			}
			s.names = append(s.names, re.MatchString)
			continue
		}
		if _, err := path.Match(f, ""); err != nil {
			return nil, &Error{Msg: fmt.Sprintf("--filter %q: invalid glob (use re: for a regular expression)", f)}
		}
		pat := f
		s.names = append(s.names, func(name string) bool { ok, _ := path.Match(pat, name); return ok })
	}
	for _, t := range splitAll(tags) {
		neg := strings.HasPrefix(t, "!") || strings.HasPrefix(t, "-")
		if neg {
			t = t[1:]
		}
		if !ValidName(t) {
			return nil, &Error{Msg: fmt.Sprintf("--tags: invalid tag %q", t)}
		}
		if neg {
			s.not = append(s.not, t)
		} else {
			s.with = append(s.with, t)
		}
	}
	return s, nil
}

func splitAll(list []string) []string {
	var out []string
	for _, l := range list {
		for _, p := range strings.Split(l, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Match reports whether the selector selects s. A nil Selector selects every task.
func (sel *Selector) Match(s *Spec) bool {
	if sel == nil {
		return true
	}
	if len(sel.names) > 0 {
		ok := false
		for _, m := range sel.names {
			if m(s.Name) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	has := func(t string) bool {
		for _, x := range s.Tags {
			if x == t {
				return true
			}
		}
		return false
	}
	for _, t := range sel.not {
		if has(t) {
			return false
		}
	}
	if len(sel.with) == 0 {
		return true
	}
	for _, t := range sel.with {
		if has(t) {
			return true
		}
	}
	return false
}

// doublestarValid reports whether g is a valid artifact glob.
func doublestarValid(g string) bool { return doublestar.ValidatePattern(g) }
