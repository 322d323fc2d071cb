package main

import (
	"strings"
	"testing"
)

// TestSizeFlagsShareSpecParser: every size flag of the CLI reads sizes as specs do
// (spec.ParseSize), so a one-letter unit is refused as ambiguous everywhere, before anything is
// created, and the units specs accept are accepted.
func TestSizeFlagsShareSpecParser(t *testing.T) {
	for _, args := range [][]string{
		{"sandbox", "create", "--memory", "2G"},
		{"sandbox", "create", "--disk", "1g"},
		{"serve", "--memory", "512m"},
		{"serve", "--disk", "10G"},
		{"run", "--memory", "2G", "tasks/examples"},
	} {
		r := runAgent(t, nil, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "ambiguous size unit") {
			t.Errorf("agent %s: exit %d, stderr %q; want exit %d: ambiguous size unit", strings.Join(args, " "), r.code, r.stderr, exitUsage)
		}
	}
	// Units specs accept pass the flag parsing: the command fails later, on the unusable data
	// directory, not on the size.
	r := runAgent(t, nil, "sandbox", "create", "--memory", "1.5GiB", "--disk", "2GB", "--data-dir", "/proc/no-such-dir")
	if r.code == 0 || strings.Contains(r.stderr, "size") {
		t.Errorf("sandbox create with spec units: exit %d, stderr %q; want a failure that is not about a size", r.code, r.stderr)
	}
}

func TestRedactArgs(t *testing.T) {
	got := redactArgs([]string{"agent", "run", "--base-url", "https://me:secret@example.com/v1", "--base-url=http://u:pw@h/x", "plain@text", "tasks/"})
	joined := strings.Join(got, " ")
	if strings.Contains(joined, "secret") || strings.Contains(joined, ":pw@") || !strings.Contains(joined, "https://me:xxxxx@example.com/v1") || !strings.Contains(joined, "plain@text") {
		t.Errorf("redactArgs = %q", got)
	}
}
