// Package tools carries out the model's tool calls in a sandbox: the tutorial's read_file,
// write_file, write_files and run_commands, plus list_files and background commands
// (run_commands with background: true, command_output, kill_command).
//
// Everything the model sends is hostile: malformed JSON, unknown tools, wrong types, enormous
// arguments and hostile paths become clear error results for the model, never a crash. Results are
// bounded: output is cut to a configurable size keeping its head and tail, with an explicit marker.
// Paths are sandbox paths, resolved by the sandbox; nothing here touches the host's files.
package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentrun/agent/sandbox"
)

// Sandbox is what the tools need of a sandbox.
type Sandbox interface {
	Open(ctx context.Context, path string) (io.ReadCloser, error)
	WriteFile(ctx context.Context, path string, data io.Reader) error
	WriteFiles(ctx context.Context, files []sandbox.File) error
	List(ctx context.Context, path string, depth int) ([]sandbox.Entry, error)
	Start(ctx context.Context, cmd sandbox.Cmd) (sandbox.Process, error)
}

// Config configures the tools. Zero fields take the defaults.
type Config struct {
	// Workdir is where commands run and relative paths point; empty means the sandbox user's home.
	Workdir string
	// User runs commands; empty means the sandbox's default user.
	User string
	// Env is added to every command's environment.
	Env map[string]string
	// CommandTimeout kills a foreground command that runs longer (default 2m).
	CommandTimeout time.Duration
	// MaxResultBytes bounds the text of a result given to the model (default 16 KiB).
	MaxResultBytes int
	// MaxReadBytes bounds how much of a file read_file reads (default 8 MiB).
	MaxReadBytes int64
	// MaxArgumentBytes bounds the arguments of one call (default 1 MiB).
	MaxArgumentBytes int
	// MaxListEntries bounds the entries list_files shows (default 500).
	MaxListEntries int
	// MaxBackground bounds the background commands running at once (default 8).
	MaxBackground int
	// BackgroundBufferBytes bounds the unread output kept per background stream (default 64 KiB).
	BackgroundBufferBytes int
}

// Defaults of Config.
const (
	DefaultCommandTimeout        = 2 * time.Minute
	DefaultMaxResultBytes        = 16 << 10
	DefaultMaxReadBytes          = 8 << 20
	DefaultMaxArgumentBytes      = 1 << 20
	DefaultMaxListEntries        = 500
	DefaultMaxBackground         = 8
	DefaultBackgroundBufferBytes = 64 << 10
	// maxListDepth caps list_files depth.
	maxListDepth = 5
	// maxFiles caps the files of one write_files call.
	maxFiles = 1000
	// killGrace is how long a command may outlive its timeout before the call gives up on it.
	killGrace = 15 * time.Second
)

func (c Config) withDefaults() Config {
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = DefaultMaxResultBytes
	}
	if c.MaxResultBytes < 256 {
		c.MaxResultBytes = 256
	}
	if c.MaxReadBytes <= 0 {
		c.MaxReadBytes = DefaultMaxReadBytes
	}
	if c.MaxArgumentBytes <= 0 {
		c.MaxArgumentBytes = DefaultMaxArgumentBytes
	}
	if c.MaxListEntries <= 0 {
		c.MaxListEntries = DefaultMaxListEntries
	}
	if c.MaxBackground <= 0 {
		c.MaxBackground = DefaultMaxBackground
	}
	if c.BackgroundBufferBytes <= 0 {
		c.BackgroundBufferBytes = DefaultBackgroundBufferBytes
	}
	return c
}

// Call is one tool call of the model.
type Call struct {
	Name      string
	Arguments string
	// ArgumentsOverflow is set when the provider dropped part of the arguments.
	ArgumentsOverflow bool
}

// Result is the outcome of a call.
type Result struct {
	// Content is the text the model sees.
	Content string
	// Error is set when the call failed: the content then explains why.
	Error bool
	// ExitCode is the exit code of a foreground command.
	ExitCode *int
	// TimedOut is set when a command was killed by the command timeout.
	TimedOut bool
	// PID is the process id of a background command started by the call.
	PID uint32
	// OutputBytes is the size of the output or file before truncation.
	OutputBytes int64
	// Truncated is set when Content was cut to the result limit.
	Truncated bool
	// Fatal is set when the sandbox cannot go on (gone, refused) or the task's context ended; the
	// loop stops on it.
	Fatal error
}

// Set carries out tool calls in one sandbox for one task. Calls are made one at a time, in order;
// Close releases the background commands' streams (the commands keep running).
type Set struct {
	sb  Sandbox
	cfg Config

	life   context.Context
	cancel context.CancelFunc

	mu  sync.Mutex
	bg  map[uint32]*bgProc
	seq int
}

// New returns the tools for one sandbox.
func New(sb Sandbox, cfg Config) *Set {
	life, cancel := context.WithCancel(context.Background())
	return &Set{sb: sb, cfg: cfg.withDefaults(), life: life, cancel: cancel, bg: map[uint32]*bgProc{}}
}

// Config returns the configuration in force, defaults applied.
func (s *Set) Config() Config { return s.cfg }

// Close detaches from every background command and stops following them.
func (s *Set) Close() {
	s.cancel()
	s.mu.Lock()
	procs := make([]*bgProc, 0, len(s.bg))
	for _, p := range s.bg {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.proc.Disconnect()
	}
}

// Call carries out one call. It never panics on the model's input and always returns a result
// for the model; Result.Fatal says when the task cannot go on.
func (s *Set) Call(ctx context.Context, c Call) (res Result) {
	defer func() {
		// The tools parse hostile input; a bug there must cost one call, not the run.
		if r := recover(); r != nil {
			res = errorf("Error: internal error in tool %s: %v", clipArg(c.Name), r)
		}
		if res.Fatal == nil && ctx.Err() != nil {
			res.Fatal = context.Cause(ctx)
		}
	}()
	if c.ArgumentsOverflow || len(c.Arguments) > s.cfg.MaxArgumentBytes {
		n := len(c.Arguments)
		more := ""
		if c.ArgumentsOverflow {
			more = "more than "
		}
		return errorf("Error: the arguments of %s are too large (%s%d bytes; the limit is %d). "+
			"Write big files in several smaller parts, or generate them with run_commands.",
			clipArg(c.Name), more, n, s.cfg.MaxArgumentBytes)
	}
	switch c.Name {
	case ReadFile:
		return s.readFile(ctx, c.Arguments)
	case WriteFile:
		return s.writeFile(ctx, c.Arguments)
	case WriteFiles:
		return s.writeFiles(ctx, c.Arguments)
	case RunCommands:
		return s.runCommands(ctx, c.Arguments)
	case ListFiles:
		return s.listFiles(ctx, c.Arguments)
	case CommandOutput:
		return s.commandOutput(ctx, c.Arguments)
	case KillCommand:
		return s.killCommand(ctx, c.Arguments)
	}
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = sp.Name
	}
	return errorf("Error: unknown tool %q. Available tools: %s.", clipArg(c.Name), strings.Join(names, ", "))
}

func errorf(format string, a ...any) Result {
	return Result{Content: fmt.Sprintf(format, a...), Error: true}
}

// failure turns a sandbox error into a result, marking it fatal when the sandbox cannot go on.
func failure(ctx context.Context, what string, err error) Result {
	r := errorf("Error %s: %v", what, err)
	switch {
	case ctx.Err() != nil:
		r.Fatal = context.Cause(ctx)
	case errors.Is(err, sandbox.ErrGone), errors.Is(err, sandbox.ErrUnauthorized):
		r.Fatal = err
	}
	return r
}

// resolve checks a path from the model and makes it relative to the working directory.
func (s *Set) resolve(p string) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", errors.New("the path is empty")
	}
	if strings.ContainsRune(p, 0) {
		return "", errors.New("the path contains a NUL byte")
	}
	if len(p) > 4096 {
		return "", fmt.Errorf("the path is too long (%d bytes)", len(p))
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		// The sandbox resolves ~ to the user's home.
		return p, nil
	}
	if !path.IsAbs(p) && s.cfg.Workdir != "" {
		p = path.Join(s.cfg.Workdir, p)
	}
	return path.Clean(p), nil
}

func (s *Set) readFile(ctx context.Context, raw string) Result {
	var a readArgs
	if err := decodeArgs(raw, &a, []string{"path"}); err != nil {
		return errorf("Error: %v", err)
	}
	if a.Path == nil {
		return errorf(`Error: missing required argument "path"`)
	}
	p, err := s.resolve(*a.Path)
	if err != nil {
		return errorf("Error reading file: %v", err)
	}
	rc, err := s.sb.Open(ctx, p)
	if err != nil {
		return failure(ctx, "reading file", err)
	}
	defer rc.Close()
	c := newCapture(s.cfg.MaxResultBytes)
	n, err := io.Copy(c, io.LimitReader(rc, s.cfg.MaxReadBytes+1))
	if err != nil {
		return failure(ctx, "reading file", err)
	}
	t := c.text()
	if strings.IndexByte(t.head[:min(len(t.head), 8000)], 0) >= 0 {
		return Result{Content: fmt.Sprintf("%s is a binary file (%s); it is not shown. "+
			"Inspect it with run_commands (file, xxd, …).", p, sizeText(n)), OutputBytes: n}
	}
	t = t.valid()
	if t.truncated() || t.len() > s.cfg.MaxResultBytes || n > s.cfg.MaxReadBytes {
		// Leave room for the note that says how to read the rest.
		t = t.shrink(max(s.cfg.MaxResultBytes-300, s.cfg.MaxResultBytes/2))
	}
	r := Result{Content: t.String(), OutputBytes: n, Truncated: t.truncated()}
	switch {
	case n > s.cfg.MaxReadBytes:
		r.Truncated = true
		r.Content += fmt.Sprintf("\n[read stopped after %d bytes: the file is larger. Read parts of it "+
			"with run_commands, e.g. sed -n '100,200p' %s]", s.cfg.MaxReadBytes, p)
	case t.truncated():
		r.Content += fmt.Sprintf("\n[the file has %d bytes; only its start and end are shown. Read "+
			"other parts with run_commands, e.g. sed -n '100,200p' %s]", n, p)
	case n == 0:
		r.Content = "(empty file)"
	}
	return r
}

func (s *Set) writeFile(ctx context.Context, raw string) Result {
	var a writeArgs
	if err := decodeArgs(raw, &a, []string{"path", "data"}); err != nil {
		return errorf("Error: %v", err)
	}
	if a.Path == nil {
		return errorf(`Error: missing required argument "path"`)
	}
	if a.Data == nil {
		return errorf(`Error: missing required argument "data"`)
	}
	p, err := s.resolve(*a.Path)
	if err != nil {
		return errorf("Error writing file: %v", err)
	}
	if err := s.sb.WriteFile(ctx, p, strings.NewReader(*a.Data)); err != nil {
		return failure(ctx, "writing file", err)
	}
	return Result{Content: fmt.Sprintf("Wrote %s to %s", sizeText(int64(len(*a.Data))), p)}
}

func (s *Set) writeFiles(ctx context.Context, raw string) Result {
	var a writeFilesArgs
	if err := decodeArgs(raw, &a, []string{"files"}); err != nil {
		return errorf("Error: %v", err)
	}
	if a.Files == nil {
		return errorf(`Error: missing required argument "files"`)
	}
	if len(*a.Files) == 0 {
		return errorf(`Error: "files" is empty; give at least one {"path": …, "data": …}`)
	}
	if len(*a.Files) > maxFiles {
		return errorf("Error: too many files (%d; at most %d per call)", len(*a.Files), maxFiles)
	}
	files := make([]sandbox.File, 0, len(*a.Files))
	var lines []string
	for i, f := range *a.Files {
		if f.Path == nil {
			return errorf(`Error: files[%d]: missing required field "path"`, i)
		}
		if f.Data == nil {
			return errorf(`Error: files[%d]: missing required field "data"`, i)
		}
		p, err := s.resolve(*f.Path)
		if err != nil {
			return errorf("Error writing files: files[%d]: %v", i, err)
		}
		files = append(files, sandbox.File{Path: p, Data: []byte(*f.Data)})
		lines = append(lines, fmt.Sprintf("%s (%s)", p, sizeText(int64(len(*f.Data)))))
	}
	if err := s.sb.WriteFiles(ctx, files); err != nil {
		return failure(ctx, "writing files", err)
	}
	return Result{Content: fmt.Sprintf("Wrote %d files: %s", len(files), strings.Join(lines, ", "))}
}

func (s *Set) listFiles(ctx context.Context, raw string) Result {
	var a listArgs
	if err := decodeArgs(raw, &a, []string{"path", "depth"}); err != nil {
		return errorf("Error: %v", err)
	}
	dir := "."
	if a.Path != nil && strings.TrimSpace(*a.Path) != "" {
		dir = *a.Path
	}
	p, err := s.resolve(dir)
	if err != nil {
		return errorf("Error listing files: %v", err)
	}
	depth := 1
	if a.Depth != nil {
		depth = min(max(*a.Depth, 1), maxListDepth)
	}
	ents, err := s.sb.List(ctx, p, depth)
	if err != nil {
		return failure(ctx, "listing files", err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Path < ents[j].Path })
	var b strings.Builder
	for i, e := range ents {
		if i == s.cfg.MaxListEntries {
			fmt.Fprintf(&b, "[... %d more entries not shown]\n", len(ents)-i)
			break
		}
		name := e.Path
		if rel, ok := strings.CutPrefix(e.Path, strings.TrimSuffix(p, "/")+"/"); ok {
			name = rel
		}
		switch e.Type {
		case sandbox.TypeDir:
			fmt.Fprintf(&b, "%s/\n", name)
		case sandbox.TypeSymlink:
			fmt.Fprintf(&b, "%s -> %s\n", name, e.SymlinkTarget)
		default:
			fmt.Fprintf(&b, "%s (%s)\n", name, sizeText(e.Size))
		}
	}
	if len(ents) == 0 {
		b.WriteString("(empty directory)\n")
	}
	t := text{head: b.String()}
	total := int64(t.len())
	t = t.shrink(s.cfg.MaxResultBytes)
	return Result{Content: t.String(), OutputBytes: total, Truncated: t.truncated()}
}

func (s *Set) runCommands(ctx context.Context, raw string) Result {
	var a runArgs
	if err := decodeArgs(raw, &a, []string{"command", "background"}); err != nil {
		return errorf("Error: %v", err)
	}
	if a.Command == nil {
		return errorf(`Error: missing required argument "command"`)
	}
	if strings.TrimSpace(*a.Command) == "" {
		return errorf("Error: the command is empty")
	}
	if strings.ContainsRune(*a.Command, 0) {
		return errorf("Error: the command contains a NUL byte")
	}
	if a.Background != nil && *a.Background {
		return s.startBackground(ctx, *a.Command)
	}
	stdout, stderr := newCapture(s.cfg.MaxResultBytes), newCapture(s.cfg.MaxResultBytes)
	cmd := s.cmd(*a.Command)
	cmd.Timeout = s.cfg.CommandTimeout
	cmd.MaxOutput = s.cfg.MaxResultBytes
	cmd.Output = sandbox.Output{
		Stdout: func(b []byte) { stdout.Write(b) },
		Stderr: func(b []byte) { stderr.Write(b) },
	}
	res, err := s.runForeground(ctx, cmd)
	if err != nil {
		return failure(ctx, "running command", err)
	}
	// Some clients deliver output only in the result; use it when the callbacks saw nothing.
	if stdout.Total() == 0 && len(res.Stdout) > 0 {
		stdout.Write(res.Stdout)
	}
	if stderr.Total() == 0 && len(res.Stderr) > 0 {
		stderr.Write(res.Stderr)
	}
	status := fmt.Sprintf("exit code: %d", res.ExitCode)
	switch {
	case res.TimedOut:
		status = fmt.Sprintf("the command timed out after %s and was killed", s.cfg.CommandTimeout)
	case !res.Exited && res.Status != "":
		status = fmt.Sprintf("the command was terminated (%s)", res.Status)
	}
	r := s.outputResult(status, stdout, stderr, "(no output)")
	code := res.ExitCode
	r.ExitCode = &code
	r.TimedOut = res.TimedOut
	return r
}

// runForeground runs a command to its end. The sandbox kills it at cmd.Timeout; when the task's
// context ends first, or the sandbox does not end it in time, it is killed from here: a command
// must never outlive the call that started it.
func (s *Set) runForeground(ctx context.Context, cmd sandbox.Cmd) (*sandbox.Result, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout+killGrace)
	defer cancel()
	proc, err := s.sb.Start(cctx, cmd)
	if err != nil {
		return nil, err
	}
	res, err := proc.Wait(cctx)
	var ee *sandbox.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee) && ee.Result != nil:
		return ee.Result, nil
	case cctx.Err() == nil:
		return nil, err
	}
	// Waiting gave up: kill the command, with a context of its own since ctx may be over.
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer kcancel()
	if kerr := proc.Kill(kctx); kerr != nil && !errors.Is(kerr, sandbox.ErrNotFound) {
		slog.Warn("killing a command that outlived its call", "pid", proc.PID(), "err", kerr)
	}
	proc.Disconnect()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	// The sandbox did not end the command at its timeout; report it as timed out.
	return &sandbox.Result{PID: proc.PID(), TimedOut: true, ExitCode: -1, Status: "killed: no answer from the sandbox"}, nil
}

func (s *Set) cmd(command string) sandbox.Cmd {
	return sandbox.Cmd{Shell: command, Dir: s.cfg.Workdir, User: s.cfg.User, Env: s.cfg.Env}
}

// outputResult renders a status line and the two streams within the result limit; stderr gets at
// most a quarter of the room when both are long.
func (s *Set) outputResult(status string, stdout, stderr *capture, empty string) Result {
	so, se := stdout.text().valid(), stderr.text().valid()
	room := max(s.cfg.MaxResultBytes-len(status)-64, 64)
	if so.len()+se.len() > room {
		eb := min(se.len(), room/4)
		ob := min(so.len(), room-eb)
		eb = min(se.len(), room-ob)
		so, se = so.shrink(ob), se.shrink(eb)
	}
	var b strings.Builder
	b.WriteString(status)
	b.WriteByte('\n')
	for _, part := range []struct {
		name string
		t    text
	}{{"stdout", so}, {"stderr", se}} {
		if part.t.len() == 0 && !part.t.truncated() {
			continue
		}
		str := part.t.String()
		b.WriteString(part.name + ":\n" + str)
		if !strings.HasSuffix(str, "\n") {
			b.WriteByte('\n')
		}
	}
	if so.len() == 0 && se.len() == 0 && empty != "" {
		b.WriteString(empty)
		b.WriteByte('\n')
	}
	return Result{
		Content:     strings.TrimSuffix(b.String(), "\n"),
		OutputBytes: stdout.Total() + stderr.Total(),
		Truncated:   so.truncated() || se.truncated(),
	}
}

func sizeText(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
