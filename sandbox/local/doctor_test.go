package local

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUIDClashes(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "passwd"), []byte("root:x:0:0::/root:/bin/sh\nodd:x:268435460:1::/:/bin/sh\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "subuid"), []byte("alice:100000:65536\nbob:268000000:1000000\n"), 0o644)
	got := uidClashes(dir, DefaultUIDBase, 65536*16)
	if len(got) != 2 {
		t.Fatalf("clashes %v, want the user odd and bob's range", got)
	}
	if got := uidClashes(t.TempDir(), DefaultUIDBase, 65536); len(got) != 0 {
		t.Errorf("empty etc: %v", got)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"6.1.0-18-amd64": true, "5.19.0": true, "5.15.0-91-generic": false, "4.19.0": false, "6.18.44-fc-v669": true} {
		if got := kernelAtLeast(rel, 5, 19); got != want {
			t.Errorf("%s: %v", rel, got)
		}
	}
}
