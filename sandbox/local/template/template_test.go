package template

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestHostTemplate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building templates needs root (file ownership)")
	}
	st, err := NewStore(t.TempDir(), map[string]Builder{Host: HostBuilder{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.Get(Host); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Get before build: %v", err)
	}
	tp, err := st.Ensure(ctx, Host, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tp.DefaultUser != "user" || tp.Workdir != "/home/user" || !strings.HasPrefix(tp.Digest, "sha256:") || len(tp.HostBinds) == 0 {
		t.Errorf("meta %+v", tp.Meta)
	}
	root := tp.Rootfs()
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "user:x:1000:1000:user:/home/user:/bin/bash") {
		t.Errorf("passwd: %v %s", err, passwd)
	}
	// Nothing of the host beyond the synthesized /etc and the bound system dirs.
	for _, absent := range []string{"etc/shadow", "etc/gshadow", "etc/sudoers", "etc/ssh", "root/.bashrc", "var/lib", "etc/pip.conf"} {
		if _, err := os.Lstat(filepath.Join(root, absent)); err == nil {
			t.Errorf("%s present in the host template", absent)
		}
	}
	for _, d := range tp.HostBinds {
		if fi, err := os.Lstat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("mount point %s: %v", d, err)
		}
		if entries, _ := os.ReadDir(filepath.Join(root, d)); len(entries) != 0 {
			t.Errorf("mount point %s is not empty", d)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "home/user"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != UserUID || st.Gid != UserUID {
		t.Errorf("/home/user owned by %d:%d", st.Uid, st.Gid)
	}
	if _, err := os.Stat(filepath.Join(root, ".agent/envd")); err != nil {
		t.Errorf("envd mount point: %v", err)
	}
	// Same inputs, same digest.
	tp2, err := st.Build(ctx, Host, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tp2.Digest != tp.Digest {
		t.Errorf("rebuild changed the digest: %s vs %s", tp2.Digest, tp.Digest)
	}
	// The replaced tree is trashed, not deleted, until Sweep finds it unused.
	if got := st.Sweep(func(d string) bool { return d == tp.Digest }); len(got) != 0 {
		t.Errorf("sweep deleted an in-use tree: %v", got)
	}
	if got := st.Sweep(func(string) bool { return false }); len(got) != 1 {
		t.Errorf("sweep deleted %v, want the one trashed tree", got)
	}
	if err := st.Remove(ctx, Host); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(Host); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("after remove: %v", err)
	}
}

// countingBuilder counts builds and takes a while, so concurrent Ensure calls overlap.
type countingBuilder struct{ n *atomic.Int32 }

func (b countingBuilder) Build(ctx context.Context, rootfs string, progress func(string)) (Meta, error) {
	b.n.Add(1)
	progress("working")
	time.Sleep(300 * time.Millisecond)
	return Meta{DefaultUser: "root", Workdir: "/"}, os.WriteFile(filepath.Join(rootfs, "x"), []byte("x"), 0o644)
}

func TestConcurrentEnsureBuildsOnce(t *testing.T) {
	var n atomic.Int32
	dir := t.TempDir()
	var wg sync.WaitGroup
	var phases sync.Map
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate stores on one directory behave like separate processes (flock per open file).
			st, err := NewStore(dir, map[string]Builder{"t": countingBuilder{&n}})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := st.Ensure(context.Background(), "t", func(p Progress) { phases.Store(p.Phase, true) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 {
		t.Errorf("built %d times, want once", n.Load())
	}
	if _, ok := phases.Load("done"); !ok {
		t.Error("no done progress")
	}
}

func TestUnknownTemplate(t *testing.T) {
	st, _ := NewStore(t.TempDir(), map[string]Builder{})
	for _, name := range []string{"nope", "../etc", ""} {
		if _, err := st.Ensure(context.Background(), name, nil); !errors.Is(err, ErrUnknown) {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func TestHostDebianMirror(t *testing.T) {
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(
		"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"), 0o644)
	if got := HostDebianMirror(dir); got != "http://mirror.example/debian" {
		t.Errorf("deb822: %q", got)
	}
	dir2 := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir2, "sources.list"), []byte("# c\ndeb [arch=amd64] http://m.example/debian bookworm main\n"), 0o644)
	if got := HostDebianMirror(dir2); got != "http://m.example/debian" {
		t.Errorf("one-line: %q", got)
	}
	if got := HostDebianMirror(t.TempDir()); got != "" {
		t.Errorf("empty: %q", got)
	}
}

// mountingBuilder fails after leaving a mount in its tree, as an interrupted debootstrap does.
type mountingBuilder struct{}

func (mountingBuilder) Build(ctx context.Context, rootfs string, progress func(string)) (Meta, error) {
	p := filepath.Join(rootfs, "proc")
	if err := os.Mkdir(p, 0o555); err != nil {
		return Meta{}, err
	}
	if err := syscall.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
		return Meta{}, err
	}
	return Meta{}, errors.New("build failed on purpose")
}

func TestFailedBuildLeavesNoMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	st, _ := NewStore(dir, map[string]Builder{"m": mountingBuilder{}})
	if _, err := st.Build(context.Background(), "m", false, nil); err == nil {
		t.Fatal("build succeeded")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("a mount under the template dir survived the failed build")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".build-") {
			t.Errorf("build dir %s left behind", e.Name())
		}
	}
}

func TestDownloadFailed(t *testing.T) {
	for _, c := range []struct {
		err  string
		log  string
		want bool
	}{
		{"debootstrap --variant=minbase: exit status 1\nE: Couldn't download packages: adduser", "", true},
		{"debootstrap: exit status 1", "E: Failed getting release file http://mirror/dists/bookworm/Release", true},
		{"debootstrap: exit status 1", "W: Failure trying to run: chroot dpkg --force-depends --install", false},
		{"debootstrap: signal: killed", "", false},
	} {
		if got := downloadFailed(errors.New(c.err), []byte(c.log)); got != c.want {
			t.Errorf("downloadFailed(%q, %q) = %v, want %v", c.err, c.log, got, c.want)
		}
	}
}
