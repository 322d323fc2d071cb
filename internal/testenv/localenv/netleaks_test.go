package localenv

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNetworkResourcesScope: only networks owned by the data directory's sandboxes are listed,
// and an id once seen is still looked for after its state is gone (a lease left behind).
func TestNetworkResourcesScope(t *testing.T) {
	dd, runDir := t.TempDir(), t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const mine, theirs = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
	write(filepath.Join(runDir, mine, "state.json"), `{"id":"`+mine+`","owner":"`+filepath.Join(dd, "sandboxes", mine)+`"}`)
	write(filepath.Join(runDir, theirs, "state.json"), `{"id":"`+theirs+`","owner":"/elsewhere/sandboxes/`+theirs+`"}`)
	write(filepath.Join(runDir, "slots", "7"), mine)
	write(filepath.Join(runDir, "slots", "9"), theirs)
	list := networkResources(dd, runDir)

	got := list()
	want := []string{"address lease: slot 7 of " + mine, "network state: " + filepath.Join(runDir, mine)}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// The state goes, the lease stays: still reported.
	if err := os.RemoveAll(filepath.Join(runDir, mine)); err != nil {
		t.Fatal(err)
	}
	got = list()
	if len(got) != 1 || !strings.HasPrefix(got[0], "address lease: slot 7") {
		t.Fatalf("after the state went: %q", got)
	}
	if err := os.Remove(filepath.Join(runDir, "slots", "7")); err != nil {
		t.Fatal(err)
	}
	if got = list(); len(got) != 0 {
		t.Fatalf("nothing left, got %q", got)
	}
}
