// Package ociruntime drives an OCI runtime binary (runc, crun or runsc) through its command line:
// create, start, state, exec, delete. Every call is bounded by its context; errors carry the
// runtime's own message.
package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Names of the supported runtimes.
const (
	Runc  = "runc"
	Crun  = "crun"
	Runsc = "runsc"
)

// Names lists the supported runtimes, default first.
func Names() []string { return []string{Runc, Crun, Runsc} }

// ErrNotExist is returned when the runtime does not know the container.
var ErrNotExist = errors.New("container does not exist")

// Runtime is one runtime binary with its state directory.
type Runtime struct {
	Name   string
	Binary string
	// Root is the runtime's state directory (--root).
	Root string
	// extra are global flags this build of the runtime takes (see probeRunsc).
	extra []string
	// network is runsc's network mode (see WithNetwork).
	network string
}

// WithNetwork returns a copy of the runtime that runs runsc's network in mode (NetNone or
// NetSandbox). runsc reads it from the command line of each call (create and start both set the
// sandbox's network up), so the same mode must be used for both. Other runtimes ignore it: they
// use the namespace the spec names as it is.
func (r *Runtime) WithNetwork(mode string) *Runtime {
	c := *r
	c.network = mode
	return &c
}

// RunscDir is where scripts/deps.sh installs a runsc built from a recent gVisor (distribution
// packages can be too old for this kernel's network namespaces); New prefers it to PATH.
const RunscDir = "/usr/local/lib/agent/runsc"

// New finds the runtime's binary (runsc: in RunscDir, else on PATH; others: on PATH).
func New(name, root string) (*Runtime, error) {
	switch name {
	case Runc, Crun, Runsc:
	default:
		return nil, fmt.Errorf("unknown OCI runtime %q (want one of %v)", name, Names())
	}
	bin, err := LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("OCI runtime %s is not installed (on Debian/Ubuntu: apt-get install %s): %w", name, pkgOf(name), err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating runtime state dir: %w", err)
	}
	r := &Runtime{Name: name, Binary: bin, Root: root}
	if name == Runsc {
		r.extra = probeRunsc(bin)
	}
	return r, nil
}

// probeRunsc returns the global flags a recent runsc build needs to behave as the sandboxes
// expect (older builds, which do not know the first flag, behave so without them):
//   - --gofer-network-namespace=new: recent builds pin a shared empty network namespace for their
//     gofers with a bind mount in the state directory, which would outlive every sandbox; this
//     gives each gofer its own (the same isolation, no mount left behind);
//   - --overlay2=none: recent builds put an overlay of their own over the root filesystem, which
//     makes the template's read-only host directories writable inside (writes land in a file in
//     the rootfs, outside the disk quota's accounting of files); the backend's own overlay
//     rootfs already gives the sandbox a writable, quota-bound root;
//   - --oci-seccomp: recent builds implement more of Linux in their own kernel (user namespaces
//     with mounts, keyrings); applying the spec's seccomp profile inside too keeps the syscall
//     surface the same as under runc.
func probeRunsc(bin string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flags := []string{"--gofer-network-namespace=new", "--overlay2=none", "--oci-seccomp"}
	if exec.CommandContext(ctx, bin, append(slices.Clone(flags), "--version")...).Run() == nil {
		return flags
	}
	return nil
}

func pkgOf(name string) string { return name }

// LookPath finds a runtime's binary as New does.
func LookPath(name string) (string, error) {
	if name == Runsc {
		p := filepath.Join(RunscDir, Runsc)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// global returns the global flags.
func (r *Runtime) global() []string {
	args := []string{"--root", r.Root}
	if r.Name == Runsc {
		network := r.network
		if network == "" {
			network = NetNone
		}
		// ptrace works everywhere (no KVM needed). --host-uds=create lets envd make its socket
		// in a directory bound from the host (runsc cannot pass a listening socket in);
		// connecting to host sockets stays forbidden.
		args = append(args, "--platform=ptrace", "--network="+network, "--host-uds=create")
		args = append(args, r.extra...)
	}
	return args
}

// AppliesSeccompInside tells whether the runtime applies the spec's seccomp profile in its own
// kernel (runsc with --oci-seccomp), where every denied call fails with EPERM whatever errno the
// profile names (see ocispec.WithSeccompClone3Allowed).
func (r *Runtime) AppliesSeccompInside() bool { return slices.Contains(r.extra, "--oci-seccomp") }

// runsc network modes (its --network flag).
const (
	// NetNone: loopback only, no interface of the namespace is used.
	NetNone = "none"
	// NetSandbox: gVisor's own network stack takes over the interfaces it finds in the
	// sandbox's network namespace when the sandbox is created.
	NetSandbox = "sandbox"
)

// minRunscNetstack is the oldest gVisor build date whose network stack works in network
// namespaces of kernels ≥ 6.11 (gVisor issue 10704, fixed in August 2024; a margin added).
const minRunscNetstack = 20241001

var buildDate = regexp.MustCompile(`\b(20\d{6})`)

// NetworkSupport tells whether the runtime can give a sandbox a network interface; for runsc
// it reads the build date from its version (distribution builds name it, builds from
// scripts/deps.sh carry their module version) and refuses builds older than the fix of gVisor
// issue 10704 or without a date. The error says why not.
func (r *Runtime) NetworkSupport(ctx context.Context) error {
	if r.Name != Runsc {
		return nil
	}
	v, err := r.Version(ctx)
	if err != nil {
		return err
	}
	m := buildDate.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("runsc at %s (%q) has no build date: cannot tell whether its network stack works on this kernel (gVisor issue 10704); install one with scripts/deps.sh", r.Binary, v)
	}
	if d, _ := strconv.Atoi(m[1]); d < minRunscNetstack {
		return fmt.Errorf("runsc at %s (%q) is older than %d: its network stack fails on kernels from 6.11 (gVisor issue 10704); install a newer one with scripts/deps.sh", r.Binary, v, minRunscNetstack)
	}
	return nil
}

// SupportsPreserveFDs tells whether the runtime can pass extra file descriptors to the container's
// init (runsc cannot).
func (r *Runtime) SupportsPreserveFDs() bool { return r.Name != Runsc }

// CreateOpts are the arguments of Create.
type CreateOpts struct {
	Bundle  string
	PidFile string
	// ExtraFiles become fds 3, 4, … of the container's init.
	ExtraFiles []*os.File
	// Output receives the init's stdout and stderr and the runtime's own messages. It must be a
	// file, not a pipe: the init keeps it for its whole life.
	Output *os.File
}

// Create creates the container: namespaces, mounts and cgroups set up, init waiting to start.
func (r *Runtime) Create(ctx context.Context, id string, o CreateOpts) error {
	args := append(r.global(), "create", "--bundle", o.Bundle, "--pid-file", o.PidFile)
	if len(o.ExtraFiles) > 0 {
		if !r.SupportsPreserveFDs() {
			return fmt.Errorf("%s cannot pass file descriptors to the container", r.Name)
		}
		args = append(args, "--preserve-fds", strconv.Itoa(len(o.ExtraFiles)))
	}
	args = append(args, id)
	cmd := exec.CommandContext(ctx, r.Binary, args...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	cmd.ExtraFiles = o.ExtraFiles
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	// The runtime must not inherit our terminal's process group: a Ctrl-C aimed at us would reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s create: %w", r.Name, err)
	}
	return nil
}

// Start runs the created container's init.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, "start", id)
	return err
}

// Delete removes the container's runtime state, killing its processes first if it still runs. A
// missing container is not an error. (Kill the processes before: runc's forced delete polls for
// their end at 100 ms intervals.)
func (r *Runtime) Delete(ctx context.Context, id string) error {
	_, err := r.run(ctx, "delete", id)
	if err == nil || errors.Is(err, ErrNotExist) {
		return nil
	}
	_, err = r.run(ctx, "delete", "--force", id)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	return err
}

// Kill sends sig to the container's init.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	_, err := r.run(ctx, "kill", id, strconv.Itoa(int(sig)))
	return err
}

// State is the runtime's view of a container.
type State struct {
	ID     string `json:"id"`
	Status string `json:"status"` // creating, created, running, stopped, paused
	Pid    int    `json:"pid"`
	Bundle string `json:"bundle"`
}

// State asks the runtime for the container's state.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("%s state %s: %w", r.Name, id, err)
	}
	return &s, nil
}

// ExecOpts describe a process run in a running container through the runtime (an administrative
// path beside the envd protocol: it needs no daemon inside).
type ExecOpts struct {
	Args []string
	Env  []string
	Cwd  string
	// UID and GID inside the sandbox.
	UID, GID int
	TTY      bool
}

// ExecCommand returns the command that runs o in the container; the caller wires stdio and runs it.
// The process gets the container's seccomp profile, capabilities and namespaces.
func (r *Runtime) ExecCommand(ctx context.Context, id string, o ExecOpts) *exec.Cmd {
	args := append(r.global(), "exec", "--user", fmt.Sprintf("%d:%d", o.UID, o.GID))
	if o.Cwd != "" {
		args = append(args, "--cwd", o.Cwd)
	}
	for _, e := range o.Env {
		args = append(args, "--env", e)
	}
	if o.TTY {
		args = append(args, "--tty")
	}
	args = append(args, id)
	args = append(args, o.Args...)
	cmd := exec.CommandContext(ctx, r.Binary, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Version returns the first line of `runtime --version`.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.Binary, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", r.Name, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line, nil
}

func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.Binary, append(r.global(), args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2048 {
			msg = msg[len(msg)-2048:]
		}
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") || strings.Contains(msg, "No such file") {
			return nil, fmt.Errorf("%s %s: %s: %w", r.Name, args[0], msg, ErrNotExist)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", r.Name, args[0], err, msg)
	}
	return stdout.Bytes(), nil
}
