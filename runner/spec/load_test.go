package spec

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const fullSpec = `# yaml-language-server: $schema=../schema.json
name: full
prompt: |
  Fix the bug.
model: novita:qwen/qwen3-coder-30b-a3b-instruct
template: debian
workdir: /work
system: You are terse.
files:
  - {path: README.md, content: "hello\n"}
  - {path: bin/run.sh, content: "#!/bin/sh\n", mode: "0755"}
  - {from: seed, path: src}
  - {from: data.csv}
setup:
  - git init -q
  - {run: make deps, timeout: 3m}
checks:
  - run: python3 -m unittest
  - run: ./bin/run.sh
    name: runs
    exit: 3
    stdout: "ok\n"
    stdout_contains: ok
    stdout_regex: "(?m)^ok$"
    timeout: 30s
  - file: out.txt
    contains: total
    regex: "[0-9]+"
  - file: tmp.txt
    exists: false
limits:
  timeout: 10m
  command_timeout: 1m30s
  max_steps: 30
  max_tokens: 200000
  max_cost: 0.5
  max_output: 16KiB
  memory: 1GiB
  cpus: 1.5
  pids: 256
  disk: 2GB
env: {PYTHONUNBUFFERED: 1, MODE: fast, DEBUG: false}
artifacts: ["**/*.py", out.txt]
repeat: 3
tags: [python, bugfix]
network: {allow: [pypi.org, "*.pythonhosted.org", 203.0.113.7, "2001:db8::/32"]}
keep: failed
sandbox: novita
runtime: runsc
fork_setup: false
stop_background: true
`

func fullTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"full.yaml":        fullSpec,
		"seed/app.py":      "print('hi')\n",
		"seed/pkg/mod.py":  "X = 1\n",
		"seed/alias.py":    "->app.py",
		"seed/.hidden":     "h",
		"seed/linkdir":     "->pkg",
		"data.csv":         "a,b\n1,2\n",
		"unrelated/x.yaml": "not: a spec\n",
	})
	if err := os.Chmod(filepath.Join(dir, "seed/app.py"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveFullSpec(t *testing.T) {
	dir := fullTree(t)
	s, err := LoadSpec(filepath.Join(dir, "full.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "full" || s.Prompt != "Fix the bug.\n" || s.Model != "novita:qwen/qwen3-coder-30b-a3b-instruct" ||
		s.Template != "debian" || s.Workdir != "/work" || s.System != "You are terse." || s.Repeat != 3 ||
		s.Keep != KeepFailed || s.Sandbox != BackendNovita || s.Runtime != RuntimeRunsc || s.ForkSetup || !s.StopBackground || s.NamePos != (Pos{2, 7}) {
		t.Errorf("scalars: %+v", s)
	}
	type fileSum struct {
		Path, Data string
		Mode       Mode
	}
	var files []fileSum
	for _, f := range s.Files {
		files = append(files, fileSum{f.Path, string(f.Data), f.Mode})
		if f.Size != int64(len(f.Data)) || len(f.SHA256) != 64 {
			t.Errorf("%s: size %d sha %q", f.Path, f.Size, f.SHA256)
		}
	}
	want := []fileSum{
		{"README.md", "hello\n", 0o644},
		{"bin/run.sh", "#!/bin/sh\n", 0o755},
		{"src/.hidden", "h", 0o644},
		{"src/alias.py", "print('hi')\n", 0o755}, // a symlink inside the directory is copied as its target
		{"src/app.py", "print('hi')\n", 0o755},
		{"src/linkdir/mod.py", "X = 1\n", 0o644},
		{"src/pkg/mod.py", "X = 1\n", 0o644},
		{"data.csv", "a,b\n1,2\n", 0o644},
	}
	if !reflect.DeepEqual(files, want) {
		t.Errorf("files:\n got %v\nwant %v", files, want)
	}
	wantSetup := []Step{{"git init -q", Duration(DefaultSetupTimeout)}, {"make deps", Duration(3 * time.Minute)}}
	if !reflect.DeepEqual(s.Setup, wantSetup) {
		t.Errorf("setup: %+v", s.Setup)
	}
	if len(s.Checks) != 4 {
		t.Fatalf("checks: %+v", s.Checks)
	}
	c0, c1, c2, c3 := s.Checks[0], s.Checks[1], s.Checks[2], s.Checks[3]
	if c0.Kind != CheckRun || c0.Exit != 0 || c0.Timeout.D() != DefaultCheckTimeout || c0.Name != "python3 -m unittest" || c0.Pos != (Pos{18, 5}) {
		t.Errorf("check 0: %+v", c0)
	}
	if c1.Name != "runs" || c1.Exit != 3 || *c1.Stdout != "ok\n" || *c1.StdoutContains != "ok" ||
		c1.StdoutRegex.String() != "(?m)^ok$" || c1.Timeout.D() != 30*time.Second {
		t.Errorf("check 1: %+v", c1)
	}
	if c2.Kind != CheckFile || c2.File != "out.txt" || !c2.Exists || *c2.Contains != "total" || c2.Regex.String() != "[0-9]+" || c2.Name != "file out.txt" {
		t.Errorf("check 2: %+v", c2)
	}
	if c3.Exists || c3.NeedsContent() {
		t.Errorf("check 3: %+v", c3)
	}
	wantLimits := Limits{
		Timeout: Duration(10 * time.Minute), CommandTimeout: Duration(90 * time.Second), MaxSteps: 30,
		MaxTokens: 200000, MaxCost: 0.5, MaxOutput: 16 << 10, Memory: 1 << 30, CPUs: 1.5, Pids: 256, Disk: 2e9,
	}
	if s.Limits != wantLimits {
		t.Errorf("limits:\n got %+v\nwant %+v", s.Limits, wantLimits)
	}
	if !reflect.DeepEqual(s.Env, map[string]string{"PYTHONUNBUFFERED": "1", "MODE": "fast", "DEBUG": "false"}) {
		t.Errorf("env: %v", s.Env)
	}
	if !reflect.DeepEqual(s.Artifacts, []string{"**/*.py", "out.txt"}) || !reflect.DeepEqual(s.Tags, []string{"python", "bugfix"}) {
		t.Errorf("artifacts %v tags %v", s.Artifacts, s.Tags)
	}
	wantNet := Network{Mode: NetworkAllow, Domains: []string{"pypi.org", "*.pythonhosted.org"},
		CIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("2001:db8::/32")}}
	if !reflect.DeepEqual(s.Network, wantNet) {
		t.Errorf("network: %+v", s.Network)
	}
	if !strings.HasPrefix(s.Digest, "sha256:") || len(s.Digest) != 71 {
		t.Errorf("digest %q", s.Digest)
	}
	// The resolved spec serialises for run.json without the seed contents.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "print('hi')") || !strings.Contains(string(b), `"stdout_regex":"(?m)^ok$"`) ||
		!strings.Contains(string(b), `"timeout":"10m0s"`) || !strings.Contains(string(b), `"mode":"0755"`) {
		t.Errorf("json: %s", b)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"hello.yaml": "prompt: say hi\n"})
	s, err := LoadSpec(filepath.Join(dir, "hello.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{
		Timeout: Duration(DefaultTimeout), CommandTimeout: Duration(DefaultCommandTimeout), MaxSteps: DefaultMaxSteps,
		MaxOutput: DefaultMaxOutput, Memory: DefaultMemory, CPUs: DefaultCPUs, Pids: DefaultPids, Disk: DefaultDisk,
	}
	if s.Name != "hello" || s.Template != "host" || s.Workdir != "/home/user" || s.Model != "" || s.System != "" ||
		s.Repeat != 1 || s.Keep != KeepNone || !s.ForkSetup || s.StopBackground || s.Network.Mode != NetworkNone ||
		s.Artifacts != nil || s.Limits != want || s.NamePos != (Pos{}) {
		t.Errorf("defaults: %+v", s)
	}
	// task.yaml takes its directory's name.
	writeTree(t, dir, map[string]string{"fizz-buzz/task.yaml": "prompt: x\n", "a.b.yml": "prompt: x\n"})
	for file, name := range map[string]string{"fizz-buzz/task.yaml": "fizz-buzz", "a.b.yml": "a.b"} {
		s, err := LoadSpec(filepath.Join(dir, file), Options{})
		if err != nil || s.Name != name {
			t.Errorf("%s: name %q err %v", file, s.Name, err)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"agent.yaml": `model: agent-model
template: debian
provider: novita
base_url: http://127.0.0.1:9/v1
api_key_env: MY_KEY
concurrency: 4
max_llm_concurrency: 2
prices: prices.yaml
limits: {timeout: 5m, max_steps: 10, memory: 512MiB}
env: {A: agent, B: agent}
network: internet
keep: all
runtime: runsc
repeat: 2
artifacts: ["*.txt"]
`,
		"plain.yaml": "prompt: x\n",
		"own.yaml": `prompt: x
model: spec-model
limits: {max_steps: 20, cpus: 2}
env: {B: spec, C: spec}
network: none
runtime: runc
repeat: 5
artifacts: []
`,
	})
	cfg, err := LoadConfig(filepath.Join(dir, "agent.yaml"), ReadLimits{})
	if err != nil {
		t.Fatal(err)
	}
	cli := &Config{Common: Common{
		Limits: &LimitsFile{MaxSteps: Ptr(7)},
		Env:    Env{"C": "cli", "D": "cli"},
		Keep:   Ptr(KeepFailed),
	}, Concurrency: Ptr(8)}
	opts := Options{Config: cfg, Overrides: cli}

	plain, err := LoadSpec(filepath.Join(dir, "plain.yaml"), opts)
	if err != nil {
		t.Fatal(err)
	}
	// agent.yaml over built-in defaults; CLI over agent.yaml.
	if plain.Model != "agent-model" || plain.Template != "debian" || plain.Limits.Timeout.D() != 5*time.Minute ||
		plain.Limits.MaxSteps != 7 || plain.Limits.Memory != 512<<20 || plain.Limits.CPUs != DefaultCPUs ||
		plain.Network.Mode != NetworkInternet || plain.Keep != KeepFailed || plain.Runtime != RuntimeRunsc || plain.Repeat != 2 ||
		!reflect.DeepEqual(plain.Artifacts, []string{"*.txt"}) ||
		!reflect.DeepEqual(plain.Env, map[string]string{"A": "agent", "B": "agent", "C": "cli", "D": "cli"}) {
		t.Errorf("plain: %+v", plain)
	}
	own, err := LoadSpec(filepath.Join(dir, "own.yaml"), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The spec over agent.yaml; the CLI still wins where it sets something.
	if own.Model != "spec-model" || own.Limits.MaxSteps != 7 || own.Limits.CPUs != 2 || own.Limits.Timeout.D() != 5*time.Minute ||
		own.Network.Mode != NetworkNone || own.Runtime != RuntimeRunc || own.Repeat != 5 || own.Artifacts == nil || len(own.Artifacts) != 0 ||
		!reflect.DeepEqual(own.Env, map[string]string{"A": "agent", "B": "spec", "C": "cli", "D": "cli"}) {
		t.Errorf("own: %+v", own)
	}
	cli.Model = Ptr("cli-model")
	own, err = LoadSpec(filepath.Join(dir, "own.yaml"), opts)
	if err != nil || own.Model != "cli-model" {
		t.Fatalf("--model does not win over the spec: %v %v", own.Model, err)
	}

	run := ResolveRun(cfg, filepath.Join(dir, "agent.yaml"), cli)
	want := Run{Provider: "novita", BaseURL: "http://127.0.0.1:9/v1", APIKeyEnv: "MY_KEY", Concurrency: 8,
		MaxLLMConcurrency: 2, Prices: filepath.Join(dir, "prices.yaml"), Model: "cli-model", Template: "debian"}
	if run != want {
		t.Errorf("run:\n got %+v\nwant %+v", run, want)
	}
	if r := ResolveRun(nil, "", nil); r != (Run{Template: DefaultTemplate}) {
		t.Errorf("empty run: %+v", r)
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	base := "prompt: x\nfiles:\n  - {from: seed}\nchecks:\n  - run: 'true'\n"
	writeTree(t, dir, map[string]string{"a/t.yaml": base, "a/seed/f.txt": "one"})
	file := filepath.Join(dir, "a/t.yaml")
	digest := func(opts Options) string {
		t.Helper()
		s, err := LoadSpec(file, opts)
		if err != nil {
			t.Fatal(err)
		}
		if s.Digest != Digest(s) {
			t.Fatal("Digest is not stable")
		}
		return s.Digest
	}
	d0 := digest(Options{})
	same := func(what, src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if d := digest(Options{}); d != d0 {
			t.Errorf("%s changed the digest", what)
		}
	}
	changed := func(what string, opts Options) {
		t.Helper()
		if d := digest(opts); d == d0 {
			t.Errorf("%s did not change the digest", what)
		}
	}
	same("comments", "# a comment\nprompt: x # more\nfiles:\n  - {from: seed}   # seeds\nchecks:\n  - run: 'true'\n")
	same("reformatting", "checks: [{run: \"true\"}]\nfiles:\n- from: ./seed\nprompt: \"x\"\n")
	same("tags, repeat, keep, sandbox and runtime", base+"tags: [a]\nrepeat: 4\nkeep: all\nsandbox: e2b\nruntime: runsc\n")

	if err := os.WriteFile(file, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a/seed/f.txt"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed("a changed from file", Options{})
	if err := os.WriteFile(filepath.Join(dir, "a/seed/f.txt"), []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "a/seed/f.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed("an executable bit", Options{})
	if err := os.Chmod(filepath.Join(dir, "a/seed/f.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := digest(Options{}); d != d0 {
		t.Fatal("restoring the seed did not restore the digest")
	}
	writeTree(t, dir, map[string]string{"a/seed/new.txt": "n"})
	changed("a new seed file", Options{})
	os.Remove(filepath.Join(dir, "a/seed/new.txt"))
	changed("an agent.yaml default", Options{Config: &Config{Common: Common{Limits: &LimitsFile{MaxSteps: Ptr(3)}}}})
	changed("a CLI model", Options{Overrides: &Config{Common: Common{Model: Ptr("m")}}})
	if err := os.WriteFile(file, []byte(base+"  - file: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed("a new check", Options{})
}

func TestRoundTrip(t *testing.T) {
	dir := fullTree(t)
	file := filepath.Join(dir, "full.yaml")
	src, _ := os.ReadFile(file)
	sf, err := ParseSpec(file, src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := FormatSpec(sf)
	if err != nil {
		t.Fatal(err)
	}
	sf2, err := ParseSpec("again.yaml", out)
	if err != nil {
		t.Fatalf("re-parsing the marshalled spec: %v\n%s", err, out)
	}
	out2, err := FormatSpec(sf2)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(out2) {
		t.Errorf("not a fixed point:\n%s\n---\n%s", out, out2)
	}
	// Written next to the seeds, the marshalled spec resolves to the same task.
	if err := os.WriteFile(filepath.Join(dir, "copy.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := LoadSpec(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadSpec(filepath.Join(dir, "copy.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Errorf("digest changed through a round trip:\n%s", out)
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"suite/agent.yaml":             "limits: {max_steps: 9}\n",
		"suite/a.yaml":                 "prompt: a\n",
		"suite/b.yml":                  "prompt: b\ntags: [slow]\n",
		"suite/notes.txt":              "x",
		"suite/deep/c/task.yaml":       "prompt: c\ntags: [fast]\nfiles: [{from: seed}]\n",
		"suite/deep/c/seed/conf.yaml":  "server: {port: 80}\n",
		"suite/deep/c/seed/other.yaml": "prompt: also not a task, just a seed\n",
		"suite/.hidden/h.yaml":         "prompt: h\n",
		"suite/node_modules/m.yaml":    "prompt: m\n",
		"other/d.yaml":                 "prompt: d\n",
	})
	ctx := context.Background()
	paths := func(c []Candidate) []string {
		var out []string
		for _, x := range c {
			r, _ := filepath.Rel(dir, x.Path)
			if x.Named {
				r += "!"
			}
			out = append(out, r)
		}
		return out
	}
	got, err := Discover(ctx, []string{filepath.Join(dir, "suite"), filepath.Join(dir, "other/d.yaml"), filepath.Join(dir, "suite/a.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"suite/a.yaml!", "suite/b.yml", "suite/deep/c/seed/conf.yaml", "suite/deep/c/seed/other.yaml", "suite/deep/c/task.yaml", "other/d.yaml!"}
	if !slices.Equal(paths(got), want) {
		t.Errorf("dir:\n got %v\nwant %v", paths(got), want)
	}
	got, err = Discover(ctx, []string{filepath.Join(dir, "suite/**/task.yaml"), filepath.Join(dir, "*/?.y*ml")})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"suite/deep/c/task.yaml", "other/d.yaml", "suite/a.yaml", "suite/b.yml"}
	if !slices.Equal(paths(got), want) {
		t.Errorf("globs:\n got %v\nwant %v", paths(got), want)
	}
	for _, bad := range []struct{ arg, msg string }{
		{"suite/agent.yaml", "holds defaults"},
		{"missing.yaml", "no such file or directory"},
		{"suite/*.json", "no spec file"},
		{"suite/[", "invalid glob"},
		{"suite/.hidden/..", ""},
	} {
		if bad.msg == "" {
			continue
		}
		_, err := Discover(ctx, []string{filepath.Join(dir, bad.arg)})
		if err == nil || !strings.Contains(err.Error(), bad.msg) || !strings.HasPrefix(err.Error(), filepath.Join(dir, bad.arg)+": ") {
			t.Errorf("%s: %v", bad.arg, err)
		}
	}
	writeTree(t, dir, map[string]string{"empty/readme.md": "x"})
	if _, err := Discover(ctx, []string{filepath.Join(dir, "empty")}); err == nil || !strings.Contains(err.Error(), "no spec file") {
		t.Errorf("empty dir: %v", err)
	}

	// Load: seed YAML files below a spec's from directory are not tasks; agent.yaml applies.
	suite, err := Load(ctx, []string{filepath.Join(dir, "suite")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range suite.Specs {
		names = append(names, s.Name)
		if s.Limits.MaxSteps != 9 {
			t.Errorf("%s: agent.yaml not applied", s.Name)
		}
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) || suite.ConfigFile != filepath.Join(dir, "suite/agent.yaml") || suite.Discovered != 3 {
		t.Errorf("load: names %v config %q discovered %d", names, suite.ConfigFile, suite.Discovered)
	}
	// Named explicitly, a seed file is loaded (and here fails: it is no spec).
	_, err = Load(ctx, []string{filepath.Join(dir, "suite"), filepath.Join(dir, "suite/deep/c/seed/conf.yaml")}, Options{})
	errAt(t, err, filepath.Join(dir, "suite/deep/c/seed/conf.yaml"), 1, 1, `unknown field "server"`)

	// Selection by name and tags.
	sel, err := NewSelector([]string{"a,c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	suite, err = Load(ctx, []string{filepath.Join(dir, "suite")}, Options{Select: sel, NoConfig: true})
	if err != nil || len(suite.Specs) != 2 || suite.Specs[0].Name != "a" || suite.Specs[1].Name != "c" || suite.Specs[0].Limits.MaxSteps != DefaultMaxSteps {
		t.Errorf("filter: %v %+v", err, suite)
	}
}

func TestDuplicateNames(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"x/one.yaml":  "prompt: a\nname: same\n",
		"x/two.yaml":  "# second\nprompt: b\nname: same\n",
		"x/same.yaml": "prompt: c\n",
	})
	_, err := Load(context.Background(), []string{filepath.Join(dir, "x")}, Options{})
	errAt(t, err, filepath.Join(dir, "x/same.yaml"), 0, 0, `duplicate task name "same": also `+filepath.Join(dir, "x/one.yaml")+":2:7")
	errAt(t, err, filepath.Join(dir, "x/two.yaml"), 3, 7, `duplicate task name "same": also `+filepath.Join(dir, "x/one.yaml")+":2:7")
}

func TestLoadReportsEveryFile(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.yaml": "prompt: a\nrepeat: 0\n", "b.yaml": "bogus: 1\nprompt: b\n", "c.yaml": "prompt: ok\n"})
	_, err := Load(context.Background(), []string{dir}, Options{})
	errAt(t, err, filepath.Join(dir, "a.yaml"), 2, 9, "repeat must be")
	errAt(t, err, filepath.Join(dir, "b.yaml"), 1, 1, `unknown field "bogus"`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Load(ctx, []string{dir}, Options{}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("canceled load: %v", err)
	}
}

func TestFindConfig(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"repo/.git/HEAD":         "ref",
		"repo/agent.yaml":        "model: m\n",
		"repo/tasks/a/task.yaml": "prompt: a\n",
		"repo/tasks/b/task.yaml": "prompt: b\n",
		"repo/tasks/agent.yml":   "model: n\n",
		"repo/solo/x.yaml":       "prompt: x\n",
		"agent.yaml":             "model: outside\n",
		"norepo/sub/s.yaml":      "prompt: s\n",
		"both/agent.yaml":        "",
		"both/agent.yml":         "",
		"both/s.yaml":            "prompt: s\n",
	})
	j := func(p ...string) []string {
		for i := range p {
			p[i] = filepath.Join(dir, p[i])
		}
		return p
	}
	for _, tc := range []struct {
		specs []string
		want  string
	}{
		{j("repo/tasks/a/task.yaml", "repo/tasks/b/task.yaml"), "repo/tasks/agent.yml"},
		{j("repo/tasks/a/task.yaml", "repo/solo/x.yaml"), "repo/agent.yaml"},
		{j("repo/solo/x.yaml"), "repo/agent.yaml"},
		{j("norepo/sub/s.yaml"), "agent.yaml"},
	} {
		got, err := FindConfig(tc.specs)
		if err != nil || got != filepath.Join(dir, tc.want) {
			t.Errorf("%v: got %q %v, want %q", tc.specs, got, err, tc.want)
		}
	}
	// The search stops at the repository root: the agent.yaml above it does not apply.
	os.Remove(filepath.Join(dir, "repo/agent.yaml"))
	if got, err := FindConfig(j("repo/solo/x.yaml")); err != nil || got != "" {
		t.Errorf("past the repository root: %q %v", got, err)
	}
	if _, err := FindConfig(j("both/s.yaml")); err == nil || !strings.Contains(err.Error(), "keep one") {
		t.Errorf("both: %v", err)
	}
}

func TestSelector(t *testing.T) {
	specs := []*Spec{
		{Name: "py-fizzbuzz", Tags: []string{"python", "easy"}},
		{Name: "node-slugify", Tags: []string{"node", "easy"}},
		{Name: "git-bisect", Tags: []string{"git", "hard"}},
		{Name: "untagged"},
	}
	for _, tc := range []struct {
		filters, tags []string
		want          string
	}{
		{nil, nil, "py-fizzbuzz node-slugify git-bisect untagged"},
		{[]string{"py-*"}, nil, "py-fizzbuzz"},
		{[]string{"*-*"}, nil, "py-fizzbuzz node-slugify git-bisect"},
		{[]string{"fizz"}, nil, ""},
		{[]string{"re:fizz|git"}, nil, "py-fizzbuzz git-bisect"},
		{[]string{"re:^n"}, nil, "node-slugify"},
		{[]string{"untagged", "git-*"}, nil, "git-bisect untagged"},
		{nil, []string{"easy"}, "py-fizzbuzz node-slugify"},
		{nil, []string{"python,git"}, "py-fizzbuzz git-bisect"},
		{nil, []string{"!easy"}, "git-bisect untagged"},
		{nil, []string{"easy", "-node"}, "py-fizzbuzz"},
		{[]string{"*"}, []string{"hard"}, "git-bisect"},
	} {
		sel, err := NewSelector(tc.filters, tc.tags)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range specs {
			if sel.Match(s) {
				got = append(got, s.Name)
			}
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("filters %v tags %v: got %v, want %q", tc.filters, tc.tags, got, tc.want)
		}
	}
	for _, bad := range [][2][]string{{{"re:("}, nil}, {{"a["}, nil}, {nil, {"Bad Tag"}}} {
		if _, err := NewSelector(bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestFormatKeepsMeaning(t *testing.T) {
	// Cases yaml.Marshal gets wrong: an empty list that means "none", strings starting with
	// newlines or spaces, strings that look like other types.
	src := `prompt: "\n\n  indented first line\nsecond\n"
artifacts: []
env: {A: "1", B: "true", C: " x", D: "a\tb"}
checks:
  - run: "echo 'a: b'"
    stdout: "\nOK"
  - file: "- x"
    equals: ""
setup: ["null", {run: "~", timeout: 1h}]
limits: {max_cost: 0.00001, cpus: 2}
network: {allow: ["*.example.com"]}
files: [{path: a, content: "#!/bin/sh\n", mode: "0755"}]
`
	sf, err := ParseSpec("a.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	out, err := FormatSpec(sf)
	if err != nil {
		t.Fatal(err)
	}
	sf2, err := ParseSpec("b.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out2, _ := FormatSpec(sf2)
	if !bytes.Equal(out, out2) {
		t.Fatalf("not a fixed point:\n%s---\n%s", out, out2)
	}
	if sf2.Prompt != sf.Prompt || sf2.Artifacts == nil || len(sf2.Artifacts) != 0 || *sf2.Checks[0].Stdout != "\nOK" ||
		*sf2.Checks[1].File != "- x" || *sf2.Checks[1].Equals != "" || sf2.Setup[0].Run != "null" || sf2.Setup[1].Run != "~" ||
		*sf2.Limits.MaxCost != 0.00001 || !reflect.DeepEqual(sf2.Env, sf.Env) || sf2.Network.Domains[0] != "*.example.com" ||
		*sf2.Files[0].Mode != 0o755 {
		t.Errorf("changed through FormatSpec:\n%s", out)
	}
	cfg := &Config{Common: Common{Limits: &LimitsFile{Memory: Ptr(Size(3 << 29))}, Keep: Ptr(KeepAll)}, Concurrency: Ptr(3)}
	out, err = FormatConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseConfig("agent.yaml", out)
	if err != nil || *back.Limits.Memory != 3<<29 || *back.Keep != KeepAll || *back.Concurrency != 3 {
		t.Errorf("config round trip: %v\n%s", err, out)
	}
}
