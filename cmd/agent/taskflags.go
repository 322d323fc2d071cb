package main

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/localbackend"
	"github.com/agentrun/agent/runner/remotebackend"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/e2b"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/network"
)

// modelFlags select and bound the model of `agent run`, `agent do` and `agent chat`.
type modelFlags struct {
	model             string
	provider          string
	baseURL           string
	apiKeyEnv         string
	noStream          bool
	maxLLMConcurrency int
	prices            string
	maxCost           float64
	replay            string
}

func (f *modelFlags) register(fs *pflag.FlagSet, withReplay bool) {
	fs.StringVarP(&f.model, "model", "m", "", "model id, optionally provider-prefixed (novita:qwen/qwen3-coder-30b-a3b-instruct, openai:gpt-4o-mini, ollama:llama3)")
	fs.StringVar(&f.provider, "provider", "", "provider preset for model ids without a prefix: novita, openai or ollama")
	fs.StringVar(&f.baseURL, "base-url", "", "base URL of an OpenAI-compatible endpoint (overrides the provider's)")
	fs.StringVar(&f.apiKeyEnv, "api-key-env", "", "name of the environment variable holding the API key (default: the provider's, NOVITA_API_KEY or OPENAI_API_KEY)")
	fs.BoolVar(&f.noStream, "no-stream", false, "make non-streaming model calls")
	fs.IntVar(&f.maxLLMConcurrency, "max-llm-concurrency", 0, fmt.Sprintf("most model calls in flight at once across the run (default %d; adapts down on 429)", provider.DefaultMaxConcurrency))
	fs.StringVar(&f.prices, "prices", "", "price table (YAML, dollars per million tokens) for --max-cost and limits.max_cost")
	fs.Float64Var(&f.maxCost, "max-cost", 0, "most dollars the whole run may spend on the model (needs --prices)")
	if withReplay {
		fs.StringVar(&f.replay, "replay", "", "replay recorded transcripts instead of calling a model: a transcript file, or a directory of <task>.json (no key needed; the tools really run)")
	}
}

// providerConfig builds the provider configuration the flags (and agent.yaml's run settings) ask
// for. The API key is read from the environment, never from a flag.
func (f *modelFlags) providerConfig(run spec.Run, limiter *provider.Limiter) (provider.Config, error) {
	cfg := provider.Config{Preset: run.Provider, BaseURL: run.BaseURL, NoStream: f.noStream, Limiter: limiter}
	if env := run.APIKeyEnv; env != "" {
		key := strings.TrimSpace(os.Getenv(env))
		if key == "" {
			return cfg, usageError("--api-key-env %s: the variable is not set", env)
		}
		cfg.APIKey = key
	}
	if cfg.Preset != "" {
		if _, ok := provider.LookupPreset(cfg.Preset); !ok && cfg.BaseURL == "" {
			return cfg, usageError("--provider %q: want novita, openai or ollama (or give --base-url)", cfg.Preset)
		}
	}
	return cfg, nil
}

// budget loads the price table and the run-wide budget.
func (f *modelFlags) budget(run spec.Run) (*agent.Prices, *agent.Budget, error) {
	var prices *agent.Prices
	if run.Prices != "" {
		p, err := agent.LoadPrices(run.Prices)
		if err != nil {
			return nil, nil, usageError("--prices: %v", err)
		}
		prices = p
	}
	if f.maxCost < 0 {
		return nil, nil, usageError("--max-cost must be positive")
	}
	if f.maxCost > 0 && prices == nil && f.replay == "" {
		return nil, nil, usageError("--max-cost needs a price table (--prices FILE)")
	}
	var budget *agent.Budget
	if f.maxCost > 0 {
		budget = agent.NewBudget(f.maxCost, 0)
	}
	return prices, budget, nil
}

// overrideFlags are task settings given on the command line; they win over agent.yaml and specs.
type overrideFlags struct {
	template       string
	timeout        time.Duration
	commandTimeout time.Duration
	maxSteps       int
	maxTokens      int64
	memory         string
	cpus           float64
	repeat         int
	workdir        string
	network        string
	system         string
	env            []string
	keep           string
}

// registerKeep adds --keep (commands that run tasks through the runner).
func (o *overrideFlags) registerKeep(fs *pflag.FlagSet) {
	fs.StringVar(&o.keep, "keep", "", "keep task sandboxes after their task, paused, to look inside (agent sandbox shell ID): none, failed (and interrupted) or all (default: the spec's, else none)")
}

func (o *overrideFlags) register(fs *pflag.FlagSet, withRepeat bool) {
	fs.StringVarP(&o.template, "template", "t", "", "sandbox template: host or debian (default: the spec's, else host)")
	fs.DurationVar(&o.timeout, "timeout", 0, "wall-clock limit per task (setup and agent), e.g. 10m")
	fs.DurationVar(&o.commandTimeout, "command-timeout", 0, "limit for one command the agent runs, e.g. 2m")
	fs.IntVar(&o.maxSteps, "max-steps", 0, "most model turns per task")
	fs.Int64Var(&o.maxTokens, "max-tokens", 0, "most tokens per task (prompt + completion)")
	fs.StringVar(&o.memory, "memory", "", "sandbox memory limit, e.g. 1GiB")
	fs.Float64Var(&o.cpus, "cpus", 0, "sandbox CPU limit in cores")
	fs.StringVar(&o.workdir, "workdir", "", "absolute working directory in the sandbox (default /home/user)")
	fs.StringVar(&o.network, "network", "", "sandbox network: none, internet or allow:DOMAIN,CIDR,… (locally: runc or crun; DNS goes to the host's resolvers, or to env AGENT_DNS=IP[:PORT],…)")
	fs.StringVar(&o.system, "system", "", "system prompt replacing the agent's default one")
	fs.StringArrayVar(&o.env, "env", nil, "environment variable KEY=VALUE for setup, the agent's commands and checks (repeatable)")
	if withRepeat {
		fs.IntVar(&o.repeat, "repeat", 0, "run each task this many times (epochs), each in a fresh sandbox")
	}
}

// config turns the flags into the CLI layer of the spec settings.
func (o *overrideFlags) config(fs *pflag.FlagSet, mf *modelFlags, concurrency int) (*spec.Config, error) {
	c := &spec.Config{}
	set := fs.Changed
	if set("model") {
		c.Model = spec.Ptr(mf.model)
	}
	if set("provider") {
		c.Provider = spec.Ptr(mf.provider)
	}
	if set("base-url") {
		c.BaseURL = spec.Ptr(mf.baseURL)
	}
	if set("api-key-env") {
		c.APIKeyEnv = spec.Ptr(mf.apiKeyEnv)
	}
	if set("max-llm-concurrency") {
		if mf.maxLLMConcurrency < 1 {
			return nil, usageError("--max-llm-concurrency must be at least 1")
		}
		c.MaxLLMConcurrency = spec.Ptr(mf.maxLLMConcurrency)
	}
	if set("prices") {
		c.Prices = spec.Ptr(mf.prices)
	}
	if set("concurrency") {
		if concurrency < 1 {
			return nil, usageError("--concurrency must be at least 1")
		}
		c.Concurrency = spec.Ptr(concurrency)
	}
	if set("template") {
		c.Template = spec.Ptr(o.template)
	}
	if set("workdir") {
		c.Workdir = spec.Ptr(o.workdir)
	}
	if set("system") {
		if strings.TrimSpace(o.system) == "" {
			return nil, usageError("--system is empty")
		}
		c.System = spec.Ptr(o.system)
	}
	if set("network") {
		n, err := spec.ParseNetwork(o.network)
		if err != nil {
			return nil, usageError("--network: %v", err)
		}
		c.Network = &n
	}
	if set("env") {
		c.Env = spec.Env{}
		for _, kv := range o.env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.ContainsAny(k, " \t\n=") {
				return nil, usageError("--env %q: want KEY=VALUE", kv)
			}
			c.Env[k] = v
		}
	}
	lim := &spec.LimitsFile{}
	limSet := false
	if set("timeout") {
		if o.timeout <= 0 {
			return nil, usageError("--timeout must be positive")
		}
		lim.Timeout, limSet = spec.Ptr(spec.Duration(o.timeout)), true
	}
	if set("command-timeout") {
		if o.commandTimeout <= 0 {
			return nil, usageError("--command-timeout must be positive")
		}
		lim.CommandTimeout, limSet = spec.Ptr(spec.Duration(o.commandTimeout)), true
	}
	if set("max-steps") {
		if o.maxSteps < 1 {
			return nil, usageError("--max-steps must be at least 1")
		}
		lim.MaxSteps, limSet = spec.Ptr(o.maxSteps), true
	}
	if set("max-tokens") {
		if o.maxTokens < 1 {
			return nil, usageError("--max-tokens must be at least 1")
		}
		lim.MaxTokens, limSet = spec.Ptr(o.maxTokens), true
	}
	if set("memory") {
		v, err := spec.ParseSize(o.memory)
		if err != nil {
			return nil, usageError("--memory: %v", err)
		}
		lim.Memory, limSet = spec.Ptr(spec.Size(v)), true
	}
	if set("cpus") {
		if o.cpus < 0.01 {
			return nil, usageError("--cpus must be at least 0.01")
		}
		lim.CPUs, limSet = spec.Ptr(o.cpus), true
	}
	if limSet {
		c.Limits = lim
	}
	if set("keep") {
		k, err := spec.ParseKeep(o.keep)
		if err != nil {
			return nil, usageError("--keep: %v", err)
		}
		c.Keep = &k
	}
	if set("repeat") {
		if o.repeat < 1 || o.repeat > 1000 {
			return nil, usageError("--repeat must be between 1 and 1000")
		}
		c.Repeat = spec.Ptr(o.repeat)
	}
	return c, nil
}

// backendOpener opens a sandbox backend for the runner. The remote backends (e2b, novita) add
// their openers to backendOpeners.
type backendOpener func(ctx context.Context, lf *localFlags) (runner.Backend, func() error, error)

// backendOpeners lists the sandbox backends by name.
func backendOpeners() map[string]backendOpener {
	return map[string]backendOpener{
		localbackend.Name: func(ctx context.Context, lf *localFlags) (runner.Backend, func() error, error) {
			if os.Geteuid() != 0 {
				return nil, nil, usageError("local sandboxes need root (user namespaces, mounts, cgroups); run as root, or see agent doctor")
			}
			ups, err := dnsUpstreams(os.Getenv("AGENT_DNS"))
			if err != nil {
				return nil, nil, usageError("AGENT_DNS: %v", err)
			}
			if err := lf.checkPool(); err != nil {
				return nil, nil, err
			}
			cfg := local.Config{
				DataDir: lf.dataDir, TemplateDir: lf.templateDir, Runtime: lf.runtime,
				Progress: progressPrinter(os.Stderr), Network: network.Config{Upstreams: ups},
			}
			if lf.pool > 0 {
				localbackend.SetPool(&cfg, lf.pool, lf.poolSpecs)
			}
			// Close kills the pool's sandboxes with the rest.
			b, err := localbackend.Open(ctx, cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("opening the local sandbox backend: %w", err)
			}
			return b, b.Close, nil
		},
		string(e2b.FlavorE2B):    remoteOpener(e2b.FlavorE2B),
		string(e2b.FlavorNovita): remoteOpener(e2b.FlavorNovita),
	}
}

// remoteOpener opens a remote backend configured by the flavor's environment variables, as its
// SDKs are (E2B_API_KEY, E2B_DOMAIN, E2B_API_URL, E2B_SANDBOX_URL; NOVITA_… likewise).
func remoteOpener(flavor e2b.Flavor) backendOpener {
	return func(ctx context.Context, lf *localFlags) (runner.Backend, func() error, error) {
		if lf.maxSandboxes < 0 {
			return nil, nil, usageError("--max-sandboxes must not be negative")
		}
		b, err := remotebackend.FromEnv(flavor, os.Getenv, lf.maxSandboxes)
		if err != nil {
			return nil, nil, usageError("sandbox %s: %v", flavor, err)
		}
		return b, b.Close, nil
	}
}

// dnsUpstreams reads AGENT_DNS: the resolvers networked sandboxes' DNS queries are forwarded to,
// as comma-separated addresses with an optional port (default: the host's /etc/resolv.conf).
func dnsUpstreams(v string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53))
			continue
		}
		ap, err := netip.ParseAddrPort(f)
		if err != nil {
			return nil, fmt.Errorf("resolver %q: want an IP address or IP:port", f)
		}
		out = append(out, ap)
	}
	return out, nil
}

func backendNames() string {
	var names []string
	for n := range backendOpeners() {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// openBackend opens the named backend.
func openBackend(ctx context.Context, name string, lf *localFlags) (runner.Backend, func() error, error) {
	open, ok := backendOpeners()[name]
	if !ok {
		return nil, nil, usageError("--sandbox %q: want one of %s", name, backendNames())
	}
	return open(ctx, lf)
}

// taskBackend is the backend a spec runs on: its own (`sandbox:`), else the flag's.
func taskBackend(s *spec.Spec, flag string) string {
	if s.Sandbox != "" {
		return string(s.Sandbox)
	}
	return flag
}

// checkBackend tells, without creating anything, why the named backend could not be opened: an
// unknown name, no root for local sandboxes, a remote flavor's missing or malformed settings.
func checkBackend(name string, lf *localFlags) error {
	switch name {
	case localbackend.Name:
		if os.Geteuid() != 0 {
			return usageError("local sandboxes need root (user namespaces, mounts, cgroups); run as root, or see agent doctor")
		}
		if _, err := spec.ParseRuntime(lf.runtime); err != nil {
			return usageError("--runtime: %v", err)
		}
		return lf.checkPool()
	case string(e2b.FlavorE2B), string(e2b.FlavorNovita):
		if lf.maxSandboxes < 0 {
			return usageError("--max-sandboxes must not be negative")
		}
		cfg, err := e2b.ConfigFromEnv(e2b.Flavor(name), os.Getenv)
		if err == nil {
			_, err = e2b.New(cfg) // validates; contacts nothing
		}
		if err != nil {
			return usageError("sandbox %s: %v", name, err)
		}
		return nil
	}
	return usageError("sandbox %q: want one of %s", name, backendNames())
}

// runBackends returns the backends of a run: def (--sandbox) for specs that name none, and each
// backend a spec names, opened by the runner when the first task needing it starts. Every backend
// the specs use is checked first, so a run that could not open one is a usage error before
// anything runs. closeAll closes what was opened.
func runBackends(def string, specs []*spec.Spec, lf *localFlags) (bs *runner.Backends, closeAll func(), err error) {
	used := map[string]bool{}
	lf.poolSpecs = nil
	for _, s := range specs {
		used[taskBackend(s, def)] = true
		if taskBackend(s, def) == localbackend.Name {
			lf.poolSpecs = append(lf.poolSpecs, s)
		}
	}
	if _, ok := backendOpeners()[def]; !ok {
		return nil, nil, usageError("--sandbox %q: want one of %s", def, backendNames())
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := checkBackend(n, lf); err != nil {
			return nil, nil, err
		}
	}
	var (
		mu      sync.Mutex
		closers []func() error
	)
	bs = &runner.Backends{Default: def, Open: func(ctx context.Context, name string) (runner.Backend, error) {
		b, closeB, err := openBackend(ctx, name, lf)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		closers = append(closers, closeB)
		mu.Unlock()
		return b, nil
	}}
	closeAll = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range closers {
			if err := c(); err != nil {
				fmt.Fprintf(os.Stderr, "closing a sandbox backend: %v\n", err)
			}
		}
		closers = nil
	}
	return bs, closeAll, nil
}

// registerBackend adds the --sandbox flag (and its older name --backend) and --max-sandboxes.
func registerBackend(fs *pflag.FlagSet, p *string, lf *localFlags) {
	def := envOr("AGENT_SANDBOX", envOr("AGENT_BACKEND", localbackend.Name))
	fs.StringVar(p, "sandbox", def, "sandbox backend of tasks whose spec names none: "+backendNames()+" (env AGENT_SANDBOX)")
	fs.StringVar(p, "backend", def, "older name of --sandbox")
	_ = fs.MarkHidden("backend")
	fs.IntVar(&lf.maxSandboxes, "max-sandboxes", 0, "remote backends (e2b, novita): sandboxes held at once, 0 for no cap of our own (the provider's 429s are waited out)")
}

// changedFlags lists the flags set on the command line, for run.json. Values of flags that could
// carry secrets are never recorded (keys come from the environment anyway).
func changedFlags(cmd *cobra.Command) map[string]string {
	out := map[string]string{}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		out[f.Name] = flagValue(f)
	})
	return out
}

func flagValue(f *pflag.Flag) string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return strings.Join(sv.GetSlice(), ",")
	}
	return redactURL(f.Value.String())
}

// redactURL hides the password of a URL given with credentials (https://user:secret@host/).
func redactURL(s string) string {
	if !strings.Contains(s, "@") || !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// redactArgs returns the command line with URL credentials hidden.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
			out[i] = k + "=" + redactURL(v)
			continue
		}
		out[i] = redactURL(a)
	}
	return out
}
