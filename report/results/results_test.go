package results_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrun/agent/report/results"
	"github.com/agentrun/agent/report/results/resultstest"
	"github.com/agentrun/agent/report/stats"
)

// evalFixture: model a passes 5 of 6 cells, model b 2 of 6 (one error), over tasks t1..t3 × 2 epochs.
func evalFixture(t *testing.T) string {
	var cells []resultstest.Cell
	add := func(model, task string, epoch int, status, reason string, ms int64) {
		cells = append(cells, resultstest.Cell{Task: task, Model: model, Epoch: epoch, Status: status, Reason: reason,
			DurationMS: ms, TokensIn: 1000, TokensOut: 100, Cost: 0.01})
	}
	add("a", "t1", 1, "passed", "", 1000)
	add("a", "t1", 2, "passed", "", 2000)
	add("a", "t2", 1, "passed", "", 3000)
	add("a", "t2", 2, "failed", "", 4000)
	add("a", "t3", 1, "passed", "", 5000)
	add("a", "t3", 2, "passed", "", 6000)
	add("b", "t1", 1, "passed", "", 1000)
	add("b", "t1", 2, "failed", "", 1000)
	add("b", "t2", 1, "error", "timeout", 1000)
	add("b", "t2", 2, "failed", "", 1000)
	add("b", "t3", 1, "passed", "", 1000)
	add("b", "t3", 2, "failed", "", 1000)
	return resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "eval", Models: []string{"b", "a"}, Repeat: 2}, cells)
}

func TestLoadAndMetrics(t *testing.T) {
	r, err := results.Load(evalFixture(t), results.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 0 {
		t.Fatalf("warnings: %v", r.Warnings)
	}
	if len(r.Cells) != 12 {
		t.Fatalf("%d cells, want 12", len(r.Cells))
	}
	// Order: run.json's model order (b before a), then task, then epoch.
	if c := r.Cells[0]; c.Model != "b" || c.Task != "t1" || c.Epoch != 1 {
		t.Fatalf("first cell %s/%s/%d", c.Model, c.Task, c.Epoch)
	}
	if c := r.Cells[11]; c.Model != "a" || c.Task != "t3" || c.Epoch != 2 {
		t.Fatalf("last cell %s/%s/%d", c.Model, c.Task, c.Epoch)
	}
	if !r.IsEval() || strings.Join(r.Tasks(), ",") != "t1,t2,t3" {
		t.Fatalf("IsEval %v tasks %v", r.IsEval(), r.Tasks())
	}
	if r.Cells[0].Transcript == nil || r.Cells[0].Steps != 2 || r.Cells[0].ToolCalls != 1 {
		t.Fatalf("transcript not read: %+v", r.Cells[0])
	}
	ms := r.ModelMetrics()
	if len(ms) != 2 || ms[0].Model != "b" || ms[1].Model != "a" {
		t.Fatalf("metrics order %v", ms)
	}
	b, a := ms[0], ms[1]
	if a.Passed != 5 || a.Failed != 1 || a.Errored != 0 || a.Cells != 6 || a.Tasks != 3 || a.Epochs != 2 {
		t.Fatalf("a: %+v", a)
	}
	if b.Passed != 2 || b.Failed != 3 || b.Errored != 1 || b.Errors["timeout"] != 1 {
		t.Fatalf("b: %+v", b)
	}
	if a.PassRate != stats.Wilson95(5, 6) {
		t.Fatalf("a pass rate %+v", a.PassRate)
	}
	// pass@1 = mean of per-task rates; pass@2 = mean over tasks of 1 - C(n-c,2)/C(n,2).
	if math.Abs(a.PassAtK[1]-5.0/6) > 1e-12 || math.Abs(a.PassAtK[2]-1) > 1e-12 {
		t.Fatalf("a pass@k %v", a.PassAtK)
	}
	if math.Abs(b.PassAtK[1]-1.0/3) > 1e-12 || math.Abs(b.PassAtK[2]-2.0/3) > 1e-12 {
		t.Fatalf("b pass@k %v", b.PassAtK)
	}
	if a.WallMedian != 3500*time.Millisecond || a.WallP90 != 5500*time.Millisecond {
		t.Fatalf("a wall median %v p90 %v", a.WallMedian, a.WallP90)
	}
	if a.TokensIn != 6000 || a.TokensOut != 600 || a.Cost == nil || math.Abs(*a.Cost-0.06) > 1e-12 || a.CostPartial {
		t.Fatalf("a tokens/cost %+v", a)
	}
	if a.Steps != 12 || a.ToolCalls != 6 {
		t.Fatalf("a steps %d tool calls %d", a.Steps, a.ToolCalls)
	}
	p, f, e := r.Totals()
	if p != 7 || f != 4 || e != 1 {
		t.Fatalf("totals %d %d %d", p, f, e)
	}
	if m := r.Matrix(); m["a"]["t2"] != (results.TaskRate{Passed: 1, Total: 2}) {
		t.Fatalf("matrix %v", m)
	}
}

func TestCompare(t *testing.T) {
	base, err := results.Load(evalFixture(t), results.Limits{SkipContent: true})
	if err != nil {
		t.Fatal(err)
	}
	// Current: a lost t3 entirely (5/6 → 3/6), b gained t2 (2/6 → 4/6), c is new.
	var cells []resultstest.Cell
	add := func(model, task string, epoch int, status string) {
		cells = append(cells, resultstest.Cell{Task: task, Model: model, Epoch: epoch, Status: status, Reason: "x", Cost: -1})
	}
	for _, e := range []int{1, 2} {
		add("a", "t1", e, "passed")
		add("a", "t3", e, "failed")
		add("b", "t2", e, "passed")
		add("b", "t3", e, []string{"passed", "failed"}[e-1])
		add("c", "t1", e, "passed")
	}
	add("a", "t2", 1, "passed")
	add("a", "t2", 2, "failed")
	add("b", "t1", 1, "passed")
	add("b", "t1", 2, "failed")
	cur, err := results.Load(resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "eval", Models: []string{"a", "b", "c"}}, cells), results.Limits{SkipContent: true})
	if err != nil {
		t.Fatal(err)
	}
	cmp := results.Compare(base, cur, 0.10)
	if len(cmp.Models) != 3 {
		t.Fatalf("models %+v", cmp.Models)
	}
	a, b, c := cmp.Models[0], cmp.Models[1], cmp.Models[2]
	if !a.InBaseline || a.Tasks != 3 || math.Abs(a.Base-5.0/6) > 1e-12 || math.Abs(a.Current-0.5) > 1e-12 || !a.Regressed {
		t.Fatalf("a %+v", a)
	}
	if b.Regressed || math.Abs(b.Delta-(4.0/6-2.0/6)) > 1e-12 {
		t.Fatalf("b %+v", b)
	}
	if c.InBaseline || c.Regressed || c.Tasks != 0 {
		t.Fatalf("c %+v", c)
	}
	if got := cmp.Regressed(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("regressed %v", got)
	}
	want := map[string]string{"a/t3": "pass→fail", "b/t2": "fail→pass"}
	if len(cmp.Flips) != len(want) {
		t.Fatalf("flips %+v", cmp.Flips)
	}
	for _, f := range cmp.Flips {
		if want[f.Model+"/"+f.Task] != string(f.From)+"→"+string(f.To) {
			t.Fatalf("flip %+v", f)
		}
	}
	if !cmp.Flips[0].Regression() || cmp.Flips[1].Regression() {
		t.Fatalf("flip directions %+v", cmp.Flips)
	}
	// The same drop within the tolerance is no regression.
	if results.Compare(base, cur, 0.40).Models[0].Regressed {
		t.Fatal("a drop within tolerance counted as a regression")
	}
}

func TestLoadHostile(t *testing.T) {
	dir := resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "run"}, []resultstest.Cell{
		{Task: "t1", Model: "m", Status: "passed", Files: map[string]string{"ok.txt": "fine\n", "result.json": `{"status":"passed","task":"smuggled"}`}},
		{Task: "t2", Model: "m", Status: "failed", Files: map[string]string{"big.txt": strings.Repeat("x", 300<<10)}},
	})
	cell := filepath.Join(dir, "tasks", "t1")
	// A symlink among the produced files pointing at a host file, and a symlinked transcript.
	if err := os.Symlink("/etc/passwd", filepath.Join(cell, "files", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(cell, "transcript.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(cell, "transcript.json")); err != nil {
		t.Fatal(err)
	}
	// A cell with a broken result and one with an unknown status are skipped with warnings.
	bad := filepath.Join(dir, "tasks", "t3")
	os.MkdirAll(bad, 0o755)
	os.WriteFile(filepath.Join(bad, "result.json"), []byte("{not json"), 0o644)
	odd := filepath.Join(dir, "tasks", "t4")
	os.MkdirAll(odd, 0o755)
	os.WriteFile(filepath.Join(odd, "result.json"), []byte(`{"task":"t4","status":"<b>won</b>"}`), 0o644)

	r, err := results.Load(dir, results.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Cells) != 2 {
		t.Fatalf("%d cells, want 2 (smuggled result.json under files/ must not count): %v", len(r.Cells), r.Warnings)
	}
	c1 := r.Cells[0]
	if c1.Transcript != nil {
		t.Fatal("a symlinked transcript was followed")
	}
	for _, f := range c1.Files {
		if f.Path == "passwd" {
			t.Fatal("a symlink among the files was followed")
		}
	}
	if len(c1.Files) != 2 {
		t.Fatalf("files %v", c1.Files)
	}
	big := r.Cells[1].Files[0]
	if !big.Truncated || len(big.Data) != results.DefaultMaxFileBytes || big.Size != 300<<10 {
		t.Fatalf("big file: truncated %v len %d size %d", big.Truncated, len(big.Data), big.Size)
	}
	joined := strings.Join(r.Warnings, "\n")
	for _, want := range []string{"t3", "unknown status", "transcript.json"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings lack %q:\n%s", want, joined)
		}
	}
	if _, err := results.Load(t.TempDir(), results.Limits{}); err == nil {
		t.Fatal("an empty directory loaded as results")
	}
}

func TestLoadSeeds(t *testing.T) {
	specs := t.TempDir()
	dir := resultstest.Write(t, t.TempDir(), resultstest.Run{Command: "run", SpecsDir: specs}, []resultstest.Cell{
		{Task: "t1", Model: "m", Status: "passed", Seeds: map[string]string{"a.py": "x = 1\n"}, Files: map[string]string{"a.py": "x = 2\n", "b.py": "new\n"}},
	})
	r, err := results.Load(dir, results.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Cells[0]
	if !c.NewFiles["b.py"] || c.NewFiles["a.py"] {
		t.Fatalf("new files %v", c.NewFiles)
	}
	// Outside the root: not read.
	r.LoadSeeds(t.TempDir(), results.Limits{})
	if len(c.Seeds) != 0 || !strings.Contains(c.SeedsNote, "outside") {
		t.Fatalf("seeds read from outside the root: %v %q", c.Seeds, c.SeedsNote)
	}
	r.LoadSeeds(specs, results.Limits{})
	if len(c.Seeds) != 1 || c.Seeds[0].Path != "a.py" || string(c.Seeds[0].Data) != "x = 1\n" {
		t.Fatalf("seeds %+v (%s)", c.Seeds, c.SeedsNote)
	}
	os.Remove(filepath.Join(specs, "t1.yaml"))
	r.LoadSeeds(specs, results.Limits{})
	if len(c.Seeds) != 0 || !strings.Contains(c.SeedsNote, "not there") {
		t.Fatalf("seeds of a removed spec: %v %q", c.Seeds, c.SeedsNote)
	}
}
