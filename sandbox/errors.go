package sandbox

import (
	"errors"
	"fmt"
)

// Errors callers act on. Backends wrap them with context; test with errors.Is.
var (
	// ErrNotFound: the path, process or sandbox does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the path already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid: the request was malformed (bad path, not a directory, bad argument).
	ErrInvalid = errors.New("invalid argument")
	// ErrGone: the sandbox no longer answers; it was killed, expired or crashed.
	ErrGone = errors.New("sandbox is gone")
	// ErrTimeout: a wait ran out of time.
	ErrTimeout = errors.New("timed out")
	// ErrNoSpace: the sandbox's disk quota is full.
	ErrNoSpace = errors.New("no space left in sandbox")
	// ErrUnauthorized: the access token or API key was refused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrOOM: a process in the sandbox was killed by the sandbox's memory limit.
	ErrOOM = errors.New("out of memory (sandbox memory limit)")
	// ErrPidsLimit: the sandbox hit its process limit; forks were refused.
	ErrPidsLimit = errors.New("process limit reached")
	// ErrExpired: the sandbox's lifetime ran out and it was destroyed.
	ErrExpired = errors.New("sandbox lifetime expired")
)

// ExitError is returned with the Result when a command exits non-zero or is killed.
type ExitError struct {
	Result *Result
}

func (e *ExitError) Error() string {
	if e.Result.TimedOut {
		return fmt.Sprintf("command timed out (%s)", e.Result.Status)
	}
	if e.Result.Status != "" {
		return "command failed: " + e.Result.Status
	}
	return fmt.Sprintf("command failed: exit status %d", e.Result.ExitCode)
}

// Is makes a timed-out command match ErrTimeout.
func (e *ExitError) Is(target error) bool {
	return target == ErrTimeout && e.Result.TimedOut
}
