// Package sandbox defines what the agent and the runner need from an isolated Linux machine: files,
// commands and a lifecycle. Backends (local OCI containers, E2B/Novita cloud) implement it; the data
// plane of every backend is the envd protocol, spoken by the client in sandbox/envdclient.
package sandbox

import (
	"context"
	"io"
	"time"
)

// Sandbox is one isolated machine. Paths are absolute inside the sandbox, or relative to the home
// directory of the user the call runs as. Every method that waits honours ctx.
type Sandbox interface {
	// ID names the sandbox (^[a-z0-9]+$).
	ID() string
	Files
	Commands
	// Close releases the caller's connections and leaves the sandbox running.
	Close() error
	// Kill destroys the sandbox and everything it holds. Killing a gone sandbox is not an error.
	Kill(ctx context.Context) error
}

// Files is the file half of the data plane.
type Files interface {
	// Open streams a file's content. The caller closes the reader.
	Open(ctx context.Context, path string) (io.ReadCloser, error)
	// WriteFile creates or truncates a file, creating parent directories.
	WriteFile(ctx context.Context, path string, data io.Reader) error
	// WriteFiles writes several files in one round trip.
	WriteFiles(ctx context.Context, files []File) error
	// List lists a directory to the given depth (1 = direct children).
	List(ctx context.Context, path string, depth int) ([]Entry, error)
	// Stat describes one path without following a final symlink.
	Stat(ctx context.Context, path string) (Entry, error)
	// MakeDir creates a directory and its parents; ErrExists when it already exists.
	MakeDir(ctx context.Context, path string) error
	// Move renames a path.
	Move(ctx context.Context, from, to string) error
	// Remove deletes a file or a directory tree; removing a missing path is not an error.
	Remove(ctx context.Context, path string) error
	// Watch reports changes under a directory until ctx ends or the watcher is closed.
	Watch(ctx context.Context, path string, recursive bool) (Watcher, error)
}

// Commands is the process half of the data plane.
type Commands interface {
	// Run runs a command to its end. A non-zero exit returns the result and an *ExitError.
	Run(ctx context.Context, cmd Cmd) (*Result, error)
	// Start starts a command and returns once it runs; output streams to cmd's callbacks.
	// Canceling ctx after Start returns detaches from the process without killing it.
	Start(ctx context.Context, cmd Cmd) (Process, error)
	// Connect attaches to a running process by pid (or by tag when pid is 0 and tag is set).
	Connect(ctx context.Context, pid uint32, tag string, out Output) (Process, error)
	// Processes lists the processes started through envd that still run.
	Processes(ctx context.Context) ([]ProcessInfo, error)
}

// File is one file for WriteFiles.
type File struct {
	Path string
	Data []byte
}

// EntryType is the kind of a filesystem entry.
type EntryType string

// Entry types as the envd protocol reports them.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
	TypeOther   EntryType = "other"
)

// Entry describes a filesystem entry.
type Entry struct {
	Name          string
	Path          string
	Type          EntryType
	Size          int64
	Mode          uint32
	Permissions   string
	Owner         string
	Group         string
	ModTime       time.Time
	SymlinkTarget string
}

// EventType is the kind of a filesystem change.
type EventType string

// Filesystem event kinds.
const (
	EventCreate EventType = "create"
	EventWrite  EventType = "write"
	EventRemove EventType = "remove"
	EventRename EventType = "rename"
	EventChmod  EventType = "chmod"
)

// Event is one filesystem change. Name is relative to the watched directory.
type Event struct {
	Name string
	Type EventType
}

// Watcher delivers filesystem events.
type Watcher interface {
	// Events is closed when the watch ends; Err then says why (nil after Close).
	Events() <-chan Event
	Err() error
	Close() error
}

// Output receives a process's output as it arrives. Callbacks run on one goroutine, in order, and
// must not block for long: a slow callback back-pressures the process.
type Output struct {
	Stdout func([]byte)
	Stderr func([]byte)
	PTY    func([]byte)
}

// PTYSize is a terminal size.
type PTYSize struct {
	Cols, Rows uint32
}

// Cmd describes a command to run.
type Cmd struct {
	// Shell is a command line run as `/bin/bash -l -c Shell`, the form the SDKs send.
	Shell string
	// Argv runs a program directly when Shell is empty.
	Argv []string
	// Env adds to the sandbox's environment.
	Env map[string]string
	// Dir is the working directory; default the user's home.
	Dir string
	// User runs the command as this user; default the sandbox's default user.
	User string
	// Stdin keeps stdin open for SendStdin; otherwise stdin is /dev/null.
	Stdin bool
	// Timeout bounds the process's lifetime; it is killed when it expires. Zero means no limit.
	Timeout time.Duration
	// Tag names a background process so it can be found again.
	Tag string
	// PTY runs the command on a pseudo-terminal of this size.
	PTY *PTYSize
	// Output streams output as it arrives.
	Output Output
	// MaxOutput bounds the stdout and stderr kept in the Result (each); 0 means DefaultMaxOutput.
	// Output beyond it still reaches the callbacks; the Result keeps the head and says so.
	MaxOutput int
}

// DefaultMaxOutput is the default bound on output kept in a Result, per stream.
const DefaultMaxOutput = 1 << 20

// Result is how a command ended.
type Result struct {
	PID      uint32
	ExitCode int
	// Exited is false when the process was ended by a signal.
	Exited bool
	// Status is the envd status text, e.g. "exit status 1" or "signal: killed".
	Status string
	// Error is envd's error text, set when the process did not exit cleanly.
	Error  string
	Stdout []byte
	Stderr []byte
	// Truncated is set when output beyond MaxOutput was dropped from Stdout or Stderr.
	Truncated bool
	// TimedOut is set when the process was killed because Cmd.Timeout expired.
	TimedOut bool
	Duration time.Duration
}

// Process is a handle on a running command.
type Process interface {
	PID() uint32
	// Wait waits for the end and returns the result; a non-zero exit also returns *ExitError.
	Wait(ctx context.Context) (*Result, error)
	// Signal sends SIGTERM or SIGKILL.
	Signal(ctx context.Context, sig Signal) error
	// Kill sends SIGKILL.
	Kill(ctx context.Context) error
	// SendStdin writes to the process's stdin (or its terminal when it runs on a PTY).
	SendStdin(ctx context.Context, data []byte) error
	// CloseStdin closes stdin (non-PTY processes started with Stdin).
	CloseStdin(ctx context.Context) error
	// Resize changes the terminal size of a PTY process.
	Resize(ctx context.Context, size PTYSize) error
	// Disconnect stops receiving output; the process keeps running.
	Disconnect()
}

// Signal is a signal envd can deliver.
type Signal int

// Signals envd delivers.
const (
	SIGTERM Signal = 15
	SIGKILL Signal = 9
)

// ProcessInfo describes a running process.
type ProcessInfo struct {
	PID  uint32
	Tag  string
	Cmd  string
	Args []string
	Env  map[string]string
	Dir  string
}
