package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/serve"
)

func newServeCmd() *cobra.Command {
	lf := &localFlags{}
	var (
		listen, domain, defaultTemplate, memory, disk string
		apiKeys, aliases                              []string
		maxSandboxes                                  int
		maxLifetime, maxPaused                        time.Duration
		allowInternet                                 bool
		cpus                                          float64
		pids                                          int64
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve local sandboxes behind the E2B API (control plane and envd on one port)",
		Long: `serve exposes local sandboxes through the E2B REST API and the envd data plane, on one
port, so the official E2B and Novita SDKs (and agent run --sandbox e2b|novita of another machine)
use them unmodified:

  agent serve --listen 127.0.0.1:3000
  export E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3000 E2B_API_KEY=<printed key>
  python3 -c 'from e2b import Sandbox; s = Sandbox.create(); print(s.commands.run("uname -a").stdout); s.kill()'

Novita's SDKs read NOVITA_API_URL, NOVITA_SANDBOX_URL and NOVITA_API_KEY instead.

Without --api-key a key is generated ("e2b_" and 40 hex digits, the format the SDKs check) and
printed. Each sandbox gets its own random envd access token. Sandboxes end at their timeout, when
killed, or when serve stops (SIGINT/SIGTERM). The SDKs' default templates ("base",
"code-interpreter-v1") run on --default-template, which is built before the port opens; build
other templates first (agent template build debian) or the first create waits for the build. No
Jupyter server runs.

Pause (POST /sandboxes/ID/pause, the SDKs' pause()) freezes a sandbox with the cgroup freezer:
memory, processes and files are kept and its timeout clock stops; connect (or the legacy resume)
resumes it with the timeout the connect asks for. A paused sandbox counts against --max-sandboxes
and is killed after --max-paused. autoPause (lifecycle on_timeout pause) pauses at the timeout
instead of killing; with autoResume, data-plane traffic resumes it.

Network: by default every sandbox gets network none (loopback only), whatever the create asks,
and reports allowInternetAccess false. With --allow-internet a create asking for internet access
(allow_internet_access, the SDKs' default) gets the internet mode: public addresses only, never
the host, private or link-local ranges, nor other sandboxes. network.allowOut with everything else
denied (allow_internet_access false, or denyOut ["0.0.0.0/0"]) becomes an allow-list of its
domains, *.domains, addresses and CIDRs; other denyOut lists are refused (400).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(apiKeys) == 0 {
				if k := os.Getenv("AGENT_SERVE_API_KEY"); k != "" {
					apiKeys = []string{k}
				}
			}
			generated := false
			if len(apiKeys) == 0 {
				apiKeys = []string{serve.GenerateAPIKey()}
				generated = true
			}
			for _, k := range apiKeys {
				if strings.TrimSpace(k) == "" || strings.ContainsAny(k, "\r\n") {
					return usageError("--api-key: empty or multi-line key")
				}
			}
			aliasMap := map[string]string{}
			for _, a := range aliases {
				k, v, ok := strings.Cut(a, "=")
				if !ok || k == "" || v == "" {
					return usageError("--template-alias %q: want E2B_NAME=LOCAL_TEMPLATE", a)
				}
				aliasMap[k] = v
			}
			lim := local.Limits{CPUs: cpus, Pids: pids}
			var err error
			if memory != "" {
				if lim.MemoryBytes, err = spec.ParseSize(memory); err != nil {
					return usageError("--memory: %v", err)
				}
			}
			if disk != "" {
				if lim.DiskBytes, err = spec.ParseSize(disk); err != nil {
					return usageError("--disk: %v", err)
				}
			}
			if err := lf.checkPool(); err != nil {
				return err
			}
			cfg, err := lf.config(false)
			if err != nil {
				return err
			}
			if lf.pool > 0 {
				// Shaped as the creates that can use it: the default template, the server's
				// limits, no env, network none; each with its own access token.
				cfg.Pool, cfg.PoolTemplate, cfg.PoolLimits, cfg.PoolAccessToken = lf.pool, defaultTemplate, lim, true
			}
			ctx := cmd.Context()
			// Close kills the pool's idle sandboxes with the rest.
			b, err := local.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			// The default template is built (or found) before the port opens, so no create waits for it.
			if _, err := b.Templates().Ensure(ctx, defaultTemplate, progressPrinter(os.Stderr)); err != nil {
				return usageError("--default-template %s: %v", defaultTemplate, err)
			}
			srv, err := serve.New(serve.Config{
				Provider: &serve.Local{Backend: b, Runtime: lf.runtime, Limits: lim},
				APIKeys:  apiKeys, Domain: domain, DefaultTemplate: defaultTemplate, TemplateAliases: aliasMap,
				MaxSandboxes: maxSandboxes, MaxLifetime: maxLifetime, MaxPaused: maxPaused, AllowInternet: allowInternet,
				Logger: slog.Default(),
			})
			if err != nil {
				return usageError("%v", err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			printServeBanner(cmd.OutOrStdout(), ln.Addr().String(), apiKeys[0], generated)
			serr := srv.Serve(ctx, ln)
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := srv.Close(cctx); err != nil {
				slog.Error("ending sandboxes", "err", err)
			}
			return serr
		},
	}
	lf.register(cmd)
	f := cmd.Flags()
	lf.registerPool(f, "keep N sandboxes of --default-template created ahead (the server's limits, no env vars, network none), so a create claims one instead of waiting; costs N idle sandboxes (memory, disk, a running envd each) held while the server runs, beyond --max-sandboxes (env AGENT_POOL)")
	f.StringVar(&listen, "listen", "127.0.0.1:3000", "address to serve (host:port; port 0 picks a free one)")
	f.StringArrayVar(&apiKeys, "api-key", nil, "accepted API key (repeatable; env AGENT_SERVE_API_KEY; default: generate and print one)")
	f.StringVar(&domain, "domain", "", `domain of "{port}-{id}.DOMAIN" hosts, returned to clients (for a TLS proxy with wildcard DNS in front)`)
	f.StringVar(&defaultTemplate, "default-template", local.DefaultTemplate, "local template serving the SDKs' default templates (base, code-interpreter-v1)")
	f.StringArrayVar(&aliases, "template-alias", nil, "map an E2B template name to a local template, NAME=LOCAL (repeatable)")
	f.IntVar(&maxSandboxes, "max-sandboxes", serve.DefaultMaxSandboxes, "sandboxes alive at once; more creates are answered 429")
	f.DurationVar(&maxLifetime, "max-lifetime", serve.DefaultMaxLifetime, "longest time a sandbox runs (time paused excluded)")
	f.DurationVar(&maxPaused, "max-paused", serve.DefaultMaxPaused, "longest time a sandbox stays paused before it is killed")
	f.BoolVar(&allowInternet, "allow-internet", false, "give sandboxes the internet access (or allow-list) their create asks for; without it every sandbox has network none")
	f.StringVar(&memory, "memory", "", "memory limit per sandbox, e.g. 512MiB or 2GB (default 1GiB)")
	f.StringVar(&disk, "disk", "", "disk quota per sandbox, e.g. 20GiB (default 10GiB)")
	f.Float64Var(&cpus, "cpus", 0, "CPU quota per sandbox in CPUs (default 1)")
	f.Int64Var(&pids, "pids", 0, "process limit per sandbox (default 512)")
	return cmd
}

// printServeBanner tells how to point each SDK at the server. Scripts read the *_URL and *_KEY
// lines (one variable per line, no quoting needed).
func printServeBanner(w io.Writer, addr, key string, generated bool) {
	url := "http://" + addr
	fmt.Fprintf(w, "agent serve: E2B API and envd data plane for local sandboxes on %s\n", url)
	if generated {
		fmt.Fprintln(w, "API key generated for this run (pass --api-key to choose one).")
	}
	fmt.Fprintln(w, "Point the SDKs at it (E2B: npm/PyPI e2b; Novita: npm/PyPI novita-sandbox):")
	for _, p := range []string{"E2B", "NOVITA"} {
		fmt.Fprintf(w, "%s_API_URL=%s\n%s_SANDBOX_URL=%s\n%s_API_KEY=%s\n", p, url, p, url, p, key)
	}
}
