package cgroups

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestDetectAndStats(t *testing.T) {
	h, err := Detect()
	if err != nil {
		t.Skipf("no cgroups here: %v", err)
	}
	t.Logf("mode %s, v1 %v, unified %s %v", h.Mode, h.V1, h.Unified, h.UnifiedControllers)
	if h.Mode == "" || len(h.Dirs("/x")) == 0 {
		t.Errorf("detect: %+v", h)
	}
	if s := h.Stats("/agent-test-no-such-group"); s != (Stats{}) {
		t.Errorf("stats of a missing group: %+v", s)
	}
	if err := h.Remove(context.Background(), "/agent-test-no-such-group"); err != nil {
		t.Errorf("removing a missing group: %v", err)
	}
}

func TestRemoveCreatedGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	h, err := Detect()
	if err != nil {
		t.Skip(err)
	}
	path := "/agent-cgtest/child"
	for _, d := range h.Dirs(path) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Remove(context.Background(), "/agent-cgtest"); err != nil {
		t.Fatal(err)
	}
	for _, d := range h.Dirs("/agent-cgtest") {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s remains", d)
		}
	}
}

func TestKeyedParsing(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "memory.events")
	_ = os.WriteFile(f, []byte("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n"), 0o644)
	r := &statReader{}
	if got := r.keyed(f, "oom_kill"); got != 2 {
		t.Errorf("oom_kill = %d", got)
	}
	if got := r.keyed(f, "max"); got != 12 {
		t.Errorf("max = %d", got)
	}
	if got := r.keyed(f, "absent"); got != 0 {
		t.Errorf("absent = %d", got)
	}
	_ = os.WriteFile(f, []byte("123\n"), 0o644)
	if got := r.single(f); got != 123 {
		t.Errorf("single = %d", got)
	}
	if got := r.single(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing = %d", got)
	}
	if len(r.errs) != 0 {
		t.Errorf("errors: %v", r.errs)
	}
}
