// Package localenv holds what tests of local sandboxes share about their data directories: a fresh
// data directory sandboxes can use, the scope of what a backend on it may leave on the host, and
// the check, at the end of a test, that nothing was left.
package localenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/sandbox/local"
)

// DataDir returns a fresh data directory for local sandboxes, removed when the test ends.
// Sandboxes' roots are unprivileged host uids that must traverse its parents, which t.TempDir
// makes private.
func DataDir(t testing.TB) string {
	t.Helper()
	dd := t.TempDir()
	for _, d := range []string{filepath.Dir(dd), dd} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dd
}

// Scope is what a backend on the data directory dd may touch on the host. The machine is shared
// with other sandbox users, so the scope names only what is this data directory's: its mounts and
// the loop devices backed by its files, its cgroups (a sandbox process left behind keeps its
// cgroup), processes naming it or in its cgroups, its sandbox and runtime state, and the uid
// ranges held for it in the host-wide registry, and the network resources of its sandboxes
// (NetworkResources). Sandbox uids are not unique to a data directory, so processes are not
// selected by uid. The host-wide lists of network interfaces and of the nftables ruleset are left
// out: they would show other suites' network tests; NetworkResources finds this directory's own.
func Scope(dd string) leakcheck.Scope {
	cg := local.CgroupParentFor(dd) + "/"
	return leakcheck.Scope{
		MountPrefixes:         []string{dd},
		CgroupPrefixes:        []string{cg},
		ProcessMarkers:        []string{dd},
		ProcessCgroupPrefixes: []string{cg},
		DataDirs: []string{filepath.Join(dd, "sandboxes"), filepath.Join(dd, "runtime", "runc"),
			filepath.Join(dd, "runtime", "crun"), filepath.Join(dd, "runtime", "runsc")},
		SkipLinks: true,
		SkipNft:   true,
		Extra: func() func() []string {
			netRes := NetworkResources(dd)
			return func() []string { return append(uidSlots(dd), netRes()...) }
		}(),
	}
}

// uidSlots lists the uid ranges of the host-wide registry held for sandboxes under dd.
func uidSlots(dd string) []string {
	var out []string
	ents, _ := os.ReadDir(local.DefaultSlotDir)
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(local.DefaultSlotDir, e.Name())); err == nil && strings.HasPrefix(string(b), dd+"/") {
			out = append(out, "uid slot "+e.Name()+" "+string(b))
		}
	}
	return out
}

// CheckLeaks takes a baseline of what the data directory dd holds on the host now and, when the
// test ends, fails it if anything of Scope(dd) remains that was not there before.
func CheckLeaks(t testing.TB, dd string) {
	t.Helper()
	leakcheck.Check(t, Scope(dd))
}
