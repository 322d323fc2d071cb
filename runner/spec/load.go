package spec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// Options control how specs are loaded.
type Options struct {
	// AllowOutside lets from paths leave the spec's directory (CLI --allow-outside).
	AllowOutside bool
	// Config is the parsed agent.yaml (nil when there is none). Load fills it in.
	Config *Config
	// ConfigFile is the agent.yaml to use. Empty: Load looks for one (see FindConfig).
	ConfigFile string
	// NoConfig makes Load ignore agent.yaml files.
	NoConfig bool
	// Overrides are the CLI's settings; they win over agent.yaml and over every spec.
	Overrides *Config
	// ReadLimits bound what is read; zero fields take DefaultReadLimits.
	ReadLimits ReadLimits
	// Select chooses tasks by name and tag; nil selects all.
	Select *Selector
}

func (o *Options) readLimits() ReadLimits {
	l, d := o.ReadLimits, DefaultReadLimits()
	if l.MaxSpecBytes <= 0 {
		l.MaxSpecBytes = d.MaxSpecBytes
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = d.MaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = d.MaxTotalBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	return l
}

// ParseSpec decodes one spec file strictly. file names the source in errors. Errors are an
// ErrorList with a position for each problem.
func ParseSpec(file string, src []byte) (*SpecFile, error) {
	d := &decoder{file: file}
	var sf SpecFile
	if root := d.parseDocument(src, false); root != nil {
		if root.Kind != yaml.MappingNode {
			d.typeError(root, "a mapping of spec fields (prompt, files, checks, …)")
		} else {
			d.decode(root, reflectValue(&sf))
		}
	}
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	return &sf, nil
}

// ParseConfig decodes an agent.yaml file strictly. An empty file (or one of comments only) is an
// empty Config.
func ParseConfig(file string, src []byte) (*Config, error) {
	d := &decoder{file: file}
	var c Config
	if root := d.parseDocument(src, true); root != nil {
		if root.Kind != yaml.MappingNode {
			d.typeError(root, "a mapping of settings (model, limits, …)")
		} else {
			d.decode(root, reflectValue(&c))
		}
	}
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// readBounded reads a whole spec-sized file, refusing larger ones and anything but regular files.
func readBounded(file string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("reading: %v", unwrapPath(err))}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("reading: %v", unwrapPath(err))}
	}
	if !info.Mode().IsRegular() {
		return nil, &Error{File: file, Msg: "not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &Error{File: file, Msg: fmt.Sprintf("reading: %v", unwrapPath(err))}
	}
	if int64(len(data)) > limit {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %s; a spec file holds settings, put data in seed files", FormatSize(limit))}
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// LoadConfig reads and parses an agent.yaml file.
func LoadConfig(file string, lim ReadLimits) (*Config, error) {
	if lim.MaxSpecBytes <= 0 {
		lim.MaxSpecBytes = DefaultReadLimits().MaxSpecBytes
	}
	src, err := readBounded(file, lim.MaxSpecBytes)
	if err != nil {
		return nil, err
	}
	return ParseConfig(file, src)
}

// LoadSpec reads, parses and resolves one spec file with opts (opts.Config is used as is).
func LoadSpec(file string, opts Options) (*Spec, error) {
	src, err := readBounded(file, opts.readLimits().MaxSpecBytes)
	if err != nil {
		return nil, err
	}
	sf, err := ParseSpec(file, src)
	if err != nil {
		return nil, err
	}
	s, errs := resolve(file, sf, &opts)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Suite is the result of Load: the run-wide configuration and the selected specs.
type Suite struct {
	// ConfigFile is the agent.yaml used, or empty.
	ConfigFile string
	// Config is the parsed agent.yaml, or nil.
	Config *Config
	// Run is the run-wide configuration (agent.yaml < CLI).
	Run Run
	// Specs are the selected specs in discovery order.
	Specs []*Spec
	// Discovered counts the specs found before selection.
	Discovered int
}

// Load discovers the specs named by args (files, globs, directories), finds and parses agent.yaml,
// resolves every spec, refuses duplicate names and applies opts.Select. It reports every problem
// it finds, across all files, as one ErrorList (errors.Is(err, ErrSpec) holds).
func Load(ctx context.Context, args []string, opts Options) (*Suite, error) {
	cands, err := Discover(ctx, args)
	if err != nil {
		return nil, err
	}
	lim := opts.readLimits()
	suite := &Suite{}
	if !opts.NoConfig {
		cfgFile := opts.ConfigFile
		if cfgFile == "" {
			paths := make([]string, len(cands))
			for i, c := range cands {
				paths[i] = c.Path
			}
			if cfgFile, err = FindConfig(paths); err != nil {
				return nil, err
			}
		}
		if cfgFile != "" {
			cfg, err := LoadConfig(cfgFile, lim)
			if err != nil {
				return nil, err
			}
			suite.ConfigFile, suite.Config = cfgFile, cfg
			opts.Config = cfg
		}
	}
	suite.Run = ResolveRun(opts.Config, suite.ConfigFile, opts.Overrides)

	results := make([]loaded, 0, len(cands))
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("loading specs: %w", err)
		}
		s, err := LoadSpec(c.Path, opts)
		r := loaded{cand: c, spec: s}
		if err != nil {
			r.errs = asErrorList(err)
		}
		results = append(results, r)
	}
	// Seed files are not specs: drop found (not named) candidates that lie inside a from path of
	// another spec, with their errors, so a .yaml seed file never runs as a task.
	var errs ErrorList
	var specs []*Spec
	for i, r := range results {
		if !r.cand.Named && seededByOther(r.cand.Path, i, results) {
			continue
		}
		errs = append(errs, r.errs...)
		if r.spec != nil {
			specs = append(specs, r.spec)
		}
	}
	first := map[string]*Spec{}
	for _, s := range specs {
		if prev, dup := first[s.Name]; dup {
			errs = append(errs, &Error{File: s.File, Pos: s.NamePos, Msg: fmt.Sprintf(
				"duplicate task name %q: also %s", s.Name, posString(prev.File, prev.NamePos))})
			continue
		}
		first[s.Name] = s
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	suite.Discovered = len(specs)
	for _, s := range specs {
		if opts.Select.Match(s) {
			suite.Specs = append(suite.Specs, s)
		}
	}
	return suite, nil
}

func posString(file string, p Pos) string {
	e := &Error{File: file, Pos: p}
	return strings.TrimSuffix(e.Error(), ": ")
}

func asErrorList(err error) ErrorList {
	var l ErrorList
	if errors.As(err, &l) {
		return l
	}
	var e *Error
	if errors.As(err, &e) {
		return ErrorList{e}
	}
	return ErrorList{{Msg: err.Error()}}
}

// loaded is one candidate's outcome.
type loaded struct {
	cand Candidate
	spec *Spec
	errs ErrorList
}

// seededByOther reports whether file lies inside a from path of a spec other than results[self].
func seededByOther(file string, self int, results []loaded) bool {
	for j, r := range results {
		if j != self && r.spec != nil && insideAny(file, r.spec.fromPaths) {
			return true
		}
	}
	return false
}

// insideAny reports whether file is one of paths or lies below one of them.
func insideAny(file string, paths []string) bool {
	abs := mustAbs(file)
	for _, p := range paths {
		if abs == p || strings.HasPrefix(abs, p+string(filepath.Separator)) {
			return true
		}
	}
	return false
}
