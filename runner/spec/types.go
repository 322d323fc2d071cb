package spec

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// The types in this file are the YAML layers as written: a task spec file (SpecFile), the defaults
// file agent.yaml (Config), and CLI overrides (also a Config). Pointer and nil-able fields mean
// "not set in this layer"; Merge and Resolve turn the layers into a resolved Spec.
// The `doc` tags become descriptions in the generated JSON Schema (tasks/schema.json).

// Common holds the task settings every layer may set: built-in defaults < agent.yaml < spec < CLI.
type Common struct {
	Model          *string     `yaml:"model,omitempty" doc:"Model id, optionally with a provider prefix (novita:qwen/qwen3-coder-30b-a3b-instruct). Default: agent.yaml or the CLI."`
	Template       *string     `yaml:"template,omitempty" doc:"Sandbox template: host (the host's system directories, read-only) or debian. Default: host."`
	Workdir        *string     `yaml:"workdir,omitempty" pattern:"^/." doc:"Absolute working directory inside the sandbox; seed files, commands and checks are relative to it. Default: /home/user."`
	System         *string     `yaml:"system,omitempty" doc:"System prompt replacing the agent's default one."`
	Limits         *LimitsFile `yaml:"limits,omitempty" doc:"Resource and budget limits for the task."`
	Env            Env         `yaml:"env,omitempty" doc:"Environment variables for setup, the agent's commands and checks. Layers merge by variable."`
	Network        *Network    `yaml:"network,omitempty" doc:"Network policy: none (loopback only, the default), internet (public addresses only), or {allow: [domains, *.wildcards, IPs, CIDRs]}."`
	Keep           *Keep       `yaml:"keep,omitempty" doc:"Keep the sandbox (paused) after the task for inspection: none (default), failed or all."`
	Sandbox        *Backend    `yaml:"sandbox,omitempty" doc:"Sandbox backend: local (OCI sandboxes on this machine), e2b or novita (their cloud, or any server with their API such as agent serve). Default: the run's --sandbox (local)."`
	Runtime        *Runtime    `yaml:"runtime,omitempty" doc:"OCI runtime of a local sandbox: runc, crun or runsc (gVisor; networked modes need a recent runsc, as scripts/deps.sh builds). Default: the run's --runtime (runc). Only the local backend can honour it."`
	Repeat         *int        `yaml:"repeat,omitempty" min:"1" max:"1000" doc:"Number of epochs: the task runs this many times, each in a fresh sandbox. Default: 1."`
	Artifacts      []string    `yaml:"artifacts,omitempty" doc:"Globs (relative to the workdir, ** allowed) of the files collected after the task. Default: every file created or changed under the workdir."`
	ForkSetup      *bool       `yaml:"fork_setup,omitempty" doc:"With repeat > 1 and setup: run setup once, snapshot the sandbox and fork one sandbox per epoch. Default: true (where the sandbox backend can snapshot)."`
	StopBackground *bool       `yaml:"stop_background,omitempty" doc:"Stop background commands the agent left running before the checks run. Default: false."`
}

// LimitsFile is the limits mapping as written; unset fields inherit from the layer below.
type LimitsFile struct {
	Timeout        *Duration `yaml:"timeout,omitempty" doc:"Wall-clock limit for setup and the agent loop, e.g. 10m; the checks run afterwards under their own timeouts."`
	CommandTimeout *Duration `yaml:"command_timeout,omitempty" doc:"Limit for one command the agent runs, e.g. 2m."`
	MaxSteps       *int      `yaml:"max_steps,omitempty" min:"1" max:"100000" doc:"Most model turns (each may call several tools)."`
	MaxTokens      *int64    `yaml:"max_tokens,omitempty" min:"1" doc:"Most tokens (prompt + completion, summed over all model calls). Default: no limit."`
	MaxCost        *float64  `yaml:"max_cost,omitempty" min:">0" doc:"Most dollars spent on the model for this task (needs a price table). Default: no limit."`
	MaxOutput      *Size     `yaml:"max_output,omitempty" doc:"Size at which a tool result is truncated (head and tail kept) before the model sees it, e.g. 32KiB."`
	Memory         *Size     `yaml:"memory,omitempty" doc:"Memory limit of the sandbox: bytes or a size like 512MiB, 1GiB, 2GB."`
	CPUs           *float64  `yaml:"cpus,omitempty" min:"0.01" max:"1024" doc:"CPU limit of the sandbox in cores, e.g. 1.5."`
	Pids           *int      `yaml:"pids,omitempty" min:"8" doc:"Most processes and threads in the sandbox."`
	Disk           *Size     `yaml:"disk,omitempty" doc:"Disk quota of the sandbox's writable layer, e.g. 4GiB."`
}

// SpecFile is one task spec file as written.
type SpecFile struct {
	Name   *string `yaml:"name,omitempty" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"Task name, unique within a run: lower-case letters, digits, '.', '_' and '-'. Default: the file name without extension (for task.yaml: the directory name)."`
	Prompt string  `yaml:"prompt" required:"true" doc:"The task, as the agent's first user message."`
	Common `yaml:",inline"`
	Files  []FileEntry  `yaml:"files,omitempty" doc:"Seed files copied into the workdir before setup."`
	Setup  []Command    `yaml:"setup,omitempty" doc:"Shell commands run in the workdir before the agent starts; any failure ends the task as an error."`
	Checks []CheckEntry `yaml:"checks,omitempty" doc:"Checks run after the agent; the task passes when all pass."`
	Tags   []string     `yaml:"tags,omitempty" pattern:"^[a-z0-9][a-z0-9._-]*$" doc:"Labels for selecting tasks with --tags."`

	namePos Pos // position of the name value, when set
}

// FileEntry is one seed file or directory: inline content, or copied from a path next to the spec.
type FileEntry struct {
	Path    *string `yaml:"path,omitempty" doc:"Destination relative to the workdir. Required with content; with from it defaults to the file's base name, or to the workdir itself for a directory."`
	Content *string `yaml:"content,omitempty" doc:"Inline file content."`
	From    *string `yaml:"from,omitempty" doc:"A file or directory relative to the spec's directory (directories are copied recursively). Paths outside the spec's directory, also through symlinks, are refused unless --allow-outside is given."`
	Mode    *Mode   `yaml:"mode,omitempty" doc:"Permission bits in octal, e.g. 0755. Default: 0644, or 0755 for a from file that is executable."`

	pos, pathPos, fromPos, modePos Pos
}

// Command is a shell command: a string, or {run, timeout}.
type Command struct {
	Run     string    `yaml:"run" required:"true" doc:"Shell command line, run with bash in the workdir."`
	Timeout *Duration `yaml:"timeout,omitempty" doc:"Limit for this command. Default: 10m for setup commands."`

	pos Pos
}

// CheckEntry is one check as written: a command (run) or a file (file).
type CheckEntry struct {
	Name           *string   `yaml:"name,omitempty" doc:"Label shown in reports. Default: the command or the file path."`
	Run            *string   `yaml:"run,omitempty" doc:"Shell command run with bash in the workdir after the agent; passes when its exit code is exit and its stdout matches the stdout fields."`
	Exit           *int      `yaml:"exit,omitempty" min:"0" max:"255" doc:"Expected exit code of run. Default: 0."`
	Stdout         *string   `yaml:"stdout,omitempty" doc:"Expected stdout of run, exactly (including the final newline)."`
	StdoutContains *string   `yaml:"stdout_contains,omitempty" doc:"Text the stdout of run must contain."`
	StdoutRegex    *Pattern  `yaml:"stdout_regex,omitempty" doc:"Regular expression (RE2 syntax) the stdout of run must match somewhere; use (?m) for ^ and $ per line."`
	Timeout        *Duration `yaml:"timeout,omitempty" doc:"Limit for run. Default: 2m."`
	File           *string   `yaml:"file,omitempty" doc:"Path of a file in the sandbox, relative to the workdir or absolute."`
	Exists         *bool     `yaml:"exists,omitempty" doc:"Whether the file must exist (true, the default) or must not (false)."`
	Contains       *string   `yaml:"contains,omitempty" doc:"Text the file must contain."`
	Equals         *string   `yaml:"equals,omitempty" doc:"The file's exact expected content."`
	Regex          *Pattern  `yaml:"regex,omitempty" doc:"Regular expression (RE2 syntax) the file's content must match somewhere."`

	pos Pos
}

// Config is an agent.yaml file, or the CLI's overrides: task defaults plus run-wide settings.
type Config struct {
	Common            `yaml:",inline"`
	Provider          *string `yaml:"provider,omitempty" doc:"Model provider preset: novita, openai, ollama, replay, or a name used with base_url."`
	BaseURL           *string `yaml:"base_url,omitempty" doc:"Base URL of an OpenAI-compatible endpoint; overrides the provider's."`
	APIKeyEnv         *string `yaml:"api_key_env,omitempty" doc:"Name of the environment variable holding the API key (never the key itself)."`
	Concurrency       *int    `yaml:"concurrency,omitempty" min:"1" max:"4096" doc:"Tasks run at once. Default: the number of CPUs."`
	MaxLLMConcurrency *int    `yaml:"max_llm_concurrency,omitempty" min:"1" max:"4096" doc:"Most model calls in flight at once across the run."`
	Prices            *string `yaml:"prices,omitempty" doc:"Price table file (relative to this file) used for max_cost budgets."`
}

// Limits on values; beyond them a spec is surely wrong.
const (
	maxRepeat      = 1000
	maxConcurrency = 4096
	maxTags        = 64
	maxNameLen     = 128
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	providerRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

// ValidName reports whether s is a valid task name or tag.
func ValidName(s string) bool { return len(s) <= maxNameLen && nameRE.MatchString(s) }

func (c *Common) validateYAML(d *decoder, n *yaml.Node) {
	str := func(key string, p *string, check func(string) string) {
		if p == nil {
			return
		}
		if msg := check(*p); msg != "" {
			d.withField(key, func() { d.errorf(d.value(n, key), "%s", msg) })
		}
	}
	noSpace := func(what string) func(string) string {
		return func(s string) string {
			if s == "" {
				return "empty " + what + "; omit the field to use the default"
			}
			if strings.ContainsAny(s, " \t\r\n") || len(s) > 256 {
				return fmt.Sprintf("invalid %s %q: no whitespace, at most 256 characters", what, clip(s, 60))
			}
			return ""
		}
	}
	str("model", c.Model, noSpace("model"))
	str("template", c.Template, noSpace("template"))
	str("workdir", c.Workdir, func(s string) string {
		if !path.IsAbs(s) || path.Clean(s) != s || s == "/" {
			return fmt.Sprintf("workdir %q must be a clean absolute path below / (like /home/user)", clip(s, 60))
		}
		return ""
	})
	str("system", c.System, func(s string) string {
		if strings.TrimSpace(s) == "" {
			return "empty system prompt; omit the field to use the default"
		}
		return ""
	})
	if c.Repeat != nil && (*c.Repeat < 1 || *c.Repeat > maxRepeat) {
		d.withField("repeat", func() {
			d.errorf(d.value(n, "repeat"), "repeat must be between 1 and %d, got %d", maxRepeat, *c.Repeat)
		})
	}
	if c.Artifacts != nil {
		d.withField("artifacts", func() {
			list := d.value(n, "artifacts")
			for i, g := range c.Artifacts {
				item := d.deref(list.Content[i])
				if item.Tag != "!!str" {
					continue // already reported as a type error
				}
				if msg := checkGlob(g); msg != "" {
					d.withField(fmt.Sprintf("[%d]", i), func() { d.errorf(item, "%s", msg) })
				}
			}
		})
	}
}

func (l *LimitsFile) validateYAML(d *decoder, n *yaml.Node) {
	bad := func(key, format string, args ...any) {
		d.withField(key, func() { d.errorf(d.value(n, key), format, args...) })
	}
	if l.MaxSteps != nil && (*l.MaxSteps < 1 || *l.MaxSteps > 100000) {
		bad("max_steps", "max_steps must be between 1 and 100000, got %d", *l.MaxSteps)
	}
	if l.MaxTokens != nil && *l.MaxTokens < 1 {
		bad("max_tokens", "max_tokens must be at least 1 (omit it for no limit), got %d", *l.MaxTokens)
	}
	if l.MaxCost != nil && (*l.MaxCost <= 0 || *l.MaxCost > 1e6) {
		bad("max_cost", "max_cost must be a positive number of dollars (omit it for no limit), got %g", *l.MaxCost)
	}
	if l.CPUs != nil && (*l.CPUs < 0.01 || *l.CPUs > 1024) {
		bad("cpus", "cpus must be between 0.01 and 1024, got %g", *l.CPUs)
	}
	if l.Pids != nil && (*l.Pids < 8 || *l.Pids > 1<<22) {
		bad("pids", "pids must be between 8 and %d, got %d", 1<<22, *l.Pids)
	}
	if l.Memory != nil && *l.Memory < 16<<20 {
		bad("memory", "memory must be at least 16MiB, got %s", *l.Memory)
	}
	if l.Disk != nil && *l.Disk < 1<<20 {
		bad("disk", "disk must be at least 1MiB, got %s", *l.Disk)
	}
	if l.MaxOutput != nil && (*l.MaxOutput < 1<<10 || *l.MaxOutput > 64<<20) {
		bad("max_output", "max_output must be between 1KiB and 64MiB, got %s", *l.MaxOutput)
	}
}

func (s *SpecFile) validateYAML(d *decoder, n *yaml.Node) {
	s.Common.validateYAML(d, n)
	if v := d.value(n, "name"); v != nil {
		s.namePos = posOf(v)
		if s.Name != nil && !ValidName(*s.Name) {
			d.withField("name", func() {
				d.errorf(v, "invalid name %q: want lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most %d characters", clip(*s.Name, 60), maxNameLen)
			})
		}
	}
	if v := d.value(n, "prompt"); v != nil && v.Tag == "!!str" && strings.TrimSpace(s.Prompt) == "" {
		d.withField("prompt", func() { d.errorf(v, "empty prompt") })
	}
	if list := d.value(n, "tags"); list != nil && list.Kind == yaml.SequenceNode {
		d.withField("tags", func() {
			if len(list.Content) > maxTags {
				d.errorf(list, "at most %d tags", maxTags)
			}
			seen := map[string]bool{}
			for i, t := range s.Tags {
				item := d.deref(list.Content[i])
				if item.Tag != "!!str" {
					continue // already reported as a type error
				}
				d.withField(fmt.Sprintf("[%d]", i), func() {
					switch {
					case !ValidName(t):
						d.errorf(item, "invalid tag %q: want lower-case letters, digits, '.', '_' and '-'", clip(t, 60))
					case seen[t]:
						d.errorf(item, "duplicate tag %q", t)
					}
				})
				seen[t] = true
			}
		})
	}
	if list := d.value(n, "files"); list != nil && list.Kind == yaml.SequenceNode {
		d.withField("files", func() {
			if len(list.Content) > maxSeedEntries {
				d.errorf(list, "at most %d entries; seed a directory with from instead", maxSeedEntries)
			}
		})
	}
	if list := d.value(n, "checks"); list != nil && list.Kind == yaml.SequenceNode && len(list.Content) > maxChecks {
		d.withField("checks", func() { d.errorf(list, "at most %d checks", maxChecks) })
	}
	if list := d.value(n, "setup"); list != nil && list.Kind == yaml.SequenceNode && len(list.Content) > maxChecks {
		d.withField("setup", func() { d.errorf(list, "at most %d setup commands", maxChecks) })
	}
}

const (
	maxSeedEntries = 1000
	maxChecks      = 200
)

func (f *FileEntry) validateYAML(d *decoder, n *yaml.Node) {
	f.pos = posOf(n)
	f.pathPos = posOf(d.value(n, "path"))
	f.fromPos = posOf(d.value(n, "from"))
	f.modePos = posOf(d.value(n, "mode"))
	hasContent, hasFrom := d.value(n, "content") != nil, d.value(n, "from") != nil
	switch {
	case hasContent && hasFrom:
		d.errorf(d.keyNode(n, "from"), "set content or from, not both")
	case !hasContent && !hasFrom:
		d.errorf(n, "a file needs content (inline text) or from (a path next to the spec)")
	case hasContent && d.value(n, "path") == nil:
		d.errorf(n, "a file with content needs a path")
	}
	if f.Path != nil {
		if msg := checkRelPath(*f.Path, hasFrom); msg != "" {
			d.withField("path", func() { d.errorf(d.value(n, "path"), "%s", msg) })
		}
	}
	if f.From != nil && *f.From == "" {
		d.withField("from", func() { d.errorf(d.value(n, "from"), "empty from path") })
	}
}

func (c *Command) unmarshalYAML(d *decoder, n *yaml.Node) bool {
	c.pos = posOf(n)
	if n.Kind == yaml.ScalarNode {
		s, ok := d.scalarString(n)
		if !ok {
			return false
		}
		c.Run = s
		if strings.TrimSpace(s) == "" {
			d.errorf(n, "empty command")
			return false
		}
		return true
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, "a command string or {run, timeout}")
		return false
	}
	type plain Command // plain has Command's fields but not its unmarshalYAML
	var p plain
	ok := d.decodeStruct(n, reflectValue(&p))
	if ok && strings.TrimSpace(p.Run) == "" {
		d.withField("run", func() { d.errorf(d.value(n, "run"), "empty command") })
		ok = false
	}
	*c = Command(p)
	c.pos = posOf(n)
	return ok
}

func (c *CheckEntry) validateYAML(d *decoder, n *yaml.Node) {
	c.pos = posOf(n)
	has := func(k string) bool { return d.value(n, k) != nil }
	runOnly := []string{"exit", "stdout", "stdout_contains", "stdout_regex", "timeout"}
	fileOnly := []string{"exists", "contains", "equals", "regex"}
	switch {
	case has("run") && has("file"):
		d.errorf(d.keyNode(n, "file"), "a check is either run (a command) or file (a file), not both")
		return
	case has("run"):
		for _, k := range fileOnly {
			if has(k) {
				d.errorf(d.keyNode(n, k), "%s applies to file checks; this is a run check", k)
			}
		}
		if c.Run != nil && strings.TrimSpace(*c.Run) == "" {
			d.withField("run", func() { d.errorf(d.value(n, "run"), "empty command") })
		}
		if c.Exit != nil && (*c.Exit < 0 || *c.Exit > 255) {
			d.withField("exit", func() { d.errorf(d.value(n, "exit"), "exit code must be between 0 and 255, got %d", *c.Exit) })
		}
	case has("file"):
		for _, k := range runOnly {
			if has(k) {
				d.errorf(d.keyNode(n, k), "%s applies to run checks; this is a file check", k)
			}
		}
		if c.File != nil && (*c.File == "" || strings.ContainsRune(*c.File, 0)) {
			d.withField("file", func() { d.errorf(d.value(n, "file"), "empty file path") })
		}
		if c.Exists != nil && !*c.Exists {
			for _, k := range []string{"contains", "equals", "regex"} {
				if has(k) {
					d.errorf(d.keyNode(n, k), "%s cannot apply to a file that must not exist", k)
				}
			}
		}
	default:
		d.errorf(n, "a check needs run (a command) or file (a path)")
	}
}

func (c *Config) validateYAML(d *decoder, n *yaml.Node) {
	c.Common.validateYAML(d, n)
	bad := func(key, format string, args ...any) {
		d.withField(key, func() { d.errorf(d.value(n, key), format, args...) })
	}
	if c.Provider != nil && !providerRE.MatchString(*c.Provider) {
		bad("provider", "invalid provider %q: want a lower-case name like novita, openai or ollama", clip(*c.Provider, 60))
	}
	if c.BaseURL != nil {
		if msg := checkBaseURL(*c.BaseURL); msg != "" {
			bad("base_url", "%s", msg)
		}
	}
	if c.APIKeyEnv != nil && !envNameRE.MatchString(*c.APIKeyEnv) {
		bad("api_key_env", "api_key_env names an environment variable (like NOVITA_API_KEY), got %q", clip(*c.APIKeyEnv, 20))
	}
	if c.Concurrency != nil && (*c.Concurrency < 1 || *c.Concurrency > maxConcurrency) {
		bad("concurrency", "concurrency must be between 1 and %d, got %d", maxConcurrency, *c.Concurrency)
	}
	if c.MaxLLMConcurrency != nil && (*c.MaxLLMConcurrency < 1 || *c.MaxLLMConcurrency > maxConcurrency) {
		bad("max_llm_concurrency", "max_llm_concurrency must be between 1 and %d, got %d", maxConcurrency, *c.MaxLLMConcurrency)
	}
	if c.Prices != nil && *c.Prices == "" {
		bad("prices", "empty prices path")
	}
}

// checkBaseURL returns a message when s is not an http(s) URL with a host.
func checkBaseURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("base_url %q must be an http or https URL like https://api.example.com/v1", clip(s, 80))
	}
	if u.User != nil {
		return "base_url must not contain credentials; name the key's variable with api_key_env"
	}
	return ""
}

// checkRelPath returns a message when p is not a clean relative path inside the workdir. dirOK
// allows "." (the workdir itself, for directories copied with from).
func checkRelPath(p string, dirOK bool) string {
	switch {
	case p == "":
		return "empty path"
	case strings.ContainsRune(p, 0):
		return "path contains a NUL byte"
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("path %q must be relative to the workdir", clip(p, 80))
	case strings.Contains(p, `\`):
		return fmt.Sprintf("path %q: use / as the separator", clip(p, 80))
	case len(p) > 1024:
		return "path longer than 1024 bytes"
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return fmt.Sprintf("path %q leaves the workdir", clip(p, 80))
	}
	if c == "." && !dirOK {
		return fmt.Sprintf("path %q names the workdir itself, not a file", p)
	}
	return ""
}

// checkGlob returns a message when g is not a valid artifact glob.
func checkGlob(g string) string {
	if g == "" {
		return "empty glob"
	}
	if strings.HasPrefix(g, "/") {
		return fmt.Sprintf("glob %q must be relative to the workdir", clip(g, 80))
	}
	for _, seg := range strings.Split(g, "/") {
		if seg == ".." {
			return fmt.Sprintf("glob %q leaves the workdir", clip(g, 80))
		}
	}
	if !doublestarValid(g) {
		return fmt.Sprintf("invalid glob %q (unclosed [ or {?)", clip(g, 80))
	}
	return ""
}

// MarshalYAML writes a command without a timeout as a plain string.
func (c Command) MarshalYAML() (any, error) {
	if c.Timeout == nil {
		return c.Run, nil
	}
	type plain Command
	return plain(c), nil
}
