package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/initproc"
)

func envdVersion() string { return envd.Version }

func newEnvdCmd() *cobra.Command {
	var (
		listen, root, user, tokenEnv string
		listenFD                     int
		envs                         []string
		maxUpload, maxRequest        int64
	)
	cmd := &cobra.Command{
		Use:   "envd",
		Short: "Run the in-sandbox daemon (E2B envd protocol)",
		Long: `envd is the daemon inside every local sandbox: it serves the E2B envd protocol
(Connect RPC filesystem and process services, HTTP /files and /health), so this tool,
the official E2B and Novita SDKs, and cloud sandboxes all speak one protocol.

Inside a sandbox it runs as PID 1 (reaping orphans, forwarding signals) and serves
the sandbox's whole filesystem. Standalone, it serves a host directory as its world,
as an ordinary process — for tests and for pointing the SDKs' debug mode at it:

  agent envd --listen 127.0.0.1:49983 --root /tmp/world
  E2B_DEBUG=true python -c 'from e2b import Sandbox; print(Sandbox.create().commands.run("echo hi"))'

Standalone, commands run as host processes in the mapped directory; only file
operations are confined to --root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			env := map[string]string{}
			for _, kv := range envs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageError("--env %q: want KEY=VALUE", kv)
				}
				env[k] = v
			}
			if fd, ok := initproc.ChildListenFD(); ok {
				// The server child of envd as PID 1: serve the socket init holds, whatever the
				// command line says.
				listen, listenFD = "", fd
				initproc.ForwardedToChild(cmd.Context(), slog.Default())
			}
			ln, err := openListener(listen, listenFD)
			if err != nil {
				return err
			}
			if initproc.IsInit() {
				// PID 1: hand the socket to a server child and do init's duties.
				f, err := initproc.ListenerFile(ln)
				ln.Close()
				if err != nil {
					return err
				}
				defer f.Close()
				if code := initproc.Run(cmd.Context(), initproc.Config{Listener: f, Logger: slog.Default()}); code != 0 {
					return &exitError{code: code}
				}
				return nil
			}
			token := ""
			if tokenEnv != "" {
				token = os.Getenv(tokenEnv)
				os.Unsetenv(tokenEnv)
			}
			srv, err := envd.New(envd.Config{
				Root: root, AccessToken: token, DefaultUser: user, Env: env,
				MaxUploadBytes: maxUpload, MaxRequestBytes: maxRequest, Logger: slog.Default(),
			})
			if err != nil {
				return err
			}
			defer srv.Close()
			slog.Info("envd serving", "addr", ln.Addr().String(), "root", root, "version", envd.Version)
			return srv.Serve(cmd.Context(), ln)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "TCP address to serve (default 127.0.0.1:49983), or unix:PATH")
	f.IntVar(&listenFD, "listen-fd", 0, "serve an inherited listening socket on this file descriptor")
	f.StringVar(&root, "root", "/", "directory served as the sandbox's world")
	f.StringVar(&user, "user", "", `default user (default "user" when the world has it, else root)`)
	f.StringVar(&tokenEnv, "access-token-env", "", "name of an environment variable holding the access token (read, then removed)")
	f.StringArrayVar(&envs, "env", nil, "sandbox-wide environment variable KEY=VALUE (repeatable)")
	f.Int64Var(&maxUpload, "max-upload-bytes", envd.DefaultMaxUploadBytes, "largest POST /files body")
	f.Int64Var(&maxRequest, "max-request-bytes", envd.DefaultMaxRequestBytes, "largest RPC message")
	return cmd
}

// openListener opens the socket envd serves: an inherited descriptor or a TCP address.
func openListener(listen string, listenFD int) (net.Listener, error) {
	switch {
	case listenFD > 0 && listen != "":
		return nil, usageError("--listen and --listen-fd exclude each other")
	case listenFD > 0:
		f := os.NewFile(uintptr(listenFD), "envd-listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, usageError("--listen-fd %d is not a listening socket: %v", listenFD, err)
		}
		return ln, nil
	case strings.HasPrefix(listen, "unix:"):
		// A socket made inside the sandbox (runtimes that cannot pass one in): it must stay when
		// PID 1 hands it to the server child and closes its own copy.
		path := strings.TrimPrefix(listen, "unix:")
		_ = os.Remove(path)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", path, err)
		}
		ln.SetUnlinkOnClose(false)
		return ln, nil
	default:
		if listen == "" {
			listen = "127.0.0.1:49983"
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", listen, err)
		}
		return ln, nil
	}
}
