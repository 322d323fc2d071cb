package network

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentrun/agent/sandbox/local/network/egress"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

// HelperMarker is an argument every helper command line carries, so a pid read back from disk is
// only ever signalled when it still is the helper of that sandbox.
const HelperMarker = "--sandbox-network"

// startHelper writes the helper's configuration and starts it, detached from this process (it
// outlives a runner that hands its sandbox on), and waits until it listens.
func (m *Manager) startHelper(ctx context.Context, st *state, pol netpolicy.Policy, host hostNets) error {
	if len(m.cfg.Helper) == 0 {
		return errors.New("network modes need the egress helper: no helper command configured")
	}
	ups := m.cfg.Upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = resolvConfServers("/etc/resolv.conf"); err != nil {
			return err
		}
	}
	cfg := egress.Config{
		ID: st.ID, Policy: pol.String(), Listen: st.Gateway, DNSPort: 53, Upstreams: ups,
		Refuse: host.Addrs, Special: host.Nets, EventsPath: m.eventsPath(st.ID),
		Interface: st.HostIf, DropPrivileges: true,
	}
	if pol.Mode == netpolicy.Allow {
		cfg.ProxyPort = ProxyPort
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(m.dir(st.ID), "egress.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return fmt.Errorf("writing the egress helper's config: %w", err)
	}
	// The events file is created here, readable by the runner; the helper opens it before it
	// drops its privileges.
	if f, err := os.OpenFile(m.eventsPath(st.ID), os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		f.Close()
	}
	logf, err := os.OpenFile(m.helperLogPath(st.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("egress helper log: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	args := append(append([]string(nil), m.cfg.Helper[1:]...), "--config", cfgPath, HelperMarker, st.ID)
	cmd := exec.Command(m.cfg.Helper[0], args...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, m.cfg.HelperEnv...)
	cmd.Stdin = nil
	cmd.Stdout = pw
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("starting the egress helper: %w", err)
	}
	pw.Close()
	st.HelperPid = cmd.Process.Pid
	m.mu.Lock()
	m.helpers[st.ID] = cmd
	m.mu.Unlock()
	// Reap it whenever it ends, whoever kills it.
	go func() {
		_ = cmd.Wait()
		m.mu.Lock()
		if m.helpers[st.ID] == cmd {
			delete(m.helpers, st.ID)
		}
		m.mu.Unlock()
	}()
	if err := m.writeState(st); err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(pr).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("egress helper exited before it was ready: %w", err)
			return
		}
		if strings.TrimSpace(line) != "ready" {
			ready <- fmt.Errorf("egress helper said %q", strings.TrimSpace(line))
			return
		}
		ready <- nil
	}()
	t := time.NewTimer(helperReadyTimeout)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = errors.New("egress helper did not become ready in time")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		log, _ := os.ReadFile(m.helperLogPath(st.ID))
		if len(log) > 2048 {
			log = log[len(log)-2048:]
		}
		return fmt.Errorf("%w\n%s", err, bytes.TrimSpace(log))
	}
	return nil
}

// stopHelper kills the sandbox's helper: the one this process started, or the pid recorded on
// disk when its command line still names this sandbox.
func (m *Manager) stopHelper(id string, pid int) error {
	m.mu.Lock()
	cmd := m.helpers[id]
	m.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	if pid <= 0 || !isHelperOf(pid, id) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing the egress helper %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("egress helper %d of %s did not die", pid, id)
}

// isHelperOf tells whether pid is the egress helper of sandbox id.
func isHelperOf(pid int, id string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	for i, a := range args {
		if a == HelperMarker && i+1 < len(args) && args[i+1] == id {
			return true
		}
	}
	return false
}

// alive tells whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// resolvConfServers reads the nameservers of a resolv.conf.
func resolvConfServers(path string) ([]netip.AddrPort, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the host's resolvers: %w", err)
	}
	var out []netip.AddrPort
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a.WithZone(""), 53))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s: sandbox DNS needs an upstream resolver", path)
	}
	return out, nil
}
