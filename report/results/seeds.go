package results

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/agentrun/agent/runner/spec"
)

// LoadSeeds fills each cell's Seeds with the seed files of its spec, read from the spec file named
// in its result (spec_file), so reports can show what the task changed. The results do not hold
// the seeds themselves: they are read as the spec is on disk now, and only from spec files inside
// root (the specs' checkout), so a results directory from elsewhere cannot make a report read
// arbitrary host files. Cells whose spec cannot be read get a SeedsNote saying why.
func (r *Results) LoadSeeds(root string, lim Limits) {
	lim = lim.withDefaults()
	rootAbs, err := filepath.Abs(root)
	if err == nil {
		rootAbs, err = filepath.EvalSymlinks(rootAbs)
	}
	if err != nil {
		for _, c := range r.Cells {
			c.SeedsNote = fmt.Sprintf("seed files not read: %v", err)
		}
		return
	}
	type loaded struct {
		files []File
		note  string
	}
	cache := map[string]loaded{}
	for _, c := range r.Cells {
		if c.SpecFile == "" {
			c.SeedsNote = "the result names no spec file"
			continue
		}
		l, ok := cache[c.SpecFile]
		if !ok {
			l.files, l.note = readSeeds(c.SpecFile, rootAbs, lim)
			cache[c.SpecFile] = l
		}
		c.Seeds, c.SeedsNote = l.files, l.note
	}
}

func readSeeds(file, root string, lim Limits) ([]File, string) {
	abs, err := filepath.EvalSymlinks(file)
	if err != nil {
		return nil, fmt.Sprintf("seed files not read: the spec %s is not there now", file)
	}
	abs, _ = filepath.Abs(abs)
	if rel, err := filepath.Rel(root, abs); err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Sprintf("seed files not read: the spec %s is outside %s", file, root)
	}
	s, err := spec.LoadSpec(abs, spec.Options{NoConfig: true})
	if err != nil {
		return nil, fmt.Sprintf("seed files not read: %v", firstLineOf(err.Error()))
	}
	var out []File
	for _, f := range s.Files {
		if len(out) >= lim.MaxFiles {
			break
		}
		data, cut := f.Data, false
		if int64(len(data)) > lim.MaxFileBytes {
			data, cut = data[:lim.MaxFileBytes], true
		}
		out = append(out, File{Path: f.Path, Size: f.Size, Data: data, Truncated: cut, Binary: isBinary(data)})
	}
	return out, "seed files as in " + file + " now"
}

func firstLineOf(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
