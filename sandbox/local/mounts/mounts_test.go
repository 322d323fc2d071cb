package mounts

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\011c`); got != "/a b\tc" {
		t.Errorf("%q", got)
	}
	if got := unescape(`/plain`); got != "/plain" {
		t.Errorf("%q", got)
	}
}

func root(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
}

// TestIDMappedOverlayOnDisk builds the layering a sandbox uses, on its own, and checks ownership
// as the sandbox would see it and that RemoveTree refuses mounted trees.
func TestIDMappedOverlayOnDisk(t *testing.T) {
	root(t)
	dir := t.TempDir()
	tpl := filepath.Join(dir, "tpl")
	_ = os.MkdirAll(filepath.Join(tpl, "etc"), 0o755)
	_ = os.WriteFile(filepath.Join(tpl, "etc", "f"), []byte("x"), 0o644)
	d := Disk{Image: filepath.Join(dir, "disk.img"), Size: 64 << 20}
	if err := d.Format(context.Background()); err != nil {
		t.Fatal(err)
	}
	sb := filepath.Join(dir, "sb")
	disk, lower, rootfs := filepath.Join(sb, "disk"), filepath.Join(sb, "lower"), filepath.Join(sb, "rootfs")
	for _, p := range []string{disk, lower, rootfs} {
		_ = os.MkdirAll(p, 0o700)
	}
	t.Cleanup(func() { _ = UnmountAll(context.Background(), sb) })
	if err := d.Mount(disk); err != nil {
		t.Fatal(err)
	}
	upper, work := filepath.Join(disk, "u"), filepath.Join(disk, "w")
	_ = os.Mkdir(upper, 0o755)
	_ = os.Mkdir(work, 0o700)
	const base = 0x10000000
	exe, _ := os.Executable()
	ns, err := NewUserNS(exe, IDMap{HostBase: base, Size: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := BindIDMapped(tpl, lower, ns, Attr{ReadOnly: true, NoDev: true}); err != nil {
		t.Fatal(err)
	}
	if err := Overlay(lower, upper, work, rootfs); err != nil {
		t.Fatal(err)
	}
	if err := Detach(lower); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(rootfs, "etc", "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != base {
		t.Errorf("template file owned by %d through the overlay, want %d", st.Uid, base)
	}
	// Copy-up keeps the mapped owner.
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "f"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(upper, "etc", "f"), &st); err != nil || st.Uid != base {
		t.Errorf("copied-up file: %v uid %d", err, st.Uid)
	}
	if b, _ := os.ReadFile(filepath.Join(tpl, "etc", "f")); string(b) != "x" {
		t.Errorf("template changed through the overlay: %q", b)
	}
	if err := RemoveTree(sb); err == nil {
		t.Fatal("RemoveTree removed a mounted tree")
	}
	if err := UnmountAll(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	if pts, _ := Under(sb); len(pts) != 0 {
		t.Errorf("mounts remain: %v", pts)
	}
	if err := RemoveTree(sb); err != nil {
		t.Fatal(err)
	}
}

func TestTopmost(t *testing.T) {
	got := topmost([]string{"/a/b/c", "/a/b", "/a/bc", "/x"})
	want := map[string]bool{"/a/b": true, "/a/bc": true, "/x": true}
	if len(got) != 3 {
		t.Fatalf("topmost = %v", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("topmost kept %s", g)
		}
	}
}
