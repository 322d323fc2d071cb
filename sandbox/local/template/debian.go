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
	"time"
)

// DebianPackages are installed into the "debian" template beyond debootstrap's minbase.
var DebianPackages = []string{
	"python3", "python3-pip", "python3-venv", "nodejs", "npm", "git", "curl", "ca-certificates",
	"build-essential", "procps", "sudo", "less", "xz-utils", "unzip",
}

// DebianBuilder builds the "debian" template with debootstrap: Debian bookworm (minbase) plus
// DebianPackages, a "user" account (uid 1000) with passwordless sudo, and no package caches.
type DebianBuilder struct {
	// Suite is the Debian release (default bookworm).
	Suite string
	// Mirror is the Debian mirror URL; default: the first Debian mirror in the host's apt sources,
	// or $AGENT_DEBIAN_MIRROR.
	Mirror string
}

// Build implements Builder.
func (b DebianBuilder) Build(ctx context.Context, rootfs string, progress func(string)) (Meta, error) {
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
	progress("debootstrap: starting")
	args := []string{"--variant=minbase", "--include=" + strings.Join(DebianPackages, ","), suite, rootfs, mirror}
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Meta{}, err
	}
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return Meta{}, fmt.Errorf("starting debootstrap: %w", err)
	}
	// debootstrap prints "I: Retrieving …", "I: Extracting …", "I: Configuring …": each is a phase.
	var lastLines []string
	sc := bufio.NewScanner(io.LimitReader(out, 64<<20))
	for sc.Scan() {
		line := sc.Text()
		lastLines = append(lastLines, line)
		if len(lastLines) > 20 {
			lastLines = lastLines[1:]
		}
		if p, ok := strings.CutPrefix(line, "I: "); ok {
			progress("debootstrap: " + phaseOf(p))
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return Meta{}, fmt.Errorf("debootstrap: %w\n%s", err, strings.Join(lastLines, "\n"))
	}
	progress("user account")
	if err := chroot(ctx, rootfs, "useradd", "--create-home", "--uid", "1000", "--user-group", "--shell", "/bin/bash", "--groups", "sudo", "user"); err != nil {
		return Meta{}, err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/sudoers.d/user"), []byte("user ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		return Meta{}, err
	}
	progress("cleanup")
	for _, d := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		ents, _ := os.ReadDir(filepath.Join(rootfs, d))
		for _, e := range ents {
			if e.Name() != "partial" && e.Name() != "lock" {
				_ = os.RemoveAll(filepath.Join(rootfs, d, e.Name()))
			}
		}
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
	case "Configuring":
		return "configuring"
	case "Base":
		return "finished"
	}
	return strings.ToLower(word)
}

func chroot(ctx context.Context, rootfs string, args ...string) error {
	cmd := exec.CommandContext(ctx, "chroot", append([]string{rootfs}, args...)...)
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
