package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// HostBuilder builds the "host" template: an empty skeleton whose system directories (/usr, /bin,
// /sbin, /lib, /lib64 and their multilib siblings, as present) are the host's own, bound read-only
// at sandbox start (or replicated as symlinks on merged-/usr systems), and a synthesized minimal
// /etc. Nothing else of the host is visible: no /home, /root, /var, /run, /etc secrets.
type HostBuilder struct {
	// HostRoot is the host filesystem to take system directories and /etc facts from ("/").
	HostRoot string
}

// hostSystemDirs are the directories shared read-only with the host.
var hostSystemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// UserUID is the uid and gid of the unprivileged "user" account in templates.
const UserUID = 1000

// Build implements Builder.
func (b HostBuilder) Build(ctx context.Context, rootfs string, progress func(string)) (Meta, error) {
	host := b.HostRoot
	if host == "" {
		host = "/"
	}
	progress("skeleton")
	m := Meta{DefaultUser: "user", Workdir: "/home/user"}
	for _, d := range hostSystemDirs {
		src := filepath.Join(host, d)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Meta{}, fmt.Errorf("inspecting host %s: %w", d, err)
		}
		dst := filepath.Join(rootfs, d)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(src)
			if err != nil {
				return Meta{}, err
			}
			if err := os.Symlink(t, dst); err != nil {
				return Meta{}, err
			}
		case fi.IsDir():
			if err := os.Mkdir(dst, 0o755); err != nil {
				return Meta{}, err
			}
			m.HostBinds = append(m.HostBinds, d)
		}
	}
	if len(m.HostBinds) == 0 {
		return Meta{}, fmt.Errorf("host has none of %v as directories", hostSystemDirs)
	}
	if err := Skeleton(rootfs); err != nil {
		return Meta{}, err
	}
	progress("etc")
	if err := b.synthesizeEtc(host, filepath.Join(rootfs, "etc")); err != nil {
		return Meta{}, fmt.Errorf("synthesizing /etc: %w", err)
	}
	return m, nil
}

// Skeleton creates the directories every template has: mount points, /tmp, the user's home, and the
// mount point of the sandbox daemon (/.agent/envd).
func Skeleton(rootfs string) error {
	dirs := []struct {
		path string
		mode fs.FileMode
		uid  int
	}{
		{"dev", 0o755, 0}, {"proc", 0o555, 0}, {"sys", 0o555, 0}, {"run", 0o755, 0},
		{"tmp", 0o1777, 0}, {"var", 0o755, 0}, {"var/tmp", 0o1777, 0}, {"etc", 0o755, 0},
		{"root", 0o700, 0}, {"home", 0o755, 0}, {"home/user", 0o755, UserUID}, {".agent", 0o755, 0},
		{"mnt", 0o755, 0}, {"opt", 0o755, 0}, {"srv", 0o755, 0},
	}
	for _, d := range dirs {
		p := filepath.Join(rootfs, d.path)
		if err := os.MkdirAll(p, d.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
		if err := os.Lchown(p, d.uid, d.uid); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(rootfs, ".agent", "envd"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	return f.Close()
}

// synthesizeEtc writes a minimal /etc: accounts, name resolution, the dynamic linker cache, CA
// certificates, alternatives and os-release. Everything else of the host's /etc stays out.
func (b HostBuilder) synthesizeEtc(host, etc string) error {
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/bash\n" +
			"user:x:1000:1000:user:/home/user:/bin/bash\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"group": "root:x:0:\ntty:x:5:\nsudo:x:27:user\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n",
		"hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		// No network by default: no resolver to point at.
		"resolv.conf":   "# no network\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
		"profile": "export PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n" +
			"export LANG=C.UTF-8\n" +
			"if [ -n \"$BASH_VERSION\" ] && [ -n \"$PS1\" ]; then PS1='\\u@\\h:\\w\\$ '; fi\n" +
			"if [ -d /etc/profile.d ]; then for i in /etc/profile.d/*.sh; do [ -r \"$i\" ] && . \"$i\"; done; unset i; fi\n",
		"shells":   "/bin/sh\n/bin/bash\n/usr/bin/sh\n/usr/bin/bash\n",
		"hostname": "sandbox\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(etc, "profile.d"), 0o755); err != nil {
		return err
	}
	// Copied from the host as they are (files or symlinks; a missing one is skipped).
	for _, p := range []string{"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "os-release", "alternatives",
		"localtime", "timezone", "ssl/certs/ca-certificates.crt", "ca-certificates.conf", "mime.types",
		"protocols", "services", "debian_version", "lsb-release", "inputrc", "bash.bashrc"} {
		if err := copyTree(filepath.Join(host, "etc", p), filepath.Join(etc, p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("copying /etc/%s: %w", p, err)
		}
	}
	return nil
}

// copyTree copies a file, symlink or directory tree (regular files, directories and symlinks only),
// keeping modes and leaving ownership to root.
func copyTree(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(t, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
			return err
		}
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		if strings.Contains(filepath.Base(src), "shadow") {
			return nil
		}
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return nil
}
