package fsroot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// world builds a world directory next to a sibling "outside" directory holding a secret, and
// returns the opened root, the world's host path and the outside path.
func world(t testing.TB) (*Root, string, string) {
	t.Helper()
	base := t.TempDir()
	w := filepath.Join(base, "world")
	out := filepath.Join(base, "outside")
	for _, d := range []string{w, out, filepath.Join(w, "etc"), filepath.Join(w, "home/user/dir/sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(out, "secret"), "host secret")
	mustWrite(t, filepath.Join(w, "etc/passwd"), "world passwd")
	mustWrite(t, filepath.Join(w, "home/user/dir/file"), "file")
	r, err := Open(w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, w, out
}

func mustWrite(t testing.TB, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// realPath is the host path the kernel gives an open descriptor.
func realPath(t testing.TB, f *os.File) string {
	t.Helper()
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

func TestAbs(t *testing.T) {
	cases := []struct {
		in, want string
		err      bool
	}{
		{"", "/home/user", false},
		{"~", "/home/user", false},
		{"~/", "/home/user", false},
		{"~/a/../b", "/home/user/b", false},
		{"a/b", "/home/user/a/b", false},
		{"../../../../etc", "/etc", false},
		{"/abs/./x/", "/abs/x", false},
		{"//double//slash", "/double/slash", false},
		{"/..", "/", false},
		{"~root/x", "", true},
		{"a\x00b", "", true},
		{"bad\xffutf8", "", true},
		{"ünïcødé/ok", "/home/user/ünïcødé/ok", false},
	}
	for _, c := range cases {
		got, err := Abs(c.in, "/home/user")
		if (err != nil) != c.err {
			t.Errorf("Abs(%q) error = %v, want error %v", c.in, err, c.err)
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Abs(%q) error %v is not fs.ErrInvalid", c.in, err)
		}
		if got != c.want {
			t.Errorf("Abs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestOpenFileStaysInRoot(t *testing.T) {
	r, w, out := world(t)
	// Escapes by "..", by absolute symlinks, by relative symlinks climbing out, and by a symlink
	// naming the outside directory by its host path.
	mustSymlink(t, "/etc/passwd", filepath.Join(w, "abs"))
	mustSymlink(t, "../../../../../../outside/secret", filepath.Join(w, "home/user/climb"))
	mustSymlink(t, out, filepath.Join(w, "hostpath"))
	mustSymlink(t, "/", filepath.Join(w, "home/user/slash"))

	cases := []struct {
		path    string
		content string // "" = must fail
	}{
		{"/etc/passwd", "world passwd"},
		{"/../../etc/passwd", "world passwd"},
		{"../../../etc/passwd", "world passwd"},
		{"/abs", "world passwd"},
		{"/home/user/slash/etc/passwd", "world passwd"},
		{"/home/user/slash/../../../etc/passwd", "world passwd"},
		{"/home/user/climb", ""},               // resolves to /outside/secret in the world: absent
		{"/hostpath/secret", ""},               // host path of the outside dir means nothing in the world
		{"/../outside/secret", ""},             // ".." stops at the root
		{"/home/user/dir/file/x", ""},          // ENOTDIR
		{"/home/user/dir/../dir/file", "file"}, // plain ".." inside the world still works
	}
	for _, c := range cases {
		f, err := r.OpenFile(c.path, unix.O_RDONLY, 0o644) // perm without O_CREAT must be accepted
		if c.content == "" {
			if err == nil {
				got, _ := io.ReadAll(f)
				f.Close()
				t.Errorf("OpenFile(%q) succeeded (read %q), want failure", c.path, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("OpenFile(%q): %v", c.path, err)
			continue
		}
		got, _ := io.ReadAll(f)
		if rp := realPath(t, f); !within(w, rp) {
			t.Errorf("OpenFile(%q) opened host %s outside the root", c.path, rp)
		}
		if f.Name() != filepathClean(c.path) {
			t.Errorf("OpenFile(%q).Name() = %q, want the world path (host layout must not leak)", c.path, f.Name())
		}
		f.Close()
		if string(got) != c.content {
			t.Errorf("OpenFile(%q) read %q, want %q", c.path, got, c.content)
		}
	}
}

func filepathClean(p string) string { return filepath.Clean("/" + p) }

func TestCreateThroughSymlinkStaysInRoot(t *testing.T) {
	r, w, out := world(t)
	mustSymlink(t, "/../../outside/new", filepath.Join(w, "dangling"))
	if _, err := r.OpenFile("/dangling", unix.O_WRONLY|unix.O_CREAT, 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("create through dangling symlink into a missing world dir = %v, want not exist", err)
	}
	if _, err := os.Stat(filepath.Join(out, "new")); err == nil {
		t.Fatal("file created outside the root")
	}
	if _, err := os.Stat(filepath.Join(w, "outside/new")); err == nil {
		t.Fatal("the world has no /outside directory; creation should have failed")
	}
	if err := os.Mkdir(filepath.Join(w, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := r.OpenFile("/dangling", unix.O_WRONLY|unix.O_CREAT, 0o600)
	if err != nil {
		t.Fatalf("create through dangling symlink: %v", err)
	}
	f.Close()
	if _, err := os.Stat(filepath.Join(w, "outside/new")); err != nil {
		t.Fatalf("file not created at the in-root target: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "new")); err == nil {
		t.Fatal("file created outside the root")
	}
}

func TestSymlinkLoops(t *testing.T) {
	r, w, _ := world(t)
	mustSymlink(t, "loop", filepath.Join(w, "loop"))
	mustSymlink(t, "b", filepath.Join(w, "a"))
	mustSymlink(t, "/a", filepath.Join(w, "b"))
	mustSymlink(t, "loop/..", filepath.Join(w, "viadotdot"))
	for _, p := range []string{"/loop", "/a", "/b/x", "/viadotdot"} {
		if _, err := r.Stat(p); !errors.Is(err, unix.ELOOP) {
			t.Errorf("Stat(%q) = %v, want ELOOP", p, err)
		}
		if _, err := r.Realpath(p); !errors.Is(err, unix.ELOOP) {
			t.Errorf("Realpath(%q) = %v, want ELOOP", p, err)
		}
	}
	// Lstat of the loop itself works: it is a symlink.
	st, err := r.Lstat("/loop")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("Lstat(/loop) = %v, %v", st, err)
	}
}

// TestProcMagicLinksRefused mounts a procfs inside the world: its magic links (/proc/self/root,
// /proc/self/fd/N, /proc/self/cwd) point at objects outside any root and must never be followed.
func TestProcMagicLinksRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting procfs needs root")
	}
	r, w, out := world(t)
	proc := filepath.Join(w, "proc")
	if err := os.Mkdir(proc, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatalf("mount proc: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(proc, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount proc: %v", err)
		}
	})
	hostFile, err := os.Open(filepath.Join(out, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer hostFile.Close()
	mustSymlink(t, "/proc/self/root", filepath.Join(w, "rootlink"))

	for _, p := range []string{
		"/proc/self/root/etc/passwd",
		"/proc/self/root" + out + "/secret",
		"/proc/self/cwd",
		fmt.Sprintf("/proc/self/fd/%d", hostFile.Fd()),
		fmt.Sprintf("/proc/thread-self/fd/%d", hostFile.Fd()),
		"/rootlink" + out + "/secret",
		"/proc/1/root/etc",
	} {
		f, err := r.OpenFile(p, unix.O_RDONLY, 0)
		if err == nil {
			rp := realPath(t, f)
			f.Close()
			t.Errorf("OpenFile(%q) followed a magic link to %s", p, rp)
			continue
		}
		if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.EXDEV) && !errors.Is(err, unix.EACCES) {
			t.Errorf("OpenFile(%q) = %v, want ELOOP (or EACCES for another process)", p, err)
		}
		if _, err := r.Stat(p); err == nil {
			t.Errorf("Stat(%q) followed a magic link", p)
		}
	}
	// Ordinary proc files are still readable (they are not magic links).
	f, err := r.OpenFile("/proc/self/status", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open /proc/self/status: %v", err)
	}
	f.Close()
}

func TestOpenNeverBlocksOnFIFO(t *testing.T) {
	r, w, _ := world(t)
	if err := unix.Mkfifo(filepath.Join(w, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		f, err := r.OpenFile("/fifo", unix.O_RDONLY, 0)
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	go func() {
		_, err := r.OpenFile("/fifo", unix.O_WRONLY|unix.O_TRUNC, 0)
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, unix.ENXIO) {
				t.Errorf("open fifo: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("opening a FIFO blocked")
		}
	}
}

func TestRealpathMatchesKernel(t *testing.T) {
	r, w, out := world(t)
	mustSymlink(t, "dir/sub", filepath.Join(w, "home/user/rel"))
	mustSymlink(t, "/home/user/rel/../file", filepath.Join(w, "home/user/viaabs"))
	mustSymlink(t, "../../../../..", filepath.Join(w, "home/user/up"))
	mustSymlink(t, out, filepath.Join(w, "home/user/host"))
	mustSymlink(t, "/home/user/dir", filepath.Join(w, "home/user/d"))
	cases := map[string]string{
		"/home/user/rel":            "/home/user/dir/sub",
		"/home/user/rel/..":         "/home/user", // lexical, like every world path
		"/home/user/viaabs":         "/home/user/dir/file",
		"/home/user/up":             "/",
		"/home/user/up/etc/passwd":  "/etc/passwd",
		"/home/user/d/file":         "/home/user/dir/file",
		"/home/user/d/../d/sub/../": "/home/user/dir",
		"/":                         "/",
	}
	for in, want := range cases {
		got, err := r.Realpath(in)
		if err != nil || got != want {
			t.Errorf("Realpath(%q) = %q, %v; want %q", in, got, err, want)
			continue
		}
		f, err := r.OpenPath(in)
		if err != nil {
			t.Errorf("OpenPath(%q): %v", in, err)
			continue
		}
		if k := strings.TrimPrefix(realPath(t, f), w); k != want && !(k == "" && want == "/") {
			t.Errorf("kernel resolves %q to %q, Realpath to %q", in, k, want)
		}
		f.Close()
	}
	if _, err := r.Realpath("/home/user/host/secret"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Realpath through a host-path symlink = %v, want not exist", err)
	}
	if _, err := r.Realpath("/home/user/dir/file/x"); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("Realpath below a file = %v, want ENOTDIR", err)
	}
}

func TestMkdirAllOwnershipAndConfinement(t *testing.T) {
	r, w, out := world(t)
	mustSymlink(t, "../../../outside", filepath.Join(w, "home/user/esc"))
	// A dangling symlink in the way fails, as mkdir -p does.
	if _, err := r.MkdirAll("/home/user/esc/a/b", 0o755, 1000, 1000); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("MkdirAll through a dangling symlink = %v, want exist", err)
	}
	// "../../../outside" from /home/user resolves to /outside inside the world.
	if err := os.Mkdir(filepath.Join(w, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	created, err := r.MkdirAll("/home/user/esc/a/b", 0o755, 1000, 1000)
	if err != nil || !created {
		t.Fatalf("MkdirAll = %v, %v", created, err)
	}
	if _, err := os.Stat(filepath.Join(out, "a")); err == nil {
		t.Fatal("MkdirAll created a directory outside the root")
	}
	for _, p := range []string{"outside/a", "outside/a/b"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(w, p), &st); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if os.Geteuid() == 0 && (st.Uid != 1000 || st.Gid != 1000) {
			t.Errorf("%s owned by %d:%d, want 1000:1000", p, st.Uid, st.Gid)
		}
	}
	// Existing parents keep their owner.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(w, "home/user"), &st); err != nil || st.Uid != uint32(os.Geteuid()) {
		t.Errorf("existing parent ownership changed: %+v %v", st, err)
	}
	created, err = r.MkdirAll("/home/user/esc/a/b", 0o755, 1000, 1000)
	if err != nil || created {
		t.Errorf("second MkdirAll = %v, %v; want false, nil", created, err)
	}
	if _, err := r.MkdirAll("/home/user/dir/file/x", 0o755, -1, -1); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("MkdirAll below a file = %v, want ENOTDIR", err)
	}
	if _, err := r.MkdirAll("/home/user/dir/file", 0o755, -1, -1); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("MkdirAll on a file = %v, want ENOTDIR", err)
	}
	// A dangling symlink in the way whose target cannot be created.
	mustSymlink(t, "/nonexistent/deeper", filepath.Join(w, "dl"))
	if _, err := r.MkdirAll("/dl", 0o755, -1, -1); err == nil {
		t.Error("MkdirAll over a dangling symlink with a missing target parent succeeded")
	}
}

func TestRemoveAllDoesNotFollowSymlinks(t *testing.T) {
	r, w, out := world(t)
	tree := filepath.Join(w, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "x/y"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(tree, "x/y/f"), "f")
	mustSymlink(t, "/home/user/dir", filepath.Join(tree, "x/indir"))
	mustSymlink(t, out, filepath.Join(tree, "hostdir"))
	mustSymlink(t, "../../../../outside", filepath.Join(tree, "climb"))
	if err := r.RemoveAll("/tree"); err != nil {
		t.Fatalf("RemoveAll: %v", err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
	for _, p := range []string{filepath.Join(w, "home/user/dir/file"), filepath.Join(out, "secret")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("symlink target %s removed: %v", p, err)
		}
	}
	// RemoveAll through a symlinked parent removes inside the root only.
	mustSymlink(t, out, filepath.Join(w, "hostparent"))
	if err := r.RemoveAll("/hostparent/secret"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RemoveAll via host-path symlink = %v, want not exist", err)
	}
	if _, err := os.Stat(filepath.Join(out, "secret")); err != nil {
		t.Fatalf("outside secret removed: %v", err)
	}
	if err := r.RemoveAll("/"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("RemoveAll(/) = %v, want invalid", err)
	}
	if err := r.RemoveAll("/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RemoveAll(missing) = %v, want not exist", err)
	}
}

func TestRemoveAllDeepTree(t *testing.T) {
	r, w, _ := world(t)
	// Deeper than removeHeldDepth, built relative to descriptors (the host path would exceed
	// PATH_MAX).
	const depth = 3 * removeHeldDepth
	fd, err := unix.Open(w, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 40)
	for i := range depth {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			ffd, err := unix.Openat(fd, fmt.Sprintf("f%d", i), unix.O_CREAT|unix.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(ffd)
			if err := unix.Mkdirat(fd, "sibling", 0o755); err != nil {
				t.Fatal(err)
			}
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = nfd
	}
	unix.Close(fd)
	before := openFDs(t)
	if err := r.RemoveAll("/" + name); err != nil {
		t.Fatalf("RemoveAll deep tree: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(w, name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("deep tree still there: %v", err)
	}
	if after := openFDs(t); after > before {
		t.Errorf("descriptors leaked: %d before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestRemove(t *testing.T) {
	r, w, _ := world(t)
	if err := r.Remove("/home/user/dir/file"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove("/home/user/dir/sub"); err != nil {
		t.Fatalf("remove empty dir: %v", err)
	}
	if err := r.Remove("/home/user"); !errors.Is(err, unix.ENOTEMPTY) {
		t.Errorf("remove non-empty dir = %v, want ENOTEMPTY", err)
	}
	mustSymlink(t, "/etc", filepath.Join(w, "link"))
	if err := r.Remove("/link"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w, "etc/passwd")); err != nil {
		t.Fatal("symlink target removed")
	}
}

func TestRenameConfined(t *testing.T) {
	r, w, out := world(t)
	if err := r.Rename("/home/user/dir/file", "/../../../outside/stolen"); err == nil {
		t.Fatal("rename into a missing in-root directory succeeded")
	}
	if err := r.Rename("/home/user/dir/file", "/../../moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w, "moved")); err != nil {
		t.Fatalf("rename target: %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Fatalf("outside directory changed: %v", ents)
	}
	// Renaming a symlink moves the link.
	mustSymlink(t, "/etc", filepath.Join(w, "l"))
	if err := r.Rename("/l", "/l2"); err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(filepath.Join(w, "l2")); err != nil || tgt != "/etc" {
		t.Fatalf("renamed link = %q, %v", tgt, err)
	}
	if err := r.Rename("/", "/x"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("rename of / = %v", err)
	}
}

func TestWalk(t *testing.T) {
	r, w, _ := world(t)
	base := filepath.Join(w, "walk")
	for _, d := range []string{"b/bb", "a/aa/aaa", "c"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(base, "a/f"), "x")
	mustSymlink(t, "/home/user/dir", filepath.Join(base, "a/link"))
	mustSymlink(t, "../walk", filepath.Join(w, "walklink"))

	collect := func(start string, depth, max int) ([]string, error) {
		var got []string
		err := r.Walk(start, depth, max, func(rel string, st *unix.Stat_t) error {
			got = append(got, rel)
			return nil
		})
		return got, err
	}
	got, err := collect("/walk", 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "a/aa", "a/f", "a/link", "b", "b/bb", "c"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Walk depth 2 = %v, want %v", got, want)
	}
	got, _ = collect("/walklink", 10, 100) // the start may be a symlink
	want = []string{"a", "a/aa", "a/aa/aaa", "a/f", "a/link", "b", "b/bb", "c"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Walk via symlink = %v, want %v (symlinked dirs must not be entered)", got, want)
	}
	if _, err := collect("/walk", 10, 3); !errors.Is(err, ErrTooMany) {
		t.Errorf("Walk over budget = %v, want ErrTooMany", err)
	}
	if _, err := collect("/walk/a/f", 1, 10); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("Walk of a file = %v, want ENOTDIR", err)
	}
}

func TestClose(t *testing.T) {
	r, _, _ := world(t)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.Stat("/etc"); !errors.Is(err, ErrClosed) {
		t.Errorf("Stat after Close = %v, want ErrClosed", err)
	}
	if _, err := r.Lstat("/"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lstat(/) after Close = %v, want ErrClosed", err)
	}
}
