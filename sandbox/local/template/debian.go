package template

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DebianPackages are installed into the "debian" template beyond debootstrap's minbase.
var DebianPackages = []string{
	"python3", "python3-pip", "python3-venv", "nodejs", "npm", "git", "curl", "ca-certificates",
	"build-essential", "procps", "sudo", "less", "xz-utils", "unzip",
}

// DebianBuilder builds the "debian" template: debootstrap of Debian bookworm (minbase), then apt
// installs DebianPackages (apt resolves their dependencies, which debootstrap's --include does not
// fully), a "user" account (uid 1000) with passwordless sudo, and no package caches.
//
// The build runs Debian's maintainer scripts as root in a chroot of the build directory, as
// debootstrap itself does; the packages come from the mirror, checked against the Release
// signatures when debian-archive-keyring is installed.
type DebianBuilder struct {
	// Suite is the Debian release (default bookworm).
	Suite string
	// Mirror is the Debian mirror URL; default: $AGENT_DEBIAN_MIRROR, else the first Debian mirror
	// in the host's apt sources.
	Mirror string
}

// Build implements Builder.
func (b DebianBuilder) Build(ctx context.Context, rootfs string, progress func(string)) (_ Meta, err error) {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return Meta{}, errors.New("debootstrap is not installed (apt-get install debootstrap)")
	}
	suite := b.Suite
	if suite == "" {
		suite = "bookworm"
	}
	mirror := b.Mirror
	if mirror == "" {
		mirror = os.Getenv("AGENT_DEBIAN_MIRROR")
	}
	if mirror == "" {
		mirror = HostDebianMirror("/etc/apt")
	}
	if mirror == "" {
		return Meta{}, errors.New("no Debian mirror: set AGENT_DEBIAN_MIRROR (the host's apt sources name none)")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}
	// debootstrap fetches with wget, whose defaults wait 15 minutes on a stalled transfer: give up
	// on a silent connection after 30 s and try again instead.
	wgetrc, err := os.CreateTemp("", "agent-wgetrc-")
	if err != nil {
		return Meta{}, fmt.Errorf("wget settings: %w", err)
	}
	defer os.Remove(wgetrc.Name())
	_, werr := wgetrc.WriteString("timeout = 30\ntries = 5\nwaitretry = 2\nretry_connrefused = on\n")
	if cerr := wgetrc.Close(); werr != nil || cerr != nil {
		return Meta{}, fmt.Errorf("wget settings: %w", errors.Join(werr, cerr))
	}
	env = append(env, "WGETRC="+wgetrc.Name())

	// A mirror (or the proxy in front of it) drops a download now and then; debootstrap gives up
	// on the first miss, before it unpacks anything. Downloads are retried in the same target,
	// where what already arrived is validated and kept.
	for attempt := 1; ; attempt++ {
		progress("debootstrap: starting")
		err = runPhased(ctx, progress, "debootstrap", env, "debootstrap", "--variant=minbase", "--include=ca-certificates", suite, rootfs, mirror)
		if err == nil {
			break
		}
		log, _ := os.ReadFile(filepath.Join(rootfs, "debootstrap", "debootstrap.log"))
		if attempt < 4 && downloadFailed(err, log) && ctx.Err() == nil {
			progress(fmt.Sprintf("debootstrap: a download failed, retrying (attempt %d of 4)", attempt+1))
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 5 * time.Second):
			}
			continue
		}
		if len(log) > 0 {
			return Meta{}, fmt.Errorf("%w\ndebootstrap.log (end):\n%s", err, lastBytes(log, 4096))
		}
		return Meta{}, err
	}

	// apt inside a chroot of the new tree, with /proc, a minimal /dev and the host's resolver.
	unmount, err := chrootMounts(rootfs)
	if err != nil {
		return Meta{}, err
	}
	defer func() {
		if uerr := unmount(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	if err := os.WriteFile(filepath.Join(rootfs, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return Meta{}, err
	}
	// The tree is not live: dpkg need not fsync every file (minutes saved on slow disks).
	unsafeIO := filepath.Join(rootfs, "etc/dpkg/dpkg.cfg.d/agent-unsafe-io")
	if err := os.WriteFile(unsafeIO, []byte("force-unsafe-io\n"), 0o644); err != nil {
		return Meta{}, err
	}
	_ = os.Remove(filepath.Join(rootfs, "etc/resolv.conf"))
	if err := copyTree("/etc/resolv.conf", filepath.Join(rootfs, "etc/resolv.conf")); err != nil {
		_ = os.WriteFile(filepath.Join(rootfs, "etc/resolv.conf"), nil, 0o644)
	}
	progress("apt: update")
	if err := runPhased(ctx, progress, "apt", env, "chroot", rootfs, "apt-get", "-o", "Acquire::Retries=5", "-o", "Acquire::http::Timeout=30", "update", "-q"); err != nil {
		return Meta{}, err
	}
	args := append([]string{rootfs, "apt-get", "-o", "Acquire::Retries=5", "-o", "Acquire::http::Timeout=30", "install", "-y", "-q", "--no-install-recommends"}, DebianPackages...)
	if err := runPhased(ctx, progress, "apt", env, "chroot", args...); err != nil {
		return Meta{}, err
	}
	progress("user account")
	if err := chroot(ctx, rootfs, "useradd", "--create-home", "--uid", "1000", "--user-group", "--shell", "/bin/bash", "--groups", "sudo", "user"); err != nil {
		return Meta{}, err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/sudoers.d/user"), []byte("user ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		return Meta{}, err
	}
	progress("cleanup")
	if err := chroot(ctx, rootfs, "apt-get", "clean"); err != nil {
		return Meta{}, err
	}
	_ = os.Remove(filepath.Join(rootfs, "usr/sbin/policy-rc.d"))
	_ = os.Remove(unsafeIO)
	for _, d := range []string{"var/lib/apt/lists", "var/cache/apt/archives", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(rootfs, d))
		for _, e := range ents {
			if e.Name() != "partial" && e.Name() != "lock" {
				_ = os.RemoveAll(filepath.Join(rootfs, d, e.Name()))
			}
		}
	}
	if err := unmount(); err != nil {
		return Meta{}, err
	}
	// debootstrap's device nodes are unusable inside a user namespace: the runtime mounts /dev.
	devs, _ := os.ReadDir(filepath.Join(rootfs, "dev"))
	for _, e := range devs {
		_ = os.RemoveAll(filepath.Join(rootfs, "dev", e.Name()))
	}
	for name, content := range map[string]string{
		"etc/resolv.conf": "# no network\n",
		"etc/hostname":    "sandbox\n",
	} {
		_ = os.Remove(filepath.Join(rootfs, name))
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			return Meta{}, err
		}
	}
	if err := Skeleton(rootfs); err != nil {
		return Meta{}, err
	}
	return Meta{DefaultUser: "user", Workdir: "/home/user"}, nil
}

// runPhased runs a command, reporting its progress lines as phases and keeping the last lines for
// the error.
func runPhased(ctx context.Context, progress func(string), tool string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	killGroupOnCancel(cmd)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	var last []string
	sc := bufio.NewScanner(io.LimitReader(out, 256<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		last = append(last, line)
		if len(last) > 30 {
			last = last[1:]
		}
		if p, ok := strings.CutPrefix(line, "I: "); ok {
			progress(tool + ": " + phaseOf(p))
		} else if w, _, _ := strings.Cut(line, " "); w == "Get:" || w == "Unpacking" || w == "Setting" || w == "Processing" {
			progress(tool + ": " + phaseOf(w))
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args[:min(len(args), 3)], " "), err, strings.Join(last, "\n"))
	}
	return nil
}

// chrootMounts mounts /proc and a minimal /dev (tmpfs with the harmless device nodes bound from the
// host) into rootfs for maintainer scripts; the returned func undoes it (idempotent).
func chrootMounts(rootfs string) (func() error, error) {
	var done []string
	undo := func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if err := unix.Unmount(done[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", done[i], err))
			}
		}
		done = nil
		return errors.Join(errs...)
	}
	mount := func(src, dst, fstype string, flags uintptr, data string) error {
		if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
			return fmt.Errorf("mounting %s in the build chroot: %w", dst, err)
		}
		done = append(done, dst)
		return nil
	}
	proc := filepath.Join(rootfs, "proc")
	dev := filepath.Join(rootfs, "dev")
	_ = os.MkdirAll(proc, 0o555)
	_ = os.MkdirAll(dev, 0o755)
	if err := mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return undo, err
	}
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID, "mode=755,size=1m"); err != nil {
		_ = undo()
		return undo, err
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join(dev, n)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			_ = undo()
			return undo, err
		}
		if err := mount("/dev/"+n, p, "", unix.MS_BIND, ""); err != nil {
			_ = undo()
			return undo, err
		}
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}} {
		_ = os.Symlink(l[0], filepath.Join(dev, l[1]))
	}
	_ = os.Mkdir(filepath.Join(dev, "pts"), 0o755)
	_ = os.Mkdir(filepath.Join(dev, "shm"), 0o1777)
	return undo, nil
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func phaseOf(line string) string {
	word, _, _ := strings.Cut(line, " ")
	switch word {
	case "Retrieving", "Validating", "Resolving", "Checking", "Found":
		return "downloading"
	case "Extracting":
		return "extracting"
	case "Installing":
		return "installing"
	case "Unpacking":
		return "unpacking"
	case "Configuring", "Setting":
		return "configuring"
	case "Get:":
		return "downloading"
	case "Processing":
		return "triggers"
	case "Base":
		return "finished"
	}
	return strings.ToLower(word)
}

func chroot(ctx context.Context, rootfs string, args ...string) error {
	cmd := exec.CommandContext(ctx, "chroot", append([]string{rootfs}, args...)...)
	killGroupOnCancel(cmd)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chroot %v: %w: %s", args, err, out)
	}
	return nil
}

// HostDebianMirror returns the first Debian archive URL in the host's apt sources (one-line or
// deb822 format), or "".
func HostDebianMirror(aptDir string) string {
	files := []string{filepath.Join(aptDir, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*"))
	files = append(files, more...)
	for _, f := range files {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			var urls []string
			if rest, ok := strings.CutPrefix(line, "URIs:"); ok {
				urls = strings.Fields(rest)
			} else if strings.HasPrefix(line, "deb ") {
				for _, w := range strings.Fields(line)[1:] {
					if strings.Contains(w, "://") {
						urls = append(urls, w)
						break
					}
				}
			}
			for _, u := range urls {
				if strings.Contains(u, "debian") && !strings.Contains(u, "security") && !strings.Contains(u, "backports") {
					return strings.TrimSuffix(u, "/")
				}
			}
		}
	}
	return ""
}

// killGroupOnCancel runs cmd in its own process group and kills the whole group when its context
// ends: debootstrap and apt run wget, dpkg and maintainer scripts that would outlive them.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// downloadFailed tells a debootstrap that failed fetching (worth retrying) from one that failed
// otherwise.
func downloadFailed(err error, log []byte) bool {
	text := err.Error() + "\n" + string(log)
	for _, m := range []string{"Couldn't download", "Failed getting release file", "Failed getting release signature file", "Couldn't retrieve"} {
		if strings.Contains(text, m) {
			return true
		}
	}
	return false
}
