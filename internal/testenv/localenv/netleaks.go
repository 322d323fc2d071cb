package localenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox/local/network"
)

// NetworkResources returns a function listing the host network resources of the sandboxes of the
// data directory dd, for leakcheck.Scope.Extra: per sandbox, its network state under the
// host-wide run directory, its host link, its nftables table, its egress helper (`agent netd`)
// and its address lease. Links, tables and helpers are named by sandbox id, not by data
// directory, and the machine is shared, so the function tracks the ids it has seen belong to dd
// (a network state whose owner lies under dd, a sandbox directory under dd) and reports only
// theirs; an id once seen is looked for on every later call, so a resource that outlives its
// state is still found.
func NetworkResources(dd string) func() []string {
	return networkResources(dd, network.DefaultRunDir)
}

func networkResources(dd, runDir string) func() []string {
	var mu sync.Mutex
	seen := map[string]bool{}
	prefix := strings.TrimSuffix(dd, "/") + "/"
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		if ents, err := os.ReadDir(runDir); err == nil {
			for _, e := range ents {
				if !e.IsDir() || e.Name() == "slots" {
					continue
				}
				var st struct {
					Owner string `json:"owner"`
				}
				b, err := readSmall(filepath.Join(runDir, e.Name(), "state.json"))
				if err == nil && json.Unmarshal(b, &st) == nil && strings.HasPrefix(st.Owner, prefix) {
					seen[e.Name()] = true
				}
			}
		}
		if ents, err := os.ReadDir(filepath.Join(dd, "sandboxes")); err == nil {
			for _, e := range ents {
				seen[e.Name()] = true
			}
		}
		if len(seen) == 0 {
			return nil
		}
		tables := nftTables()
		helpers := helperPids()
		slots := map[string][]string{}
		if ents, err := os.ReadDir(filepath.Join(runDir, "slots")); err == nil {
			for _, e := range ents {
				if b, err := readSmall(filepath.Join(runDir, "slots", e.Name())); err == nil {
					slots[string(b)] = append(slots[string(b)], e.Name())
				}
			}
		}
		var out []string
		for id := range seen {
			if _, err := os.Lstat(filepath.Join(runDir, id)); err == nil {
				out = append(out, "network state: "+filepath.Join(runDir, id))
			}
			if len(id) >= 8 {
				link := "ag" + id[:min(len(id), 13)]
				if _, err := os.Lstat(filepath.Join("/sys/class/net", link)); err == nil {
					out = append(out, "veth: "+link)
				}
			}
			if tables["agent_"+id] {
				out = append(out, "nftables table: inet agent_"+id)
			}
			for _, pid := range helpers[id] {
				out = append(out, fmt.Sprintf("egress helper: pid %s of %s", pid, id))
			}
			for _, s := range slots[id] {
				out = append(out, "address lease: slot "+s+" of "+id)
			}
		}
		slices.Sort(out)
		return out
	}
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := f.Read(b)
	return b[:n], nil
}

// nftTables lists the inet tables.
func nftTables() map[string]bool {
	out := map[string]bool{}
	if _, err := exec.LookPath("nft"); err != nil {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "nft", "list", "tables", "inet").Output()
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" && f[1] == "inet" {
			out[f[2]] = true
		}
	}
	return out
}

// helperPids maps sandbox ids to the pids of the egress helpers serving them.
func helperPids() map[string][]string {
	out := map[string][]string{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := readSmall(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, a := range args {
			if a == network.HelperMarker && i+1 < len(args) {
				out[args[i+1]] = append(out[args[i+1]], e.Name())
			}
		}
	}
	return out
}
