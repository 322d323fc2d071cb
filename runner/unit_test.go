package runner

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner/spec"
)

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "file.txt", ".hidden", "with space", "ünï", strings.Repeat("x", 255)} {
		if !validName(ok) {
			t.Errorf("validName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "nul\x00", "line\nbreak", "cr\r", strings.Repeat("x", 256)} {
		if validName(bad) {
			t.Errorf("validName(%q) = true", bad)
		}
	}
}

// TestWriteUnderStaysInside: names from a sandbox never leave the task's files directory, even
// when something planted a symlink there.
func TestWriteUnderStaysInside(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, rel := range []string{"../escape", "/abs", "link/x", "a/../../escape"} {
		if err := writeUnder(root, rel, []byte("x"), 0o644); err == nil {
			t.Errorf("writeUnder(%q) succeeded", rel)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote outside: %v", ents)
	}
	if err := writeUnder(root, "deep/er/file.txt", []byte("ok"), 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "deep", "er", "file.txt"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("written file: %v %v", fi, err)
	}
}

func TestBoundedBuffer(t *testing.T) {
	b := newBoundedBuffer(10)
	b.WriteBytes([]byte("12345"))
	b.WriteBytes([]byte("67890abc"))
	b.WriteBytes([]byte("def"))
	if got := b.String(); !strings.HasPrefix(got, "1234567890") || !strings.Contains(got, "6 more bytes not kept") {
		t.Errorf("bounded buffer = %q", got)
	}
	b2 := newBoundedBuffer(100)
	b2.WriteBytes([]byte("no newline"))
	b2.ensureNewline()
	b2.ensureNewline()
	if b2.String() != "no newline\n" {
		t.Errorf("ensureNewline: %q", b2.String())
	}
}

func TestClipText(t *testing.T) {
	if got := clipText("héllo wörld", 2); !strings.HasPrefix(got, "h…") || !strings.Contains(got, "more bytes") {
		t.Errorf("clipText cut inside a rune or without a mark: %q", got)
	}
	if clipText("short", 10) != "short" {
		t.Error("clipText changed a short string")
	}
}

func TestFinished(t *testing.T) {
	for _, tc := range []struct {
		r    TaskResult
		want bool
	}{
		{TaskResult{SchemaVersion: ResultSchema, Status: StatusPassed}, true},
		{TaskResult{SchemaVersion: ResultSchema, Status: StatusFailed}, true},
		{TaskResult{SchemaVersion: ResultSchema, Status: StatusError, Reason: ReasonTimeout}, true},
		{TaskResult{SchemaVersion: ResultSchema, Status: StatusError, Reason: ReasonCanceled}, false},
		{TaskResult{SchemaVersion: "agent.result/v0", Status: StatusPassed}, false},
		{TaskResult{SchemaVersion: ResultSchema, Status: "weird"}, false},
	} {
		if got := tc.r.Finished(); got != tc.want {
			t.Errorf("%+v: Finished = %v", tc.r, got)
		}
	}
	var nilResult *TaskResult
	if nilResult.Finished() {
		t.Error("a missing result is finished")
	}
}

func TestTaskDirName(t *testing.T) {
	if got := taskDirName("a", 1, 1); got != filepath.Join("tasks", "a") {
		t.Errorf("single epoch: %s", got)
	}
	if got := taskDirName("a", 3, 5); got != filepath.Join("tasks", "a", "3") {
		t.Errorf("repeated: %s", got)
	}
}

func TestModelsNeedAModel(t *testing.T) {
	s := &spec.Spec{Name: "t"}
	if _, err := (&Endpoints{}).Model(s); !errors.Is(err, ErrNoModel) {
		t.Errorf("no model: %v", err)
	}
	s.Model = "novita:x"
	if m, err := (&Endpoints{}).Model(s); err != nil || m != "novita:x" {
		t.Errorf("model = %q, %v", m, err)
	}
	dir := t.TempDir()
	if _, err := (&Replays{Path: dir}).Model(s); !errors.Is(err, ErrNoModel) {
		t.Errorf("replay dir without the task's transcript: %v", err)
	}
	tr := &transcript.Transcript{Schema: transcript.Version, ID: "0123456789abcdef", Task: transcript.Task{Prompt: "p"}, Model: "m",
		Provider: transcript.Provider{Name: "x"}, Tools: []transcript.Tool{}, Messages: []transcript.Message{},
		End: transcript.End{Reason: transcript.ReasonCompleted}}
	if err := tr.WriteFile(filepath.Join(dir, "t.json")); err != nil {
		t.Fatal(err)
	}
	rp := &Replays{Path: dir}
	m, err := rp.Model(s)
	if err != nil || m != "replay:"+filepath.Join(dir, "t.json") {
		t.Fatalf("replay model = %q, %v", m, err)
	}
	p1, err := rp.Provider(s, m)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := rp.Provider(s, m)
	if p1 == p2 {
		t.Error("two jobs share one replay (a replay serves one conversation)")
	}
}

func TestNewRefusesDuplicatesAndMissingModels(t *testing.T) {
	a := &spec.Spec{Name: "a", Model: "m", Repeat: 2}
	if _, err := New(Config{Specs: []*spec.Spec{a, a}, Models: &Endpoints{}}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate names: %v", err)
	}
	if _, err := New(Config{Specs: []*spec.Spec{{Name: "b"}}, Models: &Endpoints{}}); !errors.Is(err, ErrNoModel) {
		t.Errorf("no model: %v", err)
	}
	r, err := New(Config{Specs: []*spec.Spec{a}, Models: &Endpoints{}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Jobs() != 2 || !strings.HasPrefix(r.Out(), "runs/") || !strings.HasSuffix(r.Out(), r.id[:8]) {
		t.Errorf("jobs %d, out %s", r.Jobs(), r.Out())
	}
}

func TestEnsureEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := ensureEmptyDir(dir); err != nil {
		t.Errorf("empty dir: %v", err)
	}
	if err := ensureEmptyDir(filepath.Join(dir, "new", "dir")); err != nil {
		t.Errorf("new dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ensureEmptyDir(dir); !errors.Is(err, ErrOut) || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("non-empty dir: %v", err)
	}
}

func TestReport(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	info := &RunInfo{ID: "abc", Backend: "local", Runtime: "runc", Network: []string{"none"}, Replay: "testdata/transcripts",
		Templates: map[string]string{"host": "sha256:0123456789abcdef0123"}, Concurrency: 2, Versions: Versions{Agent: "v1"}}
	sum := &Summary{StartedAt: start, DurationMS: 65_000, Total: 4, Passed: 1, Failed: 1, Error: 1, NotRun: 1, Tokens: 12345, Interrupted: true,
		Tasks: []SummaryTask{
			{Name: "good", Status: StatusPassed, Steps: 3, Tokens: 1000, DurationMS: 1500, Checks: CheckCounts{Total: 2, Passed: 2}},
			{Name: "bad|pipe", Status: StatusFailed, Steps: 2, Checks: CheckCounts{Total: 2, Passed: 1, Failed: 1},
				FailedChecks: []FailedCheck{{Name: "uses `backticks`", Reason: "stdout differs at line 1: got \"a|b\""}}, Dir: "tasks/bad|pipe"},
			{Name: "slow", Status: StatusError, Reason: ReasonTimeout, Detail: "the task ran longer\nthan 10m"},
			{Name: "later", NotRun: true, Reason: ReasonCanceled, Detail: "the run was interrupted"},
		}}
	md := Report(info, sum)
	for _, s := range []string{
		"## ❌ agent run: 1 of 4 passed",
		"1 failed, 1 errored, 1 not run, **interrupted**",
		"replay of `testdata/transcripts`",
		"local (runc); template host `sha256:0123456789ab`; network none",
		"1m05s", "12,345 tokens",
		"| ✅ | good | passed |  | 2/2 | 3 | 1,000 | 1.5s |",
		`| ❌ | bad\|pipe | failed | 1 of 2 checks failed |`,
		"| ⏹️ | later | not run | canceled |",
		"### Failing checks",
		"- `` uses `backticks` ``: stdout differs at line 1: got \"a\\|b\"",
		"- **slow**: timeout — the task ran longer than 10m",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
	// Every table row has the header's number of cells.
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") {
			if n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|"); n != 9 {
				t.Errorf("row with %d separators: %s", n, line)
			}
		}
	}
}

func TestConsolePlain(t *testing.T) {
	var b bytes.Buffer
	c := NewConsole(&b, false)
	c.Observe(Event{Type: EventRunStart, Total: 3, Reused: 1, Dir: "runs/x", Time: time.Now()})
	c.Observe(Event{Type: EventTaskStart, Task: "a", Epoch: 1})
	c.Observe(Event{Type: EventTaskEnd, Task: "a", Epoch: 1, Result: &TaskResult{Task: "a", Epochs: 1, Status: StatusError, Reason: ReasonOOM,
		Detail: "1 process killed", DurationMS: 2000, Agent: &AgentResult{Steps: 4}}})
	c.Observe(Event{Type: EventTaskEnd, Task: "b", Epoch: 2, Result: &TaskResult{Task: "b", Epoch: 2, Epochs: 2, Status: StatusPassed,
		Checks: CheckCounts{Total: 1, Passed: 1}}})
	c.Close()
	want := "running 2 task(s) → runs/x (1 finished earlier, kept)\nstart  a\nerror  a (4 steps, 2.0s): oom — 1 process killed\npassed b #2 (checks 1/1, 0ms)\n"
	if b.String() != want {
		t.Errorf("console:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestConsoleTTY(t *testing.T) {
	var b bytes.Buffer
	c := NewConsole(&b, true)
	c.Observe(Event{Type: EventRunStart, Total: 2, Time: time.Now()})
	c.Observe(Event{Type: EventTaskStart, Task: "a", Epoch: 1})
	c.Observe(Event{Type: EventTaskEnd, Task: "a", Epoch: 1, Result: &TaskResult{Task: "a", Epochs: 1, Status: StatusFailed}})
	c.Close()
	out := b.String()
	if !strings.Contains(out, "\r\033[K[0/2] 0 passed · 0 failed · 0 errors · 1 running") || !strings.Contains(out, "✗      a") ||
		!strings.Contains(out, "[1/2] 0 passed · 1 failed") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("tty console: %q", out)
	}
}

func TestFmt(t *testing.T) {
	for d, want := range map[time.Duration]string{850 * time.Millisecond: "850ms", 12300 * time.Millisecond: "12.3s", 245 * time.Second: "4m05s", 3720 * time.Second: "1h02m"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %s, want %s", d, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := fmtInt(n); got != want {
			t.Errorf("fmtInt(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestCellSeed(t *testing.T) {
	a := cellSeed("m", "task", 1)
	if a != cellSeed("m", "task", 1) {
		t.Fatal("seed not stable")
	}
	seen := map[int64]bool{a: true}
	for _, s := range []int64{cellSeed("m", "task", 2), cellSeed("n", "task", 1), cellSeed("m", "other", 1)} {
		if seen[s] {
			t.Fatalf("seed %d repeats across cells", s)
		}
		seen[s] = true
	}
	for s := range seen {
		if s < 0 || s > 1<<31-1 {
			t.Fatalf("seed %d outside 31 bits", s)
		}
	}
}
