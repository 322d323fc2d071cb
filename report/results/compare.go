package results

import (
	"slices"
)

// Comparison is a run compared with a baseline run.
type Comparison struct {
	// BaselineDir is the baseline's results directory.
	BaselineDir string `json:"baseline_dir"`
	// Models has one entry per model of the current run.
	Models []ModelDelta `json:"models"`
	// Flips lists the model × task pairs whose outcome changed, sorted by model and task.
	Flips []Flip `json:"flips,omitempty"`
	// MaxRegression is the drop in pass rate (a proportion) beyond which a model regressed.
	MaxRegression float64 `json:"max_regression"`
}

// ModelDelta is one model's pass rate now and in the baseline, over the tasks both runs ran for
// it (so adding or removing tasks does not look like a regression).
type ModelDelta struct {
	Model string `json:"model"`
	// InBaseline is false for a model the baseline did not run; the rates are then not compared.
	InBaseline bool `json:"in_baseline"`
	// Tasks counts the tasks compared.
	Tasks int `json:"tasks"`
	// Base and Current are the pass rates over the compared tasks' cells.
	Base    float64 `json:"base"`
	Current float64 `json:"current"`
	// Delta is Current - Base.
	Delta float64 `json:"delta"`
	// Regressed is set when Delta < -MaxRegression.
	Regressed bool `json:"regressed"`
}

// Outcome summarizes a model × task over its epochs.
type Outcome string

// Outcomes of a model × task.
const (
	OutcomePass  Outcome = "pass"  // every epoch passed
	OutcomeFail  Outcome = "fail"  // no epoch passed
	OutcomeMixed Outcome = "mixed" // some did
)

func outcomeOf(t TaskRate) Outcome {
	switch {
	case t.Passed == t.Total:
		return OutcomePass
	case t.Passed == 0:
		return OutcomeFail
	}
	return OutcomeMixed
}

// Flip is a model × task whose outcome changed from the baseline.
type Flip struct {
	Model string  `json:"model"`
	Task  string  `json:"task"`
	From  Outcome `json:"from"`
	To    Outcome `json:"to"`
	// FromRate and ToRate are the pass rates over epochs.
	FromRate float64 `json:"from_rate"`
	ToRate   float64 `json:"to_rate"`
}

// Regression reports whether the flip is a loss (fewer epochs passing).
func (f Flip) Regression() bool { return f.ToRate < f.FromRate }

// Compare compares r with base. maxRegression is the tolerated drop in pass rate (0.05 = five
// percentage points).
func Compare(base, r *Results, maxRegression float64) Comparison {
	cmp := Comparison{BaselineDir: base.Dir, MaxRegression: maxRegression}
	bm, cm := base.Matrix(), r.Matrix()
	for _, model := range r.Models() {
		d := ModelDelta{Model: model}
		brow, ok := bm[model]
		d.InBaseline = ok
		crow := cm[model]
		var bp, bt, cp, ct int
		tasks := make([]string, 0, len(crow))
		for task := range crow {
			tasks = append(tasks, task)
		}
		slices.Sort(tasks)
		for _, task := range tasks {
			cur := crow[task]
			old, ok := brow[task]
			if !ok || old.Total == 0 || cur.Total == 0 {
				continue
			}
			d.Tasks++
			bp, bt, cp, ct = bp+old.Passed, bt+old.Total, cp+cur.Passed, ct+cur.Total
			if fo, to := outcomeOf(old), outcomeOf(cur); fo != to || (fo == OutcomeMixed && old.Rate() != cur.Rate()) {
				cmp.Flips = append(cmp.Flips, Flip{Model: model, Task: task, From: fo, To: to, FromRate: old.Rate(), ToRate: cur.Rate()})
			}
		}
		if bt > 0 && ct > 0 {
			d.Base = float64(bp) / float64(bt)
			d.Current = float64(cp) / float64(ct)
			d.Delta = d.Current - d.Base
			// A tiny epsilon keeps a drop of exactly the tolerance from counting after rounding.
			d.Regressed = d.Delta < -maxRegression-1e-9
		}
		cmp.Models = append(cmp.Models, d)
	}
	return cmp
}

// Regressed returns the models that regressed.
func (c Comparison) Regressed() []string {
	var out []string
	for _, m := range c.Models {
		if m.Regressed {
			out = append(out, m.Model)
		}
	}
	return out
}
