package results

import (
	"slices"
	"sort"
	"time"

	"github.com/agentrun/agent/report/stats"
)

// Metrics are one model's figures over all its cells.
type Metrics struct {
	Model string `json:"model"`
	// Cells counts task × epoch runs; Passed + Failed + Errored = Cells.
	Cells   int `json:"cells"`
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Errored int `json:"errored"`
	// Tasks counts distinct tasks; Epochs is the largest epoch count of a task.
	Tasks  int `json:"tasks"`
	Epochs int `json:"epochs"`
	// PassRate is Passed/Cells with its 95% Wilson interval.
	PassRate stats.Interval `json:"pass_rate"`
	// PassAtK maps k to the unbiased pass@k, averaged over the tasks run at least k times; set for
	// k = 1 and k = Epochs when Epochs > 1.
	PassAtK map[int]float64 `json:"pass_at_k,omitempty"`
	// Errors counts errored cells by reason.
	Errors map[string]int `json:"errors,omitempty"`
	// WallMedian and WallP90 are quantiles of the cells' wall times.
	WallMedian time.Duration `json:"wall_median_ns"`
	WallP90    time.Duration `json:"wall_p90_ns"`
	// TokensIn and TokensOut sum the cells' prompt and completion tokens.
	TokensIn  int64 `json:"tokens_in"`
	TokensOut int64 `json:"tokens_out"`
	// Steps and ToolCalls sum model calls and tool calls.
	Steps     int `json:"steps"`
	ToolCalls int `json:"tool_calls"`
	// Cost sums the cells' cost in US dollars; nil when no cell had a price. CostPartial is set
	// when some cells had none.
	Cost        *float64 `json:"cost_usd,omitempty"`
	CostPartial bool     `json:"cost_partial,omitempty"`
}

// TokensPerCell is the mean of prompt plus completion tokens per cell.
func (m *Metrics) TokensPerCell() float64 {
	if m.Cells == 0 {
		return 0
	}
	return float64(m.TokensIn+m.TokensOut) / float64(m.Cells)
}

// ModelMetrics computes the metrics of every model, in the order of Models.
func (r *Results) ModelMetrics() []Metrics {
	var out []Metrics
	for _, model := range r.Models() {
		var cells []*Cell
		for _, c := range r.Cells {
			if c.Model == model {
				cells = append(cells, c)
			}
		}
		out = append(out, compute(model, cells))
	}
	return out
}

func compute(model string, cells []*Cell) Metrics {
	m := Metrics{Model: model, Cells: len(cells)}
	type tally struct{ n, c int }
	perTask := map[string]*tally{}
	var walls []float64
	costs := 0
	var cost float64
	for _, c := range cells {
		t := perTask[c.Task]
		if t == nil {
			t = &tally{}
			perTask[c.Task] = t
		}
		t.n++
		switch c.Status {
		case StatusPassed:
			m.Passed++
			t.c++
		case StatusFailed:
			m.Failed++
		default:
			m.Errored++
			reason := c.Reason
			if reason == "" {
				reason = "unknown"
			}
			if m.Errors == nil {
				m.Errors = map[string]int{}
			}
			m.Errors[reason]++
		}
		walls = append(walls, float64(c.Duration))
		m.TokensIn += c.TokensIn
		m.TokensOut += c.TokensOut
		m.Steps += c.Steps
		m.ToolCalls += c.ToolCalls
		if c.Cost != nil {
			costs++
			cost += *c.Cost
		}
	}
	m.Tasks = len(perTask)
	for _, t := range perTask {
		m.Epochs = max(m.Epochs, t.n)
	}
	m.PassRate = stats.Wilson95(m.Passed, m.Cells)
	if med, ok := stats.Median(walls); ok {
		m.WallMedian = time.Duration(med)
	}
	if p90, ok := stats.P90(walls); ok {
		m.WallP90 = time.Duration(p90)
	}
	if costs > 0 {
		m.Cost = &cost
		m.CostPartial = costs < len(cells)
	}
	if m.Epochs > 1 {
		m.PassAtK = map[int]float64{}
		for _, k := range []int{1, m.Epochs} {
			sum, n := 0.0, 0
			// Sorted so the floating-point sum does not depend on map order.
			names := make([]string, 0, len(perTask))
			for name := range perTask {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				t := perTask[name]
				if p, ok := stats.PassAtK(t.n, t.c, k); ok {
					sum += p
					n++
				}
			}
			if n > 0 {
				m.PassAtK[k] = sum / float64(n)
			}
		}
	}
	return m
}

// TaskRate is one model × task: how many of its epochs passed.
type TaskRate struct {
	Passed, Total int
}

// Rate is Passed/Total (0 for no epochs).
func (t TaskRate) Rate() float64 {
	if t.Total == 0 {
		return 0
	}
	return float64(t.Passed) / float64(t.Total)
}

// Matrix returns, per model and task, how many epochs passed.
func (r *Results) Matrix() map[string]map[string]TaskRate {
	out := map[string]map[string]TaskRate{}
	for _, c := range r.Cells {
		row := out[c.Model]
		if row == nil {
			row = map[string]TaskRate{}
			out[c.Model] = row
		}
		tr := row[c.Task]
		tr.Total++
		if c.Passed() {
			tr.Passed++
		}
		row[c.Task] = tr
	}
	return out
}

// Totals counts all cells by status.
func (r *Results) Totals() (passed, failed, errored int) {
	for _, c := range r.Cells {
		switch c.Status {
		case StatusPassed:
			passed++
		case StatusFailed:
			failed++
		default:
			errored++
		}
	}
	return
}

func sortStrings(s []string) { slices.Sort(s) }
