// Package ocispec builds the OCI runtime spec (config.json) of a local sandbox from small option
// functions, one per concern (namespaces, user namespace mapping, mounts, seccomp, capabilities,
// masked paths, rlimits, cgroup resources), so each can be tested alone and composed per sandbox.
package ocispec

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecVersion is the OCI runtime spec version written to config.json: the oldest one every supported
// runtime accepts (crun 1.8 rejects newer ones) that has every field the options set.
const SpecVersion = "1.0.2"

// Opt changes one aspect of a spec.
type Opt func(*specs.Spec) error

// New returns a minimal spec (root "rootfs", read-write, process "/bin/sh") with opts applied in order.
func New(opts ...Opt) (*specs.Spec, error) {
	s := &specs.Spec{
		Version: SpecVersion,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Cwd:  "/",
			Args: []string{"/bin/sh"},
			Env:  []string{"PATH=" + DefaultPath},
		},
		Linux: &specs.Linux{},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// DefaultPath is PATH for the sandbox's init.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Write writes s as bundleDir/config.json (0600).
func Write(bundleDir string, s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding OCI spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundleDir, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("writing OCI spec: %w", err)
	}
	return nil
}

// WithProcess sets the init command, its environment and working directory. The init runs as root
// inside the sandbox (an unprivileged uid outside, see WithUserNamespace).
func WithProcess(args, env []string, cwd string) Opt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("process args are empty")
		}
		s.Process.Args = slices.Clone(args)
		s.Process.Env = slices.Clone(env)
		s.Process.Cwd = cwd
		s.Process.User = specs.User{UID: 0, GID: 0}
		s.Process.Terminal = false
		return nil
	}
}

// WithHostname sets the hostname (the UTS namespace is added by WithNamespaces).
func WithHostname(name string) Opt {
	return func(s *specs.Spec) error { s.Hostname = name; return nil }
}

// WithRootfs sets the bundle-relative (or absolute) root path and whether it is read-only.
func WithRootfs(path string, readonly bool) Opt {
	return func(s *specs.Spec) error { s.Root = &specs.Root{Path: path, Readonly: readonly}; return nil }
}

// WithNamespaces gives the sandbox its own user, pid, mount, network, uts, ipc and cgroup namespaces.
// netnsPath, when set, joins an existing network namespace instead of creating one (the seam for
// network modes: "none" creates a fresh namespace holding only loopback).
func WithNamespaces(netnsPath string) Opt {
	return func(s *specs.Spec) error {
		s.Linux.Namespaces = []specs.LinuxNamespace{
			{Type: specs.UserNamespace},
			{Type: specs.PIDNamespace},
			{Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace, Path: netnsPath},
			{Type: specs.UTSNamespace},
			{Type: specs.IPCNamespace},
			{Type: specs.CgroupNamespace},
		}
		return nil
	}
}

// WithUserNamespace maps uid and gid 0..size-1 inside to hostBase..hostBase+size-1 outside, so root
// inside is an unprivileged user of the host.
func WithUserNamespace(hostBase, size uint32) Opt {
	return func(s *specs.Spec) error {
		if hostBase == 0 || size == 0 {
			return fmt.Errorf("user namespace mapping %d+%d: must map to a non-root range", hostBase, size)
		}
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: hostBase, Size: size}}
		s.Linux.UIDMappings = m
		s.Linux.GIDMappings = slices.Clone(m)
		return nil
	}
}

// defaultCapabilities is the moby default capability set without CAP_NET_RAW (no raw sockets).
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
	"CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultCapabilities returns the capability set sandboxes get: moby's default minus CAP_NET_RAW.
func DefaultCapabilities() []string { return slices.Clone(defaultCapabilities) }

// WithCapabilities sets bounding, effective, permitted and inheritable capabilities to caps; ambient
// stays empty.
func WithCapabilities(caps []string) Opt {
	return func(s *specs.Spec) error {
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    slices.Clone(caps),
			Effective:   slices.Clone(caps),
			Permitted:   slices.Clone(caps),
			Inheritable: slices.Clone(caps),
		}
		return nil
	}
}

// WithSeccompDefault installs the moby default seccomp profile, resolved against the spec's
// capabilities (set capabilities first) and the running kernel and architecture.
func WithSeccompDefault() Opt {
	return func(s *specs.Spec) error {
		if s.Process.Capabilities == nil {
			return fmt.Errorf("seccomp: set capabilities before the seccomp profile")
		}
		p, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("building the default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = p
		return nil
	}
}

// WithSeccompClone3Allowed lets clone3 through the seccomp profile (set after it). For runsc,
// which applies the profile inside its own kernel (--oci-seccomp) but returns EPERM for every
// denied call, ignoring the profile's ENOSYS for clone3: glibc falls back to clone only on ENOSYS,
// so threads could not be made at all. clone3's flags (namespaces) then reach gVisor's kernel,
// not the host's.
func WithSeccompClone3Allowed() Opt {
	return func(s *specs.Spec) error {
		if s.Linux == nil || s.Linux.Seccomp == nil {
			return fmt.Errorf("seccomp: set the profile before allowing clone3")
		}
		sc := s.Linux.Seccomp
		var kept []specs.LinuxSyscall
		for _, r := range sc.Syscalls {
			if r.Action != specs.ActAllow {
				r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return n == "clone3" })
				if len(r.Names) == 0 {
					continue
				}
			}
			kept = append(kept, r)
		}
		sc.Syscalls = append(kept, specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActAllow})
		return nil
	}
}

// Moby's masked and read-only paths: kernel interfaces a sandbox must neither read nor change.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// WithMaskedPaths masks and write-protects /proc and /sys paths as moby does.
func WithMaskedPaths() Opt {
	return func(s *specs.Spec) error {
		s.Linux.MaskedPaths = slices.Clone(maskedPaths)
		s.Linux.ReadonlyPaths = slices.Clone(readonlyPaths)
		return nil
	}
}

// WithDefaultMounts mounts /proc, /dev (tmpfs with the runtime's standard safe device nodes),
// /dev/pts, /dev/shm, /dev/mqueue and a read-only /sys, all nosuid and where possible noexec/nodev.
func WithDefaultMounts() Opt {
	return func(s *specs.Spec) error {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			specs.Mount{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		)
		return nil
	}
}

// WithBind bind-mounts a host directory at dest (nosuid, nodev, noexec; read-only when asked).
func WithBind(source, dest string, readonly bool) Opt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(source) || !filepath.IsAbs(dest) {
			return fmt.Errorf("bind %s -> %s: paths must be absolute", source, dest)
		}
		opts := []string{"rbind", "rw", "nosuid", "nodev", "noexec"}
		if readonly {
			opts[1] = "ro"
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dest, Type: "bind", Source: source, Options: opts})
		return nil
	}
}

// WithReadonlyBind bind-mounts a host file or directory read-only (nosuid, nodev) at dest.
func WithReadonlyBind(source, dest string) Opt {
	return func(s *specs.Spec) error {
		if !filepath.IsAbs(source) || !filepath.IsAbs(dest) {
			return fmt.Errorf("bind %s -> %s: paths must be absolute", source, dest)
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: dest, Type: "bind", Source: source,
			Options: []string{"rbind", "ro", "nosuid", "nodev"},
		})
		return nil
	}
}

// WithRlimits sets RLIMIT_NOFILE and RLIMIT_NPROC (soft = hard).
func WithRlimits(nofile, nproc uint64) Opt {
	return func(s *specs.Spec) error {
		s.Process.Rlimits = []specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile},
			{Type: "RLIMIT_NPROC", Hard: nproc, Soft: nproc},
		}
		return nil
	}
}

// Resources are the cgroup limits of a sandbox.
type Resources struct {
	// MemoryBytes bounds memory (swap included: no swap beyond it).
	MemoryBytes int64
	// Pids bounds the number of tasks.
	Pids int64
	// CPUs is the CPU quota in CPUs (1.5 = one and a half CPUs of time per period).
	CPUs float64
}

// cpuPeriod is the CFS period the CPU quota is expressed in.
const cpuPeriod = 100000

// WithResources sets the cgroup path (unique per sandbox: runtimes otherwise share default paths)
// and memory, pids and CPU limits. The runtime applies them on cgroup v1 and v2 alike.
func WithResources(cgroupsPath string, r Resources) Opt {
	return func(s *specs.Spec) error {
		if r.MemoryBytes <= 0 || r.Pids <= 0 || r.CPUs <= 0 {
			return fmt.Errorf("resources %+v: every limit must be positive", r)
		}
		mem, swap := r.MemoryBytes, r.MemoryBytes
		period := uint64(cpuPeriod)
		quota := int64(r.CPUs * cpuPeriod)
		if quota < 1000 {
			quota = 1000
		}
		s.Linux.CgroupsPath = cgroupsPath
		s.Linux.Resources = &specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			Memory:  &specs.LinuxMemory{Limit: &mem, Swap: &swap},
			Pids:    &specs.LinuxPids{Limit: &r.Pids},
			CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period},
		}
		return nil
	}
}

// WithOOMScoreAdj makes the sandbox's processes the kernel's first choice when the host runs out of
// memory, before the host's own services.
func WithOOMScoreAdj(adj int) Opt {
	return func(s *specs.Spec) error { s.Process.OOMScoreAdj = &adj; return nil }
}

// WithNoNewPrivileges sets no_new_privs on the init. Off by default: templates may ship sudo for the
// sandbox's own user (root inside is still unprivileged outside).
func WithNoNewPrivileges(on bool) Opt {
	return func(s *specs.Spec) error { s.Process.NoNewPrivileges = on; return nil }
}
