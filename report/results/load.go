package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentrun/agent/agent/transcript"
)

// Limits bound what Load reads. Zero fields take the defaults.
type Limits struct {
	// MaxCells bounds the task results read.
	MaxCells int
	// MaxJSONBytes bounds run.json, result.json and checks.json.
	MaxJSONBytes int64
	// MaxTranscriptBytes bounds a transcript file; a larger one is skipped with a warning.
	MaxTranscriptBytes int64
	// MaxFileBytes bounds the content read of one produced or seed file.
	MaxFileBytes int64
	// MaxFiles bounds the produced files listed per cell.
	MaxFiles int
	// MaxLogBytes bounds setup.log.
	MaxLogBytes int64
	// SkipContent leaves transcripts, file contents and logs unread (metrics and JUnit need none).
	SkipContent bool
}

// Default limits.
const (
	DefaultMaxCells           = 100_000
	DefaultMaxJSONBytes       = 16 << 20
	DefaultMaxTranscriptBytes = 64 << 20
	DefaultMaxFileBytes       = 256 << 10
	DefaultMaxFiles           = 500
	DefaultMaxLogBytes        = 256 << 10
)

func (l Limits) withDefaults() Limits {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxCells <= 0 {
		l.MaxCells = DefaultMaxCells
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	def(&l.MaxJSONBytes, DefaultMaxJSONBytes)
	def(&l.MaxTranscriptBytes, DefaultMaxTranscriptBytes)
	def(&l.MaxFileBytes, DefaultMaxFileBytes)
	def(&l.MaxLogBytes, DefaultMaxLogBytes)
	return l
}

// ErrNotResults is returned for a directory that is not a results directory.
var ErrNotResults = errors.New("not a results directory (no run.json or eval.json)")

// Names of the files of a results directory (see docs/RESULTS.md).
const (
	RunFile        = "run.json"
	SummaryFile    = "summary.json"
	TasksDir       = "tasks"
	ResultFile     = "result.json"
	ChecksFile     = "checks.json"
	TranscriptFile = "transcript.json"
	FilesDir       = "files"
	SetupLogFile   = "setup.log"
	// EvalFile is written by agent eval at the top of its results directory, which holds one
	// run's results directory per model under ModelsDir.
	EvalFile  = "eval.json"
	ModelsDir = "models"
)

// EvalSchema is the schema_version of eval.json.
const EvalSchema = "agent.eval/v1"

// EvalInfo is eval.json.
type EvalInfo struct {
	SchemaVersion string     `json:"schema_version"`
	ID            string     `json:"id"`
	StartedAt     time.Time  `json:"started_at"`
	EndedAt       *time.Time `json:"ended_at,omitempty"`
	Interrupted   bool       `json:"interrupted,omitempty"`
	// Command is the command line.
	Command []string `json:"command,omitempty"`
	// Args are the spec arguments as given.
	Args []string `json:"args,omitempty"`
	// Models are the models compared, in the order given, each with its run's directory.
	Models []EvalModel `json:"models"`
	// Repeat is the epochs per task (0: each spec's own).
	Repeat int `json:"repeat,omitempty"`
	// Concurrency is the number of tasks run at once across all models.
	Concurrency int `json:"concurrency,omitempty"`
	// Versions are the versions of agent and its parts.
	Versions map[string]string `json:"versions,omitempty"`
	// Prices is the price table file used.
	Prices string `json:"prices,omitempty"`
	// Baseline is the results directory compared with.
	Baseline string `json:"baseline,omitempty"`
	// Metrics are the per-model figures.
	Metrics []Metrics `json:"metrics,omitempty"`
	// Comparison is set when a baseline was given.
	Comparison *Comparison `json:"comparison,omitempty"`
}

// EvalModel is one model of an eval and its run's directory (relative, slash-separated).
type EvalModel struct {
	Model string `json:"model"`
	Dir   string `json:"dir"`
}

// runFile is run.json as the runner writes it; unknown fields are ignored so a newer runner's
// results still read.
type runFile struct {
	SchemaVersion string            `json:"schema_version"`
	ID            string            `json:"id"`
	StartedAt     time.Time         `json:"started_at"`
	EndedAt       *time.Time        `json:"ended_at"`
	Interrupted   bool              `json:"interrupted"`
	Versions      map[string]string `json:"versions"`
	Command       []string          `json:"command"`
	Backend       string            `json:"backend"`
	Runtime       string            `json:"runtime"`
	Model         string            `json:"model"`
	Replay        string            `json:"replay"`
	Concurrency   int               `json:"concurrency"`
	Templates     map[string]string `json:"templates"`
}

// maxDepth bounds how deep below tasks/ result files are looked for (tasks/<name>/<epoch> is 2).
const maxDepth = 3

// maxModels bounds the models of an eval read.
const maxModels = 256

// Load reads a results directory: a run's (run.json, tasks/…) or an eval's (eval.json and one
// run's directory per model).
func Load(dir string, lim Limits) (*Results, error) {
	lim = lim.withDefaults()
	r := &Results{Dir: dir}
	evalData, err := readBounded(filepath.Join(dir, EvalFile), lim.MaxJSONBytes)
	switch {
	case err == nil:
		var ev EvalInfo
		if err := json.Unmarshal(evalData, &ev); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, EvalFile), err)
		}
		r.Run = Run{ID: ev.ID, Command: "eval", CommandLine: ev.Command, StartedAt: ev.StartedAt, Interrupted: ev.Interrupted,
			Repeat: ev.Repeat, Versions: ev.Versions, Concurrency: ev.Concurrency}
		if ev.EndedAt != nil {
			r.Run.EndedAt = *ev.EndedAt
		}
		r.Comparison = ev.Comparison
		if len(ev.Models) > maxModels {
			r.warnf("%s lists %d models; only the first %d are read", EvalFile, len(ev.Models), maxModels)
			ev.Models = ev.Models[:maxModels]
		}
		for _, m := range ev.Models {
			r.Run.Models = append(r.Run.Models, m.Model)
			sub, ok := localPath(m.Dir)
			if !ok {
				r.warnf("%s: model %s: directory %q is not inside the results directory", EvalFile, clipString(m.Model, 80), clipString(m.Dir, 80))
				continue
			}
			run, err := readRun(filepath.Join(dir, sub), lim)
			if err != nil {
				r.warnf("model %s: %v", clipString(m.Model, 80), err)
			} else if r.Run.Backend == "" {
				r.Run.Backend, r.Run.Runtime, r.Run.Templates = run.Backend, run.Runtime, run.Templates
			}
			if err := r.loadCells(dir, path.Join(filepath.ToSlash(sub), TasksDir), lim); err != nil {
				return nil, err
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		run, err := readRun(dir, lim)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotResults)
		}
		if err != nil {
			return nil, err
		}
		r.Run = Run{ID: run.ID, Command: "run", CommandLine: run.Command, StartedAt: run.StartedAt, Interrupted: run.Interrupted,
			Versions: run.Versions, Backend: run.Backend, Runtime: run.Runtime, Templates: run.Templates,
			Concurrency: run.Concurrency, Replay: run.Replay}
		if run.EndedAt != nil {
			r.Run.EndedAt = *run.EndedAt
		}
		if err := r.loadCells(dir, TasksDir, lim); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	models := r.Models()
	order := map[string]int{}
	for i, m := range models {
		order[m] = i
	}
	slices.SortStableFunc(r.Cells, func(a, b *Cell) int {
		if d := order[a.Model] - order[b.Model]; d != 0 {
			return d
		}
		if a.Task != b.Task {
			return strings.Compare(a.Task, b.Task)
		}
		return a.Epoch - b.Epoch
	})
	return r, nil
}

// readRun reads a run's run.json.
func readRun(dir string, lim Limits) (*runFile, error) {
	data, err := readBounded(filepath.Join(dir, RunFile), lim.MaxJSONBytes)
	if err != nil {
		return nil, err
	}
	var rf runFile
	if err := json.Unmarshal(data, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, RunFile), err)
	}
	return &rf, nil
}

// localPath returns a slash-separated relative path as a clean local path that stays inside its
// base, or ok false.
func localPath(p string) (string, bool) {
	if p == "" || strings.ContainsRune(p, 0) || strings.Contains(p, `\`) {
		return "", false
	}
	lp := filepath.FromSlash(p)
	if !filepath.IsLocal(lp) {
		return "", false
	}
	return filepath.Clean(lp), true
}

// loadCells reads every task result below dir/tasks (tasks is slash-separated, relative to dir).
func (r *Results) loadCells(dir, tasks string, lim Limits) error {
	var cellDirs []string
	err := walkBounded(filepath.Join(dir, filepath.FromSlash(tasks)), maxDepth, func(rel string) error {
		if len(r.Cells)+len(cellDirs) >= lim.MaxCells {
			return errTooMany
		}
		cellDirs = append(cellDirs, rel)
		return nil
	})
	if errors.Is(err, errTooMany) {
		r.warnf("more than %d task results; the rest are not shown", lim.MaxCells)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", filepath.Join(dir, tasks), err)
	}
	for _, rel := range cellDirs {
		where := path.Join(tasks, rel)
		c, err := loadCell(dir, where, lim, r)
		if err != nil {
			r.warnf("%s: %v", where, err)
			continue
		}
		if c == nil {
			r.NotRun++
			continue
		}
		r.Cells = append(r.Cells, c)
	}
	return nil
}

func (r *Results) warnf(format string, args ...any) {
	if len(r.Warnings) < 100 {
		r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
	}
}

var errTooMany = errors.New("too many entries")

// walkBounded calls fn with the slash-separated path (relative to root) of every directory below
// root, at most depth levels down, that holds a result.json. A directory with a result.json is a
// task's and is not descended into (its files/ hold whatever the task left, a result.json too).
// Symlinks are never followed.
func walkBounded(root string, depth int, fn func(rel string) error) error {
	var walk func(rel string, d int) error
	walk = func(rel string, d int) error {
		abs := filepath.Join(root, filepath.FromSlash(rel))
		ents, err := os.ReadDir(abs)
		if err != nil {
			return err
		}
		if rel != "" {
			for _, e := range ents {
				if e.Name() == ResultFile && e.Type().IsRegular() {
					return fn(rel)
				}
			}
		}
		if d >= depth {
			return nil
		}
		for _, e := range ents {
			if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
				continue
			}
			if err := walk(path.Join(rel, e.Name()), d+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk("", 0)
}

// resultFile is result.json as the runner writes it (the fields the reports use).
type resultFile struct {
	Task       string `json:"task"`
	Epoch      int    `json:"epoch"`
	Status     Status `json:"status"`
	Reason     string `json:"reason"`
	Detail     string `json:"detail"`
	SpecFile   string `json:"spec_file"`
	SpecDigest string `json:"spec_digest"`
	Model      string `json:"model"`
	Provider   string `json:"provider"`
	Replayed   string `json:"replayed"`
	Seed       *int64 `json:"seed"`
	Sandbox    *struct {
		Template       string `json:"template"`
		TemplateDigest string `json:"template_digest"`
	} `json:"sandbox"`
	DurationMS int64 `json:"duration_ms"`
	Agent      *struct {
		End   transcript.End   `json:"end"`
		Steps int              `json:"steps"`
		Usage transcript.Usage `json:"usage"`
		// ToolCalls counts the tool calls the model made.
		ToolCalls   int    `json:"tool_calls"`
		FinalAnswer string `json:"final_answer"`
	} `json:"agent"`
	Artifacts *struct {
		Files []struct {
			Path string `json:"path"`
			New  bool   `json:"new"`
		} `json:"files"`
		Deleted []string `json:"deleted"`
	} `json:"artifacts"`
}

// reasonCanceled marks a task the runner did not finish (an interrupted run): not run.
const reasonCanceled = "canceled"

// loadCell reads one task result; it returns nil for a task that was canceled (not run).
func loadCell(dir, rel string, lim Limits, r *Results) (*Cell, error) {
	cdir := filepath.Join(dir, filepath.FromSlash(rel))
	data, err := readBounded(filepath.Join(cdir, ResultFile), lim.MaxJSONBytes)
	if err != nil {
		return nil, err
	}
	var rf resultFile
	if err := json.Unmarshal(data, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", ResultFile, err)
	}
	if rf.Reason == reasonCanceled {
		return nil, nil
	}
	c := &Cell{
		Task: rf.Task, Model: rf.Model, Epoch: rf.Epoch, Status: rf.Status, Reason: rf.Reason, Detail: rf.Detail,
		Duration: time.Duration(rf.DurationMS) * time.Millisecond, SpecFile: rf.SpecFile, SpecDigest: rf.SpecDigest,
		Seed: rf.Seed, Provider: rf.Provider, Replayed: rf.Replayed, Dir: rel,
	}
	if c.Task == "" {
		return nil, fmt.Errorf("%s names no task", ResultFile)
	}
	if c.Epoch <= 0 {
		c.Epoch = 1
	}
	switch c.Status {
	case StatusPassed, StatusFailed, StatusError:
	default:
		return nil, fmt.Errorf("%s: unknown status %q", ResultFile, clipString(string(c.Status), 40))
	}
	if rf.Sandbox != nil {
		c.Template, c.TemplateDigest = rf.Sandbox.Template, rf.Sandbox.TemplateDigest
	}
	if a := rf.Agent; a != nil {
		c.Steps, c.ToolCalls = a.Steps, a.ToolCalls
		c.TokensIn, c.TokensOut, c.Cost = a.Usage.PromptTokens, a.Usage.CompletionTokens, a.Usage.CostUSD
	}
	if a := rf.Artifacts; a != nil {
		c.NewFiles = map[string]bool{}
		for _, f := range a.Files {
			if f.New {
				c.NewFiles[f.Path] = true
			}
		}
		c.Deleted = a.Deleted
	}
	if data, err := readBounded(filepath.Join(cdir, ChecksFile), lim.MaxJSONBytes); err == nil {
		var doc struct {
			Checks []Check `json:"checks"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			r.warnf("%s/%s: %v", c.Dir, ChecksFile, err)
		}
		c.Checks = doc.Checks
	} else if !errors.Is(err, fs.ErrNotExist) {
		r.warnf("%s/%s: %v", c.Dir, ChecksFile, err)
	}
	if lim.SkipContent {
		return c, nil
	}
	c.Transcript = loadTranscript(filepath.Join(cdir, TranscriptFile), lim, r, c.Dir)
	c.Files = readTree(filepath.Join(cdir, FilesDir), lim, r, c.Dir)
	if log, cut, err := readPrefix(filepath.Join(cdir, SetupLogFile), lim.MaxLogBytes); err == nil {
		c.SetupLog = textOf(log, cut)
	}
	return c, nil
}

func loadTranscript(file string, lim Limits, r *Results, where string) *transcript.Transcript {
	st, err := os.Lstat(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.warnf("%s/%s: %v", where, TranscriptFile, err)
		}
		return nil
	}
	if !st.Mode().IsRegular() {
		r.warnf("%s/%s is not a regular file", where, TranscriptFile)
		return nil
	}
	if st.Size() > lim.MaxTranscriptBytes {
		r.warnf("%s/%s is larger than %d bytes; not shown", where, TranscriptFile, lim.MaxTranscriptBytes)
		return nil
	}
	data, err := readBounded(file, lim.MaxTranscriptBytes)
	if err != nil {
		r.warnf("%s/%s: %v", where, TranscriptFile, err)
		return nil
	}
	t, err := transcript.Parse(data)
	if err != nil {
		r.warnf("%s/%s: %v", where, TranscriptFile, err)
		return nil
	}
	return t
}

func countToolCalls(t *transcript.Transcript) int {
	n := 0
	for _, m := range t.Messages {
		n += len(m.ToolCalls)
	}
	return n
}

// readTree reads the regular files below root (no symlinks followed), sorted by path.
func readTree(root string, lim Limits, r *Results, where string) []File {
	var out []File
	st, err := os.Lstat(root)
	if err != nil || !st.IsDir() {
		return nil
	}
	stop := errors.New("stop")
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // an unreadable entry is skipped, not fatal
		}
		if !d.Type().IsRegular() {
			return nil // directories are walked; symlinks and devices are not files of the task
		}
		if len(out) >= lim.MaxFiles {
			r.warnf("%s: more than %d files; the rest are not shown", where, lim.MaxFiles)
			return stop
		}
		rel, _ := filepath.Rel(root, p)
		f := File{Path: filepath.ToSlash(rel)}
		if info, err := d.Info(); err == nil {
			f.Size = info.Size()
		}
		data, cut, err := readPrefix(p, lim.MaxFileBytes)
		if err != nil {
			return nil
		}
		f.Data, f.Truncated = data, cut
		f.Binary = isBinary(data)
		out = append(out, f)
		return nil
	})
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// readBounded reads a regular file (never through a symlink) of at most limit bytes; a larger
// file is an error.
func readBounded(file string, limit int64) ([]byte, error) {
	data, cut, err := readPrefix(file, limit)
	if err == nil && cut {
		return nil, fmt.Errorf("%s is larger than %d bytes", filepath.Base(file), limit)
	}
	return data, err
}

// readPrefix reads at most limit bytes of a regular file (never through a symlink); cut is set
// when the file is longer.
func readPrefix(file string, limit int64) (data []byte, cut bool, err error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%s is not a regular file", filepath.Base(file))
	}
	data, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(data)) > limit {
		return data[:limit], true, nil
	}
	return data, false, nil
}

// isBinary reports whether data looks like something other than text: a NUL byte, or invalid
// UTF-8 (ignoring a rune cut at the end of a truncated read).
func isBinary(data []byte) bool {
	head := data[:min(len(data), 8000)]
	if bytes.IndexByte(head, 0) >= 0 {
		return true
	}
	for i := 0; i < utf8.UTFMax && len(head) > 0; i++ {
		if utf8.Valid(head) {
			return false
		}
		head = head[:len(head)-1]
	}
	return !utf8.Valid(head)
}

// textOf returns data as valid UTF-8 text, marking a cut.
func textOf(data []byte, cut bool) string {
	s := strings.ToValidUTF8(string(data), "\uFFFD")
	if cut {
		s += "\n… (cut)"
	}
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
