package egress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// unprivilegedID is the uid and gid the helper runs as once its sockets are open (nobody).
const unprivilegedID = 65534

// Main runs the helper: it reads the configuration file, opens the sockets, drops its
// privileges, writes "ready" to ready, and serves until ctx ends or the sandbox's link is gone.
func Main(ctx context.Context, configPath string, ready io.Writer, log *slog.Logger) error {
	b, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("egress helper config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("egress helper config: %w", err)
	}
	srv, err := Listen(cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	if cfg.DropPrivileges {
		if err := dropPrivileges(); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(ready, "ready\n"); err != nil {
		return fmt.Errorf("signalling readiness: %w", err)
	}
	if c, ok := ready.(io.Closer); ok {
		c.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Interface != "" {
		go func() {
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if _, err := net.InterfaceByName(cfg.Interface); err != nil {
						log.Info("sandbox link gone; exiting", "interface", cfg.Interface)
						cancel()
						return
					}
				}
			}
		}()
	}
	return srv.Serve(ctx)
}

// dropPrivileges switches every thread to nobody, with no supplementary groups, no capabilities
// and no way back (no_new_privs).
func dropPrivileges() error {
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("dropping groups: %w", err)
	}
	if err := unix.Setresgid(unprivilegedID, unprivilegedID, unprivilegedID); err != nil {
		return fmt.Errorf("dropping gid: %w", err)
	}
	if err := unix.Setresuid(unprivilegedID, unprivilegedID, unprivilegedID); err != nil {
		return fmt.Errorf("dropping uid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}
