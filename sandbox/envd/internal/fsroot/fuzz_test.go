package fsroot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzResolve plants two symlinks with fuzzed targets in a fresh world next to an "outside"
// directory, then resolves, opens, creates, renames and removes a fuzzed path. Whatever the input:
// every descriptor the root hands out names a host path inside the world, Realpath agrees with the
// kernel, and nothing outside the world is created, changed or removed.
func FuzzResolve(f *testing.F) {
	seeds := [][3]string{
		{"..", "/", "l1/../../outside/secret"},
		{"/proc/self/root", "../../..", "a/l2/etc"},
		{"../outside", "l2", "l1/secret"},
		{"/a/l2", "/l1", "l1"},
		{"a/b", "../../../../../..", "a/l2/../../outside"},
		{".", "./././..", "a/l2/x/y/z"},
		{"/", "", "~/../../outside"},
		{"a/file/..", "b/", "l1/"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, target1, target2, p string) {
		if len(target1) > 512 || len(target2) > 512 || len(p) > 1024 {
			t.Skip("inputs past the size bound say nothing more")
		}
		base := t.TempDir()
		w := filepath.Join(base, "world")
		out := filepath.Join(base, "outside")
		for _, d := range []string{filepath.Join(w, "a/b"), filepath.Join(out, "sub")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for file, data := range map[string]string{
			filepath.Join(w, "a/file"):       "in",
			filepath.Join(out, "secret"):     "secret",
			filepath.Join(out, "sub/secret"): "secret2",
		} {
			if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// Invalid targets (empty, NUL) simply fail to be planted.
		_ = os.Symlink(target1, filepath.Join(w, "l1"))
		_ = os.Symlink(target2, filepath.Join(w, "a/l2"))
		before := snapshot(t, out)

		r, err := Open(w)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		world, err := Abs(p, "/a")
		if err != nil {
			return
		}

		checkFile := func(op string, f *os.File) {
			t.Helper()
			rp := realPath(t, f)
			f.Close()
			if !within(w, rp) {
				t.Fatalf("%s(%q) opened %s, outside the world %s", op, world, rp, w)
			}
		}

		if pf, err := r.OpenPath(world); err == nil {
			kernel := strings.TrimPrefix(realPath(t, pf), w)
			checkFile("OpenPath", pf)
			if kernel == "" {
				kernel = "/"
			}
			rp, rerr := r.Realpath(world)
			switch {
			case rerr == nil && rp != kernel:
				t.Fatalf("Realpath(%q) = %q, kernel resolved %q", world, rp, kernel)
			case rerr != nil && !errors.Is(rerr, unix.ELOOP) && !errors.Is(rerr, unix.ENAMETOOLONG):
				t.Fatalf("Realpath(%q) failed (%v) where the kernel resolved %q", world, rerr, kernel)
			}
		}
		if rf, err := r.OpenFile(world, unix.O_RDONLY, 0); err == nil {
			checkFile("OpenFile", rf)
		}
		_, _ = r.Lstat(world)
		_, _ = r.Readlink(world)
		if _, err := r.MkdirAll(world, 0o755, -1, -1); err == nil {
			if cf, err := r.OpenFile(world+"/created", unix.O_WRONLY|unix.O_CREAT, 0o644); err == nil {
				checkFile("OpenFile(O_CREAT)", cf)
			}
		}
		if cf, err := r.OpenFile(world, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644); err == nil {
			checkFile("OpenFile(O_CREAT|O_TRUNC)", cf)
		}
		_ = r.Walk(world, 3, 1000, func(string, *unix.Stat_t) error { return nil })
		_ = r.Rename(world, "/a/renamed")
		_ = r.Rename("/a/file", world)
		_ = r.RemoveAll(world)
		_ = r.RemoveAll("/l1")

		if after := snapshot(t, out); after != before {
			t.Fatalf("outside changed:\nbefore %s\nafter  %s", before, after)
		}
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 2 {
			t.Fatalf("entries appeared next to the world: %v", ents)
		}
	})
}

// snapshot describes a host tree (names, types, contents) without following symlinks.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		line := strings.TrimPrefix(p, dir) + " " + d.Type().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}
