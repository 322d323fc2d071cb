// Package results reads the results directory of a run (`agent run`, `agent eval`) into one model
// that the reports are drawn from, computes per-model metrics (pass rate with its confidence
// interval, pass@k, error breakdown, wall time quantiles, tokens, cost) and compares a run with a
// baseline run. Everything in a results directory came from a sandbox or a model, so reading is
// bounded (file sizes, counts, depth) and never follows a symlink.
package results

import (
	"time"

	"github.com/agentrun/agent/agent/transcript"
)

// Status is how a task ended.
type Status string

// Task statuses, as the runner writes them.
const (
	StatusPassed Status = "passed"
	StatusFailed Status = "failed" // a check failed
	StatusError  Status = "error"  // the task did not finish: timeout, model error, sandbox error…
)

// Results is a whole results directory.
type Results struct {
	// Dir is the directory read.
	Dir string
	// Run is run.json: what was run, with what, when.
	Run Run
	// Cells are the task × model × epoch results, sorted by model, task, epoch.
	Cells []*Cell
	// NotRun counts the task runs that were canceled before they ended (an interrupted run); they
	// are not among Cells.
	NotRun int
	// Comparison is the comparison with a baseline run that agent eval recorded in eval.json.
	Comparison *Comparison
	// Warnings lists what could not be read (a broken result file, a transcript too large…);
	// the rest of the report is still drawn.
	Warnings []string
}

// Run describes the whole run: from run.json for `agent run`, from eval.json for `agent eval`.
type Run struct {
	// ID names the run.
	ID string
	// Command is "run" or "eval".
	Command string
	// CommandLine is the command line recorded, when it was.
	CommandLine []string
	StartedAt   time.Time
	EndedAt     time.Time
	// Interrupted is set when the run was stopped before every task ended.
	Interrupted bool
	// Models are the models of an eval, in the order given.
	Models []string
	// Repeat is the epochs per task requested on the command line (0: each spec's own).
	Repeat int
	// Versions are the versions of agent and its parts.
	Versions map[string]string
	// Backend, Runtime and Templates (name → digest) describe the sandboxes.
	Backend   string
	Runtime   string
	Templates map[string]string
	// Concurrency is the number of tasks run at once.
	Concurrency int
	// Replay names the transcripts played back instead of a model.
	Replay string
}

// Cell is one task run: one spec, one model, one epoch.
type Cell struct {
	// Task is the spec's name; Model the model id; Epoch counts from 1.
	Task  string
	Model string
	Epoch int
	// Status is passed, failed or error; Reason and Detail say why an error happened
	// (transcript end reasons, or a setup/sandbox failure).
	Status Status
	Reason string
	Detail string
	// Duration is the task's wall time (sandbox, setup, agent, checks).
	Duration time.Duration
	// Steps counts model calls, ToolCalls the tool calls the model made.
	Steps     int
	ToolCalls int
	// TokensIn and TokensOut are prompt and completion tokens.
	TokensIn  int64
	TokensOut int64
	// Cost is the price of the model calls in US dollars, when a price was known.
	Cost *float64
	// SpecFile and SpecDigest identify the spec version run.
	SpecFile   string
	SpecDigest string
	// Provider is the endpoint that served the model; Replayed names a replayed transcript.
	Provider string
	Replayed string
	// Template and TemplateDigest identify the sandbox's root filesystem.
	Template       string
	TemplateDigest string
	// Seed is the sampling seed sent to the model, when one was.
	Seed *int64
	// Checks are the check results, in spec order.
	Checks []Check
	// Dir is the cell's directory, relative to the results directory (slash-separated).
	Dir string
	// Files are the produced files collected from the sandbox (artifacts), sorted by path.
	Files []File
	// Seeds are the spec's seed files (LoadSeeds), sorted by path; SeedsNote says where they came
	// from or why they are missing.
	Seeds     []File
	SeedsNote string
	// NewFiles marks the produced files the task created (absent after setup); Deleted lists the
	// files present after setup that the task removed.
	NewFiles map[string]bool
	Deleted  []string
	// Transcript is the full record of the agent loop; nil when missing or unreadable.
	Transcript *transcript.Transcript
	// SetupLog is the output of the setup commands (bounded).
	SetupLog string
}

// Passed reports whether the cell passed.
func (c *Cell) Passed() bool { return c.Status == StatusPassed }

// FailingCheck returns the first check that failed, or nil.
func (c *Cell) FailingCheck() *Check {
	for i := range c.Checks {
		if !c.Checks[i].Passed && !c.Checks[i].Skipped {
			return &c.Checks[i]
		}
	}
	return nil
}

// Check is one check's result.
type Check struct {
	// Name labels the check (the spec's name, or its command or file).
	Name string `json:"name"`
	// Kind is run or file.
	Kind string `json:"kind,omitempty"`
	// Passed is the outcome; Skipped checks were not run; Reason says why it failed or was
	// skipped; Error says why it could not be carried out.
	Passed  bool   `json:"passed"`
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Error   string `json:"error,omitempty"`
	// Command or File is what was checked.
	Command string `json:"run,omitempty"`
	File    string `json:"file,omitempty"`
	// ExitCode, Stdout and Stderr are a run check's (bounded) output.
	ExitCode  *int   `json:"exit_code,omitempty"`
	TimedOut  bool   `json:"timed_out,omitempty"`
	Stdout    string `json:"stdout,omitempty"`
	Stderr    string `json:"stderr,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// DurationMS is how long the check took.
	DurationMS int64 `json:"duration_ms,omitempty"`
}

// File is a file of a cell: produced by the agent, or seeded.
type File struct {
	// Path is relative to the sandbox's workdir, slash-separated.
	Path string
	// Size is the file's size on disk.
	Size int64
	// Data is the content read, at most MaxFileBytes; Truncated is set when it was cut.
	Data      []byte
	Truncated bool
	// Binary is set when the content is not text.
	Binary bool
}

// Models returns the models of the cells: run.json's order first, then any other in order of
// first appearance.
func (r *Results) Models() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range r.Run.Models {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, c := range r.Cells {
		if !seen[c.Model] {
			seen[c.Model] = true
			out = append(out, c.Model)
		}
	}
	return out
}

// Tasks returns the task names of the cells, sorted.
func (r *Results) Tasks() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range r.Cells {
		if !seen[c.Task] {
			seen[c.Task] = true
			out = append(out, c.Task)
		}
	}
	sortStrings(out)
	return out
}

// IsEval reports whether the results compare several models (or came from agent eval), which is
// when reports draw the model charts.
func (r *Results) IsEval() bool { return r.Run.Command == "eval" || len(r.Models()) > 1 }
