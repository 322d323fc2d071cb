// Package network gives local sandboxes their network: for "none", nothing (the OCI runtime makes
// a namespace holding only loopback); for "internet" and allow-lists, a veth pair whose host end
// is guarded by a per-sandbox nftables table, an address pair from a private pool, and a helper
// process (`agent netd`, package egress) serving the sandbox's DNS and, for allow-lists, a
// transparent proxy that checks TLS server names and HTTP hosts.
//
// Every enforcement point is on the host side, keyed by the host end of the sandbox's link and
// its address: nothing inside the sandbox, not even a root that could reconfigure its own
// namespace, changes what leaves it. State lives under a host-wide run directory (one lease file
// per address slot, one directory per sandbox), so GC from any process reclaims what a crashed
// one left: links, tables, helpers and leases.
package network

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/agentrun/agent/sandbox/local/network/egress"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

// Defaults.
const (
	// DefaultRunDir holds leases and per-sandbox state; on tmpfs, so a reboot (which removes every
	// link and table) also forgets them.
	DefaultRunDir = "/run/agent/net"
	// ProxyPort is the transparent proxy's port on each sandbox's gateway address.
	ProxyPort = 15001
	// helperReadyTimeout bounds the wait for the helper to listen.
	helperReadyTimeout = 15 * time.Second
)

// DefaultPool is the address pool sandbox links are carved from, one /30 each.
var DefaultPool = netip.MustParsePrefix("10.217.0.0/16")

// Config configures a Manager.
type Config struct {
	// RunDir holds leases and per-sandbox state (default DefaultRunDir). Every process on the
	// host must use the same one.
	RunDir string
	// Pool is the IPv4 range sandbox links are carved from (default DefaultPool); it must not
	// overlap any network of the host.
	Pool netip.Prefix
	// Upstreams are the DNS resolvers sandbox queries go to (default: the host's
	// /etc/resolv.conf).
	Upstreams []netip.AddrPort
	// Helper is the command line of the egress helper, to which "--config FILE" is appended
	// (default: the agent binary's "netd").
	Helper []string
	// HelperEnv is added to the helper's environment (tests).
	HelperEnv []string
	Logger    *slog.Logger
}

// Manager sets up and tears down sandbox networks.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	helpers map[string]*exec.Cmd
}

// New checks the configuration.
func New(cfg Config) (*Manager, error) {
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir
	}
	if !cfg.Pool.IsValid() {
		cfg.Pool = DefaultPool
	}
	if !cfg.Pool.Addr().Is4() || cfg.Pool.Bits() > 29 {
		return nil, fmt.Errorf("network pool %s: want an IPv4 range of at least /29", cfg.Pool)
	}
	cfg.Pool = cfg.Pool.Masked()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Logger, helpers: map[string]*exec.Cmd{}}, nil
}

// Pool is the manager's address pool.
func (m *Manager) Pool() netip.Prefix { return m.cfg.Pool }

// state is one sandbox's network, as recorded in RunDir/<id>/state.json.
type state struct {
	ID     string `json:"id"`
	Policy string `json:"policy"`
	// Owner is the sandbox's directory: when it is gone, so is the sandbox.
	Owner     string     `json:"owner"`
	Slot      int        `json:"slot"`
	HostIf    string     `json:"host_if"`
	PeerIf    string     `json:"peer_if"`
	Gateway   netip.Addr `json:"gateway"`
	Address   netip.Addr `json:"address"`
	HelperPid int        `json:"helper_pid,omitempty"`
}

func (m *Manager) dir(id string) string           { return filepath.Join(m.cfg.RunDir, id) }
func (m *Manager) statePath(id string) string     { return filepath.Join(m.dir(id), "state.json") }
func (m *Manager) eventsPath(id string) string    { return filepath.Join(m.dir(id), "events.jsonl") }
func (m *Manager) slotsDir() string               { return filepath.Join(m.cfg.RunDir, "slots") }
func tableName(id string) string                  { return "agent_" + id }
func hostIfName(id string) string                 { return "ag" + id[:min(len(id), 13)] }
func peerIfName(id string) string                 { return "ap" + id[:min(len(id), 13)] }
func (m *Manager) helperLogPath(id string) string { return filepath.Join(m.dir(id), "helper.log") }
func (m *Manager) netnsPath(id string) string     { return filepath.Join(m.dir(id), "netns") }

func (m *Manager) writeState(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.statePath(st.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing network state: %w", err)
	}
	return os.Rename(tmp, m.statePath(st.ID))
}

func (m *Manager) readState(id string) (*state, error) {
	b, err := os.ReadFile(m.statePath(id))
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("corrupt network state of %s: %w", id, err)
	}
	return &st, nil
}

// Setup prepares a networked sandbox's host side: address lease, veth pair (both ends still on
// the host), nftables table and egress helper. owner is the sandbox's directory (its existence
// tells GC the sandbox lives). The sandbox end is moved into the sandbox by Attach.
func (m *Manager) Setup(ctx context.Context, id, owner string, pol netpolicy.Policy) (err error) {
	if !pol.Networked() {
		return nil
	}
	if len(id) < 8 {
		return fmt.Errorf("sandbox id %q too short for a network", id)
	}
	if err := os.MkdirAll(m.slotsDir(), 0o700); err != nil {
		return fmt.Errorf("network run dir: %w", err)
	}
	if err := os.Mkdir(m.dir(id), 0o700); err != nil {
		return fmt.Errorf("network state dir: %w", err)
	}
	defer func() {
		if err != nil {
			if terr := m.Teardown(context.WithoutCancel(ctx), id); terr != nil {
				m.log.Error("undoing a failed network setup", "id", id, "err", terr)
			}
		}
	}()
	st := &state{ID: id, Policy: pol.String(), Owner: owner, Slot: -1, HostIf: hostIfName(id), PeerIf: peerIfName(id)}
	if err := m.writeState(st); err != nil {
		return err
	}
	if st.Slot, err = m.claimSlot(id); err != nil {
		return err
	}
	st.Gateway, st.Address = m.slotAddrs(st.Slot)
	if err := m.writeState(st); err != nil {
		return err
	}
	host, err := hostNetworks(m.cfg.Pool)
	if err != nil {
		return err
	}
	if err := enableForwarding(); err != nil {
		return err
	}
	if err := createVeth(st); err != nil {
		return err
	}
	if err := applyTable(ctx, rulesFor(st, pol, m.cfg.Pool, host)); err != nil {
		return err
	}
	if err := m.startHelper(ctx, st, pol, host); err != nil {
		return err
	}
	return m.writeState(st)
}

// SetupNetns is Setup for runtimes that read the sandbox's interfaces when they create it (runsc
// with its own network stack takes over the interfaces it finds in the namespace it is given):
// it also makes a network namespace pinned under the run directory, moves the sandbox's end of
// the link into it and configures it as Attach would, and returns its path for the runtime's
// spec. Attach is then not called; Teardown removes the namespace.
func (m *Manager) SetupNetns(ctx context.Context, id, owner string, pol netpolicy.Policy) (path string, err error) {
	if !pol.Networked() {
		return "", nil
	}
	if err := m.Setup(ctx, id, owner, pol); err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			if terr := m.Teardown(context.WithoutCancel(ctx), id); terr != nil {
				m.log.Error("undoing a failed network setup", "id", id, "err", terr)
			}
		}
	}()
	st, err := m.readState(id)
	if err != nil {
		return "", fmt.Errorf("network of sandbox %s: %w", id, err)
	}
	path = m.netnsPath(id)
	if err := makeNetns(path); err != nil {
		return "", err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return "", fmt.Errorf("opening the network namespace %s: %w", path, err)
	}
	defer ns.Close()
	if err := attachPeerNs(st, ns); err != nil {
		return "", err
	}
	return path, nil
}

// Attach moves the sandbox's end of the link into the network namespace of pid (the sandbox's
// init, created but not yet started) and configures it: eth0 with the sandbox's address, a
// default route through the host end, no IPv6.
func (m *Manager) Attach(ctx context.Context, id string, pid int) error {
	st, err := m.readState(id)
	if err != nil {
		return fmt.Errorf("network of sandbox %s: %w", id, err)
	}
	return attachPeer(st, pid)
}

// Teardown removes everything Setup made, in any partial state; a sandbox without a network is
// not an error.
func (m *Manager) Teardown(ctx context.Context, id string) error {
	st, err := m.readState(id)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(m.dir(id)); serr != nil {
			return nil
		}
		st = &state{ID: id, Slot: -1, HostIf: hostIfName(id), PeerIf: peerIfName(id)}
	} else if err != nil {
		st = &state{ID: id, Slot: -1, HostIf: hostIfName(id), PeerIf: peerIfName(id)}
	}
	var errs []error
	if err := m.stopHelper(id, st.HelperPid); err != nil {
		errs = append(errs, err)
	}
	if err := deleteTable(ctx, tableName(id)); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLinks(st); err != nil {
		errs = append(errs, err)
	}
	if err := removeNetns(m.netnsPath(id)); err != nil {
		errs = append(errs, err)
	}
	if st.Slot >= 0 {
		m.releaseSlot(st.Slot, id)
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(m.dir(id)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("tearing down the network of %s: %w", id, errors.Join(errs...))
	}
	return nil
}

// Sweep tears down the networks whose sandbox directory is gone (their owner crashed before
// destroying them), and the tables and links of sandboxes that have no state at all. It returns
// the ids reclaimed.
func (m *Manager) Sweep(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(m.cfg.RunDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing sandbox networks: %w", err)
	}
	var out []string
	var errs []error
	known := map[string]bool{}
	for _, e := range ents {
		id := e.Name()
		if !e.IsDir() || id == "slots" {
			continue
		}
		known[id] = true
		st, err := m.readState(id)
		if err == nil && st.Owner != "" {
			if _, serr := os.Stat(st.Owner); serr == nil {
				continue
			}
		} else if err != nil {
			// A state being written right now is younger than a few seconds.
			if fi, serr := os.Stat(m.dir(id)); serr == nil && time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		if err := m.Teardown(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, id)
	}
	for _, t := range listTables(ctx) {
		id, ok := strings.CutPrefix(t, "agent_")
		// Setup makes the state directory before the table and Teardown removes it after, so a
		// table whose directory exists now belongs to a sandbox set up since the listing above.
		if _, serr := os.Stat(m.dir(id)); ok && !known[id] && errors.Is(serr, fs.ErrNotExist) {
			if err := deleteTable(ctx, t); err != nil {
				errs = append(errs, err)
			} else {
				out = append(out, id)
			}
		}
	}
	// Slots whose sandbox has no state left.
	if sl, err := os.ReadDir(m.slotsDir()); err == nil {
		for _, e := range sl {
			b, err := os.ReadFile(filepath.Join(m.slotsDir(), e.Name()))
			if err == nil && !known[string(b)] {
				_ = os.Remove(filepath.Join(m.slotsDir(), e.Name()))
			}
		}
	}
	return out, errors.Join(errs...)
}

// Report is what a sandbox's network refused so far.
type Report struct {
	// Policy is the policy in force.
	Policy string `json:"policy"`
	// Address is the sandbox's address, when networked.
	Address string `json:"address,omitempty"`
	// Refused lists refusals: names the resolver would not answer, connections the proxy
	// refused, and (kind "packet") destinations the kernel rules refused, with counts.
	Refused []egress.Event `json:"refused,omitempty"`
	// RefusedPackets counts every packet the kernel rules refused.
	RefusedPackets int64 `json:"refused_packets"`
}

// maxReportEvents bounds the events a report carries.
const maxReportEvents = 1000

// Report reads what the sandbox's network refused.
func (m *Manager) Report(ctx context.Context, id string) (*Report, error) {
	st, err := m.readState(id)
	if errors.Is(err, fs.ErrNotExist) {
		return &Report{Policy: string(netpolicy.None)}, nil
	}
	if err != nil {
		return nil, err
	}
	r := &Report{Policy: st.Policy, Address: st.Address.String()}
	if f, err := os.Open(m.eventsPath(id)); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() && len(r.Refused) < maxReportEvents {
			var ev egress.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				r.Refused = append(r.Refused, ev)
			}
		}
		f.Close()
	}
	pk, evs, err := readRefused(ctx, tableName(id))
	if err != nil {
		return r, err
	}
	r.RefusedPackets = pk
	for _, ev := range evs {
		if len(r.Refused) >= maxReportEvents {
			break
		}
		r.Refused = append(r.Refused, ev)
	}
	return r, nil
}

// Nameserver returns the resolver address of a networked sandbox (its gateway), or "".
func (m *Manager) Nameserver(id string) string {
	st, err := m.readState(id)
	if err != nil || !st.Gateway.IsValid() {
		return ""
	}
	return st.Gateway.String()
}

// RunDir is the manager's run directory.
func (m *Manager) RunDir() string { return m.cfg.RunDir }
