package leakcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDiffNamesWhatAppeared(t *testing.T) {
	a := &Snapshot{Mounts: []string{"/a (tmpfs)"}, Files: []string{"/d/x"}, Nft: "1"}
	b := &Snapshot{Mounts: []string{"/a (tmpfs)", "/b (overlay)"}, Files: []string{"/d/x", "/d/y"}, Processes: []string{"7 sleep"}, Nft: "2"}
	got := strings.Join(a.Diff(b), "\n")
	for _, want := range []string{"mount: /b (overlay)", "file: /d/y", "process: 7 sleep", "nftables ruleset changed"} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	if d := b.Diff(b); len(d) != 0 {
		t.Errorf("a snapshot differs from itself: %v", d)
	}
}

func TestTakeSeesMountsFilesAndChildren(t *testing.T) {
	dir := t.TempDir()
	sc := Scope{MountPrefixes: []string{dir}, DataDirs: []string{dir}, ProcessMarkers: []string{"leakcheck-marker"}, SkipNft: true, SkipLinks: true}
	base, err := Take(sc)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	sc.Descendants = true
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	mounted := false
	if os.Geteuid() == 0 {
		m := filepath.Join(dir, "m")
		_ = os.Mkdir(m, 0o755)
		if err := syscall.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err == nil {
			mounted = true
			defer syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	now, err := Take(sc)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(base.Diff(now), "\n")
	if !strings.Contains(got, "file: "+filepath.Join(dir, "f")) || !strings.Contains(got, "sleep 30") {
		t.Errorf("diff:\n%s", got)
	}
	if mounted && !strings.Contains(got, "mount: "+filepath.Join(dir, "m")+" (tmpfs)") {
		t.Errorf("mount not reported:\n%s", got)
	}
}
