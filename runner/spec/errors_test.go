package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// writeTree writes files (path → content) under dir; a content starting with "->" makes a symlink.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// errAt asserts that err holds an error at line:col whose message contains substr, and that its
// text has the form file:line:col: message.
func errAt(t *testing.T, err error, file string, line, col int, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %d:%d %q", line, col, substr)
	}
	if !errors.Is(err, ErrSpec) {
		t.Errorf("error does not match ErrSpec: %v", err)
	}
	for _, e := range asErrorList(err) {
		if e.Line == line && e.Column == col && strings.Contains(e.Msg, substr) {
			prefix := file + ":"
			if line > 0 {
				prefix += fmt.Sprintf("%d:", line)
			}
			if col > 0 {
				prefix += fmt.Sprintf("%d:", col)
			}
			if !strings.HasPrefix(e.Error(), prefix+" ") {
				t.Errorf("error text %q does not start with %q", e.Error(), prefix)
			}
			return
		}
	}
	t.Fatalf("want an error at %d:%d containing %q; got:\n%v", line, col, substr, err)
}

func TestSpecErrors(t *testing.T) {
	cases := []struct {
		name      string
		yaml      string
		files     map[string]string // extra files next to the spec
		line, col int
		msg       string
	}{
		{"unknown field", "prompt: x\nfoo: 1\n", nil, 2, 1, `unknown field "foo"`},
		{"unknown field suggestion", "prompt: x\nchecks:\n  - run: ls\n    stdot: x\n", nil, 4, 5, `did you mean "stdout"?`},
		{"misplaced limit", "prompt: x\ntimeout: 10m\n", nil, 2, 1, "did you mean limits.timeout?"},
		{"unknown limit", "prompt: x\nlimits:\n  memroy: 1GiB\n", nil, 3, 3, `unknown field "memroy"; did you mean "memory"?`},
		{"secret in spec", "prompt: x\napi_key: sk-123\n", nil, 2, 1, "never put secrets in files"},
		{"wrong type int", "prompt: x\nrepeat: three\n", nil, 2, 9, `repeat: want an integer, got the string "three"`},
		{"wrong type string", "prompt: [a, b]\n", nil, 1, 9, "prompt: want a string, got a list"},
		{"number as string", "prompt: x\nmodel: 42\n", nil, 2, 8, "quote it"},
		{"wrong type bool", "prompt: x\nfork_setup: yes\n", nil, 2, 13, `want true or false, got the string "yes"`},
		{"wrong type list", "prompt: x\ntags: python\n", nil, 2, 7, "tags: want a list"},
		{"wrong type mapping", "prompt: x\nlimits: 10m\n", nil, 2, 9, "limits: want a mapping"},
		{"null value", "prompt: x\nmodel:\n", nil, 2, 7, "model: missing value"},
		{"bad duration", "prompt: x\nlimits:\n  timeout: 10 minutes\n", nil, 3, 12, `invalid duration "10 minutes"`},
		{"duration without unit", "prompt: x\nlimits: {timeout: 600}\n", nil, 2, 19, `duration "600" has no unit`},
		{"negative duration", "prompt: x\nchecks:\n  - run: ls\n    timeout: -5s\n", nil, 4, 14, "must be positive"},
		{"huge duration", "prompt: x\nlimits: {command_timeout: 9000h}\n", nil, 2, 27, "longer than the maximum"},
		{"bad size", "prompt: x\nlimits:\n  memory: 1GB2\n", nil, 3, 11, `invalid size "1GB2"`},
		{"ambiguous size", "prompt: x\nlimits:\n  disk: 1G\n", nil, 3, 9, `ambiguous size unit "G"`},
		{"unknown size unit", "prompt: x\nlimits:\n  disk: 3 bananas\n", nil, 3, 9, `unknown size unit "bananas"`},
		{"size too small", "prompt: x\nlimits:\n  memory: 1MiB\n", nil, 3, 11, "memory must be at least 16MiB"},
		{"negative repeat", "prompt: x\nrepeat: -1\n", nil, 2, 9, "repeat must be between 1 and 1000, got -1"},
		{"zero repeat", "prompt: x\nrepeat: 0\n", nil, 2, 9, "repeat must be between 1 and 1000, got 0"},
		{"integer overflow", "prompt: x\nrepeat: 99999999999999999999\n", nil, 2, 9, "repeat: want an integer"},
		{"zero steps", "prompt: x\nlimits: {max_steps: 0}\n", nil, 2, 21, "max_steps must be between 1"},
		{"negative cost", "prompt: x\nlimits: {max_cost: -1}\n", nil, 2, 20, "max_cost must be a positive number"},
		{"nan cost", "prompt: x\nlimits: {max_cost: .nan}\n", nil, 2, 20, "finite number"},
		{"zero cpus", "prompt: x\nlimits: {cpus: 0}\n", nil, 2, 16, "cpus must be between"},
		{"missing prompt", "name: x\nmodel: m\n", nil, 1, 1, `missing required field "prompt"`},
		{"empty prompt", "prompt: \"  \"\n", nil, 1, 9, "empty prompt"},
		{"bad name", "name: My Task\nprompt: x\n", nil, 1, 7, `invalid name "My Task"`},
		{"bad tag", "prompt: x\ntags: [ok, Python]\n", nil, 2, 12, `invalid tag "Python"`},
		{"duplicate tag", "prompt: x\ntags: [a, a]\n", nil, 2, 11, `duplicate tag "a"`},
		{"relative workdir", "prompt: x\nworkdir: home/user\n", nil, 2, 10, "clean absolute path"},
		{"bad keep", "prompt: x\nkeep: sometimes\n", nil, 2, 7, `invalid keep "sometimes"`},
		{"bad sandbox", "prompt: x\nsandbox: docker\n", nil, 2, 10, `invalid sandbox "docker": want local, e2b or novita`},
		{"bad runtime", "prompt: x\nruntime: kata\n", nil, 2, 10, `invalid runtime "kata": want runc, crun or runsc`},
		{"runtime list", "prompt: x\nruntime: [runc]\n", nil, 2, 10, "runtime: want a string, got a list"},
		{"bad env name", "prompt: x\nenv:\n  1BAD: x\n", nil, 3, 3, `invalid variable name "1BAD"`},
		{"env null", "prompt: x\nenv:\n  A:\n", nil, 3, 5, "env.A: missing value"},
		{"env list", "prompt: x\nenv:\n  A: [1]\n", nil, 3, 6, "env.A: want a value"},
		{"duplicate key", "prompt: a\nprompt: b\n", nil, 2, 1, `duplicate key "prompt" (first at line 1)`},
		{"duplicate key nested", "prompt: a\nlimits:\n  cpus: 1\n  cpus: 2\n", nil, 4, 3, `duplicate key "cpus"`},
		{"two documents", "prompt: a\n---\nprompt: b\n", nil, 3, 1, "one YAML document"},
		{"syntax error", "prompt: [a\nname: b\n", nil, 1, 0, "YAML syntax error"},
		{"tab indentation", "prompt: x\nchecks:\n\t- run: ls\n", nil, 3, 0, "YAML syntax error"},
		{"empty file", "", nil, 1, 1, "empty file"},
		{"comment only", "# nothing\n", nil, 1, 1, "empty file"},
		{"top-level list", "- prompt: x\n", nil, 1, 1, "want a mapping of spec fields"},
		{"unknown alias", "prompt: *nope\n", nil, 1, 9, `unknown anchor "nope"`},
		{"bad merge", "prompt: x\nlimits:\n  <<: 5\n", nil, 3, 7, "a merge (<<) needs a mapping"},
		{"check without kind", "prompt: x\nchecks:\n  - exit: 1\n", nil, 3, 5, "a check needs run (a command) or file (a path)"},
		{"check run and file", "prompt: x\nchecks:\n  - run: ls\n    file: a\n", nil, 4, 5, "either run (a command) or file"},
		{"check exit range", "prompt: x\nchecks:\n  - run: ls\n    exit: 300\n", nil, 4, 11, "exit code must be between 0 and 255"},
		{"run check file field", "prompt: x\nchecks:\n  - run: ls\n    contains: a\n", nil, 4, 5, "contains applies to file checks"},
		{"file check run field", "prompt: x\nchecks:\n  - file: a\n    stdout: a\n", nil, 4, 5, "stdout applies to run checks"},
		{"absent file with content", "prompt: x\nchecks:\n  - file: a\n    exists: false\n    equals: b\n", nil, 5, 5, "cannot apply to a file that must not exist"},
		{"bad stdout regex", "prompt: x\nchecks:\n  - run: ls\n    stdout_regex: \"(a\"\n", nil, 4, 19, "invalid regular expression: missing closing )"},
		{"bad file regex", "prompt: x\nchecks:\n  - file: a\n    regex: \"a{2,1}\"\n", nil, 4, 12, "invalid regular expression"},
		{"empty check command", "prompt: x\nchecks:\n  - run: \"\"\n", nil, 3, 10, "empty command"},
		{"empty setup", "prompt: x\nsetup: [\"\"]\n", nil, 2, 9, "empty command"},
		{"setup wrong type", "prompt: x\nsetup: [[ls]]\n", nil, 2, 9, "want a command string or {run, timeout}"},
		{"setup unknown field", "prompt: x\nsetup:\n  - run: ls\n    timout: 5s\n", nil, 4, 5, `setup[0]: unknown field "timout"`},
		{"network word", "prompt: x\nnetwork: everything\n", nil, 2, 10, `invalid network "everything"`},
		{"network domain", "prompt: x\nnetwork: pypi.org\n", nil, 2, 10, "write network: {allow: [pypi.org]}"},
		{"network list", "prompt: x\nnetwork: [example.com]\n", nil, 2, 10, "want none, internet or {allow"},
		{"network empty allow", "prompt: x\nnetwork: {allow: []}\n", nil, 2, 18, "empty allow list"},
		{"network star", "prompt: x\nnetwork:\n  allow: [\"*\"]\n", nil, 3, 11, "use network: internet"},
		{"network bad cidr", "prompt: x\nnetwork:\n  allow: [10.0.0.0/33]\n", nil, 3, 11, "invalid CIDR"},
		{"network all cidr", "prompt: x\nnetwork:\n  allow: [0.0.0.0/0]\n", nil, 3, 11, "allows every address"},
		{"network single label", "prompt: x\nnetwork:\n  allow: [pypi.org, localhost]\n", nil, 3, 21, "fully qualified"},
		{"network inner wildcard", "prompt: x\nnetwork:\n  allow: [\"a.*.com\"]\n", nil, 3, 11, "wildcard may only be the whole first label"},
		{"network unicode", "prompt: x\nnetwork:\n  allow: [bücher.de]\n", nil, 3, 11, "ASCII form"},
		{"network unknown key", "prompt: x\nnetwork:\n  deny: [a.com]\n", nil, 3, 3, `unknown field "deny"`},
		{"network number", "prompt: x\nnetwork:\n  allow: [1]\n", nil, 3, 11, "want a string"},
		{"file without source", "prompt: x\nfiles:\n  - path: a.txt\n", nil, 3, 5, "needs content (inline text) or from"},
		{"file content without path", "prompt: x\nfiles:\n  - content: hi\n", nil, 3, 5, "a file with content needs a path"},
		{"file content and from", "prompt: x\nfiles:\n  - path: a\n    content: hi\n    from: b\n", nil, 5, 5, "set content or from, not both"},
		{"file absolute path", "prompt: x\nfiles:\n  - {path: /etc/passwd, content: x}\n", nil, 3, 12, "must be relative to the workdir"},
		{"file dotdot path", "prompt: x\nfiles:\n  - {path: a/../../x, content: x}\n", nil, 3, 12, "leaves the workdir"},
		{"file bad mode", "prompt: x\nfiles:\n  - {path: a, content: x, mode: 0999}\n", nil, 3, 33, "want octal permission bits"},
		{"file setuid mode", "prompt: x\nfiles:\n  - {path: a, content: x, mode: \"4755\"}\n", nil, 3, 33, "only permission bits"},
		{"duplicate seed path", "prompt: x\nfiles:\n  - {path: a, content: x}\n  - {path: ./a, content: y}\n", nil, 4, 5, `"a" is already seeded by files[0]`},
		{"seed file under file", "prompt: x\nfiles:\n  - {path: a, content: x}\n  - {path: a/b, content: y}\n", nil, 4, 5, `files[0] seeds it as a file`},
		{"from missing", "prompt: x\nfiles:\n  - from: nope.txt\n", nil, 3, 11, "no such file or directory"},
		{"from dotdot", "prompt: x\nfiles:\n  - from: ../secret.txt\n", nil, 3, 11, "outside the spec's directory"},
		{"from absolute", "prompt: x\nfiles:\n  - from: /etc/hostname\n", nil, 3, 11, "is absolute"},
		{"from symlink file out", "prompt: x\nfiles:\n  - from: link.txt\n", map[string]string{"link.txt": "->/etc/hostname"}, 3, 11, "leads outside the spec's directory"},
		{"from symlink relative out", "prompt: x\nfiles:\n  - from: link.txt\n", map[string]string{"link.txt": "->../../../../../../../etc/hostname"}, 3, 11, "leads outside the spec's directory"},
		{"from tree symlink out", "prompt: x\nfiles:\n  - path: app\n    from: seed\n", map[string]string{"seed/ok.txt": "ok", "seed/sub/leak": "->../../../outside"}, 4, 11, "symlink seed/sub/leak leads outside"},
		{"from tree symlink loop", "prompt: x\nfiles:\n  - from: seed\n", map[string]string{"seed/a.txt": "a", "seed/sub/up": "->.."}, 3, 11, "loops back"},
		{"from seeds the spec", "prompt: x\nfiles:\n  - from: .\n", nil, 3, 11, "would copy this spec file"},
		{"from dir with mode", "prompt: x\nfiles:\n  - {from: seed, mode: \"0755\"}\n", map[string]string{"seed/a": "a"}, 3, 24, "mode applies to a single file"},
		{"artifact absolute", "prompt: x\nartifacts: [\"/etc/*\"]\n", nil, 2, 13, "must be relative to the workdir"},
		{"artifact dotdot", "prompt: x\nartifacts: [\"../**\"]\n", nil, 2, 13, "leaves the workdir"},
		{"artifact bad glob", "prompt: x\nartifacts: [\"a[\"]\n", nil, 2, 13, "invalid glob"},
		{"error path in list", "prompt: x\nchecks:\n  - run: a\n  - run: b\n    timeout: soon\n", nil, 5, 14, "checks[1].timeout: invalid duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tc.files)
			file := filepath.Join(dir, "spec.yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadSpec(file, Options{})
			errAt(t, err, file, tc.line, tc.col, tc.msg)
		})
	}
}

func TestSpecErrorsMany(t *testing.T) {
	// Every problem in a file is reported at once, in position order.
	src := "prompt: x\nrepeat: 0\nfoo: 1\nlimits:\n  timeout: 5\n"
	_, err := ParseSpec("s.yaml", []byte(src))
	list := asErrorList(err)
	if len(list) != 3 {
		t.Fatalf("want 3 errors, got %d:\n%v", len(list), err)
	}
	want := []Pos{{2, 9}, {3, 1}, {5, 12}}
	for i, e := range list {
		if e.Pos != want[i] {
			t.Errorf("error %d at %v, want %v: %v", i, e.Pos, want[i], e)
		}
	}
}

func TestBadTopLevelMergeReportedOnce(t *testing.T) {
	_, err := ParseSpec("m.yaml", []byte("<<: 5\nprompt: x\ntags: [a]\nfiles: []\n"))
	if list := asErrorList(err); len(list) != 1 || list[0].Pos != (Pos{1, 5}) {
		t.Fatalf("want one error at 1:5, got %v", err)
	}
}

func TestDerivedNameInvalid(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "My Task.yaml")
	writeTree(t, dir, map[string]string{"My Task.yaml": "prompt: x\n"})
	_, err := LoadSpec(file, Options{})
	errAt(t, err, file, 1, 1, `the name "My Task" taken from the file name`)
}

func TestSeedBounds(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"big.yaml":   "prompt: x\nfiles:\n  - from: seed\n",
		"seed/a.txt": strings.Repeat("a", 100),
		"seed/b.txt": strings.Repeat("b", 2000),
		"many.yaml":  "prompt: x\nfiles:\n  - from: seed\n  - {path: c, content: c}\n  - {path: d, content: d}\n",
		"total.yaml": "prompt: x\nfiles:\n  - {path: a, content: \"" + strings.Repeat("x", 900) + "\"}\n  - {path: b, content: \"" + strings.Repeat("y", 900) + "\"}\n",
	})
	lim := ReadLimits{MaxFileBytes: 1000, MaxTotalBytes: 1500, MaxFiles: 3}
	_, err := LoadSpec(filepath.Join(dir, "big.yaml"), Options{ReadLimits: lim})
	errAt(t, err, filepath.Join(dir, "big.yaml"), 3, 11, "seed/b.txt is 2kB, larger than the 1kB")
	_, err = LoadSpec(filepath.Join(dir, "total.yaml"), Options{ReadLimits: lim})
	errAt(t, err, filepath.Join(dir, "total.yaml"), 4, 5, "seed files exceed 1500 in total")
	lim.MaxFileBytes = 5000
	lim.MaxTotalBytes = 1 << 20
	_, err = LoadSpec(filepath.Join(dir, "many.yaml"), Options{ReadLimits: lim})
	errAt(t, err, filepath.Join(dir, "many.yaml"), 5, 5, "more than 3 seed files")

	// A spec file above MaxSpecBytes is refused before parsing.
	_, err = LoadSpec(filepath.Join(dir, "total.yaml"), Options{ReadLimits: ReadLimits{MaxSpecBytes: 100}})
	if err == nil || !strings.Contains(err.Error(), "larger than 100") || !errors.Is(err, ErrSpec) {
		t.Fatalf("oversized spec: %v", err)
	}
}

func TestSeedSpecialFileDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"s.yaml": "prompt: x\nfiles:\n  - from: seed\n  - {path: p, from: fifo}\n", "seed/a": "a"})
	for _, p := range []string{"seed/fifo", "fifo"} {
		if err := syscall.Mkfifo(filepath.Join(dir, p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "s.yaml")
	_, err := LoadSpec(file, Options{})
	errAt(t, err, file, 3, 11, "seed/fifo is not a regular file")
	errAt(t, err, file, 4, 21, "fifo is not a regular file")
}

func TestAllowOutside(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, map[string]string{
		"shared/lib.py":     "X = 1\n",
		"tasks/s.yaml":      "prompt: x\nfiles:\n  - {from: ../shared, path: vendor}\n  - {from: link}\n",
		"tasks/link":        "->../shared/lib.py",
		"tasks/other.yaml":  "prompt: x\n",
		"tasks/nested/x.md": "x",
	})
	file := filepath.Join(base, "tasks/s.yaml")
	if _, err := LoadSpec(file, Options{}); err == nil {
		t.Fatal("from ../shared loaded without AllowOutside")
	}
	s, err := LoadSpec(file, Options{AllowOutside: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range s.Files {
		got[f.Path] = string(f.Data)
	}
	if got["vendor/lib.py"] != "X = 1\n" || got["link"] != "X = 1\n" || len(got) != 2 {
		t.Fatalf("files: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		yaml      string
		line, col int
		msg       string
	}{
		{"api_key: sk-1\n", 1, 1, "never put secrets in files"},
		{"prompt: x\n", 1, 1, `unknown field "prompt"`},
		{"base_url: ftp://x\n", 1, 11, "must be an http or https URL"},
		{"base_url: https://user:pw@x.org/v1\n", 1, 11, "must not contain credentials"},
		{"api_key_env: sk-abc-123\n", 1, 14, "names an environment variable"},
		{"concurrency: 0\n", 1, 14, "concurrency must be between 1"},
		{"provider: Novita AI\n", 1, 11, "invalid provider"},
		{"limits:\n  pids: 2\n", 2, 9, "pids must be between 8"},
		{"network: {allow: [example.com]}\nnetwork: none\n", 2, 1, "duplicate key"},
	}
	for _, tc := range cases {
		_, err := ParseConfig("agent.yaml", []byte(tc.yaml))
		errAt(t, err, "agent.yaml", tc.line, tc.col, tc.msg)
	}
}

func TestEmptyConfig(t *testing.T) {
	for _, src := range []string{"", "# only comments\n", "---\n", "~\n"} {
		c, err := ParseConfig("agent.yaml", []byte(src))
		if err != nil || c == nil || c.Model != nil {
			t.Errorf("%q: %+v %v", src, c, err)
		}
	}
	_, err := ParseConfig("agent.yaml", []byte("- a\n"))
	errAt(t, err, "agent.yaml", 1, 1, "want a mapping of settings")
}

func TestAliasBombIsBounded(t *testing.T) {
	// Each level merges the previous one twice: 2^40 merges if expanded naively.
	var b strings.Builder
	b.WriteString("prompt: x\nx0: &a0 {cpus: 1}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [*a%d, *a%d]}\n", i, i, i-1, i-1)
	}
	b.WriteString("limits:\n  <<: *a40\n")
	_, err := ParseSpec("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too large or too deeply aliased") {
		t.Fatalf("want a size error, got %v", err)
	}
}
