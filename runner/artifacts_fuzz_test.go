package runner

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzWriteUnder: whatever path a sandbox names, writeUnder stores the file inside the task's
// files directory or refuses; it never creates anything outside it, even through symlinks planted
// in it (an absolute one to a sibling directory, a relative one climbing out, one to the root
// itself). Plain names always succeed and read back. The helpers that show and match such names
// (safeName, matchAny) never panic and safeName never lets a separator or line break through.
func FuzzWriteUnder(f *testing.F) {
	long := strings.Repeat("a", 300)
	for _, s := range []string{
		"a", "a.txt", "dir/sub/file.go", "..", "../x", "../outside/x", "a/../../x", "a/..", "./a", ".",
		"", "/", "/etc/passwd", "/tmp/x", "//x", "a//b", "a/", "link", "link/x", "link/../x", "up/x",
		"up/../x", "self/x", "self/../x", "self/self/link/x", "a\x00b", "\x00", "a\nb", "a\\..\\..\\x",
		long, "d/" + long, strings.Repeat("d/", 300) + "x", strings.Repeat(strings.Repeat("n", 250)+"/", 17) + "x",
		strings.Repeat("../", 50) + "x",
		"é/ü.txt", "\xff\xfe", "outside/x",
	} {
		f.Add(s, []byte("x"), false)
	}
	f.Add("bin/run.sh", []byte("#!/bin/sh\n"), true)
	f.Fuzz(func(t *testing.T, rel string, data []byte, exec bool) {
		base := t.TempDir()
		dir := filepath.Join(base, "files")
		outside := filepath.Join(base, "outside")
		for _, d := range []string{dir, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, target := range map[string]string{"link": outside, "up": "../outside", "self": "."} {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		mode := fs.FileMode(0o644)
		if exec {
			mode = 0o755
		}

		werr := writeUnder(root, rel, data, mode)

		// Nothing outside the files directory: base holds exactly files/ and an empty outside/.
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 2 || ents[0].Name() != "files" || ents[1].Name() != "outside" {
			t.Fatalf("writeUnder(%q) changed the parent directory: %v", rel, ents)
		}
		if out, err := os.ReadDir(outside); err != nil || len(out) != 0 {
			t.Fatalf("writeUnder(%q) wrote outside: %v %v", rel, out, err)
		}
		// The planted symlinks are still symlinks (not replaced by a file or directory).
		for _, name := range []string{"link", "up", "self"} {
			if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Fatalf("writeUnder(%q) replaced the planted symlink %s: %v %v", rel, name, fi, err)
			}
		}

		if werr == nil {
			// What was written reads back through the root at that name.
			got, err := root.ReadFile(filepath.FromSlash(rel))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("writeUnder(%q) succeeded but reads back %d bytes (want %d): %v", rel, len(got), len(data), err)
			}
		} else if plain(rel) {
			t.Fatalf("writeUnder(%q) refused a plain path: %v", rel, werr)
		}

		// A shown name has no separator, NUL or line break and is bounded.
		sn := safeName(rel)
		if strings.ContainsAny(sn, "/\x00\n\r") || len(sn) > 200 {
			t.Fatalf("safeName(%q) = %q", rel, sn)
		}
		if validName(rel) && strings.ContainsAny(rel, "/\x00\n\r") {
			t.Fatalf("validName(%q) accepted a separator or line break", rel)
		}
		// The path used as a glob, and matched against itself and a plain name: never panics.
		_ = matchAny([]string{rel, "**/" + rel}, rel)
		_ = matchAny([]string{rel}, "a/b.txt")
	})
}

// plain reports whether rel is a short relative path of valid names that avoids the planted
// symlinks: writeUnder must store such a path.
func plain(rel string) bool {
	if len(rel) > 1024 {
		return false
	}
	parts := strings.Split(rel, "/")
	if len(parts) > 40 {
		return false
	}
	for _, p := range parts {
		if !validName(p) || p == "link" || p == "up" || p == "self" {
			return false
		}
	}
	return true
}
