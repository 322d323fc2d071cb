package spec

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Built-in defaults, the lowest layer. Documented in docs/SPECS.md.
const (
	DefaultTemplate       = "host"
	DefaultWorkdir        = "/home/user"
	DefaultTimeout        = 15 * time.Minute
	DefaultCommandTimeout = 5 * time.Minute
	DefaultMaxSteps       = 50
	DefaultMaxOutput      = 32 << 10
	DefaultMemory         = 2 << 30
	DefaultCPUs           = 1.0
	DefaultPids           = 1024
	DefaultDisk           = 4 << 30
	DefaultSetupTimeout   = 10 * time.Minute
	DefaultCheckTimeout   = 2 * time.Minute
)

// Builtin returns the built-in defaults as a fully set layer.
func Builtin() Config {
	return Config{Common: Common{
		Template: Ptr(DefaultTemplate),
		Workdir:  Ptr(DefaultWorkdir),
		Limits: &LimitsFile{
			Timeout:        Ptr(Duration(DefaultTimeout)),
			CommandTimeout: Ptr(Duration(DefaultCommandTimeout)),
			MaxSteps:       Ptr(DefaultMaxSteps),
			MaxOutput:      Ptr(Size(DefaultMaxOutput)),
			Memory:         Ptr(Size(DefaultMemory)),
			CPUs:           Ptr(DefaultCPUs),
			Pids:           Ptr(DefaultPids),
			Disk:           Ptr(Size(DefaultDisk)),
		},
		Network:        &Network{Mode: NetworkNone},
		Keep:           Ptr(KeepNone),
		Repeat:         Ptr(1),
		ForkSetup:      Ptr(true),
		StopBackground: Ptr(false),
	}}
}

// Ptr returns a pointer to v, for building layers in Go (CLI overrides, tests).
func Ptr[T any](v T) *T { return &v }

// Spec is a resolved task: all layers merged, defaults applied, seed files read. It is what the
// runner executes; its Digest identifies it for --resume.
type Spec struct {
	Name string `json:"name"`
	// File is the spec file's path as discovered.
	File     string `json:"file"`
	Prompt   string `json:"prompt"`
	System   string `json:"system,omitempty"`
	Model    string `json:"model,omitempty"`
	Template string `json:"template"`
	Workdir  string `json:"workdir"`
	// Files are the seed files in the order they are written, paths relative to Workdir.
	Files  []File            `json:"files,omitempty"`
	Setup  []Step            `json:"setup,omitempty"`
	Checks []Check           `json:"checks,omitempty"`
	Limits Limits            `json:"limits"`
	Env    map[string]string `json:"env,omitempty"`
	// Artifacts are globs relative to Workdir; nil means every file created or changed.
	Artifacts []string `json:"artifacts,omitempty"`
	Repeat    int      `json:"repeat"`
	Tags      []string `json:"tags,omitempty"`
	Network   Network  `json:"network"`
	Keep      Keep     `json:"keep"`
	// Sandbox is the backend the spec (or agent.yaml) names; empty: the run's default.
	Sandbox Backend `json:"sandbox,omitempty"`
	// Runtime is the OCI runtime the spec (or agent.yaml) names for a local sandbox; empty: the
	// run's default (--runtime).
	Runtime        Runtime `json:"runtime,omitempty"`
	ForkSetup      bool    `json:"fork_setup"`
	StopBackground bool    `json:"stop_background"`
	// Digest is "sha256:" and the hex digest of the spec's canonical form (see Digest).
	Digest string `json:"digest"`

	// NamePos is where the name is written (zero when it comes from the file name).
	NamePos Pos `json:"-"`
	// fromPaths are the host paths read by from entries (used to keep seed files out of discovery).
	fromPaths []string
}

// File is one seed file.
type File struct {
	// Path is slash-separated and relative to the workdir.
	Path string `json:"path"`
	Data []byte `json:"-"`
	Mode Mode   `json:"mode"`
	// Source is the host file it was read from; empty for inline content.
	Source string `json:"source,omitempty"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Step is a setup command.
type Step struct {
	Run     string   `json:"run"`
	Timeout Duration `json:"timeout"`
}

// CheckKind says what a check looks at.
type CheckKind string

// Check kinds.
const (
	CheckRun  CheckKind = "run"  // a command's exit code and stdout
	CheckFile CheckKind = "file" // a file's existence and content
)

// Check is a resolved check. Optional expectations are nil when not set.
type Check struct {
	Kind CheckKind `json:"kind"`
	Name string    `json:"name"`
	// Run checks.
	Run            string   `json:"run,omitempty"`
	Exit           int      `json:"exit"`
	Stdout         *string  `json:"stdout,omitempty"`
	StdoutContains *string  `json:"stdout_contains,omitempty"`
	StdoutRegex    *Pattern `json:"stdout_regex,omitempty"`
	Timeout        Duration `json:"timeout,omitempty"`
	// File checks.
	File     string   `json:"file,omitempty"`
	Exists   bool     `json:"exists"`
	Contains *string  `json:"contains,omitempty"`
	Equals   *string  `json:"equals,omitempty"`
	Regex    *Pattern `json:"regex,omitempty"`
	// Pos is where the check is written in the spec.
	Pos Pos `json:"pos"`
}

// Limits are a task's resolved limits. MaxTokens and MaxCost are zero when unlimited.
type Limits struct {
	Timeout        Duration `json:"timeout"`
	CommandTimeout Duration `json:"command_timeout"`
	MaxSteps       int      `json:"max_steps"`
	MaxTokens      int64    `json:"max_tokens,omitempty"`
	MaxCost        float64  `json:"max_cost,omitempty"`
	MaxOutput      Size     `json:"max_output"`
	Memory         Size     `json:"memory"`
	CPUs           float64  `json:"cpus"`
	Pids           int      `json:"pids"`
	Disk           Size     `json:"disk"`
}

// overlay sets every field of c that o sets: o wins field by field; env merges by variable and
// limits merge by limit. Network, artifacts and the other fields are replaced whole.
func (c *Common) overlay(o *Common) {
	if o == nil {
		return
	}
	set := func(dst **string, src *string) {
		if src != nil {
			*dst = src
		}
	}
	set(&c.Model, o.Model)
	set(&c.Template, o.Template)
	set(&c.Workdir, o.Workdir)
	set(&c.System, o.System)
	if o.Limits != nil {
		if c.Limits == nil {
			c.Limits = &LimitsFile{}
		}
		c.Limits.overlay(o.Limits)
	}
	if o.Env != nil {
		merged := Env{}
		for k, v := range c.Env {
			merged[k] = v
		}
		for k, v := range o.Env {
			merged[k] = v
		}
		c.Env = merged
	}
	if o.Network != nil {
		c.Network = o.Network
	}
	if o.Keep != nil {
		c.Keep = o.Keep
	}
	if o.Sandbox != nil {
		c.Sandbox = o.Sandbox
	}
	if o.Runtime != nil {
		c.Runtime = o.Runtime
	}
	if o.Repeat != nil {
		c.Repeat = o.Repeat
	}
	if o.Artifacts != nil {
		c.Artifacts = o.Artifacts
	}
	if o.ForkSetup != nil {
		c.ForkSetup = o.ForkSetup
	}
	if o.StopBackground != nil {
		c.StopBackground = o.StopBackground
	}
}

func (l *LimitsFile) overlay(o *LimitsFile) {
	if o.Timeout != nil {
		l.Timeout = o.Timeout
	}
	if o.CommandTimeout != nil {
		l.CommandTimeout = o.CommandTimeout
	}
	if o.MaxSteps != nil {
		l.MaxSteps = o.MaxSteps
	}
	if o.MaxTokens != nil {
		l.MaxTokens = o.MaxTokens
	}
	if o.MaxCost != nil {
		l.MaxCost = o.MaxCost
	}
	if o.MaxOutput != nil {
		l.MaxOutput = o.MaxOutput
	}
	if o.Memory != nil {
		l.Memory = o.Memory
	}
	if o.CPUs != nil {
		l.CPUs = o.CPUs
	}
	if o.Pids != nil {
		l.Pids = o.Pids
	}
	if o.Disk != nil {
		l.Disk = o.Disk
	}
}

// MergeCommon returns the task settings of the layers applied in order, later layers winning.
// For a spec the order is: Builtin(), agent.yaml, the spec, the CLI overrides.
func MergeCommon(layers ...*Common) Common {
	var out Common
	for _, l := range layers {
		out.overlay(l)
	}
	return out
}

// Run is the resolved run-wide configuration (agent.yaml < CLI overrides). Empty strings and zero
// numbers mean "not set": the CLI picks its own defaults (provider from the environment,
// concurrency from the number of CPUs).
type Run struct {
	Provider          string `json:"provider,omitempty"`
	BaseURL           string `json:"base_url,omitempty"`
	APIKeyEnv         string `json:"api_key_env,omitempty"`
	Concurrency       int    `json:"concurrency,omitempty"`
	MaxLLMConcurrency int    `json:"max_llm_concurrency,omitempty"`
	// Prices is the price table's path, resolved against the agent.yaml that names it.
	Prices string `json:"prices,omitempty"`
	// Defaults are the task settings from built-in defaults, agent.yaml and the CLI; a spec's own
	// settings sit between agent.yaml and the CLI.
	Model    string `json:"model,omitempty"`
	Template string `json:"template"`
}

// ResolveRun merges the run-wide settings of agent.yaml (cfg, may be nil; cfgFile locates relative
// paths) and the CLI overrides (cli, may be nil).
func ResolveRun(cfg *Config, cfgFile string, cli *Config) Run {
	var r Run
	b := Builtin()
	common := MergeCommon(&b.Common, cfgCommon(cfg), cfgCommon(cli))
	r.Template = deref(common.Template)
	r.Model = deref(common.Model)
	for _, l := range []*Config{cfg, cli} {
		if l == nil {
			continue
		}
		if l.Provider != nil {
			r.Provider = *l.Provider
		}
		if l.BaseURL != nil {
			r.BaseURL = *l.BaseURL
		}
		if l.APIKeyEnv != nil {
			r.APIKeyEnv = *l.APIKeyEnv
		}
		if l.Concurrency != nil {
			r.Concurrency = *l.Concurrency
		}
		if l.MaxLLMConcurrency != nil {
			r.MaxLLMConcurrency = *l.MaxLLMConcurrency
		}
		if l.Prices != nil {
			r.Prices = *l.Prices
			if l == cfg && cfgFile != "" && !filepath.IsAbs(r.Prices) {
				r.Prices = filepath.Join(filepath.Dir(cfgFile), r.Prices)
			}
		}
	}
	return r
}

func cfgCommon(c *Config) *Common {
	if c == nil {
		return nil
	}
	return &c.Common
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// resolve turns a parsed spec file into a Spec: layers merged, name defaulted, seed files read
// (bounded, confined to the spec's directory), checks resolved and the digest computed.
func resolve(file string, sf *SpecFile, opts *Options) (*Spec, ErrorList) {
	b := Builtin()
	c := MergeCommon(&b.Common, cfgCommon(opts.Config), &sf.Common, cfgCommon(opts.Overrides))
	s := &Spec{
		File:           file,
		Prompt:         sf.Prompt,
		System:         deref(c.System),
		Model:          deref(c.Model),
		Template:       deref(c.Template),
		Workdir:        deref(c.Workdir),
		Env:            c.Env,
		Artifacts:      c.Artifacts,
		Repeat:         deref(c.Repeat),
		Tags:           sf.Tags,
		Network:        deref(c.Network),
		Keep:           deref(c.Keep),
		Sandbox:        deref(c.Sandbox),
		Runtime:        deref(c.Runtime),
		ForkSetup:      deref(c.ForkSetup),
		StopBackground: deref(c.StopBackground),
		NamePos:        sf.namePos,
	}
	l := c.Limits
	s.Limits = Limits{
		Timeout:        deref(l.Timeout),
		CommandTimeout: deref(l.CommandTimeout),
		MaxSteps:       deref(l.MaxSteps),
		MaxTokens:      deref(l.MaxTokens),
		MaxCost:        deref(l.MaxCost),
		MaxOutput:      deref(l.MaxOutput),
		Memory:         deref(l.Memory),
		CPUs:           deref(l.CPUs),
		Pids:           deref(l.Pids),
		Disk:           deref(l.Disk),
	}
	var errs ErrorList
	if sf.Name != nil {
		s.Name = *sf.Name
	} else {
		s.Name = defaultName(file)
		if !ValidName(s.Name) {
			errs = append(errs, &Error{File: file, Pos: Pos{Line: 1, Column: 1}, Msg: fmt.Sprintf(
				"the name %q taken from the file name is not a valid task name (lower-case letters, digits, '.', '_', '-'); set name: in the spec", clip(s.Name, 60))})
		}
	}
	for _, cmd := range sf.Setup {
		t := time.Duration(DefaultSetupTimeout)
		if cmd.Timeout != nil {
			t = cmd.Timeout.D()
		}
		s.Setup = append(s.Setup, Step{Run: cmd.Run, Timeout: Duration(t)})
	}
	for _, ce := range sf.Checks {
		s.Checks = append(s.Checks, resolveCheck(&ce))
	}
	files, from, ferrs := readSeeds(file, sf.Files, opts)
	errs = append(errs, ferrs...)
	s.Files, s.fromPaths = files, from
	if len(errs) > 0 {
		return nil, errs
	}
	s.Digest = Digest(s)
	return s, nil
}

// defaultName is the file's base name without extension; for task.yaml, the directory's name.
func defaultName(file string) string {
	base := filepath.Base(file)
	name := strings.TrimSuffix(base, filepath.Ext(base))
	if name == "task" {
		if dir := filepath.Base(filepath.Dir(mustAbs(file))); dir != "/" && dir != "." {
			return dir
		}
	}
	return name
}

func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func resolveCheck(ce *CheckEntry) Check {
	c := Check{Pos: ce.pos}
	if ce.Run != nil {
		c.Kind = CheckRun
		c.Run = *ce.Run
		c.Exit = deref(ce.Exit)
		c.Stdout = ce.Stdout
		c.StdoutContains = ce.StdoutContains
		c.StdoutRegex = ce.StdoutRegex
		c.Timeout = Duration(DefaultCheckTimeout)
		if ce.Timeout != nil {
			c.Timeout = *ce.Timeout
		}
		c.Name = firstLine(c.Run)
	} else {
		c.Kind = CheckFile
		c.File = deref(ce.File)
		c.Exists = ce.Exists == nil || *ce.Exists
		c.Contains, c.Equals, c.Regex = ce.Contains, ce.Equals, ce.Regex
		c.Name = "file " + c.File
	}
	if ce.Name != nil {
		c.Name = *ce.Name
	}
	return c
}

// firstLine shortens a command to a label.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return clip(s, 80)
}

// cleanTarget joins a seed destination below the workdir, slash-separated.
func cleanTarget(dir, rel string) string {
	return path.Clean(path.Join(dir, rel))
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
