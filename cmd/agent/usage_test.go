package main

import (
	"strings"
	"testing"
)

// TestCommandLineMistakesExit2: an unknown command or subcommand and a wrong number of arguments
// are usage errors (exit 2, with a pointer to --help), never internal errors or a silent help
// page; a command group alone still shows its help and succeeds.
func TestCommandLineMistakesExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `unknown command "nosuch" for "agent"`},
		{[]string{"sandbx"}, "did you mean sandbox?"},
		{[]string{"template", "nosuch"}, `unknown command "nosuch" for "agent template"`},
		{[]string{"sandbox", "nosuch", "x"}, `unknown command "nosuch" for "agent sandbox"`},
		{[]string{"template", "rm"}, "agent template rm --help"},
		{[]string{"doctor", "extra-arg"}, "agent doctor --help"},
		{[]string{"version", "extra-arg"}, "agent version --help"},
	} {
		r := runAgent(t, nil, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("agent %s: exit %d, stderr %q; want exit %d with %q", strings.Join(c.args, " "), r.code, r.stderr, exitUsage, c.want)
		}
	}
	for _, args := range [][]string{{"template"}, {"sandbox"}, {"--help"}} {
		r := runAgent(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
			t.Errorf("agent %s: exit %d, stdout %q; want its help and exit 0", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}
