package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/local/cgroups"
	"github.com/agentrun/agent/sandbox/local/mounts"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
	"github.com/agentrun/agent/sandbox/local/template"
)

// Severity of a doctor check.
type Severity string

// Severities.
const (
	OK   Severity = "ok"
	Warn Severity = "warn"
	Fail Severity = "FAIL"
)

// Check is one finding of Doctor.
type Check struct {
	Name     string
	Severity Severity
	Detail   string
	// Fix says what to do when the check is not OK.
	Fix string
}

// DoctorOptions configure Doctor.
type DoctorOptions struct {
	DataDir, TemplateDir string
	// Binary is the agent binary (default this executable).
	Binary string
	// Smoke creates a sandbox with each usable runtime and runs a command in it.
	Smoke bool
}

// Doctor checks what local sandboxes need from the host: root, kernel features, cgroups, runtimes,
// tools, the data dir and templates. Each finding says how to fix it.
func Doctor(ctx context.Context, o DoctorOptions) []Check {
	var out []Check
	add := func(name string, sev Severity, detail, fix string) {
		out = append(out, Check{Name: name, Severity: sev, Detail: detail, Fix: fix})
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if os.Geteuid() == 0 {
		add("root", OK, "running as root", "")
	} else {
		add("root", Fail, fmt.Sprintf("running as uid %d", os.Geteuid()), "run agent as root (sudo): sandboxes need user namespaces, mounts and cgroups")
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	rel := unix.ByteSliceToString(uts.Release[:])
	if kernelAtLeast(rel, 5, 19) {
		add("kernel", OK, rel, "")
	} else {
		add("kernel", Fail, rel+" (idmapped overlay layers need 5.19 or later)", "upgrade the kernel to 5.19+ (Debian 12 backports, Ubuntu 22.10+)")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) != "0" {
		add("user namespaces", OK, "max_user_namespaces="+strings.TrimSpace(string(b)), "")
	} else {
		add("user namespaces", Fail, "disabled", "sysctl -w user.max_user_namespaces=65536")
	}
	fss, _ := os.ReadFile("/proc/filesystems")
	for _, fs := range []string{"overlay", "ext4"} {
		if strings.Contains(string(fss), "\t"+fs+"\n") {
			add(fs, OK, "supported", "")
		} else {
			add(fs, Fail, "not in /proc/filesystems", "modprobe "+fs)
		}
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil && strings.Contains(string(st), "Seccomp:") {
		add("seccomp", OK, "supported", "")
	} else {
		add("seccomp", Fail, "not supported by the kernel", "use a kernel built with CONFIG_SECCOMP_FILTER")
	}
	if os.Geteuid() == 0 {
		if err := probeIDMap(o.Binary); err != nil {
			add("idmapped mounts", Fail, err.Error(), "use a kernel (5.12+) and filesystem supporting idmapped mounts (ext4, xfs, btrfs, tmpfs 6.3+)")
		} else {
			add("idmapped mounts", OK, "supported", "")
		}
	}
	if clash := uidClashes("/etc", DefaultUIDBase, uint64(DefaultMaxSlots)*UIDRange); len(clash) > 0 {
		add("uid ranges", Warn, fmt.Sprintf("host ids overlap the sandbox range %d-%d: %s", DefaultUIDBase, uint64(DefaultUIDBase)+uint64(DefaultMaxSlots)*UIDRange-1, strings.Join(clash, "; ")),
			"move those users or subordinate ranges, or give the backend another UIDBase")
	} else {
		add("uid ranges", OK, fmt.Sprintf("sandboxes map to host uids %d-%d, used by no host user or subuid range", DefaultUIDBase, uint64(DefaultUIDBase)+uint64(DefaultMaxSlots)*UIDRange-1), "")
	}
	if _, err := os.Stat("/dev/loop-control"); err == nil {
		add("loop devices", OK, "/dev/loop-control", "")
	} else {
		add("loop devices", Fail, "no /dev/loop-control", "modprobe loop (in a container: give it access to loop devices)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err == nil {
		add("mkfs.ext4", OK, "installed", "")
	} else {
		add("mkfs.ext4", Fail, "not installed (needed for per-sandbox disk quotas)", "apt-get install e2fsprogs")
	}
	h, err := cgroups.Detect()
	if err != nil {
		add("cgroups", Fail, err.Error(), "mount the cgroup filesystem")
	} else {
		var missing []string
		for _, c := range []string{"memory", "pids", "cpu"} {
			if _, ok := h.V1[c]; !ok && !slices.Contains(h.UnifiedControllers, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) == 0 {
			add("cgroups", OK, fmt.Sprintf("%s (v2 controllers: %v)", h.Mode, h.UnifiedControllers), "")
		} else {
			add("cgroups", Fail, fmt.Sprintf("%s: controllers %v unavailable", h.Mode, missing), "enable the memory, pids and cpu controllers (kernel command line cgroup_enable=memory)")
		}
	}
	usable := []string{}
	for _, name := range ociruntime.Names() {
		bin, err := ociruntime.LookPath(name)
		if err != nil {
			sev := Warn
			if name == DefaultRuntime {
				sev = Fail
			}
			add("runtime "+name, sev, "not installed", "apt-get install "+name)
			continue
		}
		rt := &ociruntime.Runtime{Name: name, Binary: bin}
		v, _ := rt.Version(ctx)
		switch {
		case name == ociruntime.Runsc:
			// No --preserve-fds: envd makes its socket in a host-bound directory (--host-uds=create).
			netw := "networked modes: yes"
			if err := rt.NetworkSupport(ctx); err != nil {
				netw = "networked modes: no (" + err.Error() + ")"
			}
			add("runtime "+name, OK, v+" (ptrace platform; envd's socket through --host-uds; "+netw+")", "")
			usable = append(usable, name)
		case name == ociruntime.Crun && h != nil && h.Mode == cgroups.Hybrid && len(h.UnifiedControllers) > 0:
			add("runtime "+name, Warn, fmt.Sprintf("%s: refuses cgroup hybrid mode while controllers %v sit on the v2 hierarchy", v, h.UnifiedControllers),
				CrunHybridFix(h))
		default:
			add("runtime "+name, OK, v, "")
			usable = append(usable, name)
		}
	}
	out = append(out, criuCheck(ctx))
	if _, err := exec.LookPath("debootstrap"); err == nil {
		add("debootstrap", OK, "installed", "")
	} else {
		add("debootstrap", Warn, "not installed: the debian template cannot be built", "apt-get install debootstrap")
	}
	if err := checkTraversable(filepath.Dir(o.DataDir)); err != nil {
		add("data dir", Fail, err.Error(), "chmod o+x on the parent directories, or another --data-dir")
	} else {
		var st unix.Statfs_t
		dir := o.DataDir
		for {
			if err := unix.Statfs(dir, &st); err == nil || dir == "/" {
				break
			}
			dir = filepath.Dir(dir)
		}
		free := int64(st.Bavail) * st.Bsize
		sev, fix := OK, ""
		if free < 5<<30 {
			sev, fix = Warn, "free disk space: each sandbox's disk is a sparse image that grows with what it writes"
		}
		add("data dir", sev, fmt.Sprintf("%s (%d GiB free)", o.DataDir, free>>30), fix)
	}
	tdir := o.TemplateDir
	if tdir == "" {
		tdir = filepath.Join(o.DataDir, "templates")
	}
	if st, err := template.NewStore(tdir, nil); err == nil {
		for _, name := range []string{template.Host, template.Debian} {
			if t, err := st.Get(name); err == nil {
				add("template "+name, OK, fmt.Sprintf("built %s, %s", t.Created.Format(time.RFC3339), t.Digest[:19]), "")
			} else if name == template.Host {
				add("template "+name, OK, "not built yet (builds instantly on first use)", "")
			} else {
				add("template "+name, Warn, "not built", "agent template build debian   (about 2-5 minutes)")
			}
		}
	}
	if o.Smoke && os.Geteuid() == 0 {
		for _, rt := range usable {
			out = append(out, smoke(ctx, o, rt))
		}
	}
	return out
}

// CrunHybridFix is the command that lets crun run on a hybrid cgroup host: it moves the controllers
// sitting on the v2 hierarchy (usually only hugetlb) to a v1 hierarchy of their own. It lasts until
// reboot; unmounting it moves them back.
func CrunHybridFix(h *cgroups.Host) string {
	var cmds []string
	for _, c := range h.UnifiedControllers {
		cmds = append(cmds, fmt.Sprintf("mkdir -p /sys/fs/cgroup/%s && mount -t cgroup -o %s cgroup /sys/fs/cgroup/%s", c, c, c))
	}
	return strings.Join(cmds, " && ") + "   (or: agent doctor --fix)"
}

// FixCrunHybrid applies CrunHybridFix and returns the hierarchies it mounted (unmount them to
// undo it).
func FixCrunHybrid() ([]string, error) {
	h, err := cgroups.Detect()
	if err != nil {
		return nil, err
	}
	if h.Mode != cgroups.Hybrid || len(h.UnifiedControllers) == 0 {
		return nil, nil
	}
	var mounted []string
	for _, c := range h.UnifiedControllers {
		dir := filepath.Join("/sys/fs/cgroup", c)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return mounted, fmt.Errorf("creating %s: %w", dir, err)
		}
		if err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, c); err != nil {
			return mounted, fmt.Errorf("mounting the %s v1 hierarchy: %w", c, err)
		}
		mounted = append(mounted, dir)
	}
	return mounted, nil
}

// UndoCrunHybridFix moves controllers moved by FixCrunHybrid back to the v2 hierarchy: it unmounts
// their v1 hierarchies (mounted: the mount points FixCrunHybrid returned, or every
// /sys/fs/cgroup/<controller> v1 mount of a controller v2 could hold when nil) and removes the
// empty cgroups left in them — a v1 hierarchy lives on after its unmount while it holds any group,
// and keeps its controller away from v2. Groups that still hold processes are left and reported.
func UndoCrunHybridFix(mounted []string) error {
	if mounted == nil {
		h, err := cgroups.Detect()
		if err != nil {
			return err
		}
		for c, point := range h.V1 {
			if c == "hugetlb" && point == filepath.Join("/sys/fs/cgroup", c) {
				mounted = append(mounted, point)
			}
		}
	}
	var errs []error
	for _, m := range mounted {
		c := filepath.Base(m)
		if err := unix.Unmount(m, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
			continue
		}
		_ = os.Remove(m)
		// Remount the hierarchy privately to empty it, then let it go.
		tmp, err := os.MkdirTemp("", "agent-cgroup-"+c+"-")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount("cgroup", tmp, "cgroup", 0, c); err == nil {
			var busy []string
			dirs := []string{}
			_ = filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() && p != tmp {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := unix.Rmdir(dirs[i]); err != nil {
					busy = append(busy, strings.TrimPrefix(dirs[i], tmp))
				}
			}
			_ = unix.Unmount(tmp, 0)
			if len(busy) > 0 {
				errs = append(errs, fmt.Errorf("the %s v1 hierarchy still holds groups with processes: %v", c, busy))
			}
		}
		_ = os.Remove(tmp)
	}
	return errors.Join(errs...)
}

func smoke(ctx context.Context, o DoctorOptions, rt string) Check {
	name := "sandbox smoke test (" + rt + ")"
	dir, err := os.MkdirTemp(o.DataDir, "doctor-")
	if err != nil {
		return Check{Name: name, Severity: Fail, Detail: err.Error()}
	}
	defer os.RemoveAll(dir)
	tdir := o.TemplateDir
	if tdir == "" {
		tdir = filepath.Join(o.DataDir, "templates")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	b, err := New(ctx, Config{DataDir: dir, TemplateDir: tdir, Runtime: rt, Binary: o.Binary})
	if err != nil {
		return Check{Name: name, Severity: Fail, Detail: err.Error()}
	}
	defer func() {
		_ = b.Close()
		_, _ = b.GC(context.WithoutCancel(ctx)) // removes the throwaway data dir's cgroup parent too
	}()
	start := time.Now()
	s, err := b.Create(ctx, Options{})
	if err != nil {
		return Check{Name: name, Severity: Fail, Detail: err.Error(), Fix: "see the error; agent --log-level debug sandbox create shows each step"}
	}
	took := time.Since(start)
	out, code, err := s.Output(ctx, "", "sh", "-c", "echo ok")
	_ = s.Kill(ctx)
	if err != nil || code != 0 || strings.TrimSpace(out) != "ok" {
		return Check{Name: name, Severity: Fail, Detail: fmt.Sprintf("exec: %v (exit %d) %s", err, code, out)}
	}
	return Check{Name: name, Severity: OK, Detail: fmt.Sprintf("created in %v, ran a command", took.Round(time.Millisecond))}
}

func probeIDMap(helper string) error {
	if helper == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		helper = exe
	}
	ns, err := mounts.NewUserNS(helper, mounts.IDMap{HostBase: DefaultUIDBase, Size: UIDRange})
	if err != nil {
		return err
	}
	defer ns.Close()
	dir, err := os.MkdirTemp("", "agent-doctor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	dst := filepath.Join(dir, "dst")
	_ = os.Mkdir(src, 0o755)
	_ = os.Mkdir(dst, 0o755)
	if err := mounts.BindIDMapped(src, dst, ns, mounts.Attr{ReadOnly: true}); err != nil {
		return err
	}
	var st unix.Stat_t
	serr := unix.Stat(dst, &st)
	_ = mounts.Detach(dst)
	if serr != nil {
		return serr
	}
	if st.Uid != DefaultUIDBase {
		return errors.New("idmapped mount did not map uid 0")
	}
	return nil
}

// uidClashes lists host users, groups and subordinate id ranges (from etcDir) that fall into
// [base, base+size).
func uidClashes(etcDir string, base, size uint64) []string {
	var out []string
	in := func(lo, n uint64) bool { return lo < uint64(base)+size && lo+n > uint64(base) }
	for _, f := range []string{"passwd", "group"} {
		b, _ := os.ReadFile(filepath.Join(etcDir, f))
		for _, l := range strings.Split(string(b), "\n") {
			parts := strings.Split(l, ":")
			if len(parts) > 2 {
				if id, err := strconv.ParseUint(parts[2], 10, 32); err == nil && in(id, 1) {
					out = append(out, f+" "+parts[0]+"="+parts[2])
				}
			}
		}
	}
	for _, f := range []string{"subuid", "subgid"} {
		b, _ := os.ReadFile(filepath.Join(etcDir, f))
		for _, l := range strings.Split(string(b), "\n") {
			parts := strings.Split(strings.TrimSpace(l), ":")
			if len(parts) == 3 {
				lo, e1 := strconv.ParseUint(parts[1], 10, 32)
				n, e2 := strconv.ParseUint(parts[2], 10, 32)
				if e1 == nil && e2 == nil && in(lo, n) {
					out = append(out, f+" "+l)
				}
			}
		}
	}
	return out
}

func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return ma > major || (ma == major && mi >= minor)
}
