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
var ErrNotResults = errors.New("not a results directory (no run.json or summary.json)")

// Names of the files of a results directory.
const (
	RunFile        = "run.json"
	SummaryFile    = "summary.json"
	TasksDir       = "tasks"
	ResultFile     = "result.json"
	ChecksFile     = "checks.json"
	TranscriptFile = "transcript.json"
	FilesDir       = "files"
	SeedDir        = "seed"
	SetupLogFile   = "setup.log"
	// EvalFile is written by agent eval: the metrics per model and the baseline comparison.
	EvalFile = "eval.json"
)

// EvalInfo is eval.json.
type EvalInfo struct {
	// Models are the models compared, in the order given.
	Models []string `json:"models"`
	// Repeat is the epochs per task.
	Repeat int `json:"repeat"`
	// Metrics are the per-model figures.
	Metrics []Metrics `json:"metrics"`
	// Comparison is set when a baseline was given.
	Comparison *Comparison `json:"comparison,omitempty"`
}

// maxDepth bounds how deep below tasks/ result files are looked for
// (tasks/<model>/<task>/<epoch>/result.json is 3).
const maxDepth = 4

// Load reads a results directory.
func Load(dir string, lim Limits) (*Results, error) {
	lim = lim.withDefaults()
	r := &Results{Dir: dir}
	runData, err := readBounded(filepath.Join(dir, RunFile), lim.MaxJSONBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Lstat(filepath.Join(dir, SummaryFile)); serr != nil {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotResults)
		}
		r.warnf("%s is missing", RunFile)
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(runData, &r.Run); err != nil {
			r.warnf("%s: %v", RunFile, err)
		}
	}
	if data, err := readBounded(filepath.Join(dir, EvalFile), lim.MaxJSONBytes); err == nil {
		var ev EvalInfo
		if err := json.Unmarshal(data, &ev); err != nil {
			r.warnf("%s: %v", EvalFile, err)
		} else {
			r.Comparison = ev.Comparison
			if len(r.Run.Models) == 0 {
				r.Run.Models = ev.Models
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		r.warnf("%s: %v", EvalFile, err)
	}
	root := filepath.Join(dir, TasksDir)
	var resultDirs []string
	err = walkBounded(root, maxDepth, func(rel string) error {
		if len(resultDirs) >= lim.MaxCells {
			return errTooMany
		}
		resultDirs = append(resultDirs, rel)
		return nil
	})
	if errors.Is(err, errTooMany) {
		r.warnf("more than %d task results; the rest are not shown", lim.MaxCells)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", root, err)
	}
	for _, rel := range resultDirs {
		c, err := loadCell(dir, rel, lim, r)
		if err != nil {
			r.warnf("%s: %v", path.Join(TasksDir, rel), err)
			continue
		}
		r.Cells = append(r.Cells, c)
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

func (r *Results) warnf(format string, args ...any) {
	if len(r.Warnings) < 100 {
		r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
	}
}

var errTooMany = errors.New("too many entries")

// walkBounded calls fn with the slash-separated path (relative to root) of every directory below
// root, at most depth levels down, that holds a result.json. Symlinks are never followed.
func walkBounded(root string, depth int, fn func(rel string) error) error {
	var walk func(rel string, d int) error
	walk = func(rel string, d int) error {
		abs := filepath.Join(root, filepath.FromSlash(rel))
		ents, err := os.ReadDir(abs)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.Name() == ResultFile && e.Type().IsRegular() && rel != "" {
				if err := fn(rel); err != nil {
					return err
				}
				break
			}
		}
		if d >= depth {
			return nil
		}
		for _, e := range ents {
			// Only real directories, and never the collected files of a task (which may hold
			// anything, a result.json too).
			if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 || e.Name() == FilesDir || e.Name() == SeedDir {
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

// resultFile is result.json as the runner writes it. Unknown fields are ignored so that a newer
// runner's results still read.
type resultFile struct {
	Task       string   `json:"task"`
	Name       string   `json:"name"`
	Model      string   `json:"model"`
	Epoch      int      `json:"epoch"`
	Status     Status   `json:"status"`
	Reason     string   `json:"reason"`
	Detail     string   `json:"detail"`
	Error      string   `json:"error"`
	DurationMS int64    `json:"duration_ms"`
	Steps      *int     `json:"steps"`
	ToolCalls  *int     `json:"tool_calls"`
	SpecDigest string   `json:"spec_digest"`
	Seed       *int64   `json:"seed"`
	Usage      *usage   `json:"usage"`
	CostUSD    *float64 `json:"cost_usd"`
}

type usage struct {
	PromptTokens     int64    `json:"prompt_tokens"`
	CompletionTokens int64    `json:"completion_tokens"`
	CostUSD          *float64 `json:"cost_usd"`
}

func loadCell(dir, rel string, lim Limits, r *Results) (*Cell, error) {
	cdir := filepath.Join(dir, TasksDir, filepath.FromSlash(rel))
	data, err := readBounded(filepath.Join(cdir, ResultFile), lim.MaxJSONBytes)
	if err != nil {
		return nil, err
	}
	var rf resultFile
	if err := json.Unmarshal(data, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", ResultFile, err)
	}
	c := &Cell{
		Task: firstNonEmpty(rf.Task, rf.Name), Model: rf.Model, Epoch: rf.Epoch, Status: rf.Status,
		Reason: rf.Reason, Detail: firstNonEmpty(rf.Detail, rf.Error),
		Duration: time.Duration(rf.DurationMS) * time.Millisecond, SpecDigest: rf.SpecDigest, Seed: rf.Seed,
		Dir: path.Join(TasksDir, rel),
	}
	if c.Task == "" {
		c.Task = strings.SplitN(rel, "/", 2)[0]
	}
	if c.Epoch <= 0 {
		c.Epoch = 1
	}
	switch c.Status {
	case StatusPassed, StatusFailed, StatusError:
	default:
		return nil, fmt.Errorf("%s: unknown status %q", ResultFile, clipString(string(c.Status), 40))
	}
	if rf.Usage != nil {
		c.TokensIn, c.TokensOut = rf.Usage.PromptTokens, rf.Usage.CompletionTokens
		c.Cost = rf.Usage.CostUSD
	}
	if rf.CostUSD != nil {
		c.Cost = rf.CostUSD
	}
	if rf.Steps != nil {
		c.Steps = *rf.Steps
	}
	if rf.ToolCalls != nil {
		c.ToolCalls = *rf.ToolCalls
	}
	if data, err := readBounded(filepath.Join(cdir, ChecksFile), lim.MaxJSONBytes); err == nil {
		if err := json.Unmarshal(data, &c.Checks); err != nil {
			var wrapped struct {
				Checks []Check `json:"checks"`
			}
			if json.Unmarshal(data, &wrapped) == nil {
				c.Checks = wrapped.Checks
			} else {
				r.warnf("%s/%s: %v", c.Dir, ChecksFile, err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		r.warnf("%s/%s: %v", c.Dir, ChecksFile, err)
	}
	if !lim.SkipContent || rf.Steps == nil || rf.ToolCalls == nil || rf.Usage == nil {
		c.Transcript = loadTranscript(filepath.Join(cdir, TranscriptFile), lim, r, c.Dir)
		if t := c.Transcript; t != nil {
			if rf.Steps == nil {
				c.Steps = t.Steps
			}
			if rf.ToolCalls == nil {
				c.ToolCalls = countToolCalls(t)
			}
			if rf.Usage == nil && rf.CostUSD == nil {
				c.TokensIn, c.TokensOut, c.Cost = t.Usage.PromptTokens, t.Usage.CompletionTokens, t.Usage.CostUSD
			}
			if c.Model == "" {
				c.Model = t.Model
			}
			if c.Reason == "" && c.Status == StatusError {
				c.Reason, c.Detail = string(t.End.Reason), firstNonEmpty(c.Detail, t.End.Detail)
			}
		}
		if lim.SkipContent {
			c.Transcript = nil
		}
	}
	if lim.SkipContent {
		return c, nil
	}
	c.Files = readTree(filepath.Join(cdir, FilesDir), lim, r, c.Dir)
	c.Seeds = readTree(filepath.Join(cdir, SeedDir), lim, r, c.Dir)
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
