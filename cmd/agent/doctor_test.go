package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentrun/agent/internal/testenv/localenv"
	"github.com/agentrun/agent/sandbox/local/cgroups"
)

// doctorLine matches one check of `agent doctor`'s output: severity, name, detail.
func doctorLine(out, severity, name, detail string) bool {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(severity) + ` +` + regexp.QuoteMeta(name) + ` +.*` + regexp.QuoteMeta(detail))
	return re.MatchString(out)
}

// TestDoctor runs `agent doctor` on this host, which runs local sandboxes: it exits 0, reports
// root, the cgroup layout the kernel really has, runc, the data dir and the templates, and (without
// --no-smoke) creates a sandbox with runc and leaves nothing behind. A data dir sandboxes cannot
// reach makes it exit 1 with the fix.
func TestDoctor(t *testing.T) {
	requireSandboxes(t)
	host, err := cgroups.Detect()
	if err != nil {
		t.Fatal(err)
	}
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)

	r := runAgent(t, nil, "doctor", "--no-smoke", "--data-dir", dd)
	if r.code != 0 {
		t.Fatalf("doctor --no-smoke: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range [][3]string{
		{"ok", "root", "running as root"},
		{"ok", "cgroups", string(host.Mode)},
		{"ok", "runtime runc", "runc version"},
		{"ok", "data dir", dd},
		{"ok", "template host", ""},
	} {
		if !doctorLine(r.stdout, want[0], want[1], want[2]) {
			t.Errorf("doctor --no-smoke: no line %q\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^(ok|warn) +template debian `).MatchString(r.stdout) {
		t.Errorf("doctor --no-smoke does not report the debian template:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "smoke test") {
		t.Errorf("doctor --no-smoke ran a smoke test:\n%s", r.stdout)
	}
	if regexp.MustCompile(`(?m)^FAIL`).MatchString(r.stdout) {
		t.Errorf("doctor exited 0 with a failed check:\n%s", r.stdout)
	}
	// Every warning says how to fix it, on the next line.
	lines := strings.Split(r.stdout, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "warn") && (i+1 >= len(lines) || !strings.Contains(lines[i+1], "fix: ")) {
			t.Errorf("warning without a fix: %q", l)
		}
	}

	r = runAgent(t, nil, "doctor", "--data-dir", dd)
	if r.code != 0 || !doctorLine(r.stdout, "ok", "sandbox smoke test (runc)", "ran a command") {
		t.Errorf("doctor: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// A data dir under a private (0700) directory: a sandbox's root, an unprivileged host uid,
	// cannot traverse it.
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	private = filepath.Join(private, "data")
	r = runAgent(t, nil, "doctor", "--no-smoke", "--data-dir", private)
	if r.code != exitFailed || !doctorLine(r.stdout, "FAIL", "data dir", "not traversable") || !strings.Contains(r.stdout, "fix: ") {
		t.Errorf("doctor with a private data dir: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestTemplateCLI: `agent template build|ls|rm` on the host template, and the usage exit code for
// templates that are unknown or not built.
func TestTemplateCLI(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	tpl := func(args ...string) result {
		t.Helper()
		return runAgent(t, nil, append([]string{"template", "--data-dir", dd}, args...)...)
	}
	row := func(out, name string) []string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == name {
				return f
			}
		}
		return nil
	}

	r := tpl("ls")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "NAME") || strings.Join(row(r.stdout, "host"), " ") != "host (not built)" ||
		strings.Join(row(r.stdout, "debian")[1:], " ") != "(not built)" {
		t.Fatalf("ls before build: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	r = tpl("build", "host")
	m := regexp.MustCompile(`^host (sha256:[0-9a-f]{64}) `).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("build host: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	digest := m[1]
	// Built again without --force: the same template.
	if r := tpl("build", "host"); r.code != 0 || !strings.HasPrefix(r.stdout, "host "+digest+" ") {
		t.Errorf("build host again: exit %d\n%s", r.code, r.stdout)
	}

	r = tpl("ls")
	f := row(r.stdout, "host")
	if r.code != 0 || len(f) < 6 || !strings.HasPrefix(digest, f[1]) || len(f[1]) < 12 || f[len(f)-2] != "user" || f[len(f)-1] != "/home/user" {
		t.Errorf("ls after build: exit %d, host row %q\n%s", r.code, f, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dd, "templates")); err != nil {
		t.Errorf("no templates dir after build: %v", err)
	}

	if r := tpl("rm", "host"); r.code != 0 {
		t.Errorf("rm host: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := tpl("ls"); strings.Join(row(r.stdout, "host"), " ") != "host (not built)" {
		t.Errorf("ls after rm: %s", r.stdout)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rm", "host"}, `template "host": template not built`},
		{[]string{"rm", "no-such-template"}, `template "no-such-template": template not built`},
		{[]string{"rm", "../etc"}, "unknown template"},
		{[]string{"build", "no-such-template"}, `template "no-such-template": unknown template (known: [debian host])`},
		{[]string{"ls", "--no-such-flag"}, "unknown flag"},
	} {
		if r := tpl(tc.args...); r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("template %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), r.code, r.stderr, exitUsage, tc.want)
		}
	}
}
